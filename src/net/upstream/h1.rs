//! cutover's HTTP/1.1 client side for plain-HTTP upstreams: one keep-alive
//! connection driven in the task of the read that uses it.
//!
//! Why not hyper's client connection here: it runs each connection in a task
//! of its own and talks to the read over channels, so one read costs several
//! task wake-ups and a second state machine beside the server's. Here the read
//! writes its request, parses the response head (httparse, the parser hyper
//! itself uses) and hands the consumer a body that reads the upstream socket
//! directly; when that body ends cleanly the connection goes back to its pool.
//!
//! Framing follows RFC 9112 6.3: no body for HEAD, 1xx, 204 and 304;
//! Transfer-Encoding chunked; Content-Length; otherwise until close. Anything
//! that leaves the connection's state in doubt (close-delimited body, both
//! framings, `Connection: close`, bytes past the end) means it is not reused.

use std::future::Future;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Http1Pool;
use super::spool::SpoolFile;

/// Most header lines accepted in a response head.
const MAX_HEADERS: usize = 128;
/// Largest response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest chunk-size line or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 64 * 1024;
/// Read buffer a connection starts with: a response head and a small body
/// come in one read. Also the least a read asks for.
const READ_BUF: usize = 8 * 1024;
/// Most body bytes asked of one read. A big answer moves in pieces of this
/// size: each piece is one `read`, one frame to hyper and (hyper writes a
/// frame this size at once) one `writev` to the consumer, where 8 KiB pieces
/// cost eight of each. Per connection at most about two pieces are alive
/// (one in hyper's write queue, one being read), so memory stays bounded
/// whatever the answer's size.
const BODY_READ: usize = 64 * 1024;
/// Bodies up to this size go out in the same write as the head.
const COPY_BODY_MAX: usize = 16 * 1024;

/// Why an exchange produced no response head.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("upstream i/o: {0}")]
    Io(#[from] io::Error),
    #[error("upstream closed the connection before a response")]
    ClosedEarly,
    #[error("malformed response from upstream: {0}")]
    Malformed(&'static str),
}

impl ExchangeError {
    /// True when the upstream gave no sign of having seen the request: a
    /// reused keep-alive connection it had already closed. Safe to retry an
    /// idempotent request on a fresh connection (RFC 9112 9.3.1).
    pub fn is_stale_connection(&self, got_bytes: bool) -> bool {
        if got_bytes {
            return false;
        }
        match self {
            ExchangeError::ClosedEarly => true,
            ExchangeError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
            ),
            ExchangeError::Malformed(_) => false,
        }
    }
}

/// One upstream connection and what has been read from it but not yet used.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// When it went back to the pool.
    pub idle_since: Instant,
}

impl Conn {
    pub fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            buf: BytesMut::with_capacity(READ_BUF),
            idle_since: Instant::now(),
        }
    }

    /// Whether an idle connection is still usable, checked without blocking:
    /// an idle HTTP/1.1 connection must have nothing to read, so readable
    /// means closed by the upstream (or garbage, just as bad).
    pub fn still_open(&mut self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness may be left over from the last read: ask the socket.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more into the buffer, up to about `want` bytes (what the caller
    /// can use: the rest of a body, or a head's worth); `Ok(0)` is end of
    /// stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let want = want.clamp(READ_BUF, BODY_READ);
        // Too little room left for a worthwhile read: ask for `want`. The
        // pieces already handed out share this allocation; once hyper has
        // written and dropped them all, `reserve` takes the same allocation
        // back instead of making a new one.
        let least = if want > READ_BUF { want / 2 } else { 1024 };
        if self.buf.capacity() - self.buf.len() < least {
            self.buf.reserve(want);
        }
        // Through `AsyncRead` rather than `try_read_buf`: a short read there
        // also clears the socket's readiness, so the next wait costs no
        // extra syscall ending in EAGAIN.
        let read = std::pin::pin!(self.io.read_buf(&mut self.buf));
        read.poll(cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx, READ_BUF)).await
    }

    /// Sends an encoded request (`head`, with the body in it when small, and
    /// `body` when not) and reads the response head. `got_bytes` says
    /// whether any response byte arrived, for the retry rule.
    pub async fn exchange(
        &mut self,
        head: &[u8],
        body: Option<Payload<'_>>,
        head_request: bool,
        got_bytes: &mut bool,
    ) -> Result<Head, ExchangeError> {
        self.io.write_all(head).await?;
        match body {
            None => {}
            Some(Payload::Bytes(b)) => self.io.write_all(b).await?,
            Some(Payload::File(f)) => {
                // Each attempt reads the spool file from its start.
                let mut file = f.open()?.take(f.len());
                let sent = tokio::io::copy(&mut file, &mut self.io).await?;
                if sent != f.len() {
                    return Err(ExchangeError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "spool file shorter than spooled",
                    )));
                }
            }
        }
        loop {
            if !self.buf.is_empty() {
                *got_bytes = true;
                if let Some(head) = parse_head(&mut self.buf, head_request)? {
                    // Interim answers (100 Continue, 103 Early Hints) are
                    // not the response: read on.
                    if head.status.is_informational() {
                        continue;
                    }
                    return Ok(head);
                }
                if self.buf.len() > MAX_HEAD_BYTES {
                    return Err(ExchangeError::Malformed("response head too large"));
                }
            }
            if self.fill().await? == 0 {
                return Err(ExchangeError::ClosedEarly);
            }
        }
    }
}

/// A request body written after its head.
pub enum Payload<'a> {
    Bytes(&'a Bytes),
    /// A spooled body (`spool`), copied from its file.
    File(&'a SpoolFile),
}

impl Payload<'_> {
    /// The same body for another attempt (a retry on a fresh connection).
    pub fn again(&self) -> Payload<'_> {
        match self {
            Payload::Bytes(b) => Payload::Bytes(b),
            Payload::File(f) => Payload::File(f),
        }
    }
}

/// Writes a request head into `out`: request line, `host`, the headers
/// (without any framing header of the consumer's) and a `content-length`
/// for the body; a small body is appended to the same buffer. Returns
/// whether the body still has to be written on its own.
pub fn encode_request(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    host: &HeaderValue,
    headers: &HeaderMap,
    body: Option<&Bytes>,
) -> bool {
    encode_head(
        out,
        method,
        path_and_query,
        host,
        headers,
        body.map_or(0, |b| b.len() as u64),
    );
    match body {
        Some(b) if b.len() <= COPY_BODY_MAX => {
            out.extend_from_slice(b);
            false
        }
        Some(_) => true,
        None => false,
    }
}

/// Writes a request head for a body of `len` bytes into `out` (see
/// `encode_request`); the body is written after it.
pub fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    host: &HeaderValue,
    headers: &HeaderMap,
    len: u64,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if headers.contains_key(header::TE) {
        // RFC 9110 10.1.4: TE is for this hop only, and says so.
        out.extend_from_slice(b"connection: te\r\n");
    }
    if len > 0 || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "content-length: {len}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head and how its body is framed.
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    /// The response, with a body that reads the rest from `conn`.
    pub fn into_response(self, conn: Conn, pool: Arc<Http1Pool>) -> Response<Body> {
        let mut body = Body {
            conn: Some(conn),
            pool: Some(pool),
            state: self.framing,
            reusable: self.keep_alive,
            trailer_bytes: 0,
            trailers: None,
        };
        if body.state == Framing::Done {
            body.finish();
        }
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status;
        *resp.version_mut() = self.version;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// Where the body reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes still to come.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// This many bytes of the current chunk still to come.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// Until the upstream closes.
    UntilClose,
    Done,
}

/// Parses a response head off the front of `buf`, if it is all there.
///
/// Header values share the head's bytes rather than being copied. Framing
/// and connection headers are read here and left out of the map: they
/// describe this connection, not the answer (RFC 9110 7.6.1). `Connection`
/// stays only when it names other headers, so the proxy strips those too.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, ExchangeError> {
    let mut lines = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut lines)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ExchangeError::Malformed("too many headers"));
        }
        Err(_) => return Err(ExchangeError::Malformed("unparsable response head")),
    };
    let status = StatusCode::from_u16(resp.code.unwrap_or(0))
        .map_err(|_| ExchangeError::Malformed("bad status code"))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each header sits in `buf`, so the head can be split off (and
    // frozen) before the values are taken from it.
    // On the stack: a Vec here was an allocation per answer.
    let base = buf.as_ptr() as usize;
    let mut spans = [[0usize; 4]; MAX_HEADERS];
    let count = resp.headers.len();
    for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        *span = [name, name + h.name.len(), value, value + h.value.len()];
    }
    let head = buf.split_to(len).freeze();
    let mut seen = FramingHeaders::default();
    let mut headers = HeaderMap::with_capacity(count);
    for &[ns, ne, vs, ve] in &spans[..count] {
        let name = HeaderName::from_bytes(&head[ns..ne])
            .map_err(|_| ExchangeError::Malformed("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
            .map_err(|_| ExchangeError::Malformed("bad header value"))?;
        if seen.note(&name, &value) {
            headers.append(name, value);
        }
    }
    let (framing, keep_alive) = seen.framing(status, version, head_request)?;
    if seen.transfer_encoding {
        // Framed by Transfer-Encoding: a Content-Length beside it is wrong
        // for the body the consumer will get.
        headers.remove(header::CONTENT_LENGTH);
    }
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// What the connection and framing headers of a response said.
#[derive(Default)]
struct FramingHeaders {
    close: bool,
    keep_alive: bool,
    transfer_encoding: bool,
    /// Whether the last transfer coding named is chunked.
    chunked: bool,
    content_length: Option<u64>,
    bad_length: bool,
}

impl FramingHeaders {
    /// Takes note of one header; false when it stays out of the answer.
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> bool {
        let v = value.as_bytes();
        if *name == header::CONNECTION {
            let mut names_others = false;
            for token in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if !token.is_empty() {
                    names_others = true;
                }
            }
            return names_others;
        }
        if *name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            if let Some(last) = v
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .rfind(|t| !t.is_empty())
            {
                self.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
            return false;
        }
        if *name == header::CONTENT_LENGTH {
            for part in v.split(|&b| b == b',') {
                match parse_length(part.trim_ascii()) {
                    Some(n) if self.content_length.is_none_or(|l| l == n) => {
                        self.content_length = Some(n);
                    }
                    _ => self.bad_length = true,
                }
            }
            // A bad length never reaches the consumer (where no body follows,
            // HEAD or 304, it is not an error, just dropped).
            return !self.bad_length;
        }
        !crate::net::headers::HOP_BY_HOP.contains(name)
    }

    /// How the body is delimited (RFC 9112 6.3) and whether the connection
    /// may carry another request afterwards.
    fn framing(
        &self,
        status: StatusCode,
        version: Version,
        head_request: bool,
    ) -> Result<(Framing, bool), ExchangeError> {
        let keep_alive = !self.close && (version == Version::HTTP_11 || self.keep_alive);
        if head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok((Framing::Done, keep_alive));
        }
        if self.transfer_encoding {
            // Both framings: Transfer-Encoding wins, and the connection is
            // not trusted with another request (RFC 9112 6.3, item 3).
            let both = self.content_length.is_some() || self.bad_length;
            return Ok(if self.chunked {
                (Framing::ChunkSize, keep_alive && !both)
            } else {
                (Framing::UntilClose, false)
            });
        }
        if self.bad_length {
            return Err(ExchangeError::Malformed(
                "bad or conflicting content-length",
            ));
        }
        Ok(match self.content_length {
            Some(0) => (Framing::Done, keep_alive),
            Some(n) => (Framing::Length(n), keep_alive),
            None => (Framing::UntilClose, false),
        })
    }
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One trailer line as a field, unless it is malformed or one a trailer
/// must not carry (framing, routing, connection: RFC 9110 6.5.1), which
/// are dropped rather than failing a body already sent.
fn trailer_field(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = HeaderName::from_bytes(&line[..colon]).ok()?;
    let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
    let forbidden = crate::net::headers::HOP_BY_HOP.contains(&name)
        || [
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::CONTENT_TYPE,
            header::CONTENT_RANGE,
            header::HOST,
            header::TRAILER,
            header::AUTHORIZATION,
            header::SET_COOKIE,
            header::CACHE_CONTROL,
        ]
        .contains(&name);
    (!forbidden).then_some((name, value))
}

/// An upstream response body read straight from the connection. Once read to
/// its end on a connection that may be reused, the connection goes back to
/// the pool; a body dropped early closes it.
pub struct Body {
    conn: Option<Conn>,
    pool: Option<Arc<Http1Pool>>,
    state: Framing,
    reusable: bool,
    trailer_bytes: usize,
    /// Trailer fields read so far, passed on as the body's last frame.
    trailers: Option<HeaderMap>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("h1::Body")
            .field("state", &self.state)
            .finish()
    }
}

/// A body that broke off: the upstream's fault, reported to the consumer as
/// a cut connection.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upstream body: {0}")]
    Io(#[from] io::Error),
    #[error("upstream closed the connection mid-body")]
    Truncated,
    #[error("malformed chunked body from upstream")]
    BadChunk,
}

impl Body {
    fn finish(&mut self) {
        self.state = Framing::Done;
        if let (Some(mut conn), Some(pool)) = (self.conn.take(), self.pool.take())
            && self.reusable
            && conn.buf.is_empty()
        {
            // An idle connection keeps a head-sized buffer, not what a big
            // body grew it to.
            if conn.buf.capacity() > READ_BUF {
                conn.buf = BytesMut::new();
            }
            pool.give_back(conn);
        }
    }

    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.state = Framing::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // Need more bytes before the state can move?
            let need_more = match this.state {
                Framing::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(rest) | Framing::ChunkData(rest) => {
                    if conn.buf.is_empty() {
                        true
                    } else {
                        let n = rest.min(conn.buf.len() as u64);
                        let data = conn.buf.split_to(n as usize).freeze();
                        let rest = rest - n;
                        match this.state {
                            Framing::Length(_) if rest == 0 => this.finish(),
                            Framing::Length(_) => this.state = Framing::Length(rest),
                            _ if rest == 0 => this.state = Framing::ChunkEnd,
                            _ => this.state = Framing::ChunkData(rest),
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::UntilClose => {
                    if conn.buf.is_empty() {
                        true
                    } else {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::ChunkSize => match httparse::parse_chunk_size(&conn.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        conn.buf.advance(used);
                        this.state = if size == 0 {
                            Framing::Trailers
                        } else {
                            Framing::ChunkData(size)
                        };
                        false
                    }
                    Ok(httparse::Status::Partial) if conn.buf.len() <= MAX_CHUNK_LINE => true,
                    _ => return this.fail(BodyError::BadChunk),
                },
                Framing::ChunkEnd => {
                    if conn.buf.len() < 2 {
                        true
                    } else if conn.buf.starts_with(b"\r\n") {
                        conn.buf.advance(2);
                        this.state = Framing::ChunkSize;
                        false
                    } else {
                        return this.fail(BodyError::BadChunk);
                    }
                }
                // Trailer fields end the body as its last frame (the proxy
                // relays them only to a consumer that sent `TE: trailers`).
                Framing::Trailers => match conn.buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        conn.buf.advance(2);
                        this.finish();
                        return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
                    }
                    Some(line) => {
                        this.trailer_bytes += line + 2;
                        if this.trailer_bytes > MAX_TRAILER_BYTES {
                            return this.fail(BodyError::BadChunk);
                        }
                        if let Some((name, value)) = trailer_field(&conn.buf[..line]) {
                            this.trailers.get_or_insert_default().append(name, value);
                        }
                        conn.buf.advance(line + 2);
                        false
                    }
                    None if this.trailer_bytes + conn.buf.len() <= MAX_TRAILER_BYTES => true,
                    None => return this.fail(BodyError::BadChunk),
                },
            };
            if need_more {
                let want = match this.state {
                    Framing::Length(rest) | Framing::ChunkData(rest) => {
                        usize::try_from(rest).unwrap_or(BODY_READ)
                    }
                    Framing::UntilClose => BODY_READ,
                    _ => READ_BUF,
                };
                match ready!(conn.poll_fill(cx, want)) {
                    Ok(0) if this.state == Framing::UntilClose => {
                        this.reusable = false;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(0) => return this.fail(BodyError::Truncated),
                    Ok(_) => {}
                    Err(e) => return this.fail(BodyError::Io(e)),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, head_request: bool) -> Result<Option<Head>, ExchangeError> {
        let mut buf = BytesMut::from(raw);
        parse_head(&mut buf, head_request)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases: [(&str, bool, Framing, bool); 9] = [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                true,
                Framing::Done,
                true,
            ),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Framing::Done,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                false,
                Framing::Done,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                false,
                Framing::ChunkSize,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                false,
                Framing::ChunkSize,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                false,
                Framing::UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::UntilClose, false),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n",
                false,
                Framing::Length(2),
                false,
            ),
        ];
        for (raw, head_request, want, reuse) in cases {
            let h = head(raw, head_request).unwrap().unwrap();
            assert_eq!((h.framing, h.keep_alive), (want, reuse), "{raw:?}");
        }
        let h = head(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
        let h = head(
            "HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(h.keep_alive);
    }

    #[test]
    fn bad_heads_are_refused_and_partial_heads_wait() {
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-len", false)
                .unwrap()
                .is_none()
        );
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "SMTP ready\r\n\r\n",
        ] {
            assert!(head(bad, false).is_err(), "{bad:?}");
        }
        // Where no body follows, a bad length is dropped rather than refused.
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: x1\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert!(!h.headers.contains_key(header::CONTENT_LENGTH));
        // The same length repeated is one length.
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 4, 4\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(4));
    }

    #[test]
    fn connection_headers_stay_out_of_the_answer() {
        let raw = "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\ntransfer-encoding: chunked\r\ncontent-length: 7\r\nx-data-watermark: 1\r\n\r\n";
        let h = head(raw, false).unwrap().unwrap();
        let names: Vec<&str> = h.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-data-watermark"]);
        // A Connection header that names another header stays, so the proxy
        // strips the named one as well.
        let raw = "HTTP/1.1 200 OK\r\nconnection: close, x-internal\r\nx-internal: 1\r\ncontent-length: 0\r\n\r\n";
        let h = head(raw, false).unwrap().unwrap();
        assert_eq!(h.headers["connection"], "close, x-internal");
        assert!(!h.keep_alive);
    }

    #[test]
    fn head_values_share_the_read_buffer_and_the_rest_stays() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 200 OK\r\nx-data-watermark: 1700000000\r\ncontent-length: 2\r\n\r\nhi",
        );
        let h = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(h.headers["x-data-watermark"], "1700000000");
        assert_eq!(&buf[..], b"hi");
    }

    #[test]
    fn requests_are_encoded_with_host_and_length() {
        let mut headers = HeaderMap::new();
        headers.insert("x-customer-id", HeaderValue::from_static("42"));
        headers.insert(header::HOST, HeaderValue::from_static("consumer.local"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        let host = HeaderValue::from_static("batch:8080");
        let mut out = Vec::new();
        let body = Bytes::from_static(b"{}");
        let separate = encode_request(
            &mut out,
            &Method::POST,
            "/v1/x?a=1",
            &host,
            &headers,
            Some(&body),
        );
        assert!(!separate);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "POST /v1/x?a=1 HTTP/1.1\r\nhost: batch:8080\r\nx-customer-id: 42\r\ncontent-length: 2\r\n\r\n{}"
        );
        out.clear();
        encode_request(&mut out, &Method::GET, "/", &host, &HeaderMap::new(), None);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "GET / HTTP/1.1\r\nhost: batch:8080\r\n\r\n"
        );
    }

    /// How a generated answer frames its body.
    #[derive(Debug, Clone)]
    enum Frames {
        Length,
        /// Chunk sizes (cycled over the body), with extensions and trailers.
        Chunked {
            sizes: Vec<usize>,
            ext: bool,
            trailers: bool,
        },
        /// HTTP/1.0 with no length: the body ends when the upstream closes.
        UntilClose,
    }

    fn answer(body: &[u8], frames: &Frames) -> Vec<u8> {
        let mut out = Vec::new();
        match frames {
            Frames::Length => {
                out.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                out.extend_from_slice(body);
            }
            Frames::Chunked {
                sizes,
                ext,
                trailers,
            } => {
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                let (mut rest, mut i) = (body, 0);
                while !rest.is_empty() {
                    let n = sizes[i % sizes.len()].clamp(1, rest.len());
                    let e = if *ext { ";name=\"v\"" } else { "" };
                    out.extend_from_slice(format!("{n:x}{e}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                    i += 1;
                }
                out.extend_from_slice(b"0\r\n");
                if *trailers {
                    out.extend_from_slice(b"X-Checksum: 1\r\nX-Other: 2\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
            Frames::UntilClose => {
                out.extend_from_slice(b"HTTP/1.0 200 OK\r\n\r\n");
                out.extend_from_slice(body);
            }
        }
        out
    }

    fn frames() -> impl proptest::strategy::Strategy<Value = Frames> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Frames::Length),
            (
                proptest::collection::vec(1usize..40, 1..4),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(sizes, ext, trailers)| Frames::Chunked {
                    sizes,
                    ext,
                    trailers
                }),
            Just(Frames::UntilClose),
        ]
    }

    /// Reads `raw` as the upstream's answer, sent in pieces cut at `cuts`:
    /// the body cutover streams, and whether the connection went back to
    /// the pool.
    fn read_answer(raw: Vec<u8>, cuts: Vec<usize>, close: bool) -> (Result<Bytes, String>, usize) {
        use http_body_util::BodyExt;
        use tokio::io::AsyncWriteExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let upstream = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                // Read the request first, as a server does: closing with it
                // unread would reset the connection.
                let mut request = Vec::new();
                while !request.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    match tokio::io::AsyncReadExt::read(&mut s, &mut byte).await {
                        Ok(1) => request.push(byte[0]),
                        _ => return,
                    }
                }
                let mut from = 0;
                for cut in cuts.into_iter().chain([raw.len()]) {
                    s.write_all(&raw[from..cut]).await.expect("write");
                    s.flush().await.expect("flush");
                    tokio::task::yield_now().await;
                    from = cut;
                }
                if !close {
                    // Keep it open until the reader is done.
                    let mut sink = [0u8; 64];
                    let _ = tokio::io::AsyncReadExt::read(&mut s, &mut sink).await;
                }
            });
            let authority: http::uri::Authority = addr.to_string().parse().expect("authority");
            let pool = Arc::new(
                super::super::Http1Pool::new(
                    hyper_util::client::legacy::connect::HttpConnector::new(),
                    &authority,
                )
                .expect("pool"),
            );
            let io = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut conn = Conn::new(io);
            let mut got = false;
            let read = async {
                let head = conn
                    .exchange(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", None, false, &mut got)
                    .await
                    .map_err(|e| e.to_string())?;
                let resp = head.into_response(conn, pool.clone());
                resp.into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .map_err(|e| e.to_string())
            };
            let body = tokio::time::timeout(std::time::Duration::from_secs(10), read)
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()));
            let pooled = pool.idle.lock().map(|q| q.len()).unwrap_or(0);
            upstream.abort();
            (body, pooled)
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// However the upstream frames its body and however the bytes are cut
        /// into reads, the consumer gets exactly the body, and a connection
        /// whose framing ended the body cleanly goes back to the pool.
        #[test]
        fn any_framing_cut_anywhere_streams_the_exact_body(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            frames in frames(),
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..6),
        ) {
            let raw = answer(&body, &frames);
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(raw.len() + 1)).collect();
            at.sort_unstable();
            let until_close = matches!(frames, Frames::UntilClose);
            let (got, pooled) = read_answer(raw, at, until_close);
            proptest::prop_assert_eq!(got.as_deref(), Ok(&body[..]));
            proptest::prop_assert_eq!(pooled, usize::from(!until_close));
        }

        /// Arbitrary bytes as a response head never panic the parser.
        #[test]
        fn any_bytes_as_a_response_head_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            head_request in proptest::prelude::any::<bool>(),
        ) {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = parse_head(&mut buf, head_request);
        }

        /// A truncated answer is never a whole body: a length or chunked
        /// answer cut short is an error, not a shorter success.
        #[test]
        fn a_truncated_answer_is_an_error(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..200),
            frames in frames(),
            keep in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            proptest::prop_assume!(!matches!(frames, Frames::UntilClose));
            let raw = answer(&body, &frames);
            let head_len = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 4);
            // Keep the whole head and part of what follows it.
            let cut = head_len + keep.index(raw.len() - head_len);
            let (got, pooled) = read_answer(raw[..cut].to_vec(), vec![], true);
            proptest::prop_assert!(got.is_err(), "cut at {cut} of {}: {got:?}", raw.len());
            proptest::prop_assert_eq!(pooled, 0);
        }
    }
}
