//! Pooled upstream clients (plain HTTP/1.1, and HTTPS through rustls with h2
//! or HTTP/1.1 by ALPN), the request body type that can be sent twice, and
//! one upstream attempt with its timeout.

mod h1;
pub mod spool;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use self::spool::{Spool, SpoolFile, SpoolReader};
use crate::config::Side;

/// A legacy hyper-util client: HTTPS upstreams (rustls, h2 or HTTP/1.1 by ALPN).
type TlsClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// A side's client: plain HTTP upstreams get cutover's own lean HTTP/1.1
/// pool (`Http1Pool`), HTTPS upstreams the hyper-util client with rustls.
#[derive(Clone)]
pub enum UpstreamClient {
    Http1(Arc<Http1Pool>),
    Tls(Box<TlsClient>),
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamClient::Http1(p) => write!(f, "Http1({:?})", p.target),
            UpstreamClient::Tls(_) => f.write_str("Tls"),
        }
    }
}

/// Errors from either client, boxed: only their text is ever used (logs).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an upstream attempt produced no response head.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// Refused, reset, DNS, TLS: anything before or instead of a response head.
    #[error("upstream connection failed: {0}")]
    Connect(#[source] BoxError),
    /// An answer cutover cannot frame as HTTP/1.1 (a bad head, conflicting
    /// lengths): the side failed as surely as a reset.
    #[error("upstream answered malformed HTTP: {0}")]
    Protocol(&'static str),
    /// No response head within the side's timeout.
    #[error("no response head within {0:?}")]
    Timeout(Duration),
}

/// One read as it goes to an upstream: the method, the side's path and
/// query, the cleaned headers and the body. Method and headers are borrowed
/// on the hot path (a fallback sends the same ones again, no copy) and owned
/// by reads that run in a task of their own (comparisons, probes).
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub method: Cow<'a, Method>,
    /// Already valid: built from the read's URI and the side's.
    pub path_and_query: String,
    pub headers: Cow<'a, HeaderMap>,
    pub body: RequestBody,
}

impl Outgoing<'_> {
    /// As an `http::Request` with `uri`, for hyper's clients.
    fn into_request(self, uri: Uri) -> Request<RequestBody> {
        // A body of unknown length (the consumer sent it chunked; that
        // header went as hop-by-hop) is sent chunked again: left to itself,
        // hyper sends a GET of unknown length with no body at all, and a
        // search read would be answered for a different query.
        let chunked = self.body.size_hint().exact().is_none();
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method.into_owned();
        *req.uri_mut() = uri;
        *req.headers_mut() = self.headers.into_owned();
        if chunked {
            req.headers_mut().insert(
                http::header::TRANSFER_ENCODING,
                http::HeaderValue::from_static("chunked"),
            );
        }
        req
    }
}

/// Sends one read to `side` and waits for its response head, at most the
/// side's timeout.
pub async fn attempt(
    client: &UpstreamClient,
    side: &Side,
    out: Outgoing<'_>,
) -> Result<Response<UpstreamBody>, AttemptError> {
    let timeout = side.timeout;
    let sent = async {
        match client {
            UpstreamClient::Http1(pool) => pool.send(out).await,
            UpstreamClient::Tls(c) => {
                // hyper-util's client wants the absolute URI, and a target
                // hyper can parse (`conn::for_hyper`).
                let uri = Uri::builder()
                    .scheme(side.scheme.clone())
                    .authority(side.authority.clone())
                    .path_and_query(crate::net::conn::for_hyper(&out.path_and_query).as_ref())
                    .build()
                    .map_err(BoxError::from)?;
                c.request(out.into_request(uri))
                    .await
                    .map(|r| r.map(|b| UpstreamBody::new(BodyKind::Hyper(b))))
                    .map_err(BoxError::from)
            }
        }
    };
    match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(match e.downcast_ref::<h1::ExchangeError>() {
            Some(h1::ExchangeError::Malformed(what)) => AttemptError::Protocol(what),
            _ => AttemptError::Connect(e),
        }),
        Err(_) => Err(AttemptError::Timeout(timeout)),
    }
}

/// Idle connections kept per plain-HTTP upstream.
const MAX_IDLE: usize = 1024;
/// Idle connections older than this are closed as others come back.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A lean keep-alive pool for one plain-HTTP upstream (one authority).
///
/// Why not the hyper-util client here: it runs every connection in a task of
/// its own, boxes each request, hashes a pool key under a lock and spawns a
/// task to return the connection. Here a read takes an idle connection off a
/// stack, drives the exchange itself (`h1`), and the response body puts the
/// connection back when it has been read to the end.
///
/// The retry rule: a read is sent again, on a fresh connection, only when a
/// reused connection failed before any response byte came back (the upstream
/// had closed it while idle) and the method is idempotent (RFC 9112 9.3.1).
pub struct Http1Pool {
    connector: HttpConnector,
    /// `http://authority/`, what the connector dials.
    target: http::Uri,
    host: http::HeaderValue,
    idle: Mutex<VecDeque<h1::Conn>>,
}

impl Http1Pool {
    fn new(connector: HttpConnector, authority: &http::uri::Authority) -> Option<Http1Pool> {
        let target = http::Uri::builder()
            .scheme("http")
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .ok()?;
        Some(Http1Pool {
            connector,
            target,
            host: http::HeaderValue::from_str(authority.as_str()).ok()?,
            idle: Mutex::new(VecDeque::new()),
        })
    }

    /// The most recently used idle connection that is still open.
    fn take_idle(&self) -> Option<h1::Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut conn) = idle.pop_back() {
            if conn.still_open() {
                return Some(conn);
            }
        }
        None
    }

    fn give_back(&self, mut conn: h1::Conn) {
        let now = Instant::now();
        conn.idle_since = now;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while idle
            .front()
            .is_some_and(|c| now.duration_since(c.idle_since) > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(conn);
        }
    }

    /// Closes idle connections the upstream has closed, and those idle for
    /// longer than `IDLE_TIMEOUT`.
    fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain_mut(|c| now.duration_since(c.idle_since) <= IDLE_TIMEOUT && c.still_open());
    }

    async fn dial(&self) -> Result<tokio::net::TcpStream, BoxError> {
        let mut connector = self.connector.clone();
        let io = tower_service::Service::call(&mut connector, self.target.clone()).await?;
        Ok(io.into_inner())
    }

    async fn send(self: &Arc<Self>, out: Outgoing<'_>) -> Result<Response<UpstreamBody>, BoxError> {
        let method = &*out.method;
        let mut head = Vec::with_capacity(512);
        let (bytes, spooled) = match out.body {
            RequestBody::Buffered(ref b) => (b.clone(), None),
            // Sent from its file on a pooled connection, as a buffered body
            // is: the target goes out as the consumer wrote it.
            RequestBody::Spooled(ref r) => (None, Some(r.file().clone())),
            RequestBody::Streaming { .. } => return self.send_streaming(out).await,
        };
        let body = match &spooled {
            Some(file) => {
                h1::encode_head(
                    &mut head,
                    method,
                    out.path_and_query.as_str(),
                    &self.host,
                    &out.headers,
                    file.len(),
                );
                Some(h1::Payload::File(file))
            }
            None => {
                let separate = h1::encode_request(
                    &mut head,
                    method,
                    out.path_and_query.as_str(),
                    &self.host,
                    &out.headers,
                    bytes.as_ref(),
                );
                bytes.as_ref().filter(|_| separate).map(h1::Payload::Bytes)
            }
        };
        let head_request = *method == Method::HEAD;
        let idempotent = matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        loop {
            let (mut conn, reused) = match self.take_idle() {
                Some(conn) => (conn, true),
                None => (h1::Conn::new(self.dial().await?), false),
            };
            let mut got_bytes = false;
            match conn
                .exchange(
                    &head,
                    body.as_ref().map(h1::Payload::again),
                    head_request,
                    &mut got_bytes,
                )
                .await
            {
                Ok(resp) => {
                    let resp = resp.into_response(conn, self.clone());
                    return Ok(resp.map(|b| UpstreamBody::new(BodyKind::H1(b))));
                }
                Err(e) if reused && idempotent && e.is_stale_connection(got_bytes) => {
                    tracing::debug!(upstream = %self.target, "pooled connection was closed by the upstream; retrying on a fresh one");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A request whose body is too large to buffer streams through a
    /// connection of its own (hyper's client connection, not pooled).
    async fn send_streaming(&self, out: Outgoing<'_>) -> Result<Response<UpstreamBody>, BoxError> {
        // An HTTP/1.1 connection speaks origin-form with a Host header.
        let uri = Uri::try_from(crate::net::conn::for_hyper(&out.path_and_query).as_ref())?;
        let mut req = out.into_request(uri);
        req.headers_mut()
            .insert(http::header::HOST, self.host.clone());
        let io = hyper_util::rt::TokioIo::new(self.dial().await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        let resp = sender.send_request(req).await?;
        Ok(resp.map(|b| UpstreamBody::new(BodyKind::Hyper(b))))
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    #[error("reading the request body failed: {0}")]
    Read(#[source] hyper::Error),
    #[error("the request body paused for more than {0:?}")]
    Stalled(Duration),
    /// cutover's own disk failed it, not the consumer.
    #[error("spooling the request body failed: {0}")]
    Spool(#[source] std::io::Error),
}

/// An upstream response body: read straight off a pooled HTTP/1.1
/// connection (which goes back to its pool once the body has been read to
/// the end), or hyper's (HTTPS, and large-request connections).
#[derive(Debug)]
pub struct UpstreamBody(BodyKind, Trailers);

/// What becomes of the upstream's trailer fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trailers {
    Relay,
    /// The consumer did not send `TE: trailers`: the body ends without them
    /// (hyper's HTTP/1 server would drop them; its h2 server would not).
    Drop,
}

impl UpstreamBody {
    fn new(kind: BodyKind) -> UpstreamBody {
        UpstreamBody(kind, Trailers::Relay)
    }

    /// Ends the body at its data: trailer fields are not passed on.
    pub fn drop_trailers(&mut self) {
        self.1 = Trailers::Drop;
    }

    /// A body whose first frames were read ahead (a contract check holds an
    /// answer before serving it): `frames` go out first, in order, then
    /// `rest` (none when the body ended within them), then `error` (how
    /// the upstream body failed while it was read ahead, passed on as the
    /// consumer would have met it).
    pub fn held(
        frames: VecDeque<Frame<Bytes>>,
        rest: Option<UpstreamBody>,
        error: Option<BoxError>,
    ) -> UpstreamBody {
        UpstreamBody::new(BodyKind::Held(Box::new(HeldBody {
            frames,
            rest,
            error,
        })))
    }
}

#[derive(Debug)]
enum BodyKind {
    H1(h1::Body),
    Hyper(Incoming),
    Held(Box<HeldBody>),
}

/// Frames read ahead, then the rest of the body (`UpstreamBody::held`).
#[derive(Debug)]
struct HeldBody {
    frames: VecDeque<Frame<Bytes>>,
    rest: Option<UpstreamBody>,
    error: Option<BoxError>,
}

impl HeldBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(e) = self.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let ahead: u64 = self
            .frames
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        match &self.rest {
            None => SizeHint::with_exact(ahead),
            Some(rest) => {
                let h = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(h.lower() + ahead);
                if let Some(upper) = h.upper() {
                    hint.set_upper(upper + ahead);
                }
                hint
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.0 {
            BodyKind::H1(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            BodyKind::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            BodyKind::Held(b) => b.poll_frame(cx),
        };
        match polled {
            // Trailers come last: the body ends there.
            Poll::Ready(Some(Ok(f))) if f.is_trailers() && self.1 == Trailers::Drop => {
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::H1(b) => b.is_end_stream(),
            BodyKind::Hyper(b) => b.is_end_stream(),
            BodyKind::Held(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::H1(b) => b.size_hint(),
            BodyKind::Hyper(b) => b.size_hint(),
            BodyKind::Held(b) => b.size_hint(),
        }
    }
}

/// What distinguishes two clients: for plain HTTP the upstream authority and
/// connect timeout; for HTTPS the connect timeout and CA file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ClientKey {
    Http1(String, Duration),
    Tls(Duration, Option<PathBuf>),
}

/// Process-wide cache of clients so connection pools survive reloads: a
/// reload that keeps a side's upstream and timeouts keeps its pool.
#[derive(Clone, Default)]
pub struct Upstreams {
    clients: Arc<Mutex<HashMap<ClientKey, UpstreamClient>>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upstreams")
    }
}

/// A CA file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("ca_file {path}: {reason}")]
pub struct CaFileError {
    pub path: PathBuf,
    pub reason: String,
}

impl Upstreams {
    /// Housekeeping, every few seconds: closes dead and long-idle plain-HTTP
    /// connections (with no traffic nobody else would), and forgets pools
    /// that no config uses any more (an upstream a reload removed), closing
    /// their connections.
    pub fn sweep(&self) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain(|_, client| match client {
            // Only this cache holds it: no snapshot, no read in flight.
            UpstreamClient::Http1(pool) if Arc::strong_count(pool) == 1 => false,
            UpstreamClient::Http1(pool) => {
                pool.sweep();
                true
            }
            UpstreamClient::Tls(_) => true,
        });
    }

    /// The client for a side, built on first use (at config load, never per
    /// read).
    pub fn client(&self, side: &crate::config::Side) -> Result<UpstreamClient, CaFileError> {
        let plain = side.scheme == http::uri::Scheme::HTTP;
        let key = if plain {
            ClientKey::Http1(side.authority.to_string(), side.connect_timeout)
        } else {
            ClientKey::Tls(side.connect_timeout, side.ca_file.clone())
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = match Http1Pool::new(connector(side.connect_timeout), &side.authority) {
            Some(pool) if plain => UpstreamClient::Http1(Arc::new(pool)),
            _ => UpstreamClient::Tls(Box::new(build_client(
                side.connect_timeout,
                side.ca_file.as_ref(),
            )?)),
        };
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn connector(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    // Small reads and writes both ways: never wait for Nagle.
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http
}

/// The trust anchors for an https client: webpki's, the system's where it
/// has them, and the certificates of `ca_file`.
pub fn root_store(ca_file: Option<&PathBuf>) -> Result<RootCertStore, CaFileError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // System roots too, where the host has them; a missing or unreadable
    // store is not an error (webpki roots remain).
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let err = |reason: String| CaFileError {
            path: path.clone(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no PEM certificate in file".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    Ok(roots)
}

fn build_client(
    connect_timeout: Duration,
    ca_file: Option<&PathBuf>,
) -> Result<TlsClient, CaFileError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    let http = connector(connect_timeout);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// A request body for an upstream: empty, fully buffered, spooled to a
/// file (both can be sent again, for a fallback or a shadow read), or
/// streaming (an over-the-limit body: one attempt only).
#[derive(Debug)]
pub enum RequestBody {
    Buffered(Option<Bytes>),
    /// Past `max_buffered_body`, within `max_spooled_body`: one read of the
    /// spool file per attempt.
    Spooled(SpoolReader),
    /// One attempt only: what was read before the body proved too large
    /// (a spool file given up on, then bytes in memory), then the rest from
    /// the consumer.
    Streaming {
        file: Option<SpoolReader>,
        head: Option<Bytes>,
        rest: Incoming,
    },
}

/// How much of a request body cutover keeps so it can be sent again.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits<'a> {
    /// `max_buffered_body`: kept in memory up to this.
    pub buffered: usize,
    /// `max_spooled_body`: past `buffered`, spooled to a file up to this
    /// (0: never).
    pub spooled: usize,
    pub spool: &'a Spool,
    /// `limits.body_timeout`: the longest pause between two pieces.
    pub idle: Duration,
}

impl RequestBody {
    pub fn empty() -> RequestBody {
        RequestBody::Buffered(None)
    }

    /// A copy that can be sent again, if this body is buffered or spooled
    /// (`None` for a streaming body, or a spool file that cannot be opened).
    pub fn replay(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Buffered(b) => Some(RequestBody::Buffered(b.clone())),
            RequestBody::Spooled(r) => match SpoolReader::new(r.file().clone()) {
                Ok(r) => Some(RequestBody::Spooled(r)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reopen a spooled request body: it is sent once");
                    None
                }
            },
            RequestBody::Streaming { .. } => None,
        }
    }

    /// Reads the consumer's body: buffered in full up to `limits.buffered`
    /// bytes, spooled to a file up to `limits.spooled`, streaming past it. A
    /// read error is the consumer's (answered 400).
    /// `Err` when the body cannot be read, or pauses longer than
    /// `limits.idle` between two pieces (a stalled client must not hold the
    /// read forever).
    pub async fn from_incoming(
        mut body: Incoming,
        limits: BodyLimits<'_>,
    ) -> Result<RequestBody, BodyReadError> {
        if body.is_end_stream() {
            return Ok(RequestBody::empty());
        }
        let mut buf = bytes::BytesMut::new();
        loop {
            let Some(data) = next_data(&mut body, limits.idle).await? else {
                break;
            };
            buf.extend_from_slice(&data);
            if buf.len() > limits.buffered {
                let head = buf.freeze();
                return match spool_body(head, body, limits).await? {
                    Ok(file) => Ok(RequestBody::Spooled(
                        SpoolReader::new(file).map_err(BodyReadError::Spool)?,
                    )),
                    Err(streaming) => Ok(streaming),
                };
            }
        }
        Ok(RequestBody::Buffered(
            (!buf.is_empty()).then(|| buf.freeze()),
        ))
    }
}

/// The next piece of data of a request body, `None` at its end. Request
/// trailers are dropped: no data API uses them.
async fn next_data(body: &mut Incoming, idle: Duration) -> Result<Option<Bytes>, BodyReadError> {
    use http_body_util::BodyExt;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyReadError::Stalled(idle)),
            Ok(None) => return Ok(None),
            Ok(Some(frame)) => frame.map_err(BodyReadError::Read)?,
        };
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// A body past `max_buffered_body` whose start, `head`, is read: spooled
/// whole (`Ok(Ok)`) when it fits `max_spooled_body` and the spool budget,
/// else (`Ok(Err)`) a streaming body that starts with what was read.
async fn spool_body(
    head: Bytes,
    mut rest: Incoming,
    limits: BodyLimits<'_>,
) -> Result<Result<Arc<SpoolFile>, RequestBody>, BodyReadError> {
    let streaming = |head, rest| RequestBody::Streaming {
        file: None,
        head: Some(head),
        rest,
    };
    let max = limits.spooled as u64;
    let hint = rest.size_hint();
    let total_lower = hint.lower() + head.len() as u64;
    if max == 0 || total_lower > max {
        return Ok(Err(streaming(head, rest)));
    }
    // A known length is reserved at once, so a body the budget cannot hold
    // streams from the start rather than after it was half written.
    let reserve = match hint.exact() {
        Some(n) => usize::try_from(n + head.len() as u64).unwrap_or(usize::MAX),
        None => head.len(),
    };
    let Some(mut writer) = limits.spool.create(reserve).await else {
        return Ok(Err(streaming(head, rest)));
    };
    let spool_err = BodyReadError::Spool;
    if !writer.write(&head).await.map_err(spool_err)? {
        return Ok(Err(streaming(head, rest)));
    }
    while let Some(data) = next_data(&mut rest, limits.idle).await? {
        let fits = writer.len() + data.len() as u64 <= max;
        if !fits || !writer.write(&data).await.map_err(spool_err)? {
            // Too large after all (no length was given), or past the
            // budget: what is in the file goes first, then this piece and
            // the rest, once.
            let file = writer.finish().await.map_err(spool_err)?;
            let reader = SpoolReader::new(file).map_err(spool_err)?;
            return Ok(Err(RequestBody::Streaming {
                file: Some(reader),
                head: Some(data),
                rest,
            }));
        }
    }
    Ok(Ok(writer.finish().await.map_err(spool_err)?))
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let piece = |p: Option<std::io::Result<Bytes>>| {
            p.map(|r| r.map(Frame::data).map_err(BoxError::from))
        };
        match self.get_mut() {
            RequestBody::Buffered(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Spooled(r) => r.poll_piece(cx).map(piece),
            RequestBody::Streaming { file, head, rest } => {
                if let Some(r) = file {
                    match std::task::ready!(r.poll_piece(cx)) {
                        None => *file = None,
                        some => return Poll::Ready(piece(some)),
                    }
                }
                if let Some(h) = head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(h))));
                }
                Pin::new(rest).poll_frame(cx).map_err(BoxError::from)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Buffered(b) => b.is_none(),
            RequestBody::Spooled(r) => r.remaining() == 0,
            RequestBody::Streaming { file, head, rest } => {
                file.as_ref().is_none_or(|r| r.remaining() == 0)
                    && head.is_none()
                    && rest.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Buffered(None) => SizeHint::with_exact(0),
            RequestBody::Buffered(Some(b)) => SizeHint::with_exact(b.len() as u64),
            RequestBody::Spooled(r) => SizeHint::with_exact(r.remaining()),
            RequestBody::Streaming { file, head, rest } => {
                let h = head.as_ref().map_or(0, |b| b.len() as u64)
                    + file.as_ref().map_or(0, SpoolReader::remaining);
                let r = rest.size_hint();
                let mut s = SizeHint::new();
                s.set_lower(r.lower() + h);
                if let Some(u) = r.upper() {
                    s.set_upper(u + h);
                }
                s
            }
        }
    }
}
