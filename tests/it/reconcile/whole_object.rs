//! Objects read in ranges are compared whole (SPEC 1.2): a reader's HEAD
//! and ranged GETs are never comparable one by one, so the object is
//! fetched complete from both sides off the consumer's path, once per
//! object version per `freshness.window`. The consumer still gets batch's
//! bytes exactly, and in shadow mode streaming never sees a `Range`.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

use super::*;

const OBJECT: &str =
    r#"{"data":[{"id":1,"amount":10},{"id":2,"amount":20},{"id":3,"amount":30}],"page":1}"#;
const OTHER: &str =
    r#"{"data":[{"id":1,"amount":10},{"id":2,"amount":21},{"id":3,"amount":30}],"page":1}"#;
const PATH: &str = "/v1/lake/part-0.json";

/// The lake route (`/v1/lake`) in `mode` on the two file servers, and a
/// `control` route compared on every read (`barrier`) on backends of its own.
async fn lake(
    mode: &str,
    batch: &Backend,
    streaming: impl Into<Side>,
    reconcile: serde_json::Value,
) -> (Proxy, Backend) {
    let control = fixed(json(BATCH_A)).await;
    let config = Config::new()
        .route(
            route("lake", "/v1/lake", batch.url("/lake"), streaming)
                .mode(mode)
                .reconcile(reconcile),
        )
        .route(
            route(
                "control",
                "/v1/control",
                control.url("/c"),
                control.url("/s/c"),
            )
            .mode("streaming")
            .reconcile(json!({ "sample": 1.0 })),
        );
    (Proxy::start(config).await, control)
}

/// Reads `path` as a Parquet reader does: a HEAD for the length, the last
/// 16 bytes, then the rest. Returns the bytes put together, each answer
/// checked as a part of one object served by `side`.
async fn read_in_ranges(p: &Proxy, path: &str, side: &str) -> Vec<u8> {
    let url = p.url(path);
    let head = send(Request::head(&url).body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(head.status, 200, "HEAD");
    assert_eq!(head.header("x-cutover-served-by"), Some(side));
    let len: usize = head
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .expect("HEAD has a length");
    let tail = get_with(&url, &[("range", "bytes=-16")]).await;
    let rest = get_with(&url, &[("range", &format!("bytes=0-{}", len - 17))]).await;
    for (what, a) in [("footer", &tail), ("rest", &rest)] {
        assert_eq!(a.status, 206, "{what}: {}", a.text());
        assert_eq!(a.header("x-cutover-served-by"), Some(side), "{what}");
    }
    [rest.body.as_ref(), tail.body.as_ref()].concat()
}

/// Comparisons of route `lake` whose result is `match` or `diverged`.
fn verdicts(m: &Metrics) -> f64 {
    m.route("lake").reconciled("match") + m.route("lake").reconciled("diverged")
}

/// Waits until route `lake` counted `n` comparisons (any result), then
/// until one more `control` comparison is in, so that a comparison the
/// reads so far might still start has had every chance to be counted.
async fn settled(p: &Proxy, n: f64) -> Metrics {
    settle(p, &format!("{n} comparisons of lake"), |m| {
        compared(m, "lake") >= n
    })
    .await;
    barrier(p).await;
    p.scrape().await
}

/// Requests streaming received with a `Range`.
fn ranges_seen(b: &Backend) -> Vec<String> {
    b.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.headers.contains_key("range"))
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect()
}

#[tokio::test]
async fn shadow_compares_an_object_read_in_ranges_once_per_version() {
    for (streaming_body, verdict) in [(OBJECT, "match"), (OTHER, "diverged")] {
        let batch_file = RangedFile::new(OBJECT, "\"b1\"");
        let batch = Backend::start(batch_file.behaviour()).await;
        let streaming = Backend::start(RangedFile::new(streaming_body, "\"s1\"").behaviour()).await;
        let (p, _control) = lake("shadow", &batch, streaming.url("/s/lake"), json!({})).await;

        let got = read_in_ranges(&p, PATH, "batch").await;
        assert_eq!(
            got,
            OBJECT.as_bytes(),
            "{verdict}: the consumer gets batch's bytes"
        );
        let m = settled(&p, 1.0).await;
        let lines = reconcile_lines(&m);
        assert_eq!(
            m.route("lake").reconciled(verdict),
            1.0,
            "{verdict}\n{lines}"
        );
        assert_eq!(
            compared(&m, "lake"),
            1.0,
            "{verdict}: one comparison\n{lines}"
        );
        assert_eq!(ranges_seen(&streaming), Vec::<String>::new(), "{verdict}");
        let whole = streaming.last().expect("streaming was read whole");
        assert_eq!(
            (whole.method.as_str(), whole.uri.as_str()),
            ("GET", "/s/lake/part-0.json")
        );

        // The same version again, within the window: nothing more.
        let got = read_in_ranges(&p, PATH, "batch").await;
        assert_eq!(got, OBJECT.as_bytes());
        let m = settled(&p, 1.0).await;
        assert_eq!(
            compared(&m, "lake"),
            1.0,
            "{verdict}: same version\n{}",
            reconcile_lines(&m)
        );
        assert_eq!(streaming.hits(), 1, "{verdict}: streaming read once, whole");

        // Batch serves a new version: compared again.
        batch_file.set(OBJECT, "\"b2\"");
        read_in_ranges(&p, PATH, "batch").await;
        let m = settled(&p, 2.0).await;
        let lines = reconcile_lines(&m);
        assert_eq!(
            m.route("lake").reconciled(verdict),
            2.0,
            "{verdict}: new version\n{lines}"
        );
        assert_eq!(compared(&m, "lake"), 2.0, "{verdict}\n{lines}");
        assert_eq!(ranges_seen(&streaming), Vec::<String>::new(), "{verdict}");
        p.stop().await;
    }
}

#[tokio::test]
async fn an_object_over_max_body_bytes_is_skipped_too_large() {
    let big = format!(
        "{{\"data\":[{}]}}",
        (0..200)
            .map(|i| format!("{{\"id\":{i}}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(big.len() > 1024);
    let batch = Backend::start(RangedFile::new(big.clone(), "\"b1\"").behaviour()).await;
    let streaming = Backend::start(RangedFile::new(big.clone(), "\"s1\"").behaviour()).await;
    let (p, _control) = lake(
        "shadow",
        &batch,
        streaming.url("/s/lake"),
        json!({ "max_body_bytes": 1024 }),
    )
    .await;
    assert_eq!(read_in_ranges(&p, PATH, "batch").await, big.as_bytes());
    let m = settled(&p, 1.0).await;
    let lines = reconcile_lines(&m);
    assert_eq!(m.route("lake").skipped("too_large"), 1.0, "{lines}");
    assert_eq!(compared(&m, "lake"), 1.0, "one skip, nothing else\n{lines}");
}

#[tokio::test]
async fn streaming_refusing_the_whole_read_is_skipped_upstream_error() {
    let batch = Backend::start(RangedFile::new(OBJECT, "\"b1\"").behaviour()).await;
    let (p, _control) = lake(
        "shadow",
        &batch,
        format!("http://{}/s/lake", refusing_addr()),
        json!({}),
    )
    .await;
    assert_eq!(read_in_ranges(&p, PATH, "batch").await, OBJECT.as_bytes());
    let m = settled(&p, 1.0).await;
    let lines = reconcile_lines(&m);
    assert_eq!(m.route("lake").skipped("upstream_error"), 1.0, "{lines}");
    assert_eq!(compared(&m, "lake"), 1.0, "{lines}");
    // The whole read batch answered is a read cutover sent batch: counted.
    assert_eq!(
        m.route("lake").upstream("batch", "ok"),
        4.0,
        "HEAD, two ranges, whole"
    );
}

#[tokio::test]
async fn a_sampled_ranged_read_in_streaming_mode_is_compared_whole() {
    let batch = Backend::start(RangedFile::new(OBJECT, "\"b1\"").behaviour()).await;
    let streaming = Backend::start(RangedFile::new(OBJECT, "\"s1\"").behaviour()).await;
    let (p, _control) = lake(
        "streaming",
        &batch,
        streaming.url("/s/lake"),
        json!({ "sample": 1.0 }),
    )
    .await;
    let a = get_with(&p.url(PATH), &[("range", "bytes=0-15")]).await;
    assert_eq!(a.status, 206);
    assert_eq!(a.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(a.body, OBJECT.as_bytes()[..16]);
    // The read itself meets a comparison of two parts (skipped `partial`);
    // its object is compared whole beside it.
    let m = settled(&p, 2.0).await;
    let lines = reconcile_lines(&m);
    assert_eq!(m.route("lake").skipped("partial"), 1.0, "{lines}");
    assert_eq!(m.route("lake").reconciled("match"), 1.0, "{lines}");
    assert_eq!(verdicts(&m), 1.0, "{lines}");
    assert_eq!(compared(&m, "lake"), 2.0, "{lines}");
}
