//! Says when the config should be re-read: its file changed, or SIGHUP.
//! It only triggers (a message on a channel); `reload` applies.
//!
//! The watch is on the file's directory, not the file: editors that save by
//! renaming a new file over the old one, vim's backup-and-write, and the
//! Kubernetes ConfigMap `..data` symlink swap all replace the inode, which a
//! watch on the file itself would lose. Only events that name the config
//! file, or a link on the way to it (the ConfigMap's `..data`), count:
//! anything else written beside the config (a log, an editor's swap file)
//! never wakes a reload. Events are debounced, then the file is re-read;
//! unchanged content is a no-op.

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

/// The paths whose events concern the config at `path`: the path itself,
/// every symbolic link followed on the way to the real file (and the
/// links among the target's ancestors, like a ConfigMap's `..data`), and the
/// real file. Worked out again for each event: a swap moves the real file.
fn config_paths(path: &Path) -> Vec<PathBuf> {
    let mut paths = vec![path.to_owned()];
    let mut current = path.to_owned();
    // A handful of hops covers every real layout; a loop ends here too.
    for _ in 0..8 {
        let Ok(link) = std::fs::read_link(&current) else {
            break;
        };
        let target = current.parent().unwrap_or(Path::new("/")).join(link);
        let mut prefix = PathBuf::new();
        for part in target.components() {
            prefix.push(part);
            if prefix != target && prefix.is_symlink() {
                paths.push(prefix.clone());
            }
        }
        paths.push(target.clone());
        current = target;
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        paths.push(real);
    }
    paths
}

/// Whether a watch event is about the config at `path`.
fn concerns(event: &notify::Event, path: &Path) -> bool {
    if matches!(
        event.kind,
        // Opens and reads (ours included) are not changes.
        EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
    ) {
        return false;
    }
    let ours = config_paths(path);
    event.paths.iter().any(|p| ours.contains(p))
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
    let watched = path.clone();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if concerns(&ev, &watched) => signal.notify_one(),
        Ok(_) => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paths_of_a_configmap_mount_are_the_link_the_data_link_and_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::create_dir(root.join("..2026_01")).expect("payload dir");
        std::fs::write(root.join("..2026_01/cutover.yaml"), "x").expect("payload");
        std::os::unix::fs::symlink("..2026_01", root.join("..data")).expect("..data");
        std::os::unix::fs::symlink("..data/cutover.yaml", root.join("cutover.yaml"))
            .expect("user-visible link");
        let paths = config_paths(&root.join("cutover.yaml"));
        assert!(paths.contains(&root.join("cutover.yaml")), "{paths:?}");
        assert!(paths.contains(&root.join("..data")), "{paths:?}");
        let real = std::fs::canonicalize(root.join("..2026_01/cutover.yaml")).expect("real");
        assert!(paths.contains(&real), "{paths:?}");
        assert!(!paths.contains(&root.join("divergences.jsonl")));
    }

    #[tokio::test]
    async fn writes_beside_the_config_trigger_nothing_and_a_config_edit_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("cutover.yaml");
        std::fs::write(&config, "version: 1\n").expect("config");
        let (tx, mut rx) = mpsc::channel(4);
        let (_stop, shutdown) = watch::channel(false);
        let handle = spawn(config.clone(), tx, shutdown).expect("watch");
        // A log next to the config, written 20 times over a second.
        let log = dir.path().join("divergences.jsonl");
        for i in 0..20 {
            std::fs::write(&log, format!("line {i}\n")).expect("log line");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let quiet = tokio::time::timeout(Duration::from_millis(700), rx.recv()).await;
        assert!(
            quiet.is_err(),
            "a write beside the config triggered {quiet:?}"
        );
        std::fs::write(&config, "version: 1\n# edited\n").expect("edit");
        let trigger = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert_eq!(trigger.ok().flatten(), Some(Trigger::FileChanged));
        handle.stop();
    }
}
