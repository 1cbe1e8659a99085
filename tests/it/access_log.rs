//! The access log end to end: the real proxy writes JSON lines with SPEC
//! 1.1's fields into its data directory; plain reads are sampled, fallbacks
//! and cutover's own answers always logged; the real binary reopens the file
//! on SIGUSR1. Every wait is bounded.

use std::path::Path;

use crate::support::*;
use serde_json::{Value, json};

/// The access log's lines so far, parsed.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits until the log has `n` lines, and returns them.
async fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    wait_until("the access log has its lines", || lines(path).len() >= n).await;
    lines(path)
}

#[tokio::test]
async fn every_read_is_a_json_line_with_the_spec_fields() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new()
            .access_log(json!({ "path": "access.jsonl" }))
            .route(
                Route::orders(b.url("/t"), s.url("/s"))
                    .mode("streaming")
                    .dataset("orders-v2")
                    .quiet(),
            ),
    )
    .await;
    let r = get_with(
        &p.url("/v1/orders/7?secret=1"),
        &[("x-request-id", "req-1")],
    )
    .await;
    assert_eq!(r.status, 200);
    let log = p.data.path().join("access.jsonl");
    let line = &wait_lines(&log, 1).await[0];
    let text = std::fs::read_to_string(&log).expect("the log");
    assert!(text.starts_with("{\"ts\":"), "ts first: {text}");
    let mut keys: Vec<&str> = line
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut spec = [
        "ts",
        "consumer",
        "route",
        "dataset",
        "method",
        "path",
        "status",
        "served_by",
        "fallback",
        "error",
        "upstream_status",
        "duration_ms",
        "request_id",
    ];
    spec.sort_unstable();
    assert_eq!(keys, spec);
    assert_eq!(line["consumer"], "test");
    assert_eq!(line["route"], "orders");
    assert_eq!(line["dataset"], "orders-v2");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/v1/orders/7", "no query string: {line}");
    assert_eq!(line["status"], 200);
    assert_eq!(line["served_by"], "streaming");
    assert!(
        line["fallback"].is_null() && line["error"].is_null(),
        "{line}"
    );
    assert_eq!(line["upstream_status"], 200);
    assert!(line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    assert_eq!(line["request_id"], "req-1");
    assert!(
        time::OffsetDateTime::parse(
            line["ts"].as_str().expect("ts"),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "{line}"
    );
    assert!(
        !p.dir.path().join("access.jsonl").exists(),
        "never beside the config"
    );
    p.stop().await;
}

#[tokio::test]
async fn sampling_skips_plain_reads_but_never_a_fallback_or_cutovers_own_answer() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let s = Backend::start(Behaviour::ok("from streaming")).await;
    let p = Proxy::start(
        Config::new()
            .access_log(json!({ "path": "access.jsonl", "sample": 0 }))
            .route(
                Route::orders(b.url("/t"), s.url("/s"))
                    .mode("streaming")
                    .quiet(),
            ),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(get(&p.url("/v1/orders/1")).await.status, 200);
    }
    // A fallback, then an answer cutover makes itself.
    s.set(Behaviour::Status(503));
    let r = get(&p.url("/v1/orders/2")).await;
    assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    assert_eq!(get(&p.url("/nowhere")).await.status, 404);
    let log = p.data.path().join("access.jsonl");
    let got = wait_lines(&log, 2).await;
    assert_eq!(
        got.len(),
        2,
        "plain reads are not logged at sample 0: {got:?}"
    );
    assert_eq!(got[0]["path"], "/v1/orders/2");
    assert_eq!(got[0]["served_by"], "batch");
    assert_eq!(got[0]["fallback"], "5xx");
    assert_eq!(got[0]["upstream_status"], 200);
    let id = got[0]["request_id"].as_str().expect("a made request id");
    assert_eq!(
        b.last().expect("batch answered").headers["x-request-id"],
        id,
        "the id in the log is the one the upstreams saw"
    );
    assert_eq!(got[1]["path"], "/nowhere");
    assert_eq!(got[1]["status"], 404);
    assert_eq!(got[1]["error"], "no_route");
    assert!(got[1]["route"].is_null() && got[1]["served_by"].is_null());
    assert!(got[1]["upstream_status"].is_null());
    p.stop().await;
}

#[test]
fn the_binary_reopens_the_access_log_on_sigusr1() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let b = rt.block_on(Backend::start(Behaviour::ok("from batch")));
    let s = rt.block_on(Backend::start(Behaviour::ok("from streaming")));
    let data = tempfile::tempdir().expect("data dir");
    let log = data.path().join("access.jsonl");
    let (_dir, path) = config_file(
        Config::new()
            .access_log(json!({ "path": log.display().to_string() }))
            .route(
                Route::orders(b.url("/t"), s.url("/s"))
                    .mode("batch")
                    .quiet(),
            ),
    );
    let bin = Binary::run(&path);
    let url = format!("http://{}/v1/orders/1", bin.listen);
    rt.block_on(async {
        get(&url).await;
        wait_lines(&log, 1).await;
    });
    // logrotate: move the file, then signal.
    let rotated = data.path().join("access.jsonl.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    bin.signal("USR1");
    rt.block_on(async {
        // The signal may land a moment after this read: read until the new
        // file has a line (it exists a moment before its first line is
        // flushed, so existing is not enough).
        wait_until_async("a line in the reopened file", || {
            let url = url.clone();
            let log = log.clone();
            async move {
                get(&url).await;
                !lines(&log).is_empty()
            }
        })
        .await;
    });
    // Reads that raced the signal may still land in the moved file.
    assert!(!lines(&rotated).is_empty(), "the moved file kept its line");
    assert!(!lines(&log).is_empty());
}
