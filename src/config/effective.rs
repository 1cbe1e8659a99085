//! The effective config as YAML, like `nginx -T`: what a compiled config
//! says, every key written out with the value that applies, defaults filled
//! in. `/config` on the admin port serves it.
//!
//! The text is itself a config: compiled again (anywhere: a relative
//! `ca_file` or `contract.schema` is written absolute; log paths are written as given, since a
//! relative one is under the process's `--data-dir`) it gives the same
//! values. Values a config cannot spell
//! are written as comments that say what applies instead:
//! - `defaults`: already folded into every side, which lists each setting;
//! - an unset `max_inflight`, `ca_file`, `sticky_header`, `max_staleness`,
//!   `key`, `event_time`, `divergence_log`, `access_log`, `contract` or
//!   one of its rules, `dead_letter`: "none" has no spelling but leaving the
//!   key out;
//! - `reconcile.sample` when the file did not set it: its default follows the
//!   mode (1 in shadow, else 0.01), and writing the number would pin it.
//!
//! Routes come out longest prefix first, the order in which they match (not
//! necessarily the file's); compiling sorts them the same way again.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::model::{Contract, FallbackReason, LogTarget, Mode, Route, Settings, Side};

/// The effective config of `settings` and `routes`, as YAML a person reads
/// and `cutover check` accepts.
pub fn render(settings: &Settings, routes: &[&Route]) -> String {
    let mut out = Yaml::default();
    out.scalar(0, "version", "1");
    out.scalar(0, "consumer", &text(&settings.consumer));
    out.scalar(0, "risk", settings.risk.as_str());
    out.scalar(0, "listen", &text(&settings.listen.to_string()));
    out.scalar(0, "admin", &text(&settings.admin.to_string()));
    out.scalar(
        0,
        "shutdown_grace",
        &duration(settings.runtime.shutdown_grace),
    );
    out.scalar(
        0,
        "max_buffered_body",
        &settings.runtime.max_buffered_body.to_string(),
    );
    out.scalar(
        0,
        "max_spooled_body",
        &settings.runtime.max_spooled_body.to_string(),
    );
    out.map(0, "limits");
    out.scalar(2, "head_timeout", &duration(settings.runtime.head_timeout));
    out.scalar(2, "body_timeout", &duration(settings.runtime.body_timeout));
    let rt = &settings.runtime;
    out.scalar(2, "handshake_timeout", &duration(rt.handshake_timeout));
    out.scalar(2, "idle_timeout", &duration(rt.idle_timeout));
    out.scalar(2, "stream_idle_timeout", &duration(rt.stream_idle_timeout));
    out.scalar(2, "h2_ping_interval", &duration(rt.h2_ping_interval));
    out.scalar(2, "h2_ping_timeout", &duration(rt.h2_ping_timeout));
    out.scalar(2, "max_connections", &rt.max_connections.to_string());
    out.scalar(
        2,
        "admin_max_connections",
        &rt.admin_max_connections.to_string(),
    );
    out.scalar(2, "max_inflight_reads", &rt.max_inflight_reads.to_string());
    out.scalar(2, "max_compared_bytes", &rt.max_compared_bytes.to_string());
    out.scalar(2, "max_spooled_bytes", &rt.max_spooled_bytes.to_string());
    match &settings.state_file {
        // As written: a relative path is under --data-dir.
        Some(p) => out.scalar(0, "state_file", &text(&p.display().to_string())),
        None => out.unset(0, "state_file", "gate trips are kept in memory only"),
    }
    match &settings.access_log {
        None => out.unset(0, "access_log", "no access log"),
        Some(a) => {
            out.map(0, "access_log");
            let target = match &a.target {
                LogTarget::Stdout => "stdout".to_owned(),
                LogTarget::Stderr => "stderr".to_owned(),
                // As written: a relative path is under --data-dir, which
                // is the process's, not the file's.
                LogTarget::File(p) => text(&p.display().to_string()),
            };
            out.scalar(2, "path", &target);
            out.scalar(2, "sample", &number(a.sample));
        }
    }
    out.line(
        0,
        "# defaults: not written; every side below lists the settings that apply to it",
    );
    out.map(0, "routes");
    for route in routes {
        self::route(&mut out, route);
    }
    out.0
}

fn route(out: &mut Yaml, r: &Route) {
    // The list item's dash stands in the first key's indentation.
    out.line(2, &format!("- name: {}", text(&r.name)));
    let i = 4;
    out.scalar(i, "dataset", &text(&r.dataset));
    out.map(i, "match");
    out.scalar(i + 2, "path_prefix", &text(&r.prefix));
    out.list(i + 2, "methods", r.methods.iter().map(|m| text(m.as_str())));
    side(out, i, "batch", &r.batch);
    side(out, i, "streaming", &r.streaming);
    out.scalar(i, "mode", r.mode.as_str());

    out.map(i, "canary");
    out.scalar(i + 2, "percent", &number(r.canary.percent));
    match &r.canary.sticky_header {
        Some(h) => out.scalar(i + 2, "sticky_header", &text(h.as_str())),
        None => out.unset(
            i + 2,
            "sticky_header",
            "each object or listing is decided by its sequence",
        ),
    }

    out.map(i, "sequence");
    out.list(i + 2, "params", r.sequence.params.iter().map(|p| text(p)));
    out.scalar(i + 2, "pin_ttl", &duration(r.sequence.pin_ttl));
    out.scalar(i + 2, "max_pins", &r.sequence.max_pins.to_string());

    out.map(i, "fallback");
    let on = FallbackReason::ALL
        .iter()
        .filter(|reason| r.fallback.on.contains(**reason))
        .map(|reason| reason.as_str().to_owned());
    out.list(i + 2, "on", on);
    match r.fallback.max_staleness {
        Some(d) => out.scalar(i + 2, "max_staleness", &duration(d)),
        None => out.unset(i + 2, "max_staleness", "streaming data is never stale"),
    }
    out.map(i + 2, "circuit");
    out.scalar(i + 4, "failures", &r.fallback.circuit.failures.to_string());
    out.scalar(i + 4, "cooldown", &duration(r.fallback.circuit.cooldown));

    let f = &r.freshness;
    out.map(i, "freshness");
    out.scalar(i + 2, "header", &text(f.header.as_str()));
    out.scalar(
        i + 2,
        "last_modified",
        &f.last_modified_fallback.to_string(),
    );
    let probe = f.probe_interval.map_or_else(|| "off".to_owned(), duration);
    out.scalar(i + 2, "probe_interval", &probe);
    out.scalar(i + 2, "probe_method", &text(f.probe_method.as_str()));
    out.scalar(i + 2, "window", &duration(f.window));

    let c = &r.reconcile;
    out.map(i, "reconcile");
    if c.sample_explicit {
        out.scalar(i + 2, "sample", &number(c.sample));
    } else {
        let why = if r.mode == Mode::Shadow {
            "the default in shadow mode"
        } else {
            "the default outside shadow mode"
        };
        out.unset(
            i + 2,
            "sample",
            &format!("{}, {why} (it follows the mode)", number(c.sample)),
        );
    }
    out.scalar(i + 2, "records", &text(&c.records));
    match &c.key {
        Some(k) => out.scalar(i + 2, "key", &text(k)),
        None => out.unset(i + 2, "key", "records are compared in order"),
    }
    out.list(i + 2, "ignore", c.ignore.iter().map(|f| text(f)));
    out.scalar(i + 2, "numeric_tolerance", &number(c.numeric_tolerance));
    match &c.event_time_field {
        Some(e) => out.scalar(i + 2, "event_time", &text(e)),
        None => out.unset(i + 2, "event_time", "no divergence is classed as timing"),
    }
    match &c.divergence_log {
        // As written: a relative path is under --data-dir.
        Some(p) => out.scalar(i + 2, "divergence_log", &text(&p.display().to_string())),
        None => out.unset(i + 2, "divergence_log", "divergences are only counted"),
    }
    out.scalar(i + 2, "max_inflight", &c.max_inflight.to_string());
    out.scalar(i + 2, "max_body_bytes", &c.max_body_bytes.to_string());
    out.scalar(i + 2, "format", c.format.as_str());

    match &r.contract {
        Some(k) => contract(out, i, k),
        None => out.unset(i, "contract", "streaming's answers are not checked"),
    }

    let Some(g) = &r.gate else {
        out.unset(i, "gate", "no automatic rollback");
        return;
    };
    out.map(i, "gate");
    out.scalar(i + 2, "interval", &duration(g.interval));
    out.scalar(i + 2, "window", &duration(g.window));
    out.scalar(i + 2, "failures", &g.failures.to_string());
    out.scalar(i + 2, "min_reads", &g.min_reads.to_string());
    let ratio = |out: &mut Yaml, key: &str, v: Option<f64>| match v {
        Some(v) => out.scalar(i + 2, key, &number(v)),
        None => out.unset(i + 2, key, "not checked"),
    };
    ratio(out, "max_error_ratio_delta", g.max_error_ratio_delta);
    ratio(out, "max_fallback_ratio", g.max_fallback_ratio);
    ratio(out, "max_divergence_ratio", g.max_divergence_ratio);
    match g.max_streaming_age {
        Some(d) => out.scalar(i + 2, "max_streaming_age", &duration(d)),
        None => out.unset(i + 2, "max_streaming_age", "not checked"),
    }
    ratio(
        out,
        "max_contract_violation_ratio",
        g.max_contract_violation_ratio,
    );
    out.scalar(i + 2, "rollback_to", g.rollback_to.as_str());
}

/// A route's contract: each rule it has, an unset one as a comment (an
/// empty list would not compile: a rule's list names at least one field).
fn contract(out: &mut Yaml, i: usize, k: &Contract) {
    out.map(i, "contract");
    let j = i + 2;
    match &k.schema {
        Some(s) => out.scalar(j, "schema", &path(&s.path)),
        None => out.unset(j, "schema", "no schema rule"),
    }
    let fields = |out: &mut Yaml, key: &str, list: &[String]| {
        if list.is_empty() {
            out.unset(j, key, "no such rule");
        } else {
            out.list(j, key, list.iter().map(|f| text(f)));
        }
    };
    fields(out, "unique", &k.unique);
    let sorted: Vec<String> = k
        .sorted_by
        .iter()
        .map(|s| match s.descending {
            true => format!("-{}", s.field),
            false => s.field.clone(),
        })
        .collect();
    fields(out, "sorted_by", &sorted);
    fields(out, "not_null", &k.not_null);
    match &k.complete {
        Some(c) => {
            out.map(j, "complete");
            out.scalar(j + 2, "event_time", &text(&c.event_time));
            out.scalar(j + 2, "from", &text(&c.from));
            out.scalar(j + 2, "to", &text(&c.to));
            out.scalar(j + 2, "tolerance", &duration(c.tolerance));
        }
        None => out.unset(j, "complete", "no such rule"),
    }
    out.scalar(j, "on_violation", k.on_violation.as_str());
    out.scalar(j, "max_body_bytes", &k.max_body_bytes.to_string());
    out.scalar(j, "sample", &number(k.sample));
    match &k.dead_letter {
        // As written: a relative path is under --data-dir.
        Some(p) => out.scalar(j, "dead_letter", &text(&p.display().to_string())),
        None => out.unset(j, "dead_letter", "violations are only counted"),
    }
}

/// A side, always as a map (never the bare-URL form) so every setting shows.
fn side(out: &mut Yaml, i: usize, which: &str, s: &Side) {
    out.map(i, which);
    out.scalar(i + 2, "url", &text(&s.base_url()));
    out.scalar(i + 2, "connect_timeout", &duration(s.connect_timeout));
    out.scalar(i + 2, "timeout", &duration(s.timeout));
    match s.max_inflight {
        Some(n) => out.scalar(i + 2, "max_inflight", &n.to_string()),
        None => out.unset(i + 2, "max_inflight", "unlimited"),
    }
    match &s.ca_file {
        Some(p) => out.scalar(i + 2, "ca_file", &path(p)),
        None => out.unset(i + 2, "ca_file", "the default trust anchors only"),
    }
}

/// YAML text, built line by line so that unset keys can be comments.
#[derive(Default)]
struct Yaml(String);

impl Yaml {
    fn line(&mut self, indent: usize, s: &str) {
        let _ = writeln!(self.0, "{:indent$}{s}", "");
    }

    /// `key: value`; `value` is already YAML (see `text`).
    fn scalar(&mut self, indent: usize, key: &str, value: &str) {
        self.line(indent, &format!("{key}: {value}"));
    }

    /// `key:` opening a nested map.
    fn map(&mut self, indent: usize, key: &str) {
        self.line(indent, &format!("{key}:"));
    }

    /// `key: [a, b]`; items are already YAML.
    fn list(&mut self, indent: usize, key: &str, items: impl Iterator<Item = String>) {
        let items: Vec<String> = items.collect();
        self.line(indent, &format!("{key}: [{}]", items.join(", ")));
    }

    /// A key whose value has no spelling: a comment saying what applies.
    fn unset(&mut self, indent: usize, key: &str, what_applies: &str) {
        self.line(indent, &format!("# {key} not set: {what_applies}"));
    }
}

/// A string as a YAML scalar: plain where that reads back as the same
/// string, quoted where it would not (`'true'`, `'1'`, `': x'`...).
fn text(s: &str) -> String {
    // serde_yaml writes a string with a line break or a control character
    // as a block scalar, whose indentation would be relative to column 0;
    // a JSON string is also a valid YAML flow scalar and stays on one line.
    if s.chars().any(char::is_control) {
        return serde_json::to_string(s).unwrap_or_else(|_| "''".to_owned());
    }
    match serde_yaml::to_string(s) {
        Ok(y) => y.trim_end_matches('\n').to_owned(),
        Err(_) => serde_json::to_string(s).unwrap_or_else(|_| "''".to_owned()),
    }
}

/// A number as the config writes it: Rust's shortest text that reads back
/// as the same `f64` (`10`, `12.5`, `0.0001`).
fn number(v: f64) -> String {
    format!("{v}")
}

/// A duration in the largest unit that states it exactly: `250ms`, `2s`,
/// `5m`, `1h`. Configs are read in whole milliseconds, so nothing finer
/// than a millisecond can be in a compiled value.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_owned()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A path as an absolute path: compile joins relative paths to the config
/// file's directory, and the rendered text may be compiled from anywhere.
/// A path that is not UTF-8 cannot be written exactly; it shows lossily.
fn path(p: &Path) -> String {
    let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    text(&absolute.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::super::raw::{Field, Shape, TOP_KEYS};
    use super::*;
    use crate::config::{Compiled, compile_str};
    use serde_yaml::Value;

    fn rendered(c: &Compiled) -> String {
        let routes: Vec<&Route> = c.routes.iter().collect();
        render(&c.settings, &routes)
    }

    /// Compiles `text`, renders it, compiles the rendering, and checks the
    /// two compiled configs are the same. The model types have no
    /// `PartialEq` (nothing else needs one); their `Debug` text shows every
    /// field, floats in their shortest exact form, so equal text is equal
    /// values.
    fn round_trip(path: &Path, text: &str) -> String {
        let first = compile_str(path, text, 1).unwrap_or_else(|e| panic!("{e}"));
        let out = rendered(&first);
        let elsewhere = Path::new("/nonexistent/elsewhere/effective.yaml");
        let second = compile_str(elsewhere, &out, 1)
            .unwrap_or_else(|e| panic!("the rendering does not compile:\n{e}\n{out}"));
        assert_eq!(format!("{first:#?}"), format!("{second:#?}"), "{out}");
        out
    }

    #[test]
    fn every_shipped_config_round_trips() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("config/ is readable") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            round_trip(&path, &text);
            seen += 1;
        }
        assert!(seen >= 2, "config/ has the reference and the phases");
    }

    #[test]
    fn defaults_are_filled_in_and_unset_keys_say_what_applies() {
        let text = "version: 1\nconsumer: dash\nroutes:\n  - name: orders\n    match: { path_prefix: /v1/orders/ }\n    batch: http://127.0.0.1:7001/t/\n    streaming: 'http://127.0.0.1:7002/s?fmt=json'\n    mode: shadow\n";
        let out = round_trip(Path::new("/etc/cutover/c.yaml"), text);
        for line in [
            "listen: 127.0.0.1:8080",
            "admin: 127.0.0.1:9901",
            "shutdown_grace: 10s",
            "max_buffered_body: 65536",
            "max_spooled_body: 16777216",
            "  max_spooled_bytes: 67108864",
            "      path_prefix: /v1/orders",
            "      methods: [GET, HEAD]",
            "      url: http://127.0.0.1:7001/t",
            "      connect_timeout: 250ms",
            "      # max_inflight not set: unlimited",
            "      on: [connect, timeout, 5xx, stale, overflow, circuit]",
            "        failures: 5",
            "        cooldown: 30s",
            "      header: x-data-watermark",
            "      probe_interval: 30s",
            "      window: 5m",
            "      # sample not set: 1, the default in shadow mode (it follows the mode)",
            "      records: ''",
            "      max_body_bytes: 8388608",
            "      format: auto",
        ] {
            assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
        }
        assert!(out.contains("fmt=json"), "{out}");
        // Each side's own default (SPEC 1.2): batch's first, then streaming's.
        let timeouts: Vec<&str> = out
            .lines()
            .filter(|l| l.trim_start().starts_with("timeout:"))
            .collect();
        assert_eq!(
            timeouts,
            ["      timeout: 1m", "      timeout: 2s"],
            "{out}"
        );
    }

    #[test]
    fn awkward_values_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).expect("write ca");
        let text = "\
version: 1
consumer: 'null'
risk: high
listen: 127.0.0.1:0
admin: '[::1]:0'
shutdown_grace: 0s
max_buffered_body: 0
defaults: { max_inflight: 7, ca_file: ca.pem }
routes:
  - name: 'true'
    dataset: '1'
    match: { path_prefix: /, methods: [POST] }
    batch: { url: 'https://b.example/', timeout: 1500ms }
    streaming: { url: 'http://s:81', connect_timeout: 90m }
    mode: canary
    canary: { percent: 0.5, sticky_header: X-Customer }
    fallback: { on: [], max_staleness: 2h, circuit: { failures: 0, cooldown: 61s } }
    freshness: { header: X-Wm, last_modified: false, probe_interval: off, probe_method: GET, window: 30s }
    reconcile:
      sample: 0
      records: /a~1b/c~0d
      key: 'id: x'
      ignore: [a, 'b c', '#']
      numeric_tolerance: 0.0000001
      event_time: ts
      divergence_log: logs/div.jsonl
      max_inflight: 1
      max_body_bytes: 1
";
        round_trip(&dir.path().join("c.yaml"), text);
    }

    #[test]
    fn a_contract_round_trips_and_its_schema_is_written_absolute() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("orders.schema.json"),
            r#"{"properties": {"id": {"$ref": "common.json"}}}"#,
        )
        .expect("write schema");
        std::fs::write(dir.path().join("common.json"), r#"{"type": "string"}"#)
            .expect("write common");
        let text = "\
version: 1
consumer: dash
routes:
  - name: orders
    match: { path_prefix: /v1/orders }
    batch: http://b/
    streaming: http://s/
    mode: streaming
    gate: { max_contract_violation_ratio: 0.5 }
    contract:
      schema: orders.schema.json
      sorted_by: [-updated_at, id]
      complete: { event_time: ts, from: start, to: end, tolerance: 90s }
      on_violation: fallback
      sample: 0.5
";
        let out = round_trip(&dir.path().join("c.yaml"), text);
        let schema = dir.path().join("orders.schema.json");
        for line in [
            format!("      schema: {}", schema.display()),
            "      # unique not set: no such rule".to_owned(),
            "      sorted_by: [-updated_at, id]".to_owned(),
            "        tolerance: 90s".to_owned(),
            "      on_violation: fallback".to_owned(),
            "      max_body_bytes: 1048576".to_owned(),
            "      sample: 0.5".to_owned(),
            "      # dead_letter not set: violations are only counted".to_owned(),
            "      max_contract_violation_ratio: 0.5".to_owned(),
        ] {
            assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
        }
    }

    /// The gate's last threshold and a contract with every key, spliced in
    /// after the reference's `gate` (the reference itself has neither yet).
    const CONTRACT_AND_RATIO: &str = "      max_contract_violation_ratio: 0.01
      rollback_to: batch
    contract:
      schema: orders.schema.json
      unique: [id]
      sorted_by: [-updated_at]
      not_null: [id]
      complete: { event_time: updated_at, from: start, to: end }
      dead_letter: contract.jsonl";

    /// Every key the config knows (the tables in `raw`) is written, so a key
    /// added there cannot be forgotten here. `defaults` is the one exception:
    /// its values are in every side.
    #[test]
    fn every_known_key_is_written() {
        fn walk(shape: &Shape, v: &Value, at: &str, missing: &mut Vec<String>) {
            match (shape, v) {
                (Shape::Map(fields) | Shape::ScalarOrMap(fields), Value::Mapping(m)) => {
                    for Field { key, shape } in fields.iter() {
                        let here = format!("{at}.{key}");
                        match m.get(*key) {
                            Some(v) => walk(shape, v, &here, missing),
                            None if here == ".defaults" => {}
                            None => missing.push(here),
                        }
                    }
                }
                (Shape::Seq(item), Value::Sequence(items)) => {
                    for (i, v) in items.iter().enumerate() {
                        walk(item, v, &format!("{at}[{i}]"), missing);
                    }
                }
                _ => {}
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).expect("write ca");
        // Every optional value set, so that nothing is a comment.
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/reference.yaml"),
        )
        .expect("reference config")
        .replace("# ca_file: internal-ca.pem ", "ca_file: ca.pem ")
        .replace("      rollback_to: batch", CONTRACT_AND_RATIO);
        std::fs::write(
            dir.path().join("orders.schema.json"),
            r#"{"type": "object"}"#,
        )
        .expect("write schema");
        let c = compile_str(&dir.path().join("c.yaml"), &text, 1).unwrap_or_else(|e| panic!("{e}"));
        // The reference's other route leaves optional values unset on purpose.
        let orders: Vec<&Route> = c.routes.iter().filter(|r| r.name == "orders").collect();
        let out = render(&c.settings, &orders);
        let value: Value = serde_yaml::from_str(&out).expect("the rendering is YAML");
        let mut missing = Vec::new();
        walk(&Shape::Map(TOP_KEYS), &value, "", &mut missing);
        assert!(missing.is_empty(), "not written: {missing:?}\n{out}");
    }
}
