//! Connections, for both listeners: admission (`limits.max_connections`,
//! the longest-idle connection closed to make room), the protocol told
//! from the first bytes under a deadline, HTTP/1.1 or h2 served with every
//! connection state bounded in time, and the drain on shutdown.
//!
//! | connection state | bound |
//! | --- | --- |
//! | first bytes, until HTTP/1 or the whole h2 preface is seen | `handshake_timeout` |
//! | HTTP/1 request head, and the wait for the next one (keep-alive idle) | `head_timeout` (hyper's header read timer) |
//! | request body pauses, HTTP/1 and h2 (until the body is read) | `body_timeout` (in `upstream::RequestBody`) |
//! | the wait for the answer's head | the side's `timeout` (in `upstream`) |
//! | an h2 stream whose answer sends nothing (upstream stalled, or the consumer stopped reading) | `stream_idle_timeout`, then that stream alone is reset |
//! | h2 with no request for a while | `idle_timeout`, then GOAWAY |
//! | h2 peer that stops answering | a PING every `ping_interval`, closed after `ping_timeout` |
//! | idle (no request in flight) while `max_connections` are open and another arrives | the longest idle is closed gracefully (GOAWAY on h2) |

mod framing;
mod io;
mod stream;
mod target;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use self::io::ConnIo;
pub use self::io::{Refusal, refused};
use self::stream::{StreamExec, mark_stream_active};
pub use self::target::{MAX_HEAD_BYTES, RawTargets, for_hyper, raw_target};

/// The h2 connection preface (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The bounds on one listener's connections (`limits:` in the config).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Past this, a new connection closes the longest-idle one to get in,
    /// or is closed at once (and counted) when none is idle.
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    /// An h2 stream whose answer sends nothing for this long is reset.
    pub stream_idle_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Follow HTTP/1 framing to refuse both framings or repeated lengths
    /// (the consumer listener; the admin listener takes no bodies).
    pub strict_framing: bool,
}

/// What answers a connection's requests: any hyper service that hyper's
/// HTTP/1 and h2 servers can both run on tokio.
pub trait ConnService<B>:
    Service<Request<Incoming>, Response = Response<B>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> ConnService<B> for S where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A response body both servers can send.
pub trait ConnBody:
    Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + Unpin + 'static
{
}

impl<B> ConnBody for B where
    B: Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static
{
}

/// A listener's connection figures, kept as plain atomics (no metric work
/// per connection or read); `/metrics` publishes them when scraped.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections closed at once because `max_connections` were open
    /// and none of them was idle.
    pub refused: AtomicU64,
    /// Idle connections closed to admit a new one at `max_connections`.
    pub reclaimed: AtomicU64,
    /// Woken each time a connection closes (the drain waits on it).
    closed: Notify,
    /// Every open connection's activity, to find the longest idle one at
    /// the cap: one entry per open connection, removed when it closes.
    conns: Mutex<Conns>,
}

#[derive(Debug, Default)]
struct Conns {
    next: u64,
    by_id: HashMap<u64, Arc<Activity>>,
}

impl Counters {
    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the connection idle the longest (no request in flight; never
    /// one already asked) to close gracefully. False when none is idle.
    /// A scan of every open connection: it runs only at the cap, and keeps
    /// the per-request path to two atomics.
    fn reclaim_idle(&self) -> bool {
        let conns = self.conns();
        // Ties (the clock is in ms) go to the older connection.
        let victim = conns
            .by_id
            .iter()
            .filter(|(_, a)| !a.reclaimed.load(Ordering::Acquire))
            .filter_map(|(id, a)| a.idle_since_ms().map(|ms| ((ms, *id), a)))
            .min_by_key(|(key, _)| *key);
        let Some((_, activity)) = victim else {
            return false;
        };
        // Under the lock: no other caller can pick the same one.
        activity.reclaimed.store(true, Ordering::Release);
        activity.reclaim.notify_one();
        self.reclaimed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Returns once no connection is open.
    async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// The reads in flight across the process (`limits.max_inflight_reads`).
#[derive(Debug, Default)]
pub struct ReadSlots {
    /// Reads waiting for an upstream's answer now.
    pub inflight: AtomicUsize,
    /// Reads shed with 503 because `max_inflight_reads` were in flight.
    pub shed: AtomicU64,
}

impl ReadSlots {
    /// A slot for one read, or `None` (counted as shed) when `max` are taken.
    pub fn admit(&self, max: usize) -> Option<ReadSlot<'_>> {
        if self.inflight.fetch_add(1, Ordering::AcqRel) >= max {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            self.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(ReadSlot(self))
    }
}

/// One read's slot; given back when dropped.
pub struct ReadSlot<'a>(&'a ReadSlots);

impl Drop for ReadSlot<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection's service is built from.
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// On HTTP/1 with strict framing: the first refused request, once seen.
    pub refusal: Refusal,
    /// On HTTP/1 with strict framing: targets hyper saw percent-encoded,
    /// as the consumer sent them (`target`).
    pub raw_targets: RawTargets,
}

/// Accepts on `listener` until `shutdown` flips, then stops accepting,
/// asks every connection to finish (GOAWAY on h2, close after the current
/// read on HTTP/1) and gives them `grace` before cutting the rest.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    limits: ConnLimits,
    counters: Arc<Counters>,
    make_service: M,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) where
    M: Fn(ConnInfo) -> S,
    S: ConnService<B>,
    B: ConnBody,
{
    let limits = Arc::new(limits);
    // Set once the grace period is over: connections still open are cut.
    let (cut_tx, cut) = watch::channel(false);
    let mut last_refusal_warning = None::<Instant>;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Some(open) = Open::admit(&counters, limits.max_connections) else {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    if last_refusal_warning.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1)) {
                        last_refusal_warning = Some(Instant::now());
                        tracing::warn!(%peer, max_connections = limits.max_connections, "connection refused: max_connections are open, none idle");
                    }
                    drop(stream);
                    continue;
                };
                let activity = open.activity.clone();
                let _ = stream.set_nodelay(true);
                let refusal = Refusal::default();
                let raw_targets = RawTargets::default();
                let service = make_service(ConnInfo { peer, refusal: refusal.clone(), raw_targets: raw_targets.clone() });
                let limits = limits.clone();
                let shutdown = shutdown.clone();
                let mut cut = cut.clone();
                // Detached: a finished connection's task is freed at once
                // (a JoinSet would keep each one until reaped).
                tokio::spawn(async move {
                    tokio::select! {
                        _ = connection(stream, peer, &limits, service, (refusal, raw_targets), shutdown, &activity) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                    drop(open);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    match tokio::time::timeout(grace, counters.all_closed()).await {
        Ok(()) => tracing::debug!("every connection finished"),
        Err(_) => {
            let open = counters.open.load(Ordering::Acquire);
            tracing::warn!(
                ?grace,
                open,
                "shutdown grace period over; cutting remaining connections"
            );
            let _ = cut_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(1), counters.all_closed()).await;
        }
    }
}

/// One admitted connection; gives its slot back when dropped.
struct Open {
    counters: Arc<Counters>,
    id: u64,
    activity: Arc<Activity>,
}

impl Open {
    /// A slot, when fewer than `max` are open or an idle connection was
    /// asked to close to make room (`None`: refused). The one asked closes
    /// within a moment (it has nothing in flight), so for that moment one
    /// more than `max` may be open.
    fn admit(counters: &Arc<Counters>, max: usize) -> Option<Open> {
        let before = counters.open.fetch_add(1, Ordering::AcqRel);
        if before >= max && !counters.reclaim_idle() {
            counters.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let activity = Arc::new(Activity::new());
        let mut conns = counters.conns();
        let id = conns.next;
        conns.next += 1;
        conns.by_id.insert(id, activity.clone());
        drop(conns);
        Some(Open {
            counters: counters.clone(),
            id,
            activity,
        })
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.counters.conns().by_id.remove(&self.id);
        self.counters.open.fetch_sub(1, Ordering::AcqRel);
        self.counters.closed.notify_waiters();
    }
}

/// Tells the protocol, then serves the connection to its end.
async fn connection<S, B>(
    mut stream: TcpStream,
    peer: SocketAddr,
    limits: &ConnLimits,
    service: S,
    follow: (Refusal, RawTargets),
    shutdown: watch::Receiver<bool>,
    activity: &Arc<Activity>,
) where
    S: ConnService<B>,
    B: ConnBody,
{
    let mut reclaim = std::pin::pin!(activity.reclaim.notified());
    let protocol = tokio::select! {
        p = tokio::time::timeout(limits.handshake_timeout, sniff(&mut stream)) => p,
        // Nothing was read yet: nothing to finish.
        _ = reclaim.as_mut() => return,
    };
    let (h2, seen) = match protocol {
        Ok(Ok(Some(found))) => found,
        // Closed before a byte, or a read error: nothing to answer.
        Ok(Ok(None) | Err(_)) => return,
        Err(_) => {
            tracing::debug!(%peer, "no protocol within handshake_timeout: closed");
            return;
        }
    };
    let service = Tracked {
        inner: service,
        activity: activity.clone(),
        h2,
    };
    let result = if h2 {
        // Boxed: the h2 connection's state is several KiB, and every
        // (HTTP/1) connection's task would otherwise reserve room for it.
        Box::pin(async move {
            let io = TokioIo::new(ConnIo::new(stream, seen, None));
            let conn = http2::Builder::new(StreamExec::new(limits.stream_idle_timeout))
                .timer(TokioTimer::new())
                .keep_alive_interval(limits.ping_interval)
                .keep_alive_timeout(limits.ping_timeout)
                .serve_connection(io, service);
            drive(conn, shutdown, reclaim, activity, Some(limits.idle_timeout)).await
        })
        .await
    } else {
        let follow = limits.strict_framing.then_some(follow);
        let io = TokioIo::new(ConnIo::new(stream, seen, follow));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.head_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(io, service);
        drive(conn, shutdown, reclaim, activity, None).await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Reads until the bytes are either the whole h2 preface (`true`) or not a
/// prefix of it (`false`, HTTP/1). `None` when the peer closed first.
async fn sniff(stream: &mut TcpStream) -> std::io::Result<Option<(bool, Bytes)>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        len += n;
        let seen = &buf[..len];
        if seen != &H2_PREFACE[..len] {
            return Ok(Some((false, Bytes::copy_from_slice(seen))));
        }
        if len == H2_PREFACE.len() {
            return Ok(Some((true, Bytes::copy_from_slice(seen))));
        }
    }
}

/// Polls `conn` to its end; on shutdown, when reclaimed at the cap, or
/// once an h2 connection has been idle for `idle`, asks it to finish
/// gracefully (GOAWAY on h2; on HTTP/1 a close now if between requests,
/// else after the current one) and keeps polling.
async fn drive<C, E>(
    conn: C,
    mut shutdown: watch::Receiver<bool>,
    mut reclaim: Pin<&mut tokio::sync::futures::Notified<'_>>,
    activity: &Activity,
    idle: Option<Duration>,
) -> Result<(), E>
where
    C: GracefulConnection<Error = E>,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let mut idle_check = idle.map(|d| Instant::now() + d);
    loop {
        let idle_at = idle_check;
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = reclaim.as_mut(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = sleep_until(idle_at), if !closing && idle_at.is_some() => {
                let Some(d) = idle else { continue };
                match activity.idle_since() {
                    Some(since) if since.elapsed() >= d => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Some(since) => idle_check = Some(since + d),
                    None => idle_check = Some(Instant::now() + d),
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Whether a connection has a request in flight, and since when it has
/// had none: read by the h2 idle timer and by the reclaim at the cap.
#[derive(Debug)]
struct Activity {
    /// Requests whose answer is not sent to its end yet.
    busy: AtomicUsize,
    /// When the last one started or finished (or the connection started),
    /// in ms since `epoch()`.
    last_ms: AtomicU64,
    /// Chosen to close to make room at the cap (once).
    reclaimed: AtomicBool,
    /// Woken when chosen.
    reclaim: Notify,
}

impl Activity {
    fn new() -> Activity {
        let a = Activity {
            busy: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            reclaimed: AtomicBool::new(false),
            reclaim: Notify::new(),
        };
        a.touch();
        a
    }

    /// Since when the connection has had nothing in flight, or `None` while
    /// something is.
    fn idle_since(&self) -> Option<Instant> {
        self.idle_since_ms()
            .map(|ms| epoch() + Duration::from_millis(ms))
    }

    fn idle_since_ms(&self) -> Option<u64> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.last_ms.load(Ordering::Acquire))
    }

    fn touch(&self) {
        let ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::AcqRel);
    }
}

/// The origin of every connection's activity clock.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A connection's service, counting each request as in flight from the
/// call until its answer is sent to its end (or dropped), so the
/// connection is known idle between requests.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    /// On h2, the answer's head and body pieces are the stream's activity
    /// (`stream`).
    h2: bool,
}

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.busy.fetch_add(1, Ordering::AcqRel);
        self.activity.touch();
        TrackedFuture {
            inner: self.inner.call(req),
            done: Some(Done(self.activity.clone())),
            h2: self.h2,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer's head on its way: the inner future, polled in place.
    /// A named type rather than a boxed `async` block wrapping the inner
    /// future: the block held that future twice (once captured, once
    /// awaited: 14.5 KB for a 7 KB read), and boxing it copied all of it on
    /// every read (benches/allocs.rs, bench/callgrind.sh).
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        done: Option<Done>,
        h2: bool,
    }
}

impl<F, B> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<TrackedBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = match std::task::ready!(this.inner.poll(cx)) {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        if *this.h2 {
            // Polled in the stream's task: the head is ready.
            mark_stream_active();
        }
        let (done, h2) = (this.done.take(), *this.h2);
        Poll::Ready(Ok(resp.map(|inner| TrackedBody { inner, done, h2 })))
    }
}

/// An answer's body; the request stays in flight until it ends.
pub struct TrackedBody<B> {
    inner: B,
    done: Option<Done>,
    h2: bool,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(_)) if this.h2 => mark_stream_active(),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => this.done = None,
        }
        if this.inner.is_end_stream() {
            this.done = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Marks a request done when its answer ends or is dropped.
struct Done(Arc<Activity>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}
