//! The proxy end to end: each mode, routing and path rewriting, header
//! hygiene, HTTP/2 from the consumer, bad requests, request bodies, the admin
//! endpoints, metrics by value and the idle-side probe. Real sockets on
//! 127.0.0.1:0, the real proxy, fake backends only.

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

/// A single-route config in `mode`, quiet: no idle-side probe, no sampled
/// comparison reads, so hit counts stay exact.
fn quiet_route(batch: impl Into<Side>, streaming: impl Into<Side>, mode: &str) -> Route {
    Route::orders(batch, streaming).mode(mode).quiet()
}

/// One quiet route for a config of several.
fn route(name: &str, prefix: &str, batch: impl Into<Side>, streaming: impl Into<Side>) -> Route {
    Route::new(name, prefix, batch, streaming).quiet()
}

/// The echoed request a `Behaviour::Echo` backend answered with.
fn echoed(a: &Answer) -> serde_json::Value {
    assert_eq!(a.status, 200, "echo answer: {}", a.text());
    a.json()
}

fn echoed_header(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- modes

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
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("side", "batch"), ("code_class", "2xx")]
        ),
        3.0
    );
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("side", "streaming"), ("code_class", "2xx")]
        ),
        0.0
    );
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
    assert_eq!(
        m.value(
            "cutover_upstream_requests_total",
            &[("side", "streaming"), ("result", "connect")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("side", "streaming"), ("code_class", "5xx")]
        ),
        1.0
    );
    assert_eq!(
        m.value("cutover_fallbacks_total", &[("reason", "connect")]),
        0.0
    );
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
        m.value(
            "cutover_requests_total",
            &[
                ("route", "half"),
                ("side", "streaming"),
                ("code_class", "2xx")
            ]
        ),
        (on_streaming * 4 + random_streaming) as f64
    );
    assert_eq!(
        m.value(
            "cutover_route_mode",
            &[("route", "half"), ("mode", "canary")]
        ),
        1.0
    );
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
        m.value(
            "cutover_upstream_requests_total",
            &[("side", "streaming"), ("result", "5xx")],
        ) == 3.0
    })
    .await;
    let m = p.scrape().await;
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("side", "batch"), ("code_class", "2xx")]
        ),
        3.0
    );
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("side", "streaming"), ("code_class", "5xx")]
        ),
        0.0
    );
    assert_eq!(
        m.value("cutover_fallbacks_total", &[("reason", "5xx")]),
        0.0,
        "shadow never falls back"
    );
    assert_eq!(m.value("cutover_route_mode", &[("mode", "shadow")]), 1.0);
    p.stop().await;
}

// ---------------------------------------------------------------- routing

#[tokio::test]
async fn longest_prefix_wins_and_the_prefix_is_replaced_by_the_side_path() {
    let wide = Backend::start(Behaviour::Echo).await;
    let orders = Backend::start(Behaviour::Echo).await;
    let never = Backend::start(Behaviour::ok("never")).await;
    // The shorter prefix comes first in the file: order must not matter.
    let p = Proxy::start(
        Config::new()
            .route(route("wide", "/v1", wide.url("/wide"), never.url("/")).mode("batch"))
            .route(
                route(
                    "orders",
                    "/v1/orders",
                    orders.url("/tables/orders"),
                    never.url("/"),
                )
                .mode("batch"),
            ),
    )
    .await;

    let e = echoed(&get(&p.url("/v1/orders/7/lines?since=2024-01-01&limit=5")).await);
    assert_eq!(e["uri"], "/tables/orders/7/lines?since=2024-01-01&limit=5");
    let e = echoed(&get(&p.url("/v1/orders")).await);
    assert_eq!(e["uri"], "/tables/orders");
    let e = echoed(&get(&p.url("/v1/orders?q=a%20b")).await);
    assert_eq!(e["uri"], "/tables/orders?q=a%20b");
    assert_eq!(orders.hits(), 3);

    // A prefix matches whole segments only.
    let e = echoed(&get(&p.url("/v1/ordersX/1")).await);
    assert_eq!(e["uri"], "/wide/ordersX/1");
    let e = echoed(&get(&p.url("/v1/customers/9?x=1")).await);
    assert_eq!(e["uri"], "/wide/customers/9?x=1");
    assert_eq!(wide.hits(), 2);
    assert_eq!(orders.hits(), 3);
    assert_eq!(never.hits(), 0);

    let m = p.scrape().await;
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[
                ("route", "orders"),
                ("side", "batch"),
                ("code_class", "2xx")
            ]
        ),
        3.0
    );
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("route", "wide"), ("side", "batch"), ("code_class", "2xx")]
        ),
        2.0
    );
    p.stop().await;
}

#[tokio::test]
async fn a_read_without_a_route_is_404_and_reaches_no_backend() {
    let b = Backend::start(Behaviour::ok("batch")).await;
    let s = Backend::start(Behaviour::ok("streaming")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming")).await;
    for path in ["/", "/v2/orders", "/v1/order", "/v1/ordersX"] {
        let r = get(&p.url(path)).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.text().contains("no route"), "{path}: {}", r.text());
        assert_eq!(r.header("x-cutover-served-by"), None);
        assert_eq!(r.header("x-cutover-error"), Some("no_route"), "{path}");
    }
    assert_eq!((b.hits(), s.hits()), (0, 0));
    p.stop().await;
}

#[tokio::test]
async fn a_method_not_listed_is_405_with_allow_and_reaches_no_backend() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::Echo).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming")).await;
    for method in ["POST", "PUT", "DELETE"] {
        let req = Request::builder()
            .method(method)
            .uri(p.url("/v1/orders/1"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request");
        let r = send(req).await;
        assert_eq!(r.status, 405, "{method}");
        let allow = r.header("allow").expect("Allow header").to_owned();
        let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
        assert!(
            allowed.contains(&"GET") && allowed.contains(&"HEAD"),
            "Allow: {allow}"
        );
        assert!(!allowed.contains(&method), "Allow: {allow}");
        assert_eq!(r.header("x-cutover-error"), Some("method"));
    }
    assert_eq!((b.hits(), s.hits()), (0, 0));
    p.stop().await;
}

#[tokio::test]
async fn a_listed_post_is_forwarded_with_its_body() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::Echo).await;
    let p = Proxy::start(
        quiet_route(b.url("/t"), s.url("/query"), "streaming").methods(&["GET", "POST"]),
    )
    .await;
    let body = r#"{"filter":{"status":"open"},"limit":10}"#;
    let r = post(&p.url("/v1/orders/search"), body).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    let e = echoed(&r);
    assert_eq!(e["method"], "POST");
    assert_eq!(e["uri"], "/query/search");
    assert_eq!(e["body"], body);
    assert_eq!(
        echoed_header(&e, "content-length"),
        vec![body.len().to_string()]
    );
    assert_eq!((b.hits(), s.hits()), (0, 1));
    p.stop().await;
}

#[tokio::test]
async fn absolute_form_targets_and_foreign_hosts_still_go_to_the_configured_backend() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(quiet_route(b.url("/tables/orders"), s.url("/s"), "batch")).await;

    let answer = raw(
        p.listen,
        b"GET http://evil.example/v1/orders/1?a=b HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(b.hits(), 1);
    let seen = b.last().expect("batch saw the read");
    assert_eq!(seen.uri, "/tables/orders/1?a=b");
    assert_eq!(seen.headers["host"], b.addr.to_string().as_str());

    let r = get_with(&p.url("/v1/orders/2"), &[("host", "evil.example")]).await;
    assert_eq!(r.status, 200);
    let e = r.json();
    assert_eq!(e["uri"], "/tables/orders/2");
    assert_eq!(
        echoed_header(&e, "host"),
        vec![b.addr.to_string()],
        "Host upstream is the backend's authority"
    );
    assert_eq!(b.hits(), 2);
    assert_eq!(s.hits(), 0);

    // An absolute-form target for a path with no route is still a 404.
    let answer = raw(
        p.listen,
        b"GET http://127.0.0.1:1/elsewhere HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert_eq!(b.hits(), 2);
    p.stop().await;
}

// ---------------------------------------------------------------- headers

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded_upstream() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "batch")).await;
    let answer = raw(
        p.listen,
        b"GET /v1/orders/h HTTP/1.1\r\n\
          Host: consumer.local\r\n\
          Connection: close, x-secret\r\n\
          X-Secret: s3cr3t\r\n\
          Keep-Alive: timeout=5\r\n\
          Upgrade: websocket\r\n\
          TE: trailers\r\n\
          Trailer: x-checksum\r\n\
          Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
          Proxy-Connection: keep-alive\r\n\
          X-Forwarded-For: 10.1.2.3\r\n\
          X-Customer-Id: 42\r\n\
          \r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = b.last().expect("batch saw the read");
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} was forwarded: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.headers["x-customer-id"], "42");
    assert_eq!(seen.headers["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    let forwarded = seen.headers["forwarded"].to_str().expect("ascii");
    assert!(
        forwarded.contains("for=127.0.0.1"),
        "forwarded: {forwarded}"
    );
    p.stop().await;
}

#[tokio::test]
async fn every_x_forwarded_for_line_is_kept_in_order() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "batch")).await;
    let answer = raw(
        p.listen,
        b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nX-Forwarded-For: 10.0.0.3\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = b.last().expect("batch saw the read");
    let xff: Vec<&str> = seen
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(xff.join(", "), "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1");
    p.stop().await;
}

#[tokio::test]
async fn forwarded_headers_are_set_when_the_consumer_sent_none() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "batch")).await;
    let e = echoed(&get(&p.url("/v1/orders/1")).await);
    assert_eq!(echoed_header(&e, "x-forwarded-for"), vec!["127.0.0.1"]);
    let fwd = echoed_header(&e, "forwarded");
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert!(
        fwd[0].contains("for=127.0.0.1") && fwd[0].contains("proto=http"),
        "{fwd:?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_from_the_backend_do_not_reach_the_consumer() {
    let b = Backend::start(Behaviour::custom(|_req| async {
        http::Response::builder()
            .header("connection", "x-backend-secret")
            .header("x-backend-secret", "internal")
            .header("keep-alive", "timeout=30")
            .header("proxy-authenticate", "Basic realm=\"upstream\"")
            .header("trailer", "x-checksum")
            .header("x-kept", "yes")
            .body(full_body("payload"))
            .expect("response")
    }))
    .await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "batch")).await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "payload");
    assert_eq!(r.header("x-kept"), Some("yes"));
    for gone in [
        "x-backend-secret",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
    ] {
        assert!(
            !r.headers.contains_key(gone),
            "{gone} reached the consumer: {:?}",
            r.headers
        );
    }
    if let Some(c) = r.header("connection") {
        assert!(!c.contains("x-backend-secret"), "connection: {c}");
    }
    p.stop().await;
}

#[tokio::test]
async fn cutover_headers_from_a_backend_are_replaced_by_this_cutovers() {
    // An upstream behind a cutover of its own answers with that one's headers.
    let s = Backend::start(Behaviour::custom(|_req| async {
        http::Response::builder()
            .header("x-cutover-served-by", "batch")
            .header("x-cutover-fallback", "timeout")
            .header("x-cutover-error", "timeout")
            .body(full_body("from streaming"))
            .expect("response")
    }))
    .await;
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming")).await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.text(), "from streaming");
    let served: Vec<_> = r.headers.get_all("x-cutover-served-by").iter().collect();
    assert_eq!(served, ["streaming"]);
    assert_eq!(
        r.header("x-cutover-fallback"),
        None,
        "no fallback happened here"
    );
    assert_eq!(
        r.header("x-cutover-error"),
        None,
        "this cutover made no error"
    );
    p.stop().await;
}

#[tokio::test]
async fn every_attempt_of_a_read_carries_one_request_id_and_traceparent_passes() {
    let s = Backend::start(Behaviour::Status(503)).await;
    let b = Backend::start(Behaviour::Echo).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming")).await;
    // None sent: cutover makes one, and both attempts (streaming, then the
    // fallback to batch) carry it.
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    let to_streaming = s.last().expect("streaming was asked");
    let to_batch = b.last().expect("batch was asked");
    let id = to_streaming.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(to_batch.headers["x-request-id"], id.as_str());
    // Sent by the consumer: passed through as it is, with traceparent.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    get_with(
        &p.url("/v1/orders/2"),
        &[("x-request-id", "consumer-42"), ("traceparent", trace)],
    )
    .await;
    for seen in [s.last().expect("streaming"), b.last().expect("batch")] {
        assert_eq!(seen.headers["x-request-id"], "consumer-42");
        assert_eq!(seen.headers["traceparent"], trace);
    }
    p.stop().await;
}

// ---------------------------------------------------------------- HTTP/2

#[tokio::test]
async fn http2_prior_knowledge_from_the_consumer_is_served() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new()
            .route(route("orders", "/v1/orders", b.url("/t"), s.url("/s")).mode("streaming"))
            .route(route("echo", "/v1/echo", b.url("/t"), s.url("/s")).mode("batch")),
    )
    .await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let fetch = |path: &str| {
        let req = Request::get(p.url(path))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let client = client.clone();
        async move {
            within(async move {
                let resp = client.request(req).await.expect("h2 read answered");
                let (parts, body) = resp.into_parts();
                (parts, body.collect().await.expect("body").to_bytes())
            })
            .await
        }
    };
    let (head, body) = fetch("/v1/orders/1").await;
    assert_eq!(head.version, Version::HTTP_2);
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["x-cutover-served-by"], "streaming");
    assert_eq!(body, "from streaming");

    let (head, body) = fetch("/v1/echo/2?x=1").await;
    assert_eq!(head.version, Version::HTTP_2);
    assert_eq!(head.headers["x-cutover-served-by"], "batch");
    let e: serde_json::Value = serde_json::from_slice(&body).expect("echo JSON");
    assert_eq!(e["uri"], "/t/2?x=1");
    assert_eq!(echoed_header(&e, "host"), vec![b.addr.to_string()]);
    assert_eq!((b.hits(), s.hits()), (1, 1));
    p.stop().await;
}

// ---------------------------------------------------------------- bad requests

async fn post_route() -> (Backend, Backend, Proxy) {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::Echo).await;
    let p =
        Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming").methods(&["GET", "POST"]))
            .await;
    (b, s, p)
}

#[tokio::test]
async fn oversized_headers_are_refused_without_reaching_a_backend() {
    let (b, s, p) = post_route().await;
    let mut req = b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 100 * 1024));
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let answer = raw(p.listen, &req).await;
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 400"),
        "{answer:.200}"
    );
    assert_eq!((b.hits(), s.hits()), (0, 0));
    p.stop().await;
}

/// Both framings at once is the request-smuggling vector, and a repeated
/// `Content-Length` its cousin. hyper hides both from the service (it drops
/// the length, or keeps one), so cutover follows the raw heads itself
/// (`conn::framing`) and refuses them as nginx does: 400, connection closed,
/// nothing behind them reaches a backend. A good read pipelined before the
/// bad one is still answered.
#[tokio::test]
async fn ambiguous_framing_is_400_and_closed_and_never_smuggles() {
    let (b, s, p) = post_route().await;
    let good = "GET /v1/orders/ok HTTP/1.1\r\nHost: x\r\n\r\n";
    for bad in [
        "POST /v1/orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 45\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /v1/orders/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 45\r\n\r\n0\r\n\r\n",
        "POST /v1/orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ] {
        let req = format!("{good}{bad}GET /v1/orders/smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = raw(p.listen, req.as_bytes()).await;
        let lower = answer.to_ascii_lowercase();
        assert!(answer.starts_with("HTTP/1.1 200"), "{bad:?}: {answer}");
        assert_eq!(lower.matches("http/1.1 ").count(), 2, "{bad:?}: {answer}");
        let refusal = &lower[lower.rfind("http/1.1 ").unwrap_or(0)..];
        assert!(refusal.starts_with("http/1.1 400"), "{bad:?}: {answer}");
        assert!(refusal.contains("connection: close"), "{bad:?}: {answer}");
        assert!(
            refusal.contains("x-cutover-error: bad_request"),
            "{bad:?}: {answer}"
        );
    }
    let seen: Vec<_> = b
        .seen
        .lock()
        .unwrap()
        .iter()
        .chain(s.seen.lock().unwrap().iter())
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(seen.len(), 3, "only the good reads arrived: {seen:?}");
    assert!(seen.iter().all(|u| u.ends_with("/ok")), "{seen:?}");
    p.stop().await;
}

#[tokio::test]
async fn a_garbage_request_line_is_400() {
    let (b, s, p) = post_route().await;
    for req in [
        &b"BLAH\r\n\r\n"[..],
        b"GET /v1/orders/\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        // RFC 9112 3.2: no Host, or two that differ.
        b"GET /v1/orders/1 HTTP/1.1\r\n\r\n",
        b"GET /v1/orders/1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let answer = raw(p.listen, req).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{req:?}: {answer}");
    }
    // HTTP/1.0 needs none; the same Host twice is one Host.
    for req in [
        &b"GET /v1/orders/1 HTTP/1.0\r\n\r\n"[..],
        b"GET /v1/orders/1 HTTP/1.1\r\nHost: a\r\nHost: a\r\nConnection: close\r\n\r\n",
    ] {
        let answer = raw(p.listen, req).await;
        assert!(answer.starts_with("HTTP/1."), "{req:?}: {answer}");
        assert!(!answer.contains(" 400 "), "{req:?}: {answer}");
    }
    assert_eq!(b.hits() + s.hits(), 2, "only the two good reads arrived");
    p.stop().await;
}

// ---------------------------------------------------------------- limits

/// Sends `bytes` and waits for the peer to close; how long that took.
async fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) -> (Duration, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within(async {
        let started = std::time::Instant::now();
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        (
            started.elapsed(),
            String::from_utf8_lossy(&out).into_owned(),
        )
    })
    .await
}

#[tokio::test]
async fn a_stalled_head_or_body_is_cut_on_both_listeners() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::Echo).await;
    let p = Proxy::start(
        Config::new()
            .limits(json!({ "head_timeout": "300ms", "body_timeout": "300ms" }))
            .route(
                Route::orders(b.url("/t"), s.url("/s"))
                    .mode("batch")
                    .methods(&["GET", "POST"])
                    .quiet(),
            ),
    )
    .await;
    // A body that stops after 10 of its 1000 bytes: 408, never forwarded.
    let (took, answer) = closed_after(
        p.listen,
        b"POST /v1/orders/q HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_lowercase().contains("x-cutover-error: timeout"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A head that never ends, on the consumer port and on the admin port.
    for addr in [p.listen, p.admin] {
        let (took, _) =
            closed_after(addr, b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\nX-Slow:").await;
        assert!(took < Duration::from_secs(5), "{addr}: held {took:?}");
    }
    assert_eq!((b.hits(), s.hits()), (0, 0));
    p.stop().await;
}

// ---------------------------------------------------------------- request bodies

#[tokio::test]
async fn a_chunked_get_body_past_max_buffered_body_arrives_whole() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::Echo).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "batch")).await;
    // 96 KiB of chunks: past the 64 KiB cutover buffers, so it streams.
    let chunk = vec![b'q'; 8 * 1024];
    let mut req = b"GET /v1/orders/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..12 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(p.listen, &req).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let seen = b.last().expect("batch was asked");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.body.len(), 96 * 1024, "the body arrived whole");
    assert!(seen.body.iter().all(|&c| c == b'q'));
    p.stop().await;
}

#[tokio::test]
async fn a_body_past_max_buffered_body_reaches_streaming_once_and_never_falls_back() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let config = Config::new()
        .max_buffered_body(1024)
        .route(quiet_route(b.url("/t"), s.url("/s"), "streaming").methods(&["GET", "POST"]));
    let p = Proxy::start(config).await;
    let body: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let r = post(&p.url("/v1/orders/bulk"), body.clone()).await;
    // Not buffered, so not resendable: streaming's 503 stands (SPEC: a
    // request body is buffered only where a retry may need it, bounded).
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(r.header("x-cutover-fallback"), None);
    assert_eq!(s.hits(), 1);
    assert_eq!(
        s.last().expect("streaming saw it").body,
        body,
        "the whole body streamed through"
    );
    assert_eq!(b.hits(), 0);
    let m = p.scrape().await;
    assert_eq!(
        m.value("cutover_fallbacks_total", &[("reason", "5xx")]),
        0.0
    );
    assert_eq!(
        m.value(
            "cutover_upstream_requests_total",
            &[("side", "streaming"), ("result", "5xx")]
        ),
        1.0
    );
    p.stop().await;
}

#[tokio::test]
async fn a_small_body_is_resent_intact_to_batch_on_fallback() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p =
        Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming").methods(&["GET", "POST"]))
            .await;
    let body = r#"{"ids":[1,2,3],"note":"résumé"}"#;
    let r = post(&p.url("/v1/orders/search?page=2"), body).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    let e = echoed(&r);
    assert_eq!(e["method"], "POST");
    assert_eq!(e["uri"], "/t/search?page=2");
    assert_eq!(e["body"], body);
    assert_eq!(s.last().expect("streaming saw it").body, body.as_bytes());
    assert_eq!((b.hits(), s.hits()), (1, 1));
    p.stop().await;
}

// ---------------------------------------------------------------- admin

#[tokio::test]
async fn admin_endpoints_answer_on_admin_only() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming")).await;
    for path in ["/metrics", "/healthz", "/readyz", "/status"] {
        let r = get(&p.url(path)).await;
        assert_eq!(r.status, 404, "{path} on the listen port");
        assert!(r.text().contains("no route"), "{path}: {}", r.text());
        assert!(!r.text().contains("cutover_"), "{path} leaked metrics");
    }
    assert_eq!((b.hits(), s.hits()), (0, 0));

    let r = get(&p.admin_url("/healthz")).await;
    assert_eq!(r.status, 200);
    let r = get(&p.admin_url("/readyz")).await;
    assert_eq!(r.status, 200);
    let r = get(&p.admin_url("/metrics")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    assert!(r.text().contains("cutover_config_generation"));

    for _ in 0..2 {
        assert_eq!(get(&p.url("/v1/orders/1")).await.status, 200);
    }
    let st = p.status_json().await;
    assert_eq!(st["config"]["generation"], 1);
    assert_eq!(st["consumer"], "test");
    let routes = st["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 1);
    let r = &routes[0];
    assert_eq!(r["name"], "orders");
    assert_eq!(r["configured_mode"], "streaming");
    assert_eq!(r["effective_mode"], "streaming");
    assert_eq!(r["circuit"], "closed");
    assert_eq!(r["reads"]["streaming"], 2);
    assert_eq!(r["reads"]["batch"], 0);
    p.stop().await;
}

// ---------------------------------------------------------------- metrics

#[tokio::test]
async fn metrics_are_scraped_with_the_right_values() {
    let hours_3 = Duration::from_secs(3 * 3600);
    let b = Backend::start(Behaviour::aged("from batch", hours_3)).await;
    let s = Backend::start(Behaviour::aged("from streaming", Duration::from_secs(5))).await;
    let p = Proxy::start(
        quiet_route(b.url("/t"), s.url("/s"), "streaming")
            .fallback(json!({"circuit": {"failures": 5, "cooldown": "30s"}})),
    )
    .await;
    for _ in 0..3 {
        let r = get(&p.url("/v1/orders/1")).await;
        assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    }
    s.set(Behaviour::Status(503));
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    assert_eq!(r.text(), "from batch");

    let now = now_secs() as f64;
    let m = p.scrape().await;
    let v = |name: &str, labels: &[(&str, &str)]| {
        m.get(name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} missing from\n{}", m.text))
    };
    let route = [("consumer", "test"), ("route", "orders")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = route.to_vec();
        l.extend_from_slice(extra);
        l
    };

    assert_eq!(
        v(
            "cutover_requests_total",
            &with(&[("side", "streaming"), ("code_class", "2xx")])
        ),
        3.0
    );
    assert_eq!(
        v(
            "cutover_requests_total",
            &with(&[("side", "batch"), ("code_class", "2xx")])
        ),
        1.0
    );
    assert_eq!(
        v(
            "cutover_requests_total",
            &with(&[("side", "streaming"), ("code_class", "5xx")])
        ),
        0.0
    );
    assert_eq!(
        v(
            "cutover_upstream_requests_total",
            &with(&[("side", "streaming"), ("result", "ok")])
        ),
        3.0
    );
    assert_eq!(
        v(
            "cutover_upstream_requests_total",
            &with(&[("side", "streaming"), ("result", "5xx")])
        ),
        1.0
    );
    assert_eq!(
        v(
            "cutover_upstream_requests_total",
            &with(&[("side", "batch"), ("result", "ok")])
        ),
        1.0
    );
    assert_eq!(
        v("cutover_fallbacks_total", &with(&[("reason", "5xx")])),
        1.0
    );
    assert_eq!(
        v("cutover_fallbacks_total", &with(&[("reason", "connect")])),
        0.0
    );

    let wm_batch = v(
        "cutover_data_watermark_timestamp_seconds",
        &with(&[("side", "batch")]),
    );
    let wm_streaming = v(
        "cutover_data_watermark_timestamp_seconds",
        &with(&[("side", "streaming")]),
    );
    assert!(
        (wm_batch - (now - 10_800.0)).abs() < 5.0,
        "batch watermark {wm_batch}, now {now}"
    );
    assert!(
        (wm_streaming - (now - 5.0)).abs() < 5.0,
        "streaming watermark {wm_streaming}, now {now}"
    );
    let age_batch = v("cutover_data_age_seconds", &with(&[("side", "batch")]));
    let age_streaming = v("cutover_data_age_seconds", &with(&[("side", "streaming")]));
    assert!(
        (10_795.0..10_810.0).contains(&age_batch),
        "batch age {age_batch}"
    );
    assert!(
        (4.0..15.0).contains(&age_streaming),
        "streaming age {age_streaming}"
    );
    let delta = v("cutover_freshness_delta_seconds", &route);
    assert!(
        (delta - 10_795.0).abs() < 3.0,
        "freshness delta {delta}: positive, streaming fresher"
    );

    let er_streaming = v("cutover_error_ratio", &with(&[("side", "streaming")]));
    let er_batch = v("cutover_error_ratio", &with(&[("side", "batch")]));
    let er_delta = v("cutover_error_ratio_delta", &route);
    assert!(
        (er_streaming - 0.25).abs() < 1e-9,
        "streaming error ratio {er_streaming}"
    );
    assert_eq!(er_batch, 0.0);
    assert!(
        (er_delta - 0.25).abs() < 1e-9,
        "error ratio delta {er_delta}"
    );

    assert_eq!(
        v("cutover_route_mode", &with(&[("mode", "streaming")])),
        1.0
    );
    for mode in ["batch", "shadow", "canary", "streaming_only"] {
        assert_eq!(
            m.value("cutover_route_mode", &with(&[("mode", mode)])),
            0.0,
            "{mode}"
        );
    }
    assert_eq!(v("cutover_circuit_open", &route), 0.0);
    assert_eq!(v("cutover_config_generation", &[("consumer", "test")]), 1.0);

    // Histograms: buckets, sum and count per side.
    let count = v(
        "cutover_request_duration_seconds_count",
        &with(&[("side", "streaming")]),
    );
    assert_eq!(count, 3.0);
    assert_eq!(
        v(
            "cutover_request_duration_seconds_count",
            &with(&[("side", "batch")])
        ),
        1.0
    );
    let inf = v(
        "cutover_request_duration_seconds_bucket",
        &with(&[("side", "streaming"), ("le", "+Inf")]),
    );
    assert_eq!(inf, 3.0);
    let buckets = m
        .samples()
        .filter(|(n, l, _)| {
            *n == "cutover_request_duration_seconds_bucket"
                && l.iter().any(|(k, v)| k == "side" && v == "streaming")
        })
        .count();
    assert!(
        buckets >= 10,
        "{buckets} buckets for cutover_request_duration_seconds"
    );
    assert!(
        m.get(
            "cutover_upstream_duration_seconds_count",
            &with(&[("side", "batch")])
        )
        .is_some()
    );

    // Every series carries consumer, and route and dataset but the
    // process-wide ones (SPEC 1.1: `dataset` on every per-route series).
    const PROCESS_WIDE: [&str; 10] = [
        "cutover_connections_open",
        "cutover_connections_refused_total",
        "cutover_reads_inflight",
        "cutover_reads_shed_total",
        "cutover_config_reloads_total",
        "cutover_config_generation",
        "cutover_config_last_reload_successful",
        "cutover_config_last_reload_success_timestamp_seconds",
        "cutover_build_info",
        "cutover_consumer_info",
    ];
    for (name, labels, _) in m.samples().filter(|(n, _, _)| n.starts_with("cutover_")) {
        let has = |k: &str| labels.iter().any(|(lk, _)| lk == k);
        assert!(has("consumer"), "{name} {labels:?} lacks consumer");
        let process_wide = PROCESS_WIDE.contains(&name);
        assert_eq!(
            has("route"),
            !process_wide,
            "{name} {labels:?}: route label"
        );
        assert_eq!(
            has("dataset"),
            !process_wide,
            "{name} {labels:?}: dataset label"
        );
    }
    assert_eq!(
        m.get(
            "cutover_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    p.stop().await;
}

// ---------------------------------------------------------------- probe

#[tokio::test]
async fn an_idle_side_is_probed_and_its_freshness_reported() {
    let b = Backend::start(Behaviour::aged("from batch", Duration::from_secs(3 * 3600))).await;
    let s = Backend::start(Behaviour::aged("from streaming", Duration::from_secs(5))).await;
    let p = Proxy::start(
        Route::orders(b.url("/t"), s.url("/s?format=json"))
            .mode("batch")
            .freshness(json!({"probe_interval": "1s"})),
    )
    .await;
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    wait_until("streaming is probed", || s.hits() >= 1).await;
    let probe = s.seen.lock().unwrap()[0].clone();
    assert_eq!(probe.method, "HEAD");
    assert_eq!(
        probe.uri, "/s?format=json",
        "a probe reads the side's base URL"
    );
    assert_eq!(probe.headers["user-agent"], "cutover-probe");

    // The backend counts the probe before answering it: wait for the answer.
    wait_until_async("the probe's watermark is recorded", || async {
        let m = p.scrape().await;
        m.value(
            "cutover_data_watermark_timestamp_seconds",
            &[("side", "streaming")],
        ) > 0.0
    })
    .await;
    let now = now_secs() as f64;
    let m = p.scrape().await;
    let wm = m.value(
        "cutover_data_watermark_timestamp_seconds",
        &[("side", "streaming")],
    );
    assert!(
        (wm - (now - 5.0)).abs() < 5.0,
        "streaming watermark {wm}, now {now}"
    );
    let age = m.value("cutover_data_age_seconds", &[("side", "streaming")]);
    assert!((4.0..15.0).contains(&age), "streaming age {age}");
    let delta = m.value("cutover_freshness_delta_seconds", &[]);
    assert!((delta - 10_795.0).abs() < 5.0, "freshness delta {delta}");
    assert!(
        m.value(
            "cutover_upstream_requests_total",
            &[("side", "streaming"), ("result", "ok")]
        ) >= 1.0
    );
    // The probe is not a read: nothing was served by streaming.
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("side", "streaming"), ("code_class", "2xx")]
        ),
        0.0
    );
    p.stop().await;
}

#[tokio::test]
async fn streaming_only_never_touches_batch_not_even_with_a_probe() {
    let b = Backend::start(Behaviour::aged("from batch", Duration::from_secs(60))).await;
    let s = Backend::start(Behaviour::aged("from streaming", Duration::from_secs(5))).await;
    let p = Proxy::start(
        Route::orders(b.url("/t"), s.url("/s"))
            .mode("streaming_only")
            .freshness(json!({"probe_interval": "1s"})),
    )
    .await;
    // Streaming idles, so the probe reads it; two probes prove the probe
    // loop looked at batch at least once too.
    wait_until("streaming is probed twice", || s.hits() >= 2).await;
    for _ in 0..3 {
        let r = get(&p.url("/v1/orders/1")).await;
        assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    }
    assert_eq!(b.hits(), 0, "nothing may reach batch in streaming_only");
    let m = p.scrape().await;
    assert_eq!(
        m.value(
            "cutover_upstream_requests_total",
            &[("side", "batch"), ("result", "ok")]
        ),
        0.0
    );
    p.stop().await;
}

#[tokio::test]
async fn probe_interval_off_sends_no_probes() {
    let b = Backend::start(Behaviour::aged("from batch", Duration::from_secs(60))).await;
    let s = Backend::start(Behaviour::aged("from streaming", Duration::from_secs(5))).await;
    let p = Proxy::start(
        Route::orders(b.url("/t"), s.url("/s"))
            .mode("batch")
            .no_probe(),
    )
    .await;
    // Proving an absence needs a wait: long enough for two probe ticks.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!((b.hits(), s.hits()), (0, 0));
    let m = p.scrape().await;
    // Never seen is exported as unknown (NaN), not as a reassuring 0.
    for name in [
        "cutover_data_watermark_timestamp_seconds",
        "cutover_data_age_seconds",
    ] {
        let v = m
            .get(name, &[("side", "streaming")])
            .expect("series exported");
        assert!(v.is_nan(), "{name} = {v}");
    }
    assert!(
        m.get("cutover_freshness_delta_seconds", &[])
            .expect("delta exported")
            .is_nan()
    );
    p.stop().await;
}

// ---------------------------------------------------------------- upstream connection reuse

#[tokio::test]
async fn keep_alive_upstream_connections_are_reused() {
    let b = Backend::start(Behaviour::aged("from batch", Duration::from_secs(60))).await;
    let s = Backend::start(Behaviour::aged("from streaming", Duration::from_secs(5))).await;
    let p = Proxy::start(
        Route::orders(b.url("/t"), s.url("/s"))
            .mode("streaming")
            .quiet(),
    )
    .await;
    for _ in 0..200 {
        let a = get(&p.url("/v1/orders")).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    }
    // Sequential reads: one upstream connection serves them all (>= 99 % reuse).
    assert_eq!(s.hits(), 200);
    assert!(
        s.connections() <= 2,
        "{} connections for 200 reads",
        s.connections()
    );
    assert_eq!(b.hits(), 0);
    p.stop().await;
}

#[tokio::test]
async fn an_upstream_that_closes_idle_connections_costs_no_read() {
    // Answers one read per connection, then closes it without saying so: the
    // pooled connection is dead by the next read, which must still succeed.
    let s = Backend::start(Behaviour::raw(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ))
    .await;
    let b = Backend::start(Behaviour::aged("from batch", Duration::from_secs(60))).await;
    let p = Proxy::start(
        Route::orders(b.url("/t"), s.url("/s"))
            .mode("streaming_only")
            .no_probe(),
    )
    .await;
    for i in 0..50 {
        let a = get(&p.url("/v1/orders")).await;
        assert_eq!((i, a.status, a.text()), (i, 200, "ok".to_owned()));
    }
    assert_eq!(s.hits(), 50);
    p.stop().await;
}
