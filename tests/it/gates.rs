//! Gates end to end: the real proxy, real backends on 127.0.0.1:0, gates
//! evaluated every 100 ms over a 1 s window. A trip is seen through reads
//! (`x-cutover-served-by`), `/status` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

const ROUTE_PATH: &str = "/v1/orders/7";

/// A fast gate: every 100 ms over 1 s, tripping after two bad evaluations
/// with at least five streaming reads. `thresholds` is merged in.
fn gate(thresholds: Value) -> Value {
    let mut g = json!({ "interval": "100ms", "window": "1s", "failures": 2, "min_reads": 5 });
    for (k, v) in thresholds.as_object().expect("a map of thresholds") {
        g[k] = v.clone();
    }
    g
}

/// `orders` in streaming mode, no probes, no sampled comparisons, with `gate`.
fn gated(batch: &Backend, streaming: &Backend, gate: Value) -> Route {
    Route::orders(batch.url("/tables/orders"), streaming.url("/v1/orders"))
        .mode("streaming")
        .quiet()
        .gate(gate)
}

/// The `gate` object of route `name` on `/status`.
async fn gate_of(p: &Proxy, name: &str) -> Value {
    let st = p.status_json().await;
    st["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("route {name} in {st:#}"))["gate"]
        .clone()
}

/// Reads until the orders gate trips (reads keep the window fed); returns
/// the gate as `/status` shows it then.
async fn read_until_tripped(p: &Proxy) -> Value {
    let url = p.url(ROUTE_PATH);
    wait_until_async("the gate trips", || {
        let url = url.clone();
        async move {
            let _ = try_get(&url).await;
            let g = gate_of(p, "orders").await;
            if g["state"] == "tripped" {
                Ok(g)
            } else {
                Err(g.to_string())
            }
        }
    })
    .await
}

/// Batch with records 1 and 2, streaming missing 2 (every comparison
/// diverges), and `orders` comparing every read, gated by `thresholds`.
async fn diverging(thresholds: Value) -> (Backend, Backend, Route) {
    let batch = Backend::start(Behaviour::ok(r#"{"data":[{"id":1},{"id":2}]}"#)).await;
    let streaming = Backend::start(Behaviour::ok(r#"{"data":[{"id":1}]}"#)).await;
    let route = gated(&batch, &streaming, gate(thresholds))
        .reconcile(json!({ "sample": 1, "records": "/data", "key": "id" }));
    (batch, streaming, route)
}

async fn served_by(p: &Proxy) -> String {
    let r = get(&p.url(ROUTE_PATH)).await;
    assert_eq!(r.status, 200, "read failed: {}", r.text());
    r.header("x-cutover-served-by").unwrap_or("").to_owned()
}

/// After a trip to batch: batch serves, streaming sees nothing, and
/// `/status` and `/metrics` say so.
async fn assert_rolled_back(p: &Proxy, streaming: &Backend, check: &'static str) {
    let before = streaming.hits();
    for _ in 0..3 {
        assert_eq!(served_by(p).await, "batch");
    }
    assert_eq!(
        streaming.hits(),
        before,
        "a tripped gate sends nothing to streaming"
    );
    let st = p.status_json().await;
    let r = &st["routes"][0];
    assert_eq!(r["effective_mode"], "batch", "{st:#}");
    assert_eq!(r["configured_mode"], "streaming", "{st:#}");
    assert_eq!(r["gate"]["trip"]["check"], check, "{st:#}");
    let m = p.scrape().await;
    assert_eq!(m.route("orders").gate_tripped(), 1.0);
    assert_eq!(m.route("orders").gate_trips(check), 1.0, "{}", m.text);
    assert!(m.route("orders").gate_checks("fail") >= 2.0);
    assert_eq!(m.route("orders").route_mode("batch"), 1.0);
    assert_eq!(m.route("orders").route_mode("streaming"), 0.0);
}

#[tokio::test]
async fn fallback_ratio_trips_on_its_own() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::Status(503)).await;
    let p = Proxy::start(gated(
        &batch,
        &streaming,
        gate(json!({ "max_fallback_ratio": 0.5 })),
    ))
    .await;
    let g = read_until_tripped(&p).await;
    assert_eq!(g["trip"]["check"], "fallback_ratio", "{g:#}");
    assert_eq!(g["trip"]["value"], 1.0, "{g:#}");
    assert_eq!(g["trip"]["threshold"], 0.5, "{g:#}");
    assert!(
        g["trip"]["at"].as_str().is_some_and(|t| t.contains('T')),
        "RFC 3339: {g:#}"
    );
    assert_eq!(g["checks"]["fallback_ratio"]["verdict"], "fail", "{g:#}");
    assert_eq!(g["rollback_to"], "batch", "{g:#}");
    assert_rolled_back(&p, &streaming, "fallback_ratio").await;

    // `cutover status`: a GATE column, the trip explained, exit code 1.
    let admin = p.admin_url("");
    let out = within(tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["status", "--admin", &admin])
            .output()
            .expect("cutover status runs")
    }))
    .await
    .expect("status task");
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let head = table
        .lines()
        .find(|l| l.starts_with("ROUTE"))
        .expect("heading");
    assert!(head.ends_with("GATE"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("orders "))
        .expect("orders row");
    assert!(
        row.contains(" batch* ") && row.ends_with(" tripped"),
        "{table}"
    );
    assert!(table.contains("orders: gate tripped at "), "{table}");
    p.stop().await;
}

#[tokio::test]
async fn error_ratio_delta_trips_on_its_own() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::Status(503)).await;
    // No fallback on 5xx and no circuit: streaming's 503s reach the
    // consumer, and batch is never asked (it counts as 0 errors).
    let route = gated(
        &batch,
        &streaming,
        gate(json!({ "max_error_ratio_delta": 0.2 })),
    )
    .fallback(json!({ "on": ["connect"], "circuit": { "failures": 0, "cooldown": "1s" } }));
    let p = Proxy::start(route).await;
    assert_eq!(get(&p.url(ROUTE_PATH)).await.status, 503);
    let g = read_until_tripped(&p).await;
    assert_eq!(g["trip"]["check"], "error_ratio_delta", "{g:#}");
    assert_eq!(g["trip"]["value"], 1.0, "{g:#}");
    assert_rolled_back(&p, &streaming, "error_ratio_delta").await;
    p.stop().await;
}

#[tokio::test]
async fn divergence_ratio_trips_on_its_own() {
    let (_batch, streaming, route) = diverging(json!({ "max_divergence_ratio": 0.1 })).await;
    let p = Proxy::start(route).await;
    assert_eq!(served_by(&p).await, "streaming");
    let g = read_until_tripped(&p).await;
    assert_eq!(g["trip"]["check"], "divergence_ratio", "{g:#}");
    assert!(
        g["checks"]["divergence_ratio"]["sample"].as_u64() >= Some(5),
        "{g:#}"
    );
    let st = p.status_json().await;
    assert_eq!(st["routes"][0]["effective_mode"], "batch", "{st:#}");
    // Batch serves, and with rollback_to batch nothing is compared any more.
    let streaming_hits = streaming.hits();
    assert_eq!(served_by(&p).await, "batch");
    assert_eq!(streaming.hits(), streaming_hits);
    p.stop().await;
}

#[tokio::test]
async fn streaming_age_trips_on_its_own() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::aged("streaming", Duration::from_secs(3600))).await;
    let p = Proxy::start(gated(
        &batch,
        &streaming,
        gate(json!({ "max_streaming_age": "10m" })),
    ))
    .await;
    assert_eq!(
        served_by(&p).await,
        "streaming",
        "no max_staleness: old data is served"
    );
    let g = read_until_tripped(&p).await;
    assert_eq!(g["trip"]["check"], "streaming_age", "{g:#}");
    assert_eq!(g["trip"]["threshold"], 600.0, "{g:#}");
    assert!(g["trip"]["value"].as_f64() >= Some(3600.0), "{g:#}");
    assert_rolled_back(&p, &streaming, "streaming_age").await;
    p.stop().await;
}

#[tokio::test]
async fn thin_traffic_never_trips() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::Status(503)).await;
    let thresholds =
        json!({ "max_fallback_ratio": 0.1, "max_error_ratio_delta": 0.1, "min_reads": 50 });
    let p = Proxy::start(gated(&batch, &streaming, gate(thresholds))).await;
    for _ in 0..10 {
        assert_eq!(get(&p.url(ROUTE_PATH)).await.status, 200);
    }
    // Ten evaluations (two checks each) see 10 of the 50 reads needed.
    let m = wait_until_async("ten evaluations ran", || async {
        let m = p.scrape().await;
        let inconclusive = m.route("orders").gate_checks("inconclusive");
        if inconclusive >= 20.0 {
            Ok(m)
        } else {
            Err(format!("{inconclusive} inconclusive"))
        }
    })
    .await;
    assert_eq!(m.route("orders").gate_checks("fail"), 0.0);
    assert_eq!(m.route("orders").gate_tripped(), 0.0);
    let g = gate_of(&p, "orders").await;
    assert_eq!(g["state"], "armed", "{g:#}");
    assert_eq!(
        g["checks"]["fallback_ratio"]["verdict"], "inconclusive",
        "{g:#}"
    );
    assert!(
        g["checks"]["fallback_ratio"]["sample"].as_u64() <= Some(10),
        "{g:#}"
    );
    assert_eq!(g["consecutive_failures"], 0, "{g:#}");
    p.stop().await;
}

#[tokio::test]
async fn three_failures_need_three_bad_evaluations_and_the_time_to_trip_is_measured() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::ok("streaming")).await;
    let g = gate(json!({ "failures": 3, "max_fallback_ratio": 0.5 }));
    let p = Proxy::start(gated(&batch, &streaming, g)).await;
    // Healthy traffic first: evaluations pass.
    let url = p.url(ROUTE_PATH);
    wait_until_async("a passing evaluation", || {
        let url = url.clone();
        let p = &p;
        async move {
            let _ = try_get(&url).await;
            let g = gate_of(p, "orders").await;
            (g["checks"]["fallback_ratio"]["verdict"] == "pass").then_some(())
        }
    })
    .await;
    streaming.set(Behaviour::Status(503));
    let first_bad = Instant::now();
    let g = read_until_tripped(&p).await;
    let took = first_bad.elapsed();
    let m = p.scrape().await;
    let fails = m.route("orders").gate_checks("fail");
    assert!(fails >= 3.0, "a trip after {fails} failed checks: {g:#}");
    assert!(g["consecutive_failures"].as_u64() >= Some(3), "{g:#}");
    // The ratio crosses 0.5 about half a window after the first bad read;
    // then two more intervals. Bounded loosely for a busy machine.
    assert!(took >= Duration::from_millis(200), "tripped after {took:?}");
    eprintln!(
        "time from the first bad read to the trip (interval 100ms, window 1s, failures 3, max 0.5): {took:?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_trip_survives_an_unrelated_reload_and_a_restart_and_an_edit_of_the_mode_re_arms() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::Status(503)).await;
    let route = gated(
        &batch,
        &streaming,
        gate(json!({ "max_fallback_ratio": 0.5 })),
    );
    let config = Config::new()
        .state_file("state/gates.json")
        .route(route.clone());
    let p = Proxy::start(config.clone()).await;
    read_until_tripped(&p).await;
    // Under the data directory, never beside the config.
    let state_path = p.data.path().join("state/gates.json");
    let saved: Value = wait_until("the state file records the trip", || {
        let text = std::fs::read_to_string(&state_path).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        (v["tripped"][0]["route"] == "orders").then_some(v)
    })
    .await;
    assert_eq!(saved["tripped"][0]["check"], "fallback_ratio", "{saved:#}");

    // Streaming is healthy again; an unrelated edit (a second route) keeps the trip.
    streaming.set(Behaviour::ok("streaming"));
    let refunds = Route::new(
        "refunds",
        "/v1/refunds",
        batch.url("/t"),
        streaming.url("/s"),
    )
    .quiet();
    Config::new()
        .state_file("state/gates.json")
        .route(route.clone())
        .route(refunds)
        .write(&p.path);
    let url = p.url("/v1/refunds/1");
    wait_until_async("the second route is served", || {
        let url = url.clone();
        async move { try_get(&url).await.is_ok_and(|r| r.status == 200) }
    })
    .await;
    assert_eq!(gate_of(&p, "orders").await["state"], "tripped");
    assert_eq!(served_by(&p).await, "batch");

    // A restart on the same files: still tripped.
    let Proxy {
        running,
        dir,
        data,
        path,
        ..
    } = p;
    within(running.expect("running").shutdown()).await;
    let p = Proxy::start_in(dir, data, path).await;
    let g = gate_of(&p, "orders").await;
    assert_eq!(g["state"], "tripped", "{g:#}");
    assert_eq!(g["trip"]["check"], "fallback_ratio", "{g:#}");
    assert_eq!(served_by(&p).await, "batch");
    assert_eq!(p.scrape().await.route("orders").gate_tripped(), 1.0);

    // A person edits the route's mode: re-armed, streaming serves.
    let canary = route.mode("canary").canary(json!({ "percent": 100 }));
    Config::new()
        .state_file("state/gates.json")
        .route(canary)
        .write(&p.path);
    wait_until_async("streaming serves again", || async {
        served_by(&p).await == "streaming"
    })
    .await;
    let g = gate_of(&p, "orders").await;
    assert_eq!(g["state"], "armed", "{g:#}");
    let state_path = p.data.path().join("state/gates.json");
    wait_until("the state file forgets the trip", || {
        let text = std::fs::read_to_string(&state_path).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        (v["tripped"] == json!([])).then_some(())
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn rollback_to_shadow_keeps_comparing() {
    let (_batch, streaming, route) =
        diverging(json!({ "max_divergence_ratio": 0.1, "rollback_to": "shadow" })).await;
    let p = Proxy::start(route).await;
    read_until_tripped(&p).await;
    let st = p.status_json().await;
    assert_eq!(st["routes"][0]["effective_mode"], "shadow", "{st:#}");
    let compared = |m: &Metrics| m.route("orders").reconciled("diverged");
    let before = compared(&p.scrape().await);
    let streaming_hits = streaming.hits();
    for _ in 0..3 {
        assert_eq!(served_by(&p).await, "batch");
    }
    wait_until_async("shadow reads are compared", || async {
        let now = compared(&p.scrape().await);
        if now >= before + 3.0 {
            Ok(())
        } else {
            Err(format!("{before} -> {now}"))
        }
    })
    .await;
    assert!(
        streaming.hits() >= streaming_hits + 3,
        "shadow reads go to streaming"
    );
    let m = p.scrape().await;
    assert_eq!(m.route("orders").route_mode("shadow"), 1.0);
    p.stop().await;
}

#[tokio::test]
async fn no_read_fails_while_a_gate_trips_under_concurrent_load() {
    let (_batch, _streaming, route) = diverging(json!({ "max_divergence_ratio": 0.1 })).await;
    let p = Proxy::start(route).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let served = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut readers = Vec::new();
    for _ in 0..8 {
        let (stop, failed, served, url) = (
            stop.clone(),
            failed.clone(),
            served.clone(),
            p.url(ROUTE_PATH),
        );
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match try_get(&url).await {
                    Ok(r) if r.status == 200 => {
                        let i = usize::from(r.header("x-cutover-served-by") == Some("batch"));
                        served[i].fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    read_until_tripped(&p).await;
    let after_trip = served[1].load(Ordering::Relaxed);
    wait_until("batch serves reads after the trip", || {
        served[1].load(Ordering::Relaxed) >= after_trip + 50
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        within(r).await.expect("reader task");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no read failed");
    assert!(
        served[0].load(Ordering::Relaxed) > 0,
        "streaming served before the trip"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_corrupt_state_file_is_reported_and_ignored() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::ok("streaming")).await;
    let config = Config::new().state_file("state.json").route(gated(
        &batch,
        &streaming,
        gate(json!({ "max_fallback_ratio": 0.5 })),
    ));
    let (dir, path) = config_file(config);
    let state = dir.path().join("state.json");
    std::fs::write(&state, "{ this is not json").expect("write state file");
    let bin = Binary::run(&path);
    let url = format!("http://{}{ROUTE_PATH}", bin.listen);
    let r = get(&url).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cutover-served-by"), Some("streaming"));
    let log = bin.stderr.lock().expect("log").clone();
    assert!(log.contains("gate state file ignored"), "{log}");
    assert!(log.contains("state.json"), "{log}");
    // The next write replaces it with a good (empty) document.
    wait_until("the state file is rewritten", || {
        let text = std::fs::read_to_string(&state).ok()?;
        serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|v| v["tripped"] == json!([]))
    })
    .await;
}

#[tokio::test]
async fn check_warns_about_a_gate_on_a_batch_route_and_still_exits_0() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::ok("streaming")).await;
    let route = gated(
        &batch,
        &streaming,
        gate(json!({ "max_fallback_ratio": 0.5 })),
    )
    .mode("batch");
    let (_dir, path) = config_file(route);
    let (code, stderr) = run_to_exit(&["check".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = stderr.lines().next().unwrap_or_default();
    let prefix = format!("{}:", path.display());
    assert!(line.starts_with(&prefix), "{stderr}");
    let rest = &line[prefix.len()..];
    let mut parts = rest.splitn(3, ':');
    let (l, c) = (parts.next(), parts.next());
    assert!(l.is_some_and(|l| l.parse::<usize>().is_ok()), "{line}");
    assert!(c.is_some_and(|c| c.parse::<usize>().is_ok()), "{line}");
    assert!(
        rest.contains(": warning: a gate on a `batch` route does nothing"),
        "{line}"
    );
}
