//! What a consumer may send: HTTP/2 with prior knowledge, requests that
//! are refused (oversized, ambiguous, garbage), heads and bodies that stall,
//! and request bodies past or within `max_buffered_body`.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use super::{echoed, echoed_header, quiet_route, route};
use crate::support::*;

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
async fn a_body_kept_nowhere_reaches_streaming_once_and_never_falls_back() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    // Past max_buffered_body with spooling off (batch_transparent.rs has
    // the spooled case, which does fall back).
    let config = Config::new()
        .max_buffered_body(1024)
        .max_spooled_body(0)
        .route(quiet_route(b.url("/t"), s.url("/s"), "streaming").methods(&["GET", "POST"]));
    let p = Proxy::start(config).await;
    let body: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let r = post(&p.url("/v1/orders/bulk"), body.clone()).await;
    // Neither buffered nor spooled, so not resendable: streaming's 503
    // stands (SPEC: a request body is buffered only where a retry may need
    // it, bounded).
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
    assert_eq!(m.fallbacks("5xx"), 0.0);
    assert_eq!(m.upstream("streaming", "5xx"), 1.0);
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
