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

const CONNECTIONS_RECLAIMED: &str = "cutover_connections_reclaimed_total";

/// A keep-alive HTTP/1 connection and its client task: the task ends
/// `Ok` when cutover closes the connection cleanly.
type Watched = (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
);

async fn keep_alive_watched(addr: SocketAddr) -> Watched {
    let io = TokioIo::new(within(TcpStream::connect(addr)).await.expect("connect"));
    let (send, conn) = within(hyper::client::conn::http1::handshake(io))
        .await
        .expect("handshake");
    (send, tokio::spawn(conn))
}

/// A batch backend that holds every answer until the test lets go (the
/// stream path answers at once).
fn held_backend() -> (tokio::sync::watch::Sender<bool>, Behaviour) {
    let (release, released) = tokio::sync::watch::channel(false);
    let behaviour = Behaviour::custom(move |req| {
        let mut released = released.clone();
        async move {
            if req.uri().path().contains("held") {
                let _ = released.wait_for(|r| *r).await;
            }
            http::Response::new(full_body("from batch"))
        }
    });
    (release, behaviour)
}

#[tokio::test]
async fn at_max_connections_the_longest_idle_connection_makes_room() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new()
            .limits(json!({ "max_connections": 8 }))
            .route(Route::orders(b.url("/t"), s.url("/s")).quiet()),
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..8 {
        let mut c = keep_alive_watched(p.listen).await;
        assert_eq!(read_on(&mut c.0, p.listen).await, 200);
        open.push(c);
    }
    // Every one but the first reads again: the first is the longest idle.
    for c in &mut open[1..] {
        assert_eq!(read_on(&mut c.0, p.listen).await, 200);
    }
    let mut newcomer = keep_alive_watched(p.listen).await;
    assert_eq!(
        read_on(&mut newcomer.0, p.listen).await,
        200,
        "a new connection is served at the cap"
    );
    let (_, first) = open.remove(0);
    let ended = within(first).await.expect("client task");
    assert!(
        ended.is_ok(),
        "the longest idle was closed cleanly: {ended:?}"
    );
    for (i, c) in open.iter_mut().enumerate() {
        assert!(!c.1.is_finished(), "connection {} was closed", i + 1);
        assert_eq!(read_on(&mut c.0, p.listen).await, 200);
    }
    let m = p.scrape().await;
    let consumer = [("listener", "consumer")];
    assert_eq!(m.get(CONNECTIONS_RECLAIMED, &consumer), Some(1.0));
    assert_eq!(m.get(CONNECTIONS_REFUSED, &consumer), Some(0.0));
    assert_eq!(m.get(CONNECTIONS_OPEN, &consumer), Some(8.0));
    p.stop().await;
}

/// At the cap with every connection in the middle of a read, a new one is
/// refused at once and counted, and the reads go on; a closed connection
/// frees its slot.
#[tokio::test]
async fn connections_past_max_connections_none_idle_are_refused_and_counted() {
    let (release, held) = held_backend();
    let b = Backend::start(held).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new().limits(json!({ "max_connections": 8 })).route(
            Route::orders(Side::new(b.url("/t")).timeout("30s"), s.url("/s"))
                .mode("batch")
                .quiet(),
        ),
    )
    .await;
    let listen = p.listen;
    let reads: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let (mut send, conn) = keep_alive_watched(listen).await;
                let req = Request::get(format!("http://{listen}/v1/orders/held"))
                    .header("host", listen.to_string())
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let resp = within(send.send_request(req)).await.expect("answered");
                let body = within(resp.into_body().collect()).await.expect("body");
                (body.to_bytes(), (send, conn))
            })
        })
        .collect();
    wait_until_async("eight reads are in flight", || async {
        p.scrape().await.get(READS_INFLIGHT, &[]) == Some(8.0)
    })
    .await;
    let took = held_for(p.listen, b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        took < Duration::from_secs(2),
        "refused at once, not held {took:?}"
    );
    let _ = release.send(true);
    let mut open = Vec::new();
    for read in reads {
        let (body, c) = within(read).await.expect("read task");
        assert_eq!(body, "from batch", "the active reads complete");
        assert!(!c.1.is_finished(), "and keep their connections");
        open.push(c);
    }
    // Reads on them go on.
    for c in &mut open {
        assert_eq!(read_on(&mut c.0, p.listen).await, 200);
    }
    let m = p.scrape().await;
    let consumer = [("listener", "consumer")];
    assert_eq!(m.get(CONNECTIONS_REFUSED, &consumer), Some(1.0));
    assert_eq!(m.get(CONNECTIONS_RECLAIMED, &consumer), Some(0.0));
    assert_eq!(m.get(CONNECTIONS_OPEN, &consumer), Some(8.0));
    // A closed one frees its slot.
    drop(open.pop());
    wait_until_async("a slot is free", || async {
        p.scrape().await.get(CONNECTIONS_OPEN, &consumer) == Some(7.0)
    })
    .await;
    let mut again = keep_alive_watched(p.listen).await;
    assert_eq!(read_on(&mut again.0, p.listen).await, 200);
    let m = p.scrape().await;
    assert_eq!(
        m.get(CONNECTIONS_RECLAIMED, &consumer),
        Some(0.0),
        "a free slot, no reclaim"
    );
    p.stop().await;
}

async fn h2_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let io = TokioIo::new(within(TcpStream::connect(addr)).await.expect("connect"));
    let (send, conn) = within(hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        io,
    ))
    .await
    .expect("h2 handshake");
    (send, tokio::spawn(conn))
}

fn h2_get(addr: SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Empty::<Bytes>::new())
        .expect("request")
}

#[tokio::test]
async fn at_max_connections_an_idle_h2_connection_gets_goaway_one_with_a_stream_does_not() {
    let (release, held) = held_backend();
    let b = Backend::start(held).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new().limits(json!({ "max_connections": 2 })).route(
            Route::orders(Side::new(b.url("/t")).timeout("30s"), s.url("/s"))
                .mode("batch")
                .quiet(),
        ),
    )
    .await;
    // Busy first, so that it is the oldest connection.
    let (mut busy, busy_conn) = h2_connection(p.listen).await;
    let stream = tokio::spawn(busy.send_request(h2_get(p.listen, "/v1/orders/held")));
    let (mut idle, idle_conn) = h2_connection(p.listen).await;
    let resp = within(idle.send_request(h2_get(p.listen, "/v1/orders/1")))
        .await
        .expect("answered");
    assert_eq!(resp.status(), 200);
    within(resp.into_body().collect()).await.expect("body");
    wait_until_async("the held read is in flight", || async {
        p.scrape().await.get(READS_INFLIGHT, &[]) == Some(1.0)
    })
    .await;
    let mut newcomer = keep_alive_watched(p.listen).await;
    assert_eq!(read_on(&mut newcomer.0, p.listen).await, 200);
    let ended = within(idle_conn).await.expect("client task");
    assert!(ended.is_ok(), "GOAWAY, then a clean close: {ended:?}");
    let _ = release.send(true);
    let resp = within(stream)
        .await
        .expect("stream task")
        .expect("the open stream is answered");
    let body = within(resp.into_body().collect()).await.expect("body");
    assert_eq!(body.to_bytes(), "from batch");
    assert!(!busy_conn.is_finished(), "the busy connection stays open");
    let m = p.scrape().await;
    let consumer = [("listener", "consumer")];
    assert_eq!(m.get(CONNECTIONS_RECLAIMED, &consumer), Some(1.0));
    assert_eq!(m.get(CONNECTIONS_REFUSED, &consumer), Some(0.0));
    p.stop().await;
}

/// A batch backend whose `stall` answers send `part` and then nothing,
/// whose `big` answers are 4 MiB, and whose other answers are whole.
/// The receiver keeps the stalled bodies' senders: hold it for the test.
fn stalling_backend() -> (
    tokio::sync::mpsc::Receiver<tokio::sync::mpsc::Sender<Bytes>>,
    Behaviour,
) {
    let (senders_tx, senders) = tokio::sync::mpsc::channel(4);
    let behaviour = Behaviour::custom(move |req| {
        let senders = senders_tx.clone();
        async move {
            let path = req.uri().path();
            if path.contains("stall") {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let _ = tx.send(Bytes::from_static(b"part")).await;
                // Kept by the test, never written again: the body stalls.
                let _ = senders.send(tx).await;
                http::Response::new(ChannelBody(rx).boxed())
            } else if path.contains("big") {
                http::Response::new(full_body(vec![b'x'; 4 << 20]))
            } else {
                http::Response::new(full_body("whole"))
            }
        }
    });
    (senders, behaviour)
}

#[tokio::test]
async fn an_h2_stream_that_sends_nothing_is_reset_alone() {
    let (stalled_bodies, stalling) = stalling_backend();
    let b = Backend::start(stalling).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new()
            .limits(json!({ "stream_idle_timeout": "400ms" }))
            .route(
                Route::orders(b.url("/t"), s.url("/s"))
                    .mode("batch")
                    .quiet(),
            ),
    )
    .await;
    let (mut send, conn) = h2_connection(p.listen).await;
    // A consumer that stops reading: an answer past its stream window
    // (2 MiB), never read.
    let unread = within(send.send_request(h2_get(p.listen, "/v1/orders/big")))
        .await
        .expect("head");
    assert_eq!(unread.status(), 200);
    let unread_at = Instant::now();
    // An upstream that stalls mid-body.
    let stalled = within(send.send_request(h2_get(p.listen, "/v1/orders/stall")))
        .await
        .expect("head");
    assert_eq!(stalled.status(), 200);
    let mut stalled = stalled.into_body();
    let first = within(stalled.frame())
        .await
        .expect("a frame")
        .expect("data");
    assert_eq!(first.into_data().ok().as_deref(), Some(&b"part"[..]));
    let stalled_at = Instant::now();
    // The connection's other streams go on meanwhile.
    let resp = within(send.send_request(h2_get(p.listen, "/v1/orders/1")))
        .await
        .expect("answered");
    let body = within(resp.into_body().collect()).await.expect("body");
    assert_eq!(body.to_bytes(), "whole");
    let reset = within(stalled.frame()).await;
    let took = stalled_at.elapsed();
    assert!(
        matches!(reset, Some(Err(_))),
        "the stalled stream is reset, not ended: {reset:?}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "reset {took:?} after its last piece"
    );
    // Reading the unread answer releases window, so it must wait until
    // its timer has surely fired: a time that passes, nothing to poll.
    tokio::time::sleep_until((unread_at + Duration::from_millis(1200)).into()).await;
    let unread = within(unread.into_body().collect()).await;
    assert!(
        unread.is_err(),
        "the unread stream is reset too, not sent whole"
    );
    // And the connection still serves.
    let resp = within(send.send_request(h2_get(p.listen, "/v1/orders/1")))
        .await
        .expect("answered after the resets");
    let body = within(resp.into_body().collect()).await.expect("body");
    assert_eq!(body.to_bytes(), "whole");
    assert!(!conn.is_finished(), "the connection stays open");
    drop(stalled_bodies);
    p.stop().await;
}

#[test]
fn the_new_limits_keys_are_located_when_bad() {
    let down = refusing_addr();
    let base = Config::new()
        .route(Route::orders(
            format!("http://{down}/t"),
            format!("http://{down}/s"),
        ))
        .yaml();
    let line = base.lines().count() + 2;
    let text =
        format!("{base}limits:\n  stream_idle_timeout: forever\n  admin_max_connections: 0\n");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cutover.yaml");
    std::fs::write(&path, &text).expect("write config");
    let out = run_cutover(&["check".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let at = |l: usize, c: usize| format!("cutover.yaml:{l}:{c}");
    assert!(
        out.stderr.contains(&at(line, 24)) && out.stderr.contains("forever"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&at(line + 1, 26)) && out.stderr.contains("1 or more"),
        "{}",
        out.stderr
    );
}
