//! `cutover check -c FILE` run as a user runs it: the real binary on real files.

use crate::support::{Config, Route, WAIT, refusing_addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;

/// Runs `cutover check -c path`, giving up (and failing the test) after `WAIT`.
fn check(path: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cutover"));
    command.arg("check").arg("-c").arg(path);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(command.output());
    });
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("cutover check did not finish within {WAIT:?}"))
        .expect("cutover binary runs")
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp config");
    path
}

/// Two routes, one in shadow, one in batch (the default mode).
fn good() -> Config {
    let down = refusing_addr();
    Config::new()
        .consumer("billing-dashboard")
        .route(
            Route::orders(
                format!("http://{down}/tables/orders"),
                format!("http://{down}/v1/orders"),
            )
            .mode("shadow"),
        )
        .route(Route::new(
            "refunds",
            "/v1/refunds",
            format!("http://{down}/tables/refunds"),
            format!("http://{down}/v1/refunds"),
        ))
}

#[test]
fn a_good_config_passes_with_a_one_line_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "good.yaml", &good().yaml());
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_eq!(
        stdout.trim_end(),
        format!(
            "{}: ok: 2 routes (refunds batch, orders shadow), consumer billing-dashboard",
            path.display()
        )
    );
}

#[test]
fn check_warns_when_a_log_path_is_not_writable_under_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = good();
    let yaml = config.yaml().replace(
        "mode: shadow",
        "mode: shadow\n  reconcile:\n    divergence_log: logs/div.jsonl",
    );
    let path = write_config(dir.path(), "good.yaml", &yaml);
    let run = |data_dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["check", "--data-dir"])
            .arg(data_dir)
            .arg(&path)
            .output()
            .expect("runs")
    };
    // No `logs` directory under the data dir: a warning, and still valid.
    let out = run(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: route orders: divergence_log")
            && stderr.contains("logs/div.jsonl")
            && stderr.contains("--data-dir"),
        "{stderr}"
    );
    // Once it exists: no warning, and check left nothing behind.
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let out = run(dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("logs")).unwrap().count(),
        0
    );
}

#[test]
fn check_reads_a_positional_file_and_standard_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "good.yaml", &good().yaml());
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok: 2 routes"));

    let stdin = |text: String| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["check", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut pipe = child.stdin.take().expect("stdin piped");
        std::thread::spawn(move || pipe.write_all(text.as_bytes()));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        rx.recv_timeout(WAIT)
            .expect("cutover check - finishes")
            .expect("runs")
    };
    let out = stdin(good().yaml());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("<stdin>: ok: 2 routes"));
    let out = stdin(good().yaml().replace("mode: shadow", "mode: sideways"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("<stdin>:"), "{stderr}");
    assert!(stderr.contains("sideways"), "{stderr}");
}

/// Every kind of mistake at once, each reported at its own line and column.
const BAD: &str = "\
version: 1
consumer: billing-dashboard
routes:
  - name: orders
    match:
      path_prefix: /v1/orders
    batch: http://127.0.0.1:7001/tables/orders
    streaming:
      url: http://127.0.0.1:7002/v1/orders
      timout: 300ms
    mode: stream
  - name: orders
    match: { path_prefix: /v1/refunds }
    batch:
      url: ftp://127.0.0.1/tables/refunds
      timeout: 2 secs
    streaming: http://127.0.0.1:7002/v1/refunds
  - name: payments
    batch: http://127.0.0.1:7001/tables/payments
    streaming: http://127.0.0.1:7002/v1/payments
";

#[test]
fn a_bad_config_fails_with_every_error_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "bad.yaml", BAD);
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let file = path.display();
    let expected = [
        format!(
            "{file}:10:7: unknown key `timout` (expected one of: url, connect_timeout, timeout, max_inflight, ca_file)"
        ),
        format!(
            "{file}:11:11: unknown mode `stream` (expected batch, shadow, canary, streaming or streaming_only)"
        ),
        format!("{file}:12:11: duplicate route name `orders` (first defined at 4:11)"),
        format!(
            "{file}:15:12: bad URL `ftp://127.0.0.1/tables/refunds`: scheme `ftp` is not http or https"
        ),
        format!(
            "{file}:16:16: bad duration `2 secs`: expected a number and a unit (ms, s, m, h), e.g. 250ms"
        ),
        format!("{file}:18:5: route has no `match` (e.g. match: {{ path_prefix: /v1/orders }})"),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines, expected, "stderr: {stderr}");
}

#[test]
fn a_yaml_syntax_error_is_one_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "broken.yaml",
        "version: 1\nroutes:\n  - name: [a\n",
    );
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let prefix = format!("{}:", path.display());
    let rest = lines[0]
        .strip_prefix(&prefix)
        .expect("starts with the file");
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts.next().unwrap().parse().expect("a line number");
    let column: usize = parts.next().unwrap().parse().expect("a column number");
    assert!(line >= 3 && column >= 1, "{stderr}");
    assert!(
        parts.next().unwrap().contains("YAML syntax error"),
        "{stderr}"
    );
}

#[test]
fn every_example_config_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = check(&path);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} failed:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(
        checked >= 6,
        "expected the reference and five phase examples"
    );
}
