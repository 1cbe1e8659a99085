//! Every wait in a test: bounded by `WAIT`, failing with what was awaited.
//!
//! ```ignore
//! let r = within(client.request(req)).await;                  // one await
//! wait_until("batch is hit", || batch.hits() == 1).await;     // a sync condition
//! let m = wait_until_async("a match is counted", || async {   // an async one,
//!     let m = p.scrape().await;                                // returning what
//!     if result(&m) == 1.0 { Ok(m) } else { Err(lines(&m)) }   // it saw last
//! })
//! .await;
//! let status = wait_exit(&mut child, "cutover exits");        // a child process
//! ```

use std::future::Future;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// The longest any single await, or any wait until something holds, may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(20);

/// Awaits `fut`, failing the test if it takes longer than `WAIT`.
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting"))
}

/// What a condition says: done (with a value), or not yet (with what it saw,
/// for the failure message).
pub trait Outcome {
    type Value;
    fn done(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();
    fn done(self) -> Result<(), String> {
        if self { Ok(()) } else { Err(String::new()) }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T> Outcome for Result<T, String> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self
    }
}

/// The deadline of one wait, and the limit it was set with.
struct Deadline(Instant, Duration);

impl Deadline {
    fn start() -> Deadline {
        Deadline::after(WAIT)
    }

    fn after(limit: Duration) -> Deadline {
        Deadline(Instant::now() + limit, limit)
    }

    fn left(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Fails the test, naming what was awaited, once the deadline has passed.
    fn check(&self, what: &str, last: &str) {
        if Instant::now() >= self.0 {
            let limit = self.1;
            if last.is_empty() {
                panic!("timed out after {limit:?} waiting until {what}");
            }
            panic!("timed out after {limit:?} waiting until {what}; last seen:\n{last}");
        }
    }
}

/// Checks `cond` every 20 ms until it holds and returns its value; fails
/// after `WAIT`.
pub async fn wait_until<O: Outcome>(what: &str, mut cond: impl FnMut() -> O) -> O::Value {
    wait_until_async(what, || std::future::ready(cond())).await
}

/// As `wait_until`, for a condition that has to await (a scrape, a read).
/// Each check is bounded by what is left of the same `WAIT`.
pub async fn wait_until_async<O, F, Fut>(what: &str, cond: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    wait_until_async_within(WAIT, what, cond).await
}

/// As `wait_until_async`, with a limit of its own: for what takes longer than
/// `WAIT` by nature (a Prometheus scrape interval, a block load), never to
/// paper over a slow step.
pub async fn wait_until_async_within<O, F, Fut>(
    limit: Duration,
    what: &str,
    mut cond: F,
) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = Deadline::after(limit);
    let mut last = String::new();
    loop {
        match tokio::time::timeout(deadline.left(), cond()).await {
            Ok(outcome) => match outcome.done() {
                Ok(value) => return value,
                Err(seen) => last = seen,
            },
            // Keep what the last finished check saw: it says why.
            Err(_) => last.push_str("\n(then a check that did not finish in time)"),
        }
        deadline.check(what, &last);
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (blocking, off any runtime) for `child` to exit; after `WAIT` kills
/// it and fails the test naming `what` and the output `context()` gives.
pub fn wait_exit(child: &mut Child, what: &str, context: impl Fn() -> String) -> ExitStatus {
    let deadline = Deadline::start();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if deadline.left().is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            deadline.check(what, &context());
        }
        std::thread::sleep(POLL);
    }
}
