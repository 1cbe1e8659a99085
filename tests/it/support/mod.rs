//! Test fixtures: fake backends named by behaviour (`backend`), configs
//! built through serde (`config`), the one bounded wait (`wait`), `/metrics`
//! read by family (`metrics`), a helper that starts the real proxy
//! (`cutover::start`) on a config file in a temp dir, the real binary, and a
//! small HTTP client. Every wait has a timeout.
//!
//! Compiled once into the `it` binary, and included by `#[path]` into
//! `fleet_prometheus`, which uses only part of it (hence `dead_code`).
#![allow(dead_code)]

mod backend;
mod config;
mod demo;
mod metrics;
mod wait;

#[allow(unused_imports)]
pub use backend::*;
#[allow(unused_imports)]
pub use config::*;
#[allow(unused_imports)]
pub use demo::Demo;
#[allow(unused_imports)]
pub use metrics::*;
#[allow(unused_imports)]
pub use wait::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Unix seconds, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// An address on which nothing listens: connections are refused.
///
/// The port stays bound, never listening, until the test process exits:
/// a port merely freed can be handed to the next `127.0.0.1:0` listener of
/// a test running alongside, and once was (a "refused" streaming side
/// answered with another proxy's 404). Bound without `listen`, it is
/// refused by the kernel and given to no one else.
pub fn refusing_addr() -> SocketAddr {
    static HELD: Mutex<Vec<tokio::net::TcpSocket>> = Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(socket);
    addr
}

/// An RFC 3339 watermark `age` ago.
pub fn watermark(age: Duration) -> String {
    let t = SystemTime::now() - age;
    let secs = t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .expect("valid time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// The real proxy, started with `cutover::start_with` on a config written to
/// a temp dir, with a data directory of its own (as in a pod: the config on
/// a read-only mount, logs in an emptyDir).
pub struct Proxy {
    pub running: Option<cutover::Running>,
    pub dir: tempfile::TempDir,
    /// `--data-dir`: where relative log paths are written.
    pub data: tempfile::TempDir,
    pub path: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl Proxy {
    /// Writes `config` (a `Config`, or a `Route` alone) to `cutover.yaml` in
    /// a new temp dir and starts the proxy.
    pub async fn start(config: impl Into<Config>) -> Proxy {
        let (dir, path) = config_file(config);
        Proxy::start_at(dir, path).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn generation(&self) -> u64 {
        self.running
            .as_ref()
            .expect("running")
            .app
            .live
            .snapshot
            .load()
            .settings
            .generation
    }

    pub async fn scrape(&self) -> Metrics {
        let r = get(&self.admin_url("/metrics")).await;
        assert_eq!(r.status, 200, "metrics scrape: {}", r.text());
        Metrics::parse(&r.text())
    }

    pub async fn status_json(&self) -> serde_json::Value {
        let r = get(&self.admin_url("/status")).await;
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).expect("status is JSON")
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            within(r.shutdown()).await;
        }
    }
}

/// An answer, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `url` with no extra headers.
pub async fn get(url: &str) -> Answer {
    send(
        Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await
}

/// GET `url` with headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::new())).expect("request")).await
}

/// Sends any request and reads the whole answer, within `WAIT`.
pub async fn send(req: Request<Full<Bytes>>) -> Answer {
    within(async {
        let resp = client()
            .request(req)
            .await
            .expect("request reaches the proxy");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    })
    .await
}

/// Writes raw bytes to `addr` and returns everything read until the peer
/// closes or 2 s of silence.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// The real binary, started with arguments; stderr is collected so that the
/// bound addresses can be read from the "cutover serving" log line.
pub struct Binary {
    pub child: std::process::Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

impl Binary {
    /// Starts `cutover run -c path` and waits for it to serve. Its data
    /// directory is the config's (never the test's working directory).
    pub fn run(path: &std::path::Path) -> Binary {
        use std::io::BufRead;
        let data_dir = path.parent().expect("a config file in a directory");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["run", "--data-dir"])
            .arg(data_dir)
            .arg("-c")
            .arg(path)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn cutover");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().expect("stderr piped");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if line.contains("cutover serving") {
                    let _ = tx.send(line.clone());
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let line = match rx.recv_timeout(WAIT) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("cutover did not start:\n{}", stderr.lock().unwrap());
            }
        };
        let addr_after = |key: &str| -> SocketAddr {
            let start = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
            line[start..]
                .split_whitespace()
                .next()
                .expect("address")
                .trim_matches(|c: char| !c.is_ascii_digit() && c != '.' && c != ':')
                .parse()
                .expect("socket address")
        };
        Binary {
            listen: addr_after("listen_addr="),
            admin: addr_after("admin_addr="),
            child,
            stderr,
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the process to exit (within `WAIT`) and returns its code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let stderr = self.stderr.clone();
        wait_exit(&mut self.child, "cutover exits", move || {
            stderr.lock().unwrap().clone()
        })
        .code()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Helpers for the reload and signal tests.

impl Proxy {
    /// Starts `cutover::start_with` on `path`, a config already laid out
    /// under `dir` in any shape (symlinks, nested directories); the proxy
    /// keeps `dir` alive. Addresses in the file should be `127.0.0.1:0`.
    pub async fn start_at(dir: tempfile::TempDir, path: PathBuf) -> Proxy {
        Proxy::start_in(dir, tempfile::tempdir().expect("data dir"), path).await
    }

    /// As `start_at`, with the data directory `data` (a restart keeps it).
    pub async fn start_in(dir: tempfile::TempDir, data: tempfile::TempDir, path: PathBuf) -> Proxy {
        let options = cutover::Options {
            data_dir: data.path().to_owned(),
        };
        let running = within(cutover::start_with(&path, options))
            .await
            .expect("proxy starts");
        Proxy {
            listen: running.listen_addr(),
            admin: running.admin_addr(),
            running: Some(running),
            dir,
            data,
            path,
        }
    }
}

/// GET `url` on a fresh connection; `Err` instead of a panic when no answer
/// arrives (refused, reset, closed mid-read). Bounded by `WAIT`.
pub async fn try_get(url: &str) -> Result<Answer, String> {
    within(async {
        let req = Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = client().request(req).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    })
    .await
}

/// Writes `config` (a `Config`, or a `Route` alone) to `cutover.yaml` in a
/// new temp dir.
pub fn config_file(config: impl Into<Config>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cutover.yaml");
    config.into().write(&path);
    (dir, path)
}

/// What a run of the real binary did.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// From spawn to exit.
    pub took: Duration,
}

/// Runs the real binary with `args` until it exits, killing it (and failing
/// the test) if it outlives `WAIT`. Standard input is empty.
pub fn run_cutover<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> Output {
    run_cutover_from(None, args)
}

/// `run_cutover` from the directory `dir` (relative paths in `args` and
/// in what it prints are from there).
pub fn run_cutover_in<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    dir: &Path,
    args: &[S],
) -> Output {
    run_cutover_from(Some(dir), args)
}

fn run_cutover_from<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    dir: Option<&Path>,
    args: &[S],
) -> Output {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cutover");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let status = wait_exit(&mut child, &format!("cutover {args:?} exits"), String::new);
    Output {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        took: started.elapsed(),
    }
}

/// Runs the real binary with `args` until it exits (within `WAIT`) and
/// returns its exit code and stderr.
pub fn run_to_exit(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = run_cutover(args);
    (out.code, out.stderr)
}

/// POST `body` to `url` and read the whole answer.
pub async fn post(url: &str, body: impl Into<Bytes>) -> Answer {
    send(
        Request::post(url)
            .body(Full::new(body.into()))
            .expect("request"),
    )
    .await
}
