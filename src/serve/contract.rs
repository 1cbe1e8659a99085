//! Contracts at run time (SPEC 1.2): streaming's answers checked against
//! the route's contract. Two ways, decided per answer by `plan`:
//!
//! - **before serving** (`on_violation: fallback`, a read that may still go
//!   to batch): the body is read ahead up to `contract.max_body_bytes` and
//!   checked before the head goes to the consumer (`hold`). A violation is
//!   answered by batch (fallback reason `contract`); a pass is served
//!   unchanged, the bytes read ahead first. A longer body, or one that
//!   pauses longer than `limits.body_timeout`, stops being held: what was
//!   read goes out, the rest streams, and it is checked after.
//! - **after serving** (`record`, `streaming_only`, a read continuing a
//!   sequence streaming answered, or a body past the hold): the served body
//!   is copied as it streams (`tee`) and checked off the consumer's path.
//!
//! Either way the check decodes and reads the answer as the comparator
//! does (`decide::contract`), counts it, and writes a violation to the
//! dead letter when one is configured (rate-limited; the file is bounded
//! and rotated like the divergence log). Shadow mode checks streaming's
//! answer to the shadow read (`check_read`), after it, record only.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::request::Parts;
use http::{Method, Response};
use http_body_util::BodyExt;
use hyper::body::Frame;

use crate::config::{Contract, OnViolation, Route};
use crate::decide::contract::{self, Unchecked, Verdict};
use crate::decide::freshness::now_unix_ms;
use crate::net::upstream::UpstreamBody;
use crate::serve::tee::BodyFraming;
use crate::serve::tee::{Capture, Copied, concat};
use crate::state::divergence_log::DivergenceLogs;
use crate::state::live::LiveRoute;
use crate::state::route::ContractResult;

/// Answers up to this many bytes, not encoded, are checked on the runtime
/// thread: a hand-off to a blocking thread costs more than their check.
const INLINE_CHECK_BYTES: usize = 64 * 1024;
/// Bytes of the decoded answer a dead-letter line keeps.
const DEAD_LETTER_BODY: usize = 64 * 1024;
/// Longest an after-serving check waits for the served body to end.
const BODY_WAIT: Duration = Duration::from_secs(60);

/// How a streaming answer is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Held and checked before it is served (a violation falls back).
    Before,
    /// Copied as it is served and checked after (record only).
    After,
}

/// Whether this streaming answer is checked, and how: only a route with a
/// contract, a sampled answer (`contract.sample`), a read with a body to
/// check (not HEAD) and an answer that is records (2xx other than 204 and
/// 206). `may_fall_back`: batch may still answer this read (not
/// `streaming_only`, not a read continuing a sequence streaming answered,
/// and its request body can be sent again).
pub fn plan(cfg: &Route, method: &Method, status: u16, may_fall_back: bool) -> Option<When> {
    let c = cfg.contract.as_ref()?;
    if *method == Method::HEAD || !checked_status(status) || !sampled(c) {
        return None;
    }
    Some(
        if c.on_violation == OnViolation::Fallback && may_fall_back {
            When::Before
        } else {
            When::After
        },
    )
}

/// The statuses whose bodies are the records a contract speaks of.
fn checked_status(status: u16) -> bool {
    (200..300).contains(&status) && status != 204 && status != 206
}

fn sampled(c: &Contract) -> bool {
    c.sample >= 1.0 || (c.sample > 0.0 && fastrand::f64() < c.sample)
}

/// What a check needs to know of the read besides the body.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub framing: BodyFraming,
    pub watermark_ms: Option<i64>,
    /// The read's path and query (`complete` reads its window's params).
    pub request: String,
    pub request_id: Option<String>,
}

impl Ctx {
    /// `request_id`: the read's `x-request-id` (the consumer's, or the one
    /// cutover made).
    pub fn of(
        parts: &Parts,
        request_id: Option<&HeaderValue>,
        framing: BodyFraming,
        watermark_ms: Option<i64>,
    ) -> Ctx {
        Ctx {
            framing,
            watermark_ms,
            request: parts
                .uri
                .path_and_query()
                .map_or_else(String::new, |p| p.to_string()),
            request_id: request_id.and_then(|v| v.to_str().ok()).map(str::to_owned),
        }
    }

    fn query(&self) -> Option<&str> {
        self.request.split_once('?').map(|(_, q)| q)
    }
}

/// What `hold` came to. Returned once per held read and matched at once:
/// boxing the big variant would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Hold {
    /// Serve this (the bytes read ahead, then the rest); `Some(ctx)` when
    /// it still has to be checked after serving.
    Serve(Response<UpstreamBody>, Option<Ctx>),
    /// The answer broke the contract (already counted and dead-lettered):
    /// batch answers instead.
    Broken,
}

/// Reads streaming's answer ahead up to `contract.max_body_bytes` (taken
/// from the comparisons' byte budget) and checks it before it is served.
/// `idle` bounds each pause of the body: a slow answer is not held longer
/// than it would have taken to arrive anyway.
pub async fn hold(
    route: &Arc<LiveRoute>,
    response: Response<UpstreamBody>,
    ctx: Ctx,
    idle: Duration,
    logs: &DivergenceLogs,
) -> Hold {
    let Some(c) = route.config.contract.as_ref() else {
        return Hold::Serve(response, None);
    };
    let (head, mut body) = response.into_parts();
    let held = route.state.compare_held();
    let mut frames = VecDeque::new();
    let mut size = 0usize;
    let ended = loop {
        let next = match tokio::time::timeout(idle, body.frame()).await {
            // Paused too long: serve what came, check after.
            Err(_) => break Ahead::Paused,
            Ok(next) => next,
        };
        match next {
            None => break Ahead::Ended,
            Some(Err(e)) => break Ahead::Failed(e),
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                let over = size + len > c.max_body_bytes || !held.take(len);
                size += len;
                frames.push_back(frame);
                if over {
                    break Ahead::Over;
                }
            }
        }
    };
    match ended {
        Ahead::Ended => {}
        Ahead::Failed(e) => {
            // Broken on the wire: the consumer meets the same failure it
            // would have without a contract; nothing to check.
            let body = UpstreamBody::held(frames, None, Some(e));
            return Hold::Serve(Response::from_parts(head, body), None);
        }
        Ahead::Over | Ahead::Paused => {
            let body = UpstreamBody::held(frames, Some(body), None);
            return Hold::Serve(Response::from_parts(head, body), Some(ctx));
        }
    }
    let bytes = concat(frames.iter().filter_map(Frame::data_ref));
    let verdict = run(route, &ctx, bytes.clone()).await;
    drop(held);
    let broken = record(route, &ctx, &verdict, &bytes, logs);
    if broken {
        return Hold::Broken;
    }
    let body = UpstreamBody::held(frames, None, None);
    Hold::Serve(Response::from_parts(head, body), None)
}

/// How reading ahead ended.
enum Ahead {
    Ended,
    Over,
    Paused,
    Failed(crate::net::upstream::BoxError),
}

/// The copy to attach to a served body, and the task that checks it when
/// the body has ended.
pub fn after(route: Arc<LiveRoute>, ctx: Ctx, logs: DivergenceLogs) -> Capture {
    let limit = route.config.reconcile.max_body_bytes;
    let held = route.state.compare_held();
    let (capture, copied) = Capture::new(limit, held.clone());
    tokio::spawn(async move {
        let _held = held;
        match tokio::time::timeout(BODY_WAIT, copied).await {
            Ok(Ok(Copied::Complete(chunks))) => {
                let bytes = concat(chunks.iter());
                let verdict = run(&route, &ctx, bytes.clone()).await;
                record(&route, &ctx, &verdict, &bytes, &logs);
            }
            Ok(Ok(Copied::TooLarge | Copied::OverBudget)) => {
                route
                    .state
                    .record_contract(ContractResult::Skipped, [], now_unix_ms());
            }
            // The consumer went away or the body failed: not an answer.
            _ => {}
        }
    });
    capture
}

/// Checks an answer read whole for a comparison (streaming's answer to a
/// shadow read), record only.
pub async fn check_read(
    route: &Arc<LiveRoute>,
    ctx: Ctx,
    status: u16,
    body: Bytes,
    logs: &DivergenceLogs,
) {
    if route.config.contract.as_ref().is_none_or(|c| !sampled(c)) || !checked_status(status) {
        return;
    }
    let verdict = run(route, &ctx, body.clone()).await;
    record(route, &ctx, &verdict, &body, logs);
}

/// The check itself: inline when small and plain, else on the blocking pool.
async fn run(route: &Arc<LiveRoute>, ctx: &Ctx, body: Bytes) -> Result<Verdict, Unchecked> {
    let inline = body.len() <= INLINE_CHECK_BYTES && ctx.framing.content_encoding.is_none();
    if inline {
        return check(&route.config, ctx, &body);
    }
    let route = route.clone();
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || check(&route.config, &ctx, &body))
        .await
        .unwrap_or(Err(Unchecked::Format))
}

fn check(cfg: &Route, ctx: &Ctx, body: &[u8]) -> Result<Verdict, Unchecked> {
    let Some(c) = cfg.contract.as_ref() else {
        return Ok(Verdict::default());
    };
    contract::check_answer(
        c,
        &cfg.reconcile,
        ctx.framing
            .content_encoding
            .as_ref()
            .map(HeaderValue::as_bytes),
        ctx.framing.content_type.as_ref().map(HeaderValue::as_bytes),
        body,
        ctx.query(),
        ctx.watermark_ms,
    )
}

/// Counts a check, and writes a violation to the dead letter. True when
/// the answer broke the contract.
fn record(
    route: &LiveRoute,
    ctx: &Ctx,
    verdict: &Result<Verdict, Unchecked>,
    body: &[u8],
    logs: &DivergenceLogs,
) -> bool {
    let now = now_unix_ms();
    let v = match verdict {
        Err(_) => {
            route
                .state
                .record_contract(ContractResult::Skipped, [], now);
            return false;
        }
        Ok(v) if v.passed() => {
            route.state.record_contract(ContractResult::Pass, [], now);
            return false;
        }
        Ok(v) => v,
    };
    route
        .state
        .record_contract(ContractResult::Violation, v.rules(), now);
    let cfg = &route.config;
    let logged = route.state.dead_letter_log.take(now);
    if let Some(dropped) = logged {
        let rules: Vec<&str> = v.rules().map(|r| r.as_str()).collect();
        tracing::info!(
            route = %cfg.name,
            rules = ?rules,
            request_id = ctx.request_id.as_deref(),
            not_logged_before = dropped,
            "streaming's answer broke the route's contract"
        );
    }
    if let (Some(path), Some(_)) = (
        cfg.contract.as_ref().and_then(|c| c.dead_letter.as_ref()),
        logged,
    ) {
        logs.get(path)
            .record(&dead_letter_line(cfg, ctx, v, body, now));
    }
    true
}

/// One dead-letter line (SPEC 1.2): `ts`, `route`, `dataset`,
/// `request_id`, `rules`, `details` (per rule: record index, field,
/// message), `body` (the first 64 KiB, decoded).
fn dead_letter_line(
    cfg: &Route,
    ctx: &Ctx,
    v: &Verdict,
    body: &[u8],
    now_ms: i64,
) -> serde_json::Value {
    let decoded = crate::decide::reconcile::decode::decode(
        ctx.framing
            .content_encoding
            .as_ref()
            .map(HeaderValue::as_bytes),
        body,
        cfg.reconcile.max_body_bytes,
    );
    let text = match &decoded {
        Ok(d) => {
            let cut = &d[..d.len().min(DEAD_LETTER_BODY)];
            String::from_utf8_lossy(cut).into_owned()
        }
        Err(_) => String::new(),
    };
    let details: Vec<serde_json::Value> = v
        .violations
        .iter()
        .map(|d| {
            serde_json::json!({
                "rule": d.rule.as_str(),
                "index": d.index,
                "field": d.field,
                "message": d.message,
            })
        })
        .collect();
    let rules: Vec<&str> = v.rules().map(|r| r.as_str()).collect();
    serde_json::json!({
        "ts": crate::decide::freshness::rfc3339(
            std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms.max(0) as u64)
        ),
        "route": cfg.name,
        "dataset": cfg.dataset,
        "request_id": ctx.request_id,
        "request": ctx.request,
        "rules": rules,
        "details": details,
        "body": text,
        "body_truncated": decoded.as_ref().is_ok_and(|d| d.len() > DEAD_LETTER_BODY),
    })
}
