//! The hot path: accept consumer connections and answer each read through
//! one pipeline, `handle`. Each phase is a named function below it, in the
//! order a read meets them: `request_filter`, `plan`, `prepare_headers`,
//! `forward` (with `try_streaming` and the fallback to batch), `respond`,
//! then for an object read in ranges its whole comparison (`serve::whole`).
//! What cutover answers itself is a `ProxyError` (`error.rs`).

mod answer;
mod error;
mod plan;

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::answer::entry;
pub use self::answer::{ERROR, FALLBACK, ProxyBody, REQUEST_ID, SERVED_BY};
pub use self::error::ProxyError;
use self::plan::{Plan, Role, plan, remember_sequence};
use crate::config::{FallbackReason, Mode, SideName};
use crate::decide::fallback::{self, Admission, AttemptOutcome, Circuit, CircuitChange, Facts};
use crate::decide::freshness::now_unix_ms;
use crate::decide::reconcile::outcome::Skip;
use crate::net::conn::{self, ConnInfo, ConnLimits};
use crate::net::headers::{Origin, Peer, add_forwarded, strip_hop_by_hop, wants_trailers};
use crate::net::upstream::{BodyLimits, Outgoing, RequestBody, UpstreamBody};
use crate::serve::app::App;
use crate::serve::attempt::{self, Attempt};
use crate::serve::compare::{self as reconcile, Read, Served};
use crate::serve::contract;
use crate::serve::tee::Tee;
use crate::state::access_log::{AccessLog, Entry};
use crate::state::live::{LiveRoute, Snapshot};
use crate::state::route::{ReconcileSlot, try_reconcile_slot};

/// Accepts consumer connections (HTTP/1.1 and prior-knowledge h2c) until
/// `shutdown` flips, then stops accepting and gives in-flight reads up to
/// `grace` to finish. `limits` bound each connection (`conn`).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
    limits: ConnLimits,
) {
    let counters = app.consumer_connections.clone();
    let make_service = |info: ConnInfo| {
        let app = app.clone();
        let consumer = Arc::new(Peer::new(info.peer));
        let refusal = info.refusal;
        let raw_targets = info.raw_targets;
        // Requests on this connection so far: the framing follower names
        // the first refused one by its index.
        let seq = Arc::new(AtomicU64::new(0));
        service_fn(move |mut req: Request<Incoming>| {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            if let Some(why) = conn::refused(&refusal, n) {
                req.extensions_mut().insert(FramingRefused(why));
            }
            if let Some(target) = conn::raw_target(&raw_targets, n) {
                req.extensions_mut().insert(RawTarget(target));
            }
            let app = app.clone();
            let consumer = consumer.clone();
            async move { Ok::<_, Infallible>(handle(&app, req, &consumer).await) }
        })
    };
    conn::serve(listener, limits, counters, make_service, shutdown, grace).await;
}

/// The target as the consumer sent it, when hyper saw it percent-encoded
/// (`conn::target`): what the upstream gets.
#[derive(Debug, Clone)]
struct RawTarget(String);

/// Marks a request whose raw head the framing follower refused (both
/// framings, or a repeated `Content-Length`): hyper hid it from the head.
#[derive(Debug, Clone, Copy)]
struct FramingRefused(&'static str);

/// Answers one read. Never fails: every problem becomes an HTTP answer.
pub async fn handle(app: &App, req: Request<Incoming>, peer: &Peer) -> Response<ProxyBody> {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    // One snapshot per read: a reload mid-read does not change this read.
    let (route, runtime, log) = {
        let snap = app.live.snapshot.load();
        let log = snap.access_log.clone();
        match request_filter(&snap, &parts) {
            Ok(route) => (route, snap.settings.runtime.clone(), log),
            Err(refused) => return refused.answer(log.as_ref(), None, &parts, started),
        }
    };
    // Held until the answer's head is ready: the reads cutover is waiting
    // on upstreams for, bounded so a burst batch cannot serve is shed
    // rather than queued without end.
    let Some(_slot) = app.reads.admit(runtime.max_inflight_reads) else {
        return ProxyError::Shed.answer(log.as_ref(), Some(&route), &parts, started);
    };
    let plan = match plan(&route, &parts) {
        Ok(plan) => plan,
        Err(refused) => {
            route.state.metrics.sequence_refused.increment(1);
            return refused.answer(log.as_ref(), Some(&route), &parts, started);
        }
    };
    let trailers = prepare_headers(&mut parts, peer, &route);
    let limits = BodyLimits {
        buffered: runtime.max_buffered_body,
        spooled: runtime.max_spooled_body,
        spool: &app.live.spool,
        idle: runtime.body_timeout,
    };
    let body = match RequestBody::from_incoming(body, limits).await {
        Ok(body) => body,
        Err(e) => {
            return ProxyError::from(e).answer(log.as_ref(), Some(&route), &parts, started);
        }
    };
    let read = forward(app, &route, &parts, body, &plan, runtime.body_timeout).await;
    if read.answer.is_ok() {
        remember_sequence(
            &route,
            &parts,
            &plan,
            read.served_by,
            read.fallback.is_some(),
        );
    }
    let summary = Summary::of(&read);
    let resp = respond(app, &route, read, &parts, trailers);
    if plan.whole_object && summary.error.is_none() {
        // After the answer's head is ready, never before: the whole reads
        // run in their own task and this read does not wait on them.
        crate::serve::whole::after_answer(
            &route,
            &parts,
            sent_target(&parts, &route.config.prefix),
            resp.status(),
            resp.headers(),
            &app.divergence_logs,
        );
    }
    record(
        &route,
        log.as_ref(),
        &parts,
        summary,
        resp.status(),
        started,
    );
    resp
}

/// request_filter: refuses what a backend must never see, and finds the
/// read's route by path only (never the Host header or an absolute-form
/// target's authority). `Err` is answered by cutover itself.
fn request_filter(snap: &Snapshot, parts: &Parts) -> Result<Arc<LiveRoute>, ProxyError> {
    if let Some(FramingRefused(why)) = parts.extensions.get::<FramingRefused>() {
        return Err(ProxyError::Framing(why));
    }
    if let Some(reason) = malformed(parts) {
        return Err(ProxyError::Malformed(reason));
    }
    let route = snap
        .route_for(parts.uri.path())
        .ok_or(ProxyError::NoRoute)?;
    if !route.config.methods.contains(&parts.method) {
        let allow: Vec<&str> = route.config.methods.iter().map(Method::as_str).collect();
        return Err(ProxyError::MethodNotAllowed {
            allow: HeaderValue::from_str(&allow.join(", ")).ok(),
        });
    }
    Ok(route.clone())
}

/// prepare_headers: the consumer's headers as every upstream attempt of the
/// read sends them: hop-by-hop and `Host` removed, the consumer's address,
/// host, scheme and the route's prefix set in the forwarding headers
/// (`headers::add_forwarded`), and an `x-request-id` when the consumer sent
/// none (`traceparent` and the rest pass as they are). True when the
/// consumer takes trailers (`TE: trailers`): the upstream is told so too,
/// since an origin may send them only when asked.
fn prepare_headers(parts: &mut Parts, peer: &Peer, route: &LiveRoute) -> bool {
    let headers = &mut parts.headers;
    let trailers = wants_trailers(headers);
    strip_hop_by_hop(headers);
    // The host the consumer asked for: the target's authority when it has
    // one (h2's `:authority`, an absolute-form target: RFC 9112 3.2.2 says
    // it wins over `Host`), else `Host`.
    let host = headers.remove(header::HOST);
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or(host.as_ref().map(HeaderValue::as_bytes));
    let origin = Origin {
        host,
        prefix: &route.forwarded_prefix,
    };
    // The body's own trailers are dropped (`RequestBody`): announce none.
    headers.remove(header::TRAILER);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    add_forwarded(headers, peer, origin);
    if !headers.contains_key(&REQUEST_ID) {
        headers.insert(REQUEST_ID, new_request_id());
    }
    trailers
}

/// A fresh request id: 128 random bits in hex.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let bits = fastrand::u128(..);
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
    }
    // One allocation (the value's own bytes), not a String and then a copy.
    HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
}

/// An upstream's answer on its way to the consumer: the head (body still
/// streaming) and the watermark it carried.
struct Upstream {
    response: Response<UpstreamBody>,
    watermark_ms: Option<i64>,
}

/// The other side's read for a comparison, already running, and the slot it holds.
struct OtherRead {
    read: JoinHandle<Result<Read, Skip>>,
    slot: ReconcileSlot,
}

/// Where a read went: who served it, why it fell back (if it did), the
/// answer or what cutover answers instead, and the other side's read when
/// this read is compared.
struct Forwarded {
    served_by: SideName,
    fallback: Option<FallbackReason>,
    answer: Result<Upstream, ProxyError>,
    other: Option<OtherRead>,
    /// Streaming's answer still to be checked against the contract, as it
    /// is served (`serve::contract::after`).
    contract: Option<contract::Ctx>,
}

/// forward: sends the read to the chosen side and, when streaming fails in
/// a way the route's `fallback` allows, to batch (one hop, decided on the
/// response head, before any byte reached the consumer), or when streaming's
/// answer, held and checked before serving, broke the route's contract
/// (`check_contract`). In shadow mode, and for a compared streaming read,
/// the other side's read starts in its own task, so it never delays this one.
async fn forward(
    app: &App,
    route: &Arc<LiveRoute>,
    parts: &Parts,
    body: RequestBody,
    plan: &Plan,
    idle: Duration,
) -> Forwarded {
    let cfg = &route.config;
    let mut body = Some(body);
    let mut other = None;
    if plan.compare && plan.mode == Mode::Shadow {
        // Phase 1: the same read goes to streaming beside batch; streaming's
        // answer never reaches the consumer.
        other = start_other_read(route, SideName::Streaming, parts, body.as_ref());
    }

    let mut fallback = None;
    if plan.chosen == SideName::Streaming {
        // The body batch would need, kept only if batch may be asked (the
        // headers stay in `parts`: every attempt borrows them).
        let replay = match cfg.mode {
            Mode::StreamingOnly => None,
            _ => body.as_ref().and_then(RequestBody::replay),
        };
        let continues = matches!(plan.sequence, Role::Continues { .. });
        let StreamingTry {
            outcome,
            answer,
            elapsed,
        } = try_streaming(route, parts, &mut body, continues).await;
        let facts = Facts {
            replayable: replay.is_some() || body.is_some(),
            answer_watermark_ms: answer.as_ref().ok().and_then(|a| a.watermark_ms),
            batch_watermark_ms: route.state.watermark(SideName::Batch).get(),
        };
        let reason = match fallback::decide(cfg.mode, &cfg.fallback, outcome, facts) {
            None => {
                let may_fall_back =
                    !continues && facts.replayable && cfg.mode != Mode::StreamingOnly;
                let (answer, contract) =
                    match check_contract(app, route, parts, answer, may_fall_back, idle).await {
                        Some(checked) => checked,
                        None => {
                            // Broken: batch answers. Nothing of streaming's
                            // answer reached the consumer.
                            route.state.record_fallback(FallbackReason::Contract);
                            fallback = Some(FallbackReason::Contract);
                            body = body.or(replay);
                            return to_batch(route, parts, body, fallback, other).await;
                        }
                    };
                // Served by streaming: a sampled read is also read from batch
                // and compared (the safety net of phases 2-3).
                if plan.compare && answer.is_ok() {
                    other = start_other_read(route, SideName::Batch, parts, replay.as_ref());
                }
                return Forwarded {
                    served_by: SideName::Streaming,
                    fallback: None,
                    answer,
                    other,
                    contract,
                };
            }
            Some(_) if continues => {
                // The read continues a sequence streaming answered: batch's
                // bytes would not fit with the ones the consumer already
                // has, so streaming's failure is the answer.
                route.state.metrics.sequence_refused.increment(1);
                return Forwarded {
                    served_by: SideName::Streaming,
                    fallback: None,
                    answer: answer.map_err(|cause| ProxyError::Pinned {
                        side: SideName::Streaming,
                        cause: Some(Box::new(cause)),
                    }),
                    other: None,
                    contract: None,
                };
            }
            Some(reason) => reason,
        };
        route.state.record_fallback(reason);
        log_fallback(route, reason, &answer, elapsed);
        fallback = Some(reason);
        body = body.or(replay);
    }
    to_batch(route, parts, body, fallback, other).await
}

/// The read's answer from batch: a batch-mode or shadow read, or one that
/// fell back (`fallback`).
async fn to_batch(
    route: &Arc<LiveRoute>,
    parts: &Parts,
    body: Option<RequestBody>,
    fallback: Option<FallbackReason>,
    mut other: Option<OtherRead>,
) -> Forwarded {
    let out = outgoing(
        parts,
        route,
        SideName::Batch,
        body.unwrap_or_else(RequestBody::empty),
    );
    let answer = upstream_answer(attempt::send(route, SideName::Batch, out).await);
    if answer.is_err()
        && let Some(OtherRead { read, slot }) = other.take()
    {
        // Batch gave nothing to compare with. The shadow read still runs to
        // its end (its figures count), holding its slot so the cap holds.
        route.state.record_skip(Skip::UpstreamError);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = read.await;
        });
    }
    Forwarded {
        served_by: SideName::Batch,
        fallback,
        answer,
        other,
        contract: None,
    }
}

/// The contract check of an answer streaming serves (`serve::contract`):
/// held and checked now when a violation may still fall back, else marked
/// to be checked as it is served. `None`: the answer broke the contract
/// and batch is to answer instead.
async fn check_contract(
    app: &App,
    route: &Arc<LiveRoute>,
    parts: &Parts,
    answer: Result<Upstream, ProxyError>,
    may_fall_back: bool,
    idle: Duration,
) -> Option<(Result<Upstream, ProxyError>, Option<contract::Ctx>)> {
    let Ok(up) = answer else {
        return Some((answer, None));
    };
    let status = up.response.status().as_u16();
    let Some(when) = contract::plan(&route.config, &parts.method, status, may_fall_back) else {
        return Some((Ok(up), None));
    };
    let ctx = contract::Ctx::of(
        parts,
        parts.headers.get(REQUEST_ID),
        reconcile::BodyFraming::of(up.response.headers()),
        up.watermark_ms,
    );
    if when == contract::When::After {
        return Some((Ok(up), Some(ctx)));
    }
    match contract::hold(route, up.response, ctx, idle, &app.divergence_logs).await {
        contract::Hold::Serve(response, after) => Some((
            Ok(Upstream {
                response,
                watermark_ms: up.watermark_ms,
            }),
            after,
        )),
        contract::Hold::Broken => None,
    }
}

/// What `try_streaming` came to.
struct StreamingTry {
    outcome: AttemptOutcome,
    answer: Result<Upstream, ProxyError>,
    /// Time to the response head; zero when nothing was sent.
    elapsed: Duration,
}

impl StreamingTry {
    fn refused(outcome: AttemptOutcome, error: ProxyError) -> StreamingTry {
        StreamingTry {
            outcome,
            answer: Err(error),
            elapsed: Duration::ZERO,
        }
    }
}

/// Logs a fallback at `info`, a few a second per route at most (the
/// counters have every one), with what streaming did and how long it took.
fn log_fallback(
    route: &LiveRoute,
    reason: FallbackReason,
    answer: &Result<Upstream, ProxyError>,
    elapsed: Duration,
) {
    let Some(dropped) = route.state.fallback_log.take(now_unix_ms()) else {
        return;
    };
    let (status, error) = match answer {
        Ok(up) => (Some(up.response.status().as_u16()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    tracing::info!(
        route = %route.config.name,
        reason = reason.as_str(),
        streaming_status = status,
        streaming_error = error,
        streaming_ms = elapsed.as_secs_f64() * 1000.0,
        not_logged_before = dropped,
        "streaming failed; batch answers"
    );
}

/// try_streaming: the streaming attempt, unless the in-flight cap or the
/// circuit refuses it first (then nothing was sent and `body` is left as it
/// was). Feeds the circuit with the attempt's outcome. A read that
/// `continues` a sequence is refused by neither: it cannot go elsewhere,
/// the cap and the circuit divert new sequences only.
async fn try_streaming(
    route: &LiveRoute,
    parts: &Parts,
    body: &mut Option<RequestBody>,
    continues: bool,
) -> StreamingTry {
    let state = &route.state;
    let cap = route.config.streaming.max_inflight.filter(|_| !continues);
    let Some(_slot) = state.try_streaming_slot(cap) else {
        return StreamingTry::refused(AttemptOutcome::Overflow, ProxyError::Overflow);
    };
    let admission = state.circuit.admit(now_unix_ms());
    if admission == Admission::Open && !continues {
        return StreamingTry::refused(AttemptOutcome::CircuitOpen, ProxyError::CircuitOpen);
    }
    // A trial read dropped before its verdict (the consumer went away)
    // gives the trial back, or the circuit stays half-open.
    let mut trial = TrialGuard((admission == Admission::Trial).then_some(&state.circuit));
    let sent = body.take().unwrap_or_else(RequestBody::empty);
    let out = outgoing(parts, route, SideName::Streaming, sent);
    let attempt = attempt::send(route, SideName::Streaming, out).await;
    trial.0 = None;
    if admission == Admission::Open {
        // Sent past an open circuit (a continuing read): its outcome is no
        // trial, so it neither closes the circuit nor extends it.
        return StreamingTry {
            outcome: attempt.outcome,
            elapsed: attempt.elapsed,
            answer: upstream_answer(attempt),
        };
    }
    let policy = &route.config.fallback.circuit;
    let failed = attempt.outcome.is_failure();
    match state
        .circuit
        .record(policy, admission, failed, now_unix_ms())
    {
        CircuitChange::Opened => {
            state.metrics.circuit_opens.increment(1);
            tracing::warn!(route = %route.config.name, outcome = ?attempt.outcome, cooldown = ?policy.cooldown, "streaming circuit opened after {} consecutive failures: batch serves until a trial read succeeds", policy.failures);
        }
        CircuitChange::Closed => {
            tracing::info!(route = %route.config.name, "streaming circuit closed: a trial read succeeded");
        }
        CircuitChange::None => {}
    }
    StreamingTry {
        outcome: attempt.outcome,
        elapsed: attempt.elapsed,
        answer: upstream_answer(attempt),
    }
}

/// An attempt's answer, or the error cutover answers in its place.
fn upstream_answer(attempt: Attempt) -> Result<Upstream, ProxyError> {
    match attempt.response {
        Ok(response) => Ok(Upstream {
            response,
            watermark_ms: attempt.watermark_ms,
        }),
        Err(e) => Err(ProxyError::from(e)),
    }
}

/// respond: the answer as the consumer gets it: the upstream's head without
/// hop-by-hop headers and its body streaming through (copied on the side
/// for a comparison), or cutover's own answer; then who served and why.
/// The upstream's trailers reach only a consumer that takes them.
fn respond(
    app: &App,
    route: &Arc<LiveRoute>,
    read: Forwarded,
    parts: &Parts,
    trailers: bool,
) -> Response<ProxyBody> {
    let local = read.answer.as_ref().err().map(ProxyError::reason);
    let mut resp = match read.answer {
        Ok(Upstream {
            response,
            watermark_ms,
        }) => {
            let (mut head, mut body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            answer_filter(route, read.served_by, &mut head.headers, parts);
            if !trailers {
                head.headers.remove(header::TRAILER);
                body.drop_trailers();
            }
            let capture = read.other.map(|OtherRead { read: other, slot }| {
                let served = Served {
                    side: read.served_by,
                    status: head.status.as_u16(),
                    watermark_ms,
                    framing: reconcile::BodyFraming::of(&head.headers),
                    request: parts
                        .uri
                        .path_and_query()
                        .map_or_else(String::new, |p| p.to_string()),
                    request_id: parts
                        .headers
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                };
                reconcile::start(
                    route.clone(),
                    served,
                    other,
                    slot,
                    app.divergence_logs.clone(),
                )
            });
            let checked = read
                .contract
                .map(|ctx| contract::after(route.clone(), ctx, app.divergence_logs.clone()));
            Response::from_parts(head, Either::Left(Tee::new(body, capture, checked)))
        }
        Err(e) => e.respond(Some(route)),
    };
    let h = resp.headers_mut();
    h.insert(SERVED_BY, HeaderValue::from_static(read.served_by.as_str()));
    // Only this cutover's fallback may be reported (an upstream may sit
    // behind a cutover of its own); its error header is set with its answer.
    h.remove(FALLBACK);
    if let Some(reason) = read.fallback {
        h.insert(FALLBACK, reason.header_value());
    }
    if local.is_none() {
        h.remove(ERROR);
    }
    resp
}

/// answer_filter (part of `respond`): what the serving side's head must
/// not say as it is: a `Location`/`Content-Location` into the side becomes
/// the consumer-facing URL (`redirect`), streaming's `ETag` is marked and
/// the `Last-Modified` the side served is remembered (`validators`).
fn answer_filter(route: &LiveRoute, side: SideName, h: &mut http::HeaderMap, parts: &Parts) {
    let consumer_host = parts.headers.get(crate::net::headers::X_FORWARDED_HOST);
    let cfg = &route.config;
    crate::net::redirect::rewrite_answer(h, cfg.side(side), &cfg.prefix, consumer_host);
    crate::net::validators::on_answer(h, side, &route.state.issued_dates);
}

/// What `record` needs of a read once it is answered.
#[derive(Clone, Copy)]
struct Summary {
    served_by: SideName,
    fallback: Option<FallbackReason>,
    /// The `x-cutover-error` reason when cutover answered itself.
    error: Option<&'static str>,
}

impl Summary {
    fn of(read: &Forwarded) -> Summary {
        Summary {
            served_by: read.served_by,
            fallback: read.fallback,
            error: read.answer.as_ref().err().map(ProxyError::reason),
        }
    }
}

/// record (logging): counts the read in the route's figures and metrics,
/// and writes its access log entry when the access log wants it.
fn record(
    route: &LiveRoute,
    log: Option<&AccessLog>,
    parts: &Parts,
    read: Summary,
    status: StatusCode,
    started: Instant,
) {
    let elapsed = started.elapsed();
    let fell_back = read.fallback.is_some();
    route.state.record_read(
        read.served_by,
        status.as_u16(),
        elapsed,
        fell_back,
        now_unix_ms(),
    );
    if let Some(log) = log
        && log.wants(fell_back || read.error.is_some())
    {
        log.record(Entry {
            served_by: Some(read.served_by.as_str()),
            fallback: read.fallback.map(FallbackReason::as_str),
            error: read.error,
            upstream_status: read.error.is_none().then_some(status.as_u16()),
            ..entry(log, Some(route), parts, status, elapsed)
        });
    }
}

/// Starts the other side's read for a comparison, if a slot is free and the
/// request can be sent twice; otherwise counts the skip.
fn start_other_read(
    route: &Arc<LiveRoute>,
    side: SideName,
    parts: &Parts,
    body: Option<&RequestBody>,
) -> Option<OtherRead> {
    let Some(body) = body.and_then(RequestBody::replay) else {
        route.state.record_skip(Skip::Unbuffered);
        return None;
    };
    let Some(slot) = try_reconcile_slot(&route.state, route.config.reconcile.max_inflight) else {
        route.state.record_skip(Skip::Inflight);
        return None;
    };
    // Its own task needs its own copy of the method and headers.
    let out = outgoing(parts, route, side, body);
    let out = Outgoing {
        method: Cow::Owned(out.method.into_owned()),
        headers: Cow::Owned(out.headers.into_owned()),
        ..out
    };
    Some(OtherRead {
        read: reconcile::spawn_other_read(route.clone(), side, out, slot.held()),
        slot,
    })
}

/// The read as it goes to `side`: same method, rewritten path, the
/// consumer's query, the (already cleaned) headers without the validators
/// the other side issued (copied only when a conditional header is there:
/// `validators::for_side`), and the body.
fn outgoing<'a>(
    parts: &'a Parts,
    route: &LiveRoute,
    side: SideName,
    body: RequestBody,
) -> Outgoing<'a> {
    let (path, query) = sent_target(parts, &route.config.prefix);
    Outgoing {
        method: Cow::Borrowed(&parts.method),
        path_and_query: crate::decide::routing::rewrite(
            &route.config.prefix,
            route.config.side(side),
            path,
            query,
        ),
        headers: crate::net::validators::for_side(&parts.headers, side, &route.state.issued_dates),
        body,
    }
}

/// The read's path and query as the upstream gets them: as the consumer
/// sent them where hyper saw them encoded (origin-form, under the route's
/// prefix), else as parsed.
fn sent_target<'a>(parts: &'a Parts, prefix: &str) -> (&'a str, Option<&'a str>) {
    if let Some(RawTarget(raw)) = parts.extensions.get::<RawTarget>() {
        // A fragment is dropped, as hyper drops it from the parsed target.
        let raw = raw.split('#').next().unwrap_or_default();
        let (path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        if path.starts_with('/') && path.starts_with(prefix) {
            return (path, query);
        }
    }
    (parts.uri.path(), parts.uri.query())
}

/// Why a request must not be forwarded at all, if it must not.
fn malformed(parts: &Parts) -> Option<&'static str> {
    let h = &parts.headers;
    // Both framings at once is the classic smuggling vector: refuse rather
    // than pick one (RFC 9112 6.1 allows either). On HTTP/1 hyper hides both
    // cases from the head, so `conn::framing` refuses them from the raw
    // bytes (`FramingRefused` above); this check covers what reaches the
    // service with the headers intact (h2).
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        return Some("both Transfer-Encoding and Content-Length\n");
    }
    if h.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Some("more than one Content-Length\n");
    }
    // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host (h2 carries
    // :authority instead). Two that differ are how a request is made to
    // mean one host to one hop and another to the next.
    if parts.version == Version::HTTP_11 {
        let mut hosts = h.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => return Some("no Host header\n"),
            (Some(a), Some(b)) if a != b => return Some("two different Host headers\n"),
            _ => {}
        }
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

/// Holds a circuit's trial slot while the trial read is in flight; gives it
/// back if the read is dropped before its outcome is recorded.
struct TrialGuard<'a>(Option<&'a Circuit>);

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if let Some(circuit) = self.0 {
            circuit.abandon_trial();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let ids: Vec<HeaderValue> = (0..64).map(|_| new_request_id()).collect();
        for id in &ids {
            let id = id.to_str().expect("ASCII");
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // Every digit position is used: the high nibble is not always 0.
        assert!(ids.iter().any(|id| id.as_bytes()[0] != b'0'));
    }

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
}
