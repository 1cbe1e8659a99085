//! The idle timer of each h2 stream (`limits.stream_idle_timeout`, as
//! Envoy's `stream_idle_timeout`): a stream whose answer has sent nothing
//! for that long, because the upstream stalled mid-body or the consumer
//! stopped reading (no flow-control window), is reset alone; the other
//! streams on the connection go on.
//!
//! hyper runs each h2 stream as a future it hands to the connection's
//! executor. This executor runs it under a timer; the answer's head and
//! every piece of its body mark the stream active (`mark_stream_active`,
//! called from the stream's own poll), and a timer that fires with no mark
//! since drops the stream's future, which makes h2 send RST_STREAM(CANCEL).
//! When the consumer stops reading, hyper stops polling the body, so no
//! mark comes: the timer sees that as well as an upstream that stalls.
//!
//! The timer starts at the answer's head: before it, the request body's
//! pauses are bounded by `body_timeout` and the wait for the head by the
//! side's `timeout`, and a long upload must not be cut by this one.

use std::cell::Cell;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

thread_local! {
    /// Set while a stream's future is polled, when it made progress.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Notes that the stream being polled sent something (its answer's head or
/// a piece of its body). Outside a stream's poll it does nothing that lasts.
pub fn mark_stream_active() {
    ACTIVE.set(true);
}

/// Runs `f` (one poll of a stream) and says whether it marked the stream
/// active; a poll nested in it keeps its own marks.
fn polled<T>(f: impl FnOnce() -> T) -> (T, bool) {
    let outer = ACTIVE.replace(false);
    let out = f();
    (out, ACTIVE.replace(outer))
}

/// The h2 connection's executor: spawns each stream on tokio under its
/// idle timer.
#[derive(Debug, Clone, Copy)]
pub struct StreamExec {
    idle: Duration,
}

impl StreamExec {
    pub fn new(idle: Duration) -> StreamExec {
        StreamExec { idle }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(watched(stream, self.idle));
    }
}

/// Polls `stream` to its end, or drops it once `idle` passed since it last
/// sent something (counted from its answer's head).
async fn watched<F: Future<Output = ()>>(stream: F, idle: Duration) {
    let mut stream = std::pin::pin!(stream);
    // Armed at the first mark; moved on lazily: a mark only writes the
    // deadline, the timer is reset when it fires early.
    let mut deadline: Option<Instant> = None;
    let mut timer = std::pin::pin!(tokio::time::sleep(idle));
    let finished = std::future::poll_fn(|cx| {
        let (done, active) = polled(|| stream.as_mut().poll(cx));
        if done.is_ready() {
            return Poll::Ready(true);
        }
        if active {
            let next = Instant::now() + idle;
            if deadline.is_none() {
                timer.as_mut().reset(next);
            }
            deadline = Some(next);
        }
        let Some(at) = deadline else {
            return Poll::Pending;
        };
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= at {
                return Poll::Ready(false);
            }
            timer.as_mut().reset(at);
        }
        Poll::Pending
    })
    .await;
    if !finished {
        tracing::debug!(
            ?idle,
            "h2 stream sent nothing for stream_idle_timeout: reset"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_seen_by_the_poll_it_happened_in_only() {
        let ((), outer) = polled(|| {
            let ((), inner) = polled(mark_stream_active);
            assert!(inner);
        });
        assert!(!outer, "the nested poll's mark stays its own");
        let ((), marked) = polled(|| {
            mark_stream_active();
            let ((), _) = polled(|| ());
        });
        assert!(marked, "a nested poll keeps the outer mark");
    }

    #[tokio::test]
    async fn a_stream_that_sends_nothing_after_its_head_is_dropped() {
        let idle = Duration::from_millis(100);
        // Marks once (its head), then never finishes.
        let stalls = async {
            std::future::poll_fn(|_| {
                mark_stream_active();
                Poll::Ready(())
            })
            .await;
            std::future::pending::<()>().await;
        };
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), watched(stalls, idle))
            .await
            .expect("dropped after idle");
        assert!(started.elapsed() >= idle, "{:?}", started.elapsed());
        // Never marked (no head yet): not timed here.
        let started = Instant::now();
        watched(tokio::time::sleep(idle * 3), idle).await;
        assert!(started.elapsed() >= idle * 3, "{:?}", started.elapsed());
    }
}
