//! SPEC 1.2 "Batch mode is transparent": a slow batch answer is not cut at
//! streaming's timeout, request targets an origin takes are forwarded as
//! sent, trailers reach a consumer that asked for them, and a request body
//! past `max_buffered_body` can still be sent twice (spooled to a file).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn route(batch: &Backend, streaming: &Backend, mode: &str) -> Route {
    Route::orders(batch.url("/t"), streaming.url("/s"))
        .mode(mode)
        .quiet()
}

#[tokio::test]
async fn a_slow_batch_answer_is_served_in_batch_and_shadow_mode() {
    // Past streaming's 2 s default, within batch's 60 s one (nginx's).
    let b = Backend::start(Behaviour::Slow(Duration::from_millis(2500))).await;
    let s = Backend::start(Behaviour::ok("streaming")).await;
    for mode in ["batch", "shadow"] {
        let p = Proxy::start(route(&b, &s, mode)).await;
        let r = get(&p.url("/v1/orders/q")).await;
        assert_eq!((r.status, r.text()), (200, "slow\n".to_owned()), "{mode}");
        assert_eq!(r.header("x-cutover-served-by"), Some("batch"), "{mode}");
        p.stop().await;
    }
}

/// A raw-TCP batch that records each request line as sent.
async fn raw_batch() -> Backend {
    Backend::start(Behaviour::raw(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
    ))
    .await
}

#[tokio::test]
async fn targets_with_bytes_hyper_refuses_reach_the_backend_as_sent() {
    let b = raw_batch().await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(route(&b, &s, "batch")).await;
    for (sent, upstream) in [
        // curl and Go send JSON in a query raw.
        ("/v1/orders/x?filter={\"a\":1}", "/t/x?filter={\"a\":1}"),
        ("/v1/orders/x?q=<b>|^`{}", "/t/x?q=<b>|^`{}"),
        ("/v1/orders/a<b>`c\"d?e", "/t/a<b>`c\"d?e"),
        // Already encoded stays encoded: nothing is decoded on the way.
        ("/v1/orders/x?f=%22a%22&g=\"", "/t/x?f=%22a%22&g=\""),
    ] {
        let request = format!("GET {sent} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw(p.listen, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{sent}: {answer}");
        let seen = b.last().expect("batch saw the read");
        assert_eq!(seen.uri, upstream, "{sent}");
    }
    // Pipelined: each request gets its own target.
    let two = "GET /v1/orders/1?a=\"1\" HTTP/1.1\r\nHost: x\r\n\r\n\
               GET /v1/orders/2?b=<2> HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let before = b.hits();
    let answer = raw(p.listen, two.as_bytes()).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    let seen = b.seen.lock().unwrap()[before..].to_vec();
    let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["/t/1?a=\"1\"", "/t/2?b=<2>"]);
    p.stop().await;
}

#[tokio::test]
async fn targets_that_are_a_framing_risk_are_still_refused_and_reach_no_backend() {
    let b = raw_batch().await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(route(&b, &s, "batch")).await;
    for (class, line) in [
        ("NUL", &b"GET /v1/orders/a\0b HTTP/1.1"[..]),
        ("control character", b"GET /v1/orders/a\x01b HTTP/1.1"),
        ("tab", b"GET /v1/orders/a\tb HTTP/1.1"),
        ("DEL", b"GET /v1/orders/a\x7fb HTTP/1.1"),
        ("space", b"GET /v1/orders/a b HTTP/1.1"),
        ("bare CR", b"GET /v1/orders/a\rb HTTP/1.1"),
        ("bare LF", b"GET /v1/orders/a\nb HTTP/1.1"),
        ("not UTF-8", b"GET /v1/orders/a?q=\xff\xfe HTTP/1.1"),
        ("quote, not UTF-8", b"GET /v1/orders/a?q=\"\xff HTTP/1.1"),
    ] {
        let mut request = line.to_vec();
        request.extend_from_slice(b"\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw(p.listen, &request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{class}: {answer}");
    }
    assert_eq!(b.hits(), 0, "no refused target reached batch");
    p.stop().await;
}

/// A chunked answer with a trailer field, announced in `Trailer`.
const WITH_TRAILERS: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n";

/// Sends `request` and reads the raw answer to its last chunk's end.
async fn read_chunked(addr: std::net::SocketAddr, request: &str) -> String {
    within(async {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        c.write_all(request.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Connection: close: the proxy closes once the answer is whole.
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

#[tokio::test]
async fn trailers_reach_a_consumer_that_sent_te_trailers_and_only_that_one() {
    let b = Backend::start(Behaviour::raw(WITH_TRAILERS)).await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(route(&b, &s, "batch")).await;

    let asked = read_chunked(
        p.listen,
        "GET /v1/orders/f HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(asked.starts_with("HTTP/1.1 200"), "{asked}");
    assert!(asked.contains("transfer-encoding: chunked"), "{asked}");
    assert!(asked.contains("trailer: x-checksum\r\n"), "{asked}");
    assert!(
        asked.ends_with("hello\r\n0\r\nx-checksum: abc123\r\n\r\n"),
        "{asked:?}"
    );
    let seen = b.last().expect("batch saw the read");
    assert_eq!(seen.headers["te"], "trailers", "the upstream is asked too");

    let not_asked = read_chunked(
        p.listen,
        "GET /v1/orders/f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(not_asked.starts_with("HTTP/1.1 200"), "{not_asked}");
    assert!(!not_asked.contains("x-checksum"), "{not_asked:?}");
    assert!(not_asked.ends_with("hello\r\n0\r\n\r\n"), "{not_asked:?}");
    assert!(!b.last().expect("read").headers.contains_key("te"));
    p.stop().await;
}

/// 1 MiB that is not the same byte over and over.
fn big_body(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn post_route(batch: &Backend, streaming: &Backend, mode: &str) -> Route {
    route(batch, streaming, mode).methods(&["GET", "POST"])
}

/// Every spool file under the proxy's data directory.
fn spool_files(data: &Path) -> Vec<PathBuf> {
    let Ok(dirs) = std::fs::read_dir(data.join("spool")) else {
        return Vec::new();
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten().map(|f| f.path()))
        .filter(|f| f.extension().is_some_and(|e| e == "body"))
        .collect()
}

#[tokio::test]
async fn a_body_past_max_buffered_body_falls_back_with_the_same_bytes() {
    let b = Backend::start(Behaviour::Echo).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(post_route(&b, &s, "streaming")).await;
    let body = big_body(1 << 20);
    let r = post(&p.url("/v1/orders/query?x=1"), body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    assert_eq!(s.last().expect("streaming read").body, body);
    assert_eq!(b.last().expect("batch read").body, body);
    wait_until("the spool file is removed", || {
        spool_files(p.data.path()).is_empty()
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn a_body_past_max_buffered_body_reaches_both_sides_in_shadow_mode() {
    let b = Backend::start(Behaviour::ok("batch")).await;
    let s = Backend::start(Behaviour::ok("streaming")).await;
    let p = Proxy::start(
        Route::orders(b.url("/t"), s.url("/s"))
            .mode("shadow")
            .methods(&["GET", "POST"])
            .no_probe(),
    )
    .await;
    let body = big_body(1 << 20);
    let r = post(&p.url("/v1/orders/query"), body.clone()).await;
    assert_eq!((r.status, r.text()), (200, "batch".to_owned()));
    wait_until("the shadow read reaches streaming", || s.hits() == 1).await;
    assert_eq!(b.last().expect("batch read").body, body);
    assert_eq!(s.last().expect("streaming read").body, body);
    wait_until("the spool file is removed", || {
        spool_files(p.data.path()).is_empty()
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn the_spool_file_lives_while_the_read_does_and_goes_when_it_ends_or_is_dropped() {
    let release = Arc::new(AtomicBool::new(false));
    let gate = release.clone();
    let b = Backend::start(Behaviour::custom(move |_req| {
        let gate = gate.clone();
        async move {
            while !gate.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            http::Response::new(full_body("done"))
        }
    }))
    .await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(post_route(&b, &s, "batch")).await;
    let url = p.url("/v1/orders/query");
    let body = big_body(300_000);

    // A read that ends: the file is there while batch works on it.
    let read = {
        let (url, body) = (url.clone(), body.clone());
        tokio::spawn(async move { post(&url, body).await })
    };
    wait_until("batch has the body", || b.hits() == 1).await;
    let files = spool_files(p.data.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        std::fs::metadata(&files[0]).expect("spool file").len(),
        300_000
    );
    release.store(true, Ordering::SeqCst);
    let r = within(read).await.expect("read task");
    assert_eq!((r.status, r.text()), (200, "done".to_owned()));
    wait_until("the spool file is removed", || {
        spool_files(p.data.path()).is_empty()
    })
    .await;

    // A consumer that goes away mid-read: the file goes with the read.
    release.store(false, Ordering::SeqCst);
    let mut c = tokio::net::TcpStream::connect(p.listen)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/orders/query HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    within(c.write_all(head.as_bytes())).await.expect("head");
    within(c.write_all(&body)).await.expect("body");
    wait_until("batch has the second body", || b.hits() == 2).await;
    assert_eq!(spool_files(p.data.path()).len(), 1);
    drop(c);
    wait_until("the spool file is removed after the disconnect", || {
        spool_files(p.data.path()).is_empty()
    })
    .await;
    release.store(true, Ordering::SeqCst);
    p.stop().await;
}

#[tokio::test]
async fn a_body_past_max_spooled_body_streams_once_as_before() {
    let b = Backend::start(Behaviour::ok("batch")).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(Config::new().max_spooled_body(100_000).route(post_route(
        &b,
        &s,
        "streaming",
    )))
    .await;
    let body = big_body(200_000);
    let r = post(&p.url("/v1/orders/query"), body.clone()).await;
    // Nothing kept to send again: streaming's answer is the answer.
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(r.header("x-cutover-fallback"), None);
    assert_eq!(s.last().expect("streaming read").body, body);
    assert_eq!(b.hits(), 0);
    assert!(spool_files(p.data.path()).is_empty());
    p.stop().await;

    // 0 turns spooling off: the same as before max_spooled_body existed.
    let p = Proxy::start(
        Config::new()
            .max_spooled_body(0)
            .route(post_route(&b, &s, "streaming")),
    )
    .await;
    let r = post(&p.url("/v1/orders/query"), big_body(100_000)).await;
    assert_eq!(r.status, 503);
    assert_eq!(b.hits(), 0);
    assert!(!p.data.path().join("spool").exists(), "nothing spooled");
    p.stop().await;
}

#[tokio::test]
async fn the_spool_budget_makes_a_body_past_it_stream_once() {
    let b = Backend::start(Behaviour::ok("batch")).await;
    let s = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(
        Config::new()
            .limits(json!({ "max_spooled_bytes": 150_000 }))
            .route(post_route(&b, &s, "streaming")),
    )
    .await;
    // Within the budget: spooled, so it falls back.
    let r = post(&p.url("/v1/orders/query"), big_body(100_000)).await;
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    // Past it: streams once.
    let r = post(&p.url("/v1/orders/query"), big_body(200_000)).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-cutover-fallback"), None);
    assert_eq!(b.hits(), 1);
    p.stop().await;
}
