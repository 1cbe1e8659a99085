//! Each mode: which side serves a read, which sides are read at all, and
//! what is counted.

use serde_json::json;

use super::{quiet_route, route};
use crate::support::*;

#[tokio::test]
async fn batch_mode_reads_only_batch() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "batch")).await;
    for _ in 0..3 {
        let r = get(&p.url("/v1/orders/1")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
        assert_eq!(r.header("x-cutover-fallback"), None);
        assert_eq!(r.text(), "from batch");
    }
    assert_eq!(b.hits(), 3);
    assert_eq!(s.hits(), 0);
    let m = p.scrape().await;
    assert_eq!(m.requests("batch", "2xx"), 3.0);
    assert_eq!(m.requests("streaming", "2xx"), 0.0);
    p.stop().await;
}

#[tokio::test]
async fn streaming_mode_reads_only_streaming() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming")).await;
    for _ in 0..3 {
        let r = get(&p.url("/v1/orders/1")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
        assert_eq!(r.header("x-cutover-fallback"), None);
        assert_eq!(r.text(), "from streaming");
    }
    assert_eq!(s.hits(), 3);
    assert_eq!(b.hits(), 0);
    p.stop().await;
}

#[tokio::test]
async fn streaming_only_passes_errors_through_and_never_reads_batch() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let down = refusing_addr();
    let p = Proxy::start(quiet_route(
        b.url("/t"),
        format!("http://{down}/s"),
        "streaming_only",
    ))
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(r.header("x-cutover-fallback"), None);
    assert_eq!(
        r.header("x-cutover-error"),
        Some("connect"),
        "cutover's own 502"
    );

    let s = Backend::start(Behaviour::Status(503)).await;
    let p2 = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming_only")).await;
    let r = get(&p2.url("/v1/orders/1")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(
        r.text(),
        "status 503\n",
        "streaming's own error body reaches the consumer"
    );
    assert_eq!(r.header("x-cutover-error"), None, "the upstream's 503");
    assert_eq!(b.hits(), 0, "streaming_only never reads batch");

    let m = p.scrape().await;
    assert_eq!(m.upstream("streaming", "connect"), 1.0);
    assert_eq!(m.requests("streaming", "5xx"), 1.0);
    assert_eq!(m.fallbacks("connect"), 0.0);
    p.stop().await;
    p2.stop().await;
}

#[tokio::test]
async fn canary_percent_splits_reads_and_sticks_per_header_value() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let canary = |name: &str, prefix: &str, p: u32| {
        route(name, prefix, b.url("/t"), s.url("/s"))
            .mode("canary")
            .canary(json!({ "percent": p, "sticky_header": "x-customer-id" }))
    };
    let p = Proxy::start(
        Config::new()
            .route(canary("none", "/c0", 0))
            .route(canary("all", "/c100", 100))
            .route(canary("half", "/c50", 50)),
    )
    .await;

    for i in 0..20 {
        let id = format!("customer-{i}");
        let r = get_with(&p.url("/c0/x"), &[("x-customer-id", &id)]).await;
        assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
        let r = get(&p.url("/c0/x")).await;
        assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    }
    assert_eq!(
        (b.hits(), s.hits()),
        (40, 0),
        "percent 0 sends nothing to streaming"
    );

    for i in 0..20 {
        let id = format!("customer-{i}");
        let r = get_with(&p.url("/c100/x"), &[("x-customer-id", &id)]).await;
        assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
        let r = get(&p.url("/c100/x")).await;
        assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    }
    assert_eq!(
        (b.hits(), s.hits()),
        (40, 40),
        "percent 100 sends everything to streaming"
    );

    // 50%: each customer sticks to one side; about half the customers on each.
    let mut on_streaming = 0;
    for i in 0..40 {
        let id = format!("customer-{i}");
        let first = get_with(&p.url("/c50/x"), &[("x-customer-id", &id)]).await;
        let side = first
            .header("x-cutover-served-by")
            .expect("served-by")
            .to_owned();
        assert_eq!(first.text(), format!("from {side}"));
        for _ in 0..3 {
            let again = get_with(&p.url("/c50/x"), &[("x-customer-id", &id)]).await;
            assert_eq!(
                again.header("x-cutover-served-by"),
                Some(side.as_str()),
                "{id} moved sides"
            );
        }
        on_streaming += usize::from(side == "streaming");
    }
    assert!(
        (10..=30).contains(&on_streaming),
        "{on_streaming} of 40 customers on streaming at 50%"
    );

    // Without the header: per object (SPEC 1.2 sequences), both sides get
    // a share, and a URL read again stays on its side.
    let mut random_streaming = 0;
    for i in 0..30 {
        let url = p.url(&format!("/c50/object-{i}"));
        let r = get(&url).await;
        let side = r
            .header("x-cutover-served-by")
            .expect("served-by")
            .to_owned();
        let again = get(&url).await;
        assert_eq!(
            again.header("x-cutover-served-by"),
            Some(side.as_str()),
            "{url}"
        );
        random_streaming += 2 * usize::from(side == "streaming");
    }
    assert!(
        (10..=50).contains(&random_streaming),
        "{random_streaming} of 60 header-less reads on streaming"
    );

    let m = p.scrape().await;
    assert_eq!(
        m.route("half").requests("streaming", "2xx"),
        (on_streaming * 4 + random_streaming) as f64
    );
    assert_eq!(m.route("half").route_mode("canary"), 1.0);
    p.stop().await;
}

#[tokio::test]
async fn shadow_mode_serves_batch_and_keeps_streaming_failures_from_the_consumer() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(
        Route::orders(b.url("/t"), s.url("/s"))
            .mode("shadow")
            .no_probe(),
    )
    .await;
    for _ in 0..3 {
        let r = get(&p.url("/v1/orders/1?x=1")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
        assert_eq!(r.header("x-cutover-fallback"), None);
        assert_eq!(r.text(), "from batch");
    }
    assert_eq!(b.hits(), 3);
    wait_until("streaming gets the shadow reads", || s.hits() == 3).await;
    assert_eq!(s.last().expect("shadow read").uri, "/s/1?x=1");
    // Shadow attempts count as upstream attempts (SPEC), once answered.
    wait_until_async("the shadow attempts are counted", || async {
        let m = p.scrape().await;
        m.upstream("streaming", "5xx") == 3.0
    })
    .await;
    let m = p.scrape().await;
    assert_eq!(m.requests("batch", "2xx"), 3.0);
    assert_eq!(m.requests("streaming", "5xx"), 0.0);
    assert_eq!(m.fallbacks("5xx"), 0.0, "shadow never falls back");
    assert_eq!(m.route_mode("shadow"), 1.0);
    p.stop().await;
}
