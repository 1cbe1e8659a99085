//! *history*: three weeks in the migration guide's order, written as
//! OpenMetrics, turned into blocks by `promtool tsdb create-blocks-from
//! openmetrics`, then judged by the board and by `--decommission`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::support::now_secs;

/// Seconds between two samples of the history: under Prometheus' 5 min
/// lookback, so every evaluation step of a range query finds one.
const STEP: u64 = 240;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
/// Reads per consumer per step (one a second).
const READS: u64 = 240;
/// Comparisons per step in `streaming` mode (`reconcile.sample` 5 %).
const SAMPLED: u64 = 12;

const MODES: [&str; 5] = ["batch", "shadow", "canary", "streaming", "streaming_only"];
const RISKS: [(&str, &str); 3] = [("dash", "low"), ("ops", "medium"), ("fraud", "high")];

/// The datasets and what each shows:
/// - `customers`: dash (low) left shadow 16 days ago; ops and fraud still
///   compare in shadow, divergence 0.02 %: ready to leave shadow, ops next
///   and ready;
/// - `refunds`: everyone in shadow, 0.4 % diverged with `missing` records:
///   not ready to leave shadow, and why;
/// - `payments`: dash on streaming for 18 days, but its gate tripped 9 days
///   ago for 12 minutes (too short for the hourly mode history to see): ops
///   is next and waits for dash's trip to age out of the 14 days;
/// - `orders`: the guide's whole timeline compressed into three weeks:
///   shadow, dash, ops, fraud to streaming in risk order, every consumer
///   `streaming_only` for the last 8 days; ops' sidecar restarted 3 days ago
///   (counters back to 0, no batch read since): batch can go;
/// - `invoices`: as `orders`, but ops' restarted sidecar came back with a
///   stale file (`streaming`) for two hours and read batch: blocked by ops;
/// - `shipments`: as `orders`, but fraud's new pod (below) compared 7 reads
///   against batch before its first scrape: reads `increase()` cannot see
///   (a series born above zero), blocked by fraud.
///
/// - `returns`: as `orders`, and batch (its own watermark and request
///   counter exported) stopped producing 3 days before the end: step 1,
///   3d of 7d clean;
/// - `ledger`: every consumer `streaming_only` from day 9, batch stopped
///   10 days before the end: step 2 may begin.
///
/// Two events touch every dataset of a consumer, as they would: ops'
/// sidecar restarts in place (same `instance`, counters back to 0), and
/// fraud's pod moves (a new `instance`: its series end, new ones begin).
const DATASETS: [&str; 8] = [
    "customers",
    "refunds",
    "payments",
    "orders",
    "invoices",
    "shipments",
    "returns",
    "ledger",
];

/// When batch stopped producing, from the history's start, for the
/// datasets whose batch exports its own figures. Two hours before the
/// whole day, so the hourly history's step puts step 1 a little after.
fn batch_stopped(dataset: &str) -> Option<u64> {
    match dataset {
        "returns" => Some(18 * DAY - 2 * HOUR),
        "ledger" => Some(11 * DAY - 2 * HOUR),
        _ => None,
    }
}

/// What the test asks batch's own exporter.
const BATCH_REQUESTS: &str =
    r#"sum(increase(batch_http_requests_total{table="$dataset"}[$window]))"#;
const BATCH_WATERMARK: &str = r#"max(batch_job_last_success_timestamp_seconds{table="$dataset"})"#;

/// When ops' sidecar restarted, from the history's start.
const RESTART: u64 = 18 * DAY;
/// How long the restarted sidecar ran its stale `streaming` file (invoices).
const STALE: u64 = 2 * HOUR;
/// When fraud's pod moved to another node.
const MOVED: u64 = 19 * DAY;
/// Batch comparisons fraud's new pod made before its first scrape (shipments).
const UNSCRAPED: u64 = 7;
/// When dash's gate tripped in `payments` (9 days before the end, 40
/// minutes off the hour: the board's hourly steps, taken within minutes of
/// the end, fall 20 minutes either side), and how long until a person
/// re-armed it.
const TRIP: u64 = 12 * DAY - 40 * 60;
const TRIP_FOR: u64 = 3 * STEP;

/// The effective mode of `consumer`'s route of `dataset` at `at` seconds
/// into the history.
fn mode_at(dataset: &str, consumer: &str, at: u64) -> &'static str {
    let day = at / DAY;
    match dataset {
        "customers" if consumer == "dash" && day >= 5 => "streaming",
        "payments" if consumer == "dash" && (TRIP..TRIP + TRIP_FOR).contains(&at) => "batch",
        "payments" if consumer == "dash" && day >= 3 => "streaming",
        "customers" | "refunds" | "payments" => "shadow",
        "ledger" if day >= 9 => "streaming_only",
        _ => {
            if dataset == "invoices"
                && consumer == "ops"
                && (RESTART..RESTART + STALE).contains(&at)
            {
                return "streaming";
            }
            let moved = match consumer {
                "dash" => 2,
                "ops" => 6,
                _ => 10,
            };
            if day >= 13 {
                "streaming_only"
            } else if day >= moved {
                "streaming"
            } else {
                "shadow"
            }
        }
    }
}

/// The scrape target of `consumer`'s sidecar at `at`.
fn instance(consumer: &str, at: u64) -> String {
    if consumer == "fraud" && at >= MOVED {
        "fraud-7c9f4:9901".to_owned()
    } else {
        format!("{consumer}-5d2a8:9901")
    }
}

/// Records diverged in step `k` of a shadow comparison, by category.
fn divergences(dataset: &str, k: u64) -> Option<(&'static str, u64)> {
    match dataset {
        "refunds" => Some((
            if k.is_multiple_of(10) {
                "missing"
            } else {
                "aggregate"
            },
            1,
        )),
        _ if k.is_multiple_of(20) => Some(("timing", 1)),
        _ => None,
    }
}

/// The counters of one route, as (family, sample name, labels beyond the route's).
const COUNTERS: [(&str, &str, &str); 7] = [
    (
        "cutover_requests",
        "cutover_requests_total",
        r#"side="batch",code_class="2xx""#,
    ),
    (
        "cutover_requests",
        "cutover_requests_total",
        r#"side="streaming",code_class="2xx""#,
    ),
    (
        "cutover_upstream_requests",
        "cutover_upstream_requests_total",
        r#"side="batch",result="ok""#,
    ),
    (
        "cutover_upstream_requests",
        "cutover_upstream_requests_total",
        r#"side="streaming",result="ok""#,
    ),
    (
        "cutover_fallbacks",
        "cutover_fallbacks_total",
        r#"reason="5xx""#,
    ),
    (
        "cutover_reconcile",
        "cutover_reconcile_total",
        r#"result="match""#,
    ),
    (
        "cutover_reconcile",
        "cutover_reconcile_total",
        r#"result="diverged""#,
    ),
];
const READS_BATCH: usize = 0;
const READS_STREAMING: usize = 1;
const ATTEMPTS_BATCH: usize = 2;
const ATTEMPTS_STREAMING: usize = 3;
const FALLBACKS: usize = 4;
const MATCHED: usize = 5;
const DIVERGED: usize = 6;

/// One series: its OpenMetrics family and type, sample name and labels, and
/// its value at each step (`None`: no sample, e.g. before a pod existed).
struct Series {
    family: &'static str,
    kind: &'static str,
    sample: &'static str,
    labels: String,
    values: Vec<Option<u64>>,
}

/// Collects samples by series.
struct Recorder {
    steps: usize,
    series: BTreeMap<(&'static str, &'static str, &'static str, String), Vec<Option<u64>>>,
}

impl Recorder {
    fn set(
        &mut self,
        s: (&'static str, &'static str, &'static str),
        labels: String,
        k: u64,
        v: u64,
    ) {
        let steps = self.steps;
        self.series
            .entry((s.0, s.1, s.2, labels))
            .or_insert_with(|| vec![None; steps])[k as usize] = Some(v);
    }
}

/// The series cutover exports (names and labels as `src/metrics.rs` writes
/// them, plus the `job` and `instance` a scrape adds) for every consumer and
/// dataset, one sample per `STEP` for `steps` steps from the history's start.
fn history(steps: u64) -> Vec<Series> {
    let mut rec = Recorder {
        steps: steps as usize,
        series: BTreeMap::new(),
    };
    // Per dataset and step: the reads cutover sent batch, which batch's own
    // counter counts too.
    let mut batch_served: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (consumer, risk) in RISKS {
        for k in 0..steps {
            let target = format!(
                r#"instance="{}",job="cutover""#,
                instance(consumer, k * STEP)
            );
            rec.set(
                ("cutover_consumer_info", "gauge", "cutover_consumer_info"),
                format!(r#"consumer="{consumer}",risk="{risk}",{target}"#),
                k,
                1,
            );
        }
        for dataset in DATASETS {
            let cats: &[&str] = if dataset == "refunds" {
                &["aggregate", "missing"]
            } else {
                &["timing"]
            };
            let gated = consumer == "dash" && dataset == "payments";
            // Running counter values; a new process starts them at 0.
            let mut c = [0u64; COUNTERS.len()];
            let mut by_cat = vec![0u64; cats.len()];
            let mut trips = 0;
            for k in 0..steps {
                let at = k * STEP;
                let target = format!(r#"instance="{}",job="cutover""#, instance(consumer, at));
                let base = format!(
                    r#"consumer="{consumer}",route="{dataset}",dataset="{dataset}",{target}"#
                );
                let fresh_process =
                    (consumer == "ops" && at == RESTART) || (consumer == "fraud" && at == MOVED);
                if fresh_process {
                    c = [0; COUNTERS.len()];
                    by_cat.iter_mut().for_each(|v| *v = 0);
                    trips = 0;
                }
                if dataset == "shipments" && consumer == "fraud" && at == MOVED {
                    c[ATTEMPTS_BATCH] += UNSCRAPED;
                    c[MATCHED] += UNSCRAPED;
                }
                let batch_before = c[ATTEMPTS_BATCH];
                let m = mode_at(dataset, consumer, at);
                for name in MODES {
                    rec.set(
                        ("cutover_route_mode", "gauge", "cutover_route_mode"),
                        format!(r#"{base},mode="{name}""#),
                        k,
                        u64::from(name == m),
                    );
                }
                match m {
                    "shadow" => {
                        c[READS_BATCH] += READS;
                        c[ATTEMPTS_BATCH] += READS;
                        c[ATTEMPTS_STREAMING] += READS;
                        let diverged = divergences(dataset, k);
                        let d = diverged.map_or(0, |(_, n)| n);
                        c[MATCHED] += READS - d;
                        c[DIVERGED] += d;
                        if let Some((cat, n)) = diverged {
                            by_cat[cats.iter().position(|x| *x == cat).expect("category")] += n;
                        }
                    }
                    "streaming" => {
                        // One read in ten steps falls back to batch; 5 % are
                        // compared against batch.
                        let f = u64::from(k % 10 == 0);
                        c[READS_BATCH] += f;
                        c[READS_STREAMING] += READS - f;
                        c[FALLBACKS] += f;
                        c[ATTEMPTS_STREAMING] += READS;
                        c[ATTEMPTS_BATCH] += f + SAMPLED;
                        c[MATCHED] += SAMPLED;
                    }
                    "streaming_only" => {
                        c[READS_STREAMING] += READS;
                        c[ATTEMPTS_STREAMING] += READS;
                    }
                    _ => {
                        c[READS_BATCH] += READS;
                        c[ATTEMPTS_BATCH] += READS;
                    }
                }
                batch_served
                    .entry(dataset)
                    .or_insert_with(|| vec![0; steps as usize])[k as usize] +=
                    c[ATTEMPTS_BATCH] - batch_before;
                for (i, (family, sample, extra)) in COUNTERS.iter().enumerate() {
                    rec.set(
                        (family, "counter", sample),
                        format!("{base},{extra}"),
                        k,
                        c[i],
                    );
                }
                for (cat, v) in cats.iter().zip(&by_cat) {
                    rec.set(
                        (
                            "cutover_reconcile_divergences",
                            "counter",
                            "cutover_reconcile_divergences_total",
                        ),
                        format!(r#"{base},category="{cat}""#),
                        k,
                        *v,
                    );
                }
                // The gate came with the move to streaming (day 3).
                if gated && at >= 3 * DAY {
                    let tripped = (TRIP..TRIP + TRIP_FOR).contains(&at);
                    trips += u64::from(at == TRIP);
                    rec.set(
                        ("cutover_gate_tripped", "gauge", "cutover_gate_tripped"),
                        base.clone(),
                        k,
                        u64::from(tripped),
                    );
                    rec.set(
                        ("cutover_gate_trips", "counter", "cutover_gate_trips_total"),
                        format!(r#"{base},check="error_ratio_delta""#),
                        k,
                        trips,
                    );
                }
            }
        }
    }
    // Batch's own exporter, for the datasets whose batch stopped: its
    // request counter and its last output's time (hourly outputs).
    for (dataset, served) in batch_served {
        let Some(stopped) = batch_stopped(dataset) else {
            continue;
        };
        let labels = format!(r#"table="{dataset}",instance="batch-0:8080",job="batch""#);
        let mut total = 0;
        for (k, n) in served.iter().enumerate() {
            let at = k as u64 * STEP;
            total += n;
            rec.set(
                (
                    "batch_http_requests",
                    "counter",
                    "batch_http_requests_total",
                ),
                labels.clone(),
                k as u64,
                total,
            );
            // Seconds into the history, not Unix time: only its changes count.
            rec.set(
                (
                    "batch_job_last_success_timestamp_seconds",
                    "gauge",
                    "batch_job_last_success_timestamp_seconds",
                ),
                labels.clone(),
                k as u64,
                at.min(stopped) / HOUR * HOUR,
            );
        }
    }
    rec.series
        .into_iter()
        .map(|((family, kind, sample, labels), values)| Series {
            family,
            kind,
            sample,
            labels,
            values,
        })
        .collect()
}

/// A running `promtool`, killed on drop (a panic too).
struct Promtool {
    file: PathBuf,
    child: Child,
}

impl Drop for Promtool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long promtool may take over all the files.
const PROMTOOL_LIMIT: Duration = Duration::from_secs(100);

/// Writes the history as one OpenMetrics file per UTC day (so each file
/// covers whole 2 h blocks, and promtool, which reads its input once per
/// block, reads each file 12 times, not 250 times) and turns them into
/// blocks in `data`, two promtools at a time. Returns the number of samples.
fn write_blocks(tools: &Tools, series: &[Series], start: u64, dir: &Path, data: &Path) -> usize {
    let steps = series[0].values.len() as u64;
    let mut families: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
    for s in series {
        families.entry(s.family).or_default().push(s);
    }
    let mut files = Vec::new();
    let mut samples = 0;
    let mut k = 0;
    while k < steps {
        // The steps of this UTC day.
        let day = (start + k * STEP) / DAY;
        let end = (((day + 1) * DAY).saturating_sub(start))
            .div_ceil(STEP)
            .min(steps);
        let mut text = String::new();
        for (family, members) in &families {
            let _ = writeln!(text, "# TYPE {family} {}", members[0].kind);
            for s in members {
                for i in k..end {
                    let t = start + i * STEP;
                    if let Some(v) = s.values[i as usize] {
                        let _ = writeln!(text, "{}{{{}}} {v} {t}", s.sample, s.labels);
                        samples += 1;
                    }
                }
            }
        }
        text.push_str("# EOF\n");
        let file = dir.join(format!("history-{day}.om"));
        std::fs::write(&file, text).expect("write OpenMetrics");
        files.push(file);
        k = end;
    }
    let deadline = Instant::now() + PROMTOOL_LIMIT;
    let mut pending = files.into_iter();
    let mut running: Vec<Promtool> = Vec::new();
    loop {
        while running.len() < 2 {
            let Some(file) = pending.next() else { break };
            let child = Command::new(&tools.promtool)
                .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
                .arg(&file)
                .arg(data)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn promtool");
            running.push(Promtool { file, child });
        }
        if running.is_empty() {
            return samples;
        }
        let mut i = 0;
        while i < running.len() {
            let Some(status) = running[i].child.try_wait().expect("try_wait") else {
                i += 1;
                continue;
            };
            let mut done = running.swap_remove(i);
            let mut err = String::new();
            if let Some(mut e) = done.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            assert!(
                status.success(),
                "promtool tsdb create-blocks-from openmetrics {} failed ({status}): {err}",
                done.file.display()
            );
            std::fs::remove_file(&done.file).expect("remove OpenMetrics file");
        }
        assert!(
            Instant::now() < deadline,
            "promtool took over {PROMTOOL_LIMIT:?} to write the history's blocks"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The RFC 3339 time printed after `after` in `line`, as Unix seconds.
fn printed_time(line: &str, after: &str) -> f64 {
    let at = line
        .split_once(after)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no time after {after:?} in {line}"));
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{at} is not RFC 3339 ({e}): {line}"))
        .unix_timestamp() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_three_weeks_gives_each_verdict_from_stored_data() {
    if !enabled("history_of_three_weeks_gives_each_verdict_from_stored_data") {
        return;
    }
    let tools = Tools::find();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("tsdb");
    std::fs::create_dir(&data).expect("tsdb dir");

    // Three weeks ending at the last whole step before now: the instant
    // queries (5 min lookback) see the last sample as current.
    let end = now_secs() / STEP * STEP;
    let start = end - 21 * DAY;
    let steps = (end - start) / STEP + 1;
    let built = Instant::now();
    let series = history(steps);
    let samples = write_blocks(&tools, &series, start, dir.path(), &data);
    println!(
        "history: {} series, {samples} samples, blocks written in {:.1?}",
        series.len(),
        built.elapsed()
    );
    let loading = Instant::now();
    let prom = PromServer::start(&tools, dir.path(), &data, &[]).await;
    println!(
        "prometheus ready on the history in {:.1?}",
        loading.elapsed()
    );

    // The board over a week, as a person would ask it.
    let text = fleet(&prom, &["--window", "7d"]).await;
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    println!(
        "one `cutover fleet --window 7d` call against the history took {} ms\n{}",
        text.took.as_millis(),
        text.stdout
    );
    let b = board(&prom, "7d").await.expect("board");
    let now = num(&b["evaluated_at"]);
    let day = DAY as f64;
    let near = |got: f64, want: f64, slack: f64| (got - want).abs() <= slack;

    // customers: ready to leave shadow, ops next and ready.
    let d = dataset(&b, "customers").unwrap_or_else(|| panic!("{b}"));
    let shadow = &d["shadow"];
    assert_eq!(shadow["ready"], true, "{}", summary(&b, "customers"));
    assert!(num(&shadow["divergence_ratio"]) < 0.001, "{shadow}");
    assert_eq!(
        d["next_to_move"]["consumer"],
        "ops",
        "{}",
        summary(&b, "customers")
    );
    assert_eq!(d["next_to_move"]["ready"], true, "{}", d["next_to_move"]);
    let dash = consumer(d, "dash").expect("dash");
    assert_eq!(modes(dash), ["streaming"]);
    let on = now - num(&dash["mode_since"]["at"]);
    assert!(
        near(on, 16.0 * day, (HOUR + STEP) as f64),
        "dash in streaming for {on} s"
    );
    assert!(pairs(d).is_empty());

    // refunds: not ready, and the reason is the missing records.
    let d = dataset(&b, "refunds").unwrap_or_else(|| panic!("{b}"));
    let shadow = &d["shadow"];
    assert_eq!(shadow["ready"], false, "{shadow}");
    assert!(num(&shadow["missing"]) > 0.0, "{shadow}");
    assert!(
        shadow["reason"]
            .as_str()
            .is_some_and(|r| r.contains(" missing and 0 duplicate records: fix before proceeding")),
        "{shadow}"
    );
    assert_eq!(d["next_to_move"]["consumer"], "dash");

    // payments: ops is next, but dash's gate trip 9 days ago holds it,
    // though the hourly mode history never saw the 12-minute rollback.
    let d = dataset(&b, "payments").unwrap_or_else(|| panic!("{b}"));
    let next = &d["next_to_move"];
    assert_eq!(next["consumer"], "ops", "{}", summary(&b, "payments"));
    assert_eq!(next["ready"], false, "{next}");
    assert_eq!(
        next["waiting_for"],
        serde_json::json!(["dash (low) had a gate trip in the last 14d"]),
        "{next}"
    );
    let dash = consumer(d, "dash").expect("dash");
    let on = now - num(&dash["streaming_since"]["at"]);
    assert!(
        near(on, 18.0 * day, (HOUR + STEP) as f64),
        "dash on streaming for {on} s"
    );
    assert!(num(&dash["gate_trips_settle"]) >= 1.0, "{dash}");
    assert_eq!(
        num(&dash["gate_trips_window"]),
        0.0,
        "the trip is older than the week: {dash}"
    );

    // orders: everyone streaming_only for 8 days, nobody next. Neither ops'
    // restart nor fraud's new pod is a mode change: their runs go back 8
    // days too.
    let d = dataset(&b, "orders").unwrap_or_else(|| panic!("{b}"));
    for (name, _) in RISKS {
        let c = consumer(d, name).unwrap_or_else(|| panic!("{name} in orders"));
        assert_eq!(modes(c), ["streaming_only"], "{name}");
        let since = now - num(&c["mode_since"]["at"]);
        assert!(
            near(since, 8.0 * day, (HOUR + STEP) as f64),
            "{name}: {since} s"
        );
        // Its last batch read was its last step on `streaming`, 8 days ago:
        // outside the week, inside the board's 30-day history.
        let read = now - num(&c["last_batch_read"]);
        assert!(near(read, 8.0 * day, (HOUR + STEP) as f64), "{name}: {c}");
        assert_eq!(num(&c["reads_batch"]), 0.0, "{name}: {c}");
    }
    assert_eq!(d["next_to_move"]["consumer"], Value::Null);

    // invoices: ops' stale two hours after the restart are seen.
    let last_read = (start + (RESTART + STALE) - STEP) as f64;
    let d = dataset(&b, "invoices").unwrap_or_else(|| panic!("{b}"));
    let ops = consumer(d, "ops").expect("ops");
    let seen = num(&ops["last_batch_read"]);
    assert!(
        (last_read..last_read + HOUR as f64).contains(&seen),
        "board: ops' last batch read {seen}, expected {last_read} to an hour"
    );
    let since = now - num(&ops["mode_since"]["at"]);
    assert!(
        near(since, 3.0 * day - STALE as f64, (HOUR + STEP) as f64),
        "ops streaming_only again for {since} s"
    );

    // shipments: fraud's run on streaming_only spans its two pods.
    let d = dataset(&b, "shipments").unwrap_or_else(|| panic!("{b}"));
    let fraud = consumer(d, "fraud").expect("fraud in shipments");
    assert_eq!(modes(fraud), ["streaming_only"]);
    let since = now - num(&fraud["mode_since"]["at"]);
    assert!(
        near(since, 8.0 * day, (HOUR + STEP) as f64),
        "fraud: {since} s"
    );

    // The decommission steps, from batch's own watermark and requests.
    let args = [
        "--window",
        "7d",
        "--batch-requests",
        BATCH_REQUESTS,
        "--batch-watermark",
        BATCH_WATERMARK,
    ];
    let text = fleet(&prom, &args).await;
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    println!("{}", text.stdout);
    let json = fleet(&prom, &[&args[..], &["--json"]].concat()).await;
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let j: Value = serde_json::from_str(&json.stdout).expect("board JSON");
    let steps = |name: &str| {
        dataset(&j, name).unwrap_or_else(|| panic!("{name}"))["decommission_steps"].clone()
    };
    let returns = steps("returns");
    assert_eq!(returns["step"], 1, "{returns}");
    assert_eq!(returns["clean"], true, "{returns}");
    let ran = num(&returns["step1_seconds"]);
    assert!(
        near(ran, 3.0 * day + 2.0 * HOUR as f64, HOUR as f64),
        "returns: step 1 for {ran} s"
    );
    let date = |t: u64| {
        let d = time::OffsetDateTime::from_unix_timestamp(t as i64).expect("time");
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let since = num(&returns["step1_since"]["at"]) as u64;
    assert!(
        text.stdout.contains(&format!(
            "  decommission steps: step 1 since {}, 3d of 7d clean\n",
            date(since)
        )),
        "{}",
        text.stdout
    );
    assert_eq!(
        dataset(&j, "returns").expect("returns")["unknown_readers"]["reads"],
        0.0
    );
    // Every consumer streaming_only, nothing compares: shadow is behind it.
    let shadow = &dataset(&j, "ledger").expect("ledger")["shadow"];
    assert_eq!(shadow["left"], true, "{shadow}");
    let ledger = steps("ledger");
    assert_eq!(ledger["step"], 2, "{ledger}");
    assert_eq!(ledger["step2_may_begin"], true, "{ledger}");
    let ran = num(&ledger["step1_seconds"]);
    assert!(
        near(ran, 10.0 * day + 2.0 * HOUR as f64, HOUR as f64),
        "ledger: step 1 for {ran} s"
    );
    assert!(
        text.stdout.contains("  step 2 (archive batch's outputs) may begin; step 3 (remove batch's code) follows 7 days after step 2\n"),
        "{}",
        text.stdout
    );
    // A dataset whose batch exports nothing: the steps say why they are unknown.
    assert_eq!(steps("orders")["step"], 0);
    assert!(
        steps("orders")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("--batch-watermark matched no series")),
        "{}",
        steps("orders")
    );

    // The page: written where CUTOVER_FLEET_PAGE says (.ci/run renders it
    // in headless Chromium), else in the test's temp dir.
    let page_path = std::env::var_os("CUTOVER_FLEET_PAGE")
        .map_or_else(|| dir.path().join("fleet.html"), PathBuf::from);
    let page_arg = page_path.to_string_lossy().into_owned();
    let out = fleet(&prom, &[&args[..], &["--html", &page_arg]].concat()).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("\ndataset orders "), "{}", out.stdout);
    let page = std::fs::read_to_string(&page_path).expect("the page was written");
    check_page(&page);
    println!("the board's page: {}", page_path.display());

    // Decommission: orders is ready (the restart's drop to 0 is no read) ...
    let out = fleet(&prom, &["--decommission", "orders"]).await;
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with("decommission orders over the last 7d00h: READY")
    );

    // ... invoices is blocked by ops, whose last batch read is named.
    let out = fleet(&prom, &["--decommission", "invoices"]).await;
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let json = fleet(&prom, &["--decommission", "invoices", "--json"]).await;
    assert_eq!(json.code, Some(1), "{}", json.stderr);
    let j: Value = serde_json::from_str(&json.stdout).expect("decommission JSON");
    let step = num(&j["window_seconds"]) / 2000.0;
    let by = |name: &str| {
        j["consumers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["consumer"] == name))
            .unwrap_or_else(|| panic!("{name} in {j}"))
    };
    let t = num(&by("ops")["last_batch_read"]);
    assert!(
        (last_read..last_read + step.max(15.0).round()).contains(&t),
        "decommission: ops' last batch read {t}, expected {last_read} to a step"
    );
    assert!(num(&by("ops")["batch_reads"]) > 0.0, "{}", by("ops"));
    for name in ["dash", "fraud"] {
        assert_eq!(by(name)["blocks"], serde_json::json!([]), "{}", by(name));
    }
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("  ops  "))
        .unwrap_or_else(|| panic!("ops not named:\n{}", out.stdout));
    assert!(
        line.contains("BLOCKS: sent reads to batch during the window"),
        "{line}"
    );
    // The text comes from a call of its own: its range starts a moment
    // later, so its steps (and the time it prints) may differ by one.
    let printed = printed_time(line, "last batch read ");
    assert!(
        (last_read..last_read + step.max(15.0).round()).contains(&printed),
        "text: ops' last batch read {printed}, expected {last_read} to a step: {line}"
    );

    // shipments: fraud's new pod was first scraped with 7 batch comparisons
    // already counted; increase() sees no rise, `unless … offset` does.
    let moved = (start + MOVED) as f64;
    let out = fleet(&prom, &["--decommission", "shipments"]).await;
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let json = fleet(&prom, &["--decommission", "shipments", "--json"]).await;
    assert_eq!(json.code, Some(1), "{}", json.stderr);
    let j: Value = serde_json::from_str(&json.stdout).expect("decommission JSON");
    let fraud = j["consumers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["consumer"] == "fraud"))
        .unwrap_or_else(|| panic!("fraud in {j}"));
    assert_eq!(fraud["batch_reads_unseen_by_increase"], true, "{fraud}");
    let t = num(&fraud["last_batch_read"]);
    assert!(
        (moved..moved + step.max(15.0).round()).contains(&t),
        "decommission: fraud's last batch read {t}, expected {moved} to a step"
    );
    for c in j["consumers"].as_array().into_iter().flatten() {
        if c["consumer"] != "fraud" {
            assert_eq!(c["blocks"], serde_json::json!([]), "{c}");
        }
    }
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("  fraud  "))
        .unwrap_or_else(|| panic!("fraud not named:\n{}", out.stdout));
    assert!(
        line.contains("BLOCKS: sent reads to batch during the window"),
        "{line}"
    );
    let printed = printed_time(line, "last batch read ");
    assert!(
        (moved..moved + step.max(15.0).round()).contains(&printed),
        "text: fraud's last batch read {printed}, expected {moved} to a step: {line}"
    );
}

/// What the page must show from the history: a section per dataset with
/// each consumer's row, its mode runs in the timeline, the guide's phases
/// in order for `orders`, the payments gate trip, and the steps.
fn check_page(page: &str) {
    let section = |name: &str| -> &str {
        let open = format!("<section class=\"dataset\" id=\"dataset-{name}\">");
        let at = page
            .find(&open)
            .unwrap_or_else(|| panic!("no section for {name}"));
        let rest = &page[at..];
        &rest[..rest.find("</section>").unwrap_or(rest.len())]
    };
    for name in DATASETS {
        let s = section(name);
        for (consumer, _) in RISKS {
            assert!(
                s.contains(&format!("<tr data-consumer=\"{consumer}\">")),
                "{name}: no table row for {consumer}"
            );
            assert!(
                s.contains(&format!(
                    "<g class=\"consumer\" data-consumer=\"{consumer}\"><text"
                )),
                "{name}: no timeline row for {consumer}"
            );
        }
    }
    let orders = section("orders");
    let band = "<g class=\"band\"><title>phase ";
    let bands: Vec<&str> = orders
        .match_indices(band)
        .filter_map(|(i, _)| orders.get(i + band.len()..i + band.len() + 1))
        .collect();
    assert_eq!(
        bands,
        ["1", "2", "3", "4"],
        "orders: the guide's phases in order"
    );
    for mode in ["shadow", "streaming", "streaming_only"] {
        assert!(
            orders.contains(&format!("data-mode=\"{mode}\"")),
            "orders: no {mode} run in the timeline"
        );
    }
    assert!(
        section("payments").contains("class=\"gate-trip\""),
        "payments: dash's gate trip is not marked"
    );
    assert!(
        section("refunds").contains("<polyline"),
        "refunds: no divergence line"
    );
    assert!(section("returns").contains("running 3d"), "returns: step 1");
    assert!(
        section("ledger")
            .contains("<li class=\"now\"><b>2. archive batch's outputs</b><br>may begin"),
        "ledger: step 2"
    );
}
