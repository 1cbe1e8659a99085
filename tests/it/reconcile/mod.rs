//! Reconciliation end to end: shadow reads never reach the consumer nor slow
//! it down, every divergence category through the real proxy (produced, and
//! not over-produced), the divergence ratio, sampled comparisons in
//! `streaming` mode, the cost caps, the divergence log, and `cutover diff`
//! through the real binary. Real sockets on 127.0.0.1:0, the real proxy,
//! fake backends only; comparisons finish after the read, so every check on
//! them waits (bounded) until the metric shows up.

use std::sync::Arc;

use crate::support::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};

mod caps;
mod categories;
mod diff;
mod divergence_log;
mod edges;
mod encodings;
mod sampling;
mod shadow;
mod whole_object;

const CATEGORIES: [&str; 7] = [
    "missing",
    "extra",
    "duplicate",
    "aggregate",
    "timing",
    "body",
    "status",
];
const RESULTS: [&str; 3] = ["match", "diverged", "skipped"];
const SKIP_REASONS: [&str; 5] = [
    "inflight",
    "too_large",
    "unbuffered",
    "aborted",
    "upstream_error",
];

// ---------------------------------------------------------------- fixtures

/// One canned answer.
#[derive(Clone, Debug)]
struct Canned {
    status: u16,
    body: Bytes,
    /// `x-data-watermark`, verbatim.
    watermark: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
}

fn canned(status: u16, body: impl Into<Bytes>, watermark: Option<&'static str>) -> Canned {
    Canned {
        status,
        body: body.into(),
        watermark,
        headers: Vec::new(),
    }
}

fn json(body: impl Into<Bytes>) -> Canned {
    canned(200, body, None)
}

/// A backend answering each request with the first canned answer whose
/// marker occurs in the request's path ("" matches every path).
async fn canned_backend(answers: Vec<(&'static str, Canned)>) -> Backend {
    let answers = Arc::new(answers);
    Backend::start(Behaviour::custom(move |req: Request<Bytes>| {
        let answers = answers.clone();
        async move {
            let path = req.uri().path().to_owned();
            let Some((_, c)) = answers.iter().find(|(marker, _)| path.contains(marker)) else {
                let mut r = Response::new(full_body("no canned answer\n"));
                *r.status_mut() = StatusCode::IM_A_TEAPOT;
                return r;
            };
            let mut r = Response::new(full_body(c.body.clone()));
            *r.status_mut() = StatusCode::from_u16(c.status).expect("status");
            let h = r.headers_mut();
            h.insert("content-type", "application/json".parse().unwrap());
            if let Some(w) = c.watermark {
                h.insert("x-data-watermark", w.parse().unwrap());
            }
            for (k, v) in &c.headers {
                h.insert(*k, v.parse().unwrap());
            }
            r
        }
    }))
    .await
}

async fn fixed(c: Canned) -> Backend {
    canned_backend(vec![("", c)]).await
}

/// One route, without the idle-side probe: upstream counts and hits are
/// the reads' alone.
fn route(name: &str, prefix: &str, batch: impl Into<Side>, streaming: impl Into<Side>) -> Route {
    Route::new(name, prefix, batch, streaming).no_probe()
}

/// The usual single route `orders` on /v1/orders, probes off.
fn orders(batch: &Backend, streaming: impl Into<Side>) -> Route {
    route(
        "orders",
        "/v1/orders",
        batch.url("/tables/orders"),
        streaming,
    )
}

/// Comparisons counted so far, whatever their result.
fn compared(m: &Metrics, route: &str) -> f64 {
    RESULTS.iter().map(|r| m.route(route).reconciled(r)).sum()
}

/// The reconcile series, for failure messages.
fn reconcile_lines(m: &Metrics) -> String {
    m.text
        .lines()
        .filter(|l| !l.starts_with('#') && (l.contains("reconcile") || l.contains("divergence")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Scrapes until `cond` holds (bounded by `WAIT`) and returns that scrape.
async fn settle(p: &Proxy, what: &str, cond: impl Fn(&Metrics) -> bool) -> Metrics {
    wait_until_async(what, || async {
        let m = p.scrape().await;
        if cond(&m) {
            Ok(m)
        } else {
            Err(reconcile_lines(&m))
        }
    })
    .await
}

/// Asserts that route `orders` counted exactly `want_result` once (no other
/// result), exactly the `want` divergence counts and zero in every other
/// category, and no skip.
async fn expect_exactly(p: &Proxy, case: &str, want_result: &str, want: &[(&str, f64)]) {
    let expected = |c: &str| want.iter().find(|(k, _)| *k == c).map_or(0.0, |(_, n)| *n);
    settle(p, &format!("{case}: {want_result} with {want:?}"), |m| {
        m.route("orders").reconciled(want_result) >= 1.0
            && CATEGORIES
                .iter()
                .all(|c| m.route("orders").divergences(c) >= expected(c))
    })
    .await;
    // One more scrape, a round trip later: nothing more may have been counted.
    let m = p.scrape().await;
    let lines = reconcile_lines(&m);
    for r in RESULTS {
        let n = if r == want_result { 1.0 } else { 0.0 };
        assert_eq!(
            m.route("orders").reconciled(r),
            n,
            "{case}: result {r}\n{lines}"
        );
    }
    for c in CATEGORIES {
        assert_eq!(
            m.route("orders").divergences(c),
            expected(c),
            "{case}: category {c}\n{lines}"
        );
    }
}

// ---------------------------------------------------------------- bodies shared by the topics

const BATCH_A: &str = r#"{"data":[{"id":1,"amount":10}],"page":1}"#;

/// Records compared by key, `ingested_at` ignored, a 0.1% tolerance, event time `ts`.
fn keyed() -> Value {
    json!({
        "records": "/data",
        "key": "id",
        "ignore": ["ingested_at"],
        "numeric_tolerance": 0.001,
        "event_time": "ts",
    })
}
const BATCH_WM: &str = "2024-05-01T09:00:00Z";
const STREAMING_WM: &str = "2024-05-01T10:00:00Z";

/// A page of records, envelope first.
fn page(records: &[&str]) -> String {
    format!("{{\"page\":1,\"data\":[{}]}}", records.join(","))
}

/// Batch's records of one page, and streaming's copies (the same
/// records unless a name says otherwise).
const B1: &str =
    r#"{"id":1,"name":"a","amount":100,"ts":"2024-05-01T08:00:00Z","ingested_at":"b1"}"#;
const B2: &str =
    r#"{"id":2,"name":"b","amount":200,"ts":"2024-05-01T08:00:00Z","ingested_at":"b2"}"#;
const B3: &str =
    r#"{"id":3,"name":"c","amount":300,"ts":"2024-05-01T08:00:00Z","ingested_at":"b3"}"#;
// Streaming's copies: fields in another order, another `ingested_at`, 100.0 for 100.
const S1: &str =
    r#"{"ingested_at":"s1","ts":"2024-05-01T08:00:00Z","amount":100.0,"name":"a","id":1}"#;
const S2: &str =
    r#"{"amount":200,"id":2,"ingested_at":"s2","name":"b","ts":"2024-05-01T08:00:00Z"}"#;
const S3: &str =
    r#"{"name":"c","ts":"2024-05-01T08:00:00Z","id":3,"amount":300,"ingested_at":"s3"}"#;
/// Not in batch, and older than batch's watermark: a real extra.
const S4: &str = r#"{"id":4,"name":"d","amount":400,"ts":"2024-05-01T08:00:00Z"}"#;
const S7: &str = r#"{"id":7,"name":"g","amount":700,"ts":"2024-05-01T08:30:00Z"}"#;
/// 201 vs 200: 0.5%, beyond the 0.1% tolerance.
const S2_AGG: &str =
    r#"{"id":2,"name":"b","amount":201,"ts":"2024-05-01T08:00:00Z","ingested_at":"s2"}"#;
/// 200.1 vs 200: 0.05%, within it.
const S2_TOL: &str =
    r#"{"id":2,"name":"b","amount":200.1,"ts":"2024-05-01T08:00:00Z","ingested_at":"s2"}"#;
/// Changed after batch's watermark (09:00): timing, not aggregate.
const S2_LATE: &str = r#"{"id":2,"name":"b","amount":250,"ts":"2024-05-01T09:45:00Z"}"#;
/// New after batch's watermark: timing, not extra.
const S5_LATE: &str = r#"{"id":5,"name":"e","amount":500,"ts":"2024-05-01T09:30:00Z"}"#;

/// A second route, `control`, on the same backends, that compares every
/// read: once its comparison is counted, reads sent before it have had
/// every chance to reach batch.
fn with_control(
    batch: &Backend,
    streaming: &Backend,
    orders: impl FnOnce(Route) -> Route,
) -> Config {
    Config::new()
        .route(orders(route(
            "orders",
            "/v1/orders",
            batch.url("/tables/orders"),
            streaming.url("/s/orders"),
        )))
        .route(
            route(
                "control",
                "/v1/control",
                batch.url("/tables/control"),
                streaming.url("/s/control"),
            )
            .mode("streaming")
            .reconcile(json!({ "sample": 1.0 })),
        )
}

async fn barrier(p: &Proxy) {
    let before = compared(&p.scrape().await, "control");
    let a = get(&p.url("/v1/control/barrier")).await;
    assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    settle(p, "the control comparison", |m| {
        compared(m, "control") > before
    })
    .await;
}
