//! Contracts (SPEC 1.2) through the real proxy: each rule broken and kept in
//! JSON, NDJSON and CSV answers; `fallback` answers a broken one from batch
//! before any byte of it reaches the consumer, `record` serves it and counts
//! it; answers past `contract.max_body_bytes` are checked after they are
//! served; shadow checks streaming's shadow answer; the dead letter and its
//! bound under a flood; the gate's `max_contract_violation_ratio`; a schema
//! with a `$ref` to a local file; a bad schema at reload keeps the last good
//! config serving. Fake backends only.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// A backend answering each path with the first canned body whose marker
/// occurs in it: (marker, content type, body).
async fn canned(answers: Vec<(&'static str, &'static str, String)>) -> Backend {
    let answers = Arc::new(answers);
    Backend::start(Behaviour::custom(move |req: Request<Bytes>| {
        let answers = answers.clone();
        async move {
            let path = req.uri().path().to_owned();
            let Some((_, ct, body)) = answers.iter().find(|(m, _, _)| path.contains(m)) else {
                let mut r = Response::new(full_body("no canned answer\n"));
                *r.status_mut() = StatusCode::IM_A_TEAPOT;
                return r;
            };
            let mut r = Response::new(full_body(body.clone()));
            r.headers_mut()
                .insert("content-type", ct.parse().expect("content type"));
            r.headers_mut().insert(
                "x-data-watermark",
                "2026-12-01T18:00:00Z".parse().expect("watermark"),
            );
            r
        }
    }))
    .await
}

const BATCH_BODY: &str = r#"{"items":[{"id":1,"ts":"2026-12-01T00:00:10Z","amount":5}]}"#;

async fn batch() -> Backend {
    canned(vec![("", "application/json", BATCH_BODY.to_owned())]).await
}

/// Scrapes until `cond` holds (bounded by `WAIT`) and returns that scrape.
async fn settle(p: &Proxy, what: &str, cond: impl Fn(&Metrics) -> bool) -> Metrics {
    wait_until_async(what, || async {
        let m = p.scrape().await;
        if cond(&m) { Ok(m) } else { Err(m.text.clone()) }
    })
    .await
}

/// Every rule but `schema`; records at `/items` for JSON.
fn rules(on_violation: &str) -> Value {
    json!({
        "unique": ["id"],
        "sorted_by": ["ts"],
        "not_null": ["id", "amount"],
        "complete": { "event_time": "ts", "from": "start", "to": "end", "tolerance": "1m" },
        "on_violation": on_violation,
    })
}

fn route(batch: &Backend, streaming: &Backend, mode: &str, contract: Value) -> Route {
    Route::new("orders", "/v1/orders", batch.url("/b"), streaming.url("/s"))
        .no_probe()
        .mode(mode)
        .reconcile(json!({ "records": "/items", "sample": 0 }))
        .set("contract", contract)
}

/// One record in each format's own way of writing it.
#[derive(Clone, Copy)]
enum Format {
    Json,
    Ndjson,
    Csv,
}

impl Format {
    const ALL: [Format; 3] = [Format::Json, Format::Ndjson, Format::Csv];

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv",
        }
    }

    /// Records as (id, ts, amount); `None` is null (an empty CSV cell).
    fn body(self, records: &[(i64, &str, Option<i64>)]) -> String {
        match self {
            Format::Json => {
                let items: Vec<Value> = records
                    .iter()
                    .map(|(id, ts, amount)| json!({"id": id, "ts": ts, "amount": amount}))
                    .collect();
                json!({ "items": items }).to_string()
            }
            Format::Ndjson => records
                .iter()
                .map(|(id, ts, amount)| {
                    format!("{}\n", json!({"id": id, "ts": ts, "amount": amount}))
                })
                .collect(),
            Format::Csv => {
                let mut s = String::from("id,ts,amount\n");
                for (id, ts, amount) in records {
                    let a = amount.map_or(String::new(), |a| a.to_string());
                    s.push_str(&format!("{id},{ts},{a}\n"));
                }
                s
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

const T0: &str = "2026-12-01T00:00:20Z";
const T1: &str = "2026-12-01T09:00:00Z";
const T2: &str = "2026-12-01T17:59:30Z";
/// The window the reads name; the answers' watermark is 18:00.
const WINDOW: &str = "?start=2026-12-01T00:00:00Z&end=2026-12-02T00:00:00Z";

/// A conforming answer, and one breaking each rule on its own.
fn cases(f: Format) -> Vec<(&'static str, String)> {
    vec![
        (
            "good",
            f.body(&[(1, T0, Some(5)), (2, T1, Some(6)), (3, T2, Some(7))]),
        ),
        (
            "unique",
            f.body(&[(1, T0, Some(5)), (2, T1, Some(6)), (1, T2, Some(7))]),
        ),
        (
            "sorted",
            f.body(&[(1, T1, Some(5)), (2, T0, Some(6)), (3, T2, Some(7))]),
        ),
        (
            "not_null",
            f.body(&[(1, T0, Some(5)), (2, T1, None), (3, T2, Some(7))]),
        ),
        // Stops at 09:00 while the watermark says 18:00.
        ("complete", f.body(&[(1, T0, Some(5)), (2, T1, Some(6))])),
    ]
}

#[tokio::test]
async fn fallback_answers_a_broken_answer_from_batch_in_every_format() {
    for f in Format::ALL {
        let answers = cases(f)
            .into_iter()
            .map(|(marker, body)| (marker, f.content_type(), body))
            .collect();
        let streaming = canned(answers).await;
        let batch = batch().await;
        let p = Proxy::start(route(&batch, &streaming, "streaming", rules("fallback"))).await;
        for (case, body) in cases(f) {
            let a = get(&p.url(&format!("/v1/orders/{case}{WINDOW}"))).await;
            assert_eq!(a.status, 200, "{} {case}", f.name());
            if case == "good" {
                assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
                assert_eq!(a.header("x-cutover-fallback"), None);
                assert_eq!(
                    a.text(),
                    body,
                    "{}: a conforming answer is served as sent",
                    f.name()
                );
            } else {
                assert_eq!(
                    a.header("x-cutover-served-by"),
                    Some("batch"),
                    "{} {case}: {}",
                    f.name(),
                    a.text()
                );
                assert_eq!(a.header("x-cutover-fallback"), Some("contract"));
                assert_eq!(a.text(), BATCH_BODY);
            }
        }
        let m = p.scrape().await;
        let r = m.route("orders");
        let label = f.name();
        assert_eq!(r.contract_checks("pass"), 1.0, "{label}\n{}", m.text);
        assert_eq!(r.contract_checks("violation"), 4.0, "{label}");
        assert_eq!(r.fallbacks("contract"), 4.0, "{label}");
        for rule in ["unique", "sorted", "not_null", "complete"] {
            assert_eq!(r.contract_violations(rule), 1.0, "{label} {rule}");
        }
        assert_eq!(r.contract_violations("schema"), 0.0, "{label}");
        p.stop().await;
    }
}

#[tokio::test]
async fn record_serves_a_broken_answer_and_counts_it_after() {
    let f = Format::Json;
    let answers = cases(f)
        .into_iter()
        .map(|(marker, body)| (marker, f.content_type(), body))
        .collect();
    let streaming = canned(answers).await;
    let batch = batch().await;
    let p = Proxy::start(route(&batch, &streaming, "streaming", rules("record"))).await;
    for (case, body) in cases(f) {
        let a = get(&p.url(&format!("/v1/orders/{case}{WINDOW}"))).await;
        assert_eq!(a.header("x-cutover-served-by"), Some("streaming"), "{case}");
        assert_eq!(a.text(), body, "{case}: record never alters the answer");
    }
    let m = settle(&p, "five checks counted", |m| {
        m.route("orders").contract_checks("pass") + m.route("orders").contract_checks("violation")
            >= 5.0
    })
    .await;
    let r = m.route("orders");
    assert_eq!(r.contract_checks("violation"), 4.0);
    assert_eq!(r.fallbacks("contract"), 0.0);
    // Without the window's params `complete` is skipped, not broken.
    let a = get(&p.url("/v1/orders/complete")).await;
    assert_eq!(a.status, 200);
    settle(&p, "the sixth check", |m| {
        m.route("orders").contract_checks("pass") >= 2.0
    })
    .await;
    let status = p.status_json().await;
    let c = &status["routes"][0]["contract"];
    assert_eq!(c["checked"], 6, "{c}");
    assert_eq!(c["violation"], 4, "{c}");
    assert_eq!(c["by_rule"]["unique"], 1, "{c}");
    assert_eq!(c["on_violation"], "record", "{c}");
}

#[tokio::test]
async fn an_answer_past_the_hold_limit_is_served_and_checked_after() {
    // 300 records, the last one repeating the first id: about 12 KiB.
    let mut records: Vec<Value> = (0..300)
        .map(|i| json!({"id": i, "ts": format!("2026-12-01T00:{:02}:{:02}Z", i / 60, i % 60), "amount": i}))
        .collect();
    records.push(json!({"id": 0, "ts": "2026-12-01T05:00:00Z", "amount": 1}));
    let body = json!({ "items": records }).to_string();
    let streaming = canned(vec![("", "application/json", body.clone())]).await;
    let batch = batch().await;
    let mut contract = rules("fallback");
    contract["max_body_bytes"] = json!(4096);
    let p = Proxy::start(route(&batch, &streaming, "streaming", contract)).await;
    let a = get(&p.url("/v1/orders/big")).await;
    assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(a.text(), body, "served whole, bytes as sent");
    settle(&p, "the violation counted after serving", |m| {
        m.route("orders").contract_violations("unique") == 1.0
    })
    .await;
    assert_eq!(p.scrape().await.route("orders").fallbacks("contract"), 0.0);
}

#[tokio::test]
async fn shadow_checks_streamings_answer_and_serves_batch() {
    let f = Format::Ndjson;
    let bad = f.body(&[(1, T0, Some(5)), (1, T1, Some(6))]);
    let streaming = canned(vec![("", f.content_type(), bad)]).await;
    let batch = batch().await;
    let p = Proxy::start(
        Route::new("orders", "/v1/orders", batch.url("/b"), streaming.url("/s"))
            .no_probe()
            .mode("shadow")
            .set("contract", rules("fallback")),
    )
    .await;
    let a = get(&p.url("/v1/orders/x")).await;
    assert_eq!(a.text(), BATCH_BODY);
    assert_eq!(a.header("x-cutover-fallback"), None);
    settle(&p, "the shadow answer checked", |m| {
        m.route("orders").contract_violations("unique") == 1.0
    })
    .await;
}

#[tokio::test]
async fn a_schema_with_a_local_ref_is_checked_and_its_violations_dead_lettered() {
    let good = r#"{"items":[{"id":1,"amount":5}]}"#;
    let bad = r#"{"items":[{"id":1,"amount":5},{"id":"two","amount":6}]}"#;
    let streaming = canned(vec![
        ("good", "application/json", good.to_owned()),
        ("bad", "application/json", bad.to_owned()),
    ])
    .await;
    let batch = batch().await;
    let (dir, path) = config_file(route(
        &batch,
        &streaming,
        "streaming",
        json!({
            "schema": "orders.schema.json",
            "on_violation": "fallback",
            "dead_letter": "violations.jsonl",
        }),
    ));
    std::fs::write(
        dir.path().join("orders.schema.json"),
        r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "amount"],
  "properties": {
    "id": { "$ref": "common.schema.json#/$defs/id" },
    "amount": { "type": "number" }
  }
}"#,
    )
    .expect("schema file");
    std::fs::write(
        dir.path().join("common.schema.json"),
        r#"{ "$defs": { "id": { "type": "integer", "minimum": 1 } } }"#,
    )
    .expect("referenced schema file");
    let p = Proxy::start_at(dir, path).await;
    let a = get(&p.url("/v1/orders/good")).await;
    assert_eq!(a.text(), good);
    let a = get_with(&p.url("/v1/orders/bad"), &[("x-request-id", "req-42")]).await;
    assert_eq!(a.header("x-cutover-fallback"), Some("contract"));
    assert_eq!(a.text(), BATCH_BODY);
    let log = p.data.path().join("violations.jsonl");
    let line = wait_until("a dead-letter line", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.ends_with('\n'))
            .ok_or_else(|| "no line yet".to_owned())
    })
    .await;
    println!("dead letter: {line}");
    let v: Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(v["route"], "orders");
    assert_eq!(v["dataset"], "orders");
    assert_eq!(v["request_id"], "req-42");
    assert_eq!(v["rules"], json!(["schema"]));
    assert_eq!(v["details"][0]["rule"], "schema");
    assert_eq!(v["details"][0]["index"], 1, "{v}");
    assert!(
        v["details"][0]["field"]
            .as_str()
            .is_some_and(|f| f.contains("id")),
        "{v}"
    );
    assert_eq!(v["body"], bad);
    assert!(v["ts"].as_str().is_some_and(|t| t.starts_with("20")), "{v}");
}

#[tokio::test]
async fn the_dead_letter_stays_bounded_under_a_flood() {
    let bad = Format::Json.body(&[(1, T0, Some(5)), (1, T1, Some(6))]);
    let streaming = canned(vec![("", "application/json", bad)]).await;
    let batch = batch().await;
    let mut contract = rules("record");
    contract["dead_letter"] = json!("flood.jsonl");
    let p = Proxy::start(route(&batch, &streaming, "streaming", contract)).await;
    let reads = 200;
    let mut tasks = Vec::new();
    for _ in 0..reads {
        let url = p.url("/v1/orders/x");
        tasks.push(tokio::spawn(async move { get(&url).await.status }));
    }
    for t in tasks {
        assert_eq!(within(t).await.expect("read task"), 200);
    }
    settle(&p, "every violation counted", |m| {
        m.route("orders").contract_checks("violation") == reads as f64
    })
    .await;
    let log = p.data.path().join("flood.jsonl");
    let lines = wait_until("some lines written", || {
        let n = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
        if n > 0 {
            Ok(n)
        } else {
            Err("none yet".to_owned())
        }
    })
    .await;
    // A few a second per route, however many violations: the flood took
    // well under the seconds it would need to write one line per violation.
    assert!(lines < reads / 4, "{lines} lines for {reads} violations");
}

#[tokio::test]
async fn the_gate_trips_on_the_contract_violation_ratio() {
    let bad = Format::Json.body(&[(1, T0, Some(5)), (1, T1, Some(6))]);
    let streaming = canned(vec![("", "application/json", bad)]).await;
    let batch = batch().await;
    let p = Proxy::start(
        route(&batch, &streaming, "streaming", rules("record")).gate(json!({
            "interval": "100ms",
            "window": "10s",
            "failures": 1,
            "min_reads": 3,
            "max_contract_violation_ratio": 0.5,
        })),
    )
    .await;
    for _ in 0..5 {
        get(&p.url("/v1/orders/x")).await;
    }
    settle(&p, "the gate trips", |m| {
        m.route("orders").gate_tripped() == 1.0
    })
    .await;
    let status = p.status_json().await;
    assert_eq!(
        status["routes"][0]["gate"]["trip"]["check"], "contract_violation_ratio",
        "{status}"
    );
    let a = get(&p.url("/v1/orders/x")).await;
    assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
}

#[tokio::test]
async fn a_bad_schema_at_reload_keeps_the_last_good_config_serving() {
    let streaming = canned(vec![(
        "",
        "application/json",
        r#"{"items":[{"id":1}]}"#.to_owned(),
    )])
    .await;
    let batch = batch().await;
    let good = route(
        &batch,
        &streaming,
        "streaming",
        json!({ "schema": "s.schema.json", "on_violation": "fallback" }),
    );
    let (dir, path) = config_file(good.clone());
    std::fs::write(dir.path().join("s.schema.json"), r#"{"type":"object"}"#).expect("schema");
    std::fs::write(
        dir.path().join("broken.schema.json"),
        "{\n  \"type\": 5\n}\n",
    )
    .expect("schema");
    let p = Proxy::start_at(dir, path.clone()).await;
    let before = p.generation();
    let bad = route(
        &batch,
        &streaming,
        "batch",
        json!({ "schema": "broken.schema.json" }),
    );
    Config::from(bad).write(&path);
    settle(&p, "the reload is refused", |m| m.reloads("error") >= 1.0).await;
    assert_eq!(p.generation(), before);
    let a = get(&p.url("/v1/orders/x")).await;
    assert_eq!(
        a.header("x-cutover-served-by"),
        Some("streaming"),
        "the last good config serves"
    );
    let status = p.status_json().await;
    let error = status["last_reload"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("broken.schema.json:2:"), "{error}");
}

#[tokio::test]
async fn a_slow_answer_is_not_held_past_the_body_timeout() {
    // Streaming sends its head and a first piece, then the rest only once
    // the consumer has the head: held until the body ended, this read would
    // never finish.
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    let streaming = Backend::start(Behaviour::custom(move |_req: Request<Bytes>| {
        let gate = gate.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            tokio::spawn(async move {
                let _ = tx
                    .send(Bytes::from_static(br#"{"items":[{"id":1,"amount":5},"#))
                    .await;
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                    let _ = tx
                        .send(Bytes::from_static(br#"{"id":1,"amount":6}]}"#))
                        .await;
                }
            });
            let mut r = Response::new(http_body_util::BodyExt::boxed(ChannelBody(rx)));
            r.headers_mut()
                .insert("content-type", "application/json".parse().expect("type"));
            r
        }
    }))
    .await;
    let batch = batch().await;
    let p = Proxy::start(
        Config::new()
            .limits(json!({ "body_timeout": "200ms" }))
            .route(route(&batch, &streaming, "streaming", rules("fallback"))),
    )
    .await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let req = Request::get(p.url("/v1/orders/slow"))
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("request");
    let resp = within(client.request(req)).await.expect("the head arrives");
    assert_eq!(resp.headers()["x-cutover-served-by"], "streaming");
    release.add_permits(1);
    let body = within(http_body_util::BodyExt::collect(resp.into_body()))
        .await
        .expect("the whole body")
        .to_bytes();
    assert_eq!(
        &body[..],
        br#"{"items":[{"id":1,"amount":5},{"id":1,"amount":6}]}"#
    );
    // Served, then checked: a duplicate id, recorded (too late to fall back).
    settle(&p, "checked after serving", |m| {
        m.route("orders").contract_violations("unique") == 1.0
    })
    .await;
    assert_eq!(p.scrape().await.route("orders").fallbacks("contract"), 0.0);
}

/// One case of the property: records (sorted unique ids, amounts), written
/// in a format, maybe gzipped, sent in pieces.
#[derive(Debug, Clone)]
struct Conforming {
    format: usize,
    gzip: bool,
    records: Vec<(i64, i64)>,
    cuts: Vec<usize>,
}

fn conforming() -> impl proptest::strategy::Strategy<Value = Conforming> {
    use proptest::prelude::*;
    (
        0..3usize,
        any::<bool>(),
        proptest::collection::btree_map(0i64..10_000, -1_000i64..1_000, 0..60),
        proptest::collection::vec(1usize..400, 0..6),
    )
        .prop_map(|(format, gzip, records, cuts)| Conforming {
            format,
            gzip,
            records: records.into_iter().collect(),
            cuts,
        })
}

/// Property: a conforming answer, in any format, encoding and pieces, is
/// served by streaming exactly as sent, whatever was held to check it.
#[test]
fn a_conforming_answer_is_served_exactly_as_sent() {
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let current: Arc<std::sync::Mutex<(Vec<Bytes>, &'static str, bool)>> = Arc::new(
        std::sync::Mutex::new((Vec::new(), "application/json", false)),
    );
    let (p, _batch, _streaming) = rt.block_on(async {
        let shared = current.clone();
        let streaming = Backend::start(Behaviour::custom(move |_req: Request<Bytes>| {
            let (pieces, ct, gzip) = shared.lock().expect("case").clone();
            async move {
                let body = Chunks(pieces.into_iter().collect());
                let mut r = Response::new(http_body_util::BodyExt::boxed(body));
                r.headers_mut()
                    .insert("content-type", ct.parse().expect("type"));
                if gzip {
                    r.headers_mut()
                        .insert("content-encoding", "gzip".parse().expect("coding"));
                }
                r
            }
        }))
        .await;
        let batch = batch().await;
        let contract = json!({
            "unique": ["id"],
            "sorted_by": ["id"],
            "not_null": ["id", "amount"],
            "on_violation": "fallback",
        });
        let p = Proxy::start(route(&batch, &streaming, "streaming", contract)).await;
        (p, batch, streaming)
    });
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 48,
        ..RunnerConfig::default()
    });
    runner
        .run(&conforming(), |case| {
            let f = Format::ALL[case.format];
            let rows: Vec<(i64, &str, Option<i64>)> = case
                .records
                .iter()
                .map(|(id, a)| (*id, T0, Some(*a)))
                .collect();
            let text = f.body(&rows).into_bytes();
            let sent = if case.gzip {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&text).expect("gzip");
                e.finish().expect("gzip")
            } else {
                text
            };
            let mut pieces = Vec::new();
            let mut at = 0;
            for cut in &case.cuts {
                let end = (at + cut).min(sent.len());
                pieces.push(Bytes::copy_from_slice(&sent[at..end]));
                at = end;
            }
            pieces.push(Bytes::copy_from_slice(&sent[at..]));
            *current.lock().expect("case") = (pieces, f.content_type(), case.gzip);
            let a = rt.block_on(get(&p.url("/v1/orders/x")));
            proptest::prop_assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
            proptest::prop_assert_eq!(a.header("x-cutover-fallback"), None);
            proptest::prop_assert_eq!(&a.body[..], &sent[..]);
            Ok(())
        })
        .expect("every conforming answer is served as sent");
    let m = rt.block_on(p.scrape());
    let r = m.route("orders");
    assert_eq!(r.contract_checks("violation"), 0.0, "{}", m.text);
    assert!(r.contract_checks("pass") >= 48.0, "{}", m.text);
    rt.block_on(p.stop());
}
