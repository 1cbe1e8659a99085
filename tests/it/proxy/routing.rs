//! Routing: the longest prefix wins and is replaced by the side's path;
//! what no route or an unlisted method meets; targets in absolute form.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::{echoed, echoed_header, quiet_route, route};
use crate::support::*;

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
    assert_eq!(m.route("orders").requests("batch", "2xx"), 3.0);
    assert_eq!(m.route("wide").requests("batch", "2xx"), 2.0);
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
