//! The idle-side probe with many routes: one probe per upstream URL per
//! interval however many routes share it, spread over the interval, a few
//! in flight at once, and a probe that cannot connect not held against
//! the side (issue 23).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Response;
use serde_json::json;

use crate::support::*;

/// A backend that answers every request after `hold` with a fresh
/// watermark, and records when each request arrived (by path) and how many
/// it held at once (`peak`, shared between backends).
struct Counting {
    backend: Backend,
    arrivals: Arc<Mutex<Vec<(Instant, String, String)>>>,
}

#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Counting {
    async fn start(hold: Duration, concurrency: Arc<Concurrency>) -> Counting {
        let arrivals: Arc<Mutex<Vec<(Instant, String, String)>>> = Arc::default();
        let log = arrivals.clone();
        let backend = Backend::start(Behaviour::custom(move |req| {
            let log = log.clone();
            let c = concurrency.clone();
            async move {
                log.lock().unwrap().push((
                    Instant::now(),
                    req.method().to_string(),
                    req.uri().to_string(),
                ));
                let n = c.now.fetch_add(1, Ordering::SeqCst) + 1;
                c.peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                c.now.fetch_sub(1, Ordering::SeqCst);
                Response::builder()
                    .header("x-data-watermark", watermark(Duration::from_secs(5)))
                    .body(full_body("ok"))
                    .expect("response")
            }
        }))
        .await;
        Counting { backend, arrivals }
    }

    /// Arrival times by path, each list in order.
    fn by_path(&self) -> BTreeMap<String, Vec<Instant>> {
        let mut out: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
        for (at, method, path) in self.arrivals.lock().unwrap().iter() {
            assert_eq!(method, "HEAD", "only probes reach the backend");
            out.entry(path.clone()).or_default().push(*at);
        }
        out
    }
}

/// `n` batch-mode routes `r0..` on `/r0..`, route i reading path
/// `/p{i % paths}` on both backends: `n / paths` routes share each URL.
fn routes(n: usize, paths: usize, batch: &Backend, streaming: &Backend, interval: &str) -> Config {
    (0..n).fold(Config::new(), |config, i| {
        let path = format!("/p{}", i % paths);
        config.route(
            Route::new(
                &format!("r{i}"),
                &format!("/r{i}"),
                batch.url(&path),
                streaming.url(&path),
            )
            .mode("batch")
            .freshness(json!({ "probe_interval": interval }))
            .reconcile(json!({ "sample": 0 })),
        )
    })
}

/// The sum of `cutover_upstream_requests_total` over every route, for `side`.
fn upstream_sum(m: &Metrics, side: &str) -> f64 {
    m.samples()
        .filter(|(name, labels, _)| {
            *name == UPSTREAM_REQUESTS && labels.iter().any(|(k, v)| k == "side" && v == side)
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test]
async fn three_hundred_routes_probe_each_url_once_per_interval_spread_over_it() {
    const ROUTES: usize = 300;
    const PATHS: usize = 60;
    const INTERVAL: Duration = Duration::from_secs(2);
    let concurrency = Arc::new(Concurrency::default());
    let b = Counting::start(Duration::from_millis(5), concurrency.clone()).await;
    let s = Counting::start(Duration::from_millis(5), concurrency.clone()).await;
    let p = Proxy::start(routes(ROUTES, PATHS, &b.backend, &s.backend, "2s")).await;
    // The probe task starts just before `start` returns.
    let started = Instant::now();

    // Three rounds of every URL: within the first interval, then two more.
    wait_until("every URL is probed three times", || {
        [&b, &s].iter().all(|c| {
            let by_path = c.by_path();
            by_path.len() == PATHS && by_path.values().all(|t| t.len() >= 3)
        })
    })
    .await;

    for (side, c) in [("batch", &b), ("streaming", &s)] {
        let by_path = c.by_path();
        // Shared: one probe per URL per interval, though five routes read each.
        for (path, times) in &by_path {
            for pair in times.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(
                    // Late probes (a busy test runtime) shorten one gap
                    // a little; routes sharing a URL would make it ~0.
                    gap >= INTERVAL / 2,
                    "{side} {path}: probed {gap:?} after the last one (interval {INTERVAL:?}): {times:?}"
                );
            }
        }
        // Jittered: the first round spreads over the first interval; no
        // quarter of it holds most of the round.
        let mut quarters = [0usize; 4];
        for times in by_path.values() {
            let at = times[0].saturating_duration_since(started);
            assert!(
                at < INTERVAL + Duration::from_millis(500),
                "{side}: a first probe {at:?} after start"
            );
            quarters[((at.as_secs_f64() / INTERVAL.as_secs_f64() * 4.0) as usize).min(3)] += 1;
        }
        assert!(
            quarters.iter().all(|&n| n <= PATHS / 2),
            "{side}: first probes by quarter of the interval {quarters:?}"
        );
    }
    // The bound holds even with quick answers.
    assert!(concurrency.peak.load(Ordering::SeqCst) <= 4);

    // Every route that shares a URL got the probe's watermark...
    let status = p.status_json().await;
    let listed = status["routes"].as_array().expect("routes").clone();
    assert_eq!(listed.len(), ROUTES);
    for r in &listed {
        for side in ["batch", "streaming"] {
            assert!(
                r["data_age_seconds"][side].is_number(),
                "{side} age of {}: {}",
                r["name"],
                r["data_age_seconds"]
            );
        }
    }
    // ...and each request is counted once, not once per route: the counts
    // trail the backend's by at most the probes still in flight.
    let m = p.scrape().await;
    for (side, c) in [("batch", &b), ("streaming", &s)] {
        let sent = c.arrivals.lock().unwrap().len() as f64;
        let counted = upstream_sum(&m, side);
        assert!(
            counted <= sent && counted >= sent - 4.0,
            "{side}: {counted} attempts counted for {sent} requests"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn no_more_than_four_probes_are_in_flight() {
    // 40 URLs on a 2 s beat, each answer held 400 ms: unbounded, about 8
    // would be in flight at once.
    let concurrency = Arc::new(Concurrency::default());
    let b = Counting::start(Duration::from_millis(400), concurrency.clone()).await;
    let config = (0..40).fold(Config::new(), |config, i| {
        config.route(
            Route::new(
                &format!("r{i}"),
                &format!("/r{i}"),
                b.backend.url(&format!("/p{i}")),
                b.backend.url(&format!("/s{i}")),
            )
            .mode("streaming_only")
            .freshness(json!({ "probe_interval": "2s" }))
            .reconcile(json!({ "sample": 0 })),
        )
    });
    let p = Proxy::start(config).await;
    wait_until("30 probes have arrived", || {
        b.arrivals.lock().unwrap().len() >= 30
    })
    .await;
    let peak = concurrency.peak.load(Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "peak probes in flight: {peak}");
    // `streaming_only`: batch's URLs are never probed.
    assert!(b.by_path().keys().all(|p| p.starts_with("/s")));
    p.stop().await;
}

#[tokio::test]
async fn a_probe_refused_to_connect_is_not_held_against_the_side() {
    let b = Backend::start(Behaviour::ok("from batch")).await;
    let refused = format!("http://{}/s", refusing_addr());
    // A gate that trips on one failed check, with no read needed.
    let p = Proxy::start(
        Route::orders(b.url("/t"), refused)
            .mode("streaming")
            .freshness(json!({ "probe_interval": "200ms" }))
            .reconcile(json!({ "sample": 0 }))
            .fallback(json!({ "circuit": { "failures": 1, "cooldown": "1m" } }))
            .gate(json!({
                "interval": "100ms",
                "window": "10s",
                "failures": 1,
                "min_reads": 0,
                "max_error_ratio_delta": 0.5,
            })),
    )
    .await;
    // The attempts are still counted as attempts...
    let m = wait_until_async("streaming's probes are refused", || async {
        let m = p.scrape().await;
        if m.upstream("streaming", "connect") >= 3.0 {
            Ok(m)
        } else {
            Err(format!("connect: {}", m.upstream("streaming", "connect")))
        }
    })
    .await;
    // ...and the gate has judged them a few times since.
    let judged = m.gate_checks("inconclusive") + m.gate_checks("pass") + m.gate_checks("fail");
    wait_until_async("the gate evaluates three more times", || async {
        let m = p.scrape().await;
        m.gate_checks("inconclusive") + m.gate_checks("pass") + m.gate_checks("fail")
            >= judged + 3.0
    })
    .await;
    let m = p.scrape().await;
    assert_eq!(m.gate_tripped(), 0.0, "{}", m.text);
    assert_eq!(m.gate_checks("fail"), 0.0);
    assert_eq!(m.circuit_open(), 0.0);
    let st = p.status_json().await;
    let route = &st["routes"][0];
    assert!(
        route["error_ratio"]["streaming"].is_null(),
        "refused probes are not the side's errors: {route}"
    );
    assert_eq!(route["circuit"], "closed", "{route}");
    assert_eq!(route["error_ratio"]["batch"], 0.0, "{route}");

    // A consumer's read that is refused is the side's error, as before.
    let r = get(&p.url("/v1/orders/1")).await;
    assert_eq!(r.header("x-cutover-fallback"), Some("connect"));
    let st = p.status_json().await;
    assert_eq!(st["routes"][0]["error_ratio"]["streaming"], 1.0);
    p.stop().await;
}
