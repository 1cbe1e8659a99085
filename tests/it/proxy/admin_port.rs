//! The admin port: its endpoints answer there and only there, and
//! `/metrics` carries the right values after a known sequence of reads.

use std::time::Duration;

use serde_json::json;

use super::quiet_route;
use crate::support::*;

#[tokio::test]
async fn admin_endpoints_answer_on_admin_only() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(quiet_route(b.url("/t"), s.url("/s"), "streaming")).await;
    for path in ["/metrics", "/healthz", "/readyz", "/status"] {
        let r = get(&p.url(path)).await;
        assert_eq!(r.status, 404, "{path} on the listen port");
        assert!(r.text().contains("no route"), "{path}: {}", r.text());
        assert!(!r.text().contains("cutover_"), "{path} leaked metrics");
    }
    assert_eq!((b.hits(), s.hits()), (0, 0));

    let r = get(&p.admin_url("/healthz")).await;
    assert_eq!(r.status, 200);
    let r = get(&p.admin_url("/readyz")).await;
    assert_eq!(r.status, 200);
    let r = get(&p.admin_url("/metrics")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    assert!(r.text().contains("cutover_config_generation"));

    for _ in 0..2 {
        assert_eq!(get(&p.url("/v1/orders/1")).await.status, 200);
    }
    let st = p.status_json().await;
    assert_eq!(st["config"]["generation"], 1);
    assert_eq!(st["consumer"], "test");
    let routes = st["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 1);
    let r = &routes[0];
    assert_eq!(r["name"], "orders");
    assert_eq!(r["configured_mode"], "streaming");
    assert_eq!(r["effective_mode"], "streaming");
    assert_eq!(r["circuit"], "closed");
    assert_eq!(r["reads"]["streaming"], 2);
    assert_eq!(r["reads"]["batch"], 0);
    p.stop().await;
}

// ---------------------------------------------------------------- metrics

#[tokio::test]
async fn metrics_are_scraped_with_the_right_values() {
    let hours_3 = Duration::from_secs(3 * 3600);
    let b = Backend::start(Behaviour::aged("from batch", hours_3)).await;
    let s = Backend::start(Behaviour::aged("from streaming", Duration::from_secs(5))).await;
    let p = Proxy::start(
        quiet_route(b.url("/t"), s.url("/s"), "streaming")
            .fallback(json!({"circuit": {"failures": 5, "cooldown": "30s"}})),
    )
    .await;
    for _ in 0..3 {
        let r = get(&p.url("/v1/orders/1")).await;
        assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    }
    s.set(Behaviour::Status(503));
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    assert_eq!(r.text(), "from batch");

    let now = now_secs() as f64;
    let m = p.scrape().await;
    let v = |name: &str, labels: &[(&str, &str)]| {
        m.get(name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} missing from\n{}", m.text))
    };
    // Each series below must be exported, even where its value is 0: the
    // zeros kept are the reads of the sides a mode serves from and the
    // fallbacks of a mode that falls back (a series born at 1 would read
    // as no increase); other zero counters are left out.
    let orders = m.required().consumer("test").route("orders");
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("consumer", "test"), ("route", "orders")];
        l.extend_from_slice(extra);
        l
    };

    assert_eq!(orders.requests("streaming", "2xx"), 3.0);
    assert_eq!(orders.requests("batch", "2xx"), 1.0);
    assert_eq!(
        m.get(
            "cutover_requests_total",
            &with(&[("side", "streaming"), ("code_class", "5xx")])
        ),
        None,
        "a counter never counted is not exported"
    );
    assert_eq!(orders.upstream("streaming", "ok"), 3.0);
    assert_eq!(orders.upstream("streaming", "5xx"), 1.0);
    assert_eq!(orders.upstream("batch", "ok"), 1.0);
    assert_eq!(orders.fallbacks("5xx"), 1.0);
    assert_eq!(orders.fallbacks("connect"), 0.0);

    let wm_batch = orders.watermark("batch");
    let wm_streaming = orders.watermark("streaming");
    assert!(
        (wm_batch - (now - 10_800.0)).abs() < 5.0,
        "batch watermark {wm_batch}, now {now}"
    );
    assert!(
        (wm_streaming - (now - 5.0)).abs() < 5.0,
        "streaming watermark {wm_streaming}, now {now}"
    );
    let age_batch = orders.data_age("batch");
    let age_streaming = orders.data_age("streaming");
    assert!(
        (10_795.0..10_810.0).contains(&age_batch),
        "batch age {age_batch}"
    );
    assert!(
        (4.0..15.0).contains(&age_streaming),
        "streaming age {age_streaming}"
    );
    let delta = orders.freshness_delta();
    assert!(
        (delta - 10_795.0).abs() < 3.0,
        "freshness delta {delta}: positive, streaming fresher"
    );

    let er_streaming = orders.error_ratio("streaming");
    let er_batch = orders.error_ratio("batch");
    let er_delta = orders.error_ratio_delta();
    assert!(
        (er_streaming - 0.25).abs() < 1e-9,
        "streaming error ratio {er_streaming}"
    );
    assert_eq!(er_batch, 0.0);
    assert!(
        (er_delta - 0.25).abs() < 1e-9,
        "error ratio delta {er_delta}"
    );

    assert_eq!(orders.route_mode("streaming"), 1.0);
    for mode in ["batch", "shadow", "canary", "streaming_only"] {
        assert_eq!(
            m.consumer("test").route("orders").route_mode(mode),
            0.0,
            "{mode}"
        );
    }
    assert_eq!(orders.circuit_open(), 0.0);
    assert_eq!(m.required().consumer("test").generation(), 1.0);

    // Histograms: buckets, sum and count per side.
    let count = v(
        "cutover_request_duration_seconds_count",
        &with(&[("side", "streaming")]),
    );
    assert_eq!(count, 3.0);
    assert_eq!(
        v(
            "cutover_request_duration_seconds_count",
            &with(&[("side", "batch")])
        ),
        1.0
    );
    let inf = v(
        "cutover_request_duration_seconds_bucket",
        &with(&[("side", "streaming"), ("le", "+Inf")]),
    );
    assert_eq!(inf, 3.0);
    let buckets = m
        .samples()
        .filter(|(n, l, _)| {
            *n == "cutover_request_duration_seconds_bucket"
                && l.iter().any(|(k, v)| k == "side" && v == "streaming")
        })
        .count();
    // Eight bounds and +Inf (docs/metrics.md: what a route costs).
    assert_eq!(
        buckets, 9,
        "{buckets} buckets for cutover_request_duration_seconds"
    );
    assert!(
        m.get(
            "cutover_upstream_duration_seconds_count",
            &with(&[("side", "batch")])
        )
        .is_some()
    );

    // Every series carries consumer, and route and dataset but the
    // process-wide ones (SPEC 1.1: `dataset` on every per-route series).
    const PROCESS_WIDE: [&str; 11] = [
        CONNECTIONS_OPEN,
        CONNECTIONS_REFUSED,
        "cutover_connections_reclaimed_total",
        READS_INFLIGHT,
        READS_SHED,
        CONFIG_RELOADS,
        CONFIG_GENERATION,
        CONFIG_LAST_RELOAD_SUCCESSFUL,
        CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP,
        BUILD_INFO,
        CONSUMER_INFO,
    ];
    for (name, labels, _) in m.samples().filter(|(n, _, _)| n.starts_with("cutover_")) {
        let has = |k: &str| labels.iter().any(|(lk, _)| lk == k);
        assert!(has("consumer"), "{name} {labels:?} lacks consumer");
        let process_wide = PROCESS_WIDE.contains(&name);
        assert_eq!(
            has("route"),
            !process_wide,
            "{name} {labels:?}: route label"
        );
        assert_eq!(
            has("dataset"),
            !process_wide,
            "{name} {labels:?}: dataset label"
        );
    }
    assert_eq!(
        m.get(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    p.stop().await;
}
