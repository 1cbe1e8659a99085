//! Hot reload end to end: the config file edited the way editors, people and
//! kubelet edit it, the real directory watcher, the real proxy. A change is
//! seen through reads (`x-cutover-served-by` flips) and through `/status`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use cutover::ReloadOutcome;
use serde_json::json;

/// A loose bound on how soon an edit must be live: the watcher debounces for
/// 100 ms, so about 0.1-0.2 s is expected, but a busy CI machine gets slack.
const APPLY_BOUND: Duration = Duration::from_secs(3);

const ROUTE_PATH: &str = "/v1/orders/7";

/// A healthy batch backend and a healthy streaming backend, told apart by body.
async fn both_sides() -> (Backend, Backend) {
    (
        Backend::start(Behaviour::ok("batch")).await,
        Backend::start(Behaviour::ok("streaming")).await,
    )
}

/// One route `orders` in `mode`, probes off so backends only see reads.
fn config(batch: &Backend, streaming: &Backend, mode: &str) -> Config {
    Config::new().route(
        Route::orders(batch.url("/tables/orders"), streaming.url("/v1/orders"))
            .mode(mode)
            .no_probe(),
    )
}

/// Who served one read, failing the test if the read failed.
async fn served_by(p: &Proxy) -> String {
    let r = get(&p.url(ROUTE_PATH)).await;
    assert_eq!(r.status, 200, "read failed: {}", r.text());
    r.header("x-cutover-served-by").unwrap_or("").to_owned()
}

/// Reads until `side` serves one; returns the time since `since`.
async fn until_served_by(p: &Proxy, side: &str, since: Instant) -> Duration {
    wait_until_async(&format!("{side} serves a read"), || async {
        served_by(p).await == side
    })
    .await;
    since.elapsed()
}

async fn generation(p: &Proxy) -> u64 {
    p.status_json().await["config"]["generation"]
        .as_u64()
        .expect("/status config.generation")
}

async fn reloads(p: &Proxy, result: &str) -> f64 {
    p.scrape().await.reloads(result)
}

/// Opens the file in place with truncation and writes: same inode.
fn write_in_place(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .expect("open config for writing");
    f.write_all(text.as_bytes()).expect("write config");
}

/// Writes a sibling temp file and renames it over the config (most editors).
fn rename_over(path: &Path, text: &str) {
    let tmp = path.with_file_name("cutover.yaml.tmp");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over config");
}

/// vim's `backupcopy=no` save: move the original aside, write a new file,
/// delete the backup. `gap` is how long the config is missing.
async fn vim_save(path: &Path, text: &str, gap: Duration) {
    let backup = path.with_file_name("cutover.yaml~");
    std::fs::rename(path, &backup).expect("move original to backup");
    tokio::time::sleep(gap).await;
    std::fs::write(path, text).expect("write new config");
    std::fs::remove_file(&backup).expect("delete backup");
}

/// Starts a batch-mode proxy, applies `edit` switching to streaming, and
/// checks the switch is served, counted and shown. Returns the latency.
async fn edit_applies<F, Fut>(style: &str, edit: F) -> Duration
where
    F: FnOnce(std::path::PathBuf, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (b, s) = both_sides().await;
    let p = Proxy::start(config(&b, &s, "batch")).await;
    assert_eq!(served_by(&p).await, "batch");
    assert_eq!(generation(&p).await, 1);

    let t0 = Instant::now();
    edit(p.path.clone(), config(&b, &s, "streaming").yaml()).await;
    let took = until_served_by(&p, "streaming", t0).await;
    eprintln!("reload latency ({style}): {} ms", took.as_millis());
    assert!(took < APPLY_BOUND, "{style}: took {took:?}");

    let st = p.status_json().await;
    assert_eq!(st["config"]["generation"], 2, "{st:#}");
    assert_eq!(st["last_reload"]["result"], "ok", "{st:#}");
    assert_eq!(st["routes"][0]["configured_mode"], "streaming", "{st:#}");
    let m = p.scrape().await;
    assert_eq!(m.reloads("ok"), 1.0);
    assert_eq!(
        m.reloads("error"),
        0.0,
        "{style}: a save must not count as a failed reload"
    );
    assert_eq!(m.generation(), 2.0);
    p.stop().await;
    took
}

#[tokio::test]
async fn in_place_write_is_applied() {
    edit_applies("in-place write", |path, text| async move {
        write_in_place(&path, &text)
    })
    .await;
}

#[tokio::test]
async fn editor_rename_over_save_is_applied() {
    edit_applies("rename over", |path, text| async move {
        rename_over(&path, &text)
    })
    .await;
}

#[tokio::test]
async fn vim_backup_and_write_save_is_applied_without_an_error() {
    edit_applies("vim backup-and-write", |path, text| async move {
        vim_save(&path, &text, Duration::ZERO).await
    })
    .await;
}

/// A slow save: the config is missing for longer than the debounce, then
/// the new file is created and written in two steps. The watcher must wait
/// for the file and let the writes settle, not read it missing or empty.
#[tokio::test]
async fn slow_backup_and_write_save_is_applied_without_an_error() {
    edit_applies("slow backup-and-write", |path, text| async move {
        let backup = path.with_file_name("cutover.yaml~");
        std::fs::rename(&path, &backup).expect("move original to backup");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut f = std::fs::File::create(&path).expect("create new config");
        tokio::time::sleep(Duration::from_millis(30)).await;
        f.write_all(text.as_bytes()).expect("write new config");
        drop(f);
        std::fs::remove_file(&backup).expect("delete backup");
    })
    .await;
}

/// Lays out `dir` the way kubelet's AtomicWriter projects a ConfigMap:
/// `..TS/cutover.yaml`, `..data -> ..TS`, `cutover.yaml -> ..data/cutover.yaml`.
fn configmap_initial(dir: &Path, ts: &str, text: &str) {
    std::fs::create_dir(dir.join(ts)).expect("timestamp dir");
    std::fs::write(dir.join(ts).join("cutover.yaml"), text).expect("payload");
    std::os::unix::fs::symlink(ts, dir.join("..data")).expect("..data link");
    std::os::unix::fs::symlink("..data/cutover.yaml", dir.join("cutover.yaml"))
        .expect("user-visible link");
}

/// kubelet's update: write a new timestamp dir, point `..data_tmp` at it,
/// rename `..data_tmp` over `..data` (the atomic step), remove the old dir.
fn configmap_update(dir: &Path, old_ts: &str, new_ts: &str, text: &str) {
    std::fs::create_dir(dir.join(new_ts)).expect("timestamp dir");
    std::fs::write(dir.join(new_ts).join("cutover.yaml"), text).expect("payload");
    std::os::unix::fs::symlink(new_ts, dir.join("..data_tmp")).expect("..data_tmp link");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(dir.join(old_ts)).expect("remove old payload");
}

#[tokio::test]
async fn kubernetes_configmap_symlink_swap_is_applied() {
    let (b, s) = both_sides().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_owned();
    configmap_initial(&root, "..2026_01", &config(&b, &s, "batch").yaml());
    let p = Proxy::start_at(dir, root.join("cutover.yaml")).await;
    assert_eq!(served_by(&p).await, "batch");

    let t0 = Instant::now();
    configmap_update(
        &root,
        "..2026_01",
        "..2026_02",
        &config(&b, &s, "streaming").yaml(),
    );
    let took = until_served_by(&p, "streaming", t0).await;
    eprintln!("reload latency (configmap swap): {} ms", took.as_millis());
    assert!(took < APPLY_BOUND, "took {took:?}");
    assert_eq!(generation(&p).await, 2);

    // The watch survives the swap: the next update is seen too.
    let t0 = Instant::now();
    configmap_update(
        &root,
        "..2026_02",
        "..2026_03",
        &config(&b, &s, "batch").yaml(),
    );
    until_served_by(&p, "batch", t0).await;
    let st = p.status_json().await;
    assert_eq!(st["config"]["generation"], 3, "{st:#}");
    assert_eq!(st["last_reload"]["result"], "ok", "{st:#}");
    assert_eq!(reloads(&p, "error").await, 0.0);
    p.stop().await;
}

/// Extracts `LINE:COLUMN` following `FILE:` in an error message.
fn location(message: &str, file: &Path) -> (usize, usize) {
    let prefix = format!("{}:", file.display());
    let at = message
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {message:?}"))
        + prefix.len();
    let mut parts = message[at..].splitn(3, ':');
    let mut number = |what: &str| -> usize {
        parts
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what} after {prefix} in {message:?}"))
    };
    let line = number("line");
    let column = number("column");
    assert!(line >= 1 && column >= 1, "{message:?}");
    (line, column)
}

/// A rejected edit leaves the old config serving and says why, where; the
/// next good edit is applied as usual. Returns the error message and the
/// config's path.
async fn bad_edit_is_rejected_then_fixed(
    bad_edit: impl FnOnce(&Backend, &Backend) -> String,
) -> (String, std::path::PathBuf) {
    let (b, s) = both_sides().await;
    let p = Proxy::start(config(&b, &s, "batch")).await;
    rename_over(&p.path, &bad_edit(&b, &s));

    let admin = p.admin_url("/status");
    wait_until_async("the bad edit is rejected", || {
        let admin = admin.clone();
        async move {
            let st = get(&admin).await.json();
            st["last_reload"]["result"] == "error"
        }
    })
    .await;
    let st = p.status_json().await;
    let error = st["last_reload"]["error"]
        .as_str()
        .expect("error message")
        .to_owned();
    eprintln!("rejected edit, /status says: {error}");
    assert_eq!(st["config"]["generation"], 1, "{st:#}");
    assert_eq!(st["routes"][0]["configured_mode"], "batch", "{st:#}");
    // The old config keeps serving.
    for _ in 0..3 {
        assert_eq!(served_by(&p).await, "batch");
    }
    let m = p.scrape().await;
    assert_eq!(m.reloads("error"), 1.0, "{error}");
    assert_eq!(m.reloads("ok"), 0.0);
    assert_eq!(m.generation(), 1.0);

    // Fixed.
    let t0 = Instant::now();
    rename_over(&p.path, &config(&b, &s, "streaming").yaml());
    until_served_by(&p, "streaming", t0).await;
    let st = p.status_json().await;
    assert_eq!(st["config"]["generation"], 2, "{st:#}");
    assert_eq!(st["last_reload"]["result"], "ok", "{st:#}");
    assert!(st["last_reload"]["error"].is_null(), "{st:#}");
    let m = p.scrape().await;
    assert_eq!(m.reloads("error"), 1.0);
    assert_eq!(m.reloads("ok"), 1.0);
    let path = p.path.clone();
    p.stop().await;
    (error, path)
}

#[tokio::test]
async fn reverting_a_rejected_edit_clears_the_error() {
    let (b, s) = both_sides().await;
    let p = Proxy::start(config(&b, &s, "batch")).await;
    let good = std::fs::read_to_string(&p.path).expect("the config as started");
    rename_over(&p.path, &good.replace("mode: batch", "mode: sideways"));
    let status = p.admin_url("/status");
    let result = |want: &'static str| {
        let status = status.clone();
        move || {
            let status = status.clone();
            async move { get(&status).await.json()["last_reload"]["result"] == want }
        }
    };
    wait_until_async("the bad edit is rejected", result("error")).await;
    let m = p.scrape().await;
    assert_eq!(m.last_reload_successful(), 0.0);

    // The normal fix: put the last good text back (an editor's undo).
    write_in_place(&p.path, &good);
    wait_until_async("the revert is accepted", result("ok")).await;
    let st = p.status_json().await;
    assert!(st["last_reload"]["error"].is_null(), "{st:#}");
    assert_eq!(st["config"]["generation"], 1, "nothing new was applied");
    let m = p.scrape().await;
    assert_eq!(m.last_reload_successful(), 1.0);
    assert_eq!(reloads(&p, "ok").await, 1.0);
    assert_eq!(reloads(&p, "error").await, 1.0);
    // A touch of the accepted file is still nothing to do.
    write_in_place(&p.path, &good);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(reloads(&p, "ok").await, 1.0);
    p.stop().await;
}

#[tokio::test]
async fn renaming_the_consumer_leaves_no_ghost_series() {
    let (b, s) = both_sides().await;
    let p = Proxy::start(config(&b, &s, "streaming")).await;
    assert_eq!(served_by(&p).await, "streaming");
    let t0 = Instant::now();
    rename_over(
        &p.path,
        &config(&b, &s, "streaming").consumer("renamed").yaml(),
    );
    let status = p.admin_url("/status");
    wait_until_async("the renamed consumer serves", || {
        let status = status.clone();
        async move { get(&status).await.json()["consumer"] == "renamed" }
    })
    .await;
    until_served_by(&p, "streaming", t0).await;
    let m = p.scrape().await;
    let ghosts: Vec<_> = m
        .samples()
        .filter(|(n, l, _)| {
            n.starts_with("cutover_") && l.iter().any(|(k, v)| k == "consumer" && v != "renamed")
        })
        .map(|(n, l, _)| format!("{n} {l:?}"))
        .collect();
    assert!(ghosts.is_empty(), "series of the old name: {ghosts:#?}");
    assert_eq!(m.consumer("renamed").generation(), 2.0);
    assert_eq!(m.consumer("renamed").reloads("ok"), 1.0);
    assert_eq!(
        m.consumer("renamed").requests("streaming", "2xx"),
        1.0,
        "the read after the rename, under the new name"
    );
    p.stop().await;
}

#[tokio::test]
async fn broken_yaml_keeps_the_old_config_until_fixed() {
    // Written by a buggy tool: an unterminated flow mapping.
    let (error, path) = bad_edit_is_rejected_then_fixed(|b, s| {
        let good = config(b, s, "streaming").yaml();
        let bad = good.replace("path_prefix: /v1/orders", "{ path_prefix: /v1/orders");
        assert_ne!(good, bad);
        bad
    })
    .await;
    location(&error, &path);
}

#[tokio::test]
async fn invalid_mode_keeps_the_old_config_until_fixed() {
    let mut line = 0;
    let (error, path) = bad_edit_is_rejected_then_fixed(|b, s| {
        let bad = config(b, s, "stream").yaml();
        line = 1 + bad
            .lines()
            .position(|l| l.contains("mode: stream"))
            .expect("mode line");
        bad
    })
    .await;
    assert!(error.contains("stream"), "{error}");
    let (l, _) = location(&error, &path);
    assert_eq!(l, line, "{error}");
}

#[tokio::test]
async fn identical_rewrite_or_touch_does_not_bump_the_generation() {
    let (b, s) = both_sides().await;
    let p = Proxy::start(config(&b, &s, "batch")).await;
    let text = std::fs::read_to_string(&p.path).expect("read config");

    write_in_place(&p.path, &text);
    rename_over(&p.path, &text);
    let f = std::fs::File::options()
        .write(true)
        .open(&p.path)
        .expect("open");
    f.set_modified(std::time::SystemTime::now()).expect("touch");
    drop(f);
    let app = p.running.as_ref().expect("running").app.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || app.reload(false))
            .await
            .expect("reload"),
        ReloadOutcome::Unchanged
    );
    // Nothing to wait for: give the watcher well past its debounce to act.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = p.status_json().await;
    assert_eq!(st["config"]["generation"], 1, "{st:#}");
    assert!(st["last_reload"]["result"].is_null(), "{st:#}");
    let m = p.scrape().await;
    assert_eq!(m.reloads("ok"), 0.0);
    assert_eq!(m.reloads("error"), 0.0);

    // A real change afterwards is one generation, not two.
    let t0 = Instant::now();
    write_in_place(&p.path, &config(&b, &s, "streaming").yaml());
    until_served_by(&p, "streaming", t0).await;
    assert_eq!(generation(&p).await, 2);
    p.stop().await;
}

#[tokio::test]
async fn sighup_forces_a_reload_in_the_real_binary() {
    let (b, s) = both_sides().await;
    let (_dir, path) = config_file(config(&b, &s, "batch"));
    let bin = Binary::run(&path);
    let status = format!("http://{}/status", bin.admin);
    let metrics = format!("http://{}/metrics", bin.admin);
    let st = get(&status).await.json();
    assert_eq!(st["config"]["generation"], 1, "{st:#}");
    let ok_before = Metrics::parse(&get(&metrics).await.text()).reloads("ok");
    assert_eq!(ok_before, 0.0);

    // Same content: only the signal can cause this reload.
    bin.signal("HUP");
    wait_until_async("SIGHUP reloads", || {
        let status = status.clone();
        async move { get(&status).await.json()["config"]["generation"] == 2 }
    })
    .await;
    let m = Metrics::parse(&get(&metrics).await.text());
    assert_eq!(m.reloads("ok"), 1.0);
    assert_eq!(m.generation(), 2.0);
    let st = get(&status).await.json();
    assert_eq!(st["last_reload"]["result"], "ok", "{st:#}");

    // A second signal, a second reload; the process is still serving.
    bin.signal("HUP");
    wait_until_async("a second SIGHUP reloads", || {
        let status = status.clone();
        async move { get(&status).await.json()["config"]["generation"] == 3 }
    })
    .await;
    let r = get(&format!("http://{}{ROUTE_PATH}", bin.listen)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
}

/// The reload log names every key an edit changed, not only modes: an
/// edit of `gate.failures` or `reconcile.sample` is not "nothing changed".
#[tokio::test]
async fn the_reload_log_names_every_changed_key() {
    let (b, s) = both_sides().await;
    let route = |failures: u32, sample: f64| {
        Route::orders(b.url("/tables/orders"), s.url("/v1/orders"))
            .mode("streaming")
            .no_probe()
            .gate(json!({ "failures": failures, "max_fallback_ratio": 0.05 }))
            .reconcile(json!({ "sample": sample }))
    };
    let (_dir, path) = config_file(Config::new().route(route(3, 0.01)));
    let bin = Binary::run(&path);
    write_in_place(&path, &Config::new().route(route(5, 0.25)).yaml());
    let log = bin.stderr.clone();
    let line = wait_until("the reload is logged", || {
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        log.lines()
            .find(|l| l.contains("config applied"))
            .map(str::to_owned)
    })
    .await;
    assert!(line.contains("orders.gate.failures: 3 -> 5"), "{line}");
    assert!(
        line.contains("orders.reconcile.sample: 0.01 -> 0.25"),
        "{line}"
    );
    assert!(!line.contains("nothing that applies changed"), "{line}");
}

/// The save styles the storm cycles through, by edit number modulo 3.
const SAVE_STYLES: [&str; 3] = ["write in place", "rename over", "vim backup-and-write"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_storm_under_concurrent_reads_loses_no_read() {
    let (b, s) = both_sides().await;
    let p = Proxy::start(config(&b, &s, "batch")).await;
    let url = p.url(ROUTE_PATH);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // The edit being saved (its number, or NO_EDIT before the storm), so a
    // failure names the save style in flight.
    const NO_EDIT: usize = usize::MAX;
    let in_flight = Arc::new(AtomicUsize::new(NO_EDIT));
    let started = Instant::now();

    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (url, stop, served, failures, in_flight) = (
                url.clone(),
                stop.clone(),
                served.clone(),
                failures.clone(),
                in_flight.clone(),
            );
            tokio::spawn(async move {
                // One keep-alive client per reader, like a real consumer.
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<http_body_util::Full<bytes::Bytes>>();
                while !stop.load(Ordering::Relaxed) {
                    let req = http::Request::get(&url)
                        .body(Default::default())
                        .expect("request");
                    let outcome = tokio::time::timeout(WAIT, async {
                        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
                        let status = resp.status();
                        let side = resp
                            .headers()
                            .get("x-cutover-served-by")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        http_body_util::BodyExt::collect(resp.into_body())
                            .await
                            .map_err(|e| format!("body: {e:?}"))?;
                        Ok::<_, String>((status, side))
                    })
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                    let what = match outcome {
                        Ok((status, side)) if status == 200 && side == "batch" => {
                            served[0].fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Ok((status, side)) if status == 200 && side == "streaming" => {
                            served[1].fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Ok((status, side)) => format!("answered {status} served by {side:?}"),
                        Err(e) => format!("client error: {e}"),
                    };
                    let edit = match in_flight.load(Ordering::Relaxed) {
                        NO_EDIT => "no edit yet".to_owned(),
                        i => format!("around edit {i} ({})", SAVE_STYLES[i % 3]),
                    };
                    failures.lock().unwrap().push(format!(
                        "{what}, at {} ms, {edit}",
                        started.elapsed().as_millis()
                    ));
                }
            })
        })
        .collect();
    wait_until("every reader is reading", || {
        served[0].load(Ordering::Relaxed) >= 8
    })
    .await;

    // 61 edits over ~3 s, alternating modes and save styles; the last is
    // streaming. Each edit's text is new (a comment counts up) so every
    // reload that reads a whole file applies one, and the pace is jittered
    // so the watcher's 500 ms cadence does not keep landing on one mode.
    let storm_started = Instant::now();
    let edits = 61;
    for i in 0..edits {
        let mode = if i % 2 == 0 { "streaming" } else { "batch" };
        let text = format!("# edit {i}\n{}", config(&b, &s, mode).yaml());
        in_flight.store(i, Ordering::Relaxed);
        match i % 3 {
            0 => write_in_place(&p.path, &text),
            1 => rename_over(&p.path, &text),
            _ => vim_save(&p.path, &text, Duration::ZERO).await,
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(20..80))).await;
    }
    let storm = storm_started.elapsed();
    wait_until("the last edit (streaming) is served", || {
        served[1].load(Ordering::Relaxed) > 0
    })
    .await;
    let admin = p.admin_url("/status");
    wait_until_async("the last edit is live", || {
        let admin = admin.clone();
        async move { get(&admin).await.json()["routes"][0]["configured_mode"] == "streaming" }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        within(r).await.expect("reader task");
    }

    let failures = std::mem::take(&mut *failures.lock().unwrap());
    let (batch, streaming) = (
        served[0].load(Ordering::Relaxed),
        served[1].load(Ordering::Relaxed),
    );
    let m = p.scrape().await;
    eprintln!(
        "storm: {edits} edits in {} ms; {} reloads applied, {} rejected; reads: {batch} batch, {streaming} streaming, {} failed",
        storm.as_millis(),
        m.reloads("ok"),
        m.reloads("error"),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} reads failed during the storm; the first: {:#?}",
        failures.len(),
        failures.len() + batch + streaming,
        &failures[..failures.len().min(10)]
    );
    assert!(
        batch > 0 && streaming > 0,
        "batch {batch}, streaming {streaming}"
    );
    // The watcher applies at least every 500 ms even while events keep coming.
    assert!(m.reloads("ok") >= 3.0);
    assert!(generation(&p).await >= 4);
    p.stop().await;
}

#[tokio::test]
async fn circuit_and_counters_survive_an_unrelated_reload() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::Status(503)).await;
    let route = Route::orders(batch.url("/tables/orders"), streaming.url("/v1/orders"))
        .mode("streaming")
        .fallback(json!({ "circuit": { "failures": 2, "cooldown": "30s" } }))
        .no_probe();
    let p = Proxy::start(route.clone()).await;
    for _ in 0..2 {
        let r = get(&p.url(ROUTE_PATH)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cutover-fallback"), Some("5xx"));
    }
    let st = p.status_json().await;
    assert_eq!(st["routes"][0]["circuit"], "open", "{st:#}");
    let m = p.scrape().await;
    assert_eq!(m.route("orders").requests("batch", "2xx"), 2.0);
    assert_eq!(m.route("orders").fallbacks("5xx"), 2.0);

    // An unrelated change: a second route.
    let two_routes = Config::new().route(route).route(
        Route::new(
            "refunds",
            "/v1/refunds",
            batch.url("/tables/refunds"),
            streaming.url("/v1/refunds"),
        )
        .mode("batch")
        .no_probe(),
    );
    rename_over(&p.path, &two_routes.yaml());
    let refunds = p.url("/v1/refunds/1");
    wait_until_async("the second route is served", || {
        let refunds = refunds.clone();
        async move { get(&refunds).await.status == 200 }
    })
    .await;
    let st = p.status_json().await;
    assert_eq!(st["config"]["generation"], 2, "{st:#}");
    let orders_status = st["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["name"] == "orders")
        .expect("orders route")
        .clone();
    assert_eq!(orders_status["circuit"], "open", "{st:#}");
    assert_eq!(orders_status["effective_mode"], "batch", "{st:#}");
    assert_eq!(orders_status["fallbacks"], 2, "{st:#}");

    let streaming_hits = streaming.hits();
    let r = get(&p.url(ROUTE_PATH)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cutover-served-by"), Some("batch"));
    assert_eq!(r.header("x-cutover-fallback"), Some("circuit"));
    assert_eq!(
        streaming.hits(),
        streaming_hits,
        "an open circuit sends nothing to streaming"
    );

    let m = p.scrape().await;
    assert_eq!(
        m.route("orders").requests("batch", "2xx"),
        3.0,
        "counters keep counting across a reload"
    );
    assert_eq!(m.route("orders").fallbacks("5xx"), 2.0);
    assert_eq!(m.route("orders").fallbacks("circuit"), 1.0);
    assert_eq!(m.route("orders").upstream("streaming", "5xx"), 2.0);
    assert_eq!(m.route("orders").circuit_open(), 1.0);
    p.stop().await;
}

#[tokio::test]
async fn listen_change_keeps_the_old_address_and_says_restart_needed() {
    let (b, s) = both_sides().await;
    let p = Proxy::start(config(&b, &s, "batch")).await;
    let new_listen = refusing_addr();
    let new_admin = refusing_addr();
    let edit = config(&b, &s, "streaming")
        .listen(new_listen)
        .admin(new_admin)
        .yaml();
    let t0 = Instant::now();
    rename_over(&p.path, &edit);
    // The rest of the edit applies, on the old address.
    until_served_by(&p, "streaming", t0).await;
    let st = p.status_json().await;
    assert_eq!(st["config"]["generation"], 2, "{st:#}");
    assert_eq!(st["last_reload"]["result"], "ok", "{st:#}");
    let restart = st["last_reload"]["restart_needed"]
        .as_str()
        .unwrap_or_else(|| panic!("restart_needed set: {st:#}"));
    assert!(
        restart.contains("listen") && restart.contains(&new_listen.to_string()),
        "{restart}"
    );
    assert!(
        restart.contains("admin") && restart.contains(&new_admin.to_string()),
        "{restart}"
    );
    for _ in 0..3 {
        assert_eq!(served_by(&p).await, "streaming");
    }
    // /status shows where the sockets really are.
    assert_eq!(st["listen"], p.listen.to_string(), "{st:#}");
    assert_eq!(st["admin"], p.admin.to_string(), "{st:#}");

    // An unrelated edit: the sockets still sit on the old addresses, so a
    // restart is still needed.
    let t0 = Instant::now();
    let unrelated = config(&b, &s, "batch")
        .listen(new_listen)
        .admin(new_admin)
        .yaml();
    rename_over(&p.path, &unrelated);
    until_served_by(&p, "batch", t0).await;
    let st = p.status_json().await;
    assert_eq!(st["config"]["generation"], 3, "{st:#}");
    assert!(
        st["last_reload"]["restart_needed"]
            .as_str()
            .is_some_and(|r| r.contains(&new_listen.to_string())),
        "restart_needed kept: {st:#}"
    );

    // Back to the addresses it started on: nothing needs a restart.
    let t0 = Instant::now();
    rename_over(&p.path, &config(&b, &s, "streaming").yaml());
    until_served_by(&p, "streaming", t0).await;
    let st = p.status_json().await;
    assert!(st["last_reload"]["restart_needed"].is_null(), "{st:#}");
    p.stop().await;
}

/// Connection limits are built into the listeners: a reload that changes
/// one says so, and the live ones (`max_inflight_reads`) do not.
#[tokio::test]
async fn a_connection_limit_change_says_restart_needed_and_a_live_one_does_not() {
    let (b, s) = both_sides().await;
    let p = Proxy::start(config(&b, &s, "batch")).await;
    let t0 = Instant::now();
    let edit = config(&b, &s, "streaming").limits(serde_json::json!({
        "max_connections": 10, "idle_timeout": "5s", "max_inflight_reads": 7
    }));
    rename_over(&p.path, &edit.yaml());
    until_served_by(&p, "streaming", t0).await;
    let st = p.status_json().await;
    let restart = st["last_reload"]["restart_needed"]
        .as_str()
        .unwrap_or_else(|| panic!("restart_needed set: {st:#}"));
    assert!(
        restart.contains("limits.max_connections 1024 -> 10"),
        "{restart}"
    );
    assert!(restart.contains("limits.idle_timeout"), "{restart}");
    assert!(!restart.contains("max_inflight_reads"), "{restart}");
    let t0 = Instant::now();
    let live_only = config(&b, &s, "batch").limits(serde_json::json!({ "max_inflight_reads": 7 }));
    rename_over(&p.path, &live_only.yaml());
    until_served_by(&p, "batch", t0).await;
    let st = p.status_json().await;
    assert!(st["last_reload"]["restart_needed"].is_null(), "{st:#}");
    p.stop().await;
}
