//! Fallback end to end: every SPEC reason (connect, timeout, 5xx, stale,
//! overflow, circuit) answered by batch with `x-cutover-fallback` and counted
//! in `cutover_fallbacks_total`; what is not a fallback (an unlisted reason,
//! a 4xx, streaming_only); batch failing after a fallback; and bodies
//! streaming through without being buffered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::Semaphore;

/// A single streaming-mode route, quiet: no idle-side probe, no sampled
/// comparison reads, so hit counts stay exact.
fn streaming_route(batch: impl Into<Side>, streaming: impl Into<Side>) -> Route {
    Route::orders(batch, streaming).mode("streaming").quiet()
}

/// Asserts a read was answered by batch after a fallback for `reason`.
fn assert_fell_back(r: &Answer, reason: &str, body: &str) {
    assert_eq!(r.status, 200, "{reason}: {}", r.text());
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"), "{reason}");
    assert_eq!(r.header("x-cutover-fallback"), Some(reason));
    assert_eq!(r.text(), body, "{reason}");
}

/// Every fallback reason's counter: `reason` at `n`, all the others 0.
fn assert_fallbacks(m: &Metrics, reason: &str, n: f64) {
    for r in ["connect", "timeout", "5xx", "stale", "overflow", "circuit"] {
        let want = if r == reason { n } else { 0.0 };
        let got = m.route("orders").fallbacks(r);
        assert_eq!(got, want, "{FALLBACKS}{{reason={r}}}");
    }
}

// ---------------------------------------------------------------- each reason

#[tokio::test]
async fn connect_refused_falls_back_to_batch() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let down = refusing_addr();
    let p = Proxy::start(streaming_route(b.url("/t"), format!("http://{down}/s"))).await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_fell_back(&r, "connect", "from batch");
    assert_eq!(b.hits(), 1);
    let m = p.scrape().await;
    assert_fallbacks(&m, "connect", 1.0);
    assert_eq!(m.upstream("streaming", "connect"), 1.0);
    assert_eq!(m.upstream("batch", "ok"), 1.0);
    assert_eq!(m.requests("batch", "2xx"), 1.0);
    assert_eq!(m.requests("streaming", "2xx"), 0.0);
    p.stop().await;
}

#[tokio::test]
async fn no_response_head_within_the_timeout_falls_back_to_batch() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::Hang).await;
    let p = Proxy::start(streaming_route(
        b.url("/t"),
        Side::new(s.url("/s")).timeout("200ms"),
    ))
    .await;
    let started = Instant::now();
    let r = get(&p.url("/v1/orders/1")).await;
    let took = started.elapsed();
    assert_fell_back(&r, "timeout", "from batch");
    assert!(
        took >= Duration::from_millis(200),
        "answered after {took:?}, before the timeout"
    );
    assert!(
        took < Duration::from_secs(2),
        "answered after {took:?}: the 200ms timeout was not applied"
    );
    assert_eq!((s.hits(), b.hits()), (1, 1));
    let m = p.scrape().await;
    assert_fallbacks(&m, "timeout", 1.0);
    assert_eq!(m.upstream("streaming", "timeout"), 1.0);
    p.stop().await;
}

#[tokio::test]
async fn a_5xx_from_streaming_falls_back_to_batch() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(streaming_route(b.url("/t"), s.url("/s"))).await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_fell_back(&r, "5xx", "from batch");
    s.set(Behaviour::Status(500));
    let r = get(&p.url("/v1/orders/2")).await;
    assert_fell_back(&r, "5xx", "from batch");
    assert_eq!((s.hits(), b.hits()), (2, 2));
    let m = p.scrape().await;
    assert_fallbacks(&m, "5xx", 2.0);
    assert_eq!(m.upstream("streaming", "5xx"), 2.0);
    p.stop().await;
}

/// A streaming route whose idle-side probe runs once, at start (then not
/// for an hour), so batch's watermark is known before the first read.
fn probed_once(batch: impl Into<Side>, streaming: impl Into<Side>, max_staleness: &str) -> Route {
    Route::orders(batch, streaming)
        .mode("streaming")
        .freshness(json!({ "probe_interval": "1h" }))
        .reconcile(json!({ "sample": 0 }))
        .fallback(json!({ "max_staleness": max_staleness }))
}

/// Waits until the start-up probe has shown both sides' watermarks.
async fn both_watermarks_known(p: &Proxy) {
    let status = p.admin_url("/status");
    wait_until_async("the start-up probe saw both watermarks", || {
        let status = status.clone();
        async move {
            let st = get(&status).await.json();
            let age = &st["routes"][0]["data_age_seconds"];
            age["batch"].is_number() && age["streaming"].is_number()
        }
    })
    .await;
}

#[tokio::test]
async fn streaming_data_older_than_max_staleness_falls_back_to_newer_batch_data() {
    let b = Backend::start(Behaviour::Ok {
        body: "from batch",
        age: Some(Duration::from_secs(30 * 60)),
    })
    .await;
    let s = Backend::start(Behaviour::Ok {
        body: "from streaming",
        age: Some(Duration::from_secs(2 * 3600)),
    })
    .await;
    let p = Proxy::start(probed_once(b.url("/t"), s.url("/s"), "10m")).await;
    both_watermarks_known(&p).await;
    let before = p.scrape().await;
    let hits = (s.hits(), b.hits());
    let r = get(&p.url("/v1/orders/1")).await;
    assert_fell_back(&r, "stale", "from batch");
    assert_eq!((s.hits() - hits.0, b.hits() - hits.1), (1, 1));

    // Fresh again: served by streaming.
    s.set(Behaviour::Ok {
        body: "from streaming",
        age: Some(Duration::from_secs(30)),
    });
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(r.header("x-cutover-fallback"), None);
    assert_eq!(r.text(), "from streaming");

    let m = p.scrape().await;
    assert_fallbacks(&m, "stale", 1.0);
    let stale = |m: &Metrics| m.upstream("streaming", "stale");
    assert_eq!(stale(&m) - stale(&before), 1.0);
    assert_eq!(m.upstream("streaming", "ok"), 1.0);
    // Stale data is not an error: it counts toward freshness, not the error ratio.
    assert_eq!(m.error_ratio("streaming"), 0.0);
    p.stop().await;
}

#[tokio::test]
async fn stale_streaming_data_is_served_when_batch_is_older_still() {
    // The case: streaming 5 s old against a 2 s bound, batch 3 h old.
    let b = Backend::start(Behaviour::Ok {
        body: "from batch",
        age: Some(Duration::from_secs(3 * 3600)),
    })
    .await;
    let s = Backend::start(Behaviour::Ok {
        body: "from streaming",
        age: Some(Duration::from_secs(5)),
    })
    .await;
    let p = Proxy::start(probed_once(b.url("/t"), s.url("/s"), "2s")).await;
    both_watermarks_known(&p).await;
    let before = p.scrape().await;
    let hits = (s.hits(), b.hits());
    for _ in 0..3 {
        let r = get(&p.url("/v1/orders/1")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
        assert_eq!(r.header("x-cutover-fallback"), None);
        assert_eq!(r.text(), "from streaming");
    }
    // One round trip per read: batch is not asked.
    assert_eq!((s.hits() - hits.0, b.hits() - hits.1), (3, 0));
    let m = p.scrape().await;
    assert_fallbacks(&m, "stale", 0.0);
    let stale = |m: &Metrics| m.upstream("streaming", "stale");
    assert_eq!(stale(&m) - stale(&before), 3.0, "each read counted stale");
    p.stop().await;
}

#[tokio::test]
async fn past_max_inflight_a_read_overflows_to_batch() {
    // Streaming holds every read until the test lets it go.
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let s = Backend::start(Behaviour::custom(move |_req| {
        let g = g.clone();
        async move {
            g.acquire().await.expect("gate open").forget();
            Response::new(full_body("from streaming"))
        }
    }))
    .await;
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let streaming = Side::new(s.url("/s")).max_inflight(1).timeout("5s");
    let p = Proxy::start(streaming_route(b.url("/t"), streaming)).await;

    let held_url = p.url("/v1/orders/held");
    let held = tokio::spawn(async move { get(&held_url).await });
    wait_until("the first read reaches streaming", || s.hits() == 1).await;

    let r = get(&p.url("/v1/orders/2")).await;
    assert_fell_back(&r, "overflow", "from batch");
    assert_eq!(s.hits(), 1, "an overflowing read never reaches streaming");
    assert_eq!(b.hits(), 1);

    gate.add_permits(1);
    let first = within(held).await.expect("held read task");
    assert_eq!(first.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(first.text(), "from streaming");

    // The slot is given back: the next read goes to streaming again.
    gate.add_permits(1);
    let r = get(&p.url("/v1/orders/3")).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(s.hits(), 2);

    let m = p.scrape().await;
    assert_fallbacks(&m, "overflow", 1.0);
    p.stop().await;
}

#[tokio::test]
async fn consecutive_failures_open_the_circuit_and_a_trial_read_closes_it() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(
        streaming_route(b.url("/t"), s.url("/s"))
            .fallback(json!({"circuit": {"failures": 2, "cooldown": "1s"}})),
    )
    .await;
    let circuit = |st: &serde_json::Value| {
        st["routes"][0]["circuit"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    for _ in 0..2 {
        let r = get(&p.url("/v1/orders/1")).await;
        assert_fell_back(&r, "5xx", "from batch");
    }
    assert_eq!(s.hits(), 2);
    let r = get(&p.url("/v1/orders/1")).await;
    assert_fell_back(&r, "circuit", "from batch");
    assert_eq!(s.hits(), 2, "an open circuit does not call streaming");

    let m = p.scrape().await;
    assert_eq!(m.route("orders").circuit_open(), 1.0);
    assert_eq!(m.route_mode("batch"), 1.0, "effective mode while open");
    assert_eq!(m.route_mode("streaming"), 0.0);
    assert_eq!(m.fallbacks("5xx"), 2.0);
    assert_eq!(m.fallbacks("circuit"), 1.0);
    let st = p.status_json().await;
    assert_eq!(circuit(&st), "open");
    assert_eq!(st["routes"][0]["configured_mode"], "streaming");
    assert_eq!(st["routes"][0]["effective_mode"], "batch");

    // Cooldown over, streaming still failing: the one trial read fails and
    // the circuit opens again for a full cooldown.
    wait_until_async("the cooldown ends", || async {
        circuit(&p.status_json().await) == "half_open"
    })
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_fell_back(&r, "5xx", "from batch");
    assert_eq!(s.hits(), 3, "exactly one trial read");
    let r = get(&p.url("/v1/orders/1")).await;
    assert_fell_back(&r, "circuit", "from batch");
    assert_eq!(s.hits(), 3);

    // Cooldown over, streaming healthy: the trial succeeds and closes it.
    s.set(Behaviour::ok("from streaming"));
    wait_until_async("the cooldown ends again", || async {
        circuit(&p.status_json().await) == "half_open"
    })
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(r.header("x-cutover-fallback"), None);
    assert_eq!(s.hits(), 4);
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(s.hits(), 5);

    let st = p.status_json().await;
    assert_eq!(circuit(&st), "closed");
    assert_eq!(st["routes"][0]["effective_mode"], "streaming");
    let m = p.scrape().await;
    assert_eq!(m.route("orders").circuit_open(), 0.0);
    assert_eq!(m.route_mode("streaming"), 1.0);
    assert_eq!(m.fallbacks("circuit"), 2.0);
    assert_eq!(m.fallbacks("5xx"), 3.0);
    p.stop().await;
}

#[tokio::test]
async fn a_trial_read_the_consumer_abandons_gives_the_trial_back() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(
        streaming_route(b.url("/t"), Side::new(s.url("/s")).timeout("5s"))
            .fallback(json!({"circuit": {"failures": 1, "cooldown": "1s"}})),
    )
    .await;
    let circuit = |st: serde_json::Value| {
        st["routes"][0]["circuit"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_fell_back(&get(&p.url("/v1/orders/1")).await, "5xx", "from batch");
    s.set(Behaviour::Hang);
    wait_until_async("the cooldown ends", || async {
        circuit(p.status_json().await) == "half_open"
    })
    .await;

    // The trial read reaches streaming, then its consumer hangs up.
    {
        use tokio::io::AsyncWriteExt;
        let mut conn = within(tokio::net::TcpStream::connect(p.listen))
            .await
            .expect("connect");
        within(conn.write_all(b"GET /v1/orders/trial HTTP/1.1\r\nHost: x\r\n\r\n"))
            .await
            .expect("write");
        wait_until("the trial read reaches streaming", || s.hits() == 2).await;
    }

    // Streaming recovers: a later read must get the trial, not `circuit` forever.
    s.set(Behaviour::ok("from streaming"));
    wait_until_async("a new trial read is let through", || async {
        let r = get(&p.url("/v1/orders/1")).await;
        r.header("x-cutover-served-by") == Some("streaming")
    })
    .await;
    assert_eq!(s.hits(), 3);
    assert_eq!(circuit(p.status_json().await), "closed");
    p.stop().await;
}

#[tokio::test]
async fn canary_reads_sent_to_streaming_fall_back_too() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let down = refusing_addr();
    let p = Proxy::start(
        Route::orders(b.url("/t"), format!("http://{down}/s"))
            .mode("canary")
            .canary(json!({ "percent": 100 }))
            .quiet(),
    )
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_fell_back(&r, "connect", "from batch");
    let m = p.scrape().await;
    assert_fallbacks(&m, "connect", 1.0);
    p.stop().await;
}

// ---------------------------------------------------------------- not a fallback

#[tokio::test]
async fn a_reason_not_listed_passes_the_streaming_error_through() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(
        streaming_route(b.url("/t"), s.url("/s")).fallback(json!({"on": ["connect"]})),
    )
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(r.header("x-cutover-fallback"), None);
    assert_eq!(r.text(), "status 503\n");
    assert_eq!(b.hits(), 0);
    let m = p.scrape().await;
    assert_fallbacks(&m, "none", 0.0);
    assert_eq!(m.requests("streaming", "5xx"), 1.0);
    p.stop().await;

    // Listed reasons still fall back under the same policy.
    let down = refusing_addr();
    let p = Proxy::start(
        streaming_route(b.url("/t"), format!("http://{down}/s"))
            .fallback(json!({"on": ["connect"]})),
    )
    .await;
    assert_fell_back(&get(&p.url("/v1/orders/1")).await, "connect", "from batch");
    p.stop().await;

    // An unlisted timeout: the consumer gets a gateway timeout from streaming.
    let hang = Backend::start(Behaviour::Hang).await;
    let p = Proxy::start(
        streaming_route(b.url("/t"), Side::new(hang.url("/s")).timeout("200ms"))
            .fallback(json!({"on": ["5xx"]})),
    )
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(r.header("x-cutover-fallback"), None);
    assert_eq!(b.hits(), 1);
    p.stop().await;
}

#[tokio::test]
async fn a_4xx_from_streaming_is_an_answer_not_a_fallback() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::Status(404)).await;
    let p = Proxy::start(streaming_route(b.url("/t"), s.url("/s"))).await;
    for code in [404, 400, 429] {
        s.set(Behaviour::Status(code));
        let r = get(&p.url("/v1/orders/404")).await;
        assert_eq!(r.status, code);
        assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
        assert_eq!(r.header("x-cutover-fallback"), None);
    }
    assert_eq!(b.hits(), 0);
    let m = p.scrape().await;
    assert_fallbacks(&m, "none", 0.0);
    assert_eq!(m.upstream("streaming", "4xx"), 3.0);
    assert_eq!(m.requests("streaming", "4xx"), 3.0);
    assert_eq!(
        m.error_ratio("streaming"),
        0.0,
        "4xx is the caller's, not an error"
    );
    p.stop().await;
}

#[tokio::test]
async fn batch_failing_after_a_fallback_answers_502_or_504_from_batch() {
    let down = refusing_addr();
    let also_down = refusing_addr();
    let p = Proxy::start(streaming_route(
        format!("http://{also_down}/t"),
        format!("http://{down}/s"),
    ))
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("connect"));
    let m = p.scrape().await;
    assert_eq!(m.upstream("batch", "connect"), 1.0);
    assert_eq!(m.requests("batch", "5xx"), 1.0);
    p.stop().await;

    let hang = Backend::start(Behaviour::Hang).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(streaming_route(
        Side::new(hang.url("/t")).timeout("200ms"),
        s.url("/s"),
    ))
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    assert_eq!(
        (s.hits(), hang.hits()),
        (1, 1),
        "one hop: never back to streaming"
    );
    let m = p.scrape().await;
    assert_eq!(m.upstream("batch", "timeout"), 1.0);
    p.stop().await;

    // Batch's own 5xx is passed through as batch's answer.
    let b500 = Backend::start(Behaviour::Status(500)).await;
    let p = Proxy::start(streaming_route(b500.url("/t"), s.url("/s"))).await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    assert_eq!(r.text(), "status 500\n");
    p.stop().await;
}

// ---------------------------------------------------------------- bodies

#[tokio::test]
async fn a_large_response_body_arrives_intact() {
    const SIZE: usize = 5 * 1024 * 1024;
    let body: Bytes = (0..SIZE)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let expected = body.clone();
    let s = Backend::start(Behaviour::custom(move |_req| {
        let body = body.clone();
        async move { Response::new(full_body(body)) }
    }))
    .await;
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let p = Proxy::start(streaming_route(b.url("/t"), s.url("/s"))).await;
    let r = get(&p.url("/v1/orders/export")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(r.body.len(), SIZE);
    assert!(r.body == expected, "5 MiB body differs");

    // Same through a fallback: batch's large body after streaming's 503.
    let big = expected.clone();
    let b_big = Backend::start(Behaviour::custom(move |_req| {
        let big = big.clone();
        async move { Response::new(full_body(big)) }
    }))
    .await;
    let s503 = Backend::start(Behaviour::Status(503)).await;
    let p2 = Proxy::start(streaming_route(b_big.url("/t"), s503.url("/s"))).await;
    let r = get(&p2.url("/v1/orders/export")).await;
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    assert!(r.body == expected, "5 MiB body differs after a fallback");
    p.stop().await;
    p2.stop().await;
}

#[tokio::test]
async fn the_response_head_and_first_bytes_arrive_before_the_body_ends() {
    // Streaming sends its head and a first chunk, then holds the rest until
    // the consumer has seen that chunk: only an unbuffered proxy passes.
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let s = Backend::start(Behaviour::custom(move |_req| {
        let g = g.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first;")).await;
                if let Ok(p) = g.acquire().await {
                    p.forget();
                }
                let _ = tx.send(Bytes::from_static(b"rest")).await;
            });
            Response::new(ChannelBody(rx).boxed())
        }
    }))
    .await;
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let p = Proxy::start(streaming_route(b.url("/t"), s.url("/s"))).await;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(p.url("/v1/orders/live"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = within(client.request(req)).await.expect("head arrives");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-cutover-served-by"], "streaming");
    let mut body = resp.into_body();
    let first = within(body.frame())
        .await
        .expect("a frame")
        .expect("no error");
    assert_eq!(first.into_data().expect("data"), "first;");
    gate.add_permits(1);
    let rest = within(body.collect())
        .await
        .expect("rest of the body")
        .to_bytes();
    assert_eq!(rest, "rest");
    p.stop().await;
}
