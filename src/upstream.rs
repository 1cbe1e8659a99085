//! Pooled upstream clients (plain HTTP/1.1, and HTTPS through rustls with h2
//! or HTTP/1.1 by ALPN), the request body type that can be sent twice, and
//! one upstream attempt with its timeout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

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
    /// No response head within the side's timeout.
    #[error("no response head within {0:?}")]
    Timeout(Duration),
}

/// Sends one request and waits for its response head, at most `timeout`.
/// `req` carries the absolute URI of the upstream.
pub async fn attempt(
    client: &UpstreamClient,
    req: Request<RequestBody>,
    timeout: Duration,
) -> Result<Response<UpstreamBody>, AttemptError> {
    let sent = async {
        match client {
            UpstreamClient::Http1(pool) => pool.send(req).await,
            UpstreamClient::Tls(c) => c
                .request(req)
                .await
                .map(|r| r.map(|b| UpstreamBody::new(b, None)))
                .map_err(BoxError::from),
        }
    };
    match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(AttemptError::Connect(e)),
        Err(_) => Err(AttemptError::Timeout(timeout)),
    }
}

/// Idle connections kept per plain-HTTP upstream.
const MAX_IDLE: usize = 1024;

/// A lean keep-alive pool for one plain-HTTP upstream (one authority).
///
/// Why not the hyper-util client here: per read it boxes its request future,
/// hashes a pool key under a lock and spawns a task to return the connection
/// once the body ends. This pool is a stack of idle `SendRequest`s; a
/// connection goes back on the stack when its response body has been read to
/// the end (`UpstreamBody`), and a stale one is detected without a syscall
/// (`is_closed`) or, if the upstream closed it in the meantime, handed back
/// unsent by hyper (`try_send_request`) and the read retried on a fresh
/// connection: nothing was sent, so the retry is safe.
pub struct Http1Pool {
    connector: HttpConnector,
    /// `http://authority/`, what the connector dials.
    target: http::Uri,
    host: http::HeaderValue,
    idle: Mutex<Vec<SendRequest<RequestBody>>>,
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
            idle: Mutex::new(Vec::new()),
        })
    }

    fn take_idle(&self) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn give_back(&self, s: SendRequest<RequestBody>) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, BoxError> {
        let mut connector = self.connector.clone();
        let io = tower_service::Service::call(&mut connector, self.target.clone()).await?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn send(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        // An HTTP/1.1 connection speaks origin-form with a Host header.
        let origin = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = http::Uri::from(origin);
        req.headers_mut()
            .insert(http::header::HOST, self.host.clone());
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|b| UpstreamBody::new(b, Some((self.clone(), sender)))));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent (the connection closed under us): try the next one.
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let mut sender = self.connect().await?;
        let resp = sender.send_request(req).await?;
        Ok(resp.map(|b| UpstreamBody::new(b, Some((self.clone(), sender)))))
    }
}

/// An upstream response body. For a pooled HTTP/1.1 connection it returns
/// the connection to its pool once the body has been read to the end; a body
/// dropped early takes its connection with it (it cannot be reused).
pub struct UpstreamBody {
    inner: Incoming,
    give_back: Option<(Arc<Http1Pool>, SendRequest<RequestBody>)>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("inner", &self.inner)
            .finish()
    }
}

impl UpstreamBody {
    fn new(
        inner: Incoming,
        give_back: Option<(Arc<Http1Pool>, SendRequest<RequestBody>)>,
    ) -> UpstreamBody {
        let mut body = UpstreamBody { inner, give_back };
        if body.inner.is_end_stream() {
            body.done();
        }
        body
    }

    fn done(&mut self) {
        if let Some((pool, sender)) = self.give_back.take() {
            pool.give_back(sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.done(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.done(),
            Poll::Ready(Some(Err(_))) => this.give_back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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

fn root_store(ca_file: Option<&PathBuf>) -> Result<RootCertStore, CaFileError> {
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

/// A request body for an upstream: empty, fully buffered (so a fallback can
/// send it again), or streaming (an over-the-limit body: one attempt only).
#[derive(Debug)]
pub enum RequestBody {
    Buffered(Option<Bytes>),
    Streaming { head: Option<Bytes>, rest: Incoming },
}

impl RequestBody {
    pub fn empty() -> RequestBody {
        RequestBody::Buffered(None)
    }

    /// A copy that can be sent again, if this body is fully buffered.
    pub fn replay(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Buffered(b) => Some(RequestBody::Buffered(b.clone())),
            RequestBody::Streaming { .. } => None,
        }
    }

    /// Reads the consumer's body: buffered in full up to `limit` bytes,
    /// streaming past it. A read error is the consumer's (answered 400).
    pub async fn from_incoming(
        mut body: Incoming,
        limit: usize,
    ) -> Result<RequestBody, hyper::Error> {
        use http_body_util::BodyExt;
        if body.is_end_stream() {
            return Ok(RequestBody::empty());
        }
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > limit {
                    return Ok(RequestBody::Streaming {
                        head: Some(buf.freeze()),
                        rest: body,
                    });
                }
            }
            // Request trailers are dropped: no data API uses them.
        }
        Ok(RequestBody::Buffered(
            (!buf.is_empty()).then(|| buf.freeze()),
        ))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Buffered(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Streaming { head, rest } => {
                if let Some(h) = head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(h))));
                }
                Pin::new(rest).poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Buffered(b) => b.is_none(),
            RequestBody::Streaming { head, rest } => head.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Buffered(None) => SizeHint::with_exact(0),
            RequestBody::Buffered(Some(b)) => SizeHint::with_exact(b.len() as u64),
            RequestBody::Streaming { head, rest } => {
                let h = head.as_ref().map_or(0, |b| b.len() as u64);
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
