//! The proxy's own traffic to the sides: the idle-side probe (and when it
//! never runs), and upstream connections kept alive and reused.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

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
        m.watermark("streaming") > 0.0
    })
    .await;
    let now = now_secs() as f64;
    let m = p.scrape().await;
    let wm = m.watermark("streaming");
    assert!(
        (wm - (now - 5.0)).abs() < 5.0,
        "streaming watermark {wm}, now {now}"
    );
    let age = m.data_age("streaming");
    assert!((4.0..15.0).contains(&age), "streaming age {age}");
    let delta = m.freshness_delta();
    assert!((delta - 10_795.0).abs() < 5.0, "freshness delta {delta}");
    assert!(m.upstream("streaming", "ok") >= 1.0);
    // The probe is not a read: nothing was served by streaming.
    assert_eq!(m.requests("streaming", "2xx"), 0.0);
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
    assert_eq!(m.upstream("batch", "ok"), 0.0);
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
    for name in [DATA_WATERMARK, DATA_AGE] {
        let v = m
            .get(name, &[("side", "streaming")])
            .expect("series exported");
        assert!(v.is_nan(), "{name} = {v}");
    }
    assert!(
        m.get(FRESHNESS_DELTA, &[])
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
