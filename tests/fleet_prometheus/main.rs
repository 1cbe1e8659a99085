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
//!
//! Here: the gate, a Prometheus of the test's own, `cutover fleet` and
//! readers of its board; `live` and `history` hold one test each.

// The integration binary's support code, shared rather than copied.
#[path = "../it/support/mod.rs"]
mod support;

mod history;
mod live;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Output, run_cutover, try_get, wait_until_async_within};

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
