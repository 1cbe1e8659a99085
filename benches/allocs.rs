//! Heap allocations per read, counted: a counting global allocator around
//! the system one, a real cutover (`cutover::start_with`, one route) in front
//! of an origin on 127.0.0.1:0, and a keep-alive client that reuses its
//! buffers. The same reads are made straight to the origin and through
//! cutover; the difference, per read, is what cutover allocates.
//!
//!     cargo bench --bench allocs            # streaming and shadow, 1 KiB answers
//!     READS=20000 BODY_BYTES=65536 MODES=streaming cargo bench --bench allocs
//!
//! Allocation counts are deterministic for one build (no timing in them), so
//! one run is the figure; bench/README.md keeps it per change.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are plain atomics, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc` or `realloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as `dealloc` for `ptr`, as `alloc` for the new size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An origin answering every read with `body`, as JSON with a watermark.
async fn origin(body: Bytes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("origin address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .header("x-data-watermark", "2026-12-04T00:00:00Z")
                                .body(Full::new(body))
                                .expect("a valid response"),
                        )
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    addr
}

/// A keep-alive HTTP/1.1 client whose buffers are allocated once.
struct Client {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr, path: &str) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: bench\r\naccept: application/json\r\n\r\n")
                .into_bytes();
        Client {
            stream,
            request,
            buf: vec![0; 1 << 20],
        }
    }

    /// One read: the request, then the head and a Content-Length body.
    async fn read(&mut self) {
        self.stream
            .write_all(&self.request)
            .await
            .expect("send request");
        let mut have = 0;
        loop {
            let n = self
                .stream
                .read(&mut self.buf[have..])
                .await
                .expect("read answer");
            assert!(n > 0, "the connection closed mid-answer");
            have += n;
            let Some(end) = find(&self.buf[..have], b"\r\n\r\n") else {
                continue;
            };
            let head = &self.buf[..end];
            assert!(head.starts_with(b"HTTP/1.1 200"), "not a 200 answer");
            let len = content_length(head).expect("a Content-Length answer");
            let want = end + 4 + len;
            while have < want {
                let n = self
                    .stream
                    .read(&mut self.buf[have..])
                    .await
                    .expect("read body");
                assert!(n > 0, "the connection closed mid-body");
                have += n;
            }
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim();
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// Allocations and bytes per read over `reads` reads (after a warm-up).
async fn per_read(addr: SocketAddr, path: &str, reads: usize) -> (f64, f64) {
    let mut client = Client::connect(addr, path).await;
    for _ in 0..reads / 10 + 100 {
        client.read().await;
    }
    // Let background work from the warm-up (comparisons) finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..reads {
        client.read().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    (
        (a1 - a0) as f64 / reads as f64,
        (b1 - b0) as f64 / reads as f64,
    )
}

fn config(origin: SocketAddr, mode: &str) -> String {
    // Probes off and nothing compared in streaming mode: a plain read. In
    // shadow mode every read is compared (`sample: 1.0`).
    let sample = if mode == "shadow" { "1.0" } else { "0" };
    format!(
        "version: 1
consumer: bench
listen: 127.0.0.1:0
admin: 127.0.0.1:0
routes:
  - name: orders
    match: {{ path_prefix: /v1/orders }}
    batch: http://{origin}/tables/orders
    streaming: http://{origin}/v1/orders
    mode: {mode}
    freshness: {{ probe_interval: off }}
    reconcile: {{ sample: {sample} }}
"
    )
}

fn body(size: usize) -> Bytes {
    let mut out = String::from("{\"data\":[");
    let mut i = 0;
    while out.len() + 2 < size {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"id\":{i},\"amount\":{:.2},\"status\":\"settled\"}}",
            i as f64 * 1.25
        ));
        i += 1;
    }
    out.push_str("]}");
    Bytes::from(out)
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let reads = env_usize("READS", 10_000);
    let size = env_usize("BODY_BYTES", 1024);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let origin = origin(body(size)).await;
        let (direct, direct_bytes) = per_read(origin, "/v1/orders/1", reads).await;
        println!(
            "allocations per read, {size}-byte answers, {reads} reads, one keep-alive connection"
        );
        println!("{:<12} {:>12} {:>14}", "path", "allocs/read", "bytes/read");
        println!("{:<12} {:>12.1} {:>14.0}", "direct", direct, direct_bytes);
        let modes = std::env::var("MODES").unwrap_or_else(|_| "streaming shadow".to_owned());
        for mode in modes.split_whitespace() {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("cutover.yaml");
            std::fs::write(&path, config(origin, mode)).expect("write config");
            let options = cutover::Options {
                data_dir: dir.path().to_owned(),
            };
            let running = cutover::start_with(&path, options)
                .await
                .expect("cutover starts");
            let (through, through_bytes) =
                per_read(running.listen_addr(), "/v1/orders/1", reads).await;
            // The origin and the client are the same on both paths; what
            // cutover adds is the difference (in shadow mode the origin
            // answers twice per read, so its part is taken out twice).
            println!(
                "{:<12} {:>12.1} {:>14.0}   cutover adds {:.1} allocs, {:.0} bytes per read",
                mode,
                through,
                through_bytes,
                through - direct * if mode == "shadow" { 2.0 } else { 1.0 },
                through_bytes - direct_bytes * if mode == "shadow" { 2.0 } else { 1.0 },
            );
            running.shutdown().await;
        }
    });
}
