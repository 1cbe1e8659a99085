//! Fake upstreams: one builder, one accept loop, every behaviour.
//!
//! ```ignore
//! let b = Backend::start(Behaviour::ok("from batch")).await;
//! let s = Backend::builder()
//!     .behaviour(Behaviour::custom(|req| async move { /* Response<TestBody> */ }))
//!     .tls(acceptor)
//!     .start()
//!     .await;
//! s.set(Behaviour::Status(503)); // any behaviour, any backend
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::watermark;

/// A response body a custom backend may stream.
pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// `bytes` as a whole `TestBody`.
pub fn full_body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// A body of several frames and no declared length: hyper sends it chunked.
pub struct Chunks(pub std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A response body fed from a channel, one frame per message: a test
/// decides when each piece of an answer is sent.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A custom answer: given the whole request (version and body included).
pub type Handler = Arc<
    dyn Fn(Request<Bytes>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>
        + Send
        + Sync,
>;

/// How a fake backend answers. Every behaviour works on every backend, plain
/// or TLS, and `Backend::set` switches between any two of them.
#[derive(Clone)]
pub enum Behaviour {
    /// 200 with `body` (JSON content type) and, if given, a watermark `age`
    /// old (RFC 3339): an old one makes the answer stale.
    Ok {
        body: &'static str,
        age: Option<Duration>,
    },
    /// That status, with the body `status {code}\n`.
    Status(u16),
    /// Accepts, reads the request, never answers.
    Hang,
    /// Answers after a delay, then 200 `slow\n`.
    Slow(Duration),
    /// 200 echoing the request as JSON: method, uri (with query), headers, body.
    Echo,
    /// Whatever the function answers.
    Custom(Handler),
    /// Raw bytes instead of HTTP, for answers no HTTP library would send.
    /// Decided per connection: a switch to or from `Raw` applies from the
    /// next connection, and an HTTP connection that is open at the switch
    /// is closed, unanswered, at its next request.
    Raw(Raw),
}

/// A raw-TCP answer. Per connection: read a request (head and a
/// `Content-Length` body) and record it, write `reply` verbatim, and repeat
/// or end the connection as the constructor says.
#[derive(Clone, Debug)]
pub struct Raw {
    reply: &'static [u8],
    /// Answer every request on the connection, not only the first.
    keep_alive: bool,
    /// With `keep_alive`: answer this many requests, then read one more and
    /// close without a word.
    answers: Option<usize>,
    /// End the connection with a reset (RST, zero linger), not a close.
    reset: bool,
}

impl Behaviour {
    /// 200 with `body` and no watermark.
    pub fn ok(body: &'static str) -> Behaviour {
        Behaviour::Ok { body, age: None }
    }

    /// 200 with `body` and a watermark `age` old (stale when old enough).
    pub fn aged(body: &'static str, age: Duration) -> Behaviour {
        Behaviour::Ok {
            body,
            age: Some(age),
        }
    }

    /// Answers with `answer(request)`.
    pub fn custom<F, Fut>(answer: F) -> Behaviour
    where
        F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        Behaviour::Custom(Arc::new(move |req| Box::pin(answer(req))))
    }

    /// Per connection: one request, `reply` verbatim, then close.
    pub fn raw(reply: &'static [u8]) -> Behaviour {
        Behaviour::Raw(Raw {
            reply,
            keep_alive: false,
            answers: None,
            reset: false,
        })
    }

    /// Per connection: one request, `reply` verbatim (if any), then a reset.
    pub fn raw_then_reset(reply: &'static [u8]) -> Behaviour {
        Behaviour::Raw(Raw {
            reply,
            keep_alive: false,
            answers: None,
            reset: true,
        })
    }

    /// Per connection: `reply` to every request, keeping the connection.
    /// With `answers: Some(n)` a connection answers n requests, then reads
    /// one more and closes without a word: a pooled connection the upstream
    /// dropped while its client thought it idle.
    pub fn raw_keep_alive(reply: &'static [u8], answers: Option<usize>) -> Behaviour {
        Behaviour::Raw(Raw {
            reply,
            keep_alive: true,
            answers,
            reset: false,
        })
    }
}

impl fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Behaviour::Ok { body, age } => f
                .debug_struct("Ok")
                .field("body", body)
                .field("age", age)
                .finish(),
            Behaviour::Status(code) => f.debug_tuple("Status").field(code).finish(),
            Behaviour::Hang => f.write_str("Hang"),
            Behaviour::Slow(d) => f.debug_tuple("Slow").field(d).finish(),
            Behaviour::Echo => f.write_str("Echo"),
            Behaviour::Custom(_) => f.write_str("Custom(..)"),
            Behaviour::Raw(raw) => f.debug_tuple("Raw").field(raw).finish(),
        }
    }
}

/// One request a backend received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A fake upstream on 127.0.0.1:0 that records every request it reads.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// What the accept loop and every connection share with the `Backend`.
struct Shared {
    behaviour: Mutex<Behaviour>,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted so far.
    accepted: AtomicUsize,
    /// Connections open right now.
    open: AtomicUsize,
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().unwrap().clone()
    }

    fn record(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
        self.hits.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds a `Backend`: a behaviour (default `Hang`) and, optionally, TLS.
pub struct BackendBuilder {
    behaviour: Behaviour,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl BackendBuilder {
    pub fn behaviour(mut self, behaviour: Behaviour) -> BackendBuilder {
        self.behaviour = behaviour;
        self
    }

    /// Every accepted connection goes through `tls` first (ALPN as the
    /// acceptor's config says); a failed handshake ends the connection.
    pub fn tls(mut self, tls: tokio_rustls::TlsAcceptor) -> BackendBuilder {
        self.tls = Some(tls);
        self
    }

    /// Binds 127.0.0.1:0 and starts the accept loop.
    pub async fn start(self) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(self.behaviour),
            hits: hits.clone(),
            seen: seen.clone(),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, self.tls, shared.clone()));
        Backend {
            addr,
            hits,
            seen,
            shared,
            task,
        }
    }
}

impl Backend {
    pub fn builder() -> BackendBuilder {
        BackendBuilder {
            behaviour: Behaviour::Hang,
            tls: None,
        }
    }

    /// A plain-HTTP backend answering as `behaviour` says.
    pub async fn start(behaviour: Behaviour) -> Backend {
        Backend::builder().behaviour(behaviour).start().await
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// TCP connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// A URL on this backend.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests read so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Changes how later requests are answered (see `Behaviour::Raw` for
    /// switches between HTTP and raw answers).
    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// The last request read.
    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap().last().cloned()
    }
}

/// An accepted connection, plain or TLS, with its TCP socket at hand.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// The one accept loop: counts each connection while it is open and hands
/// it to `serve`, through TLS first when asked.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        shared.open.fetch_add(1, Ordering::SeqCst);
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve(stream, &shared).await,
                // A failed handshake (an untrusting client) is part of some tests.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve(stream, &shared).await;
                    }
                }
            }
            shared.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Serves one connection: raw when the behaviour is raw as it starts,
/// else HTTP/1.1 or h2 (hyper), answering each request as the behaviour
/// says when it arrives.
async fn serve(stream: impl Conn, shared: &Arc<Shared>) {
    if let Behaviour::Raw(raw) = shared.behaviour() {
        return serve_raw(stream, raw, shared).await;
    }
    let shared = shared.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let record = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts.headers.clone(),
                body: body.clone(),
            };
            shared.record(record.clone());
            answer(Request::from_parts(parts, body), record, shared.behaviour()).await
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// The answer to one HTTP request; `Err` closes the connection unanswered.
async fn answer(
    req: Request<Bytes>,
    seen: Seen,
    behaviour: Behaviour,
) -> Result<Response<TestBody>, &'static str> {
    let resp = |status: u16, body: Bytes| {
        let mut r = Response::new(full_body(body));
        *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
        r
    };
    Ok(match behaviour {
        Behaviour::Ok { body, age } => {
            let mut r = resp(200, Bytes::from_static(body.as_bytes()));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            if let Some(age) = age {
                r.headers_mut()
                    .insert("x-data-watermark", watermark(age).parse().unwrap());
            }
            r
        }
        Behaviour::Status(code) => resp(code, Bytes::from(format!("status {code}\n"))),
        Behaviour::Hang => std::future::pending().await,
        Behaviour::Slow(d) => {
            tokio::time::sleep(d).await;
            resp(200, Bytes::from_static(b"slow\n"))
        }
        Behaviour::Echo => {
            let headers: HashMap<String, Vec<String>> = seen
                .headers
                .keys()
                .map(|k| {
                    (
                        k.as_str().to_owned(),
                        seen.headers
                            .get_all(k)
                            .iter()
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .collect(),
                    )
                })
                .collect();
            let echo = serde_json::json!({
                "method": seen.method,
                "uri": seen.uri,
                "headers": headers,
                "body": String::from_utf8_lossy(&seen.body),
            });
            resp(200, Bytes::from(echo.to_string()))
        }
        Behaviour::Custom(answer) => answer(req).await,
        Behaviour::Raw(_) => return Err("switched to raw answers: closing this connection"),
    })
}

/// Serves one connection with raw bytes, as `raw` says.
async fn serve_raw(mut stream: impl Conn, raw: Raw, shared: &Shared) {
    let mut buf = Vec::new();
    let mut answered = 0;
    loop {
        let Some(seen) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        shared.record(seen);
        if raw.answers == Some(answered) {
            return;
        }
        answered += 1;
        let _ = stream.write_all(raw.reply).await;
        let _ = stream.flush().await;
        if !raw.keep_alive {
            break;
        }
    }
    if raw.reset {
        if !raw.reply.is_empty() {
            // Let the peer take in what was written: a reset discards
            // whatever is still unsent.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stream.tcp().set_zero_linger();
    }
}

/// Reads one request (head and a `Content-Length` body) from `stream`,
/// keeping what follows it in `buf`; `None` once the peer is gone.
async fn read_request(stream: &mut impl Conn, buf: &mut Vec<u8>) -> Option<Seen> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let uri = request_line.next().unwrap_or_default().to_owned();
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(k), Ok(v)) = (
                http::header::HeaderName::from_bytes(k.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(k, v);
        }
    }
    let len: usize = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let end = buf.len().min(head_end + len);
    let body = Bytes::copy_from_slice(&buf[head_end..end]);
    buf.drain(..end);
    Some(Seen {
        method,
        uri,
        headers,
        body,
    })
}

/// An object served the way an object store serves a file: `Range:
/// bytes=a-b` (or `a-`, `-n`) answered `206` with the slice and its
/// `Content-Range`, HEAD with the length and no body, a plain GET whole;
/// every answer with the object's `ETag` and a JSON content type. The body
/// and the tag can be changed mid-test (`set`): a new version.
///
/// ```ignore
/// let file = RangedFile::new(r#"{"data":[1,2,3]}"#, "\"v1\"");
/// let b = Backend::start(file.behaviour()).await;
/// file.set(r#"{"data":[1,2,3,4]}"#, "\"v2\"");
/// ```
#[derive(Clone)]
pub struct RangedFile(Arc<Mutex<(Bytes, String)>>);

impl RangedFile {
    pub fn new(body: impl Into<Bytes>, etag: &str) -> RangedFile {
        RangedFile(Arc::new(Mutex::new((body.into(), etag.to_owned()))))
    }

    /// Serves `body` tagged `etag` from the next request on.
    pub fn set(&self, body: impl Into<Bytes>, etag: &str) {
        *self.0.lock().unwrap() = (body.into(), etag.to_owned());
    }

    pub fn behaviour(&self) -> Behaviour {
        let file = self.clone();
        Behaviour::custom(move |req| {
            let file = file.clone();
            async move { file.answer(&req) }
        })
    }

    fn answer(&self, req: &Request<Bytes>) -> Response<TestBody> {
        let (body, etag) = self.0.lock().unwrap().clone();
        let len = body.len();
        let range = req.headers().get("range").and_then(|v| v.to_str().ok());
        let (status, content) = match range {
            None if req.method() == http::Method::HEAD => (StatusCode::OK, Bytes::new()),
            None => (StatusCode::OK, body.clone()),
            Some(r) => match byte_range(r, len) {
                Some((a, b)) => (StatusCode::PARTIAL_CONTENT, body.slice(a..=b)),
                None => (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new()),
            },
        };
        let content_len = if req.method() == http::Method::HEAD {
            len
        } else {
            content.len()
        };
        let mut resp = Response::new(full_body(content));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("accept-ranges", "bytes".parse().unwrap());
        h.insert("etag", etag.parse().unwrap());
        h.insert("content-length", content_len.to_string().parse().unwrap());
        match (status, range.and_then(|r| byte_range(r, len))) {
            (StatusCode::PARTIAL_CONTENT, Some((a, b))) => {
                h.insert(
                    "content-range",
                    format!("bytes {a}-{b}/{len}").parse().unwrap(),
                );
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, _) => {
                h.insert("content-range", format!("bytes */{len}").parse().unwrap());
            }
            _ => {}
        }
        resp
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` as an inclusive range within `len`.
pub fn byte_range(range: &str, len: usize) -> Option<(usize, usize)> {
    let (a, b) = range.strip_prefix("bytes=")?.split_once('-')?;
    let last = len.checked_sub(1)?;
    let (start, end) = match (a, b) {
        ("", n) => (len.checked_sub(n.parse().ok()?)?, last),
        (a, "") => (a.parse().ok()?, last),
        (a, b) => (a.parse().ok()?, b.parse::<usize>().ok()?.min(last)),
    };
    (start <= end).then_some((start, end))
}
