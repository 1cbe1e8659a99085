//! Applying the config file again: read, compile, bind, swap, or keep the
//! last good config serving. The watcher (`config::watch`) only says when;
//! this module does it, counts it, logs it and keeps what `/status` shows.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::config;
use crate::live::Live;
use crate::metrics::ProcessMetrics;
use crate::routing::fnv1a;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file parsed and is now live at this generation.
    Applied(u64),
    /// The file's content is what is already live; nothing changed.
    Unchanged,
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
    metrics: ProcessMetrics,
    status: Mutex<ReloadStatus>,
    /// Serialises reloads (watcher and SIGHUP may race); never taken per read.
    serial: Mutex<()>,
}

impl Reloader {
    pub fn new(config_path: PathBuf, metrics: ProcessMetrics) -> Reloader {
        metrics.generation.set(1.0);
        Reloader {
            config_path,
            metrics,
            status: Mutex::new(ReloadStatus::default()),
            serial: Mutex::new(()),
        }
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The last reload attempt.
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the config file and makes it serve if it is good. `force`
    /// applies it even if its text is what serves (SIGHUP). Counts, logs and
    /// records the result for `/status`. Blocking (file I/O): call it off the
    /// runtime's threads.
    pub fn apply(&self, live: &Live, force: bool) -> ReloadOutcome {
        let _serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let current = live.snapshot.load();
        let text = match config::read(&self.config_path) {
            Ok(t) => t,
            Err(e) => return self.reject(e.to_string()),
        };
        let text_hash = fnv1a(text.as_bytes());
        if !force && text_hash == current.source_hash {
            return ReloadOutcome::Unchanged;
        }
        let generation = current.settings.generation + 1;
        let compiled = match config::compile_str(&self.config_path, &text, generation) {
            Ok(c) => c,
            Err(e) => return self.reject(e.to_string()),
        };
        let (old, new) = (&current.settings, &compiled.settings);
        let mut restart = Vec::new();
        if new.listen != old.listen {
            restart.push(format!("listen {} -> {}", old.listen, new.listen));
        }
        if new.admin != old.admin {
            restart.push(format!("admin {} -> {}", old.admin, new.admin));
        }
        if let Err(e) = live.apply(compiled, text_hash) {
            return self.reject(e.to_string());
        }
        self.metrics.reloads_ok.increment(1);
        self.metrics.generation.set(generation as f64);
        let restart_needed = (!restart.is_empty()).then(|| {
            let msg = format!("{} need a restart to take effect", restart.join(", "));
            tracing::warn!(config = %self.config_path.display(), "{msg}");
            msg
        });
        tracing::info!(generation, config = %self.config_path.display(), "config applied");
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = ReloadStatus {
            result: Some(ReloadResult::Ok),
            error: None,
            at: Some(SystemTime::now()),
            restart_needed,
        };
        ReloadOutcome::Applied(generation)
    }

    fn reject(&self, error: String) -> ReloadOutcome {
        self.metrics.reloads_error.increment(1);
        tracing::error!(config = %self.config_path.display(), "config rejected, last good config keeps serving:\n{error}");
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.result = Some(ReloadResult::Error);
        status.error = Some(error.clone());
        status.at = Some(SystemTime::now());
        ReloadOutcome::Rejected(error)
    }
}
