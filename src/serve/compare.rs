//! Comparisons at run time, off the consumer's path: the other side's read
//! (streaming in shadow mode, batch for a sampled streaming read) runs in its
//! own task; the served body is copied as it streams (`tee`); when both are
//! in, the comparator runs on a blocking thread and the result is counted,
//! windowed and logged. Every step is bounded: slots in flight, bytes kept,
//! and time waited.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::HeaderValue;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Route, SideName};
use crate::decide::budget::Held;
use crate::decide::freshness::now_unix_ms;
use crate::decide::reconcile::compare;
use crate::decide::reconcile::outcome::Skip;
use crate::decide::reconcile::prepare::Prepared;
use crate::decide::reconcile::report::{Answer, Category, Spec};
use crate::net::upstream::Outgoing;
pub use crate::serve::tee::BodyFraming;
use crate::serve::tee::{Capture, Copied};
use crate::state::divergence_log::DivergenceLogs;
use crate::state::live::LiveRoute;
use crate::state::route::ReconcileSlot;

/// Longest a comparison waits for either body before giving up.
const BODY_WAIT: Duration = Duration::from_secs(60);
/// Both answers together up to this size are compared on the runtime thread.
const INLINE_COMPARE_BYTES: usize = 64 * 1024;
/// Defects (every category but `timing`) written to the log per comparison.
const LOGGED_PER_COMPARISON: usize = 5;
/// A `timing` divergence is expected while the sides' watermarks differ: one
/// per route per minute reaches the log, with how many were left out since
/// the last one (`timing_not_logged`); all are counted in the metrics.
const TIMING_LOG_PERIOD_MS: i64 = 60_000;

/// One side's answer, read for comparison.
#[derive(Debug)]
pub struct Read {
    pub status: u16,
    pub watermark_ms: Option<i64>,
    /// What the comparison must know of the answer's head to read its body.
    pub framing: BodyFraming,
    /// The answer's version (`whole_object::version_of`: its validator's
    /// digest, 0 for none), what the whole-object table records.
    pub version: u64,
    pub body: Bytes,
}

/// Whether this read is compared: `reconcile.sample` of reads, decided by
/// the sticky header's hash when the read has one (the same customer is
/// always or never compared), at random otherwise.
pub fn sampled(route: &Route, sticky: Option<&[u8]>) -> bool {
    let sample = route.reconcile.sample;
    if sample >= 1.0 {
        return true;
    }
    if sample <= 0.0 {
        return false;
    }
    let point = match sticky {
        // Salted so canary membership and sampling are independent.
        Some(v) => {
            (crate::decide::routing::fnv1a(&[b"reconcile:", v].concat()) % 1_000_000) as f64 / 1e6
        }
        None => fastrand::f64(),
    };
    point < sample
}

/// Starts the other side's read in its own task: recorded like any upstream
/// attempt, its body read up to `max_body_bytes`.
pub fn spawn_other_read(
    route: Arc<LiveRoute>,
    side: SideName,
    out: Outgoing<'static>,
    held: Arc<Held>,
) -> JoinHandle<Result<Read, Skip>> {
    tokio::spawn(async move {
        let attempt = crate::serve::attempt::send(&route, side, out).await;
        let resp = attempt.response.map_err(|_| Skip::UpstreamError)?;
        let status = resp.status().as_u16();
        let watermark_ms = attempt.watermark_ms;
        let framing = BodyFraming::of(resp.headers());
        let version = crate::decide::whole_object::version_of(resp.headers());
        let limit = route.config.reconcile.max_body_bytes;
        let mut body = resp.into_body();
        // Sized once from the announced length (at most the cap): growing by
        // doubling copies a 4 MiB answer about twice more and faults in
        // pages it then frees.
        let announced = body.size_hint().exact().unwrap_or(0);
        if announced > limit as u64 {
            return Err(Skip::TooLarge);
        }
        // What the buffer may hold, taken from the process's budget first.
        let mut reserved = announced as usize;
        if !held.take(reserved) {
            return Err(Skip::Memory);
        }
        let mut buf = BytesMut::with_capacity(reserved);
        let read = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| Skip::Aborted)?;
                if let Some(d) = frame.data_ref() {
                    let len = buf.len() + d.len();
                    if len > limit {
                        return Err(Skip::TooLarge);
                    }
                    if len > reserved {
                        if !held.take(len - reserved) {
                            return Err(Skip::Memory);
                        }
                        reserved = len;
                    }
                    buf.extend_from_slice(d);
                }
            }
            Ok(())
        };
        tokio::time::timeout(BODY_WAIT, read)
            .await
            .map_err(|_| Skip::Aborted)??;
        Ok(Read {
            status,
            watermark_ms,
            framing,
            version,
            body: buf.freeze(),
        })
    })
}

/// What a comparison needs from the read that was served.
pub struct Served {
    pub side: SideName,
    pub status: u16,
    pub watermark_ms: Option<i64>,
    pub framing: BodyFraming,
    /// Path and query, for the divergence log.
    pub request: String,
    pub request_id: Option<String>,
}

/// Starts the comparison of the served answer (copied through the returned
/// `Capture`) with the other side's read. Returns the capture to attach to
/// the consumer's body.
pub fn start(
    route: Arc<LiveRoute>,
    served: Served,
    other: JoinHandle<Result<Read, Skip>>,
    slot: ReconcileSlot,
    logs: DivergenceLogs,
) -> Capture {
    let (capture, copied) = Capture::new(route.config.reconcile.max_body_bytes, slot.held());
    tokio::spawn(async move {
        let held = slot.held();
        let _slot = slot;
        match collect(
            served.status,
            served.watermark_ms,
            served.framing,
            copied,
            other,
        )
        .await
        {
            Err(why) => route.state.record_skip(why),
            Ok((served_read, other_read)) => {
                let (batch, streaming) = match served.side {
                    SideName::Batch => (served_read, other_read),
                    SideName::Streaming => (other_read, served_read),
                };
                if served.side == SideName::Batch {
                    // Shadow: streaming's answer is checked here, record
                    // only (a served one is checked as it is served).
                    let ctx = crate::serve::contract::Ctx {
                        framing: streaming.framing.clone(),
                        watermark_ms: streaming.watermark_ms,
                        request: served.request.clone(),
                        request_id: served.request_id.clone(),
                    };
                    crate::serve::contract::check_read(
                        &route,
                        ctx,
                        streaming.status,
                        streaming.body.clone(),
                        &logs,
                    )
                    .await;
                }
                finish(&route, &served.request, batch, streaming, held, &logs).await;
            }
        }
    });
    capture
}

/// Compares two whole answers and records the outcome: skipped when either
/// is partial or not modified, else compared (inline when small, on the
/// blocking pool when large, so it never holds up reads), counted, windowed
/// and logged. `request` names the read in the divergence log.
pub async fn finish(
    route: &Arc<LiveRoute>,
    request: &str,
    batch: Read,
    streaming: Read,
    held: Arc<Held>,
    logs: &DivergenceLogs,
) {
    if let Some(why) = Skip::for_statuses(batch.status, streaming.status) {
        route.state.record_skip(why);
        return;
    }
    // Small plain answers compare in microseconds: inline, without a
    // hand-off to a blocking thread (which costs more than the comparison).
    // An encoded one may decode to much more, so it never runs inline.
    let inline = batch.body.len() + streaming.body.len() <= INLINE_COMPARE_BYTES
        && batch.framing.content_encoding.is_none()
        && streaming.framing.content_encoding.is_none();
    let route2 = route.clone();
    let run = move || {
        let cfg = &route2.config;
        let (b, s) = match (prepare(cfg, &held, &batch), prepare(cfg, &held, &streaming)) {
            (Ok(b), Ok(s)) => (b, s),
            (Err(why), _) | (_, Err(why)) => return Err(why),
        };
        let report = compare::compare_within(
            &spec_of(cfg),
            answer(&batch, &b),
            answer(&streaming, &s),
            &|n| held.take(n),
        );
        Ok((report, batch.watermark_ms, streaming.watermark_ms))
    };
    let report = if inline {
        Ok(run())
    } else {
        tokio::task::spawn_blocking(run).await
    };
    match report {
        Ok(Ok((report, bwm, swm))) => record(route, request, &report, bwm, swm, logs),
        Ok(Err(why)) => route.state.record_skip(why),
        Err(_) => route.state.record_skip(Skip::Aborted),
    }
}

/// One side's answer decoded and read as its format says, its decoded or
/// converted bytes taken from the budget besides the answer's own.
fn prepare<'a>(cfg: &Route, held: &Held, r: &'a Read) -> Result<Prepared<'a>, Skip> {
    let p = crate::decide::reconcile::prepare::prepare(
        cfg.reconcile.format,
        r.framing
            .content_encoding
            .as_ref()
            .map(HeaderValue::as_bytes),
        r.framing.content_type.as_ref().map(HeaderValue::as_bytes),
        &r.body,
        cfg.reconcile.max_body_bytes,
    )?;
    if let std::borrow::Cow::Owned(v) = &p.body
        && !held.take(v.len())
    {
        return Err(Skip::Memory);
    }
    Ok(p)
}

fn answer<'a>(r: &Read, p: &'a Prepared<'_>) -> Answer<'a> {
    Answer {
        layout: p.layout,
        ..Answer::json(r.status, &p.body, r.watermark_ms)
    }
}

/// The comparator's settings for a route.
fn spec_of(route: &Route) -> Spec<'_> {
    let r = &route.reconcile;
    Spec {
        records: &r.records,
        key: r.key.as_deref(),
        ignore: &r.ignore,
        numeric_tolerance: r.numeric_tolerance,
        event_time: r.event_time_field.as_deref(),
    }
}

async fn collect(
    status: u16,
    watermark_ms: Option<i64>,
    framing: BodyFraming,
    copied: oneshot::Receiver<Copied>,
    other: JoinHandle<Result<Read, Skip>>,
) -> Result<(Read, Read), Skip> {
    let served = match tokio::time::timeout(BODY_WAIT, copied).await {
        Ok(Ok(Copied::Complete(chunks))) => crate::serve::tee::concat(chunks.iter()),
        Ok(Ok(Copied::OverBudget)) => return Err(Skip::Memory),
        Ok(Ok(Copied::TooLarge)) => {
            other.abort();
            return Err(Skip::TooLarge);
        }
        _ => {
            other.abort();
            return Err(Skip::Aborted);
        }
    };
    let other = match tokio::time::timeout(BODY_WAIT, other).await {
        Ok(Ok(r)) => r?,
        _ => return Err(Skip::Aborted),
    };
    Ok((
        Read {
            status,
            watermark_ms,
            framing,
            // Per-read comparisons keep no table of versions.
            version: 0,
            body: served,
        },
        other,
    ))
}

fn rfc3339_ms(ms: Option<i64>) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms?) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Counts a finished comparison, feeds the divergence window, logs a sample.
fn record(
    live: &LiveRoute,
    request: &str,
    report: &crate::decide::reconcile::report::Report,
    batch_wm: Option<i64>,
    streaming_wm: Option<i64>,
    logs: &DivergenceLogs,
) {
    let route = &live.config;
    if report.over_budget {
        live.state.record_skip(Skip::Memory);
        return;
    }
    if report.unreadable {
        live.state.record_skip(Skip::Format);
        return;
    }
    if report.no_records {
        // A pointer that finds nothing on both sides is a config mistake:
        // never a divergence (or every read would "diverge").
        live.state.record_skip(Skip::NoRecords);
        if live.state.fallback_log.take(now_unix_ms()).is_some() {
            tracing::warn!(route = %route.name, records = %route.reconcile.records, "reconcile.records finds no record array in either answer: comparison skipped");
        }
        return;
    }
    live.state.record_comparison(report, now_unix_ms());
    let Some(path) = route.reconcile.divergence_log.as_ref() else {
        return;
    };
    if report.samples.is_empty() {
        return;
    }
    let now_ms = now_unix_ms();
    let timings = report.count(Category::Timing);
    let timing = match report
        .samples
        .iter()
        .find(|d| d.category == Category::Timing)
    {
        Some(d) => match live.state.timing_log.take(now_ms, TIMING_LOG_PERIOD_MS) {
            Some(left_out) => {
                live.state.timing_log.leave_out(timings.saturating_sub(1));
                Some((d, left_out))
            }
            None => {
                live.state.timing_log.leave_out(timings);
                None
            }
        },
        None => None,
    };
    let defects = report
        .samples
        .iter()
        .filter(|d| d.category.is_defect())
        .take(LOGGED_PER_COMPARISON);
    let entries: Vec<_> = defects
        .map(|d| (d, None))
        .chain(timing.map(|(d, n)| (d, Some(n))))
        .collect();
    if entries.is_empty() {
        return;
    }
    let log = logs.get(path);
    let now = rfc3339_ms(Some(now_ms));
    for (d, timing_not_logged) in entries {
        let mut entry = serde_json::json!({
            "time": now,
            "route": route.name,
            "request": request,
            "category": d.category.as_str(),
            "key": d.key,
            "field": d.field,
            "side": d.side,
            "batch": d.batch,
            "streaming": d.streaming,
            "batch_watermark": rfc3339_ms(batch_wm),
            "streaming_watermark": rfc3339_ms(streaming_wm),
            "batch_rows": report.batch_rows,
            "streaming_rows": report.streaming_rows,
        });
        if let Some(n) = timing_not_logged {
            entry["timing_not_logged"] = n.into();
        }
        log.record(&entry);
    }
}
