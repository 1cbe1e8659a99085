//! Test fixtures: fake backends named by behaviour, a helper that starts the
//! real proxy (`cutover::start`) on a config file in a temp dir, a small HTTP
//! client, and Prometheus text parsing. Every wait has a timeout.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The longest any single await in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than `WAIT`.
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("timed out waiting")
}

/// Polls `cond` every 20 ms until it holds, failing after `WAIT`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Unix seconds, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// How a fake backend answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// 200 with `body` and a watermark `age` old (RFC 3339), if given.
    Ok {
        body: &'static str,
        age: Option<Duration>,
    },
    /// That status, with a small body.
    Status(u16),
    /// Accepts, reads the request, never answers.
    Hang,
    /// Answers after a delay, then 200.
    Slow(Duration),
    /// 200 echoing the request as JSON: method, path (with query), headers, body.
    Echo,
}

/// One request a backend received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A fake upstream on 127.0.0.1:0 that records every request.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, s, b, c) = (
            hits.clone(),
            seen.clone(),
            behaviour.clone(),
            connections.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (h, s, b) = (h.clone(), s.clone(), b.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (h, s, b) = (h.clone(), s.clone(), b.clone());
                        async move {
                            let behaviour = b.lock().unwrap().clone();
                            Ok::<_, Infallible>(answer(req, behaviour, &h, &s).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            addr,
            hits,
            seen,
            behaviour,
            connections,
            task,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// A URL on this backend.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Changes how later requests are answered.
    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap().last().cloned()
    }
}

/// An address on which nothing listens: connections are refused.
pub async fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
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

async fn answer(
    req: Request<Incoming>,
    behaviour: Behaviour,
    hits: &AtomicUsize,
    seen: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let record = Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    seen.lock().unwrap().push(record.clone());
    hits.fetch_add(1, Ordering::SeqCst);
    let resp = |status: u16, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
        r
    };
    match behaviour {
        Behaviour::Ok { body, age } => {
            let mut r = resp(200, Bytes::from_static(body.as_bytes()));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            if let Some(age) = age {
                r.headers_mut()
                    .insert("x-data-watermark", watermark(age).parse().unwrap());
            }
            r
        }
        Behaviour::Status(code) => resp(code, Bytes::from(format!("status {code}\n"))),
        Behaviour::Hang => std::future::pending().await,
        Behaviour::Slow(d) => {
            tokio::time::sleep(d).await;
            resp(200, Bytes::from_static(b"slow\n"))
        }
        Behaviour::Echo => {
            let headers: HashMap<String, Vec<String>> = record
                .headers
                .keys()
                .map(|k| {
                    (
                        k.as_str().to_owned(),
                        record
                            .headers
                            .get_all(k)
                            .iter()
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .collect(),
                    )
                })
                .collect();
            let echo = serde_json::json!({
                "method": record.method,
                "uri": record.uri,
                "headers": headers,
                "body": String::from_utf8_lossy(&record.body),
            });
            resp(200, Bytes::from(echo.to_string()))
        }
    }
}

/// The real proxy, started with `cutover::start` on a config written to a
/// temp dir. Listen and admin addresses are `127.0.0.1:0`, replaced in the
/// YAML you pass wherever it says `LISTEN` and `ADMIN`.
pub struct Proxy {
    pub running: Option<cutover::Running>,
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl Proxy {
    /// Writes `yaml` (with `LISTEN`/`ADMIN` placeholders) and starts the proxy.
    pub async fn start(yaml: &str) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cutover.yaml");
        std::fs::write(&path, fill(yaml)).expect("write config");
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
            .snapshot
            .load()
            .config
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

/// Replaces `LISTEN` and `ADMIN` with `127.0.0.1:0`.
pub fn fill(yaml: &str) -> String {
    yaml.replace("LISTEN", "127.0.0.1:0")
        .replace("ADMIN", "127.0.0.1:0")
}

/// A minimal single-route config; `extra` is appended to the route (indented
/// by 4 spaces, e.g. "mode: streaming\n    fallback: {on: [connect]}").
pub fn one_route(batch: &str, streaming: &str, extra: &str) -> String {
    format!(
        "version: 1\nconsumer: test\nlisten: LISTEN\nadmin: ADMIN\nroutes:\n  - name: orders\n    match: {{ path_prefix: /v1/orders }}\n    batch: {batch}\n    streaming: {streaming}\n    {extra}\n"
    )
}

/// `one_route`'s route with POST allowed beside GET.
pub fn allow_post(yaml: &str) -> String {
    yaml.replace(
        "match: { path_prefix: /v1/orders }",
        "match: { path_prefix: /v1/orders, methods: [GET, POST] }",
    )
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

/// One sample line: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// A parsed Prometheus text exposition.
#[derive(Debug)]
pub struct Metrics {
    pub text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let value: f64 = value.parse().expect("numeric sample");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let rest = rest.trim_end_matches('}');
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').expect("label k=v");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (n.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics {
            text: text.to_owned(),
            samples,
        }
    }

    /// The value of the one series of `name` whose labels include all of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        match matching.as_slice() {
            [] => None,
            [v] => Some(*v),
            many => panic!("{name} {labels:?} matches {} series", many.len()),
        }
    }

    /// As `get`, 0 when the series is absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
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
    /// Starts `cutover run -c path` and waits for it to serve.
    pub fn run(path: &std::path::Path) -> Binary {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["run", "-c"])
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
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("cutover did not exit:\n{}", self.stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
    /// Starts `cutover::start` on `path`, a config already laid out under
    /// `dir` in any shape (symlinks, nested directories); the proxy keeps
    /// `dir` alive. Addresses in the file should be `127.0.0.1:0`.
    pub async fn start_at(dir: tempfile::TempDir, path: PathBuf) -> Proxy {
        let running = within(cutover::start(&path)).await.expect("proxy starts");
        Proxy {
            listen: running.listen_addr(),
            admin: running.admin_addr(),
            running: Some(running),
            dir,
            path,
        }
    }
}

/// Polls the async `cond` every 20 ms until it holds, failing after `WAIT`.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Ok(true) = tokio::time::timeout(left, cond()).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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

/// Writes `yaml` (with `LISTEN`/`ADMIN` filled in) to `cutover.yaml` in a
/// new temp dir.
pub fn config_file(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cutover.yaml");
    std::fs::write(&path, fill(yaml)).expect("write config");
    (dir, path)
}

/// Runs the real binary with `args` until it exits (within `WAIT`) and
/// returns its exit code and stderr.
pub fn run_to_exit(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cutover");
    let mut pipe = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cutover {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().expect("stderr reader"))
}

// Helpers for the proxy, fallback and TLS tests.

/// A response body a custom backend may stream.
pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// `bytes` as a whole `TestBody`.
pub fn full_body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// A fake upstream on 127.0.0.1:0 whose answers come from `answer`, given
/// the whole request (version and body included). Requests are recorded in
/// `hits` and `seen` like `Backend::start`; `Backend::set` has no effect.
pub async fn backend_fn<F, Fut>(answer: F) -> Backend
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    backend_on(None, answer).await
}

/// As `backend_fn`, behind TLS: every accepted connection goes through
/// `tls` first (ALPN as the acceptor's config says).
pub async fn tls_backend_fn<F, Fut>(tls: tokio_rustls::TlsAcceptor, answer: F) -> Backend
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    backend_on(Some(tls), answer).await
}

async fn backend_on<F, Fut>(tls: Option<tokio_rustls::TlsAcceptor>, answer: F) -> Backend
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let (h, s) = (hits.clone(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (h, s, answer, tls) = (h.clone(), s.clone(), answer.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (h, s, answer) = (h.clone(), s.clone(), answer.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        s.lock().unwrap().push(Seen {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts.headers.clone(),
                            body: body.clone(),
                        });
                        h.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(answer(Request::from_parts(parts, body)).await)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(tls) => {
                        // A failed handshake (an untrusting client) is part of some tests.
                        if let Ok(stream) = tls.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                }
            });
        }
    });
    Backend {
        addr,
        hits,
        seen,
        behaviour: Arc::new(Mutex::new(Behaviour::Hang)),
        connections: Arc::new(AtomicUsize::new(0)),
        task,
    }
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

impl Metrics {
    /// Every sample: name, labels, value.
    pub fn samples(&self) -> impl Iterator<Item = (&str, &[(String, String)], f64)> {
        self.samples
            .iter()
            .map(|(n, l, v)| (n.as_str(), l.as_slice(), *v))
    }
}

// Helpers for the reconcile tests.

/// A fake upstream speaking raw TCP, for answers no HTTP library would send:
/// per connection it reads one request (head and a `Content-Length` body),
/// records it in `hits`/`seen` like `Backend::start`, writes `reply`
/// verbatim (garbage instead of HTTP, a head promising more body than
/// follows, or nothing), then resets the connection (RST, zero linger) when
/// `reset`, else closes it. `Backend::set` has no effect.
pub async fn raw_backend(reply: &'static [u8], reset: bool) -> Backend {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (hits.clone(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let (h, s) = (h.clone(), s.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let mut request_line = lines.next().unwrap_or_default().split(' ');
                let method = request_line.next().unwrap_or_default().to_owned();
                let uri = request_line.next().unwrap_or_default().to_owned();
                let mut headers = HeaderMap::new();
                for line in lines.filter(|l| !l.is_empty()) {
                    if let Some((k, v)) = line.split_once(':')
                        && let (Ok(k), Ok(v)) = (
                            http::header::HeaderName::from_bytes(k.trim().as_bytes()),
                            http::HeaderValue::from_str(v.trim()),
                        )
                    {
                        headers.append(k, v);
                    }
                }
                let len: usize = headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let end = buf.len().min(head_end + len);
                s.lock().unwrap().push(Seen {
                    method,
                    uri,
                    headers,
                    body: Bytes::copy_from_slice(&buf[head_end..end]),
                });
                h.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(reply).await;
                let _ = stream.flush().await;
                if reset {
                    if !reply.is_empty() {
                        // Let the peer take in what was written: a reset
                        // discards whatever is still unsent.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    let _ = stream.set_zero_linger();
                }
                drop(stream);
            });
        }
    });
    Backend {
        addr,
        hits,
        seen,
        behaviour: Arc::new(Mutex::new(Behaviour::Hang)),
        connections: Arc::new(AtomicUsize::new(0)),
        task,
    }
}
