//! Applying the config file again: read, compile, bind, swap, or keep the
//! last good config serving. The watcher (`config::watch`) only says when;
//! this module does it, counts it, logs it and keeps what `/status` shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::SystemTime;

use crate::config::{self, Compiled, RuntimeSettings, Settings};
use crate::state::live::{Live, Snapshot};
use crate::state::metrics::ProcessMetrics;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file parsed and is now live at this generation.
    Applied(u64),
    /// The file's content is what is already live; nothing changed.
    Unchanged,
    /// The file's content is what is live again after a rejected edit (a
    /// revert): nothing changed, and the rejection is over.
    Reverted,
    /// The file is bad; the last good config keeps serving.
    Rejected(String),
}

/// The result of the last reload that did something, as `/status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    Ok,
    Error,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Error => "error",
        }
    }
}

/// The last reload attempt, for `/status`.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// `None` before any reload.
    pub result: Option<ReloadResult>,
    pub error: Option<String>,
    pub at: Option<SystemTime>,
    /// Set when the applied file changed `listen` or `admin`, which need a restart.
    pub restart_needed: Option<String>,
}

/// Applies reloads of one config file, one at a time.
#[derive(Debug)]
pub struct Reloader {
    config_path: PathBuf,
    /// `listen` and `admin` as the config said when the sockets were bound:
    /// a file that differs needs a restart until it no longer differs.
    started: (SocketAddr, SocketAddr),
    /// The connection limits the listeners were built with (same rule).
    started_runtime: RuntimeSettings,
    /// Replaced when a reload renames the consumer (its label).
    metrics: ArcSwap<ProcessMetrics>,
    status: Mutex<ReloadStatus>,
    /// Serialises reloads (watcher and SIGHUP may race); never taken per read.
    serial: Mutex<()>,
}

impl Reloader {
    /// For the config `first`, which the process started with.
    pub fn new(config_path: PathBuf, first: &Settings, metrics: ProcessMetrics) -> Reloader {
        metrics.generation.set(first.generation as f64);
        metrics.last_reload_successful.set(1.0);
        metrics.last_reload_success_timestamp.set(unix_now());
        metrics.set_risk(first.risk.as_str(), None);
        Reloader {
            config_path,
            started: (first.listen, first.admin),
            started_runtime: first.runtime.clone(),
            metrics: ArcSwap::from_pointee(metrics),
            status: Mutex::new(ReloadStatus::default()),
            serial: Mutex::new(()),
        }
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The last reload attempt, with the snapshot serving at that moment:
    /// the two always agree (a reload changes both under one lock).
    pub fn status_with(&self, live: &Live) -> (ReloadStatus, Arc<Snapshot>) {
        let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        (status.clone(), live.snapshot.load_full())
    }

    /// Re-reads the config file and makes it serve if it is good. `force`
    /// applies it even if its text is what serves (SIGHUP). Counts, logs and
    /// records the result for `/status`. Blocking (file I/O): call it off the
    /// runtime's threads.
    pub fn apply(&self, live: &Live, force: bool) -> ReloadOutcome {
        let _serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let current = live.snapshot.load_full();
        let text = match config::read(&self.config_path) {
            Ok(t) => t,
            Err(e) => return self.reject(e.to_string()),
        };
        let text_hash = config::sha256_hex(&text);
        if !force && text_hash == current.sha256 {
            return self.unchanged();
        }
        let generation = current.settings.generation + 1;
        let compiled = match config::compile_str(&self.config_path, &text, generation) {
            Ok(c) => c,
            Err(e) => return self.reject(e.to_string()),
        };
        for w in &compiled.warnings {
            tracing::warn!(config = %self.config_path.display(), "{w}");
        }
        let changes = describe_changes(&current, &compiled);
        let (risk_before, risk) = (current.settings.risk, compiled.settings.risk);
        let restart_needed = self.restart_needed(&compiled.settings);
        let (consumer_before, consumer) = (
            current.settings.consumer.clone(),
            compiled.settings.consumer.clone(),
        );
        // The swap, the counters and the status change under the status
        // lock, and `/status` reads under it (`status_with`): a reader never
        // sees the new generation beside the previous reload's result.
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = live.apply(compiled, text_hash) {
            drop(status);
            return self.reject(e.to_string());
        }
        let metrics = if consumer_before == consumer {
            self.metrics.load_full()
        } else {
            // The old name's series go (as its routes' did), the new
            // name's start here.
            let m = live.registry.metrics();
            m.hide_consumer(&consumer_before);
            m.show_consumer(&consumer);
            let fresh = Arc::new(ProcessMetrics::new(m, &consumer));
            self.metrics.store(fresh.clone());
            fresh
        };
        metrics.reloads_ok.increment(1);
        metrics.generation.set(generation as f64);
        metrics.last_reload_successful.set(1.0);
        metrics.last_reload_success_timestamp.set(unix_now());
        let same_consumer = consumer_before == consumer;
        metrics.set_risk(risk.as_str(), same_consumer.then_some(risk_before.as_str()));
        if let Some(msg) = &restart_needed {
            tracing::warn!(config = %self.config_path.display(), "{msg}");
        }
        tracing::info!(
            generation,
            config = %self.config_path.display(),
            changes = %if changes.is_empty() { "nothing that applies changed".to_owned() } else { changes.join(", ") },
            "config applied"
        );
        *status = ReloadStatus {
            result: Some(ReloadResult::Ok),
            error: None,
            at: Some(SystemTime::now()),
            restart_needed,
        };
        ReloadOutcome::Applied(generation)
    }

    /// The file's text is what serves. After a rejected edit that is a
    /// revert: the file on disk is accepted again, and `/status`, the log
    /// and the counters say so.
    fn unchanged(&self) -> ReloadOutcome {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if status.result != Some(ReloadResult::Error) {
            return ReloadOutcome::Unchanged;
        }
        status.result = Some(ReloadResult::Ok);
        status.error = None;
        status.at = Some(SystemTime::now());
        let metrics = self.metrics.load();
        metrics.reloads_ok.increment(1);
        metrics.last_reload_successful.set(1.0);
        tracing::info!(config = %self.config_path.display(), "config file is the serving config again: the rejected edit is gone");
        ReloadOutcome::Reverted
    }

    /// Why `settings` cannot fully apply without a restart, if it cannot:
    /// its `listen` or `admin` differs from what the sockets were bound to,
    /// or a connection limit from what the listeners were built with.
    fn restart_needed(&self, settings: &Settings) -> Option<String> {
        let (listen, admin) = self.started;
        let mut restart = Vec::new();
        if settings.listen != listen {
            restart.push(format!("listen {listen} -> {}", settings.listen));
        }
        if settings.admin != admin {
            restart.push(format!("admin {admin} -> {}", settings.admin));
        }
        restart.extend(self.started_runtime.restart_only_changes(&settings.runtime));
        (!restart.is_empty())
            .then(|| format!("{} need a restart to take effect", restart.join(", ")))
    }

    fn reject(&self, error: String) -> ReloadOutcome {
        let metrics = self.metrics.load();
        metrics.reloads_error.increment(1);
        metrics.last_reload_successful.set(0.0);
        // One event, one line: the errors are joined, not printed on lines of their own.
        tracing::error!(config = %self.config_path.display(), errors = %error.replace('\n', "; "), "config rejected, last good config keeps serving");
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.result = Some(ReloadResult::Error);
        status.error = Some(error.clone());
        status.at = Some(SystemTime::now());
        ReloadOutcome::Rejected(error)
    }
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What a new config changes, key by key, for the log: `orders: shadow ->
/// streaming`, `orders.gate.failures: 3 -> 5`, `customers: added`,
/// `refunds: removed` (`config::changes`).
fn describe_changes(old: &Snapshot, new: &Compiled) -> Vec<String> {
    let old_routes: Vec<&config::Route> = old.routes.iter().map(|r| &r.config).collect();
    let new_routes: Vec<&config::Route> = new.routes.iter().collect();
    config::changes::describe((&old.settings, &old_routes), (&new.settings, &new_routes))
}
