//! Objects read in ranges, compared whole (SPEC 1.2, "Reconciliation
//! compares data, not bytes"): after the consumer's HEAD or first ranged
//! GET of an object is answered, both sides' complete objects are fetched
//! in a task of their own and compared as any two answers are.
//!
//! Why: a Parquet reader (DuckDB, polars, pyarrow) reads a file as a HEAD
//! and ranged GETs. None of those is comparable (a `206` is a part, a HEAD
//! has no body) and in shadow mode none reaches streaming (the sequence
//! rule), so without this a route whose consumer reads only in ranges is
//! never compared. The whole reads are fresh plain GETs of their own: no
//! `Range`, no validator, never in the pin table, never seen by the
//! consumer. Each object version is fetched once per `freshness.window`
//! (`decide::whole_object`), holding a comparison slot and the byte budget.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Method, StatusCode};
use tokio::task::JoinHandle;

use crate::config::SideName;
use crate::decide::freshness::now_unix_ms;
use crate::decide::reconcile::outcome::Skip;
use crate::decide::whole_object::{key_of, version_of};
use crate::net::upstream::{Outgoing, RequestBody};
use crate::serve::compare::{self, Read};
use crate::state::divergence_log::DivergenceLogs;
use crate::state::live::LiveRoute;
use crate::state::route::try_reconcile_slot;

/// The request headers a whole read leaves out: the range, and every
/// validator (the consumer's, judged against one side's object, would turn
/// the whole read into a `304` or `412` with nothing to compare).
const LEFT_OUT: [header::HeaderName; 8] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    // A GET of its own sends no body.
    header::CONTENT_LENGTH,
    header::EXPECT,
];

/// Called once the consumer's read (a HEAD or a ranged GET that starts an
/// object, `plan.whole_object`) is answered by an upstream with `status`
/// and the head `served`; `target` is the path and query the consumer read.
/// Never waits: when the object version is due (`Versions::claim`) and a
/// comparison slot is free, the whole reads and the comparison run in their
/// own task. The outcome is counted as any comparison's is:
/// `cutover_reconcile_total`, and `cutover_reconcile_skipped_total` with
/// `inflight` (no slot), `upstream_error`, `too_large`, `memory`, `aborted`
/// (a side's whole read), `partial` or `not_modified` (`compare::finish`).
pub fn after_answer(
    route: &Arc<LiveRoute>,
    parts: &Parts,
    target: (&str, Option<&str>),
    status: StatusCode,
    served: &HeaderMap,
    logs: &DivergenceLogs,
) {
    // An error or a redirect names no object to compare.
    if !(status.is_success() || status == StatusCode::NOT_MODIFIED) {
        return;
    }
    let (path, query) = target;
    let versions = &route.state.whole_objects;
    let window = route.config.freshness.window;
    let Some(claim) = versions.claim(
        key_of(path, query),
        version_of(served),
        window,
        now_unix_ms(),
    ) else {
        return;
    };
    let Some(slot) = try_reconcile_slot(&route.state, route.config.reconcile.max_inflight) else {
        route.state.record_skip(Skip::Inflight);
        // Nothing was sent: the object's next reader may try again.
        versions.release(claim);
        return;
    };
    let headers = whole_read_headers(&parts.headers);
    let read = |side: SideName| {
        let out = Outgoing {
            method: Cow::Owned(Method::GET),
            path_and_query: crate::decide::routing::rewrite(
                &route.config.prefix,
                route.config.side(side),
                path,
                query,
            ),
            headers: Cow::Owned(headers.clone()),
            body: RequestBody::empty(),
        };
        compare::spawn_other_read(route.clone(), side, out, slot.held())
    };
    // Both at once: the comparison waits for the slower side, not the sum.
    let batch = read(SideName::Batch);
    let streaming = read(SideName::Streaming);
    let request = parts
        .uri
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    let route = route.clone();
    let logs = logs.clone();
    tokio::spawn(async move {
        let held = slot.held();
        let _slot = slot;
        // Neither read is cut short when the other fails: each is an
        // upstream attempt already counted as sent (the decommission check
        // counts every read cutover sends batch), so each runs to its end.
        let (batch, streaming) = tokio::join!(joined(batch), joined(streaming));
        match (batch, streaming) {
            (Ok(batch), Ok(streaming)) => {
                route
                    .state
                    .whole_objects
                    .compared(claim, (batch.version, streaming.version));
                compare::finish(&route, &request, batch, streaming, held, &logs).await;
            }
            // One skip per comparison, batch's reason first when both failed.
            (Err(why), _) | (_, Err(why)) => route.state.record_skip(why),
        }
    });
}

/// A whole read's result; a task that died is `aborted`.
async fn joined(read: JoinHandle<Result<Read, Skip>>) -> Result<Read, Skip> {
    read.await.unwrap_or(Err(Skip::Aborted))
}

/// The consumer's headers (as every upstream attempt sends them) without
/// the range and the validators: the whole object, unconditionally.
fn whole_read_headers(consumer: &HeaderMap) -> HeaderMap {
    let mut h = consumer.clone();
    for name in LEFT_OUT {
        h.remove(name);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_whole_read_asks_for_everything_unconditionally() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("range", "bytes=0-99"),
            ("if-range", "\"v1\""),
            ("if-none-match", "\"v1\""),
            ("if-modified-since", "Wed, 01 May 2024 09:00:00 GMT"),
            ("if-match", "\"v1\""),
            ("if-unmodified-since", "Wed, 01 May 2024 09:00:00 GMT"),
            ("content-length", "0"),
            ("accept-encoding", "gzip"),
            ("x-request-id", "r1"),
        ] {
            h.insert(
                header::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            );
        }
        let out = whole_read_headers(&h);
        let kept: Vec<&str> = out.keys().map(header::HeaderName::as_str).collect();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(out.contains_key("accept-encoding") && out.contains_key("x-request-id"));
    }
}
