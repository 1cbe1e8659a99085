//! The divergence log: a bounded sample of each diverged comparison.

use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn divergence_log_writes_a_bounded_sample_per_comparison() {
    let batch_records: Vec<String> = (1..=10)
        .map(|i| format!(r#"{{"id":{i},"amount":{}}}"#, i * 10))
        .collect();
    let streaming_records: Vec<String> = (11..=14)
        .map(|i| format!(r#"{{"id":{i},"amount":{}}}"#, i * 10))
        .collect();
    let refs = |v: &[String]| -> String { page(&v.iter().map(String::as_str).collect::<Vec<_>>()) };
    let (many_b, many_s) = (refs(&batch_records), refs(&streaming_records));
    let batch = canned_backend(vec![
        ("/many", canned(200, many_b, Some(BATCH_WM))),
        ("", canned(200, page(&[B1, B2, B3]), Some(BATCH_WM))),
    ])
    .await;
    let streaming = canned_backend(vec![
        ("/many", canned(200, many_s, Some(STREAMING_WM))),
        (
            "/same",
            canned(200, page(&[S1, S2, S3]), Some(STREAMING_WM)),
        ),
        ("/one", canned(200, page(&[S1, S2]), Some(STREAMING_WM))),
    ])
    .await;
    let p = Proxy::start(orders(&batch, streaming.url("/s/orders")).mode("shadow").reconcile(json!({"records": "/data", "key": "id", "ignore": ["ingested_at"], "divergence_log": "divergences.jsonl"})))
    .await;
    // A relative path is in the data directory, never beside the config
    // (a read-only ConfigMap mount, whose watcher each write would wake).
    let log = p.data.path().join("divergences.jsonl");

    get(&p.url("/v1/orders/many?region=eu")).await;
    settle(&p, "the first divergence", |m| {
        m.route("orders").reconciled("diverged") == 1.0
    })
    .await;
    get(&p.url("/v1/orders/same")).await;
    settle(&p, "the match", |m| {
        m.route("orders").reconciled("match") == 1.0
    })
    .await;
    get(&p.url("/v1/orders/one")).await;
    let m = settle(&p, "the second divergence", |m| {
        m.route("orders").reconciled("diverged") == 2.0
    })
    .await;
    // 10 missing + 4 extra in the first comparison, 1 missing in the last.
    assert_eq!(m.route("orders").divergences("missing"), 11.0);
    assert_eq!(m.route("orders").divergences("extra"), 4.0);

    // The last comparison's line arrives last (one writer, in order).
    wait_until("the last comparison is logged", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/v1/orders/one"))
    })
    .await;
    let beside_the_config: Vec<_> = std::fs::read_dir(p.dir.path())
        .expect("config dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(
        beside_the_config,
        ["cutover.yaml"],
        "nothing is written beside the config"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let for_request = |r: &str| {
        lines
            .iter()
            .filter(|l| l["request"] == r)
            .collect::<Vec<_>>()
    };
    let many = for_request("/v1/orders/many?region=eu");
    assert_eq!(many.len(), 5, "14 divergences, at most 5 lines:\n{text}");
    assert!(
        for_request("/v1/orders/same").is_empty(),
        "a match logs nothing:\n{text}"
    );
    let one = for_request("/v1/orders/one");
    assert_eq!(one.len(), 1, "{text}");
    assert_eq!(lines.len(), 6, "{text}");

    for l in &lines {
        let t = l["time"].as_str().expect("time");
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("time {t}: {e}"));
        assert_eq!(l["route"], "orders");
        assert_eq!(l["batch_watermark"], BATCH_WM, "{l}");
        assert_eq!(l["streaming_watermark"], STREAMING_WM, "{l}");
        assert!(l["key"].is_string(), "{l}");
    }
    for l in &many {
        assert_eq!(l["category"], "missing", "missing keys come first: {l}");
        let key = l["key"].as_str().unwrap();
        let batch_value: Value =
            serde_json::from_str(l["batch"].as_str().expect("batch value")).unwrap();
        assert_eq!(batch_value["id"].to_string(), key, "{l}");
        assert!(l["streaming"].is_null(), "{l}");
    }
    let one = one[0];
    assert_eq!(one["category"], "missing");
    assert_eq!(one["key"], "3");
    let batch_value: Value = serde_json::from_str(one["batch"].as_str().unwrap()).unwrap();
    assert_eq!(batch_value["amount"], 300);
    assert_eq!(one["batch_rows"], 3);
    assert_eq!(one["streaming_rows"], 2);
}

/// Timing divergences are expected while the sides' watermarks differ: all
/// are counted, one in a while is logged (saying how many were left out),
/// and a real divergence after many of them is still in the log.
#[tokio::test]
async fn timing_divergences_are_counted_but_logged_at_a_sample() {
    let batch = canned_backend(vec![("", canned(200, page(&[B1, B2, B3]), Some(BATCH_WM)))]).await;
    let streaming = canned_backend(vec![
        (
            "/late",
            canned(200, page(&[S1, S2_LATE, S3, S5_LATE]), Some(STREAMING_WM)),
        ),
        ("/gone", canned(200, page(&[S1, S2]), Some(STREAMING_WM))),
    ])
    .await;
    let mut reconcile = keyed();
    reconcile["divergence_log"] = json!("divergences.jsonl");
    let p = Proxy::start(
        orders(&batch, streaming.url("/s/orders"))
            .mode("shadow")
            .reconcile(reconcile),
    )
    .await;
    let log = p.data.path().join("divergences.jsonl");
    const LATE_READS: usize = 6;
    for i in 1..=LATE_READS {
        get(&p.url("/v1/orders/late")).await;
        settle(&p, "the timing comparison", |m| {
            m.route("orders").reconciled("match") == i as f64
        })
        .await;
    }
    get(&p.url("/v1/orders/gone")).await;
    let m = settle(&p, "the real divergence", |m| {
        m.route("orders").reconciled("diverged") == 1.0
    })
    .await;
    // Each late read holds two timing differences (a changed and a new
    // record after batch's watermark): every one is counted.
    assert_eq!(
        m.route("orders").divergences("timing"),
        (2 * LATE_READS) as f64
    );
    assert_eq!(m.route("orders").divergences("missing"), 1.0);
    wait_until("the real divergence is logged", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/v1/orders/gone"))
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let timing: Vec<_> = lines.iter().filter(|l| l["category"] == "timing").collect();
    assert_eq!(timing.len(), 1, "one timing line a minute:\n{text}");
    assert_eq!(
        timing[0]["timing_not_logged"], 0,
        "the first is logged: {text}"
    );
    let missing: Vec<_> = lines
        .iter()
        .filter(|l| l["category"] == "missing")
        .collect();
    assert_eq!(missing.len(), 1, "{text}");
    assert_eq!(missing[0]["key"], "3", "{text}");
    assert_eq!(lines.len(), 2, "{text}");
}
