//! Sampled comparisons in `streaming` mode: `sample` 1 re-reads batch and
//! compares, 0 never does, `streaming_only` never does, and which reads are
//! sampled is deterministic per sticky value.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde_json::json;

use super::*;

/// Batch requests for route `orders`, by path (without the query).
fn batch_orders_reads(batch: &Backend) -> Vec<String> {
    batch
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.uri.starts_with("/tables/orders"))
        .map(|s| s.uri.split('?').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn streaming_mode_with_sample_one_rereads_batch_and_compares() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("streaming")
            .reconcile(json!({"sample": 1.0})),
    )
    .await;
    for i in 1..=3 {
        let a = get(&p.url(&format!("/v1/orders/{i}?full=1"))).await;
        assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
        assert_eq!(a.header("x-cutover-fallback"), None);
        assert_eq!(a.body, Bytes::from_static(BATCH_A.as_bytes()));
        wait_until("batch is re-read", || batch.hits() == i).await;
        let seen = batch.last().unwrap();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.uri, format!("/tables/orders/{i}?full=1"));
        settle(&p, "the comparison", |m| {
            m.route("orders").reconciled("match") == i as f64
        })
        .await;
    }
    assert_eq!(streaming.hits(), 3);
    let m = p.scrape().await;
    assert_eq!(compared(&m, "orders"), 3.0, "{}", reconcile_lines(&m));
    // The re-read is an upstream attempt like any other.
    assert_eq!(m.route("orders").upstream("batch", "ok"), 3.0);
}

#[tokio::test]
async fn streaming_mode_with_sample_zero_never_reads_batch() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(with_control(&batch, &streaming, |r| {
        r.mode("streaming").reconcile(json!({"sample": 0.0}))
    }))
    .await;
    for i in 0..20 {
        let a = get(&p.url(&format!("/v1/orders/{i}"))).await;
        assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    }
    barrier(&p).await;
    assert_eq!(batch_orders_reads(&batch), Vec::<String>::new());
    let m = p.scrape().await;
    assert_eq!(compared(&m, "orders"), 0.0, "{}", reconcile_lines(&m));
}

#[tokio::test]
async fn streaming_only_never_reads_batch_even_with_sample_one() {
    let batch = fixed(json(BATCH_A)).await;
    let streaming = fixed(json(BATCH_A)).await;
    let p = Proxy::start(with_control(&batch, &streaming, |r| {
        r.mode("streaming_only").reconcile(json!({"sample": 1.0}))
    }))
    .await;
    for i in 0..10 {
        let a = get(&p.url(&format!("/v1/orders/{i}"))).await;
        assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    }
    barrier(&p).await;
    assert_eq!(batch_orders_reads(&batch), Vec::<String>::new());
    let m = p.scrape().await;
    assert_eq!(compared(&m, "orders"), 0.0, "{}", reconcile_lines(&m));
}

/// The customers whose reads were compared, checking that each was
/// compared on all of its `reads` or on none.
async fn sampled_customers(batch: &Backend, proxy: &Proxy, reads: usize) -> BTreeSet<String> {
    // Every re-read that reached batch has been compared.
    settle(proxy, "every batch re-read is counted", |m| {
        compared(m, "orders") == batch_orders_reads(batch).len() as f64
    })
    .await;
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for path in batch_orders_reads(batch) {
        *per.entry(path.trim_start_matches("/tables/orders/").to_owned())
            .or_default() += 1;
    }
    for (id, n) in &per {
        assert_eq!(*n, reads, "{id}: compared {n} of {reads} reads: not sticky");
    }
    per.into_keys().collect()
}

#[tokio::test]
async fn sampling_is_deterministic_per_sticky_value() {
    const CUSTOMERS: usize = 40;
    let sticky = |r: Route| {
        r.mode("streaming")
            .canary(json!({ "sticky_header": "x-customer-id" }))
            .reconcile(json!({ "sample": 0.5 }))
    };
    // Two sidecars with the same config, each with its own batch backend.
    let streaming = fixed(json(BATCH_A)).await;
    let (batch_a, batch_b) = (fixed(json(BATCH_A)).await, fixed(json(BATCH_A)).await);
    let pa = Proxy::start(with_control(&batch_a, &streaming, sticky)).await;
    let pb = Proxy::start(with_control(&batch_b, &streaming, sticky)).await;
    for round in 0..3 {
        for c in 0..CUSTOMERS {
            let id = format!("customer-{c}");
            for (k, p) in [&pa, &pb].into_iter().enumerate() {
                if round == 2 && k == 1 {
                    continue; // sidecar B sees each customer twice, A three times
                }
                let a = get_with(
                    &p.url(&format!("/v1/orders/{id}")),
                    &[("x-customer-id", &id)],
                )
                .await;
                assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
            }
        }
    }
    barrier(&pa).await;
    barrier(&pb).await;
    let in_a = sampled_customers(&batch_a, &pa, 3).await;
    let in_b = sampled_customers(&batch_b, &pb, 2).await;
    assert_eq!(in_a, in_b, "two sidecars sample different customers");
    assert!(
        !in_a.is_empty() && in_a.len() < CUSTOMERS,
        "sample 0.5 over {CUSTOMERS} customers compared {} of them",
        in_a.len()
    );
    eprintln!(
        "sample 0.5: {} of {CUSTOMERS} customers compared",
        in_a.len()
    );
}
