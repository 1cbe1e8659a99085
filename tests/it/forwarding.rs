//! Batch mode is transparent (SPEC 1.2): the forwarded headers every
//! upstream read carries, redirects into a side led back through cutover,
//! and validators that never cross sides, before and after a rollback.
//! Real sockets on 127.0.0.1:0, the real proxy, fake backends only.

use crate::support::*;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use serde_json::json;

/// The Host the consumer sends in these tests (not a token: `host=` quoted).
const HOST: &str = "consumer.local:8080";

/// A single-route config in `mode`, quiet: no probe, no sampled reads.
fn quiet(batch: &Backend, streaming: &Backend, mode: &str) -> Route {
    Route::orders(batch.url("/t"), streaming.url("/s"))
        .mode(mode)
        .quiet()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ASCII"))
        .collect()
}

/// Asserts the forwarded headers one upstream read carried.
fn assert_forwarded(seen: &Seen, what: &str) {
    let h = &seen.headers;
    assert_eq!(header(h, "x-forwarded-host"), [HOST], "{what}: {h:?}");
    assert_eq!(header(h, "x-forwarded-proto"), ["http"], "{what}: {h:?}");
    assert_eq!(
        header(h, "x-forwarded-prefix"),
        ["/v1/orders"],
        "{what}: {h:?}"
    );
    assert_eq!(header(h, "x-forwarded-for"), ["127.0.0.1"], "{what}: {h:?}");
    assert_eq!(
        header(h, "forwarded"),
        ["for=127.0.0.1;host=\"consumer.local:8080\";proto=http"],
        "{what}: {h:?}"
    );
    // `Host` names the upstream, never the consumer's host.
    assert_ne!(header(h, "host"), [HOST], "{what}");
}

// ---------------------------------------------------------------- forwarded

#[tokio::test]
async fn every_upstream_read_carries_the_forwarded_headers() {
    let b = Backend::start(Behaviour::ok("batch")).await;
    let s = Backend::start(Behaviour::ok("streaming")).await;

    // Batch mode.
    let p = Proxy::start(quiet(&b, &s, "batch")).await;
    let r = get_with(&p.url("/v1/orders/1"), &[("host", HOST)]).await;
    assert_eq!(r.text(), "batch");
    assert_forwarded(&b.last().expect("batch read"), "batch");
    p.stop().await;

    // Streaming mode.
    let p = Proxy::start(quiet(&b, &s, "streaming")).await;
    let r = get_with(&p.url("/v1/orders/1"), &[("host", HOST)]).await;
    assert_eq!(r.text(), "streaming");
    assert_forwarded(&s.last().expect("streaming read"), "streaming");

    // A fallback: the batch read after streaming's 503 carries them too.
    s.set(Behaviour::Status(503));
    let batch_hits = b.hits();
    let r = get_with(&p.url("/v1/orders/1"), &[("host", HOST)]).await;
    assert_eq!(
        r.header("x-cutover-fallback"),
        Some("5xx"),
        "{:?}",
        r.headers
    );
    assert_eq!(b.hits(), batch_hits + 1);
    assert_forwarded(
        &s.last().expect("streaming attempt"),
        "failed streaming attempt",
    );
    assert_forwarded(&b.last().expect("fallback read"), "fallback");
    p.stop().await;

    // Shadow mode: the shadow read to streaming as well.
    s.set(Behaviour::ok("streaming"));
    let streaming_hits = s.hits();
    let p = Proxy::start(
        Route::orders(b.url("/t"), s.url("/s"))
            .mode("shadow")
            .no_probe(),
    )
    .await;
    let r = get_with(&p.url("/v1/orders/1"), &[("host", HOST)]).await;
    assert_eq!(r.text(), "batch");
    assert_forwarded(&b.last().expect("batch read"), "shadow's batch read");
    wait_until("streaming gets the shadow read", || {
        s.hits() == streaming_hits + 1
    })
    .await;
    assert_forwarded(&s.last().expect("shadow read"), "shadow read");
    p.stop().await;
}

#[tokio::test]
async fn a_consumers_forwarded_values_are_replaced_and_its_chain_kept() {
    let b = Backend::start(Behaviour::ok("batch")).await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(quiet(&b, &s, "batch")).await;
    get_with(
        &p.url("/v1/orders/1"),
        &[
            ("host", "plain.local"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-prefix", "/elsewhere"),
            ("forwarded", "for=10.0.0.7;proto=https"),
        ],
    )
    .await;
    let seen = b.last().expect("batch read");
    let h = &seen.headers;
    assert_eq!(header(h, "x-forwarded-host"), ["plain.local"]);
    assert_eq!(header(h, "x-forwarded-proto"), ["http"]);
    assert_eq!(header(h, "x-forwarded-prefix"), ["/v1/orders"]);
    // A token host goes unquoted; the earlier hop's element stays first.
    assert_eq!(
        header(h, "forwarded"),
        [
            "for=10.0.0.7;proto=https",
            "for=127.0.0.1;host=plain.local;proto=http"
        ]
    );
    p.stop().await;
}

#[tokio::test]
async fn a_root_route_forwards_an_empty_prefix() {
    let b = Backend::start(Behaviour::ok("batch")).await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(
        Route::new("all", "/", b.url("/t"), s.url("/s"))
            .mode("batch")
            .quiet(),
    )
    .await;
    get(&p.url("/x")).await;
    let seen = b.last().expect("batch read");
    assert_eq!(header(&seen.headers, "x-forwarded-prefix"), [""]);
    assert_eq!(
        header(&seen.headers, "x-forwarded-host"),
        [p.listen.to_string().as_str()]
    );
    p.stop().await;
}

/// A listing whose pages link to the next one the way web frameworks build
/// links: `{proto}://{x-forwarded-host}{x-forwarded-prefix}/items?page=N`.
fn paged_listing(pages: u32) -> Behaviour {
    Behaviour::custom(move |req: Request<Bytes>| async move {
        let h = req.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let page: u32 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("page="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let next = (page < pages).then(|| {
            format!(
                "{}://{}{}/items?page={}",
                get("x-forwarded-proto"),
                get("x-forwarded-host"),
                get("x-forwarded-prefix"),
                page + 1
            )
        });
        let body = json!({ "page": page, "path": req.uri().path(), "next": next });
        Response::new(full_body(body.to_string()))
    })
}

#[tokio::test]
async fn next_links_built_from_the_forwarded_headers_lead_back_through_cutover() {
    let b = Backend::start(paged_listing(4)).await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(quiet(&b, &s, "batch")).await;
    let mut url = p.url("/v1/orders/items");
    let mut pages = Vec::new();
    for _ in 0..10 {
        let r = get(&url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        assert_eq!(
            r.header("x-cutover-served-by"),
            Some("batch"),
            "{url} passed cutover"
        );
        let page = r.json();
        assert_eq!(page["path"], "/t/items", "{page}");
        pages.push(page["page"].as_u64().expect("page number"));
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, [1, 2, 3, 4]);
    assert_eq!(b.hits(), 4);
    p.stop().await;
}

// ---------------------------------------------------------------- redirects

/// Redirects by the read's last segment: into the side (absolute with the
/// side's own address, as the backend's `Host` names it, or an absolute
/// path), outside its base path, at another host; and a `Content-Location`.
fn redirecting(base: &'static str) -> Behaviour {
    Behaviour::custom(move |req: Request<Bytes>| async move {
        let own = req
            .headers()
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let last = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
        let (status, name, value) = match last.as_str() {
            "absolute" => (302, "location", format!("http://{own}{base}/x?q=1")),
            "path" => (301, "location", format!("{base}/x?q=1")),
            "outside" => (302, "location", "/other/x".to_owned()),
            "sibling" => (302, "location", format!("{base}2/x")),
            "elsewhere" => (302, "location", format!("http://example.com{base}/x")),
            "content" => (200, "content-location", format!("{base}/x.json")),
            _ => (200, "x-plain", "1".to_owned()),
        };
        let mut r = Response::new(full_body(format!("{last}\n")));
        *r.status_mut() = StatusCode::from_u16(status).expect("status");
        r.headers_mut()
            .insert(name, value.parse().expect("header value"));
        r
    })
}

#[tokio::test]
async fn locations_into_the_serving_side_are_rewritten_and_others_pass() {
    let b = Backend::start(redirecting("/t")).await;
    let s = Backend::start(redirecting("/s")).await;
    for mode in ["batch", "streaming"] {
        let p = Proxy::start(quiet(&b, &s, mode)).await;
        let at = |path: &str| p.url(&format!("/v1/orders/{path}"));
        let h = [("host", HOST)];
        let r = get_with(&at("absolute"), &h).await;
        assert_eq!(r.status, 302, "{mode}");
        assert_eq!(
            r.header("location"),
            Some("http://consumer.local:8080/v1/orders/x?q=1"),
            "{mode}"
        );
        let r = get_with(&at("path"), &h).await;
        assert_eq!(r.header("location"), Some("/v1/orders/x?q=1"), "{mode}");
        let r = get_with(&at("content"), &h).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-location"),
            Some("/v1/orders/x.json"),
            "{mode}"
        );
        let base = if mode == "batch" { "/t" } else { "/s" };
        let r = get_with(&at("outside"), &h).await;
        assert_eq!(r.header("location"), Some("/other/x"), "{mode}");
        let r = get_with(&at("sibling"), &h).await;
        assert_eq!(
            r.header("location"),
            Some(format!("{base}2/x").as_str()),
            "{mode}"
        );
        let r = get_with(&at("elsewhere"), &h).await;
        assert_eq!(
            r.header("location"),
            Some(format!("http://example.com{base}/x").as_str()),
            "{mode}"
        );
        p.stop().await;
    }
}

#[tokio::test]
async fn an_absolute_redirect_followed_stays_on_cutover() {
    let b = Backend::start(redirecting("/t")).await;
    let s = Backend::start(Behaviour::ok("never")).await;
    let p = Proxy::start(quiet(&b, &s, "batch")).await;
    // The consumer's Host is the proxy's address, as a client sends it.
    let r = get(&p.url("/v1/orders/absolute")).await;
    let location = r.header("location").expect("location").to_owned();
    assert_eq!(location, p.url("/v1/orders/x?q=1"));
    let followed = get(&location).await;
    assert_eq!(followed.status, 200, "{}", followed.text());
    assert_eq!(followed.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(b.last().expect("read").uri, "/t/x?q=1");
    p.stop().await;
}

// ---------------------------------------------------------------- validators

/// One version of an object: its body, `ETag` and `Last-Modified`, judged
/// as an origin judges conditional reads (RFC 9110 13.2.2 order), and a
/// `Range` read answered `206` with the bytes asked for.
fn versioned(body: &'static str, tag: &'static str, last_modified: &'static str) -> Behaviour {
    Behaviour::custom(move |req: Request<Bytes>| async move {
        let h = req.headers();
        let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        let date = |s: &str| httpdate::parse_http_date(s).ok();
        let lm = date(last_modified).expect("a valid Last-Modified");
        let tags = |v: &str| -> Vec<String> {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/").to_owned())
                .collect()
        };
        let answer = |status: u16, body: &'static str| {
            let mut r = Response::new(full_body(body));
            *r.status_mut() = StatusCode::from_u16(status).expect("status");
            r.headers_mut().insert("etag", tag.parse().expect("etag"));
            r.headers_mut()
                .insert("last-modified", last_modified.parse().expect("date"));
            r
        };
        if let Some(m) = text("if-match") {
            if m != "*" && !tags(m).iter().any(|t| t == tag) {
                return answer(412, "");
            }
        } else if let Some(since) = text("if-unmodified-since").and_then(date)
            && lm > since
        {
            return answer(412, "");
        }
        if let Some(none) = text("if-none-match") {
            if none == "*" || tags(none).iter().any(|t| t == tag) {
                return answer(304, "");
            }
        } else if let Some(since) = text("if-modified-since").and_then(date)
            && lm <= since
        {
            return answer(304, "");
        }
        let range_holds = match text("if-range") {
            None => true,
            Some(v) if v.starts_with('"') => v == tag,
            Some(v) => date(v) == Some(lm),
        };
        if let Some(range) = text("range").and_then(|r| r.strip_prefix("bytes="))
            && range_holds
        {
            let (from, to) = range.split_once('-').expect("a from-to range");
            let (from, to): (usize, usize) = (from.parse().unwrap(), to.parse().unwrap());
            let mut r = answer(206, &body[from..=to.min(body.len() - 1)]);
            r.headers_mut().insert(
                "content-range",
                format!("bytes {from}-{to}/{}", body.len()).parse().unwrap(),
            );
            return r;
        }
        answer(200, body)
    })
}

/// The same ETag on both sides (an mtime-and-size tag after `rsync -t`),
/// different bytes; streaming's data a day newer than batch's.
const TAG: &str = "\"v1\"";
const BATCH_LM: &str = "Sun, 01 Mar 2026 10:00:00 GMT";
const STREAMING_LM: &str = "Mon, 02 Mar 2026 10:00:00 GMT";

async fn versioned_sides() -> (Backend, Backend) {
    (
        Backend::start(versioned("batch's bytes", TAG, BATCH_LM)).await,
        Backend::start(versioned("streaming's bytes", TAG, STREAMING_LM)).await,
    )
}

/// Replaces the config the way an editor's save does (a new file renamed
/// over the old) and waits until the proxy serves it.
async fn reload(p: &Proxy, config: impl Into<Config>) {
    let before = p.generation();
    let tmp = p.path.with_extension("new");
    config.into().write(&tmp);
    std::fs::rename(&tmp, &p.path).expect("rename over the config");
    wait_until("the edited config serves", || p.generation() > before).await;
}

fn seen_header(seen: &Seen, name: &str) -> Option<String> {
    seen.headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII").to_owned())
}

/// A consumer that read from streaming in streaming mode, then the route
/// rolled back to batch: the proxy, and streaming's `ETag` as it was served.
async fn read_from_streaming_then_roll_back(b: &Backend, s: &Backend) -> (Proxy, String) {
    let p = Proxy::start(quiet(b, s, "streaming")).await;
    let r = get(&p.url("/v1/orders/o.parquet")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "streaming's bytes"));
    let etag = r.header("etag").expect("streaming's etag").to_owned();
    assert_eq!(etag, "\"v1~streaming\"", "streaming's tag is marked");
    assert_eq!(r.header("last-modified"), Some(STREAMING_LM));

    // Before the rollback streaming judges its own validators: 304.
    let r = get_with(&p.url("/v1/orders/o.parquet"), &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        seen_header(&s.last().expect("read"), "if-none-match").as_deref(),
        Some(TAG)
    );
    let r = get_with(
        &p.url("/v1/orders/o.parquet"),
        &[("if-modified-since", STREAMING_LM)],
    )
    .await;
    assert_eq!(r.status, 304);

    reload(&p, quiet(b, s, "batch")).await;
    (p, etag)
}

/// Asserts a read after the rollback got batch's whole answer.
fn assert_batchs_full_answer(r: &Answer, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(r.text(), "batch's bytes", "{what}");
    assert_eq!(r.header("etag"), Some(TAG), "{what}: batch's tag, unmarked");
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"), "{what}");
}

#[tokio::test]
async fn after_a_rollback_streamings_etag_gets_batchs_full_answer_never_a_304() {
    let (b, s) = versioned_sides().await;
    let (p, etag) = read_from_streaming_then_roll_back(&b, &s).await;
    assert_eq!(b.hits(), 0, "batch was never read before the rollback");

    let r = get_with(&p.url("/v1/orders/o.parquet"), &[("if-none-match", &etag)]).await;
    assert_batchs_full_answer(&r, "If-None-Match");
    assert_eq!(
        seen_header(&b.last().expect("batch read"), "if-none-match"),
        None
    );

    // A list with both sides' tags: batch gets its own only.
    let both = format!("{etag}, \"other\"");
    get_with(&p.url("/v1/orders/o.parquet"), &[("if-none-match", &both)]).await;
    assert_eq!(
        seen_header(&b.last().expect("batch read"), "if-none-match").as_deref(),
        Some("\"other\"")
    );

    // Batch's own tag, now held by the consumer, is judged by batch.
    let r = get_with(&p.url("/v1/orders/o.parquet"), &[("if-none-match", TAG)]).await;
    assert_eq!(r.status, 304);
    p.stop().await;
}

#[tokio::test]
async fn after_a_rollback_streamings_last_modified_gets_batchs_full_answer() {
    let (b, s) = versioned_sides().await;
    let (p, _) = read_from_streaming_then_roll_back(&b, &s).await;
    // Batch's data is older than streaming's date: judged against it,
    // batch would answer 304 and the consumer keep streaming's bytes.
    let r = get_with(
        &p.url("/v1/orders/o.parquet"),
        &[("if-modified-since", STREAMING_LM)],
    )
    .await;
    assert_batchs_full_answer(&r, "If-Modified-Since");
    assert_eq!(
        seen_header(&b.last().expect("batch read"), "if-modified-since"),
        None
    );
    // Batch's own date (it served it just now) is batch's to judge.
    let r = get_with(
        &p.url("/v1/orders/o.parquet"),
        &[("if-modified-since", BATCH_LM)],
    )
    .await;
    assert_eq!(r.status, 304);
    p.stop().await;
}

#[tokio::test]
async fn after_a_rollback_preconditions_on_streamings_validators_fail() {
    let (b, s) = versioned_sides().await;
    let (p, etag) = read_from_streaming_then_roll_back(&b, &s).await;
    // If-Match: the tag batch would match (the same "v1") never reaches it;
    // a tag no side issued does, and batch answers 412 as for any unknown tag.
    let r = get_with(
        &p.url("/v1/orders/o.parquet"),
        &[("if-match", &etag), ("range", "bytes=0-3")],
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(
        seen_header(&b.last().expect("batch read"), "if-match").as_deref(),
        Some("\"cutover-foreign-validator\"")
    );
    // If-Unmodified-Since with streaming's date: batch was not modified
    // since it (its data is older) and would send its bytes as if they
    // were the consumer's version; the epoch stands in instead.
    let r = get_with(
        &p.url("/v1/orders/o.parquet"),
        &[
            ("if-unmodified-since", STREAMING_LM),
            ("range", "bytes=0-3"),
        ],
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(
        seen_header(&b.last().expect("batch read"), "if-unmodified-since").as_deref(),
        Some("Thu, 01 Jan 1970 00:00:00 GMT")
    );
    p.stop().await;
}

#[tokio::test]
async fn after_a_rollback_if_range_with_streamings_validator_gets_the_whole_object() {
    let (b, s) = versioned_sides().await;
    let (p, etag) = read_from_streaming_then_roll_back(&b, &s).await;
    for validator in [etag.as_str(), STREAMING_LM] {
        let r = get_with(
            &p.url("/v1/orders/o.parquet"),
            &[("if-range", validator), ("range", "bytes=0-3")],
        )
        .await;
        assert_batchs_full_answer(&r, validator);
        let seen = b.last().expect("batch read");
        assert_eq!(seen_header(&seen, "range"), None, "{validator}");
        assert_eq!(seen_header(&seen, "if-range"), None, "{validator}");
    }
    // Batch's own validator keeps the range.
    let r = get_with(
        &p.url("/v1/orders/o.parquet"),
        &[("if-range", TAG), ("range", "bytes=0-3")],
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (206, "batc"));
    p.stop().await;
}

#[tokio::test]
async fn streaming_judges_only_its_own_validators() {
    let (b, s) = versioned_sides().await;
    let p = Proxy::start(quiet(&b, &s, "streaming")).await;
    let url = p.url("/v1/orders/o.parquet");
    // Batch's unmarked tag and a date streaming never served (a consumer
    // that read from batch before the cutover): the whole object.
    let r = get_with(&url, &[("if-none-match", TAG)]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "streaming's bytes"));
    assert_eq!(seen_header(&s.last().expect("read"), "if-none-match"), None);
    let r = get_with(&url, &[("if-modified-since", BATCH_LM)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        seen_header(&s.last().expect("read"), "if-modified-since"),
        None
    );
    let r = get_with(&url, &[("if-range", BATCH_LM), ("range", "bytes=0-3")]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "streaming's bytes"));
    let r = get_with(&url, &[("if-match", TAG)]).await;
    assert_eq!(r.status, 412);
    // Its own, as it served them (it served STREAMING_LM just now).
    let marked = "\"v1~streaming\"";
    let r = get_with(&url, &[("if-range", marked), ("range", "bytes=0-3")]).await;
    assert_eq!((r.status, r.text().as_str()), (206, "stre"));
    let r = get_with(&url, &[("if-match", marked)]).await;
    assert_eq!(r.status, 200);
    let r = get_with(&url, &[("if-unmodified-since", STREAMING_LM)]).await;
    assert_eq!(r.status, 200);
    let r = get_with(&url, &[("if-range", STREAMING_LM), ("range", "bytes=0-3")]).await;
    assert_eq!(r.status, 206);
    p.stop().await;
}

#[tokio::test]
async fn in_batch_mode_validators_and_304s_pass_exactly_as_direct() {
    let (b, s) = versioned_sides().await;
    let p = Proxy::start(quiet(&b, &s, "batch")).await;
    let conditional: [&[(&str, &str)]; 6] = [
        &[],
        &[("if-none-match", TAG)],
        &[("if-modified-since", BATCH_LM)],
        &[("if-match", "\"stale\"")],
        &[("if-unmodified-since", "Sat, 28 Feb 2026 10:00:00 GMT")],
        &[("if-range", TAG), ("range", "bytes=0-3")],
    ];
    for headers in conditional {
        let direct = get_with(&b.url("/t/o.parquet"), headers).await;
        let direct_seen = b.last().expect("direct read");
        let proxied = get_with(&p.url("/v1/orders/o.parquet"), headers).await;
        let proxied_seen = b.last().expect("proxied read");
        assert_eq!(proxied.status, direct.status, "{headers:?}");
        assert_eq!(proxied.body, direct.body, "{headers:?}");
        for name in ["etag", "last-modified", "content-range"] {
            assert_eq!(
                proxied.header(name),
                direct.header(name),
                "{headers:?} {name}"
            );
        }
        for name in [
            "if-none-match",
            "if-modified-since",
            "if-match",
            "if-unmodified-since",
            "if-range",
            "range",
        ] {
            assert_eq!(
                seen_header(&proxied_seen, name),
                seen_header(&direct_seen, name),
                "{headers:?} {name}"
            );
        }
    }
    assert_eq!(s.hits(), 0);
    p.stop().await;
}
