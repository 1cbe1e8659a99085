//! Reconciliation end to end: shadow reads never reach the consumer nor slow
//! it down, every divergence category through the real proxy (produced, and
//! not over-produced), the divergence ratio, sampled comparisons in
//! `streaming` mode, the cost caps, the divergence log, and `cutover diff`
//! through the real binary. Real sockets on 127.0.0.1:0, the real proxy,
//! fake backends only; comparisons finish after the read, so every check on
//! them waits (bounded) until the metric shows up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

const RECONCILE_TOTAL: &str = "cutover_reconcile_total";
const DIVERGENCES: &str = "cutover_reconcile_divergences_total";
const SKIPPED: &str = "cutover_reconcile_skipped_total";
const RATIO: &str = "cutover_divergence_ratio";
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

fn result(m: &Metrics, route: &str, r: &str) -> f64 {
    m.value(RECONCILE_TOTAL, &[("route", route), ("result", r)])
}

fn category(m: &Metrics, route: &str, c: &str) -> f64 {
    m.value(DIVERGENCES, &[("route", route), ("category", c)])
}

fn skipped(m: &Metrics, route: &str, reason: &str) -> f64 {
    m.value(SKIPPED, &[("route", route), ("reason", reason)])
}

/// Comparisons counted so far, whatever their result.
fn compared(m: &Metrics, route: &str) -> f64 {
    RESULTS.iter().map(|r| result(m, route, r)).sum()
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
        result(m, "orders", want_result) >= 1.0
            && CATEGORIES
                .iter()
                .all(|c| category(m, "orders", c) >= expected(c))
    })
    .await;
    // One more scrape, a round trip later: nothing more may have been counted.
    let m = p.scrape().await;
    let lines = reconcile_lines(&m);
    for r in RESULTS {
        let n = if r == want_result { 1.0 } else { 0.0 };
        assert_eq!(result(&m, "orders", r), n, "{case}: result {r}\n{lines}");
    }
    for c in CATEGORIES {
        assert_eq!(
            category(&m, "orders", c),
            expected(c),
            "{case}: category {c}\n{lines}"
        );
    }
}

// ---------------------------------------------------------------- 1. shadow never alters the answer

const BATCH_A: &str = r#"{"data":[{"id":1,"amount":10}],"page":1}"#;

#[derive(Debug, Clone, Copy)]
enum Shadow {
    DifferentJson,
    GarbageBody,
    GarbageInsteadOfHttp,
    ServerError,
    Hangs,
    ResetMidBody,
    ResetAtOnce,
}

impl Shadow {
    async fn backend(self) -> Backend {
        match self {
            Shadow::DifferentJson => fixed(json(r#"{"data":[{"id":2,"amount":99}],"page":7}"#)).await,
            Shadow::GarbageBody => fixed(json(&b"\x00\xff\xfegarbage{{{not json"[..])).await,
            Shadow::GarbageInsteadOfHttp => {
                Backend::start(Behaviour::raw(b"\x00\xff\xfe this is not HTTP at all\r\n\r\n")).await
            }
            Shadow::ServerError => fixed(canned(500, "boom\n", None)).await,
            Shadow::Hangs => Backend::start(Behaviour::Hang).await,
            Shadow::ResetMidBody => {
                Backend::start(Behaviour::raw_then_reset(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"data\":[{\"id\":",
                ))
                .await
            }
            Shadow::ResetAtOnce => Backend::start(Behaviour::raw_then_reset(b"")).await,
        }
    }

    /// How the comparison ends: a result and, for a skip, its reason.
    fn outcome(self) -> (&'static str, Option<&'static str>) {
        match self {
            Shadow::DifferentJson | Shadow::GarbageBody => ("diverged", Some("body")),
            Shadow::ServerError => ("diverged", Some("status")),
            Shadow::GarbageInsteadOfHttp | Shadow::Hangs | Shadow::ResetAtOnce => {
                ("skipped", Some("upstream_error"))
            }
            Shadow::ResetMidBody => ("skipped", Some("aborted")),
        }
    }
}

#[tokio::test]
async fn shadow_never_alters_the_consumers_answer() {
    let mut a = json(BATCH_A);
    a.watermark = Some("2024-05-01T10:00:00Z");
    a.headers = vec![("x-batch-tag", "b-1"), ("cache-control", "max-age=5")];
    let batch = fixed(a).await;
    // What batch itself answers, straight from it: the reference.
    let direct = send(
        Request::post(batch.url("/tables/orders/x/y?q=1&r=two"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    let reference: BTreeMap<String, String> = direct
        .headers
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(reference["x-batch-tag"], "b-1");

    for variant in [
        Shadow::DifferentJson,
        Shadow::GarbageBody,
        Shadow::GarbageInsteadOfHttp,
        Shadow::ServerError,
        Shadow::Hangs,
        Shadow::ResetMidBody,
        Shadow::ResetAtOnce,
    ] {
        let streaming = variant.backend().await;
        let p = Proxy::start(
            orders(
                &batch,
                Side::new(streaming.url("/s/orders")).timeout("300ms"),
            )
            .mode("shadow")
            .methods(&["GET", "POST"]),
        )
        .await;
        let before = batch.hits();
        let started = Instant::now();
        let got = send(
            Request::post(p.url("/v1/orders/x/y?q=1&r=two"))
                .header("x-customer-id", "c-9")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"filter\":\"abc\"}")))
                .unwrap(),
        )
        .await;
        let took = started.elapsed();

        // The consumer's answer is batch's, exactly.
        assert_eq!(got.status, 200, "{variant:?}: {}", got.text());
        assert_eq!(
            got.body,
            Bytes::from_static(BATCH_A.as_bytes()),
            "{variant:?}"
        );
        assert_eq!(
            got.header("x-cutover-served-by"),
            Some("batch"),
            "{variant:?}"
        );
        assert_eq!(got.header("x-cutover-fallback"), None, "{variant:?}");
        let mut headers: BTreeMap<String, String> = got
            .headers
            .iter()
            .filter(|(k, _)| k.as_str() != "date")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            headers.remove("x-cutover-served-by").as_deref(),
            Some("batch")
        );
        assert_eq!(
            headers, reference,
            "{variant:?}: headers differ from batch's own"
        );
        assert!(
            took < Duration::from_millis(250),
            "{variant:?}: took {took:?}"
        );
        assert_eq!(batch.hits(), before + 1, "{variant:?}: batch read once");

        // Streaming got the same read: method, rewritten path, query, body.
        wait_until("streaming receives the shadow read", || {
            streaming.hits() == 1
        })
        .await;
        let seen = streaming.last().expect("streaming saw the read");
        assert_eq!(seen.method, "POST", "{variant:?}");
        assert_eq!(seen.uri, "/s/orders/x/y?q=1&r=two", "{variant:?}");
        assert_eq!(&seen.body[..], b"{\"filter\":\"abc\"}", "{variant:?}");
        assert_eq!(
            seen.headers.get("x-customer-id").map(|v| v.as_bytes()),
            Some(&b"c-9"[..]),
            "{variant:?}"
        );

        // And the comparison ends as it should, off the consumer's path.
        let (want, detail) = variant.outcome();
        let m = settle(&p, &format!("{variant:?} is counted {want}"), |m| {
            result(m, "orders", want) == 1.0
                && match (want, detail) {
                    ("skipped", Some(reason)) => skipped(m, "orders", reason) == 1.0,
                    (_, Some(c)) => category(m, "orders", c) == 1.0,
                    _ => true,
                }
        })
        .await;
        assert_eq!(
            compared(&m, "orders"),
            1.0,
            "{variant:?}\n{}",
            reconcile_lines(&m)
        );
        // Shadow failures never become fallbacks.
        let fallbacks: f64 = m
            .samples()
            .filter(|(name, _, _)| *name == "cutover_fallbacks_total")
            .map(|(_, _, v)| v)
            .sum();
        assert_eq!(fallbacks, 0.0, "{variant:?}");
        drop(p);
    }
}

// ---------------------------------------------------------------- 2. no added latency

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn shadow_adds_no_latency_even_when_streaming_hangs() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = Backend::start(Behaviour::Hang).await;
    let hanging = Side::new(streaming.url("/s/orders")).timeout("5s");
    let shadow = Proxy::start(orders(&batch, hanging.clone()).mode("shadow")).await;
    let baseline = Proxy::start(orders(&batch, hanging).mode("batch")).await;
    // Warm both paths once (first connections, lazy initialisation).
    get(&baseline.url("/v1/orders/warm")).await;

    const READS: usize = 20;
    let (mut in_shadow, mut in_batch) = (Vec::new(), Vec::new());
    for i in 0..READS {
        for (p, times) in [(&shadow, &mut in_shadow), (&baseline, &mut in_batch)] {
            let started = Instant::now();
            let a = get(&p.url(&format!("/v1/orders/{i}"))).await;
            times.push(started.elapsed());
            assert_eq!(a.status, 200);
            assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
            assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
        }
    }
    let total: Duration = in_shadow.iter().sum();
    let slowest = *in_shadow.iter().max().unwrap();
    let (ms, mb) = (median(in_shadow.clone()), median(in_batch.clone()));
    eprintln!(
        "shadow (streaming hangs): median {ms:?}, slowest {slowest:?}, total {total:?}; batch mode: median {mb:?}, slowest {:?}",
        in_batch.iter().max().unwrap()
    );
    assert!(
        slowest < Duration::from_millis(500),
        "a shadow read took {slowest:?}"
    );
    assert!(
        total < Duration::from_secs(2),
        "{READS} shadow reads took {total:?}"
    );
    let gap = ms.abs_diff(mb);
    assert!(
        gap <= Duration::from_millis(50),
        "shadow median {ms:?} vs batch median {mb:?}"
    );
    // Every shadow read did go to streaming, and is still waiting there.
    wait_until("streaming has every shadow read", || {
        streaming.hits() == READS
    })
    .await;
    let m = shadow.scrape().await;
    assert_eq!(compared(&m, "orders"), 0.0, "{}", reconcile_lines(&m));
}

// ---------------------------------------------------------------- 3. categories

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

/// A name, streaming's answer, the expected result, the expected counts.
type Case = (&'static str, Canned, &'static str, Vec<(&'static str, f64)>);

#[tokio::test]
async fn every_category_is_counted_exactly_through_the_proxy() {
    let batch_page = page(&[B1, B2, B3]);
    let cases: Vec<Case> = vec![
        (
            "reordered records, reordered fields, an ignored field, 100 vs 100.0",
            json(page(&[S3, S1, S2])),
            "match",
            vec![],
        ),
        (
            "missing",
            json(page(&[S1, S2])),
            "diverged",
            vec![("missing", 1.0)],
        ),
        (
            "extra",
            json(page(&[S1, S2, S3, S4])),
            "diverged",
            vec![("extra", 1.0)],
        ),
        (
            "duplicate",
            json(page(&[S1, S2, S2, S3])),
            "diverged",
            vec![("duplicate", 1.0)],
        ),
        (
            "aggregate beyond tolerance",
            json(page(&[S1, S2_AGG, S3])),
            "diverged",
            vec![("aggregate", 1.0)],
        ),
        (
            "within tolerance",
            json(page(&[S1, S2_TOL, S3])),
            "match",
            vec![],
        ),
        (
            "all at once",
            json(page(&[S1, S1, S2_AGG, S4, S7])),
            "diverged",
            vec![
                ("duplicate", 1.0),
                ("aggregate", 1.0),
                ("missing", 1.0),
                ("extra", 2.0),
            ],
        ),
        (
            "timing alone is a match",
            json(page(&[S1, S2_LATE, S3, S5_LATE])),
            "match",
            vec![("timing", 2.0)],
        ),
        (
            "timing beside a real extra",
            json(page(&[S1, S2, S3, S5_LATE, S4])),
            "diverged",
            vec![("timing", 1.0), ("extra", 1.0)],
        ),
        (
            "no record array on one side",
            json(r#"{"error":"try later"}"#),
            "diverged",
            vec![("body", 1.0)],
        ),
        (
            "status: batch 200, streaming 404",
            canned(404, r#"{"error":"not found"}"#, None),
            "diverged",
            vec![("status", 1.0)],
        ),
    ];
    for (case, mut streaming_answer, want_result, want) in cases {
        let batch = fixed(canned(200, batch_page.clone(), Some(BATCH_WM))).await;
        if streaming_answer.status == 200 {
            streaming_answer.watermark = Some(STREAMING_WM);
        }
        let streaming = fixed(streaming_answer).await;
        let p = Proxy::start(
            orders(&batch, streaming.url("/s/orders"))
                .mode("shadow")
                .reconcile(keyed()),
        )
        .await;
        let a = get(&p.url("/v1/orders/list?day=2024-05-01")).await;
        assert_eq!(a.status, 200, "{case}");
        assert_eq!(a.body, Bytes::from(batch_page.clone()), "{case}");
        expect_exactly(&p, case, want_result, &want).await;
    }
}

#[tokio::test]
async fn divergence_ratio_is_diverged_over_compared() {
    let batch = canned_backend(vec![("", json(page(&[B1, B2, B3])))]).await;
    let streaming = canned_backend(vec![
        ("/same", json(page(&[S1, S2, S3]))),
        ("/differs", json(page(&[S1, S2]))),
    ])
    .await;
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("shadow")
            .reconcile(keyed()),
    )
    .await;
    let m = p.scrape().await;
    assert_eq!(
        m.value(RATIO, &[("route", "orders")]),
        0.0,
        "nothing compared yet"
    );

    get(&p.url("/v1/orders/same")).await;
    settle(&p, "the first comparison", |m| {
        result(m, "orders", "match") == 1.0
    })
    .await;
    get(&p.url("/v1/orders/differs")).await;
    let m = settle(&p, "the second comparison", |m| {
        result(m, "orders", "diverged") == 1.0
    })
    .await;
    assert_eq!(
        m.value(RATIO, &[("route", "orders")]),
        0.5,
        "{}",
        reconcile_lines(&m)
    );

    for _ in 0..2 {
        get(&p.url("/v1/orders/same")).await;
    }
    let m = settle(&p, "four comparisons", |m| {
        result(m, "orders", "match") == 3.0
    })
    .await;
    assert_eq!(
        m.value(RATIO, &[("route", "orders")]),
        0.25,
        "{}",
        reconcile_lines(&m)
    );
    assert_eq!(category(&m, "orders", "missing"), 1.0);
}

// ---------------------------------------------------------------- 4. sampled in streaming mode

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

/// Batch requests for route `orders`, by path (without the query).
fn batch_orders_reads(batch: &Backend) -> Vec<String> {
    batch
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.uri.starts_with("/tables/orders"))
        .map(|s| s.uri.split('?').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn streaming_mode_with_sample_one_rereads_batch_and_compares() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("streaming")
            .reconcile(json!({"sample": 1.0})),
    )
    .await;
    for i in 1..=3 {
        let a = get(&p.url(&format!("/v1/orders/{i}?full=1"))).await;
        assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
        assert_eq!(a.header("x-cutover-fallback"), None);
        assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
        wait_until("batch is re-read", || batch.hits() == i).await;
        let seen = batch.last().unwrap();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.uri, format!("/tables/orders/{i}?full=1"));
        settle(&p, "the comparison", |m| {
            result(m, "orders", "match") == i as f64
        })
        .await;
    }
    assert_eq!(streaming.hits(), 3);
    let m = p.scrape().await;
    assert_eq!(compared(&m, "orders"), 3.0, "{}", reconcile_lines(&m));
    // The re-read is an upstream attempt like any other.
    assert_eq!(
        m.value(
            "cutover_upstream_requests_total",
            &[("route", "orders"), ("side", "batch"), ("result", "ok")]
        ),
        3.0
    );
}

#[tokio::test]
async fn streaming_mode_with_sample_zero_never_reads_batch() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(with_control(&batch, &streaming, |r| {
        r.mode("streaming").reconcile(json!({"sample": 0.0}))
    }))
    .await;
    for i in 0..20 {
        let a = get(&p.url(&format!("/v1/orders/{i}"))).await;
        assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    }
    barrier(&p).await;
    assert_eq!(batch_orders_reads(&batch), Vec::<String>::new());
    let m = p.scrape().await;
    assert_eq!(compared(&m, "orders"), 0.0, "{}", reconcile_lines(&m));
}

#[tokio::test]
async fn streaming_only_never_reads_batch_even_with_sample_one() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(with_control(&batch, &streaming, |r| {
        r.mode("streaming_only").reconcile(json!({"sample": 1.0}))
    }))
    .await;
    for i in 0..10 {
        let a = get(&p.url(&format!("/v1/orders/{i}"))).await;
        assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    }
    barrier(&p).await;
    assert_eq!(batch_orders_reads(&batch), Vec::<String>::new());
    let m = p.scrape().await;
    assert_eq!(compared(&m, "orders"), 0.0, "{}", reconcile_lines(&m));
}

/// The customers whose reads were compared, checking that each was
/// compared on all of its `reads` or on none.
async fn sampled_customers(batch: &Backend, proxy: &Proxy, reads: usize) -> BTreeSet<String> {
    // Every re-read that reached batch has been compared.
    settle(proxy, "every batch re-read is counted", |m| {
        compared(m, "orders") == batch_orders_reads(batch).len() as f64
    })
    .await;
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for path in batch_orders_reads(batch) {
        *per.entry(path.trim_start_matches("/tables/orders/").to_owned())
            .or_default() += 1;
    }
    for (id, n) in &per {
        assert_eq!(*n, reads, "{id}: compared {n} of {reads} reads: not sticky");
    }
    per.into_keys().collect()
}

#[tokio::test]
async fn sampling_is_deterministic_per_sticky_value() {
    const CUSTOMERS: usize = 40;
    let sticky = |r: Route| {
        r.mode("streaming")
            .canary(json!({ "sticky_header": "x-customer-id" }))
            .reconcile(json!({ "sample": 0.5 }))
    };
    // Two sidecars with the same config, each with its own batch backend.
    let streaming = fixed(json(BATCH_A)).await;
    let (batch_a, batch_b) = (fixed(json(BATCH_A)).await, fixed(json(BATCH_A)).await);
    let pa = Proxy::start(with_control(&batch_a, &streaming, sticky)).await;
    let pb = Proxy::start(with_control(&batch_b, &streaming, sticky)).await;
    for round in 0..3 {
        for c in 0..CUSTOMERS {
            let id = format!("customer-{c}");
            for (k, p) in [&pa, &pb].into_iter().enumerate() {
                if round == 2 && k == 1 {
                    continue; // sidecar B sees each customer twice, A three times
                }
                let a = get_with(
                    &p.url(&format!("/v1/orders/{id}")),
                    &[("x-customer-id", &id)],
                )
                .await;
                assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
            }
        }
    }
    barrier(&pa).await;
    barrier(&pb).await;
    let in_a = sampled_customers(&batch_a, &pa, 3).await;
    let in_b = sampled_customers(&batch_b, &pb, 2).await;
    assert_eq!(in_a, in_b, "two sidecars sample different customers");
    assert!(
        !in_a.is_empty() && in_a.len() < CUSTOMERS,
        "sample 0.5 over {CUSTOMERS} customers compared {} of them",
        in_a.len()
    );
    eprintln!(
        "sample 0.5: {} of {CUSTOMERS} customers compared",
        in_a.len()
    );
}

// ---------------------------------------------------------------- 5. caps

#[tokio::test]
async fn max_body_bytes_skips_the_comparison_not_the_body() {
    let big = {
        let mut s = String::from("{\"blob\":\"");
        while s.len() < 10 * 1024 - 2 {
            s.push(char::from(b'a' + (s.len() % 26) as u8));
        }
        s.push_str("\"}");
        assert_eq!(s.len(), 10 * 1024);
        s
    };
    let batch = canned_backend(vec![("/big", json(big.clone())), ("", json(BATCH_A))]).await;
    let streaming = canned_backend(vec![("/small", json(BATCH_A)), ("", json(big.clone()))]).await;
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("shadow")
            .reconcile(json!({"max_body_bytes": 1024})),
    )
    .await;

    // Both answers too large: the consumer still gets all 10 KiB.
    let a = get(&p.url("/v1/orders/big")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), 10 * 1024);
    assert_eq!(a.body, Bytes::from(big.clone()));
    assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
    settle(&p, "a too_large skip", |m| {
        skipped(m, "orders", "too_large") == 1.0
    })
    .await;

    // Only the shadow answer too large: skipped too.
    let a = get(&p.url("/v1/orders/other")).await;
    assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
    settle(&p, "a second too_large skip", |m| {
        skipped(m, "orders", "too_large") == 2.0
    })
    .await;

    // Both small: compared as usual.
    let a = get(&p.url("/v1/orders/small")).await;
    assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
    let m = settle(&p, "a match", |m| result(m, "orders", "match") == 1.0).await;
    let lines = reconcile_lines(&m);
    assert_eq!(result(&m, "orders", "skipped"), 2.0, "{lines}");
    assert_eq!(result(&m, "orders", "diverged"), 0.0, "{lines}");
    for reason in SKIP_REASONS.iter().filter(|r| **r != "too_large") {
        assert_eq!(skipped(&m, "orders", reason), 0.0, "{reason}\n{lines}");
    }
}

#[tokio::test]
async fn max_inflight_skips_comparisons_past_the_cap() {
    // Streaming holds its answers until the test opens the gate.
    let (open, gate) = tokio::sync::watch::channel(false);
    let streaming = Backend::start(Behaviour::custom(move |_req| {
        let mut gate = gate.clone();
        async move {
            let _ = gate.wait_for(|open| *open).await;
            let mut r = Response::new(full_body(BATCH_A));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
    }))
    .await;
    let batch = fixed(json(BATCH_A)).await;
    let p = Proxy::start(
        orders(&batch, Side::new(streaming.url("/s/orders")).timeout("10s"))
            .mode("shadow")
            .reconcile(json!({"max_inflight": 1})),
    )
    .await;

    const READS: usize = 5;
    let started = Instant::now();
    let reads: Vec<_> = (0..READS)
        .map(|i| {
            let url = p.url(&format!("/v1/orders/{i}"));
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for r in reads {
        let a = within(r).await.expect("read task");
        assert_eq!(a.status, 200);
        assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
        assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "{READS} concurrent reads took {took:?}"
    );

    // One comparison holds the only slot; the other four were skipped.
    let m = settle(&p, "four inflight skips", |m| {
        skipped(m, "orders", "inflight") == 4.0
    })
    .await;
    assert_eq!(
        result(&m, "orders", "skipped"),
        4.0,
        "{}",
        reconcile_lines(&m)
    );
    assert_eq!(
        streaming.hits(),
        1,
        "only the compared read reaches streaming"
    );

    // Open the gate: the held comparison finishes and frees its slot.
    open.send(true).expect("gate");
    settle(&p, "the held comparison", |m| {
        result(m, "orders", "match") == 1.0
    })
    .await;
    get(&p.url("/v1/orders/after")).await;
    let m = settle(&p, "a comparison after the slot is free", |m| {
        result(m, "orders", "match") == 2.0
    })
    .await;
    assert_eq!(
        skipped(&m, "orders", "inflight"),
        4.0,
        "{}",
        reconcile_lines(&m)
    );
}

// ---------------------------------------------------------------- 6. divergence log

#[tokio::test]
async fn divergence_log_writes_a_bounded_sample_per_comparison() {
    let batch_records: Vec<String> = (1..=10)
        .map(|i| format!(r#"{{"id":{i},"amount":{}}}"#, i * 10))
        .collect();
    let streaming_records: Vec<String> = (11..=14)
        .map(|i| format!(r#"{{"id":{i},"amount":{}}}"#, i * 10))
        .collect();
    let refs = |v: &[String]| -> String { page(&v.iter().map(String::as_str).collect::<Vec<_>>()) };
    let (many_b, many_s) = (refs(&batch_records), refs(&streaming_records));
    let batch = canned_backend(vec![
        ("/many", canned(200, many_b, Some(BATCH_WM))),
        ("", canned(200, page(&[B1, B2, B3]), Some(BATCH_WM))),
    ])
    .await;
    let streaming = canned_backend(vec![
        ("/many", canned(200, many_s, Some(STREAMING_WM))),
        (
            "/same",
            canned(200, page(&[S1, S2, S3]), Some(STREAMING_WM)),
        ),
        ("/one", canned(200, page(&[S1, S2]), Some(STREAMING_WM))),
    ])
    .await;
    let p = Proxy::start(orders(&batch, streaming.url("/s/orders")).mode("shadow").reconcile(json!({"records": "/data", "key": "id", "ignore": ["ingested_at"], "divergence_log": "divergences.jsonl"})))
    .await;
    // A relative path is in the data directory, never beside the config
    // (a read-only ConfigMap mount, whose watcher each write would wake).
    let log = p.data.path().join("divergences.jsonl");

    get(&p.url("/v1/orders/many?region=eu")).await;
    settle(&p, "the first divergence", |m| {
        result(m, "orders", "diverged") == 1.0
    })
    .await;
    get(&p.url("/v1/orders/same")).await;
    settle(&p, "the match", |m| result(m, "orders", "match") == 1.0).await;
    get(&p.url("/v1/orders/one")).await;
    let m = settle(&p, "the second divergence", |m| {
        result(m, "orders", "diverged") == 2.0
    })
    .await;
    // 10 missing + 4 extra in the first comparison, 1 missing in the last.
    assert_eq!(category(&m, "orders", "missing"), 11.0);
    assert_eq!(category(&m, "orders", "extra"), 4.0);

    // The last comparison's line arrives last (one writer, in order).
    wait_until("the last comparison is logged", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/v1/orders/one"))
    })
    .await;
    let beside_the_config: Vec<_> = std::fs::read_dir(p.dir.path())
        .expect("config dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(
        beside_the_config,
        ["cutover.yaml"],
        "nothing is written beside the config"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let for_request = |r: &str| {
        lines
            .iter()
            .filter(|l| l["request"] == r)
            .collect::<Vec<_>>()
    };
    let many = for_request("/v1/orders/many?region=eu");
    assert_eq!(many.len(), 5, "14 divergences, at most 5 lines:\n{text}");
    assert!(
        for_request("/v1/orders/same").is_empty(),
        "a match logs nothing:\n{text}"
    );
    let one = for_request("/v1/orders/one");
    assert_eq!(one.len(), 1, "{text}");
    assert_eq!(lines.len(), 6, "{text}");

    for l in &lines {
        let t = l["time"].as_str().expect("time");
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("time {t}: {e}"));
        assert_eq!(l["route"], "orders");
        assert_eq!(l["batch_watermark"], BATCH_WM, "{l}");
        assert_eq!(l["streaming_watermark"], STREAMING_WM, "{l}");
        assert!(l["key"].is_string(), "{l}");
    }
    for l in &many {
        assert_eq!(l["category"], "missing", "missing keys come first: {l}");
        let key = l["key"].as_str().unwrap();
        let batch_value: Value =
            serde_json::from_str(l["batch"].as_str().expect("batch value")).unwrap();
        assert_eq!(batch_value["id"].to_string(), key, "{l}");
        assert!(l["streaming"].is_null(), "{l}");
    }
    let one = one[0];
    assert_eq!(one["category"], "missing");
    assert_eq!(one["key"], "3");
    let batch_value: Value = serde_json::from_str(one["batch"].as_str().unwrap()).unwrap();
    assert_eq!(batch_value["amount"], 300);
    assert_eq!(one["batch_rows"], 3);
    assert_eq!(one["streaming_rows"], 2);
}

// ---------------------------------------------------------------- 7. cutover diff

/// Runs `cutover diff` (bounded) and returns its exit code, stdout and stderr.
fn diff(args: &[&str]) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("diff")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cutover diff");
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let status = wait_exit(
        &mut child,
        &format!("cutover diff {args:?} exits"),
        String::new,
    );
    (status.code(), out.join().unwrap(), err.join().unwrap())
}

struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Files {
        Files(tempfile::tempdir().expect("temp dir"))
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8 path").to_owned()
    }
}

#[test]
fn diff_identical_files_match() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1, B2, B3]));
    let s = f.write("s.json", &page(&[B1, B2, B3]));
    let (code, out, err) = diff(&[&b, &s]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("match"), "{out}");
    // Bytes that are not JSON compare as bytes.
    let g1 = f.write("g1.bin", "not json at all");
    let g2 = f.write("g2.bin", "not json at all");
    let g3 = f.write("g3.bin", "not json either");
    assert_eq!(diff(&[&g1, &g2]).0, Some(0));
    let (code, out, _) = diff(&[&g1, &g3]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("body"), "{out}");
}

#[test]
fn diff_reordered_records_match_only_with_a_key() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1, B2, B3]));
    let s = f.write("s.json", &page(&[S3, S1, S2]));
    let (code, out, err) = diff(&[
        &b,
        &s,
        "--records",
        "/data",
        "--key",
        "id",
        "--ignore",
        "ingested_at",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("rows: batch 3, streaming 3"), "{out}");
    assert!(out.contains("match"), "{out}");
    let (code, out, err) = diff(&[&b, &s, "--records", "/data", "--ignore", "ingested_at"]);
    assert_eq!(code, Some(1), "without a key order matters: {out}{err}");
    assert!(out.contains("diverged"), "{out}");
    // With the key but without ignoring `ingested_at`, every record differs.
    let (code, out, _) = diff(&[&b, &s, "--records", "/data", "--key", "id"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("aggregate  3"), "{out}");
    assert!(out.contains("field=ingested_at"), "{out}");
}

#[test]
fn diff_shows_missing_and_extra() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1, B2, B3]));
    let s = f.write("s.json", &page(&[S1, S2, S4]));
    let (code, out, err) = diff(&[
        &b,
        &s,
        "--records",
        "/data",
        "--key",
        "id",
        "--ignore",
        "ingested_at",
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("missing    1"), "{out}");
    assert!(out.contains("extra      1"), "{out}");
    assert!(out.contains("missing key=3"), "{out}");
    assert!(out.contains("extra key=4"), "{out}");
    assert!(
        out.contains("\"amount\":300"),
        "batch's value is shown: {out}"
    );
    assert!(
        out.contains("\"amount\":400"),
        "streaming's value is shown: {out}"
    );
}

#[test]
fn diff_numeric_tolerance_is_relative_and_inclusive() {
    let f = Files::new();
    let b = f.write("b.json", r#"[{"id":1,"v":100}]"#);
    let s = f.write("s.json", r#"[{"id":1,"v":200}]"#);
    // |100 - 200| = 100 = 0.5 * max(100, 200): exactly at the tolerance.
    let (code, out, err) = diff(&[&b, &s, "--key", "id", "--numeric-tolerance", "0.5"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = diff(&[&b, &s, "--key", "id", "--numeric-tolerance", "0.49"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("aggregate key=1 field=v"), "{out}");
    let (code, out, _) = diff(&[&b, &s, "--key", "id"]);
    assert_eq!(code, Some(1), "no tolerance by default: {out}");
}

#[test]
fn diff_timing_explained_by_watermarks_exits_zero() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1, B2, B3]));
    let s = f.write("s.json", &page(&[S1, S2, S3, S5_LATE]));
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            b.as_str(),
            s.as_str(),
            "--records",
            "/data",
            "--key",
            "id",
            "--ignore",
            "ingested_at",
            "--event-time",
            "ts",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        diff(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, out, err) = run(&[
        "--batch-watermark",
        BATCH_WM,
        "--streaming-watermark",
        STREAMING_WM,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("timing"), "{out}");
    assert!(out.contains("timing key=5"), "{out}");
    // Unix seconds work too: 2024-05-01T09:00:00Z.
    let (code, out, err) = run(&["--batch-watermark", "1714554000"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("timing"), "{out}");
    // Without watermarks the same record is a real extra.
    let (code, out, _) = run(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("extra key=5"), "{out}");
}

#[test]
fn diff_bad_input_exits_two() {
    let f = Files::new();
    let b = f.write("b.json", &page(&[B1]));
    let missing = f.0.path().join("nope.json");
    let missing = missing.to_str().unwrap();
    let (code, out, err) = diff(&[&b, missing]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("nope.json"), "names the file: {err}");
    let (code, _, err) = diff(&[missing, &b]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = diff(&[&b, &b, "--batch-watermark", "yesterday"]);
    assert_eq!(code, Some(2), "bad watermark: {err}");
    let (code, _, err) = diff(&[&b, &b, "--numeric-tolerance", "-1"]);
    assert_eq!(code, Some(2), "negative tolerance: {err}");
    // A records pointer that finds nothing on either side is a mistake in
    // the command, not a comparison of whole bodies.
    let (code, out, err) = diff(&[&b, &b, "--records", "/wrong", "--key", "id"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("/wrong"), "names the pointer: {err}");
    assert!(out.is_empty(), "no report: {out}");
}

#[tokio::test]
async fn a_records_pointer_that_finds_nothing_is_a_skip_never_a_divergence() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("shadow")
            .reconcile(json!({"records": "/wrong", "key": "id"})),
    )
    .await;
    assert_eq!(get(&p.url("/v1/orders/1")).await.status, 200);
    let m = settle(&p, "the comparison is skipped", |m| {
        skipped(m, "orders", "no_records") == 1.0
    })
    .await;
    assert_eq!(result(&m, "orders", "skipped"), 1.0);
    assert_eq!(result(&m, "orders", "diverged"), 0.0);
    assert_eq!(category(&m, "orders", "body"), 0.0);
}

// ---------------------------------------------------------------- edges of the run-time path

/// `orders` with GET, HEAD and POST allowed.
fn with_post(route: Route) -> Route {
    route.methods(&["GET", "HEAD", "POST"])
}

#[tokio::test]
async fn shadow_head_reads_compare_empty_bodies() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(with_post(
        orders(&batch, streaming.url("/s/orders")).mode("shadow"),
    ))
    .await;
    let a = send(
        Request::head(p.url("/v1/orders/1"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_empty());
    assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
    wait_until("streaming receives the HEAD", || streaming.hits() == 1).await;
    assert_eq!(streaming.last().unwrap().method, "HEAD");
    expect_exactly(&p, "HEAD", "match", &[]).await;
}

#[tokio::test]
async fn shadow_skips_a_request_body_too_large_to_send_twice() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    let config = Config::new().max_buffered_body(1024).route(with_post(
        orders(&batch, streaming.url("/s/orders")).mode("shadow"),
    ));
    let p = Proxy::start(config).await;
    let big = vec![b'x'; 100 * 1024];
    let a = post(&p.url("/v1/orders/search"), big.clone()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
    assert_eq!(
        batch.last().unwrap().body.len(),
        big.len(),
        "batch gets it all"
    );
    let m = settle(&p, "an unbuffered skip", |m| {
        skipped(m, "orders", "unbuffered") == 1.0
    })
    .await;
    assert_eq!(result(&m, "orders", "skipped"), 1.0);
    // A small body is buffered and sent to both.
    post(&p.url("/v1/orders/search"), "{\"q\":1}").await;
    settle(&p, "a match", |m| result(m, "orders", "match") == 1.0).await;
    assert_eq!(streaming.hits(), 1, "only the small body went to streaming");
    assert_eq!(&streaming.last().unwrap().body[..], b"{\"q\":1}");
}

#[tokio::test]
async fn shadow_with_batch_down_answers_batchs_failure_and_skips() {
    let refused = refusing_addr();
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(
        route(
            "orders",
            "/v1/orders",
            format!("http://{refused}/tables/orders"),
            streaming.url("/s/orders"),
        )
        .mode("shadow"),
    )
    .await;
    let a = get(&p.url("/v1/orders/1")).await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(a.header("x-cutover-fallback"), None);
    let m = settle(&p, "an upstream_error skip", |m| {
        skipped(m, "orders", "upstream_error") == 1.0
    })
    .await;
    assert_eq!(compared(&m, "orders"), 1.0, "{}", reconcile_lines(&m));
    // Streaming's answer never stood in for batch's.
    assert!(!a.text().contains("amount"));
}

#[tokio::test]
async fn a_served_body_that_breaks_midway_is_not_compared() {
    let batch = Backend::start(Behaviour::raw_then_reset(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"data\":[",
    ))
    .await;
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(orders(&batch, streaming.url("/s/orders")).mode("shadow")).await;
    // The consumer sees the break (no made-up complete answer).
    let got = try_get(&p.url("/v1/orders/1")).await;
    assert!(got.is_err(), "a cut body must not look whole: {got:?}");
    let m = settle(&p, "an aborted skip", |m| {
        skipped(m, "orders", "aborted") == 1.0
    })
    .await;
    assert_eq!(compared(&m, "orders"), 1.0, "{}", reconcile_lines(&m));
}

#[tokio::test]
async fn canary_compares_only_the_streaming_share() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(r#"{"data":[],"page":1}"#)).await;
    // All reads to streaming, each compared.
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("canary")
            .canary(json!({"percent": 100}))
            .reconcile(json!({"sample": 1.0})),
    )
    .await;
    let a = get(&p.url("/v1/orders/1")).await;
    assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    wait_until("batch is re-read", || batch.hits() == 1).await;
    expect_exactly(&p, "canary 100%", "diverged", &[("body", 1.0)]).await;
    drop(p);

    // All reads to batch: nothing to compare, batch read once per read.
    let before = (batch.hits(), streaming.hits());
    let p = Proxy::start(with_control(&batch, &streaming, |r| {
        r.mode("canary")
            .canary(json!({"percent": 0}))
            .reconcile(json!({"sample": 1.0}))
    }))
    .await;
    for i in 0..5 {
        let a = get(&p.url(&format!("/v1/orders/{i}"))).await;
        assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
    }
    barrier(&p).await;
    assert_eq!(
        batch.hits() - before.0,
        5 + 1,
        "five reads and the control re-read"
    );
    assert_eq!(streaming.hits() - before.1, 1, "only the control read");
    let m = p.scrape().await;
    assert_eq!(compared(&m, "orders"), 0.0, "{}", reconcile_lines(&m));
}

#[tokio::test]
async fn sides_keep_their_roles_when_streaming_serves() {
    // Streaming serves, batch is the re-read: a key only batch has is still
    // `missing`, and streaming's late record is still `timing`.
    let batch = fixed(canned(200, page(&[B1, B2, B3]), Some(BATCH_WM))).await;
    let streaming = fixed(canned(200, page(&[S1, S2, S5_LATE]), Some(STREAMING_WM))).await;
    let mut reconcile = keyed();
    reconcile["sample"] = json!(1.0);
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("streaming")
            .reconcile(reconcile),
    )
    .await;
    let a = get(&p.url("/v1/orders/list")).await;
    assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(a.body, Bytes::from(page(&[S1, S2, S5_LATE])));
    expect_exactly(
        &p,
        "streaming serves",
        "diverged",
        &[("missing", 1.0), ("timing", 1.0)],
    )
    .await;
}

/// `limits.max_compared_bytes` bounds what all comparisons hold at once: a
/// comparison that would pass it is skipped ("memory"), never buffered, and
/// each comparison gives its bytes back once it has run.
#[tokio::test]
async fn comparisons_past_max_compared_bytes_are_skipped_and_bytes_come_back() {
    let records: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"id":{i},"amount":{i}}}"#))
        .collect();
    let body = format!(r#"{{"data":[{}],"page":1}}"#, records.join(","));
    let size = body.len();
    let batch = fixed(json(body.clone())).await;
    let streaming = fixed(json(body.clone())).await;
    // Room for one side's answer, not both: every comparison is skipped.
    let p = Proxy::start(
        Config::new()
            .limits(serde_json::json!({ "max_compared_bytes": size + size / 2 }))
            .route(orders(&batch, streaming.url("/s/orders")).mode("shadow")),
    )
    .await;
    for _ in 0..3 {
        let r = get(&p.url("/v1/orders/1")).await;
        assert_eq!(
            (r.status, r.body.len()),
            (200, size),
            "the read itself is whole"
        );
    }
    let m = settle(&p, "three comparisons are skipped for memory", |m| {
        skipped(m, "orders", "memory") == 3.0
    })
    .await;
    assert_eq!(result(&m, "orders", "match"), 0.0);
    p.stop().await;

    // Room for exactly one comparison: reads one after another all compare,
    // so each gave its bytes back.
    let p = Proxy::start(
        Config::new()
            .limits(serde_json::json!({ "max_compared_bytes": 2 * size }))
            .route(orders(&batch, streaming.url("/s/orders")).mode("shadow")),
    )
    .await;
    for i in 1..=3 {
        assert_eq!(get(&p.url("/v1/orders/1")).await.status, 200);
        settle(&p, "the comparison ran", |m| {
            result(m, "orders", "match") == f64::from(i)
        })
        .await;
    }
    let m = p.scrape().await;
    assert_eq!(skipped(&m, "orders", "memory"), 0.0);
    p.stop().await;
}
