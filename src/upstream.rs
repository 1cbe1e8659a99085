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
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A pooled client for one (connect timeout, CA file) combination.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// Why an upstream attempt produced no response head.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// Refused, reset, DNS, TLS: anything before or instead of a response head.
    #[error("upstream connection failed: {0}")]
    Connect(#[source] hyper_util::client::legacy::Error),
    /// No response head within the side's timeout.
    #[error("no response head within {0:?}")]
    Timeout(Duration),
}

/// Sends one request and waits for its response head, at most `timeout`.
pub async fn attempt(
    client: &UpstreamClient,
    req: Request<RequestBody>,
    timeout: Duration,
) -> Result<Response<Incoming>, AttemptError> {
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(AttemptError::Connect(e)),
        Err(_) => Err(AttemptError::Timeout(timeout)),
    }
}

/// What distinguishes two clients: connect timeout and CA file.
type ClientKey = (Duration, Option<PathBuf>);

/// Process-wide cache of clients so connection pools survive reloads: a
/// reload that keeps a side's connect timeout and CA file keeps its pool.
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
    /// The client for this combination, built on first use (at config load,
    /// never per read).
    pub fn client(
        &self,
        connect_timeout: Duration,
        ca_file: Option<&PathBuf>,
    ) -> Result<UpstreamClient, CaFileError> {
        let key = (connect_timeout, ca_file.cloned());
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = build_client(connect_timeout, ca_file)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
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
) -> Result<UpstreamClient, CaFileError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
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
