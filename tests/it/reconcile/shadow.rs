//! Shadow never alters the consumer's answer, whatever streaming does, and
//! adds no latency even when streaming hangs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::*;

#[derive(Debug, Clone, Copy)]
enum Shadow {
    DifferentJson,
    GarbageBody,
    GarbageInsteadOfHttp,
    ServerError,
    Hangs,
    ResetMidBody,
    ResetAtOnce,
}

impl Shadow {
    async fn backend(self) -> Backend {
        match self {
            Shadow::DifferentJson => fixed(json(r#"{"data":[{"id":2,"amount":99}],"page":7}"#)).await,
            Shadow::GarbageBody => fixed(json(&b"\x00\xff\xfegarbage{{{not json"[..])).await,
            Shadow::GarbageInsteadOfHttp => {
                Backend::start(Behaviour::raw(b"\x00\xff\xfe this is not HTTP at all\r\n\r\n")).await
            }
            Shadow::ServerError => fixed(canned(500, "boom\n", None)).await,
            Shadow::Hangs => Backend::start(Behaviour::Hang).await,
            Shadow::ResetMidBody => {
                Backend::start(Behaviour::raw_then_reset(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"data\":[{\"id\":",
                ))
                .await
            }
            Shadow::ResetAtOnce => Backend::start(Behaviour::raw_then_reset(b"")).await,
        }
    }

    /// How the comparison ends: a result and, for a skip, its reason.
    fn outcome(self) -> (&'static str, Option<&'static str>) {
        match self {
            Shadow::DifferentJson | Shadow::GarbageBody => ("diverged", Some("body")),
            Shadow::ServerError => ("diverged", Some("status")),
            Shadow::GarbageInsteadOfHttp | Shadow::Hangs | Shadow::ResetAtOnce => {
                ("skipped", Some("upstream_error"))
            }
            Shadow::ResetMidBody => ("skipped", Some("aborted")),
        }
    }
}

#[tokio::test]
async fn shadow_never_alters_the_consumers_answer() {
    let mut a = json(BATCH_A);
    a.watermark = Some("2024-05-01T10:00:00Z");
    a.headers = vec![("x-batch-tag", "b-1"), ("cache-control", "max-age=5")];
    let batch = fixed(a).await;
    // What batch itself answers, straight from it: the reference.
    let direct = send(
        Request::post(batch.url("/tables/orders/x/y?q=1&r=two"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    let reference: BTreeMap<String, String> = direct
        .headers
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(reference["x-batch-tag"], "b-1");

    for variant in [
        Shadow::DifferentJson,
        Shadow::GarbageBody,
        Shadow::GarbageInsteadOfHttp,
        Shadow::ServerError,
        Shadow::Hangs,
        Shadow::ResetMidBody,
        Shadow::ResetAtOnce,
    ] {
        let streaming = variant.backend().await;
        let p = Proxy::start(
            orders(
                &batch,
                Side::new(streaming.url("/s/orders")).timeout("300ms"),
            )
            .mode("shadow")
            .methods(&["GET", "POST"]),
        )
        .await;
        let before = batch.hits();
        let started = Instant::now();
        let got = send(
            Request::post(p.url("/v1/orders/x/y?q=1&r=two"))
                .header("x-customer-id", "c-9")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"filter\":\"abc\"}")))
                .unwrap(),
        )
        .await;
        let took = started.elapsed();

        // The consumer's answer is batch's, exactly.
        assert_eq!(got.status, 200, "{variant:?}: {}", got.text());
        assert_eq!(
            got.body,
            Bytes::from_static(BATCH_A.as_bytes()),
            "{variant:?}"
        );
        assert_eq!(
            got.header("x-cutover-served-by"),
            Some("batch"),
            "{variant:?}"
        );
        assert_eq!(got.header("x-cutover-fallback"), None, "{variant:?}");
        let mut headers: BTreeMap<String, String> = got
            .headers
            .iter()
            .filter(|(k, _)| k.as_str() != "date")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            headers.remove("x-cutover-served-by").as_deref(),
            Some("batch")
        );
        assert_eq!(
            headers, reference,
            "{variant:?}: headers differ from batch's own"
        );
        assert!(
            took < Duration::from_millis(250),
            "{variant:?}: took {took:?}"
        );
        assert_eq!(batch.hits(), before + 1, "{variant:?}: batch read once");

        // Streaming got the same read: method, rewritten path, query, body.
        wait_until("streaming receives the shadow read", || {
            streaming.hits() == 1
        })
        .await;
        let seen = streaming.last().expect("streaming saw the read");
        assert_eq!(seen.method, "POST", "{variant:?}");
        assert_eq!(seen.uri, "/s/orders/x/y?q=1&r=two", "{variant:?}");
        assert_eq!(&seen.body[..], b"{\"filter\":\"abc\"}", "{variant:?}");
        assert_eq!(
            seen.headers.get("x-customer-id").map(|v| v.as_bytes()),
            Some(&b"c-9"[..]),
            "{variant:?}"
        );

        // And the comparison ends as it should, off the consumer's path.
        let (want, detail) = variant.outcome();
        let m = settle(&p, &format!("{variant:?} is counted {want}"), |m| {
            m.route("orders").reconciled(want) == 1.0
                && match (want, detail) {
                    ("skipped", Some(reason)) => m.route("orders").skipped(reason) == 1.0,
                    (_, Some(c)) => m.route("orders").divergences(c) == 1.0,
                    _ => true,
                }
        })
        .await;
        assert_eq!(
            compared(&m, "orders"),
            1.0,
            "{variant:?}\n{}",
            reconcile_lines(&m)
        );
        // Shadow failures never become fallbacks.
        let fallbacks: f64 = m
            .samples()
            .filter(|(name, _, _)| *name == FALLBACKS)
            .map(|(_, _, v)| v)
            .sum();
        assert_eq!(fallbacks, 0.0, "{variant:?}");
        drop(p);
    }
}

// ---------------------------------------------------------------- 2. no added latency

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn shadow_adds_no_latency_even_when_streaming_hangs() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = Backend::start(Behaviour::Hang).await;
    let hanging = Side::new(streaming.url("/s/orders")).timeout("5s");
    let shadow = Proxy::start(orders(&batch, hanging.clone()).mode("shadow")).await;
    let baseline = Proxy::start(orders(&batch, hanging).mode("batch")).await;
    // Warm both paths once (first connections, lazy initialisation).
    get(&baseline.url("/v1/orders/warm")).await;

    const READS: usize = 20;
    let (mut in_shadow, mut in_batch) = (Vec::new(), Vec::new());
    for i in 0..READS {
        for (p, times) in [(&shadow, &mut in_shadow), (&baseline, &mut in_batch)] {
            let started = Instant::now();
            let a = get(&p.url(&format!("/v1/orders/{i}"))).await;
            times.push(started.elapsed());
            assert_eq!(a.status, 200);
            assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
            assert_eq!(a.header("x-cutover-served-by"), Some("batch"));
        }
    }
    let total: Duration = in_shadow.iter().sum();
    let slowest = *in_shadow.iter().max().unwrap();
    let (ms, mb) = (median(in_shadow.clone()), median(in_batch.clone()));
    eprintln!(
        "shadow (streaming hangs): median {ms:?}, slowest {slowest:?}, total {total:?}; batch mode: median {mb:?}, slowest {:?}",
        in_batch.iter().max().unwrap()
    );
    assert!(
        slowest < Duration::from_millis(500),
        "a shadow read took {slowest:?}"
    );
    assert!(
        total < Duration::from_secs(2),
        "{READS} shadow reads took {total:?}"
    );
    let gap = ms.abs_diff(mb);
    assert!(
        gap <= Duration::from_millis(50),
        "shadow median {ms:?} vs batch median {mb:?}"
    );
    // Every shadow read did go to streaming, and is still waiting there.
    wait_until("streaming has every shadow read", || {
        streaming.hits() == READS
    })
    .await;
    let m = shadow.scrape().await;
    assert_eq!(compared(&m, "orders"), 0.0, "{}", reconcile_lines(&m));
}
