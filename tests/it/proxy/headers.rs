//! Header hygiene both ways: hop-by-hop headers dropped, forwarded
//! headers kept or set, a backend's `x-cutover-*` replaced, one request id
//! per read.

use super::{echoed, echoed_header, quiet_route};
use crate::support::*;

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
        "x-secret",
        "keep-alive",
        "upgrade",
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
    // TE is this hop's, but `trailers` is said again on the next one (an
    // origin may send trailers only when asked), with its Connection option.
    assert_eq!(seen.headers["te"], "trailers");
    assert_eq!(seen.headers["connection"], "te");
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
