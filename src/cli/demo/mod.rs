//! `cutover demo`: a sample batch service and a sample streaming service on
//! loopback, a commented demo config in a temp dir, and the proxy serving it,
//! so a person can watch a cutover (and a rollback) with nothing installed.
//!
//! The proxy listens on 127.0.0.1:8080 and its admin on 127.0.0.1:9901 when
//! those are free, else on ports the OS picks; `CUTOVER_DEMO_PORTS=ephemeral`
//! always picks (tests and CI use it so they never collide with anything).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::StartError;

mod services;
use self::services::*;

/// Set to `ephemeral` to skip the preferred ports.
pub const PORTS_ENV: &str = "CUTOVER_DEMO_PORTS";
/// Where the demo proxy listens when the port is free.
const PREFERRED_LISTEN: u16 = 8080;
/// Where the demo admin listener answers when the port is free.
const PREFERRED_ADMIN: u16 = 9901;
/// Bind attempts before giving up when a picked port is taken in between.
const BIND_ATTEMPTS: usize = 3;

/// Runs the demo until `shutdown` completes, then drains the proxy, stops the
/// sample services and removes the demo directory.
pub async fn run(shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let ephemeral = std::env::var(PORTS_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("ephemeral"));
    let dataset = Arc::new(Dataset::new(SystemTime::now()));
    let batch = SampleService::start(Kind::Batch, dataset.clone()).await?;
    let streaming = SampleService::start(Kind::Streaming, dataset).await?;
    let dir = DemoDir::create()?;
    let path = dir.path().join("cutover.yaml");

    let mut attempt = 0;
    let running = loop {
        attempt += 1;
        let listen = pick_port(PREFERRED_LISTEN, ephemeral);
        let admin = pick_port(PREFERRED_ADMIN, ephemeral);
        let config = demo_config(listen, admin, batch.addr, streaming.addr);
        std::fs::write(&path, config).map_err(|source| StartError::DemoFiles {
            path: path.clone(),
            source,
        })?;
        match crate::serve::start(&path).await {
            // A picked port can be taken between the probe and the bind; pick again.
            Err(StartError::Bind { .. }) if attempt < BIND_ATTEMPTS => continue,
            other => break other?,
        }
    };
    println!(
        "{}",
        guide(
            &path,
            dir.path(),
            running.listen_addr(),
            running.admin_addr(),
            &batch,
            &streaming
        )
    );

    shutdown.await;
    running.shutdown().await;
    drop((batch, streaming, dir));
    Ok(())
}

/// What a person reads after `cutover demo` starts: where things are, then a
/// walk-through of one migration of `orders` whose steps work in order.
///
/// The walk-through has a fixed shape, so that `tests/it/demo_walkthrough.rs`
/// can follow it as printed: a step starts with `N. `; under it, `$ ` starts a
/// command, `edit ` a one-line config change, `→ ` what the command before it
/// shows; anything else is prose.
fn guide(
    path: &Path,
    dir: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    batch: &SampleService,
    streaming: &SampleService,
) -> String {
    let bin = binary_for_guide();
    let config = path.display();
    let streaming_addr = streaming.addr;
    let status = format!("$ {bin} status --admin http://{admin}");
    let reads = |n: u32, grep: &str| {
        format!(
            "$ for i in $(seq {n}); do curl -s -o /dev/null -D - http://{listen}/v1/orders | grep -i {grep}; done"
        )
    };
    let edit = |mode: &str| format!("edit {config}: in route orders, set `mode: {mode}`");
    let misbehave = |query: &str| {
        format!("$ curl -s -X POST 'http://{streaming_addr}{MISBEHAVE_PATH}?{query}'")
    };
    let steps: Vec<(&str, Vec<String>)> = vec![
        (
            "Where things stand: orders is in shadow. Batch serves every read; streaming gets a copy that is compared, never returned. customers is still on batch.",
            vec![
                reads(20, "x-cutover-served-by"),
                "→ every read: x-cutover-served-by: batch".into(),
                status.clone(),
                "→ orders: MODE shadow, EFFECTIVE shadow, GATE off".into(),
                "COMPARED and DIVERG show what the comparisons found: streaming has orders".into(),
                "batch has not loaded yet (timing) and now and then repeats one (duplicate).".into(),
            ],
        ),
        (
            "Canary: streaming serves a quarter of the customers, and the same customer always the same side.",
            vec![
                edit("canary"),
                format!(
                    "$ for c in $(seq 40); do curl -s -o /dev/null -D - -H \"x-customer-id: $c\" http://{listen}/v1/orders | grep -i x-cutover-served-by; done"
                ),
                "→ some reads: x-cutover-served-by: streaming".into(),
                "→ some reads: x-cutover-served-by: batch".into(),
                status.clone(),
                "→ orders: MODE canary(25%), EFFECTIVE canary(25%), GATE armed".into(),
            ],
        ),
        (
            "Streaming: streaming serves every read, and batch answers whenever streaming fails.",
            vec![
                edit("streaming"),
                reads(20, "x-cutover"),
                "→ some reads: x-cutover-served-by: streaming".into(),
                "A read streaming failed (about 1 in 12) says x-cutover-served-by: batch and".into(),
                "x-cutover-fallback: 5xx or timeout: the consumer got batch's answer, not an error.".into(),
                format!("$ curl -s http://{admin}/metrics | grep cutover_freshness_delta_seconds"),
                "→ prints: cutover_freshness_delta_seconds{".into(),
                status.clone(),
                "→ orders: MODE streaming, EFFECTIVE streaming, GATE armed".into(),
            ],
        ),
        (
            "Streaming breaks: it now fails 80% of reads, and batch answers them.",
            vec![
                misbehave("failures=0.8"),
                "→ prints: streaming now fails 80% of reads".into(),
                reads(20, "x-cutover-fallback"),
                "→ some reads: x-cutover-fallback: 5xx".into(),
                "After 5 failures in a row the circuit opens: batch serves for 30s without".into(),
                "trying streaming (x-cutover-fallback: circuit).".into(),
            ],
        ),
        (
            "The gate rolls orders back by itself: it checks every 5s over the last 30s, and two bad checks in a row trip it (about 11s of steady reads).",
            vec![
                format!(
                    "$ for i in $(seq 300); do curl -s -o /dev/null http://{listen}/v1/orders; sleep 0.1; done &"
                ),
                format!("$ watch -n1 {bin} status --admin http://{admin}"),
                "→ orders: GATE tripped, EFFECTIVE batch*".into(),
                "The line under the table and the log say which check failed; status exits 1".into(),
                "while a gate is tripped. Ctrl-C leaves watch.".into(),
            ],
        ),
        (
            "Streaming recovers, yet orders stays on batch: a tripped gate does not flap back.",
            vec![
                misbehave("failures=0&divergence=0"),
                "→ prints: streaming now fails 5% of reads".into(),
                status.clone(),
                "→ orders: GATE tripped, EFFECTIVE batch*".into(),
            ],
        ),
        (
            "Back to batch, where the migration started: editing the route's mode is also what re-arms its gate.",
            vec![
                edit("batch"),
                reads(20, "x-cutover"),
                "→ every read: x-cutover-served-by: batch".into(),
                "→ no read: x-cutover-fallback".into(),
                status,
                "→ orders: MODE batch, EFFECTIVE batch, GATE off".into(),
            ],
        ),
    ];
    let mut walk = String::new();
    for (n, (title, lines)) in steps.iter().enumerate() {
        walk.push_str(&wrap(&format!("{}. {title}", n + 1), GUIDE_WIDTH, "   "));
        for line in lines {
            walk.push_str(&format!("   {line}\n"));
        }
        walk.push('\n');
    }
    format!(
        "\
cutover demo is running.

  config     {config}
  listen     http://{listen}   the consumer's reads
  admin      http://{admin}   /metrics /status /healthz /readyz
  batch      http://{batch_addr}/tables/orders
             sample batch output: its data is hours old (watermark {batch_wm})
  streaming  http://{streaming_addr}/v1/orders
             sample streaming output: its data is seconds old, but ~5% of reads fail (503),
             ~3% stall past the 300ms timeout and ~10% repeat a record (at-least-once delivery)

Walk-through: one migration of the orders route, shadow to canary to streaming,
a failure, an automatic rollback, and back to batch. Do the steps in order, in
a second terminal in this directory: each starts where the one before ended.
  $ …       a command (type it without the `$ `)
  edit …    change that one line of the config and save it: live within a
            second, no restart (every phase is an edit of the orders mode)
  → …       what you should see
The commands run the binary this demo runs from, so nothing needs installing:
  {bin}

{walk}Ctrl-C stops the demo and removes {dir}.",
        batch_addr = batch.addr,
        batch_wm = rfc3339(batch.dataset.batch_watermark),
        dir = dir.display(),
    )
}

/// Where the guide wraps its prose.
const GUIDE_WIDTH: usize = 80;

/// `text` wrapped at `width` columns, lines after the first indented by
/// `indent`, with a newline at the end.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_owned();
        } else if !line.is_empty() && line != indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// How the guide names this binary: relative to the working directory when
/// it is under it (`./target/release/cutover` after `cargo run --release`),
/// else its full path, so every printed command runs as it is, from a clone,
/// with nothing installed.
fn binary_for_guide() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "./target/release/cutover".to_owned();
    };
    match std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_owned))
    {
        Some(relative) => format!("./{}", relative.display()),
        None => exe.display().to_string(),
    }
}

/// The demo config, every line explained.
fn demo_config(listen: u16, admin: u16, batch: SocketAddr, streaming: SocketAddr) -> String {
    let text = format!(
        "\
# cutover demo config. Edit and save while `cutover demo` runs: the file is
# re-read within a second. A bad edit is rejected (see the log and
# `cutover status`) and the last good config keeps serving.
version: 1 # config format version; always 1
consumer: demo-dashboard # who reads through this sidecar; a label on every metric
risk: low # low | medium | high: how careful this migration must be
listen: 127.0.0.1:{listen} # the consumer sends its reads here (a change needs a restart)
admin: 127.0.0.1:{admin} # /metrics /healthz /readyz /status (a change needs a restart)

defaults: # for both sides of every route, unless a side says otherwise
  connect_timeout: 250ms # give up connecting after this (fallback reason \"connect\")
  # timeout: not set, so each side waits for response headers as long as its own default:
  #   batch 60s (as nginx), streaming 2s; a timeout here would apply to both

routes:
  # orders: the route the walk-through migrates, starting in shadow (phase 1).
  - name: orders # a label on metrics and a row in `cutover status`
    match: # which reads this route takes
      path_prefix: /v1/orders # reads under this path (the longest matching prefix wins)
    batch: http://{batch}/tables/orders # batch output: /v1/orders/7 -> /tables/orders/7
    streaming: # streaming output of the same dataset
      url: http://{streaming}/v1/orders # the streaming service: /v1/orders/7 -> /v1/orders/7
      timeout: 300ms # streaming must answer fast; slower reads fall back (\"timeout\")
    # mode: which side serves this route's reads. Change it and save:
    #   batch           batch only (before the migration, or to roll back)
    #   shadow          batch serves; streaming gets a copy that is compared, never returned
    #   canary          streaming serves canary.percent of reads, batch the rest
    #   streaming       streaming serves; batch answers when streaming fails (see fallback)
    #   streaming_only  streaming serves and its errors reach the consumer (batch retired)
    mode: shadow # edit me: canary, then streaming; batch rolls back
    canary: # used in canary mode only
      percent: 25 # share of customers (or objects) streaming serves
      sticky_header: x-customer-id # one customer, one side
    fallback: # when a read that chose streaming is answered by batch instead
      on: [connect, timeout, 5xx, stale, overflow, circuit] # the failures that fall back
      max_staleness: 10m # streaming data older than this counts as a failure (\"stale\")
      circuit: {{ failures: 5, cooldown: 30s }} # 5 failures in a row: batch only for 30s
    freshness: # how each side says how fresh its data is
      header: {WATERMARK} # an RFC 3339 time; `cutover status` shows the difference
    reconcile: # compare the two sides' answers to the same read
      sample: 0.25 # share of streaming reads also sent to batch and compared
      records: /data # JSON pointer to the record array in each answer
      key: id # the field that identifies a record
      ignore: [ingested_at] # fields expected to differ between the sides
      event_time: created_at # a record newer than the other side's watermark is \"timing\", not a defect
    contract: # what this consumer relies on, checked on every streaming answer
      unique: [id] # an order once: streaming's retries sometimes repeat one
      not_null: [id, amount] # never an order without an amount
      on_violation: record # count and log; fallback answers a broken one from batch
    gate: # automatic rollback: when streaming misbehaves, the route rolls itself back
      # (it watches reads streaming serves: off in shadow and batch, so `cutover check` warns)
      interval: 5s # how often the checks run (30s by default)
      window: 30s # what each check looks back over
      failures: 2 # bad checks in a row that trip the gate
      min_reads: 20 # fewer streaming reads (comparisons) in the window: no verdict, never a trip
      max_fallback_ratio: 0.5 # more than half of streaming's reads answered by batch is bad
      max_divergence_ratio: 0.4 # more than 40% of comparisons diverging is bad
      rollback_to: batch # what the route becomes when tripped: batch, or shadow to keep comparing

  # customers: not migrated yet. Batch serves; try shadow, then streaming.
  - name: customers # a second route, with the short form of a side
    match: {{ path_prefix: /v1/customers }} # reads under /v1/customers
    batch: http://{batch}/tables/customers # a side can be a bare URL
    streaming: http://{streaming}/v1/customers # probed for freshness, not read in batch mode
    mode: batch # edit me: shadow compares without serving streaming
    reconcile: {{ records: /data, key: id, ignore: [ingested_at] }} # how shadow compares
"
    );
    align_comments(&text, COMMENT_COLUMN)
}

/// Where trailing comments start in the demo config, so they read as a column.
const COMMENT_COLUMN: usize = 34;

/// Pads each setting so its trailing `# comment` starts at `column` (or two
/// spaces after a longer setting). Whole-line comments are left alone.
fn align_comments(text: &str, column: usize) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        match line.split_once(" # ") {
            Some((setting, comment)) if !setting.trim().is_empty() => {
                let setting = setting.trim_end();
                let pad = column.saturating_sub(setting.len()).max(2);
                out.push_str(setting);
                out.push_str(&" ".repeat(pad));
                out.push_str("# ");
                out.push_str(comment);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A free port on 127.0.0.1: `preferred` if it can be bound right now (and
/// `ephemeral` is off), else one the OS picks. The probe socket is closed
/// before returning, so the proxy can bind the port; `run` retries if another
/// process takes it in between.
fn pick_port(preferred: u16, ephemeral: bool) -> u16 {
    let bind = |port| std::net::TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    if !ephemeral && bind(preferred).is_ok() {
        return preferred;
    }
    // If even this fails, port 0 in the config makes the proxy pick, and the
    // guide prints the real address anyway.
    bind(0).and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

/// The demo's temp dir, removed when dropped (normal exit and start-up errors alike).
struct DemoDir(PathBuf);

impl DemoDir {
    fn create() -> Result<DemoDir, StartError> {
        let path = std::env::temp_dir().join(format!("cutover-demo-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|source| StartError::DemoFiles {
            path: path.clone(),
            source,
        })?;
        Ok(DemoDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{Response, StatusCode};
    use http_body_util::Full;
    use serde_json::Value;
    use std::time::Duration;

    /// Status, watermark header and JSON body of a sample answer.
    fn records(resp: Response<Full<Bytes>>) -> (StatusCode, Option<String>, Value) {
        use http_body_util::BodyExt;
        let status = resp.status();
        let wm = resp
            .headers()
            .get(WATERMARK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(resp.into_body().collect())
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        (
            status,
            wm,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    #[test]
    fn streaming_has_every_batch_order_plus_newer_ones() {
        let now = SystemTime::now();
        let d = Dataset::new(now);
        let (status, wm, batch) = records(d.answer(Kind::Batch, "/tables/orders", now));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(wm.as_deref(), Some(rfc3339(d.batch_watermark).as_str()));
        let (_, swm, streaming) = records(d.answer(Kind::Streaming, "/v1/orders", now));
        // Distinct ids: streaming repeats a record now and then, on purpose.
        let ids = |v: &Value| -> Vec<u64> {
            let ids: std::collections::BTreeSet<u64> = v["data"]
                .as_array()
                .expect("data array")
                .iter()
                .filter_map(|r| r["id"].as_u64())
                .collect();
            ids.into_iter().collect()
        };
        assert_eq!(ids(&batch), [1, 2, 3, 4, 5, 6]);
        assert_eq!(ids(&streaming), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(batch["data"][0]["amount"], 12.5);
        // Batch is hours behind, streaming seconds.
        let parse = |s: &str| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .expect("RFC 3339")
                .unix_timestamp()
        };
        let now_s = time::OffsetDateTime::from(now).unix_timestamp();
        assert!(now_s - parse(&wm.expect("batch watermark")) >= 3 * 3600);
        assert!(now_s - parse(&swm.expect("streaming watermark")) < 10);
    }

    #[test]
    fn records_read_id_first() {
        use http_body_util::BodyExt;
        let now = SystemTime::now();
        let resp = Dataset::new(now).answer(Kind::Batch, "/tables/orders", now);
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(resp.into_body().collect())
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.starts_with(
                r#"{"data":[{"id":1,"customer_id":101,"amount":12.5,"currency":"EUR""#
            ),
            "{text}"
        );
    }

    #[test]
    fn single_records_and_unknown_paths() {
        let now = SystemTime::now();
        let d = Dataset::new(now);
        let (status, _, one) = records(d.answer(Kind::Batch, "/tables/customers/103", now));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(one["data"][0]["name"], "Cedar Books");
        let (status, _, _) = records(d.answer(Kind::Batch, "/tables/orders/9", now));
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "batch does not have order 9 yet"
        );
        let (status, _, _) = records(d.answer(Kind::Streaming, "/v1/orders/9", now));
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = records(d.answer(Kind::Streaming, "/v1/invoices", now));
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_config_names_the_ports_and_explains_every_setting() {
        let batch: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
        let streaming: SocketAddr = "127.0.0.1:7002".parse().expect("addr");
        let text = demo_config(8080, 9901, batch, streaming);
        assert!(text.contains("listen: 127.0.0.1:8080 "));
        assert!(text.contains("admin: 127.0.0.1:9901 "));
        assert!(text.contains("batch: http://127.0.0.1:7001/tables/orders"));
        assert!(text.contains("url: http://127.0.0.1:7002/v1/orders"));
        assert_eq!(
            text.matches("mode: shadow ").count(),
            1,
            "the line the guide says to edit"
        );
        let unexplained: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .filter(|l| !l.contains("  # ") && l.trim() != "routes:")
            .collect();
        assert!(
            unexplained.is_empty(),
            "settings without a comment: {unexplained:#?}"
        );
        let comment_columns: Vec<usize> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.find("  # ").map(|i| i + 2))
            .filter(|&c| c == COMMENT_COLUMN)
            .collect();
        assert!(comment_columns.len() > 20, "comments line up in a column");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
        assert_eq!(yaml["routes"][0]["mode"].as_str(), Some("shadow"));
        assert_eq!(yaml["routes"][1]["mode"].as_str(), Some("batch"));
    }

    #[test]
    fn the_demo_config_compiles_with_a_gate_on_orders() {
        let batch: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
        let text = demo_config(8080, 9901, batch, batch);
        let c = crate::config::compile_str(Path::new("demo.yaml"), &text, 1)
            .unwrap_or_else(|e| panic!("{e}"));
        // Orders starts in shadow, where its gate has nothing to watch yet.
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].to_string().contains("does nothing"),
            "{}",
            c.warnings[0]
        );
        let orders = c
            .routes
            .iter()
            .find(|r| r.name == "orders")
            .expect("orders");
        let gate = orders.gate.as_ref().expect("a gate on orders");
        assert_eq!(gate.interval, Duration::from_secs(5));
        assert_eq!(gate.failures, 2);
        assert!(
            c.routes
                .iter()
                .all(|r| r.name == "orders" || r.gate.is_none())
        );
    }

    #[test]
    fn misbehave_sets_shares_and_refuses_nonsense() {
        let m = Misbehaviour::default();
        assert_eq!(m.failures(), 0.0);
        let said = m.set("failures=0.8").expect("ok");
        assert!(said.contains("fails 80% of reads"), "{said}");
        m.set("divergence=0.5").expect("ok");
        assert_eq!((m.failures(), m.divergence()), (0.8, 0.5));
        assert!(m.set("failures=2").is_err());
        assert!(m.set("divergence=0.1&speed=3").is_err());
        assert_eq!(m.divergence(), 0.5, "nothing changes on an error");
        m.set("failures=0&divergence=0").expect("ok");
        assert_eq!((m.failures(), m.divergence()), (0.0, 0.0));
    }

    #[test]
    fn a_lossy_answer_lacks_a_record_batch_has() {
        let now = SystemTime::now();
        let d = Dataset::new(now);
        let (_, _, lossy) = records(d.answer_losing(Kind::Streaming, "/v1/orders", now, true));
        let ids: Vec<u64> = lossy["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|r| r["id"].as_u64())
            .collect();
        assert!(!ids.contains(&1), "{ids:?}");
    }

    #[test]
    fn wrap_breaks_at_the_width_and_indents_what_follows() {
        assert_eq!(wrap("1. aaa bbb", 5, "   "), "1.\n   aaa\n   bbb\n");
        assert_eq!(wrap("1. short", 80, "   "), "1. short\n");
    }

    #[test]
    fn pick_port_falls_back_when_the_preferred_port_is_taken() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let picked = pick_port(port, false);
        assert_ne!(picked, port);
        assert_ne!(picked, 0);
        assert_ne!(pick_port(port, true), port);
    }
}
