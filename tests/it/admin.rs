//! The admin port's pages for a person: the status page `/` and the
//! effective config `/config`, served by the real proxy on real sockets.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

/// One route with a few settings of its own, the rest left to defaults.
async fn proxy() -> (Backend, Backend, Proxy) {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::ok("streaming")).await;
    let config = Config::new().consumer("billing-dashboard").route(
        Route::orders(
            Side::new(batch.url("/tables/orders")).timeout("5s"),
            Side::new(streaming.url("/v1/orders")).max_inflight(64),
        )
        .mode("canary")
        .canary(json!({ "percent": 25, "sticky_header": "x-customer-id" }))
        .fallback(json!({ "max_staleness": "10m", "circuit": { "failures": 3 } }))
        .reconcile(json!({ "records": "/data", "key": "id", "divergence_log": "div.jsonl" }))
        .no_probe(),
    );
    let proxy = Proxy::start(config).await;
    (batch, streaming, proxy)
}

async fn head(url: &str) -> Answer {
    send(
        Request::head(url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn the_status_page_is_html_that_fetches_status_and_nothing_from_outside() {
    let (_b, _s, p) = proxy().await;
    let page = get(&p.admin_url("/")).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    // Relative to `/`, `status` is `/status` (relative so that a proxy
    // serving the admin port under a path still works).
    assert!(html.contains(r#"const STATUS_URL = "status";"#), "{html}");
    assert!(html.contains("fetch(STATUS_URL"), "{html}");
    assert!(html.contains("cannot reach /status"), "{html}");
    for external in [
        "http://",
        "https://",
        "//cdn",
        "<script src",
        "<link rel=\"stylesheet\"",
    ] {
        assert!(!html.contains(external), "the page loads `{external}`");
    }
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    p.stop().await;
}

/// The page reads these keys of `/status`; each must be in the document, so
/// that a rename on either side fails here rather than showing `-` forever.
#[tokio::test]
async fn every_status_field_the_page_reads_is_in_the_status_document() {
    let (_b, _s, p) = proxy().await;
    let html = get(&p.admin_url("/")).await.text();
    let doc = p.status_json().await;
    for key in [
        "consumer",
        "risk",
        "listen",
        "admin",
        "config",
        "last_reload",
        "routes",
    ] {
        assert!(doc.get(key).is_some(), "/status lacks {key}");
        assert!(
            html.contains(&format!(".{key}")),
            "the page never reads {key}"
        );
    }
    for key in ["path", "generation", "sha256"] {
        assert!(
            doc["config"].get(key).is_some(),
            "/status lacks config.{key}"
        );
        assert!(
            html.contains(&format!(".{key}")),
            "the page never reads {key}"
        );
    }
    for key in ["result", "error", "at", "restart_needed"] {
        assert!(
            doc["last_reload"].get(key).is_some(),
            "/status lacks last_reload.{key}"
        );
        assert!(
            html.contains(&format!(".{key}")),
            "the page never reads {key}"
        );
    }
    let route = &doc["routes"][0];
    for key in [
        "name",
        "dataset",
        "path_prefix",
        "configured_mode",
        "effective_mode",
        "circuit",
        "canary_percent",
        "reads",
        "fallbacks",
        "fallbacks_by_reason",
        "fallback_rate",
        "window_seconds",
        "data_age_seconds",
        "freshness_delta_seconds",
        "error_ratio",
        "error_ratio_delta",
        "divergence_ratio",
        "comparisons",
    ] {
        assert!(route.get(key).is_some(), "/status lacks routes[].{key}");
        assert!(
            html.contains(&format!(".{key}")),
            "the page never reads {key}"
        );
    }
    // Not in /status yet (issue 10): shown once it is, nothing until then.
    assert!(html.contains("route.gate"), "the page reads a route's gate");
    p.stop().await;
}

#[tokio::test]
async fn config_is_the_effective_config_and_compiles_to_the_same_values() {
    let (_b, _s, p) = proxy().await;
    let answer = get(&p.admin_url("/config")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let text = answer.text();
    // Defaults filled in, durations as a person writes them.
    for line in [
        "consumer: billing-dashboard",
        "shutdown_grace: 10s",
        "    mode: canary",
        "      connect_timeout: 250ms",
        "      timeout: 5s",
        "      max_inflight: 64",
        "      percent: 25",
        "      sticky_header: x-customer-id",
        "      max_staleness: 10m",
        "        failures: 3",
        "        cooldown: 30s",
        "      window: 5m",
        "      probe_interval: off",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    let generation = p.generation();
    assert!(
        text.contains(&format!("# generation {generation}, sha256 ")),
        "{text}"
    );

    // Written elsewhere and compiled again, it gives the values that serve.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("effective.yaml");
    std::fs::write(&copy, &text).expect("write");
    let again = cutover::config::compile_str(&copy, &text, generation)
        .unwrap_or_else(|e| panic!("/config does not compile:\n{e}\n{text}"));
    let running = p.running.as_ref().expect("running");
    let snap = running.app.live.snapshot.load();
    let serving: Vec<&cutover::config::Route> = snap.routes.iter().map(|r| &r.config).collect();
    let compiled: Vec<&cutover::config::Route> = again.routes.iter().collect();
    // The config types have no PartialEq; Debug shows every field exactly.
    assert_eq!(
        format!("{:#?}", again.settings),
        format!("{:#?}", snap.settings)
    );
    assert_eq!(format!("{compiled:#?}"), format!("{serving:#?}"));
    drop(snap);

    // And `cutover check` accepts it.
    let (code, stderr) = run_to_exit(&["check".as_ref(), "-c".as_ref(), copy.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    p.stop().await;
}

#[tokio::test]
async fn head_answers_the_headers_without_a_body() {
    let (_b, _s, p) = proxy().await;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/config", "text/plain; charset=utf-8"),
    ] {
        let full = get(&p.admin_url(path)).await;
        let h = head(&p.admin_url(path)).await;
        assert_eq!(h.status, 200, "HEAD {path}");
        assert_eq!(h.header("content-type"), Some(content_type), "HEAD {path}");
        assert!(h.body.is_empty(), "HEAD {path} answered a body");
        assert_eq!(
            h.header("content-length"),
            Some(full.body.len().to_string().as_str()),
            "HEAD {path}"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn unknown_admin_paths_are_404_and_name_every_endpoint() {
    let (_b, _s, p) = proxy().await;
    for path in ["/nope", "/index.html", "/config/", "/status/x"] {
        let r = get(&p.admin_url(path)).await;
        assert_eq!(r.status, 404, "{path}");
        let text = r.text();
        for endpoint in [
            "/ ", "/status", "/config", "/metrics", "/healthz", "/readyz",
        ] {
            assert!(
                text.contains(endpoint),
                "404 for {path} lacks `{endpoint}`: {text}"
            );
        }
    }
    let r = post(&p.admin_url("/"), "x").await;
    assert_eq!(r.status, 405);
    p.stop().await;
}
