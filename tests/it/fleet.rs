//! `cutover fleet` as a user runs it: the real binary against a fake
//! Prometheus query API (a local backend answering canned JSON, chosen by
//! the PromQL it is asked). Board text, `--json`, `--fail-on-violation`, and `--decommission`'s
//! exit codes 0, 1 and 2. Every wait is bounded.

use crate::support::{Backend, Behaviour, Output, full_body, now_secs, refusing_addr, run_cutover};
use http::Response;
use serde_json::{Value, json};

const DAY: f64 = 86_400.0;

/// What the fake Prometheus knows.
#[derive(Clone, Copy, PartialEq)]
enum Fleet {
    /// Dataset `orders`: dash (low) on streaming for 20 days, ops (medium)
    /// on batch, fraud (high) in shadow, legacy (low) stopped reporting 3h
    /// ago; dataset `customers`: fraud on streaming while ops reads batch.
    Board,
    /// Every consumer of `orders` streaming_only, no batch read.
    Decommissioned,
    /// As `Decommissioned`, but `ops` read batch 2h ago after a restart.
    BatchRead,
    /// Every query answers a Prometheus error document.
    Broken,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn vector(now: f64, series: &[(Value, f64)]) -> Value {
    let result: Vec<Value> = series
        .iter()
        .map(|(m, v)| json!({"metric": m, "value": [now, v.to_string()]}))
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}})
}

fn matrix(series: &[(Value, Vec<(f64, f64)>)]) -> Value {
    let result: Vec<Value> = series
        .iter()
        .map(|(m, vs)| {
            let values: Vec<Value> = vs.iter().map(|(t, v)| json!([t, v.to_string()])).collect();
            json!({"metric": m, "values": values})
        })
        .collect();
    json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
}

/// Hourly points ending at `to` and going back no earlier than `from`, as a
/// range query ending at `to` with a one-hour step evaluates them.
fn hourly(from: f64, to: f64, v: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut t = to;
    while t >= from {
        out.push((t, v));
        t -= 3600.0;
    }
    out.reverse();
    out
}

fn cd(consumer: &str, dataset: &str) -> Value {
    json!({"consumer": consumer, "dataset": dataset})
}

fn cdm(consumer: &str, dataset: &str, mode: &str) -> Value {
    json!({"consumer": consumer, "dataset": dataset, "mode": mode})
}

/// The canned answer to one API call; `None` for a query no scenario expects.
fn answer(fleet: Fleet, path: &str, q: &str, now: f64) -> Option<Value> {
    if fleet == Fleet::Broken {
        return Some(
            json!({"status": "error", "errorType": "execution", "error": "query timed out in expression evaluation"}),
        );
    }
    let start = now - 30.0 * DAY;
    if path == "/api/v1/query_range" {
        if q.contains("cutover_route_mode") {
            return Some(match fleet {
                Fleet::Board => matrix(&[
                    (
                        cdm("dash", "orders", "shadow"),
                        hourly(start, now - 20.0 * DAY - 1.0, 1.0),
                    ),
                    (
                        cdm("dash", "orders", "streaming"),
                        hourly(now - 20.0 * DAY, now, 1.0),
                    ),
                    (cdm("ops", "orders", "batch"), hourly(start, now, 1.0)),
                    (
                        cdm("fraud", "orders", "shadow"),
                        hourly(now - 2.0 * DAY, now, 1.0),
                    ),
                    (
                        cdm("legacy", "orders", "streaming"),
                        hourly(start, now - 3.0 * 3600.0, 1.0),
                    ),
                    (cdm("ops", "customers", "batch"), hourly(start, now, 1.0)),
                    (
                        cdm("fraud", "customers", "streaming"),
                        hourly(now - 5.0 * DAY, now, 1.0),
                    ),
                ]),
                _ => matrix(&[]),
            });
        }
        if q.contains("cutover_upstream_requests_total") {
            return Some(match fleet {
                Fleet::Board => matrix(&[(
                    json!({"consumer": "ops", "dataset": "orders", "result": "ok"}),
                    vec![(now - 7200.0, 100.0), (now - 3600.0, 150.0), (now, 150.0)],
                )]),
                Fleet::BatchRead => {
                    // ops' sidecar restarted: 40 → 0 → 3 two hours ago.
                    let mut vs = hourly(now - 7.0 * DAY, now - 5.0 * 3600.0, 40.0);
                    vs.push((now - 4.0 * 3600.0, 0.0));
                    vs.push((now - 2.0 * 3600.0, 3.0));
                    vs.push((now, 3.0));
                    matrix(&[(
                        json!({"consumer": "ops", "dataset": "orders", "result": "ok"}),
                        vs,
                    )])
                }
                _ => matrix(&[]),
            });
        }
        return None;
    }
    if q.contains("cutover_consumer_info") {
        let r = |c: &str, risk: &str| (json!({"consumer": c, "risk": risk}), 1.0);
        return Some(vector(
            now,
            &[
                r("dash", "low"),
                r("ops", "medium"),
                r("fraud", "high"),
                r("legacy", "low"),
            ],
        ));
    }
    let decom_modes = || {
        vec![
            (cdm("dash", "orders", "streaming_only"), 1.0),
            (cdm("ops", "orders", "streaming_only"), 1.0),
            (cdm("fraud", "orders", "streaming_only"), 1.0),
        ]
    };
    if q.contains("timestamp(cutover_route_mode") || q.contains("cutover_route_mode[7200s]") {
        // Last samples in the last 2 h: the history already holds them.
        return Some(vector(now, &[]));
    }
    if q.contains("last_over_time(cutover_route_mode") {
        return Some(vector(now, &decom_modes()));
    }
    if q.contains("cutover_route_mode") {
        return Some(match fleet {
            Fleet::Board => vector(
                now,
                &[
                    (cdm("dash", "orders", "streaming"), 1.0),
                    (cdm("ops", "orders", "batch"), 1.0),
                    (cdm("fraud", "orders", "shadow"), 1.0),
                    (cdm("ops", "customers", "batch"), 1.0),
                    (cdm("fraud", "customers", "streaming"), 1.0),
                ],
            ),
            _ => vector(now, &decom_modes()),
        });
    }
    if q.contains("unless") {
        return Some(vector(now, &[]));
    }
    // Batch's own exporter (`--batch-requests`): it served 40 reads of
    // orders over the window on the board, 7 when every consumer is
    // streaming_only (a reader around cutover).
    if q.starts_with("sum(increase(batch_http_requests_total{") {
        let served = match (fleet, q.contains(r#"table="orders""#)) {
            (_, false) => 0.0,
            (Fleet::Board, true) => 1340.0,
            (_, true) => 7.0,
        };
        return Some(vector(now, &[(json!({}), served)]));
    }
    if q.contains("increase(cutover_upstream_requests_total{side=\"batch\"") {
        return Some(match fleet {
            Fleet::BatchRead => vector(now, &[(cd("ops", "orders"), 3.0)]),
            _ => vector(now, &[]),
        });
    }
    if fleet != Fleet::Board {
        return None;
    }
    let side =
        |c: &str, s: &str, v: f64| (json!({"consumer": c, "dataset": "orders", "side": s}), v);
    if q.contains("cutover_requests_total") {
        return Some(vector(
            now,
            &[
                side("dash", "streaming", 1200.0),
                side("ops", "batch", 900.0),
                side("fraud", "batch", 400.0),
            ],
        ));
    }
    if q.contains("cutover_fallbacks_total") {
        return Some(vector(now, &[(cd("dash", "orders"), 12.0)]));
    }
    if q.contains("cutover_upstream_requests_total") {
        let a = |c: &str, s: &str, r: &str, v: f64| {
            (
                json!({"consumer": c, "dataset": "orders", "side": s, "result": r}),
                v,
            )
        };
        return Some(vector(
            now,
            &[
                a("dash", "streaming", "ok", 1188.0),
                a("dash", "streaming", "timeout", 12.0),
                a("dash", "batch", "ok", 100.0),
            ],
        ));
    }
    if q.contains("timestamp(") {
        return Some(vector(now, &[(cd("fraud", "orders"), now - 2.0 * DAY)]));
    }
    if q.contains("cutover_contract_checks_total") {
        let r = |res: &str, v: f64| {
            (
                json!({"consumer": "dash", "dataset": "orders", "result": res}),
                v,
            )
        };
        return Some(vector(
            now,
            &[r("pass", 1190.0), r("violation", 10.0), r("skipped", 3.0)],
        ));
    }
    if q.contains("cutover_reconcile_divergences_total") {
        return Some(vector(
            now,
            &[(
                json!({"consumer": "fraud", "dataset": "orders", "category": "timing"}),
                2.0,
            )],
        ));
    }
    if q.contains("cutover_reconcile_total") {
        let r = |res: &str, v: f64| {
            (
                json!({"consumer": "fraud", "dataset": "orders", "result": res}),
                v,
            )
        };
        return Some(vector(now, &[r("match", 3998.0), r("diverged", 2.0)]));
    }
    if q.contains("cutover_gate_trips_total") || q.contains("cutover_gate_tripped") {
        return Some(vector(now, &[]));
    }
    None
}

/// As Prometheus would: a query with a `dataset="D"` matcher returns only
/// series of D (and those without a dataset label).
fn only_dataset(mut answer: Value, q: &str) -> Value {
    let Some((_, rest)) = q.split_once("dataset=\"") else {
        return answer;
    };
    let Some((dataset, _)) = rest.split_once('"') else {
        return answer;
    };
    if let Some(result) = answer["data"]["result"].as_array_mut() {
        result.retain(|s| s["metric"].get("dataset").is_none_or(|d| d == dataset));
    }
    answer
}

/// A fake Prometheus for `fleet`; a query no scenario expects answers 400,
/// so a test notices a query it did not plan for.
async fn prometheus(fleet: Fleet) -> Backend {
    Backend::start(Behaviour::custom(move |req| async move {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("");
        let q = param(query, "query").unwrap_or_default();
        let now = param(query, "time")
            .or_else(|| param(query, "end"))
            .and_then(|t| t.parse().ok())
            .unwrap_or(now_secs() as f64);
        let (status, body) = match answer(fleet, &path, &q, now) {
            Some(v) => (200, only_dataset(v, &q)),
            None => (
                400,
                json!({"status": "error", "errorType": "bad_data", "error": format!("unexpected query {q}")}),
            ),
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(full_body(body.to_string()))
            .expect("response")
    }))
    .await
}

/// Runs `cutover args` off the runtime (the fake answers on it meanwhile).
async fn cutover(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || run_cutover(&args))
        .await
        .expect("the cutover run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_every_consumer_and_the_verdicts() {
    let prom = prometheus(Fleet::Board).await;
    let out = cutover(&["fleet", "--prometheus", &prom.url("")]).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let text = &out.stdout;
    eprintln!("{text}\n(took {:?})", out.took);
    for want in [
        "dataset orders   4 consumers",
        "dataset customers   2 consumers",
        "NOT REPORTING (last streaming, seen 3h00m ago)",
        "leave shadow: READY",
        "next to move: ops (medium): waiting",
        "    - fraud (high): ready alone (0.050 % over 4,000 comparisons)",
        "    - ops (medium): no comparisons in the window",
        "legacy (low) stopped reporting",
        "risk order: VIOLATED",
        "fraud (high) reads streaming while ops (medium) still reads batch",
    ] {
        assert!(text.contains(want), "board lacks {want:?}:\n{text}");
    }
    let dash = text
        .lines()
        .find(|l| l.trim_start().starts_with("dash "))
        .expect("dash row");
    for cell in [
        "low",
        "streaming",
        "20d00h",
        "0/1200",
        "1.0%",
        "+1.0pp",
        "0.83%",
    ] {
        assert!(dash.contains(cell), "dash row lacks {cell}: {dash}");
    }
    let ops = text
        .lines()
        .find(|l| l.trim_start().starts_with("ops ") && l.contains("900/0"))
        .expect("ops row in orders");
    assert!(ops.contains("1h00m ago"), "ops' last batch read: {ops}");
    let fraud = text
        .lines()
        .find(|l| l.trim_start().starts_with("fraud ") && l.contains("shadow"))
        .expect("fraud row in orders");
    assert!(
        fraud.contains("0.050%") && fraud.contains("4000"),
        "{fraud}"
    );
    // Began within the history: exact, not "at least".
    assert!(fraud.contains(" 2d00h") && !fraud.contains('≥'), "{fraud}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_the_same_board_as_one_document() {
    let prom = prometheus(Fleet::Board).await;
    let out = cutover(&["fleet", "--prometheus", &prom.url(""), "--json"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    let datasets = doc["datasets"].as_array().expect("datasets");
    let orders = datasets
        .iter()
        .find(|d| d["dataset"] == "orders")
        .expect("orders");
    assert_eq!(orders["shadow"]["ready"], true);
    assert_eq!(orders["next_to_move"]["consumer"], "ops");
    assert_eq!(orders["next_to_move"]["ready"], false);
    // Additive: each consumer's own verdict, who blocks, what proves next.
    let own = orders["shadow"]["consumers"]
        .as_array()
        .expect("own verdicts");
    assert_eq!(own.len(), 4);
    let fraud = own
        .iter()
        .find(|c| c["consumer"] == "fraud")
        .expect("fraud");
    assert_eq!(fraud["ready"], true, "{fraud}");
    assert_eq!(fraud["categories"]["timing"], 2.0, "{fraud}");
    assert_eq!(orders["shadow"]["blocked_by"], json!([]));
    assert_eq!(orders["next_to_move"]["settled"], false);
    assert_eq!(orders["next_to_move"]["proven_by"], "dataset");
    assert_eq!(orders["consumers"].as_array().expect("consumers").len(), 4);
    let customers = datasets
        .iter()
        .find(|d| d["dataset"] == "customers")
        .expect("customers");
    assert_eq!(
        customers["risk_order_violations"][0]["on_streaming"],
        "fraud"
    );
    assert_eq!(doc["window_seconds"], 3600.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_narrows_every_query() {
    let prom = prometheus(Fleet::Board).await;
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &prom.url(""),
        "--dataset",
        "orders",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let seen = prom.seen.lock().expect("seen").clone();
    for s in &seen {
        let q = s.uri.split_once('?').map_or("", |(_, q)| q);
        let query = param(q, "query").unwrap_or_default();
        if !query.contains("cutover_consumer_info") {
            assert!(query.contains("dataset=\"orders\""), "{query}");
        }
    }
}

/// `--fail-on-violation` turns the board into a CI gate: exit 1 when a
/// dataset's risk order is violated (customers: fraud, high, on streaming
/// while ops, medium, reads batch), 0 when none is (`--dataset orders`),
/// and the board still exits 0 without the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_violation_exits_1_only_for_a_violated_risk_order() {
    let prom = prometheus(Fleet::Board).await;
    let url = prom.url("");

    let out = cutover(&["fleet", "--prometheus", &url, "--fail-on-violation"]).await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    // The board is printed all the same, then the reason on stderr.
    assert!(
        out.stdout.contains("dataset orders") && out.stdout.contains("risk order: VIOLATED"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("risk order VIOLATED for customers (--fail-on-violation)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("orders"), "{}", out.stderr);

    let out = cutover(&[
        "fleet",
        "--prometheus",
        &url,
        "--json",
        "--fail-on-violation",
    ])
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert!(doc["datasets"].is_array(), "{doc}");

    // orders alone keeps its risk order (dash, low, on streaming; ops,
    // medium, and fraud, high, still on batch and shadow).
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &url,
        "--dataset",
        "orders",
        "--fail-on-violation",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("dataset orders") && out.stdout.contains("risk order: ok"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("customers"), "{}", out.stdout);
    assert!(!out.stderr.contains("VIOLATED"), "{}", out.stderr);

    let out = cutover(&["fleet", "--prometheus", &url]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("risk order: VIOLATED"),
        "{}",
        out.stdout
    );

    // Prometheus unreachable is still 2, not a verdict.
    let nothing = format!("http://{}", refusing_addr());
    let out = cutover(&["fleet", "--prometheus", &nothing, "--fail-on-violation"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    // A gate on the board, not on the decommission check.
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &url,
        "--decommission",
        "orders",
        "--fail-on-violation",
    ])
    .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_exits_0_when_no_cutover_read_batch() {
    let prom = prometheus(Fleet::Decommissioned).await;
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &prom.url(""),
        "--decommission",
        "orders",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("over the last 7d00h: READY"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("3 consumers known through cutover"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("never went through cutover is invisible"),
        "{}",
        out.stdout
    );
    // The default window is 7 days.
    let seen = prom.seen.lock().expect("seen").clone();
    assert!(
        seen.iter()
            .any(|s| percent_decode(&s.uri).contains("[604800s]")),
        "no 7d range"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_exits_1_naming_the_consumer_and_its_last_batch_read() {
    let prom = prometheus(Fleet::BatchRead).await;
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &prom.url(""),
        "--decommission",
        "orders",
    ])
    .await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let ops = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("ops "))
        .expect("ops line");
    assert!(ops.contains("BLOCKS: sent reads to batch"), "{ops}");
    assert!(ops.contains("(3 batch reads)"), "{ops}");
    assert!(
        ops.contains("last batch read") && ops.contains("(2h00m ago)"),
        "{ops}"
    );
    assert!(
        !out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("dash ") && l.contains("BLOCKS"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_2_when_prometheus_cannot_be_queried() {
    let nothing = format!("http://{}", refusing_addr());
    for args in [
        vec!["fleet", "--prometheus", nothing.as_str()],
        vec![
            "fleet",
            "--prometheus",
            nothing.as_str(),
            "--decommission",
            "orders",
        ],
    ] {
        let out = cutover(&args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("cannot reach Prometheus"),
            "{}",
            out.stderr
        );
    }
    let broken = prometheus(Fleet::Broken).await;
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &broken.url(""),
        "--decommission",
        "orders",
    ])
    .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("query timed out"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_files() {
    let prom = prometheus(Fleet::Decommissioned).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("write token");
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &prom.url(""),
        "--decommission",
        "orders",
        "--bearer-token-file",
        token.to_str().expect("utf-8 path"),
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let last = prom.last().expect("a query");
    assert_eq!(last.headers["authorization"], "Bearer s3cret");

    let password = dir.path().join("password");
    std::fs::write(&password, "pass\n").expect("write password");
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &prom.url(""),
        "--decommission",
        "orders",
        "--basic-auth-user",
        "user",
        "--basic-auth-password-file",
        password.to_str().expect("utf-8 path"),
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let last = prom.last().expect("a query");
    assert_eq!(last.headers["authorization"], "Basic dXNlcjpwYXNz");
}

const BATCH_REQUESTS: &str =
    r#"sum(increase(batch_http_requests_total{table="$dataset"}[$window]))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_requests_show_readers_not_behind_cutover() {
    let prom = prometheus(Fleet::Board).await;
    let url = prom.url("");
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &url,
        "--batch-requests",
        BATCH_REQUESTS,
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    // The fake's sidecars sent batch nothing it counts by dataset, so all
    // 1340 of batch's reads of orders are readers not behind cutover.
    assert!(
        out.stdout.contains(
            "  readers not behind cutover: 1340 reads (batch served 1340, cutover sent it 0)\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("decommission steps: unknown (no --batch-watermark"),
        "{}",
        out.stdout
    );
    let out = cutover(&[
        "fleet",
        "--prometheus",
        &url,
        "--batch-requests",
        BATCH_REQUESTS,
        "--json",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let b: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let d = |name: &str| {
        b["datasets"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["dataset"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {b}"))
    };
    assert_eq!(d("orders")["unknown_readers"]["reads"], 1340.0);
    assert_eq!(d("customers")["unknown_readers"]["reads"], 0.0);
    assert_eq!(d("orders")["decommission_steps"]["known"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_blocks_on_readers_not_behind_cutover_above_the_tolerance() {
    let prom = prometheus(Fleet::Decommissioned).await;
    let url = prom.url("");
    let args = |tolerance: &'static str| {
        vec![
            "fleet".to_owned(),
            "--prometheus".to_owned(),
            url.clone(),
            "--decommission".to_owned(),
            "orders".to_owned(),
            "--batch-requests".to_owned(),
            BATCH_REQUESTS.to_owned(),
            "--unknown-tolerance".to_owned(),
            tolerance.to_owned(),
        ]
    };
    let run = |a: Vec<String>| async move {
        tokio::task::spawn_blocking(move || run_cutover(&a))
            .await
            .expect("the cutover run")
    };
    let out = run(args("0")).await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "  BLOCKS: readers not behind cutover: 7 reads over the last 7d00h (batch served 7, cutover sent it 0; --unknown-tolerance 0)"
        ),
        "{}",
        out.stdout
    );
    let out = run(args("7")).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("  readers not behind cutover: 7 reads"),
        "{}",
        out.stdout
    );
    // Without --batch-requests, as before: ready, with the honest limit.
    let out = cutover(&["fleet", "--prometheus", &url, "--decommission", "orders"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(out.stdout.contains("Limit: "), "{}", out.stdout);
}
