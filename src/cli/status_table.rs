//! `cutover status`: fetches a running cutover's `/status` document and
//! renders it as a table a person reads at a glance.
//!
//! Fetching and rendering are separate so the table is a pure function of the
//! document (`render`), tested without a network.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::state::status::{LastReload, StatusDoc};

/// How long `cutover status` waits for the admin listener, connect to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest `/status` document accepted; a real one is a few KiB per route.
const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// Why the `/status` document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("`{admin}` is not an admin URL (expected http://HOST:PORT)")]
    BadUrl { admin: String },
    #[error("cannot reach the admin listener at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("no answer from {url} within {}s", FETCH_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("{url} answered {status}, not a status document")]
    Status { url: String, status: StatusCode },
    #[error("reading the answer from {url} failed")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url} answered more than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url} did not answer a JSON status document")]
    NotJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

impl FetchError {
    /// What to check next, for the errors a person can fix by looking elsewhere.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            FetchError::Unreachable { .. } | FetchError::Timeout { .. } => Some(
                "is cutover running, and is --admin its `admin:` address (default http://127.0.0.1:9901)?",
            ),
            FetchError::Status { .. } | FetchError::NotJson { .. } => {
                Some("is --admin cutover's `admin:` address, not its `listen:` address?")
            }
            _ => None,
        }
    }
}

/// The `/status` URL for an `--admin` value: `http://127.0.0.1:9901`,
/// `http://127.0.0.1:9901/` and `127.0.0.1:9901` all work.
pub fn status_url(admin: &str) -> Result<Uri, FetchError> {
    let bad = || FetchError::BadUrl {
        admin: admin.to_owned(),
    };
    let trimmed = admin.trim().trim_end_matches('/');
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let base: Uri = with_scheme.parse().map_err(|_| bad())?;
    // The admin listener is plain HTTP on loopback or a pod network; https
    // would need a TLS client this command does not otherwise need.
    if base.scheme_str() != Some("http") || base.authority().is_none() {
        return Err(bad());
    }
    let path = base.path().trim_end_matches('/');
    format!(
        "http://{}{path}/status",
        base.authority().expect("checked above")
    )
    .parse()
    .map_err(|_| bad())
}

/// GETs `{admin}/status` and parses it, within `FETCH_TIMEOUT` in all.
pub async fn fetch(admin: &str) -> Result<StatusDoc, FetchError> {
    let uri = status_url(admin)?;
    let url = uri.to_string();
    match tokio::time::timeout(FETCH_TIMEOUT, fetch_uri(uri, &url)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout { url }),
    }
}

async fn fetch_uri(uri: Uri, url: &str) -> Result<StatusDoc, FetchError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|_| FetchError::BadUrl {
            admin: url.to_owned(),
        })?;
    let resp = client
        .request(req)
        .await
        .map_err(|source| FetchError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    if resp.status() != StatusCode::OK {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: resp.status(),
        });
    }
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES);
    let body = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(match e.downcast::<hyper::Error>() {
                Ok(source) => FetchError::Body {
                    url: url.to_owned(),
                    source: *source,
                },
                Err(_) => FetchError::TooLarge {
                    url: url.to_owned(),
                },
            });
        }
    };
    serde_json::from_slice(&body).map_err(|source| FetchError::NotJson {
        url: url.to_owned(),
        source,
    })
}

/// The table `cutover status` prints for a `/status` document: a header with
/// the consumer, config and last reload, then one row per route. Fields the
/// document lacks show as `-`, so an older or newer cutover still renders.
pub fn render(doc: &StatusDoc) -> String {
    let mut out = String::new();
    let consumer = or(&doc.consumer, "?");
    let risk = doc
        .risk
        .as_deref()
        .map(|r| format!(" (risk {r})"))
        .unwrap_or_default();
    let path = or(&doc.config.path, "?");
    let generation = doc
        .config
        .generation
        .map_or_else(|| "?".to_owned(), |g| g.to_string());
    out.push_str(&format!(
        "consumer {consumer}{risk}   config {path}   generation {generation}\n"
    ));
    out.push_str(&reload_line(&doc.last_reload));

    if doc.routes.is_empty() {
        out.push_str("\nno routes\n");
        return out;
    }
    let mut rows = vec![HEADINGS.map(str::to_owned).to_vec()];
    let mut overridden = false;
    let mut window = None;
    for r in &doc.routes {
        window = window.or(r.window_seconds);
        let configured = match r.canary_percent {
            Some(p) if r.configured_mode == "canary" => format!("canary({p}%)"),
            _ => or(&r.configured_mode, "-").to_owned(),
        };
        let configured = configured.as_str();
        let mut effective = or(&r.effective_mode, "-").to_owned();
        if effective == r.configured_mode {
            // The same mode: shown as configured (`canary(25%)`), not as
            // `canary*`, which would say a gate or the circuit overrode it.
            effective = configured.to_owned();
        } else if effective != "-" {
            effective.push('*');
            overridden = true;
        }
        rows.push(vec![
            or(&r.name, "?").to_owned(),
            configured.to_owned(),
            effective,
            or(&r.circuit, "-").to_owned(),
            format!("{}/{}", count(r.reads.batch), count(r.reads.streaming)),
            percent(r.fallback_rate),
            r.freshness_delta_seconds
                .map_or_else(|| "-".to_owned(), signed_duration),
            points(r.error_ratio_delta),
            percent(r.divergence_ratio),
            compared(r),
            contract(r),
            r.gate_state().unwrap_or("-").to_owned(),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows, &NUMERIC, ""));
    out.push('\n');
    if overridden {
        out.push_str("* effective mode differs from the config: a tripped gate (see below), or the streaming circuit is open and batch serves until a trial read succeeds\n");
    }
    for r in &doc.routes {
        if let Some(line) = trip_line(r) {
            out.push_str(&line);
        }
    }
    out.push_str("FRESH Δ: batch data age minus streaming data age (+: streaming is fresher)\n");
    out.push_str(
        "ERR Δ: streaming minus batch error rate, in percentage points (-: streaming fails less)\n",
    );
    if let Some(w) = window {
        out.push_str(&format!(
            "FALLBACK, ERR Δ and DIVERG are over the last {}; READS and COMPARED since start\n",
            unsigned_duration(w)
        ));
    }
    if doc.routes.iter().any(|r| r.contract.is_some()) {
        out.push_str("CONTRACT: share of checked streaming answers that broke the route's contract, and how many were checked, since start\n");
    }
    out
}

/// A route's contract: violated share of checked answers and the count
/// checked (`0.0%/120`), `none` before the first check, `-` without one.
fn contract(r: &crate::state::status::RouteStatus) -> String {
    match &r.contract {
        None => "-".to_owned(),
        Some(c) if c.checked == 0 => "none".to_owned(),
        Some(c) => format!("{}/{}", percent(c.violation_ratio()), c.checked),
    }
}

/// For a route whose gate is tripped: why, when, and how to re-arm it.
fn trip_line(r: &crate::state::status::RouteStatus) -> Option<String> {
    if r.gate_state() != Some("tripped") {
        return None;
    }
    let trip = r.gate.as_ref().map(|g| &g["trip"]);
    let text = |k: &str| trip.and_then(|t| t[k].as_str()).unwrap_or("?").to_owned();
    let number = |k: &str| {
        trip.and_then(|t| t[k].as_f64())
            .map_or_else(|| "?".to_owned(), |v| format!("{v:.4}"))
    };
    let rollback = r
        .gate
        .as_ref()
        .and_then(|g| g["rollback_to"].as_str())
        .unwrap_or("batch");
    Some(format!(
        "{}: gate tripped at {} by {} ({} > {}): {rollback} serves; edit the route's mode or gate to re-arm it\n",
        r.name,
        to_the_second(&text("at")),
        text("check"),
        number("value"),
        number("threshold"),
    ))
}

/// Comparisons that ran (matched or diverged), `-` when the document has none.
fn compared(r: &crate::state::status::RouteStatus) -> String {
    if r.comparisons.is_empty() {
        return "-".to_owned();
    }
    let ran: u64 = ["match", "diverged"]
        .iter()
        .filter_map(|k| r.comparisons.get(*k))
        .sum();
    ran.to_string()
}

/// A window length as people say it: `5m`, `90s`, `1h30m`.
fn unsigned_duration(seconds: f64) -> String {
    let total = seconds.round() as u64;
    match (total / 3600, total / 60 % 60, total % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// `s`, or `missing` when the document did not say.
fn or<'a>(s: &'a str, missing: &'a str) -> &'a str {
    if s.is_empty() { missing } else { s }
}

const HEADINGS: [&str; 12] = [
    "ROUTE",
    "MODE",
    "EFFECTIVE",
    "CIRCUIT",
    "READS B/S",
    "FALLBACK",
    "FRESH Δ",
    "ERR Δ",
    "DIVERG",
    "COMPARED",
    "CONTRACT",
    "GATE",
];

/// Columns holding figures, right-aligned so digits line up.
const NUMERIC: [bool; HEADINGS.len()] = [
    false, false, false, false, true, true, true, true, true, true, true, false,
];

fn reload_line(reload: &LastReload) -> String {
    let at = reload
        .at
        .as_deref()
        .map(|t| format!(" at {}", to_the_second(t)))
        .unwrap_or_default();
    let mut line = match reload.result.as_deref() {
        None => {
            "last reload: none since start (the config loaded at start-up is serving)\n".to_owned()
        }
        Some("error") => {
            let error = reload.error.as_deref().unwrap_or("(no message)");
            let mut s = format!("last reload: ERROR{at}; the last good config keeps serving:\n");
            for l in error.lines() {
                s.push_str("  ");
                s.push_str(l);
                s.push('\n');
            }
            s
        }
        Some(result) => format!("last reload: {result}{at}\n"),
    };
    if let Some(restart) = reload.restart_needed.as_deref() {
        line.push_str(&format!("restart needed: {restart}\n"));
    }
    line
}

/// An RFC 3339 time without its fraction of a second, which nobody reads.
fn to_the_second(t: &str) -> String {
    let Some(dot) = t.find('.') else {
        return t.to_owned();
    };
    let digits = t[dot + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    format!("{}{}", &t[..dot], &t[dot + 1 + digits..])
}

/// Pads every cell to its column's width, two spaces between columns, each
/// line after `indent`; `numeric` columns are right-aligned so digits line up.
pub(crate) fn table(rows: &[Vec<String>], numeric: &[bool], indent: &str) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths = vec![0; numeric.len()];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(widths[i] - width(cell));
            if numeric[i] {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// A ratio (0.0..=1.0) as a percentage: `4.5%`, `-` when unknown.
fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// A ratio difference as signed percentage points: `+4.5pp`, `-0.3pp`, `0.0pp`.
fn points(v: Option<f64>) -> String {
    let Some(d) = v else {
        return "-".to_owned();
    };
    let pp = d * 100.0;
    if pp.abs() < 0.05 {
        "0.0pp".to_owned()
    } else {
        format!("{pp:+.1}pp")
    }
}

/// Seconds as a signed, compact duration: `+12.3s`, `-5m07s`, `+3h02m`, `+2d04h`.
pub fn signed_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "-".to_owned();
    }
    let sign = if seconds < 0.0 { '-' } else { '+' };
    let abs = seconds.abs();
    if abs < 59.95 {
        return format!("{sign}{abs:.1}s");
    }
    let total = abs.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if total < 3600 {
        format!("{sign}{m}m{s:02}s")
    } else if total < 86_400 {
        format!("{sign}{h}h{m:02}m")
    } else {
        format!("{sign}{d}d{h:02}h")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn doc(v: Value) -> StatusDoc {
        serde_json::from_value(v).expect("a status document")
    }

    fn sample() -> Value {
        json!({
            "consumer": "billing-dashboard",
            "risk": "low",
            "config": { "path": "/etc/cutover/cutover.yaml", "generation": 3 },
            "last_reload": { "result": "ok", "error": null, "at": "2025-06-01T10:00:00Z", "restart_needed": null },
            "routes": [
                {
                    "name": "orders",
                    "path_prefix": "/v1/orders",
                    "configured_mode": "streaming",
                    "effective_mode": "streaming",
                    "circuit": "closed",
                    "reads": { "batch": 3, "streaming": 41 },
                    "fallbacks": 2,
                    "fallback_rate": 0.04545,
                    "data_age_seconds": { "batch": 10925.0, "streaming": 3.0 },
                    "freshness_delta_seconds": 10922.0,
                    "error_ratio": { "batch": 0.0, "streaming": 0.049 },
                    "error_ratio_delta": 0.049,
                    "divergence_ratio": 0.125,
                    "comparisons": { "match": 7, "diverged": 1, "skipped": 2 },
                    "window_seconds": 300.0,
                    "contract": { "checked": 40, "pass": 39, "violation": 1, "skipped": 0, "by_rule": { "unique": 1 } }
                },
                {
                    "name": "customers",
                    "configured_mode": "canary",
                    "canary_percent": 10.0,
                    "effective_mode": "batch",
                    "circuit": "open",
                    "reads": { "batch": 1200, "streaming": 0 },
                    "fallbacks": 0,
                    "fallback_rate": null,
                    "freshness_delta_seconds": null,
                    "error_ratio_delta": null,
                    "divergence_ratio": null
                }
            ]
        })
    }

    #[test]
    fn renders_a_header_and_one_aligned_row_per_route() {
        let out = render(&doc(sample()));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "consumer billing-dashboard (risk low)   config /etc/cutover/cutover.yaml   generation 3"
        );
        assert_eq!(lines[1], "last reload: ok at 2025-06-01T10:00:00Z");
        let heading = lines
            .iter()
            .position(|l| l.starts_with("ROUTE"))
            .expect("heading row");
        let (head, orders, customers) = (lines[heading], lines[heading + 1], lines[heading + 2]);
        assert_eq!(
            head,
            "ROUTE      MODE         EFFECTIVE  CIRCUIT  READS B/S  FALLBACK  FRESH Δ   ERR Δ  DIVERG  COMPARED  CONTRACT  GATE"
        );
        assert_eq!(
            orders,
            "orders     streaming    streaming  closed        3/41      4.5%   +3h02m  +4.9pp   12.5%         8   2.5%/40  -"
        );
        assert_eq!(
            customers,
            "customers  canary(10%)  batch*     open        1200/0         -        -       -       -         -         -  -"
        );
        assert!(
            out.contains("over the last 5m; READS and COMPARED since start"),
            "{out}"
        );
        // Every column starts at the same character offset in each row.
        let col = |l: &str, needle: &str| l.chars().take(l.find(needle).unwrap()).count();
        assert_eq!(col(head, "CIRCUIT"), col(orders, "closed"));
        assert_eq!(col(head, "CIRCUIT"), col(customers, "open"));
        assert!(out.contains("* effective mode differs"));
    }

    #[test]
    fn a_canary_route_serving_canary_is_not_marked_overridden() {
        let mut v = sample();
        v["routes"][1]["circuit"] = json!("closed");
        v["routes"][1]["effective_mode"] = json!("canary");
        let out = render(&doc(v));
        let row = out
            .lines()
            .find(|l| l.starts_with("customers "))
            .expect("customers row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..3], ["canary(10%)", "canary(10%)"], "{out}");
        assert!(!out.contains("* effective mode differs"), "{out}");
    }

    #[test]
    fn a_tripped_gate_has_its_column_and_a_line_saying_how_to_re_arm() {
        let mut v = sample();
        v["routes"][0]["effective_mode"] = json!("batch");
        v["routes"][0]["gate"] = json!({
            "state": "tripped",
            "rollback_to": "batch",
            "trip": { "check": "fallback_ratio", "value": 0.8, "threshold": 0.05, "at": "2025-06-01T10:07:00.25Z" }
        });
        v["routes"][1]["gate"] = json!({ "state": "armed" });
        let doc = doc(v);
        let out = render(&doc);
        let row = |name: &str| {
            out.lines()
                .find(|l| l.starts_with(name))
                .expect("row")
                .to_owned()
        };
        assert!(row("orders ").ends_with("  tripped"), "{out}");
        assert!(row("customers ").ends_with("  armed"), "{out}");
        assert!(
            out.contains("orders: gate tripped at 2025-06-01T10:07:00Z by fallback_ratio (0.8000 > 0.0500): batch serves; edit the route's mode or gate to re-arm it\n"),
            "{out}"
        );
        assert_eq!(
            doc.problems().len(),
            2,
            "a tripped gate and an open circuit"
        );
    }

    #[test]
    fn a_failed_reload_shows_its_error_and_the_restart_note() {
        let mut v = sample();
        v["last_reload"] = json!({
            "result": "error",
            "error": "/etc/cutover/cutover.yaml:12:11: unknown mode `stream`\n/etc/cutover/cutover.yaml:14:5: unknown key `fallbak`",
            "at": "2025-06-01T10:05:00.123456789Z",
            "restart_needed": "listen 127.0.0.1:8080 -> 127.0.0.1:8081 need a restart to take effect"
        });
        let out = render(&doc(v));
        assert!(out.contains(
            "last reload: ERROR at 2025-06-01T10:05:00Z; the last good config keeps serving:\n  /etc/cutover/cutover.yaml:12:11: unknown mode `stream`\n  /etc/cutover/cutover.yaml:14:5: unknown key `fallbak`\n"
        ));
        assert!(out.contains("restart needed: listen 127.0.0.1:8080 -> 127.0.0.1:8081"));
    }

    #[test]
    fn before_any_reload_and_without_routes() {
        let v = json!({
            "consumer": "c",
            "config": { "path": "/c.yaml", "generation": 1 },
            "last_reload": { "result": null, "error": null, "at": null, "restart_needed": null },
            "routes": []
        });
        let out = render(&doc(v));
        assert!(out.contains("last reload: none since start"));
        assert!(out.ends_with("no routes\n"));
        // A document of the wrong shape is an error, never a panic; an empty
        // one renders its unknowns.
        assert!(serde_json::from_value::<StatusDoc>(json!("nonsense")).is_err());
        assert!(render(&StatusDoc::default()).contains("consumer ?"));
    }

    #[test]
    fn times_to_the_second() {
        assert_eq!(
            to_the_second("2025-06-01T10:05:00.1234Z"),
            "2025-06-01T10:05:00Z"
        );
        assert_eq!(
            to_the_second("2025-06-01T10:05:00.5+02:00"),
            "2025-06-01T10:05:00+02:00"
        );
        assert_eq!(
            to_the_second("2025-06-01T10:05:00Z"),
            "2025-06-01T10:05:00Z"
        );
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(signed_duration(12.34), "+12.3s");
        assert_eq!(signed_duration(-0.2), "-0.2s");
        assert_eq!(signed_duration(0.0), "+0.0s");
        assert_eq!(signed_duration(59.97), "+1m00s");
        assert_eq!(signed_duration(-307.0), "-5m07s");
        assert_eq!(signed_duration(10_922.0), "+3h02m");
        assert_eq!(signed_duration(2.0 * 86_400.0 + 4.0 * 3600.0), "+2d04h");
        assert_eq!(signed_duration(f64::NAN), "-");
    }

    #[test]
    fn ratios_as_percent_and_points() {
        assert_eq!(percent(Some(0.0)), "0.0%");
        assert_eq!(percent(Some(1.0)), "100.0%");
        assert_eq!(percent(None), "-");
        assert_eq!(points(Some(-0.003)), "-0.3pp");
        assert_eq!(points(Some(0.0001)), "0.0pp");
    }

    #[test]
    fn admin_urls_with_and_without_scheme() {
        let url = |a: &str| status_url(a).map(|u| u.to_string()).ok();
        assert_eq!(
            url("http://127.0.0.1:9901").as_deref(),
            Some("http://127.0.0.1:9901/status")
        );
        assert_eq!(
            url("http://127.0.0.1:9901/").as_deref(),
            Some("http://127.0.0.1:9901/status")
        );
        assert_eq!(
            url("127.0.0.1:9901").as_deref(),
            Some("http://127.0.0.1:9901/status")
        );
        assert_eq!(
            url("http://sidecar:9901/cutover").as_deref(),
            Some("http://sidecar:9901/cutover/status")
        );
        assert!(url("https://127.0.0.1:9901").is_none());
        assert!(url("not a url").is_none());
    }
}
