//! Says when the config should be re-read: its file changed, or SIGHUP.
//! It only triggers (a message on a channel); `reload` applies.
//!
//! The watch is on the file's directory, not the file: editors that save by
//! renaming a new file over the old one, vim's backup-and-write, and the
//! Kubernetes ConfigMap `..data` symlink swap all replace the inode, which a
//! watch on the file itself would lose. Events are debounced, then the file
//! is re-read; unchanged content is a no-op.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::AccessKind;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// A request to re-read the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The file (or its directory) changed and has settled.
    FileChanged,
    /// SIGHUP: apply the file even if its text is what is serving.
    Hangup,
}

/// Quiet time after the last event before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest a burst of events can delay a reload.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// How long a vanished file (mid-save) may stay missing before that is an error.
const MISSING_GRACE: Duration = Duration::from_millis(1000);

/// A running watcher; dropping or stopping it ends the watch.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl WatchHandle {
    pub fn stop(self) {
        self.task.abort();
    }
}

/// The directories to watch: the file's own, and, when the file is a
/// symlink into another directory, the target's.
fn watched_dirs(path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = path.parent() {
        dirs.push(d.to_owned());
    }
    if let Ok(target) = std::fs::canonicalize(path)
        && let Some(d) = target.parent()
        && !dirs.iter().any(|x| d.starts_with(x))
    {
        dirs.push(d.to_owned());
    }
    dirs
}

/// Starts watching `path` and listening for SIGHUP; each settled change or
/// signal is sent on `triggers`.
pub fn spawn(
    path: PathBuf,
    triggers: mpsc::Sender<Trigger>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<WatchHandle, notify::Error> {
    let changed = Arc::new(Notify::new());
    let signal = changed.clone();
    let handler = move |res: notify::Result<notify::Event>| match res {
        // Opens and reads (ours included) are not changes.
        Ok(ev)
            if matches!(
                ev.kind,
                EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
            ) => {}
        Ok(_) => signal.notify_one(),
        Err(e) => tracing::warn!(error = %e, "config watch error"),
    };
    // Ask the kernel only for changes: without this mask every open of any
    // file in the directory wakes the watcher (measured: a busy file next to
    // the config doubled cutover's CPU per read).
    let config = notify::Config::default()
        .with_event_kinds(notify::EventKindMask::CORE | notify::EventKindMask::ACCESS_CLOSE);
    let mut watcher = notify::RecommendedWatcher::new(handler, config)?;
    for dir in watched_dirs(&path) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let task = tokio::spawn(async move {
        loop {
            let trigger = tokio::select! {
                _ = changed.notified() => Trigger::FileChanged,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Trigger::Hangup,
                _ = shutdown.changed() => return,
            };
            if trigger == Trigger::FileChanged {
                // One deadline for the whole burst, so a stream of saves is
                // still applied at least every `MAX_DELAY` (plus a moment
                // for a file that a save briefly removed).
                let deadline = tokio::time::Instant::now() + MAX_DELAY;
                settle(&changed, deadline).await;
                if wait_for_file(&path).await {
                    // Only just created: let its writer finish.
                    settle(&changed, tokio::time::Instant::now() + DEBOUNCE).await;
                }
            }
            if triggers.send(trigger).await.is_err() {
                return;
            }
        }
    });
    Ok(WatchHandle {
        _watcher: watcher,
        task,
    })
}

/// Waits until events stop for `DEBOUNCE`, or until `deadline`.
async fn settle(changed: &Notify, deadline: tokio::time::Instant) {
    loop {
        let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(deadline);
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep_until(quiet) => return,
        }
    }
}

/// Gives a save that deletes before it writes a moment to finish. Returns
/// whether the file was missing: then it has only just been created and
/// may not be fully written yet.
async fn wait_for_file(path: &Path) -> bool {
    let deadline = tokio::time::Instant::now() + MISSING_GRACE;
    let missing = !path.exists();
    while !path.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    missing
}
