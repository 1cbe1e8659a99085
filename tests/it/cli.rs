//! The command line as a user meets it: `--help` everywhere, `cutover status`
//! against a live proxy and against nothing, and `cutover demo` as a real
//! process from its printed guide to Ctrl-C. Every wait is bounded.

use std::time::Duration;

use crate::support::{
    Backend, Behaviour, Demo, Output, Proxy, Route, get, refusing_addr, run_cutover,
    wait_until_async, within,
};

/// Runs `cutover args`, killing it if it outlives `WAIT`.
fn cutover(args: &[&str]) -> Output {
    run_cutover(args)
}

#[test]
fn help_works_everywhere() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["check", "--help"],
        &["demo", "--help"],
        &["status", "--help"],
        &["help", "status"],
    ] {
        let out = cutover(args);
        assert_eq!(out.code, Some(0), "cutover {args:?}: {}", out.stderr);
        assert!(
            out.stdout.contains("Usage:"),
            "cutover {args:?}:\n{}",
            out.stdout
        );
    }
    let top = cutover(&["--help"]).stdout;
    for sub in ["run", "check", "demo", "status"] {
        assert!(top.contains(sub), "--help lists {sub}:\n{top}");
    }
    assert!(cutover(&["status", "--help"]).stdout.contains("--admin"));
}

#[test]
fn status_says_clearly_when_nothing_answers() {
    let port = refusing_addr().port();
    let admin = format!("http://127.0.0.1:{port}");
    let out = cutover(&["status", "--admin", &admin]);
    // SPEC 1.1: 2 when the admin endpoint cannot be read.
    assert_eq!(
        out.code,
        Some(2),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "no table without a document: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("cannot reach the admin listener")
            && out.stderr.contains(&format!("127.0.0.1:{port}/status")),
        "names what failed and where: {}",
        out.stderr
    );
    assert!(
        out.stderr.to_lowercase().contains("refused"),
        "says why: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("is cutover running"),
        "says what to check: {}",
        out.stderr
    );

    let out = cutover(&["status", "--admin", "https://127.0.0.1:9901"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("not an admin URL"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_a_row_per_route_from_a_live_proxy() {
    let batch = Backend::start(Behaviour::aged(
        r#"{"data":[{"id":1}]}"#,
        Duration::from_secs(3 * 3600),
    ))
    .await;
    let streaming = Backend::start(Behaviour::aged(
        r#"{"data":[{"id":1}]}"#,
        Duration::from_secs(5),
    ))
    .await;
    let proxy = Proxy::start(
        Route::orders(batch.url("/tables/orders"), streaming.url("/v1/orders")).mode("streaming"),
    )
    .await;
    for _ in 0..3 {
        let r = get(&proxy.url("/v1/orders")).await;
        assert_eq!(r.status, 200);
    }
    // Batch's age comes from its first probe, within seconds of the start.
    wait_until_async("batch's first probe is answered", || async {
        proxy.status_json().await["routes"][0]["data_age_seconds"]["batch"].is_number()
    })
    .await;
    let admin = proxy.admin_url("");
    let out = within(tokio::task::spawn_blocking(move || {
        cutover(&["status", "--admin", &admin])
    }))
    .await
    .expect("status runs");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let table = &out.stdout;
    assert!(table.contains("consumer test"), "{table}");
    assert!(table.contains(&proxy.path.display().to_string()), "{table}");
    let header = table
        .lines()
        .find(|l| l.starts_with("ROUTE"))
        .unwrap_or_else(|| panic!("a heading row:\n{table}"));
    for column in [
        "MODE",
        "EFFECTIVE",
        "CIRCUIT",
        "READS B/S",
        "FALLBACK",
        "FRESH Δ",
        "ERR Δ",
        "DIVERG",
    ] {
        assert!(header.contains(column), "{column} in {header}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("orders "))
        .unwrap_or_else(|| panic!("a row for orders:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "streaming", "configured mode: {row}");
    assert_eq!(cells[2], "streaming", "effective mode: {row}");
    assert_eq!(cells[4], "0/3", "reads batch/streaming: {row}");
    assert!(
        cells[6].starts_with("+3h") || cells[6].starts_with("+2h59m"),
        "freshness: {row}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_and_exit_codes_say_healthy_or_not() {
    let batch = Backend::start(Behaviour::ok("b")).await;
    let streaming = Backend::start(Behaviour::ok("s")).await;
    let proxy = Proxy::start(
        Route::orders(batch.url("/t"), streaming.url("/s"))
            .mode("shadow")
            .dataset("orders-v2"),
    )
    .await;
    let admin = proxy.admin_url("");
    let run = |args: Vec<String>| {
        within(tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cutover(&args)
        }))
    };
    let json = vec![
        "status".into(),
        "--admin".into(),
        admin.clone(),
        "--json".into(),
    ];
    let out = run(json.clone()).await.expect("status runs");
    assert_eq!(out.code, Some(0), "healthy: {}", out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json prints JSON");
    assert_eq!(doc["routes"][0]["name"], "orders");
    assert_eq!(doc["routes"][0]["dataset"], "orders-v2");
    assert_eq!(doc["listen"], proxy.listen.to_string());
    assert_eq!(
        doc["config"]["sha256"].as_str().map(str::len),
        Some(64),
        "{doc:#}"
    );

    // The file on disk is rejected: unhealthy, exit 1, and it says why.
    std::fs::write(&proxy.path, "version: 1\nconsumer: [\n").expect("break the config");
    let status = proxy.admin_url("/status");
    wait_until_async("the broken file is rejected", || {
        let status = status.clone();
        async move { get(&status).await.json()["last_reload"]["result"] == "error" }
    })
    .await;
    let out = run(vec!["status".into(), "--admin".into(), admin.clone()])
        .await
        .expect("status runs");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stdout.contains("ERROR"),
        "the table still prints: {}",
        out.stdout
    );
    assert!(out.stderr.contains("last reload failed"), "{}", out.stderr);
    let out = run(json).await.expect("status runs");
    assert_eq!(out.code, Some(1));
    proxy.stop().await;
}

#[test]
fn a_start_up_error_is_one_json_line_with_log_format_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "version: 1\nconsumer: c\nroutes: []\ncolour: blue\n").expect("write");
    let path = path.display().to_string();
    let out = cutover(&["--log-format", "json", "run", "-c", &path]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one event, one line: {}", out.stderr);
    let event: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON log line");
    assert_eq!(event["level"], "ERROR", "{event}");
    let error = event["fields"]["error"].as_str().expect("error field");
    assert!(error.contains(&format!("{path}:3:")), "{error}");
    assert!(error.contains(&format!("{path}:4:")), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_what_its_guide_says_and_stops_on_ctrl_c() {
    let mut demo = Demo::start(None);
    demo.read_until("Ctrl-C stops the demo");
    let config = std::path::PathBuf::from(demo.guide_word("config"));
    let orders = format!("{}/v1/orders", demo.guide_word("listen"));
    let admin = demo.guide_word("admin");
    assert!(orders.ends_with("/v1/orders"), "{orders}");
    assert!(
        config.is_file(),
        "the printed config exists: {}",
        config.display()
    );
    let text = std::fs::read_to_string(&config).expect("read demo config");
    let listen = orders
        .trim_start_matches("http://")
        .trim_end_matches("/v1/orders");
    assert!(
        text.contains(&format!("listen: {listen} ")),
        "the config names the port the guide prints"
    );

    // The printed curl line answers, and says which side served it. Streaming
    // fails now and then on purpose; batch answers those, so every read is 200.
    for _ in 0..5 {
        let r = get(&orders).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let side = r.header("x-cutover-served-by");
        assert!(
            matches!(side, Some("streaming" | "batch")),
            "served by {side:?}"
        );
        assert!(r.json()["data"][0]["id"].is_u64(), "{}", r.text());
    }
    let metrics = get(&format!("{admin}/metrics")).await;
    assert!(metrics.text().contains("cutover_freshness_delta_seconds{"));

    // The guide's `cutover status` line works against the demo.
    let admin_arg = admin.clone();
    let out = within(tokio::task::spawn_blocking(move || {
        cutover(&["status", "--admin", &admin_arg])
    }))
    .await
    .expect("status runs");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("orders ") && out.stdout.contains("customers "),
        "{}",
        out.stdout
    );

    // An edit of the orders mode (shadow -> streaming), live within a second
    // or so. The whole printed walk-through is followed in demo_walkthrough.rs.
    let edited = text.replacen("mode: shadow ", "mode: streaming ", 1);
    assert_ne!(
        edited, text,
        "the config has the line the guide says to edit"
    );
    std::fs::write(&config, edited).expect("edit demo config");
    wait_until_async("the edit takes effect", || async {
        let r = get(&orders).await;
        r.header("x-cutover-served-by") == Some("streaming")
    })
    .await;

    demo.interrupt();
    assert_eq!(demo.wait_exit(), Some(0), "Ctrl-C exits 0");
    assert!(!config.exists(), "the demo removes its temp dir on exit");
}
