//! cutover's own HTTP/1.1 client against upstreams that frame their answers
//! each way RFC 9112 allows (chunked with extensions and trailers, until
//! close, interim 1xx answers, HEAD, bodies larger than a read) and against
//! upstreams that get it wrong. Real sockets on 127.0.0.1:0, the real proxy,
//! fake backends only.

use crate::support::*;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

/// Streaming serves every read; nothing else reaches the backends.
fn streaming_only(batch: &Backend, streaming: &str) -> Route {
    Route::orders(batch.url("/t"), streaming)
        .mode("streaming_only")
        .no_probe()
}

/// A streaming upstream that answers each connection's first request with
/// the raw bytes `reply` and closes it, a batch backend, and the proxy with
/// streaming serving every read.
async fn behind_raw(reply: &'static [u8]) -> (Backend, Backend, Proxy) {
    let streaming = Backend::start(Behaviour::raw(reply)).await;
    let batch = Backend::start(batch_ok()).await;
    let proxy = Proxy::start(streaming_only(&batch, &streaming.url("/s"))).await;
    (streaming, batch, proxy)
}

fn batch_ok() -> Behaviour {
    Behaviour::ok("from batch")
}

#[tokio::test]
async fn chunked_answers_arrive_whole_and_keep_their_connection() {
    let s = Backend::start(Behaviour::custom(|_req| async {
        let chunks = ["{\"data\":", "[1,2,", "3]}"].map(|c| Bytes::from_static(c.as_bytes()));
        Response::new(Chunks(chunks.into()).boxed())
    }))
    .await;
    let b = Backend::start(batch_ok()).await;
    let p = Proxy::start(streaming_only(&b, &s.url("/s"))).await;
    for i in 0..50 {
        let a = get(&p.url("/v1/orders")).await;
        assert_eq!(
            (i, a.status, a.text()),
            (i, 200, "{\"data\":[1,2,3]}".to_owned())
        );
    }
    assert_eq!(s.hits(), 50);
    assert!(
        s.connections() <= 2,
        "{} connections for 50 chunked reads",
        s.connections()
    );
    p.stop().await;
}

#[tokio::test]
async fn chunk_extensions_and_trailers_are_read_past() {
    let (_s, _b, p) = behind_raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n4\r\n: 1}\r\n0\r\nx-checksum: 9\r\n\r\n").await;
    for _ in 0..3 {
        let a = get(&p.url("/v1/orders")).await;
        assert_eq!((a.status, a.text()), (200, "{\"a\": 1}".to_owned()));
    }
    p.stop().await;
}

#[tokio::test]
async fn a_body_delimited_by_close_is_passed_through_whole() {
    let (s, _b, p) = behind_raw(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"until\":\"close\"}",
    )
    .await;
    for _ in 0..3 {
        let a = get(&p.url("/v1/orders")).await;
        assert_eq!(
            (a.status, a.text()),
            (200, "{\"until\":\"close\"}".to_owned())
        );
        assert_eq!(a.header("content-type"), Some("application/json"));
    }
    assert_eq!(s.hits(), 3);
    p.stop().await;
}

#[tokio::test]
async fn interim_1xx_answers_are_skipped() {
    let (_s, _b, p) = behind_raw(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let a = get(&p.url("/v1/orders")).await;
    assert_eq!((a.status, a.text()), (200, "ok".to_owned()));
    assert_eq!(a.header("link"), None);
    p.stop().await;
}

#[tokio::test]
async fn head_reads_leave_the_connection_ready_for_the_next_read() {
    let s = Backend::start(Behaviour::ok("{\"rows\":3}")).await;
    let b = Backend::start(batch_ok()).await;
    let p = Proxy::start(streaming_only(&b, &s.url("/s"))).await;
    for _ in 0..10 {
        let head = send(
            Request::head(p.url("/v1/orders"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("10"));
        assert!(head.body.is_empty());
        // Had the HEAD answer been taken to have a body, this read would
        // hang or get the wrong bytes.
        let a = get(&p.url("/v1/orders")).await;
        assert_eq!((a.status, a.text()), (200, "{\"rows\":3}".to_owned()));
    }
    assert_eq!(s.hits(), 20);
    assert!(s.connections() <= 2, "{} connections", s.connections());
    p.stop().await;
}

#[tokio::test]
async fn large_answers_arrive_byte_for_byte_over_reused_connections() {
    let big: Bytes = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let served = big.clone();
    let s = Backend::start(Behaviour::custom(move |_req| {
        let body = served.clone();
        async move { Response::new(full_body(body)) }
    }))
    .await;
    let b = Backend::start(batch_ok()).await;
    let p = Proxy::start(streaming_only(&b, &s.url("/s"))).await;
    for _ in 0..5 {
        let a = get(&p.url("/v1/orders")).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body.len(), big.len());
        assert!(a.body == big, "body differs");
    }
    assert!(s.connections() <= 2, "{} connections", s.connections());
    p.stop().await;
}

#[tokio::test]
async fn a_malformed_streaming_answer_falls_back_to_batch() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nhi",
        b"HTTP/1.1 2000 Very OK\r\n\r\n",
        b"\x00\x01 not http\r\n\r\n",
    ] {
        let reply: &'static [u8] = Box::leak(reply.to_vec().into_boxed_slice());
        let s = Backend::start(Behaviour::raw(reply)).await;
        let b = Backend::start(batch_ok()).await;
        let p = Proxy::start(
            Route::orders(b.url("/t"), s.url("/s"))
                .mode("streaming")
                .quiet(),
        )
        .await;
        let a = get(&p.url("/v1/orders")).await;
        let shown = String::from_utf8_lossy(reply);
        assert_eq!(
            (a.status, a.text()),
            (200, "from batch".to_owned()),
            "{shown}"
        );
        assert_eq!(a.header("x-cutover-served-by"), Some("batch"), "{shown}");
        assert_eq!(a.header("x-cutover-fallback"), Some("connect"), "{shown}");
        p.stop().await;
    }
}

#[tokio::test]
async fn a_truncated_body_cuts_the_consumer_off_and_cutover_carries_on() {
    let (_s, _b, p) =
        behind_raw(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this much").await;
    for _ in 0..3 {
        // The head went out before the body broke: the consumer must see a
        // broken answer, never a short one that looks whole.
        let r = try_get(&p.url("/v1/orders")).await;
        assert!(r.is_err(), "a truncated body must not look whole: {r:?}");
    }
    let health = get(&p.admin_url("/healthz")).await;
    assert_eq!(health.status, 200);
    p.stop().await;
}

#[tokio::test]
async fn bytes_after_the_end_of_an_answer_retire_the_connection() {
    // Two answers in one write: the second was never asked for. The first
    // read is served; the connection is not trusted with another read.
    let (s, _b, p) = behind_raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale").await;
    for _ in 0..5 {
        let a = get(&p.url("/v1/orders")).await;
        assert_eq!((a.status, a.text()), (200, "ok".to_owned()));
    }
    assert_eq!(s.hits(), 5);
    p.stop().await;
}

#[tokio::test]
async fn request_bodies_go_out_with_their_length_and_no_consumer_framing() {
    let s = Backend::start(Behaviour::Echo).await;
    let b = Backend::start(batch_ok()).await;
    let p = Proxy::start(streaming_only(&b, &s.url("/s")).methods(&["GET", "POST"])).await;
    let big = "x".repeat(40_000);
    for body in ["{\"q\":1}", big.as_str(), ""] {
        let a = post(&p.url("/v1/orders"), body.to_owned()).await;
        assert_eq!(a.status, 200);
        let seen = s.last().expect("streaming saw the read");
        assert_eq!(seen.body, body.as_bytes());
        assert_eq!(
            seen.headers
                .get("content-length")
                .and_then(|v| v.to_str().ok()),
            Some(body.len().to_string().as_str())
        );
        assert!(!seen.headers.contains_key("transfer-encoding"));
    }
    p.stop().await;
}

/// A raw keep-alive upstream that answers `ok` to every request. With
/// `answers: Some(n)` a connection answers n requests, then reads one more
/// and closes without a word: a pooled connection the upstream dropped
/// while cutover thought it idle. `hits()` counts request heads read,
/// answered or not; `open_connections()` the connections open right now.
async fn raw_keep_alive(answers: Option<usize>) -> Backend {
    Backend::start(Behaviour::raw_keep_alive(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        answers,
    ))
    .await
}

#[tokio::test]
async fn a_get_that_meets_a_dropped_pooled_connection_is_sent_again() {
    let s = raw_keep_alive(Some(1)).await;
    let b = Backend::start(batch_ok()).await;
    let p = Proxy::start(streaming_only(&b, &s.url("/s"))).await;
    for i in 0..10 {
        let a = get(&p.url("/v1/orders")).await;
        assert_eq!((i, a.status, a.text()), (i, 200, "ok".to_owned()));
    }
    // Every read after the first met a dropped connection once.
    assert_eq!(s.hits(), 19);
    p.stop().await;
}

#[tokio::test]
async fn a_post_that_meets_a_dropped_pooled_connection_is_not_sent_again() {
    let s = raw_keep_alive(Some(1)).await;
    let b = Backend::start(batch_ok()).await;
    let p = Proxy::start(streaming_only(&b, &s.url("/s")).methods(&["GET", "POST"])).await;
    let first = post(&p.url("/v1/orders"), "{}").await;
    assert_eq!((first.status, first.text()), (200, "ok".to_owned()));
    // The upstream may have acted on it: a POST is never sent twice.
    let second = post(&p.url("/v1/orders"), "{}").await;
    assert_eq!(second.status, 502);
    assert_eq!(s.hits(), 2);
    p.stop().await;
}

#[tokio::test]
async fn a_reload_that_drops_an_upstream_closes_its_pooled_connections() {
    let old_upstream = raw_keep_alive(None).await;
    let old = old_upstream.addr;
    let new_upstream = raw_keep_alive(None).await;
    let new = new_upstream.addr;
    let b = Backend::start(batch_ok()).await;
    let p = Proxy::start(streaming_only(&b, &old_upstream.url("/s"))).await;
    let a = get(&p.url("/v1/orders")).await;
    assert_eq!((a.status, a.text()), (200, "ok".to_owned()));
    assert_eq!(
        old_upstream.open_connections(),
        1,
        "the read's connection stays pooled"
    );
    let generation = p.generation();
    let text = std::fs::read_to_string(&p.path).expect("read config");
    std::fs::write(&p.path, text.replace(&old.to_string(), &new.to_string()))
        .expect("write config");
    wait_until("the edit is applied", || p.generation() > generation).await;
    let a = get(&p.url("/v1/orders")).await;
    assert_eq!((a.status, a.text()), (200, "ok".to_owned()));
    // The pool housekeeping (every 5 s) forgets the pool nobody uses and
    // closes its idle connection.
    wait_until("the old upstream's connection is closed", || {
        old_upstream.open_connections() == 0
    })
    .await;
    p.stop().await;
}
