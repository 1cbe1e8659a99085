//! Request bodies too large to keep in memory (`max_buffered_body`) but
//! small enough to send twice (`max_spooled_body`): written to a file under
//! `--data-dir` and read back for each attempt (a fallback, a shadow read).
//!
//! Bounds and clean-up:
//! - one body: at most `max_spooled_body` bytes (0: no spooling);
//! - all bodies being read at once: at most `limits.max_spooled_bytes`,
//!   a process-wide byte budget (as `limits.max_compared_bytes` is for
//!   comparisons); a body that would pass it streams once, as before;
//! - a file is removed when the last attempt that reads it is dropped
//!   (the read ended, failed, or the consumer went away);
//! - each process spools into a directory of its own under
//!   `<data-dir>/spool/`, named by its pid; at start-up the directories of
//!   processes that are gone (crashed or killed) are removed: a pid that no
//!   longer runs (Linux `/proc`), or this process's own pid on a directory
//!   it did not make (a container restarted with the same pid 1). A file
//!   lock would say it better, but `File::try_lock` needs Rust 1.89 and
//!   the crate's MSRV is 1.88.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::decide::budget::{Budget, Held};

/// The directory, under `--data-dir`, every process spools beneath.
pub const SPOOL_DIR: &str = "spool";
/// Bytes read back from a spool file per frame.
const READ_PIECE: usize = 64 * 1024;

/// The process's spool: where files go, and the budget they share.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    /// This process's directory, made (and locked) on first use, so a
    /// process that never spools writes nothing. `Err` keeps the reason
    /// it could not be made (logged once; bodies then stream once).
    mine: OnceLock<Result<ProcessDir, String>>,
    budget: Arc<Budget>,
    next: AtomicU64,
}

impl Spool {
    /// The spool under `data_dir`, with the directories of dead processes
    /// removed. `max_bytes` is `limits.max_spooled_bytes` (see `set_max`).
    pub fn new(data_dir: &Path, max_bytes: usize) -> Spool {
        let root = data_dir.join(SPOOL_DIR);
        remove_abandoned(&root);
        Spool {
            root,
            mine: OnceLock::new(),
            budget: Arc::new(Budget::new(max_bytes)),
            next: AtomicU64::new(0),
        }
    }

    /// Applies a reloaded `limits.max_spooled_bytes` (bodies already
    /// spooled keep their files).
    pub fn set_max(&self, max_bytes: usize) {
        self.budget.set_max(max_bytes);
    }

    /// Bytes held by spooled bodies now.
    pub fn used(&self) -> usize {
        self.budget.used()
    }

    /// This process's spool directory, if it exists (made on first use).
    pub fn dir(&self) -> Option<&Path> {
        match self.mine.get() {
            Some(Ok(d)) => Some(&d.path),
            _ => None,
        }
    }

    /// A new, empty spool file holding `reserve` bytes of the budget, or
    /// `None` when the budget cannot spare them or no file can be made.
    pub async fn create(&self, reserve: usize) -> Option<SpoolWriter> {
        let held = Held::new(self.budget.clone());
        if !held.take(reserve) {
            return None;
        }
        let dir = match self.mine.get_or_init(|| ProcessDir::make(&self.root)) {
            Ok(d) => &d.path,
            Err(_) => return None,
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{n}.body"));
        match tokio::fs::File::create(&path).await {
            Ok(out) => Some(SpoolWriter {
                out,
                file: SpoolFile { path, len: 0, held },
                reserved: reserve as u64,
            }),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot create a spool file: the request body streams once");
                None
            }
        }
    }
}

/// The spool directories this process made and still uses (one per
/// spool; a test process runs several).
fn ours() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    static OURS: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OURS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// One process's directory, removed with what is left in it when the
/// spool is dropped (a clean stop).
#[derive(Debug)]
struct ProcessDir {
    path: PathBuf,
}

impl ProcessDir {
    fn make(root: &Path) -> Result<ProcessDir, String> {
        let name = format!("{}-{:08x}", std::process::id(), fastrand::u32(..));
        let path = root.join(name);
        match std::fs::create_dir_all(&path) {
            Ok(()) => {
                ours().insert(path.clone());
                Ok(ProcessDir { path })
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot make the spool directory: request bodies past max_buffered_body stream once");
                Err(e.to_string())
            }
        }
    }
}

impl Drop for ProcessDir {
    fn drop(&mut self) {
        ours().remove(&self.path);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Whether the spool directory `path` was left by a process that is gone.
/// A name not of the form `PID-...` is not cutover's: kept.
fn abandoned(path: &Path) -> bool {
    let pid = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|p| p.parse::<u32>().ok());
    match pid {
        None => false,
        Some(pid) if pid == std::process::id() => !ours().contains(path),
        // Without /proc (not Linux) another pid is taken to be alive.
        Some(pid) => {
            Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
        }
    }
}

/// Removes the directories under `root` that processes now gone left.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if !abandoned(&path) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a spool directory a stopped process left")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a left-over spool directory")
            }
        }
    }
}

/// A body being written to its spool file.
pub struct SpoolWriter {
    out: tokio::fs::File,
    file: SpoolFile,
    /// Budget bytes taken so far (the body's length when it was known).
    reserved: u64,
}

impl SpoolWriter {
    /// Appends `data`, taking budget for what passes the reservation.
    /// `Ok(false)` when the budget cannot spare it (nothing written).
    pub async fn write(&mut self, data: &[u8]) -> io::Result<bool> {
        let after = self.file.len + data.len() as u64;
        if after > self.reserved {
            let more = usize::try_from(after - self.reserved).unwrap_or(usize::MAX);
            if !self.file.held.take(more) {
                return Ok(false);
            }
            self.reserved = after;
        }
        self.out.write_all(data).await?;
        self.file.len = after;
        Ok(true)
    }

    /// Bytes written so far.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.file.len
    }

    /// The file, complete: flushed, ready to be read any number of times.
    pub async fn finish(mut self) -> io::Result<Arc<SpoolFile>> {
        self.out.flush().await?;
        Ok(Arc::new(self.file))
    }
}

/// A spooled body on disk; the file goes (and its budget comes back) when
/// the last reader is dropped.
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
    len: u64,
    held: Arc<Held>,
}

impl SpoolFile {
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Opens the file for one more read from its start.
    pub fn open(&self) -> io::Result<tokio::fs::File> {
        // A local open is one quick syscall; doing it here keeps `replay`
        // synchronous.
        std::fs::File::open(&self.path).map(tokio::fs::File::from_std)
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a spool file");
        }
    }
}

/// One attempt's read of a spooled body, as body frames.
#[derive(Debug)]
pub struct SpoolReader {
    file: Arc<SpoolFile>,
    reader: tokio::fs::File,
    left: u64,
    piece: Vec<u8>,
}

impl SpoolReader {
    pub fn new(file: Arc<SpoolFile>) -> io::Result<SpoolReader> {
        let reader = file.open()?;
        Ok(SpoolReader {
            left: file.len,
            file,
            reader,
            piece: Vec::new(),
        })
    }

    /// The file this reads, for another attempt.
    pub fn file(&self) -> &Arc<SpoolFile> {
        &self.file
    }

    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// The next piece of the file; `None` once it has all been read.
    pub fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.left).map_or(READ_PIECE, |l| l.min(READ_PIECE));
        if self.piece.len() < want {
            self.piece.resize(want, 0);
        }
        let mut buf = ReadBuf::new(&mut self.piece[..want]);
        match Pin::new(&mut self.reader).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "spool file shorter than spooled",
                ))))
            }
            Poll::Ready(Ok(())) => {
                let data = Bytes::copy_from_slice(buf.filled());
                self.left -= data.len() as u64;
                Poll::Ready(Some(Ok(data)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn spooled(spool: &Spool, data: &[u8]) -> Arc<SpoolFile> {
        let mut w = spool.create(data.len()).await.expect("spool file");
        assert!(w.write(data).await.expect("write"));
        w.finish().await.expect("finish")
    }

    async fn read_all(file: Arc<SpoolFile>) -> Vec<u8> {
        let mut r = SpoolReader::new(file).expect("open");
        let mut out = Vec::new();
        while let Some(piece) = std::future::poll_fn(|cx| r.poll_piece(cx)).await {
            out.extend_from_slice(&piece.expect("read"));
        }
        out
    }

    #[tokio::test]
    async fn a_file_reads_back_whole_any_number_of_times_and_goes_with_its_last_reader() {
        let data = tempfile::tempdir().expect("temp dir");
        let spool = Spool::new(data.path(), 1 << 20);
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let file = spooled(&spool, &body).await;
        let path = file.path.clone();
        assert_eq!(read_all(file.clone()).await, body);
        assert_eq!(read_all(file.clone()).await, body);
        assert_eq!(spool.used(), body.len());
        drop(file);
        assert!(!path.exists(), "removed with its last reader");
        assert_eq!(spool.used(), 0, "budget given back");
    }

    #[tokio::test]
    async fn the_budget_bounds_all_spooled_bodies_together() {
        let data = tempfile::tempdir().expect("temp dir");
        let spool = Spool::new(data.path(), 1000);
        let first = spooled(&spool, &[1; 600]).await;
        assert!(
            spool.create(600).await.is_none(),
            "600 more would pass 1000"
        );
        // Unknown length: reserved as it is written, refused past the budget.
        let mut w = spool.create(0).await.expect("nothing reserved yet");
        assert!(w.write(&[2; 300]).await.expect("write"));
        assert!(!w.write(&[2; 300]).await.expect("write"), "past the budget");
        assert_eq!(w.len(), 300);
        drop((first, w));
        assert_eq!(spool.used(), 0);
    }

    #[tokio::test]
    async fn directories_left_by_dead_processes_are_removed_at_start_up_and_live_ones_kept() {
        let data = tempfile::tempdir().expect("temp dir");
        let spool = data.path().join(SPOOL_DIR);
        // A pid that cannot run (beyond Linux's pid_max), and this
        // process's own pid on a directory it never made (a restart that
        // got the same pid).
        let dead = spool.join(format!("{}-dead", u32::MAX));
        let same_pid = spool.join(format!("{}-before", std::process::id()));
        let not_ours = spool.join("keep-me");
        for d in [&dead, &same_pid, &not_ours] {
            std::fs::create_dir_all(d).expect("mkdir");
            std::fs::write(d.join("0.body"), b"left over").expect("write");
        }
        let live = Spool::new(data.path(), 1000);
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists(), "a gone process's directory is removed");
        }
        assert!(
            !same_pid.exists(),
            "a directory this pid did not make is removed"
        );
        assert!(
            not_ours.exists(),
            "a directory not named by cutover is kept"
        );
        let kept = spooled(&live, b"in flight").await;
        let live_dir = live.dir().expect("made on first use").to_owned();
        // A second process (here: a second spool) leaves the first one's alone.
        let _other = Spool::new(data.path(), 1000);
        assert!(live_dir.exists() && kept.path.exists());
        drop(kept);
        drop(live);
        assert!(!live_dir.exists(), "a clean stop removes its directory");
    }
}
