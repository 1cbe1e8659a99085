//! The cost caps: `max_body_bytes` and `max_inflight` skip a comparison,
//! never the consumer's body.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use serde_json::json;

use super::*;

#[tokio::test]
async fn max_body_bytes_skips_the_comparison_not_the_body() {
    let big = {
        let mut s = String::from("{\"blob\":\"");
        while s.len() < 10 * 1024 - 2 {
            s.push(char::from(b'a' + (s.len() % 26) as u8));
        }
        s.push_str("\"}");
        assert_eq!(s.len(), 10 * 1024);
        s
    };
    let batch = canned_backend(vec![("/big", json(big.clone())), ("", json(BATCH_A))]).await;
    let streaming = canned_backend(vec![("/small", json(BATCH_A)), ("", json(big.clone()))]).await;
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("shadow")
            .reconcile(json!({"max_body_bytes": 1024})),
    )
    .await;

    // Both answers too large: the consumer still gets all 10 KiB.
    let a = get(&p.url("/v1/orders/big")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), 10 * 1024);
    assert_eq!(a.body, Bytes::from(big.clone()));
    assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
    settle(&p, "a too_large skip", |m| {
        m.route("orders").skipped("too_large") == 1.0
    })
    .await;

    // Only the shadow answer too large: skipped too.
    let a = get(&p.url("/v1/orders/other")).await;
    assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
    settle(&p, "a second too_large skip", |m| {
        m.route("orders").skipped("too_large") == 2.0
    })
    .await;

    // Both small: compared as usual.
    let a = get(&p.url("/v1/orders/small")).await;
    assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
    let m = settle(&p, "a match", |m| {
        m.route("orders").reconciled("match") == 1.0
    })
    .await;
    let lines = reconcile_lines(&m);
    assert_eq!(m.route("orders").reconciled("skipped"), 2.0, "{lines}");
    assert_eq!(m.route("orders").reconciled("diverged"), 0.0, "{lines}");
    for reason in SKIP_REASONS.iter().filter(|r| **r != "too_large") {
        assert_eq!(m.route("orders").skipped(reason), 0.0, "{reason}\n{lines}");
    }
}

#[tokio::test]
async fn max_inflight_skips_comparisons_past_the_cap() {
    // Streaming holds its answers until the test opens the gate.
    let (open, gate) = tokio::sync::watch::channel(false);
    let streaming = Backend::start(Behaviour::custom(move |_req| {
        let mut gate = gate.clone();
        async move {
            let _ = gate.wait_for(|open| *open).await;
            let mut r = Response::new(full_body(BATCH_A));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
    }))
    .await;
    let batch = fixed(json(BATCH_A)).await;
    let p = Proxy::start(
        orders(&batch, Side::new(streaming.url("/s/orders")).timeout("10s"))
            .mode("shadow")
            .reconcile(json!({"max_inflight": 1})),
    )
    .await;

    const READS: usize = 5;
    let started = Instant::now();
    let reads: Vec<_> = (0..READS)
        .map(|i| {
            let url = p.url(&format!("/v1/orders/{i}"));
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for r in reads {
        let a = within(r).await.expect("read task");
        assert_eq!(a.status, 200);
        assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
        assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "{READS} concurrent reads took {took:?}"
    );

    // One comparison holds the only slot; the other four were skipped.
    let m = settle(&p, "four inflight skips", |m| {
        m.route("orders").skipped("inflight") == 4.0
    })
    .await;
    assert_eq!(
        m.route("orders").reconciled("skipped"),
        4.0,
        "{}",
        reconcile_lines(&m)
    );
    assert_eq!(
        streaming.hits(),
        1,
        "only the compared read reaches streaming"
    );

    // Open the gate: the held comparison finishes and frees its slot.
    open.send(true).expect("gate");
    settle(&p, "the held comparison", |m| {
        m.route("orders").reconciled("match") == 1.0
    })
    .await;
    get(&p.url("/v1/orders/after")).await;
    let m = settle(&p, "a comparison after the slot is free", |m| {
        m.route("orders").reconciled("match") == 2.0
    })
    .await;
    assert_eq!(
        m.route("orders").skipped("inflight"),
        4.0,
        "{}",
        reconcile_lines(&m)
    );
}
