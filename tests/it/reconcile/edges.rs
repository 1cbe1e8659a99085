//! Edges of the run-time path: a records pointer that finds nothing, HEAD
//! and POST reads, batch down, a body broken midway, canary's share, sides'
//! roles when streaming serves, and `max_compared_bytes`.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

use super::*;

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
        m.route("orders").skipped("no_records") == 1.0
    })
    .await;
    assert_eq!(m.route("orders").reconciled("skipped"), 1.0);
    assert_eq!(m.route("orders").reconciled("diverged"), 0.0);
    assert_eq!(m.route("orders").divergences("body"), 0.0);
}

/// `orders` with GET, HEAD and POST allowed.
fn with_post(route: Route) -> Route {
    route.methods(&["GET", "HEAD", "POST"])
}

#[tokio::test]
async fn shadow_head_reads_are_not_compared_at_all() {
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
    // Two empty bodies would count as a match with nothing compared
    // (SPEC 1.2): the HEAD never reaches streaming. The object it names is
    // compared whole instead (a plain GET to each side, `whole_object.rs`),
    // and the GET after it is compared as a read: two matches, no HEAD.
    let g = get(&p.url("/v1/orders/1")).await;
    assert_eq!(g.status, 200);
    settle(&p, "the whole object and the GET compared", |m| {
        m.route("orders").reconciled("match") >= 2.0
    })
    .await;
    let m = p.scrape().await;
    assert_eq!(m.route("orders").reconciled("match"), 2.0);
    assert_eq!(compared(&m, "orders"), 2.0, "{}", reconcile_lines(&m));
    let seen = streaming.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.method == "GET"), "{seen:?}");
}

/// Partial and not-modified answers carry no whole answer: on either side
/// they are skipped with their own reason, never counted as a match.
#[tokio::test]
async fn partial_and_not_modified_answers_are_skipped_with_their_reason() {
    for (code, reason) in [(206, "partial"), (304, "not_modified")] {
        let batch = fixed(canned(code, if code == 206 { BATCH_A } else { "" }, None)).await;
        let streaming = fixed(json(BATCH_A)).await;
        let p = Proxy::start(orders(&batch, streaming.url("/s/orders")).mode("shadow")).await;
        let a = get(&p.url("/v1/orders/1")).await;
        assert_eq!(a.status, code);
        settle(&p, &format!("{code} skipped as {reason}"), |m| {
            m.route("orders").skipped(reason) >= 1.0
        })
        .await;
        let m = p.scrape().await;
        assert_eq!(m.route("orders").skipped(reason), 1.0, "{code}");
        assert_eq!(m.route("orders").reconciled("skipped"), 1.0, "{code}");
        assert_eq!(m.route("orders").reconciled("match"), 0.0, "{code}");
        assert_eq!(m.route("orders").reconciled("diverged"), 0.0, "{code}");
    }
}

#[tokio::test]
async fn shadow_skips_a_request_body_too_large_to_send_twice() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    // Spooling off: the body is kept nowhere (batch_transparent.rs has a
    // spooled one reaching both sides).
    let config = Config::new()
        .max_buffered_body(1024)
        .max_spooled_body(0)
        .route(with_post(
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
        m.route("orders").skipped("unbuffered") == 1.0
    })
    .await;
    assert_eq!(m.route("orders").reconciled("skipped"), 1.0);
    // A small body is buffered and sent to both.
    post(&p.url("/v1/orders/search"), "{\"q\":1}").await;
    settle(&p, "a match", |m| {
        m.route("orders").reconciled("match") == 1.0
    })
    .await;
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
        m.route("orders").skipped("upstream_error") == 1.0
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
        m.route("orders").skipped("aborted") == 1.0
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
        m.route("orders").skipped("memory") == 3.0
    })
    .await;
    assert_eq!(m.route("orders").reconciled("match"), 0.0);
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
            m.route("orders").reconciled("match") == f64::from(i)
        })
        .await;
    }
    let m = p.scrape().await;
    assert_eq!(m.route("orders").skipped("memory"), 0.0);
    p.stop().await;
}
