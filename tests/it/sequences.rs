//! One logical read, one side (SPEC 1.2): files read in byte ranges and
//! listings read page by page get every byte and every record from one side,
//! through canary, through fallbacks, through a circuit opening mid-object
//! and through a rollback; a continuing read whose side fails gets that
//! failure, never the other side's bytes; shadow never hands streaming a
//! cursor. The fake backends serve different data on each side, the way a
//! batch and a streaming output of one dataset differ, so a mixed read shows.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

// ------------------------------------------------------------ fake sides

/// One side's data and what it was asked: files by range, listings by page.
#[derive(Clone)]
struct Data {
    side: &'static str,
    /// Answer 503 to this share of requests, in percent, chosen by a fixed
    /// hash of the request's number: the same requests fail in every run.
    fail_percent: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// Requests whose cursor this side never issued.
    foreign_cursors: Arc<AtomicUsize>,
    /// Every request target seen, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// Paths answered 503 whatever `fail_every` says.
    failing_paths: Arc<Mutex<BTreeSet<String>>>,
}

impl Data {
    fn new(side: &'static str) -> Data {
        Data {
            side,
            fail_percent: Arc::new(AtomicUsize::new(0)),
            requests: Arc::new(AtomicUsize::new(0)),
            foreign_cursors: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            failing_paths: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    fn fail_percent(&self, percent: usize) {
        self.fail_percent.store(percent, Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    async fn start(&self) -> Backend {
        let data = self.clone();
        Backend::start(Behaviour::custom(move |req| {
            let data = data.clone();
            async move { data.answer(req) }
        }))
        .await
    }

    fn answer(&self, req: Request<Bytes>) -> Response<TestBody> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let target = req.uri().to_string();
        self.seen.lock().unwrap().push(target);
        let path = req.uri().path().to_owned();
        let fails = scatter(n as u64) % 100;
        let percent = self.fail_percent.load(Ordering::SeqCst) as u64;
        if fails < percent || self.failing_paths.lock().unwrap().contains(&path) {
            return status(503, "streaming hiccup\n");
        }
        if path.ends_with("/list") {
            self.page(&req)
        } else {
            self.file(&req, &path)
        }
    }

    /// A file whose bytes name the side and whose length differs between
    /// the sides (another row-group layout), served with `Range` support.
    fn file(&self, req: &Request<Bytes>, path: &str) -> Response<TestBody> {
        let body = file_bytes(self.side, path);
        let len = body.len();
        let range = req
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Some(range) = range else {
            let mut resp = Response::new(full_body(if req.method() == "HEAD" {
                Bytes::new()
            } else {
                Bytes::from(body)
            }));
            resp.headers_mut()
                .insert("content-length", len.to_string().parse().unwrap());
            resp.headers_mut()
                .insert("accept-ranges", "bytes".parse().unwrap());
            return resp;
        };
        let Some((start, end)) = parse_range(&range, len) else {
            let mut resp = status(416, "");
            resp.headers_mut()
                .insert("content-range", format!("bytes */{len}").parse().unwrap());
            return resp;
        };
        let mut resp = Response::new(full_body(Bytes::copy_from_slice(&body[start..=end])));
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            "content-range",
            format!("bytes {start}-{end}/{len}").parse().unwrap(),
        );
        resp
    }

    /// A listing of this side's records (streaming holds two batch has not
    /// caught up with, at the front, so offsets differ), by cursor or offset.
    fn page(&self, req: &Request<Bytes>) -> Response<TestBody> {
        let records = records(self.side);
        let query = req.uri().query().unwrap_or("");
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        };
        let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(5);
        let start = match (param("cursor"), param("offset")) {
            (Some(c), _) => match c.strip_prefix(&self.side[..1]).and_then(|n| n.parse().ok()) {
                Some(n) => n,
                None => {
                    self.foreign_cursors.fetch_add(1, Ordering::SeqCst);
                    return status(400, "unknown cursor\n");
                }
            },
            (None, Some(o)) => o.parse().unwrap_or(0),
            (None, None) => 0,
        };
        let page: Vec<u64> = records.iter().skip(start).take(limit).copied().collect();
        let end = start + page.len();
        let next = (end < records.len()).then(|| format!("{}{end}", &self.side[..1]));
        let body = json!({ "data": page, "next_cursor": next, "side": self.side });
        let mut resp = Response::new(full_body(body.to_string()));
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        resp
    }
}

/// splitmix64's finaliser: consecutive numbers land far apart and without
/// pattern, so failures come in runs and gaps as real ones do.
fn scatter(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn status(code: u16, text: &'static str) -> Response<TestBody> {
    let mut resp = Response::new(full_body(text));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap();
    resp
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within `len`.
fn parse_range(range: &str, len: usize) -> Option<(usize, usize)> {
    let spec = range.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a, b) {
        ("", n) => (len.checked_sub(n.parse().ok()?)?, len - 1),
        (a, "") => (a.parse().ok()?, len - 1),
        (a, b) => (a.parse().ok()?, b.parse::<usize>().ok()?.min(len - 1)),
    };
    (start <= end && end < len).then_some((start, end))
}

fn file_bytes(side: &str, path: &str) -> Vec<u8> {
    let lines = if side == "batch" { 400 } else { 430 };
    (0..lines)
        .map(|i| format!("{side} {path} row {i:05}\n"))
        .collect::<String>()
        .into_bytes()
}

fn records(side: &str) -> Vec<u64> {
    match side {
        "batch" => (100..124).collect(),
        _ => (98..124).collect(),
    }
}

// ------------------------------------------------------------ readers

/// What one logical read came to.
#[derive(Debug, PartialEq)]
enum Got {
    /// Exactly one side's whole object or listing.
    Side(&'static str),
    /// An HTTP error the reader saw (status, `x-cutover-error`).
    Error(u16, Option<String>),
    /// Data that is neither side's: the defect this file exists to catch.
    Wrong(String),
}

/// Reads an object the way a Parquet reader does: `HEAD` for the length,
/// the footer (a suffix range), then the rest in 4 KiB ranges.
async fn read_object(p: &Proxy, path: &str) -> (Got, BTreeSet<String>) {
    let url = p.url(path);
    let mut sides = BTreeSet::new();
    let head = send(
        Request::head(&url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    note(&mut sides, &head);
    if head.status != 200 {
        return (error(&head), sides);
    }
    let len: usize = head
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .expect("HEAD has a length");
    let footer = get_with(&url, &[("range", "bytes=-64")]).await;
    note(&mut sides, &footer);
    if footer.status != 206 {
        return (error(&footer), sides);
    }
    let mut body = vec![0u8; len];
    body[len - 64..].copy_from_slice(&footer.body);
    let mut at = 0;
    while at < len - 64 {
        let end = (at + 4096).min(len - 64) - 1;
        let chunk = get_with(&url, &[("range", &format!("bytes={at}-{end}"))]).await;
        note(&mut sides, &chunk);
        if chunk.status != 206 {
            return (error(&chunk), sides);
        }
        if chunk.body.len() != end - at + 1 {
            return (Got::Wrong(format!("short chunk at {at}")), sides);
        }
        body[at..=end].copy_from_slice(&chunk.body);
        at = end + 1;
    }
    let path = format!("/lake{}", path.trim_start_matches("/v1/lake"));
    let got = ["batch", "streaming"]
        .into_iter()
        .find(|side| file_bytes(side, &path) == body)
        .map_or_else(
            || Got::Wrong(format!("{path}: neither side's bytes")),
            Got::Side,
        );
    (got, sides)
}

/// Reads a listing to its end by cursor (`by: "cursor"`) or offset,
/// retrying a page that answered 5xx up to 5 times as a careful client does.
async fn read_listing(p: &Proxy, filter: &str, by: &str) -> Got {
    let mut ids: Vec<u64> = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut query = format!("status={filter}&limit=5");
        match (by, &next) {
            ("cursor", Some(c)) => query.push_str(&format!("&cursor={c}")),
            ("offset", Some(_)) => query.push_str(&format!("&offset={}", ids.len())),
            _ => {}
        }
        let url = p.url(&format!("/v1/lake/list?{query}"));
        let mut page = get(&url).await;
        for _ in 0..5 {
            if page.status < 500 {
                break;
            }
            page = get(&url).await;
        }
        if page.status != 200 {
            return error(&page);
        }
        let body = page.json();
        ids.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap()),
        );
        match &body["next_cursor"] {
            Value::String(c) => next = Some(c.clone()),
            _ => break,
        }
    }
    ["batch", "streaming"]
        .into_iter()
        .find(|side| records(side) == ids)
        .map_or_else(
            || Got::Wrong(format!("{filter}: records {ids:?}")),
            Got::Side,
        )
}

fn note(sides: &mut BTreeSet<String>, a: &Answer) {
    if let Some(s) = a.header("x-cutover-served-by") {
        sides.insert(s.to_owned());
    }
}

fn error(a: &Answer) -> Got {
    Got::Error(a.status, a.header("x-cutover-error").map(str::to_owned))
}

/// The lake route: every read of `/v1/lake/...` to `/lake/...` on each side.
fn lake(batch: &Backend, streaming: &Backend, mode: &str) -> Route {
    Route::new(
        "lake",
        "/v1/lake",
        batch.url("/lake"),
        streaming.url("/lake"),
    )
    .mode(mode)
    .quiet()
}

fn counts(results: &[Got]) -> (usize, usize, usize, Vec<&Got>) {
    let of = |s| results.iter().filter(|g| **g == Got::Side(s)).count();
    let errors = results
        .iter()
        .filter(|g| matches!(g, Got::Error(..)))
        .count();
    let wrong = results
        .iter()
        .filter(|g| matches!(g, Got::Wrong(_)))
        .collect();
    (of("batch"), of("streaming"), errors, wrong)
}

// ------------------------------------------------------------ files in ranges

#[tokio::test]
async fn canary_serves_each_object_from_one_side() {
    let (bd, sd) = (Data::new("batch"), Data::new("streaming"));
    let (b, s) = (bd.start().await, sd.start().await);
    let p = Proxy::start(lake(&b, &s, "canary").canary(json!({ "percent": 50 }))).await;
    let mut results = Vec::new();
    for i in 0..30 {
        let (got, sides) = read_object(&p, &format!("/v1/lake/part-{i}.parquet")).await;
        assert_eq!(sides.len(), 1, "part-{i} was served by {sides:?}");
        results.push(got);
    }
    let (batch, streaming, errors, wrong) = counts(&results);
    assert!(wrong.is_empty(), "{wrong:?}");
    assert_eq!(errors, 0, "{results:?}");
    // 30 objects split about half and half: both sides serve some.
    assert!(
        batch >= 5 && streaming >= 5,
        "{batch} batch, {streaming} streaming"
    );
    // The same object read again lands on the same side.
    let again = read_object(&p, "/v1/lake/part-0.parquet").await.0;
    assert_eq!(again, results[0]);
}

#[tokio::test]
async fn a_failing_range_read_gets_the_error_never_the_other_sides_bytes() {
    let (bd, sd) = (Data::new("batch"), Data::new("streaming"));
    let (b, s) = (bd.start().await, sd.start().await);
    sd.fail_percent(30);
    let p = Proxy::start(lake(&b, &s, "streaming")).await;
    let mut finals = Vec::new();
    let mut errors = 0;
    for i in 0..30 {
        // A query that failed is run again, as a user (or Spark) would: up
        // to three tries, each a whole new read of the object.
        let mut last = None;
        for _ in 0..3 {
            let (got, sides) = read_object(&p, &format!("/v1/lake/part-{i}.parquet")).await;
            assert_eq!(sides.len(), 1, "part-{i} was served by {sides:?}");
            let failed = matches!(got, Got::Error(..));
            if let Got::Error(code, _) = got {
                assert_eq!(code, 503, "part-{i}: streaming's own status passes through");
                errors += 1;
            }
            last = Some(got);
            if !failed {
                break;
            }
        }
        finals.push(last.expect("one try at least"));
    }
    let (batch, streaming, _, wrong) = counts(&finals);
    assert!(wrong.is_empty(), "{wrong:?}");
    // A HEAD that fell back pins the object to batch; a range read that
    // failed passes streaming's 503 through; the rest is streaming's.
    assert!(
        batch >= 1 && streaming >= 1 && errors >= 1,
        "{finals:?}, {errors} errors"
    );
    let m = p.scrape().await;
    let refused = m.route("lake").sequence_refused();
    assert_eq!(refused, errors as f64);
    assert!(m.pinned_reads("batch") >= 1.0);
    // Batch saw only objects it served whole: none it had to finish for streaming.
    for target in bd.seen() {
        let i: usize = target
            .trim_start_matches("/lake/part-")
            .trim_end_matches(".parquet")
            .parse()
            .unwrap();
        assert_eq!(finals[i], Got::Side("batch"), "{target} reached batch");
    }
}

#[tokio::test]
async fn an_open_circuit_diverts_new_objects_only() {
    let (bd, sd) = (Data::new("batch"), Data::new("streaming"));
    let (b, s) = (bd.start().await, sd.start().await);
    let route = lake(&b, &s, "streaming")
        .fallback(json!({ "circuit": { "failures": 2, "cooldown": "1m" } }));
    let p = Proxy::start(route).await;
    let url = p.url("/v1/lake/open.parquet");
    // The reader has the length and the footer from streaming...
    let head = send(Request::head(&url).body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(head.header("x-cutover-served-by"), Some("streaming"));
    let footer = get_with(&url, &[("range", "bytes=-64")]).await;
    assert_eq!(footer.status, 206);
    // ...when streaming fails other reads and its circuit opens.
    sd.failing_paths
        .lock()
        .unwrap()
        .extend(["/lake/a.parquet".to_owned(), "/lake/b.parquet".to_owned()]);
    for other in ["a", "b"] {
        let r = get(&p.url(&format!("/v1/lake/{other}.parquet"))).await;
        assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    }
    assert_eq!(p.scrape().await.route("lake").circuit_open(), 1.0);
    // The object under way stays on streaming; a new one goes to batch.
    let chunk = get_with(&url, &[("range", "bytes=0-99")]).await;
    assert_eq!(chunk.status, 206, "{}", chunk.text());
    assert_eq!(chunk.header("x-cutover-served-by"), Some("streaming"));
    let path = "/lake/open.parquet";
    assert_eq!(&chunk.body[..], &file_bytes("streaming", path)[..100]);
    let new = get(&p.url("/v1/lake/new.parquet")).await;
    assert_eq!(new.header("x-cutover-fallback"), Some("circuit"));
    // The read past the open circuit neither closed it nor was a trial.
    assert_eq!(p.scrape().await.route("lake").circuit_open(), 1.0);
}

#[tokio::test]
async fn a_continuing_read_without_an_answer_says_pinned() {
    let (bd, sd) = (Data::new("batch"), Data::new("streaming"));
    let (b, s) = (bd.start().await, sd.start().await);
    let streaming = Side::new(s.url("/lake")).timeout("300ms");
    let p = Proxy::start(
        Route::new("lake", "/v1/lake", b.url("/lake"), streaming)
            .mode("streaming")
            .quiet(),
    )
    .await;
    let url = p.url("/v1/lake/f.parquet");
    let footer = get_with(&url, &[("range", "bytes=-64")]).await;
    assert_eq!(footer.header("x-cutover-served-by"), Some("streaming"));
    s.set(Behaviour::Hang);
    let chunk = get_with(&url, &[("range", "bytes=0-99")]).await;
    assert_eq!(chunk.status, 504);
    assert_eq!(chunk.header("x-cutover-error"), Some("pinned"));
    assert_eq!(chunk.header("x-cutover-served-by"), Some("streaming"));
    assert_eq!(chunk.header("x-cutover-fallback"), None);
    assert_eq!(
        b.hits(),
        0,
        "batch was asked for a range of streaming's file"
    );
    // A read that starts a sequence still falls back as before.
    let other = get(&p.url("/v1/lake/g.parquet")).await;
    assert_eq!(other.header("x-cutover-fallback"), Some("timeout"));
}

#[tokio::test]
async fn a_rollback_mid_object_refuses_the_rest_of_it() {
    let (bd, sd) = (Data::new("batch"), Data::new("streaming"));
    let (b, s) = (bd.start().await, sd.start().await);
    let p = Proxy::start(lake(&b, &s, "streaming")).await;
    let url = p.url("/v1/lake/f.parquet");
    let footer = get_with(&url, &[("range", "bytes=-64")]).await;
    assert_eq!(footer.header("x-cutover-served-by"), Some("streaming"));
    // The team rolls back to batch while the reader is mid-file.
    Config::from(lake(&b, &s, "batch")).write(&p.path);
    wait_until("the rollback applies", || p.generation() == 2).await;
    let chunk = get_with(&url, &[("range", "bytes=0-99")]).await;
    assert_eq!(chunk.status, 503);
    assert_eq!(chunk.header("x-cutover-error"), Some("pinned"));
    assert_eq!(b.hits(), 0);
    // Reading the object again, from the start, gets batch's whole file.
    let whole = get(&url).await;
    assert_eq!(whole.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(&whole.body[..], &file_bytes("batch", "/lake/f.parquet")[..]);
    let chunk = get_with(&url, &[("range", "bytes=0-99")]).await;
    assert_eq!(chunk.status, 206);
    assert_eq!(chunk.header("x-cutover-served-by"), Some("batch"));
}

#[tokio::test]
async fn pins_are_bounded_and_plain_reads_leave_none() {
    let (bd, sd) = (Data::new("batch"), Data::new("streaming"));
    let (b, s) = (bd.start().await, sd.start().await);
    let p = Proxy::start(Config::new().route(
        lake(&b, &s, "streaming").set("sequence", json!({ "max_pins": 3, "pin_ttl": "5m" })),
    ))
    .await;
    for i in 0..20 {
        let r = get(&p.url(&format!("/v1/lake/plain-{i}"))).await;
        assert_eq!(r.status, 200);
    }
    let pins = |m: &Metrics| m.route("lake").sequence_pins();
    assert_eq!(pins(&p.scrape().await), 0.0, "plain reads were remembered");
    for i in 0..10 {
        let r = get_with(&p.url(&format!("/v1/lake/f{i}")), &[("range", "bytes=0-9")]).await;
        assert_eq!(r.status, 206);
    }
    assert_eq!(pins(&p.scrape().await), 3.0);
}

// ------------------------------------------------------------ listings in pages

/// Twenty listings read to their end by cursor or offset, through canary 50
/// and through streaming failing 30 % of requests: each one side's records
/// exactly, no error (a 5xx page is retried), both sides used, and no side
/// ever handed a cursor it did not issue.
async fn listings_read_to_the_end_on_one_side(by: &str) {
    for (mode, fail_percent) in [("canary", 0), ("streaming", 30)] {
        let (bd, sd) = (Data::new("batch"), Data::new("streaming"));
        let (b, s) = (bd.start().await, sd.start().await);
        sd.fail_percent(fail_percent);
        let p = Proxy::start(lake(&b, &s, mode).canary(json!({ "percent": 50 }))).await;
        let mut results = Vec::new();
        for i in 0..20 {
            results.push(read_listing(&p, &format!("f{i}"), by).await);
        }
        let (batch, streaming, errors, wrong) = counts(&results);
        assert!(wrong.is_empty(), "{by}, {mode}: {wrong:?}");
        assert_eq!(errors, 0, "{by}, {mode}: {results:?}");
        assert!(batch >= 1 && streaming >= 1, "{by}, {mode}: {results:?}");
        assert_eq!(bd.foreign_cursors.load(Ordering::SeqCst), 0, "{by}, {mode}");
        assert_eq!(sd.foreign_cursors.load(Ordering::SeqCst), 0, "{by}, {mode}");
    }
}

#[tokio::test]
async fn cursor_listings_read_to_the_end_on_one_side_through_canary_and_fallback() {
    listings_read_to_the_end_on_one_side("cursor").await;
}

#[tokio::test]
async fn offset_listings_never_skip_or_repeat_a_record() {
    listings_read_to_the_end_on_one_side("offset").await;
}

#[tokio::test]
async fn shadow_sends_streaming_first_pages_only() {
    let (bd, sd) = (Data::new("batch"), Data::new("streaming"));
    let (b, s) = (bd.start().await, sd.start().await);
    let route = Route::new("lake", "/v1/lake", b.url("/lake"), s.url("/lake"))
        .mode("shadow")
        .no_probe();
    let p = Proxy::start(route).await;
    for i in 0..5 {
        assert_eq!(
            read_listing(&p, &format!("f{i}"), "cursor").await,
            Got::Side("batch")
        );
    }
    let (got, _) = read_object(&p, "/v1/lake/f.parquet").await;
    assert_eq!(got, Got::Side("batch"));
    // Streaming saw the five first pages, nothing that continues a
    // sequence (no cursor of batch's, no range), no HEAD (never compared),
    // and the object once whole, for its comparison (a plain GET of its own).
    wait_until("the shadow reads arrive", || sd.seen().len() >= 6).await;
    let seen = sd.seen();
    assert!(seen.iter().all(|t| !t.contains("cursor=")), "{seen:?}");
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("/lake/f.parquet"));
    let heads = s.seen.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .all(|r| r.method == "GET" && !r.headers.contains_key("range")),
        "{heads:?}"
    );
    assert_eq!(sd.foreign_cursors.load(Ordering::SeqCst), 0);
    assert_eq!(bd.foreign_cursors.load(Ordering::SeqCst), 0);
}
