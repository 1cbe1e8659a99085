//! `cutover demo`'s walk-through, followed as it is printed: the real demo
//! binary on ports the OS picks, its numbered steps read from its stdout (not
//! written down here), each step's config edit made to the printed file, its
//! `curl` reads sent through the listener with a real HTTP client, its
//! `cutover status` run through the real binary it names, and each `→` line
//! (what the user should see) asserted, in order. Steps that undo each other
//! (say, back to batch before the gate step) fail here: the gate never trips.
//!
//! What the guide's shape is (`src/cli/demo/mod.rs`, `guide`): a step starts
//! with `N. `; under it `$ ` starts a command, `edit ` a one-line config
//! change, `→ ` an outcome of the command before it; other lines are prose.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::{Demo, WAIT, get_with, run_cutover_in, send, within};

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// How long `watch` may take to show its outcome: the demo's gate checks
/// every 5 s and trips on the second bad check (~11 s, docs/gates.md), after
/// a window that may still hold good reads from the step before.
const WATCH_LIMIT: Duration = Duration::from_secs(60);

/// One line under a step.
#[derive(Debug, Clone)]
enum Line {
    /// `$ command`
    Command(String),
    /// `edit FILE: in route NAME, set `KEY: VALUE``
    Edit {
        file: PathBuf,
        route: String,
        key: String,
        value: String,
    },
    /// `→ outcome`
    Outcome(String),
}

#[derive(Debug)]
struct Step {
    number: usize,
    title: String,
    lines: Vec<Line>,
}

/// The numbered steps in the demo's stdout, in order.
fn parse_steps(stdout: &[String]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for raw in stdout {
        let line = raw.trim();
        if let Some((n, title)) = line.split_once(". ")
            && !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
            && !raw.starts_with(' ')
        {
            steps.push(Step {
                number: n.parse().expect("digits"),
                title: title.to_owned(),
                lines: Vec::new(),
            });
            continue;
        }
        let Some(step) = steps.last_mut() else {
            continue;
        };
        if line.is_empty() {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            step.lines.push(Line::Command(command.to_owned()));
        } else if let Some(outcome) = line.strip_prefix("→ ") {
            step.lines.push(Line::Outcome(outcome.to_owned()));
        } else if let Some(edit) = line.strip_prefix("edit ") {
            step.lines.push(parse_edit(edit));
        } else if line.starts_with("Ctrl-C stops the demo") {
            break;
        }
        // Anything else is prose for the person reading.
    }
    steps
}

/// `FILE: in route NAME, set `KEY: VALUE``.
fn parse_edit(edit: &str) -> Line {
    let parsed = (|| {
        let (file, rest) = edit.split_once(": in route ")?;
        let (route, rest) = rest.split_once(", set `")?;
        let (key, value) = rest.strip_suffix('`')?.split_once(": ")?;
        Some((file, route, key, value))
    })();
    let (file, route, key, value) =
        parsed.unwrap_or_else(|| panic!("an edit line this test can follow: {edit:?}"));
    Line::Edit {
        file: PathBuf::from(file),
        route: route.to_owned(),
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

/// Sets `key: value` on the first `key:` line of route `route`, keeping the
/// line's indentation and comment, as a person editing the file would.
fn edit_route(file: &Path, route: &str, key: &str, value: &str) {
    let text = std::fs::read_to_string(file).expect("read the demo config");
    let mut in_route = false;
    let mut done = false;
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- name: ") {
            in_route = name.split_whitespace().next() == Some(route);
        }
        let prefix = format!("{key}: ");
        if in_route && !done && trimmed.starts_with(&prefix) {
            let indent = &line[..line.len() - trimmed.len()];
            let after = &trimmed[prefix.len()..];
            // Keep the comment where it was: pad the new value to the old width.
            let old_value = after.split_whitespace().next().unwrap_or("");
            let rest = &after[old_value.len()..];
            let pad = old_value.len().saturating_sub(value.len());
            out.push_str(&format!("{indent}{prefix}{value}{}{rest}", " ".repeat(pad)));
            done = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert!(
        done,
        "route {route} has a `{key}:` line in {}:\n{text}",
        file.display()
    );
    std::fs::write(file, out).expect("write the demo config");
}

/// What a printed command is, as far as this test runs it.
#[derive(Debug, Clone)]
enum Action {
    /// `for i in $(seq N); do curl ... URL [| grep ...]; [sleep S;] done [&]`
    Reads {
        count: u32,
        url: String,
        /// `-H "name: value"`, with `$var` replaced by the iteration number.
        header: Option<(String, String)>,
        pause: Option<Duration>,
        background: bool,
    },
    /// `curl -s -X POST 'URL'`
    Post(String),
    /// `curl -s URL | grep WORD`
    Scrape { url: String, grep: String },
    /// `[watch -n1] BIN ARGS`
    Cutover { args: Vec<String>, watch: bool },
}

/// Splits a command line into words, honouring '…' and "…" quotes.
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in command.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

fn parse_action(command: &str, bin: &str) -> Action {
    let w = words(command);
    let url = || {
        w.iter()
            .find(|w| w.starts_with("http://"))
            .map(|u| u.trim_end_matches(';').to_owned())
            .unwrap_or_else(|| panic!("a URL in {command:?}"))
    };
    match w.first().map(String::as_str) {
        Some("for") => {
            let seq = w
                .iter()
                .position(|w| w == "$(seq")
                .unwrap_or_else(|| panic!("`$(seq N)` in {command:?}"));
            let count = w[seq + 1]
                .trim_end_matches([')', ';'])
                .parse()
                .unwrap_or_else(|_| panic!("a count in {command:?}"));
            let header = w.iter().position(|w| w == "-H").map(|i| {
                let (name, value) = w[i + 1]
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("a header in {command:?}"));
                (name.to_owned(), value.to_owned())
            });
            let pause = w.iter().position(|w| w == "sleep").map(|i| {
                let s: f64 = w[i + 1]
                    .trim_end_matches(';')
                    .parse()
                    .unwrap_or_else(|_| panic!("seconds after sleep in {command:?}"));
                Duration::from_secs_f64(s)
            });
            Action::Reads {
                count,
                url: url(),
                header,
                pause,
                background: w.last().is_some_and(|w| w == "&"),
            }
        }
        Some("curl") if w.iter().any(|w| w == "POST") => Action::Post(url()),
        Some("curl") => {
            let grep = w
                .iter()
                .position(|w| w == "grep")
                .and_then(|i| w.get(i + 1))
                .unwrap_or_else(|| panic!("`| grep WORD` in {command:?}"));
            Action::Scrape {
                url: url(),
                grep: grep.clone(),
            }
        }
        Some("watch") => {
            let at = w
                .iter()
                .position(|w| w == bin)
                .unwrap_or_else(|| panic!("the demo's binary {bin} in {command:?}"));
            Action::Cutover {
                args: w[at + 1..].to_vec(),
                watch: true,
            }
        }
        Some(first) if first == bin => Action::Cutover {
            args: w[1..].to_vec(),
            watch: false,
        },
        _ => panic!("a command this test can follow: {command:?}"),
    }
}

/// What a command showed: the `x-cutover-*` headers of each read, or text.
#[derive(Debug, Default)]
struct Seen {
    reads: Vec<Vec<(String, String)>>,
    text: String,
}

/// GET `url` once with an optional header; the answer's `x-cutover-*` headers.
async fn read(url: &str, header: Option<(&str, &str)>) -> Vec<(String, String)> {
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    let answer = get_with(url, &headers).await;
    assert_eq!(
        answer.status,
        200,
        "every read through the demo is answered: {}",
        answer.text()
    );
    answer
        .headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-cutover"))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect()
}

async fn reads(count: u32, url: &str, header: &Option<(String, String)>) -> Seen {
    let mut seen = Seen::default();
    for i in 1..=count {
        let value = header.as_ref().map(|(k, v)| {
            (
                k.clone(),
                v.replace("$c", &i.to_string())
                    .replace("$i", &i.to_string()),
            )
        });
        seen.reads
            .push(read(url, value.as_ref().map(|(k, v)| (k.as_str(), v.as_str()))).await);
    }
    seen
}

/// Whether `seen` shows `outcome`; `Err` says what it showed instead.
fn holds(outcome: &str, seen: &Seen) -> Result<(), String> {
    let header_is = |read: &[(String, String)], h: &str| {
        let (name, value) = h.split_once(": ").unwrap_or((h, ""));
        read.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && (value.is_empty() || v == value))
    };
    let reads = || format!("{:?}", seen.reads);
    let ok = if let Some(h) = outcome.strip_prefix("every read: ") {
        !seen.reads.is_empty() && seen.reads.iter().all(|r| header_is(r, h))
    } else if let Some(h) = outcome.strip_prefix("some reads: ") {
        seen.reads.iter().any(|r| header_is(r, h))
    } else if let Some(h) = outcome.strip_prefix("no read: ") {
        !seen.reads.is_empty() && !seen.reads.iter().any(|r| header_is(r, h))
    } else if let Some(text) = outcome.strip_prefix("prints: ") {
        return if seen.text.contains(text) {
            Ok(())
        } else {
            Err(seen.text.clone())
        };
    } else if let Some((route, cells)) = outcome.split_once(": ") {
        return route_row_holds(&seen.text, route, cells);
    } else {
        panic!("an outcome this test can check: {outcome:?}");
    };
    if ok { Ok(()) } else { Err(reads()) }
}

/// `cells` (`MODE shadow, GATE off`) against `route`'s row of the status table.
fn route_row_holds(table: &str, route: &str, cells: &str) -> Result<(), String> {
    let columns = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let header = table
        .lines()
        .find(|l| l.starts_with("ROUTE "))
        .ok_or_else(|| format!("no table:\n{table}"))?;
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{route} ")))
        .ok_or_else(|| format!("no row for {route}:\n{table}"))?;
    let (names, values) = (columns(header), columns(row));
    if names.len() != values.len() {
        return Err(format!("a cell per column:\n{table}"));
    }
    for cell in cells.split(", ") {
        let (column, want) = cell
            .split_once(' ')
            .unwrap_or_else(|| panic!("`COLUMN value` in {cells:?}"));
        let at = names
            .iter()
            .position(|n| n == column)
            .unwrap_or_else(|| panic!("a {column} column in:\n{table}"));
        if values[at] != want {
            return Err(format!("{column} is {}, not {want}:\n{table}", values[at]));
        }
    }
    Ok(())
}

/// Runs `action` (as often as `until` needs, within `limit`) and returns
/// what it showed last, once every one of `outcomes` holds on it.
async fn follow(
    step: &Step,
    command: &str,
    action: &Action,
    outcomes: &[String],
    root: &Path,
    background: &mut Vec<tokio::task::JoinHandle<()>>,
) {
    let run_once = |action: Action| async move {
        match action {
            Action::Reads {
                count, url, header, ..
            } => reads(count, &url, &header).await,
            Action::Post(url) => {
                let answer = send(
                    Request::post(url.as_str())
                        .body(Full::new(Bytes::new()))
                        .expect("request"),
                )
                .await;
                assert_eq!(answer.status, 200, "{command}: {}", answer.text());
                Seen {
                    text: answer.text(),
                    ..Seen::default()
                }
            }
            Action::Scrape { url, grep } => {
                let answer = get_with(&url, &[]).await;
                Seen {
                    text: answer
                        .text()
                        .lines()
                        .filter(|l| l.contains(&grep))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    ..Seen::default()
                }
            }
            Action::Cutover { args, .. } => {
                let root = root.to_owned();
                let out = within(tokio::task::spawn_blocking(move || {
                    run_cutover_in(&root, &args)
                }))
                .await
                .expect("cutover runs");
                // 0, or 1 while a gate is tripped (as the guide says); never 2.
                assert!(
                    matches!(out.code, Some(0 | 1)),
                    "{command}: exit {:?}\n{}{}",
                    out.code,
                    out.stdout,
                    out.stderr
                );
                Seen {
                    text: out.stdout,
                    ..Seen::default()
                }
            }
        }
    };
    match action {
        Action::Reads {
            count,
            url,
            header,
            pause,
            background: true,
        } => {
            assert!(
                outcomes.is_empty(),
                "step {}: a background loop shows nothing",
                step.number
            );
            let (count, url, header, pause) = (
                *count,
                url.clone(),
                header.clone(),
                pause.unwrap_or_default(),
            );
            background.push(tokio::spawn(async move {
                for _ in 0..count {
                    let headers: Vec<(&str, &str)> = header
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let _ = get_with(&url, &headers).await;
                    tokio::time::sleep(pause).await;
                }
            }));
            return;
        }
        Action::Post(_) => {
            let seen = run_once(action.clone()).await;
            for outcome in outcomes {
                if let Err(saw) = holds(outcome, &seen) {
                    panic!(
                        "step {} ({}): `{command}` should show `{outcome}`; it showed:\n{saw}",
                        step.number, step.title
                    );
                }
            }
            return;
        }
        _ => {}
    }
    // A read or a status right after an edit runs again until the edit is
    // live ("within a second"), as a person would try again; `watch` runs
    // until its outcome shows.
    let limit = match action {
        Action::Cutover { watch: true, .. } => WATCH_LIMIT,
        _ => WAIT,
    };
    let deadline = Instant::now() + limit;
    loop {
        let seen = run_once(action.clone()).await;
        let failed = outcomes
            .iter()
            .find_map(|o| holds(o, &seen).err().map(|saw| (o, saw)));
        let Some((outcome, saw)) = failed else {
            return;
        };
        if Instant::now() >= deadline {
            panic!(
                "step {} ({}): `{command}` should show `{outcome}` within {limit:?}; it showed:\n{saw}",
                step.number, step.title
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_walk_through_works_step_by_step_in_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut demo = Demo::start(Some(root));
    demo.read_until("Ctrl-C stops the demo");
    let steps = parse_steps(&demo.stdout);
    assert!(
        steps.len() >= 5,
        "a numbered walk-through:\n{}",
        demo.stdout.join("\n")
    );
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step.number, i + 1, "steps are numbered in order");
    }

    // Every command names the binary this test built, so it works from a
    // clone with nothing installed (`./target/release/cutover` after
    // `cargo run --release -- demo` from the repository root).
    let bin = steps
        .iter()
        .flat_map(|s| &s.lines)
        .find_map(|l| match l {
            Line::Command(c) => {
                let w = words(c);
                let at = usize::from(w.first().is_some_and(|w| w == "watch")) * 2;
                w.get(at).filter(|w| w.ends_with("cutover")).cloned()
            }
            _ => None,
        })
        .expect("a cutover command in the walk-through");
    let resolved = root.join(&bin);
    assert_eq!(
        std::fs::canonicalize(&resolved).ok(),
        std::fs::canonicalize(BIN).ok(),
        "the guide's {bin} is the demo's own binary"
    );
    for line in steps.iter().flat_map(|s| &s.lines) {
        if let Line::Command(c) = line {
            let first = words(c).into_iter().next().unwrap_or_default();
            assert!(
                ["for", "curl", "watch", bin.as_str()].contains(&first.as_str()),
                "`{c}` runs without `cutover` on PATH"
            );
        }
    }

    let mut background = Vec::new();
    for step in &steps {
        let mut i = 0;
        while i < step.lines.len() {
            match &step.lines[i] {
                Line::Edit {
                    file,
                    route,
                    key,
                    value,
                } => edit_route(file, route, key, value),
                Line::Command(command) => {
                    let outcomes: Vec<String> = step.lines[i + 1..]
                        .iter()
                        .map_while(|l| match l {
                            Line::Outcome(o) => Some(o.clone()),
                            _ => None,
                        })
                        .collect();
                    let action = parse_action(command, &bin);
                    follow(step, command, &action, &outcomes, root, &mut background).await;
                    i += outcomes.len();
                }
                Line::Outcome(o) => panic!(
                    "step {}: `→ {o}` follows a command, not an edit",
                    step.number
                ),
            }
            i += 1;
        }
    }
    for task in background {
        task.abort();
    }

    let config = steps
        .iter()
        .flat_map(|s| &s.lines)
        .find_map(|l| match l {
            Line::Edit { file, .. } => Some(file.clone()),
            _ => None,
        })
        .expect("an edit step");
    demo.interrupt();
    assert_eq!(demo.wait_exit(), Some(0), "Ctrl-C exits 0");
    assert!(!config.exists(), "the demo removes its temp dir on exit");
}

#[test]
fn the_parser_reads_the_guide_shape() {
    let printed: Vec<String> = [
        "Walk-through: prose that says 1. nothing",
        "1. Shadow first.",
        "   $ for c in $(seq 3); do curl -s -o /dev/null -D - -H \"x-customer-id: $c\" http://127.0.0.1:1/v1/orders | grep -i x-cutover; done",
        "   → some reads: x-cutover-served-by: batch",
        "   prose",
        "2. Then canary.",
        "   edit /tmp/d/cutover.yaml: in route orders, set `mode: canary`",
        "   $ watch -n1 ./target/release/cutover status --admin http://127.0.0.1:2",
        "   → orders: GATE tripped, EFFECTIVE batch*",
        "Ctrl-C stops the demo and removes /tmp/d.",
    ]
    .map(str::to_owned)
    .to_vec();
    let steps = parse_steps(&printed);
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0].lines.len(), 2, "{steps:?}");
    match parse_action(
        match &steps[0].lines[0] {
            Line::Command(c) => c,
            other => panic!("{other:?}"),
        },
        "./target/release/cutover",
    ) {
        Action::Reads {
            count: 3,
            header: Some((name, value)),
            background: false,
            url,
            ..
        } => {
            assert_eq!((name.as_str(), value.as_str()), ("x-customer-id", "$c"));
            assert_eq!(url, "http://127.0.0.1:1/v1/orders");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &steps[1].lines[0],
        Line::Edit { route, key, value, .. } if route == "orders" && key == "mode" && value == "canary"
    ));
    let table = "ROUTE   MODE    EFFECTIVE  READS B/S  GATE\norders  canary  batch*           1/2  tripped\n";
    assert!(route_row_holds(table, "orders", "GATE tripped, EFFECTIVE batch*").is_ok());
    assert!(route_row_holds(table, "orders", "GATE armed").is_err());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        "routes:\n  - name: a\n    mode: batch   # a\n  - name: orders\n    mode: shadow  # edit me\n",
    )
    .expect("write");
    edit_route(&file, "orders", "mode", "canary");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("    mode: batch   # a\n"), "{text}");
    assert!(text.contains("    mode: canary  # edit me\n"), "{text}");
}
