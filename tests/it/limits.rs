//! Every connection bounded in time and number, every read in flight
//! bounded: what a stalled, idle, flooding or bursting consumer meets
//! (`limits:`; `conn.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The h2 preface and an empty SETTINGS frame: a peer that starts h2 and
/// then says nothing more, not even its PING acknowledgements.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Sends `bytes`, then nothing, reading what comes; how long until cutover
/// closed the connection.
async fn held_for(addr: SocketAddr, bytes: &[u8]) -> Duration {
    within(async {
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
        started.elapsed()
    })
    .await
}

#[tokio::test]
async fn every_stalled_connection_kind_is_closed_on_both_listeners() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new()
            .limits(json!({
                "handshake_timeout": "300ms",
                "head_timeout": "300ms",
                "h2_ping_interval": "300ms",
                "h2_ping_timeout": "300ms",
            }))
            .route(Route::orders(b.url("/t"), s.url("/s")).quiet()),
    )
    .await;
    for (listener, addr) in [("listen", p.listen), ("admin", p.admin)] {
        for (kind, bytes, at_least) in [
            ("silent", &b""[..], 300),
            ("half an h2 preface", b"PRI * HTTP/2.0\r\n", 300),
            ("h2 peer that stops answering", H2_START, 600),
        ] {
            let took = held_for(addr, bytes).await;
            // Held until its timer, not refused at once; then cut.
            assert!(
                took >= Duration::from_millis(at_least - 50),
                "{listener}, {kind}: closed after only {took:?}"
            );
            assert!(
                took < Duration::from_secs(5),
                "{listener}, {kind}: held {took:?}"
            );
        }
    }
    assert_eq!((b.hits(), s.hits()), (0, 0));
    p.stop().await;
}

/// An h2 consumer that answers pings but sends nothing is closed (GOAWAY)
/// after `idle_timeout`; a read in flight longer than that is not cut.
#[tokio::test]
async fn an_idle_h2_connection_is_closed_but_a_slow_read_on_it_is_not() {
    let b = Backend::start(Behaviour::Slow(Duration::from_millis(900))).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new()
            .limits(json!({ "idle_timeout": "400ms" }))
            .route(
                Route::orders(b.url("/t"), s.url("/s"))
                    .mode("batch")
                    .quiet(),
            ),
    )
    .await;
    let io = TokioIo::new(within(TcpStream::connect(p.listen)).await.expect("connect"));
    let (mut send, conn) = within(hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        io,
    ))
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = Request::get(p.url("/v1/orders/1"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = within(send.send_request(req))
        .await
        .expect("slow read answered");
    assert_eq!(
        resp.status(),
        200,
        "a read longer than idle_timeout is served"
    );
    let body = within(resp.into_body().collect()).await.expect("body");
    assert_eq!(body.to_bytes(), "slow\n");
    let idle_from = Instant::now();
    let ended = within(conn).await.expect("connection task");
    let idle = idle_from.elapsed();
    assert!(ended.is_ok(), "closed gracefully: {ended:?}");
    assert!(
        idle >= Duration::from_millis(200) && idle < Duration::from_secs(5),
        "closed {idle:?} after its last read"
    );
    p.stop().await;
}

/// A connection on `listen` for one keep-alive read, kept open.
async fn keep_alive(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let io = TokioIo::new(within(TcpStream::connect(addr)).await.expect("connect"));
    let (send, conn) = within(hyper::client::conn::http1::handshake(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

async fn read_on(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
) -> u16 {
    let req = Request::get(format!("http://{addr}/v1/orders/1"))
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    within(send.send_request(req))
        .await
        .expect("answered")
        .status()
        .as_u16()
}

#[tokio::test]
async fn connections_past_max_connections_are_refused_and_counted() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new()
            .limits(json!({ "max_connections": 3 }))
            .route(Route::orders(b.url("/t"), s.url("/s")).quiet()),
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut c = keep_alive(p.listen).await;
        assert_eq!(read_on(&mut c, p.listen).await, 200);
        open.push(c);
    }
    // The fourth is closed at once, unanswered.
    let took = held_for(p.listen, b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        took < Duration::from_secs(2),
        "refused at once, not held {took:?}"
    );
    // Reads on the open ones go on.
    for c in &mut open {
        assert_eq!(read_on(c, p.listen).await, 200);
    }
    let m = p.scrape().await;
    let consumer = [("listener", "consumer")];
    assert_eq!(m.get(CONNECTIONS_REFUSED, &consumer), Some(1.0));
    assert_eq!(m.get(CONNECTIONS_OPEN, &consumer), Some(3.0));
    // A closed one frees its slot.
    drop(open.pop());
    wait_until_async("a slot is free", || async {
        p.scrape().await.get(CONNECTIONS_OPEN, &consumer) == Some(2.0)
    })
    .await;
    let mut again = keep_alive(p.listen).await;
    assert_eq!(read_on(&mut again, p.listen).await, 200);
    p.stop().await;
}

#[tokio::test]
async fn reads_past_max_inflight_reads_are_shed_with_503_and_retry_after() {
    // Batch holds every read until the test lets go.
    let (release, released) = tokio::sync::watch::channel(false);
    let b = Backend::start(Behaviour::custom(move |_req| {
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|r| *r).await;
            http::Response::new(full_body("from batch"))
        }
    }))
    .await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Arc::new(
        Proxy::start(
            Config::new()
                .limits(json!({ "max_inflight_reads": 2 }))
                .route(
                    Route::orders(Side::new(b.url("/t")).timeout("30s"), s.url("/s"))
                        .mode("batch")
                        .quiet(),
                ),
        )
        .await,
    );
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = p.url("/v1/orders/1");
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    wait_until_async("two reads are in flight", || async {
        p.scrape().await.get(READS_INFLIGHT, &[]) == Some(2.0)
    })
    .await;
    let shed = get(&p.url("/v1/orders/1")).await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.header("x-cutover-error"), Some("overflow"));
    assert_eq!(b.hits(), 2, "a shed read never reaches a backend");
    let _ = release.send(true);
    for read in held {
        let r = within(read).await.expect("read task");
        assert_eq!((r.status, r.text()), (200, "from batch".to_owned()));
    }
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.status, 200, "slots come back");
    let m = p.scrape().await;
    assert_eq!(m.get(READS_SHED, &[]), Some(1.0));
    assert_eq!(m.get(READS_INFLIGHT, &[]), Some(0.0));
    match Arc::try_unwrap(p) {
        Ok(p) => p.stop().await,
        Err(_) => panic!("proxy still shared"),
    }
}
