//! Connections, for both listeners: admission (`limits.max_connections`),
//! the protocol told from the first bytes under a deadline, HTTP/1.1 or h2
//! served with every connection state bounded in time, and the drain on
//! shutdown.
//!
//! | connection state | bound |
//! | --- | --- |
//! | first bytes, until HTTP/1 or the whole h2 preface is seen | `handshake_timeout` |
//! | HTTP/1 request head, and the wait for the next one (keep-alive idle) | `head_timeout` (hyper's header read timer) |
//! | HTTP/1 request body pauses | `body_timeout` (in `upstream::RequestBody`) |
//! | h2 with no request for a while | `idle_timeout`, then GOAWAY |
//! | h2 peer that stops answering | a PING every `ping_interval`, closed after `ping_timeout` |

mod framing;
mod io;
mod target;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use self::io::ConnIo;
pub use self::io::{Refusal, refused};
pub use self::target::{MAX_HEAD_BYTES, RawTargets, for_hyper, raw_target};

/// The h2 connection preface (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The bounds on one listener's connections (`limits:` in the config).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections beyond this are closed at once and counted.
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
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
    Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<B> ConnBody for B where
    B: Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// A listener's connection figures, kept as plain atomics (no metric work
/// per connection or read); `/metrics` publishes them when scraped.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
    /// Woken each time a connection closes (the drain waits on it).
    closed: Notify,
}

impl Counters {
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
                        tracing::warn!(%peer, max_connections = limits.max_connections, "connection refused: max_connections are open");
                    }
                    drop(stream);
                    continue;
                };
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
                        _ = connection(stream, peer, &limits, service, (refusal, raw_targets), shutdown) => {}
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
struct Open(Arc<Counters>);

impl Open {
    fn admit(counters: &Arc<Counters>, max: usize) -> Option<Open> {
        let before = counters.open.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            counters.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Open(counters.clone()))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
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
) where
    S: ConnService<B>,
    B: ConnBody,
{
    let protocol = tokio::time::timeout(limits.handshake_timeout, sniff(&mut stream)).await;
    let (h2, seen) = match protocol {
        Ok(Ok(Some(found))) => found,
        // Closed before a byte, or a read error: nothing to answer.
        Ok(Ok(None) | Err(_)) => return,
        Err(_) => {
            tracing::debug!(%peer, "no protocol within handshake_timeout: closed");
            return;
        }
    };
    let result = if h2 {
        // Boxed: the h2 connection's state is several KiB, and every
        // (HTTP/1) connection's task would otherwise reserve room for it.
        Box::pin(async move {
            let io = TokioIo::new(ConnIo::new(stream, seen, None));
            let activity = Arc::new(Activity::new());
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(limits.ping_interval)
                .keep_alive_timeout(limits.ping_timeout)
                .serve_connection(
                    io,
                    Tracked {
                        inner: service,
                        activity: activity.clone(),
                    },
                );
            drive(conn, shutdown, Some((activity, limits.idle_timeout))).await
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
        drive(conn, shutdown, None).await
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

/// Polls `conn` to its end; on shutdown, or once an h2 connection has been
/// idle for `idle`, asks it to finish gracefully and keeps polling.
async fn drive<C, E>(
    conn: C,
    mut shutdown: watch::Receiver<bool>,
    idle: Option<(Arc<Activity>, Duration)>,
) -> Result<(), E>
where
    C: GracefulConnection<Error = E>,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let mut idle_check = idle.as_ref().map(|(_, d)| Instant::now() + *d);
    loop {
        let idle_at = idle_check;
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = sleep_until(idle_at), if !closing && idle_at.is_some() => {
                let Some((activity, d)) = &idle else { continue };
                match activity.idle_since() {
                    Some(since) if since.elapsed() >= *d => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Some(since) => idle_check = Some(since + *d),
                    None => idle_check = Some(Instant::now() + *d),
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

/// When an h2 connection last had a request in flight.
#[derive(Debug)]
struct Activity {
    /// Requests waiting for their response head.
    busy: AtomicUsize,
    /// When the last one started or got its head (or the connection
    /// started), in ms since `epoch()`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        let a = Activity {
            busy: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        };
        a.touch();
        a
    }

    /// Since when the connection has had nothing in flight, or `None` while
    /// something is.
    fn idle_since(&self) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(epoch() + Duration::from_millis(self.last_ms.load(Ordering::Acquire)))
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

/// An h2 connection's service, noting when requests start and end so the
/// connection can be closed once idle.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.busy.fetch_add(1, Ordering::AcqRel);
        self.activity.touch();
        let done = Done(self.activity.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let _done = done;
            fut.await
        })
    }
}

/// Marks a request done when its future completes or is dropped.
struct Done(Arc<Activity>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}
