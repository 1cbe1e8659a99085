//! The divergence log: a bounded sample of divergences as JSON lines, what a
//! team reads to investigate. Written by one thread per file behind a bounded
//! queue (a full queue drops the line and counts it, never blocks a read);
//! the file is size-capped and rotated to `FILE.1`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

/// Lines waiting to be written, per file.
const QUEUE: usize = 1024;
/// Default size at which the file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// A handle to one divergence log file.
#[derive(Debug, Clone)]
pub struct DivergenceLog {
    tx: SyncSender<String>,
    path: PathBuf,
}

impl DivergenceLog {
    /// Starts the writer for `path`, rotating at `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> DivergenceLog {
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let owned = path.to_owned();
        let spawned = std::thread::Builder::new()
            .name("cutover-divergence-log".into())
            .spawn(move || {
                let mut w = Writer::new(owned, max_bytes);
                while let Ok(line) = rx.recv() {
                    if let Err(e) = w.write(&line) {
                        tracing::warn!(path = %w.path.display(), error = %e, "divergence log write failed");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the divergence log writer");
        }
        DivergenceLog {
            tx,
            path: path.to_owned(),
        }
    }

    /// Queues one JSON line; false (and counted) when the queue is full.
    pub fn record(&self, entry: &serde_json::Value) -> bool {
        match self.tx.try_send(entry.to_string()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct Writer {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
}

impl Writer {
    fn new(path: PathBuf, max_bytes: u64) -> Writer {
        Writer {
            path,
            max_bytes: max_bytes.max(1024),
            file: None,
            size: 0,
        }
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(f);
        }
        if self.size > 0 && self.size + len > self.max_bytes {
            self.file = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, &rotated)?;
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
            self.size = 0;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(line.as_bytes())?;
            f.write_all(b"\n")?;
            self.size += len;
        }
        Ok(())
    }
}

/// One writer per file across reloads, so two generations never write the
/// same file from two threads. Relative paths are in the data directory.
#[derive(Debug, Clone)]
pub struct DivergenceLogs {
    data_dir: PathBuf,
    logs: Arc<Mutex<HashMap<PathBuf, DivergenceLog>>>,
}

impl DivergenceLogs {
    /// Logs whose relative paths are under `data_dir`.
    pub fn new(data_dir: PathBuf) -> DivergenceLogs {
        DivergenceLogs {
            data_dir,
            logs: Default::default(),
        }
    }

    /// The writer for `path` (as the config says it), started on first use.
    pub fn get(&self, path: &Path) -> DivergenceLog {
        let path = self.data_dir.join(path);
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.entry(path.clone())
            .or_insert_with(|| DivergenceLog::open(&path, DEFAULT_MAX_BYTES))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let mut w = Writer::new(path.clone(), 1024);
        let line = "x".repeat(99); // 100 bytes with the newline
        for _ in 0..35 {
            w.write(&line).unwrap();
        }
        let cur = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(dir.path().join("d.jsonl.1"))
            .unwrap()
            .len();
        assert!(cur <= 1024 && old <= 1024, "{cur} {old}");
        assert_eq!(old, 1000);
        assert_eq!(cur, 500);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn queued_lines_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let log = DivergenceLog::open(&path, DEFAULT_MAX_BYTES);
        assert!(log.record(&serde_json::json!({"category": "missing", "key": "7"})));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("\"key\":\"7\"") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "line never written");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
