//! The access log: one JSON object per line per read (SPEC 1.1 fixes the
//! fields), opt-in with `access_log:`. Plain reads are sampled; fallbacks and
//! answers cutover made itself are always logged. Entries go to one writer
//! thread per target through a bounded queue: a full queue drops the entry
//! and counts it, and never blocks a read. A file target is reopened on
//! SIGUSR1 (after logrotate moved it).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::{HeaderValue, Method};
use metrics::Counter;
use serde::Serialize;

use crate::config::{AccessLogSettings, LogTarget};

/// Entries waiting to be written, per target.
const QUEUE: usize = 8192;
/// Pause after each batch: the writer wakes at most this often under load,
/// rather than once per entry (each wake is a futex call on the read's
/// thread and the writer's). The queue holds far more than a pause's worth.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// One read, as the access log records it.
#[derive(Debug)]
pub struct Entry {
    pub ts: SystemTime,
    pub consumer: Arc<str>,
    pub route: Option<String>,
    pub dataset: Option<String>,
    pub method: Method,
    /// Without the query string (it may carry what a log must not).
    pub path: String,
    pub status: u16,
    pub served_by: Option<&'static str>,
    pub fallback: Option<&'static str>,
    /// The `x-cutover-error` reason, when cutover answered itself.
    pub error: Option<&'static str>,
    pub upstream_status: Option<u16>,
    /// To the response head.
    pub duration_ms: f64,
    pub request_id: Option<HeaderValue>,
}

/// The line an entry becomes: the SPEC's field names, in its order.
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    consumer: &'a str,
    route: Option<&'a str>,
    dataset: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: u16,
    served_by: Option<&'a str>,
    fallback: Option<&'a str>,
    error: Option<&'a str>,
    upstream_status: Option<u16>,
    duration_ms: f64,
    request_id: Option<&'a str>,
}

impl Entry {
    fn to_line(&self) -> String {
        let ts = crate::decide::freshness::rfc3339(self.ts).unwrap_or_default();
        let line = Line {
            ts,
            consumer: &self.consumer,
            route: self.route.as_deref(),
            dataset: self.dataset.as_deref(),
            method: self.method.as_str(),
            path: &self.path,
            status: self.status,
            served_by: self.served_by,
            fallback: self.fallback,
            error: self.error,
            upstream_status: self.upstream_status,
            // Microseconds are plenty, and keep the line short.
            duration_ms: (self.duration_ms * 1000.0).round() / 1000.0,
            request_id: self.request_id.as_ref().and_then(|v| v.to_str().ok()),
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// The access log of one snapshot: where entries go, how many plain reads,
/// and the consumer they are about.
#[derive(Debug, Clone)]
pub struct AccessLog {
    sink: Arc<Sink>,
    sample: f64,
    consumer: Arc<str>,
    dropped: Counter,
}

impl AccessLog {
    /// Whether a read is logged: always when it fell back or cutover
    /// answered it itself (`notable`), else `sample` of reads.
    pub fn wants(&self, notable: bool) -> bool {
        notable || self.sample >= 1.0 || (self.sample > 0.0 && fastrand::f64() < self.sample)
    }

    pub fn consumer(&self) -> &Arc<str> {
        &self.consumer
    }

    /// Queues an entry; a full queue drops it (counted).
    pub fn record(&self, entry: Entry) {
        match self.sink.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.increment(1),
        }
    }
}

/// One writer thread and its queue.
#[derive(Debug)]
struct Sink {
    tx: SyncSender<Entry>,
    reopen: Arc<AtomicBool>,
}

/// The sinks, one per target, shared across reloads so two generations never
/// write one file from two threads. Relative file paths are in the data
/// directory.
#[derive(Debug)]
pub struct AccessLogs {
    data_dir: PathBuf,
    sinks: Mutex<HashMap<LogTarget, Arc<Sink>>>,
}

impl AccessLogs {
    pub fn new(data_dir: PathBuf) -> AccessLogs {
        AccessLogs {
            data_dir,
            sinks: Mutex::default(),
        }
    }

    /// The access log a config asks for (its writer started on first use).
    pub fn bind(
        &self,
        settings: &AccessLogSettings,
        consumer: &str,
        dropped: Counter,
    ) -> AccessLog {
        let target = match &settings.target {
            LogTarget::File(p) => LogTarget::File(self.data_dir.join(p)),
            other => other.clone(),
        };
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        let sink = sinks
            .entry(target.clone())
            .or_insert_with(|| Arc::new(start(target)))
            .clone();
        AccessLog {
            sink,
            sample: settings.sample,
            consumer: consumer.into(),
            dropped,
        }
    }

    /// Reopens every file target before its next line (SIGUSR1).
    pub fn reopen(&self) {
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        for sink in sinks.values() {
            sink.reopen.store(true, Ordering::Release);
        }
    }
}

/// Starts the writer thread for `target`.
fn start(target: LogTarget) -> Sink {
    let (tx, rx) = sync_channel::<Entry>(QUEUE);
    let reopen = Arc::new(AtomicBool::new(false));
    let flag = reopen.clone();
    let spawned = std::thread::Builder::new()
        .name("cutover-access-log".into())
        .spawn(move || write_loop(&target, &rx, &flag));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the access log writer");
    }
    Sink { tx, reopen }
}

/// Writes entries as they come, flushing whenever the queue runs dry.
fn write_loop(target: &LogTarget, rx: &Receiver<Entry>, reopen: &AtomicBool) {
    let mut out: Option<BufWriter<Box<dyn Write>>> = None;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(entry) = next {
            if reopen.swap(false, Ordering::AcqRel) {
                out = None;
            }
            if out.is_none() {
                out = open(target).map(BufWriter::new);
            }
            if let Some(w) = out.as_mut() {
                let mut line = entry.to_line();
                line.push('\n');
                if let Err(e) = w.write_all(line.as_bytes()) {
                    tracing::warn!(error = %e, "access log write failed");
                    out = None;
                }
            }
            next = rx.try_recv().ok();
        }
        if let Some(w) = out.as_mut()
            && let Err(e) = w.flush()
        {
            tracing::warn!(error = %e, "access log write failed");
            out = None;
        }
        std::thread::sleep(BATCH_PAUSE);
    }
}

fn open(target: &LogTarget) -> Option<Box<dyn Write>> {
    match target {
        LogTarget::Stdout => Some(Box::new(std::io::stdout())),
        LogTarget::Stderr => Some(Box::new(std::io::stderr())),
        LogTarget::File(path) => match append(path) {
            Ok(f) => Some(Box::new(f)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open the access log");
                None
            }
        },
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: u16) -> Entry {
        Entry {
            ts: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250),
            consumer: "dash".into(),
            route: Some("orders".into()),
            dataset: Some("orders".into()),
            method: Method::GET,
            path: "/v1/orders/7".into(),
            status,
            served_by: Some("batch"),
            fallback: Some("timeout"),
            error: None,
            upstream_status: Some(status),
            duration_ms: 1.23456,
            request_id: Some(HeaderValue::from_static("abc")),
        }
    }

    #[test]
    fn a_line_has_the_spec_fields() {
        let v: serde_json::Value = serde_json::from_str(&entry(200).to_line()).expect("JSON");
        assert_eq!(v["ts"], "2023-11-14T22:13:20.25Z");
        assert_eq!(v["route"], "orders");
        assert_eq!(v["fallback"], "timeout");
        assert!(v["error"].is_null());
        assert_eq!(v["duration_ms"], 1.235);
        assert_eq!(v["request_id"], "abc");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 13, "{keys:?}");
    }

    #[test]
    fn a_file_is_written_and_reopened_after_a_move() {
        let dir = tempfile::tempdir().expect("temp dir");
        let logs = AccessLogs::new(dir.path().to_owned());
        let settings = AccessLogSettings {
            target: LogTarget::File("access.jsonl".into()),
            sample: 1.0,
        };
        let log = logs.bind(&settings, "dash", Counter::noop());
        let path = dir.path().join("access.jsonl");
        let lines = |p: &Path| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count()
        };
        let wait = |p: &Path, n: usize| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while lines(p) < n {
                assert!(std::time::Instant::now() < deadline, "{n} lines in {p:?}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        log.record(entry(200));
        wait(&path, 1);
        // logrotate moves the file, then signals: new lines go to a new file.
        let rotated = dir.path().join("access.jsonl.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        logs.reopen();
        log.record(entry(503));
        wait(&path, 1);
        assert_eq!(lines(&rotated), 1);
    }
}
