//! Criterion benches of the per-read pieces (route match and side decision,
//! header rewriting, watermark parsing) and of reconciliation on 1k and 100k
//! records, so a regression shows up per change.
//!
//!     cargo bench --bench hot_path

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cutover::config::compile_str;
use cutover::decide::freshness::parse_watermark;
use cutover::decide::reconcile::{Answer, Spec, compare};
use cutover::decide::routing::{canary_point, choose_side, prefix_matches, rewrite};
use cutover::net::headers::strip_hop_by_hop;
use http::HeaderMap;

const CONFIG: &str = r#"
version: 1
consumer: bench
listen: 127.0.0.1:0
admin: 127.0.0.1:0
routes:
  - name: orders
    match: { path_prefix: /v1/orders }
    batch: http://127.0.0.1:7001/tables/orders
    streaming: http://127.0.0.1:7002/v1/orders
    mode: streaming
  - name: customers
    match: { path_prefix: /v1/customers }
    batch: http://127.0.0.1:7001/tables/customers
    streaming: http://127.0.0.1:7002/v1/customers
    mode: canary
    canary: { percent: 10, sticky_header: x-customer-id }
  - name: refunds
    match: { path_prefix: /v1/orders/refunds }
    batch: http://127.0.0.1:7001/tables/refunds
    streaming: http://127.0.0.1:7002/v1/refunds
  - name: everything
    match: { path_prefix: / }
    batch: http://127.0.0.1:7001/
    streaming: http://127.0.0.1:7002/
"#;

fn routing(c: &mut Criterion) {
    let cfg = compile_str(Path::new("bench.yaml"), CONFIG, 1).expect("bench config compiles");
    let path = "/v1/orders/2026-11-23/items";
    c.bench_function("route_match_and_decide", |b| {
        b.iter(|| {
            let r = cfg
                .routes
                .iter()
                .find(|r| prefix_matches(&r.prefix, black_box(path)))
                .expect("a route");
            black_box(choose_side(
                r.mode,
                &r.canary,
                canary_point(Some(b"customer-42"), 0),
            ))
        })
    });
    let route = cfg
        .routes
        .iter()
        .find(|r| prefix_matches(&r.prefix, path))
        .expect("orders route");
    c.bench_function("rewrite_path", |b| {
        b.iter(|| {
            black_box(rewrite(
                &route.prefix,
                &route.streaming,
                black_box(path),
                Some("limit=100"),
            ))
        })
    });
}

fn headers(c: &mut Criterion) {
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("user-agent", "consumer/1.0"),
        ("accept", "application/json"),
        ("x-customer-id", "42"),
        ("x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("connection", "keep-alive"),
    ] {
        base.insert(k, v.parse().expect("valid header"));
    }
    c.bench_function("strip_hop_by_hop", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                strip_hop_by_hop(&mut h);
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn freshness(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_watermark");
    for (name, v) in [
        ("rfc3339", &b"2026-11-23T12:00:00.123Z"[..]),
        ("unix_seconds", b"1795000000"),
        ("unix_millis", b"1795000000123"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(parse_watermark(black_box(v))))
        });
    }
    g.finish();
}

fn records(n: usize, shift: usize) -> Vec<u8> {
    let rows: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let id = (i + shift) % n;
            serde_json::json!({"id": id, "amount": id as f64 * 1.25, "status": "settled", "ingested_at": i})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "data": rows })).expect("serialises")
}

fn reconcile(c: &mut Criterion) {
    let ignore = vec!["ingested_at".to_owned()];
    let spec = Spec {
        records: "/data",
        key: Some("id"),
        ignore: &ignore,
        numeric_tolerance: 0.0001,
        event_time: None,
    };
    let mut g = c.benchmark_group("reconcile_keyed");
    g.sample_size(10);
    for n in [1_000usize, 100_000] {
        // Same records, different order: the comparison must find no divergence.
        let (b_body, s_body) = (records(n, 0), records(n, n / 2));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| {
                let r = compare(
                    &spec,
                    Answer::json(200, &b_body, None),
                    Answer::json(200, &s_body, None),
                );
                assert!(!r.diverged());
                black_box(r)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, routing, headers, freshness, reconcile);
criterion_main!(benches);
