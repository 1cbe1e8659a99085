//! The real binary's life cycle: SIGTERM and SIGINT stop accepting, drain the
//! reads in flight (bounded by `shutdown_grace`) and exit 0; a config that
//! cannot be served stops start-up with a non-zero exit that says where.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;

/// A batch-mode route to `batch`, probes off so the backends see reads only.
fn batch_route(batch: impl Into<Side>, streaming: &Backend) -> Route {
    Route::orders(batch, streaming.url("/v1/orders"))
        .mode("batch")
        .no_probe()
}

/// Waits for the child to exit off the async runtime; returns the exit code
/// and how long that took from `since`.
async fn exit_of(mut bin: Binary, since: Instant) -> (Option<i32>, Duration) {
    within(tokio::task::spawn_blocking(move || {
        let code = bin.wait_exit();
        (code, since.elapsed())
    }))
    .await
    .expect("wait task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_read_in_flight_refuses_new_ones_and_exits_0() {
    let batch = Backend::start(Behaviour::Slow(Duration::from_secs(2))).await;
    let streaming = Backend::start(Behaviour::ok("streaming")).await;
    let (_dir, path) = config_file(batch_route(
        Side::new(batch.url("/tables/orders")).timeout("10s"),
        &streaming,
    ));
    let bin = Binary::run(&path);
    let listen = bin.listen;

    let url = format!("http://{listen}/v1/orders/1");
    let in_flight = tokio::spawn(async move { try_get(&url).await });
    wait_until("the read reaches batch", || batch.hits() == 1).await;

    let signalled = Instant::now();
    bin.signal("TERM");
    wait_until_async("new connections are refused", || async move {
        tokio::net::TcpStream::connect(listen).await.is_err()
    })
    .await;
    eprintln!(
        "listener closed {} ms after SIGTERM",
        signalled.elapsed().as_millis()
    );
    assert!(
        !in_flight.is_finished(),
        "the listener closes while the read is still draining"
    );

    let answer = within(in_flight)
        .await
        .expect("reader task")
        .expect("the read in flight is answered");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "slow\n");
    assert_eq!(answer.header("x-cutover-served-by"), Some("batch"));

    let (code, took) = exit_of(bin, signalled).await;
    eprintln!("exited {} ms after SIGTERM", took.as_millis());
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_when_idle_exits_0_at_once() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::ok("streaming")).await;
    let (_dir, path) = config_file(batch_route(batch.url("/tables/orders"), &streaming));
    let bin = Binary::run(&path);
    let r = get(&format!("http://{}/v1/orders/1", bin.listen)).await;
    assert_eq!(r.status, 200);

    let signalled = Instant::now();
    bin.signal("INT");
    let (code, took) = exit_of(bin, signalled).await;
    eprintln!("exited {} ms after SIGINT", took.as_millis());
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "idle shutdown took {took:?}");
}

/// A signal sent the moment the process says it is serving must already be
/// handled as a graceful stop, not kill it with the default disposition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_right_after_start_up_is_a_graceful_stop() {
    let batch = Backend::start(Behaviour::ok("batch")).await;
    let streaming = Backend::start(Behaviour::ok("streaming")).await;
    let (_dir, path) = config_file(batch_route(batch.url("/tables/orders"), &streaming));
    for sig in ["TERM", "INT", "TERM", "INT", "TERM"] {
        let bin = Binary::run(&path);
        bin.signal(sig);
        let (code, _) = exit_of(bin, Instant::now()).await;
        assert_eq!(code, Some(0), "SIG{sig} right after start-up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_is_bounded_by_shutdown_grace() {
    let batch = Backend::start(Behaviour::Hang).await;
    let streaming = Backend::start(Behaviour::ok("streaming")).await;
    // The batch timeout is far longer than the grace, so only the grace ends the read.
    let config = Config::new().shutdown_grace("500ms").route(batch_route(
        Side::new(batch.url("/tables/orders")).timeout("30s"),
        &streaming,
    ));
    let (_dir, path) = config_file(config);
    let bin = Binary::run(&path);
    let url = format!("http://{}/v1/orders/1", bin.listen);
    let in_flight = tokio::spawn(async move { try_get(&url).await });
    wait_until("the read reaches batch", || batch.hits() == 1).await;

    let signalled = Instant::now();
    bin.signal("TERM");
    let (code, took) = exit_of(bin, signalled).await;
    eprintln!(
        "exited {} ms after SIGTERM with a hung read",
        took.as_millis()
    );
    assert_eq!(code, Some(0));
    assert!(
        took >= Duration::from_millis(400),
        "gave the read its grace: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "drain bounded by shutdown_grace: {took:?}"
    );
    let cut = within(in_flight).await.expect("reader task");
    assert!(
        !matches!(&cut, Ok(a) if a.status == 200),
        "the hung read cannot have succeeded: {cut:?}"
    );
}

#[test]
fn run_with_a_missing_config_exits_non_zero_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.yaml");
    let (code, stderr) = run_to_exit(&["run".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(code.is_some(), "exited, not killed: {stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

/// Whether `text` has `FILE:LINE:COLUMN:` for that file and line.
fn has_location(text: &str, file: &Path, line: usize) -> bool {
    let prefix = format!("{}:{line}:", file.display());
    text.match_indices(&prefix).any(|(at, _)| {
        let rest = &text[at + prefix.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(':')
    })
}

#[test]
fn run_with_config_errors_exits_non_zero_with_file_line_column() {
    let down = refusing_addr();
    let config = Config::from(
        Route::orders(
            format!("http://{down}/tables/orders"),
            format!("http://{down}/v1/orders"),
        )
        .mode("stream")
        .set("colour", json!("blue")),
    );
    let yaml = config.yaml();
    let line_of = |needle: &str| 1 + yaml.lines().position(|l| l.contains(needle)).expect(needle);
    let (_dir, path) = config_file(config);
    let (code, stderr) = run_to_exit(&["run".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(code.is_some(), "exited, not killed: {stderr}");
    // Every error, each where it is.
    assert!(
        has_location(&stderr, &path, line_of("mode: stream")),
        "{stderr}"
    );
    assert!(
        has_location(&stderr, &path, line_of("colour: blue")),
        "{stderr}"
    );
    assert!(!stderr.contains("cutover serving"), "{stderr}");
}
