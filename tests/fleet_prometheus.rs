//! `cutover fleet` against a real Prometheus (Debian's `prometheus` and
//! `promtool`), never a fake one:
//!
//! - *live*: three real sidecars (risk low, medium, high; one dataset)
//!   scraped every second by a Prometheus this test starts; their files are
//!   edited from mode to mode and the board follows each edit, flagging the
//!   high-risk consumer that goes to streaming first, and keeping a killed
//!   sidecar on the board as not reporting;
//! - *history*: three weeks in the migration guide's order, written as
//!   OpenMetrics and turned into blocks by `promtool tsdb
//!   create-blocks-from openmetrics`, then judged by the board and by
//!   `--decommission` from real PromQL over the stored data.
//!
//! `cargo test` must pass with the Rust toolchain alone, so these run only
//! when `CUTOVER_PROMETHEUS_TESTS=1` (as `.ci/run` sets); otherwise each says
//! on the terminal that it was skipped and why. With the variable set, a
//! missing `prometheus` or `promtool` fails the test: it never skips then.

// The integration binary's support code, shared rather than copied.
#[path = "it/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    Backend, Behaviour, Binary, Config, Output, Route, now_secs, run_cutover, try_get,
    wait_until_async_within,
};

const GATE: &str = "CUTOVER_PROMETHEUS_TESTS";

/// How long Prometheus may take to load its TSDB and answer `/-/ready`.
const PROMETHEUS_START: Duration = Duration::from_secs(60);

/// How long an edit may take to reach the board: the file watcher, a 1 s
/// scrape, and two scrapes for `increase()` to see new reads.
const BOARD_FOLLOWS: Duration = Duration::from_secs(30);

/// Whether to run. When not, says so where the harness does not capture it
/// (`eprintln!` would be swallowed for a passing test).
fn enabled(test: &str) -> bool {
    if std::env::var(GATE).is_ok_and(|v| v == "1") {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: it needs a real Prometheus; run it with {GATE}=1 \
         (as .ci/run does) and Debian's prometheus package installed"
    );
    false
}

/// The two Prometheus binaries. Asked for only when the gate is set, so a
/// missing one is a failure.
struct Tools {
    prometheus: PathBuf,
    promtool: PathBuf,
}

impl Tools {
    fn find() -> Tools {
        let find = |name: &str| -> PathBuf {
            std::env::var_os("PATH")
                .and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|d| d.join(name))
                        .find(|p| p.is_file())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{GATE}=1 but `{name}` is not on PATH: install Debian's prometheus \
                         package (apt-get install prometheus). Asked to run, this test never skips."
                    )
                })
        };
        Tools {
            prometheus: find("prometheus"),
            promtool: find("promtool"),
        }
    }
}

/// A port nobody listens on right now (bound, then released). Prometheus may
/// lose a race for it; `PromServer::start` then tries another.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A Prometheus server of this test's own, killed on drop (a panic too).
struct PromServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PromServer {
    /// Starts Prometheus on `data` (a TSDB directory, maybe holding
    /// backfilled blocks) scraping `targets` every second, and waits until
    /// it is ready: its blocks are loaded.
    async fn start(tools: &Tools, dir: &Path, data: &Path, targets: &[SocketAddr]) -> PromServer {
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = dir.join("prometheus.yml");
        let scrape = if targets.is_empty() {
            "scrape_configs: []\n".to_owned()
        } else {
            format!(
                "scrape_configs:\n  - job_name: cutover\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            )
        };
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{scrape}"
            ),
        )
        .expect("write prometheus.yml");
        let mut last = String::new();
        for attempt in 1..=5 {
            let port = free_port();
            let log = dir.join(format!("prometheus.{attempt}.log"));
            let child = Command::new(&tools.prometheus)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                // The history reaches three weeks back; the default (15d)
                // would delete its first week at start.
                .arg("--storage.tsdb.retention.time=90d")
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("prometheus log"))
                .spawn()
                .expect("spawn prometheus");
            let mut server = PromServer {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log,
            };
            match server.ready().await {
                Ok(()) => return server,
                Err(exit) => {
                    last = format!("{exit}\n{}", server.log_text());
                    if !last.contains("address already in use") {
                        panic!("prometheus exited before it was ready: {last}");
                    }
                }
            }
        }
        panic!("prometheus could not bind a free port in 5 attempts: {last}");
    }

    /// `Ok` once `/-/ready` answers 200; `Err` with the exit status if the
    /// process ended first.
    async fn ready(&mut self) -> Result<(), String> {
        let ready = format!("{}/-/ready", self.url);
        let child = &mut self.child;
        wait_until_async_within(PROMETHEUS_START, "prometheus is ready", || {
            let exited = child.try_wait().expect("try_wait").map(|s| s.to_string());
            let ready = ready.clone();
            async move {
                if let Some(status) = exited {
                    return Ok(Err(format!("prometheus exited: {status}")));
                }
                match try_get(&ready).await {
                    Ok(a) if a.status == 200 => Ok(Ok(())),
                    Ok(a) => Err(format!("/-/ready answered {}: {}", a.status, a.text())),
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `cutover fleet --prometheus URL ARGS…`, run off the runtime's threads
/// (the fake backends of the live test serve on them meanwhile).
async fn fleet(prom: &PromServer, args: &[&str]) -> Output {
    let mut all = vec![
        "fleet".to_owned(),
        "--prometheus".to_owned(),
        prom.url.clone(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || run_cutover(&all))
        .await
        .expect("cutover fleet runner")
}

/// The board as JSON; `Err` (for a wait to retry) if the call failed.
async fn board(prom: &PromServer, window: &str) -> Result<Value, String> {
    let out = fleet(prom, &["--window", window, "--json"]).await;
    if out.code != Some(0) {
        return Err(format!(
            "cutover fleet exited {:?}: {}",
            out.code, out.stderr
        ));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("not JSON ({e}): {}", out.stdout))
}

fn dataset<'a>(board: &'a Value, name: &str) -> Option<&'a Value> {
    board["datasets"]
        .as_array()?
        .iter()
        .find(|d| d["dataset"] == name)
}

fn consumer<'a>(dataset: &'a Value, name: &str) -> Option<&'a Value> {
    dataset["consumers"]
        .as_array()?
        .iter()
        .find(|c| c["consumer"] == name)
}

fn modes(c: &Value) -> Vec<&str> {
    c["modes"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// One line per consumer of `name`, and its verdicts: what a failed wait shows.
fn summary(board: &Value, name: &str) -> String {
    let Some(d) = dataset(board, name) else {
        return format!("no dataset {name} on the board: {board}");
    };
    let mut out = String::new();
    for c in d["consumers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{} risk={} modes={:?} reads b/s={}/{} comparisons={}",
            c["consumer"],
            c["risk"],
            modes(c),
            c["reads_batch"],
            c["reads_streaming"],
            c["comparisons"]
        );
    }
    let _ = writeln!(
        out,
        "next_to_move={} violations={} shadow={}",
        d["next_to_move"], d["risk_order_violations"], d["shadow"]
    );
    out
}

// ---------------------------------------------------------------------------
// live
// ---------------------------------------------------------------------------

const LIVE: [(&str, &str); 3] = [("dash", "low"), ("ops", "medium"), ("fraud", "high")];

/// One real `cutover run` process for one consumer, its config in a temp dir.
struct Sidecar {
    name: &'static str,
    risk: &'static str,
    _dir: tempfile::TempDir,
    path: PathBuf,
    batch: String,
    streaming: String,
    bin: Binary,
}

/// How people rewrite a config file.
#[derive(Clone, Copy)]
enum Edit {
    /// Write a sibling and rename it over the file (most editors, kubectl's
    /// ConfigMap swap in spirit).
    RenameOver,
    /// Truncate and write in place (`cat > file`, `sed -i` on some systems).
    InPlace,
}

/// A consumer's file: one route of dataset `orders` in `mode`.
fn sidecar_config(name: &str, risk: &str, batch: &str, streaming: &str, mode: &str) -> Config {
    Config::new().consumer(name).risk(risk).route(
        Route::orders(batch, streaming)
            .dataset("orders")
            .mode(mode)
            .no_probe(),
    )
}

impl Sidecar {
    fn start(
        name: &'static str,
        risk: &'static str,
        batch: &Backend,
        streaming: &Backend,
    ) -> Sidecar {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cutover.yaml");
        let batch = batch.url("/tables/orders");
        let streaming = streaming.url("/v1/orders");
        sidecar_config(name, risk, &batch, &streaming, "batch").write(&path);
        let bin = Binary::run(&path);
        Sidecar {
            name,
            risk,
            _dir: dir,
            path,
            batch,
            streaming,
            bin,
        }
    }

    fn set_mode(&self, mode: &str, how: Edit) {
        let text = sidecar_config(self.name, self.risk, &self.batch, &self.streaming, mode).yaml();
        match how {
            Edit::RenameOver => {
                let tmp = self.path.with_file_name(".cutover.yaml.swp");
                std::fs::write(&tmp, text).expect("write temp file");
                std::fs::rename(&tmp, &self.path).expect("rename over config");
            }
            Edit::InPlace => std::fs::write(&self.path, text).expect("rewrite config"),
        }
    }
}

/// Reads through every sidecar, ten a second each, until dropped.
struct Traffic(tokio::task::JoinHandle<()>);

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn drive(urls: Vec<String>) -> Traffic {
    Traffic(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            for u in &urls {
                let _ = try_get(u).await;
            }
        }
    }))
}

/// Waits until the board's `orders` satisfies `check` (which says what it
/// missed), and returns that board.
async fn board_until(
    prom: &PromServer,
    what: &str,
    check: impl Fn(&Value) -> Result<(), String>,
) -> Value {
    let started = Instant::now();
    let b = wait_until_async_within(BOARD_FOLLOWS, what, || async {
        let b = board(prom, "5m").await?;
        let d = dataset(&b, "orders").ok_or_else(|| summary(&b, "orders"))?;
        check(d).map_err(|e| format!("{e}\n{}", summary(&b, "orders")))?;
        Ok::<Value, String>(b)
    })
    .await;
    println!("board shows {what} after {:.1?}", started.elapsed());
    b
}

fn expect_modes(d: &Value, want: &[(&str, &str)]) -> Result<(), String> {
    for (name, mode) in want {
        let c = consumer(d, name).ok_or_else(|| format!("{name} not on the board"))?;
        if modes(c) != [*mode] {
            return Err(format!("{name} is {:?}, not {mode}", modes(c)));
        }
    }
    Ok(())
}

fn pairs(d: &Value) -> Vec<(String, String)> {
    d["risk_order_violations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["on_streaming"].as_str().unwrap_or("?").to_owned(),
                v["on_batch"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_board_follows_each_edit_and_flags_high_risk_first() {
    if !enabled("live_board_follows_each_edit_and_flags_high_risk_first") {
        return;
    }
    let tools = Tools::find();
    let body = r#"{"data":[{"id":1,"total":10}]}"#;
    let batch = Backend::start(Behaviour::ok(body)).await;
    let streaming = Backend::start(Behaviour::ok(body)).await;
    let mut sidecars: Vec<Sidecar> = LIVE
        .iter()
        .map(|(name, risk)| Sidecar::start(name, risk, &batch, &streaming))
        .collect();
    let by = |name: &str| sidecars.iter().find(|s| s.name == name).expect("sidecar");
    let dir = tempfile::tempdir().expect("temp dir");
    let admins: Vec<SocketAddr> = sidecars.iter().map(|s| s.bin.admin).collect();
    let prom = PromServer::start(&tools, dir.path(), &dir.path().join("tsdb"), &admins).await;
    let _traffic = drive(
        sidecars
            .iter()
            .map(|s| format!("http://{}/v1/orders/1", s.bin.listen))
            .collect(),
    );

    // 1. Everyone on batch: all three known with their risk; dash is next.
    let b = board_until(&prom, "three consumers on batch, reading", |d| {
        expect_modes(
            d,
            &[("dash", "batch"), ("ops", "batch"), ("fraud", "batch")],
        )?;
        for (name, risk) in LIVE {
            let c = consumer(d, name).expect("checked above");
            if c["risk"] != risk || num(&c["reads_batch"]) <= 0.0 {
                return Err(format!(
                    "{name}: risk {} reads {}",
                    c["risk"], c["reads_batch"]
                ));
            }
        }
        Ok(())
    })
    .await;
    let d = dataset(&b, "orders").expect("orders");
    assert_eq!(d["consumers"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        d["next_to_move"]["consumer"],
        "dash",
        "{}",
        summary(&b, "orders")
    );
    assert_eq!(d["next_to_move"]["ready"], true);
    assert!(pairs(d).is_empty());
    assert_eq!(d["shadow"]["ready"], false, "no comparison yet");

    // 2. The high-risk consumer goes first: the board flags it against both.
    by("fraud").set_mode("streaming", Edit::RenameOver);
    let b = board_until(&prom, "fraud on streaming, breaking the risk order", |d| {
        expect_modes(
            d,
            &[("dash", "batch"), ("ops", "batch"), ("fraud", "streaming")],
        )?;
        let fraud = consumer(d, "fraud").expect("checked above");
        if num(&fraud["reads_streaming"]) <= 0.0 {
            return Err("no streaming read of fraud counted yet".into());
        }
        Ok(())
    })
    .await;
    let d = dataset(&b, "orders").expect("orders");
    assert_eq!(
        pairs(d),
        [
            ("fraud".to_owned(), "dash".to_owned()),
            ("fraud".to_owned(), "ops".to_owned())
        ]
    );
    assert_eq!(d["next_to_move"]["consumer"], "dash");
    let text = fleet(&prom, &["--window", "5m", "--dataset", "orders"]).await;
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    println!("{}", text.stdout);
    assert!(
        text.stdout.contains("risk order: VIOLATED"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("fraud (high) reads streaming while dash (low) still reads batch"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("3 consumers known through cutover"));

    // 3. Roll fraud back (in place), start dash's shadow (rename).
    by("fraud").set_mode("batch", Edit::InPlace);
    by("dash").set_mode("shadow", Edit::RenameOver);
    board_until(
        &prom,
        "fraud back on batch, dash in shadow comparing",
        |d| {
            expect_modes(
                d,
                &[("dash", "shadow"), ("ops", "batch"), ("fraud", "batch")],
            )?;
            if !pairs(d).is_empty() {
                return Err(format!("violations left: {:?}", pairs(d)));
            }
            let dash = consumer(d, "dash").expect("checked above");
            if num(&dash["comparisons"]) <= 0.0 {
                return Err("no comparison counted for dash yet".into());
            }
            Ok(())
        },
    )
    .await;

    // 4. dash moves to streaming: ops is next, waiting for dash's 14 days.
    by("dash").set_mode("streaming", Edit::InPlace);
    let b = board_until(&prom, "dash on streaming, ops next and waiting", |d| {
        expect_modes(
            d,
            &[("dash", "streaming"), ("ops", "batch"), ("fraud", "batch")],
        )?;
        if d["next_to_move"]["consumer"] != "ops" {
            return Err(format!("next to move is {}", d["next_to_move"]["consumer"]));
        }
        Ok(())
    })
    .await;
    let next = &dataset(&b, "orders").expect("orders")["next_to_move"];
    assert_eq!(next["ready"], false, "{next}");
    assert!(
        next["waiting_for"][0]
            .as_str()
            .is_some_and(|w| w.starts_with("dash (low) has read streaming for")),
        "{next}"
    );
    assert!(pairs(dataset(&b, "orders").expect("orders")).is_empty());

    // 5. Everyone to streaming_only: nobody is next; batch was read minutes
    //    ago, so batch cannot go yet, and each consumer is named.
    for (s, how) in sidecars
        .iter()
        .zip([Edit::RenameOver, Edit::InPlace, Edit::RenameOver])
    {
        s.set_mode("streaming_only", how);
    }
    let b = board_until(&prom, "every consumer streaming_only", |d| {
        expect_modes(
            d,
            &[
                ("dash", "streaming_only"),
                ("ops", "streaming_only"),
                ("fraud", "streaming_only"),
            ],
        )
    })
    .await;
    let d = dataset(&b, "orders").expect("orders");
    assert_eq!(d["next_to_move"]["consumer"], Value::Null);
    assert!(pairs(d).is_empty());
    let out = fleet(&prom, &["--decommission", "orders", "--window", "5m"]).await;
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    for (name, _) in LIVE {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&format!(
                "  {name}  streaming_only  BLOCKS: sent reads to batch"
            ))),
            "{name} not named as a batch reader:\n{}",
            out.stdout
        );
    }

    // 6. fraud's sidecar stops (it ran for under a minute, so no hourly step
    //    of the mode history saw it): the board keeps it, NOT REPORTING,
    //    with its last mode, and --decommission says it cannot vouch for it.
    let fraud = sidecars
        .iter_mut()
        .find(|s| s.name == "fraud")
        .expect("fraud");
    fraud.bin.child.kill().expect("kill fraud's sidecar");
    fraud.bin.child.wait().expect("reap fraud's sidecar");
    let b = board_until(&prom, "fraud not reporting, still on the board", |d| {
        let fraud = consumer(d, "fraud").ok_or("fraud dropped from the board")?;
        if !modes(fraud).is_empty() {
            return Err(format!("fraud still reports {:?}", modes(fraud)));
        }
        if fraud["last_modes"] != serde_json::json!(["streaming_only"]) {
            return Err(format!("fraud's last modes: {}", fraud["last_modes"]));
        }
        Ok(())
    })
    .await;
    let d = dataset(&b, "orders").expect("orders");
    assert_eq!(d["consumers"].as_array().map(Vec::len), Some(3));
    // When it was last seen comes at 15 s steps, which a life this short can
    // fall between; if one caught it, it is right.
    let fraud = consumer(d, "fraud").expect("fraud");
    if !fraud["last_seen"].is_null() {
        let seen = num(&b["evaluated_at"]) - num(&fraud["last_seen"]);
        assert!((0.0..120.0).contains(&seen), "fraud last seen {seen} s ago");
    }
    let text = fleet(&prom, &["--window", "5m", "--dataset", "orders"]).await;
    println!("{}", text.stdout);
    let row = text
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("fraud "))
        .unwrap_or_else(|| panic!("no fraud row:\n{}", text.stdout));
    assert!(
        row.contains("NOT REPORTING (last streaming_only, seen "),
        "{row}"
    );
    // It read batch in the window: never "none".
    assert!(!row.contains("none in"), "{row}");
    assert!(text.stdout.contains("3 consumers known through cutover"));
}

// ---------------------------------------------------------------------------
// history
// ---------------------------------------------------------------------------

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
/// Two events touch every dataset of a consumer, as they would: ops'
/// sidecar restarts in place (same `instance`, counters back to 0), and
/// fraud's pod moves (a new `instance`: its series end, new ones begin).
const DATASETS: [&str; 6] = [
    "customers",
    "refunds",
    "payments",
    "orders",
    "invoices",
    "shipments",
];

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
        "refunds" => Some((if k % 10 == 0 { "missing" } else { "aggregate" }, 1)),
        _ if k % 20 == 0 => Some(("timing", 1)),
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
