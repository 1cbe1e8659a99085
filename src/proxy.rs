//! The hot path: accept consumer connections and answer each read through one
//! pipeline. Per read: load the snapshot once, filter the request, match the
//! route, choose the side, forward, fall back if allowed, record.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{FallbackReason, Mode, Route, Side, SideName};
use crate::fallback::{self, Admission, StreamingOutcome};
use crate::freshness::{now_unix_ms, watermark_of};
use crate::metrics::{RouteMetrics, UpstreamResult};
use crate::reconcile::run::{self as reconcile, Read, Served, Skip};
use crate::reconcile::tee::Tee;
use crate::state::{ReconcileSlot, try_reconcile_slot};
use crate::upstream::{self, AttemptError, Outgoing, RequestBody, UpstreamBody, UpstreamClient};
use crate::{App, Snapshot};

/// What the consumer receives: an upstream body streamed through untouched
/// (copied on the side when a comparison needs it), or a short local answer
/// (404, 405, 502, ...).
pub type ProxyBody = Either<Tee, Full<Bytes>>;

pub const SERVED_BY: HeaderName = HeaderName::from_static("x-cutover-served-by");
pub const FALLBACK: HeaderName = HeaderName::from_static("x-cutover-fallback");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Largest request head (request line and headers) a consumer may send.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Accepts consumer connections (HTTP/1.1 and prior-knowledge h2c) until
/// `shutdown` flips, then stops accepting and gives in-flight reads up to
/// `grace` to finish.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(MAX_HEAD_BYTES);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
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
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let consumer = Arc::new(Peer::new(peer));
                let service = service_fn(move |req| {
                    let app = app.clone();
                    let consumer = consumer.clone();
                    async move { Ok::<_, Infallible>(handle(&app, req, &consumer).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "consumer connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all in-flight reads finished"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "shutdown grace period over; cutting remaining reads"),
    }
}

/// Answers one read. Never fails: every problem becomes an HTTP answer.
pub async fn handle(app: &App, req: Request<Incoming>, peer: &Peer) -> Response<ProxyBody> {
    let started = Instant::now();
    // One snapshot per read: a reload mid-read does not change this read.
    let snap = app.snapshot.load_full();
    let (mut parts, body) = req.into_parts();

    // request_filter: refuse what a backend must never see.
    if let Some(reason) = malformed(&parts) {
        return local(StatusCode::BAD_REQUEST, reason);
    }
    // upstream_peer: the route, by path only (never the Host header or an
    // absolute-form target's authority).
    let Some(idx) = snap.config.route_index(parts.uri.path()) else {
        return local(StatusCode::NOT_FOUND, "no route for this path\n");
    };
    let route = &snap.config.routes[idx];
    if !route.methods.contains(&parts.method) {
        let mut resp = local(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this route\n",
        );
        if let Ok(allow) = HeaderValue::from_str(
            &route
                .methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        ) {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
        return resp;
    }
    let sticky = route
        .canary
        .sticky_header
        .as_ref()
        .and_then(|h| parts.headers.get(h))
        .map(HeaderValue::as_bytes);
    let chosen = crate::routing::choose_side(route, sticky);
    // Compared against the other side? Decided up front, costs nothing when not.
    let compare = route.mode != Mode::Batch
        && route.mode != Mode::StreamingOnly
        && reconcile::sampled(route, sticky);
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    add_forwarded(&mut parts.headers, peer);
    let body = match RequestBody::from_incoming(body, snap.config.runtime.max_buffered_body).await {
        Ok(b) => b,
        Err(_) => return local(StatusCode::BAD_REQUEST, "could not read the request body\n"),
    };

    let request_path = compare.then(|| {
        parts
            .uri
            .path_and_query()
            .map_or_else(String::new, |p| p.to_string())
    });
    let (served_by, fallback, result, other) =
        forward(&snap, idx, parts, body, chosen, compare).await;

    // response_filter + logging
    let m = &route.state.metrics;
    let mut resp = match result {
        Ok(resp) => {
            let (mut head, body) = resp.into_parts();
            strip_hop_by_hop(&mut head.headers);
            // A comparison copies the served body as it streams to the consumer.
            let capture = other.map(|(other, slot)| {
                let served = Served {
                    side: served_by,
                    status: head.status.as_u16(),
                    watermark_ms: watermark_of(
                        &head.headers,
                        &route.freshness.header,
                        route.freshness.last_modified_fallback,
                    ),
                    request: request_path.unwrap_or_default(),
                };
                reconcile::start(
                    snap.clone(),
                    idx,
                    served,
                    other,
                    slot,
                    app.divergence_logs.clone(),
                )
            });
            Response::from_parts(head, Either::Left(Tee::new(body, capture)))
        }
        Err(status) => local(
            status,
            status.canonical_reason().unwrap_or("upstream failed"),
        ),
    };
    let h = resp.headers_mut();
    h.insert(SERVED_BY, HeaderValue::from_static(served_by.as_str()));
    // Only this cutover's fallback may be reported (an upstream may sit
    // behind a cutover of its own).
    h.remove(FALLBACK);
    if let Some(reason) = fallback {
        h.insert(FALLBACK, reason.header_value());
    }
    let side = served_by.index();
    route.state.reads[side].fetch_add(1, Ordering::Relaxed);
    m.requests[side][RouteMetrics::code_class(resp.status().as_u16())].increment(1);
    m.request_duration[side].record(started.elapsed().as_secs_f64());
    resp
}

/// The other side's read for a comparison, already running, and the slot it holds.
type OtherRead = (JoinHandle<Result<Read, Skip>>, ReconcileSlot);

/// What `forward` hands back: who served, the fallback reason if any, the
/// upstream response head (or the status to answer with), and the other
/// side's read when this read is compared.
type Forwarded = (
    SideName,
    Option<FallbackReason>,
    Result<Response<UpstreamBody>, StatusCode>,
    Option<OtherRead>,
);

/// Forwards the read to the chosen side and falls back to batch when allowed.
/// In shadow mode (and for a compared streaming read) it also starts the
/// other side's read, in its own task, so it never delays this one.
async fn forward(
    snap: &Arc<Snapshot>,
    idx: usize,
    parts: Parts,
    body: RequestBody,
    chosen: SideName,
    compare: bool,
) -> Forwarded {
    let route = &snap.config.routes[idx];
    let clients = &snap.clients[idx];
    let mut body = Some(body);
    let mut fallback_reason = None;
    let mut other = None;

    if compare && route.mode == Mode::Shadow {
        // Phase 1: the same read goes to streaming beside batch; streaming's
        // answer never reaches the consumer.
        other = start_other_read(snap, idx, SideName::Streaming, &parts, body.as_ref());
    }

    if chosen == SideName::Streaming {
        let may_fall_back = route.mode != Mode::StreamingOnly;
        let state = &route.state;
        let now_ms = now_unix_ms();
        let (outcome, answer, replay) = 'attempt: {
            // Both refusals below happen before anything is sent, so the
            // original body is still ours for batch.
            let Some(_slot) = state.try_streaming_slot(route.streaming.max_inflight) else {
                break 'attempt (
                    StreamingOutcome::Overflow,
                    Err(StatusCode::SERVICE_UNAVAILABLE),
                    None,
                );
            };
            let admission = state.circuit.admit(now_ms);
            if admission == Admission::Open {
                break 'attempt (
                    StreamingOutcome::CircuitOpen,
                    Err(StatusCode::SERVICE_UNAVAILABLE),
                    None,
                );
            }
            // A trial read dropped before its verdict (the consumer went
            // away) gives the trial back, or the circuit stays half-open.
            let mut trial = TrialGuard((admission == Admission::Trial).then_some(&state.circuit));
            // Keep the body batch would need, only if batch may be asked
            // (the headers stay in `parts`: every attempt borrows them).
            let replay = if may_fall_back {
                body.as_ref().and_then(RequestBody::replay)
            } else {
                None
            };
            let out = outgoing(
                &parts,
                route,
                &route.streaming,
                body.take().unwrap_or_else(RequestBody::empty),
            );
            let (outcome, answer) = call(
                route,
                SideName::Streaming,
                &clients[SideName::Streaming.index()],
                out,
            )
            .await;
            trial.0 = None;
            let failed = outcome.trips_circuit();
            if state
                .circuit
                .record(&route.fallback.circuit, admission, failed, now_unix_ms())
            {
                tracing::warn!(route = %route.name, "streaming circuit opened after {} consecutive failures", route.fallback.circuit.failures);
            }
            (outcome, answer, replay)
        };
        let replayable = replay.is_some() || body.is_some();
        match fallback::decide(route.mode, &route.fallback, outcome, replayable) {
            None => {
                // Served by streaming: a sampled read is also read from batch
                // and compared (the safety net of phases 2-3).
                if compare && answer.is_ok() {
                    other = match &replay {
                        Some(b) => start_other_read(snap, idx, SideName::Batch, &parts, Some(b)),
                        None => {
                            reconcile::skip(route, Skip::Unbuffered);
                            None
                        }
                    };
                }
                return (SideName::Streaming, None, answer, other);
            }
            Some(reason) => {
                route.state.metrics.fallbacks[reason.index()].increment(1);
                route.state.fallbacks.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(route = %route.name, reason = reason.as_str(), "falling back to batch");
                fallback_reason = Some(reason);
                if let Some(b) = replay {
                    body = Some(b);
                }
            }
        }
    }

    let out = outgoing(
        &parts,
        route,
        &route.batch,
        body.take().unwrap_or_else(RequestBody::empty),
    );
    let (_, answer) = call(
        route,
        SideName::Batch,
        &clients[SideName::Batch.index()],
        out,
    )
    .await;
    if answer.is_err()
        && let Some((handle, slot)) = other.take()
    {
        // Batch gave nothing to compare with. The shadow read still runs to
        // its end (its figures count), holding its slot so the cap holds.
        reconcile::skip(route, Skip::UpstreamError);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = handle.await;
        });
    }
    (SideName::Batch, fallback_reason, answer, other)
}

/// Starts the other side's read for a comparison, if a slot is free and the
/// request can be sent twice; otherwise counts the skip.
fn start_other_read(
    snap: &Arc<Snapshot>,
    idx: usize,
    side: SideName,
    parts: &Parts,
    body: Option<&RequestBody>,
) -> Option<OtherRead> {
    let route = &snap.config.routes[idx];
    let Some(body) = body.and_then(RequestBody::replay) else {
        reconcile::skip(route, Skip::Unbuffered);
        return None;
    };
    let Some(slot) = try_reconcile_slot(&route.state, route.reconcile.max_inflight) else {
        reconcile::skip(route, Skip::Inflight);
        return None;
    };
    // Its own task needs its own copy of the method and headers.
    let out = outgoing(parts, route, route.side(side), body);
    let out = Outgoing {
        method: Cow::Owned(out.method.into_owned()),
        headers: Cow::Owned(out.headers.into_owned()),
        ..out
    };
    Some((
        reconcile::spawn_other_read(snap.clone(), idx, side, out),
        slot,
    ))
}

/// One upstream attempt, recorded: result, latency, watermark, error window.
/// The outcome says what fallback needs to know; the answer is the response
/// head or the status to give the consumer if nobody else answers.
pub(crate) async fn call(
    route: &Route,
    side: SideName,
    client: &UpstreamClient,
    out: Outgoing<'_>,
) -> (StreamingOutcome, Result<Response<UpstreamBody>, StatusCode>) {
    let started = Instant::now();
    let result = upstream::attempt(client, route.side(side), out).await;
    let m = &route.state.metrics;
    m.upstream_duration[side.index()].record(started.elapsed().as_secs_f64());
    let now_ms = now_unix_ms();
    let (outcome, upstream_result, answer) = match result {
        Ok(resp) => {
            let status = resp.status();
            let watermark = watermark_of(
                resp.headers(),
                &route.freshness.header,
                route.freshness.last_modified_fallback,
            );
            if let Some(w) = watermark {
                route.state.watermark(side).record(w, now_ms);
                m.watermark[side.index()].set(w as f64 / 1000.0);
            }
            let stale = side == SideName::Streaming
                && matches!((watermark, route.fallback.max_staleness), (Some(w), Some(max)) if now_ms - w > max.as_millis() as i64);
            if status.is_server_error() {
                (
                    StreamingOutcome::ServerError,
                    UpstreamResult::Status5xx,
                    Ok(resp),
                )
            } else if stale {
                (StreamingOutcome::Stale, UpstreamResult::Stale, Ok(resp))
            } else if status.is_client_error() {
                (
                    StreamingOutcome::Answered,
                    UpstreamResult::Status4xx,
                    Ok(resp),
                )
            } else {
                (StreamingOutcome::Answered, UpstreamResult::Ok, Ok(resp))
            }
        }
        Err(e @ AttemptError::Connect(_)) => {
            tracing::debug!(route = %route.name, side = side.as_str(), error = %e, "upstream attempt failed");
            (
                StreamingOutcome::Connect,
                UpstreamResult::Connect,
                Err(StatusCode::BAD_GATEWAY),
            )
        }
        Err(AttemptError::Timeout(_)) => (
            StreamingOutcome::Timeout,
            UpstreamResult::Timeout,
            Err(StatusCode::GATEWAY_TIMEOUT),
        ),
    };
    m.upstream_requests[side.index()][upstream_result.index()].increment(1);
    route.state.errors.load()[side.index()].record(upstream_result.is_failure(), now_ms);
    (outcome, answer)
}

/// The read as it goes to `side`: same method, rewritten path, the
/// consumer's query, the (already cleaned) headers, and the body.
fn outgoing<'a>(parts: &'a Parts, route: &Route, side: &Side, body: RequestBody) -> Outgoing<'a> {
    Outgoing {
        method: Cow::Borrowed(&parts.method),
        path_and_query: crate::routing::rewrite(
            &route.prefix,
            side,
            parts.uri.path(),
            parts.uri.query(),
        ),
        headers: Cow::Borrowed(&parts.headers),
        body,
    }
}

/// Why a request must not be forwarded at all, if it must not.
fn malformed(parts: &Parts) -> Option<&'static str> {
    let h = &parts.headers;
    // Both framings at once is the classic smuggling vector: refuse rather
    // than pick one (RFC 9112 6.1 allows either).
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        return Some("both Transfer-Encoding and Content-Length\n");
    }
    if h.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Some("more than one Content-Length\n");
    }
    if has_dot_segment(parts.uri.path()) {
        return Some("dot segments are not allowed in the path\n");
    }
    None
}

/// Whether a path has a `.` or `..` segment, plain or percent-encoded. The
/// prefix rewrite is textual, so `/v1/orders/../customers` would otherwise
/// reach outside the side's base path on a backend that normalises.
fn has_dot_segment(path: &str) -> bool {
    if !path.contains('.') && !path.contains('%') {
        return false;
    }
    path.split('/').any(|seg| {
        let decoded = seg.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

/// Removes hop-by-hop headers: the fixed list and any named in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the names (enum compares for standard headers) finds
    // which are present; most heads carry none or only `Connection`, and
    // each removal costs a hashed lookup.
    let mut present = [false; HOP_COUNT];
    for name in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[i] = true;
        }
    }
    if present[0] {
        // Every `Connection` line, every name it lists ("close" and
        // "keep-alive" are options, and Keep-Alive is on the list anyway).
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|n| !n.eq_ignore_ascii_case(b"close") && !n.eq_ignore_ascii_case(b"keep-alive"))
            .filter_map(|n| HeaderName::from_bytes(n).ok())
            .collect();
        for name in named {
            h.remove(name);
        }
    }
    for (hop, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        h.remove(hop);
    }
}

const HOP_COUNT: usize = 9;
/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
pub(crate) const HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The consumer's address and the header values derived from it, built once
/// per connection rather than per read.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    ip: HeaderValue,
    forwarded: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        let ip = addr.ip();
        let forwarded = match ip {
            std::net::IpAddr::V4(v4) => format!("for={v4};proto=http"),
            std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto=http"),
        };
        Peer {
            addr,
            ip: HeaderValue::from_str(&ip.to_string())
                .expect("an IP address is a valid header value"),
            forwarded: HeaderValue::from_str(&forwarded).expect("ASCII without control characters"),
        }
    }
}

/// Appends the consumer's address to `x-forwarded-for` and `forwarded`.
fn add_forwarded(h: &mut HeaderMap, peer: &Peer) {
    // Several lines are one list (RFC 9110 5.3): keep them all, in order.
    let prev: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if prev.is_empty() {
        Some(peer.ip.clone())
    } else {
        HeaderValue::from_str(&format!("{}, {}", prev.join(", "), peer.addr.ip())).ok()
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    h.append(header::FORWARDED, peer.forwarded.clone());
}

/// Holds a circuit's trial slot while the trial read is in flight; gives it
/// back if the read is dropped before its outcome is recorded.
struct TrialGuard<'a>(Option<&'a crate::fallback::Circuit>);

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if let Some(circuit) = self.0 {
            circuit.abandon_trial();
        }
    }
}

/// A short plain-text answer from cutover itself.
fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_plain_and_encoded() {
        for bad in [
            "/v1/orders/../customers",
            "/v1/./x",
            "/v1/..",
            "/v1/%2e%2E/x",
            "/v1/.%2e",
        ] {
            assert!(has_dot_segment(bad), "{bad}");
        }
        for ok in [
            "/v1/orders",
            "/v1/orders/file.json",
            "/v1/...",
            "/v1/a..b",
            "/v1/%20",
        ] {
            assert!(!has_dot_segment(ok), "{ok}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_connection_named_ones_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.append(header::CONNECTION, "x-other".parse().unwrap());
        h.insert("x-other", "2".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-customer-id", "42".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-customer-id"));
    }

    #[test]
    fn forwarded_headers_append() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "10.0.0.1".parse().unwrap());
        add_forwarded(&mut h, &Peer::new("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        assert_eq!(h[header::FORWARDED], "for=127.0.0.1;proto=http");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &Peer::new("[::1]:5000".parse().unwrap()));
        assert_eq!(h[&X_FORWARDED_FOR], "::1");
        assert_eq!(h[header::FORWARDED], "for=\"[::1]\";proto=http");
    }
}
