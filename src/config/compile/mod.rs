//! Compiles the raw config into typed values, collecting every problem in
//! the file (not just the first) and placing each at its line and column.
//!
//! One file per section of the config, each with the defaults of the keys
//! it owns and its tests: `top` (the file's own keys and the route list),
//! `limits` (runtime settings), `route` (match, canary, fallback,
//! freshness), `side`, `reconcile`, `gate`, `sequence`, `contract` (and
//! its JSON Schema, with `json_locate` to place errors in it), and `scalars`
//! (the `parse_*` functions every section uses). This file holds the pass
//! itself (`Cx`) and what comes before it (nesting depth, YAML syntax).

mod contract;
mod gate;
mod json_locate;
mod limits;
mod reconcile;
mod route;
mod scalars;
mod sequence;
mod side;
mod top;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::locate::{Problems, Target, YamlPath};
use super::model::*;
use super::raw;
use super::{ConfigError, ConfigErrors};

/// Parses, validates and compiles `text` (the file at `path`). On failure,
/// every problem found, each with its line and column, in file order.
/// Not pure: each `ca_file` is read (relative to `path`'s directory) to
/// check it holds a certificate, and each `contract.schema` (and the local
/// files its `$ref`s name) is read and compiled, so the same text can
/// compile in one place and not in another. Nothing else is read, and
/// nothing is changed. Errors inside a schema file name that file.
pub(super) fn compile(path: &Path, text: &str, generation: u64) -> Result<Compiled, ConfigErrors> {
    if let Some(e) = too_deep(path, text) {
        return Err(ConfigErrors(vec![e]));
    }
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(ConfigErrors(vec![syntax_error(path, text, &e)])),
    };
    let mut cx = Cx {
        text,
        dir: path.parent().map(Path::to_owned).unwrap_or_default(),
        problems: Problems::default(),
        warnings: Problems::default(),
        schema_errors: Vec::new(),
    };
    let draft = raw::parse(value, &mut cx.problems).and_then(|raw| cx.config(&raw));
    match draft {
        Some(draft) if cx.problems.is_empty() && cx.schema_errors.is_empty() => {
            let warnings = cx.warnings.into_errors(path, text);
            Ok(draft.finish(generation, warnings))
        }
        _ => {
            // The config's own errors in file order, then those inside
            // schema files (each naming its file) in the order found.
            let mut errors = cx.problems.into_errors(path, text);
            errors.extend(cx.schema_errors);
            Err(ConfigErrors(errors))
        }
    }
}

/// Flow collections (`{`, `[`) nested deeper than any config needs. Found
/// before parsing: the YAML parser and the locator each take time that
/// grows with depth, and a 200 KB file of `{a: {a: ...}}` took seconds.
const MAX_FLOW_DEPTH: usize = 64;

/// Where a file nests flow collections past `MAX_FLOW_DEPTH`, if it does.
/// Quoted strings and comments are skipped; a bracket there is text.
fn too_deep(path: &Path, text: &str) -> Option<ConfigError> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = '\n';
    for c in text.chars() {
        column += 1;
        match (quote, c) {
            (_, '\n') => {
                line += 1;
                column = 0;
                comment = false;
            }
            _ if comment => {}
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            // A quote opens a quoted scalar only where a scalar starts (an
            // apostrophe inside `it's` is text, and must not hide what follows).
            (None, '\'' | '"')
                if matches!(prev, ' ' | '\t' | '\n' | ':' | ',' | '[' | '{' | '-') =>
            {
                quote = Some(c)
            }
            (None, '#') if prev.is_whitespace() => comment = true,
            (None, '{' | '[') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(ConfigError {
                        file: path.to_owned(),
                        line,
                        column,
                        message: format!(
                            "nested more than {MAX_FLOW_DEPTH} levels deep: no cutover config needs that"
                        ),
                    });
                }
            }
            (None, '}' | ']') => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    None
}

fn syntax_error(path: &Path, text: &str, e: &serde_yaml::Error) -> ConfigError {
    let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
    // serde_yaml repeats the position in its message; it is already in front.
    let message = e
        .to_string()
        .replacen(&format!(" at line {line} column {column}"), "", 1);
    // serde_yaml places a repeated key at the start of its map; point at the key.
    let (line, column) = if message.contains("duplicate entry with key") {
        super::locate::duplicate_key(text).unwrap_or((line, column))
    } else {
        (line, column)
    };
    ConfigError {
        file: path.to_owned(),
        line,
        column,
        message: format!("YAML syntax error: {message}"),
    }
}

/// A compiled config before it is numbered and its routes ordered.
struct Draft {
    consumer: String,
    risk: Risk,
    listen: SocketAddr,
    admin: SocketAddr,
    runtime: RuntimeSettings,
    access_log: Option<AccessLogSettings>,
    state_file: Option<PathBuf>,
    routes: Vec<Route>,
}

impl Draft {
    fn finish(self, generation: u64, warnings: Vec<ConfigError>) -> Compiled {
        let mut routes = self.routes;
        // Stable: equal lengths keep file order (equal prefixes are rejected).
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Compiled {
            settings: Settings {
                generation,
                consumer: self.consumer,
                risk: self.risk,
                listen: self.listen,
                admin: self.admin,
                runtime: self.runtime,
                access_log: self.access_log,
                state_file: self.state_file,
            },
            routes,
            warnings,
        }
    }
}

/// The compile pass: where the file is, and what is wrong with it so far.
struct Cx<'a> {
    text: &'a str,
    /// Relative `ca_file` paths start here (the config's directory).
    dir: PathBuf,
    problems: Problems,
    /// Allowed but probably not meant; never stop the config applying.
    warnings: Problems,
    /// Errors inside a `contract.schema` file (or a file it references),
    /// already placed in that file.
    schema_errors: Vec<ConfigError>,
}

impl Cx<'_> {
    fn error(&mut self, at: &YamlPath, message: impl Into<String>) {
        self.problems.push(at, Target::Value, message);
    }

    /// Reports a required key as missing, unless its value was already
    /// reported (and dropped) for being the wrong kind.
    fn missing(&mut self, at: &YamlPath, message: impl Into<String>) {
        if !self.problems.reported_at(at) {
            self.problems.push(at, Target::Key, message);
        }
    }

    /// Parses an optional leaf: `None` when absent or bad (bad is reported).
    fn parse<T>(
        &mut self,
        value: &Option<String>,
        at: &YamlPath,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = value.as_deref()?;
        match parse(text) {
            Ok(v) => Some(v),
            Err(message) => {
                self.error(at, message);
                None
            }
        }
    }

    /// A name that becomes a metric label value: short, and of characters
    /// every dashboard and query language takes as they are.
    fn label(&mut self, at: &YamlPath, what: &str, value: &str) -> Option<String> {
        let ok_char =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/');
        if value.len() > MAX_LABEL_LEN {
            self.error(
                at,
                format!(
                    "{what} is {} bytes long: at most {MAX_LABEL_LEN} (it is a metric label)",
                    value.len()
                ),
            );
            return None;
        }
        if let Some(bad) = value.chars().find(|c| !ok_char(*c)) {
            self.error(
                at,
                format!("{what} `{value}` has {bad:?}: use letters, digits and - _ . : / (it is a metric label)"),
            );
            return None;
        }
        Some(value.to_owned())
    }
}

/// The longest consumer, route or dataset name: a label value, not a novel
/// (a 100 KB consumer name once made `/metrics` 15 MB).
const MAX_LABEL_LEN: usize = 128;

#[cfg(test)]
mod fixtures {
    use std::path::Path;

    use super::super::ConfigErrors;
    use super::super::model::Compiled;
    use super::compile;

    pub(super) fn compile_text(text: &str) -> Result<Compiled, ConfigErrors> {
        compile(Path::new("/etc/cutover/c.yaml"), text, 7)
    }

    pub(super) fn ok(text: &str) -> Compiled {
        compile_text(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Each error as `LINE:COLUMN: message`.
    pub(super) fn errors(text: &str) -> Vec<String> {
        match compile_text(text) {
            Ok(_) => panic!("config was accepted"),
            Err(e) => {
                e.0.iter()
                    .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                    .collect()
            }
        }
    }

    pub(super) const MINIMAL: &str = "\
version: 1
consumer: dash
routes:
  - name: orders
    match: { path_prefix: /v1/orders/ }
    batch: http://127.0.0.1:7001/tables/orders/
    streaming: https://stream.internal:8443/v1/orders?fmt=json
";
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use http::Method;

    use super::fixtures::{MINIMAL, compile_text, errors, ok};
    use super::*;

    #[test]
    fn deep_nesting_is_refused_quickly_and_located() {
        let deep = format!(
            "version: 1\nconsumer: {}x{}\n",
            "{a: ".repeat(40_000),
            "}".repeat(40_000)
        );
        let started = std::time::Instant::now();
        let errs = errors(&deep);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(errs.len(), 1);
        let col = 11 + 4 * MAX_FLOW_DEPTH;
        assert!(
            errs[0].starts_with(&format!("2:{col}: nested more than 64")),
            "{errs:?}"
        );
        // Brackets in quotes and comments are text.
        let quoted = format!("{MINIMAL}# {}\n", "[".repeat(200));
        assert!(compile_text(&quoted).is_ok());
        // An apostrophe in plain text does not hide nesting after it.
        let sneaky = format!("version: 1\nrisk: it's\nconsumer: {}x\n", "[".repeat(100));
        assert!(
            errors(&sneaky)[0].starts_with("3:"),
            "{:?}",
            errors(&sneaky)
        );
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = ok(MINIMAL);
        assert_eq!(c.settings.generation, 7);
        assert_eq!(c.settings.consumer, "dash");
        assert_eq!(c.settings.risk, Risk::Low);
        assert_eq!(c.settings.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.settings.admin, "127.0.0.1:9901".parse().unwrap());
        assert_eq!(c.settings.runtime.shutdown_grace, Duration::from_secs(10));
        assert_eq!(c.settings.runtime.max_buffered_body, 65536);
        let r = &c.routes[0];
        assert_eq!(r.prefix, "/v1/orders");
        assert!(r.methods.contains(&Method::GET) && r.methods.contains(&Method::HEAD));
        assert!(!r.methods.contains(&Method::POST));
        assert_eq!(r.mode, Mode::Batch);
        assert_eq!(r.batch.connect_timeout, Duration::from_millis(250));
        // SPEC 1.2: batch waits as nginx does, streaming stays short.
        assert_eq!(r.batch.timeout, Duration::from_secs(60));
        assert_eq!(r.streaming.timeout, Duration::from_secs(2));
        assert_eq!(r.batch.max_inflight, None);
        assert_eq!(r.batch.ca_file, None);
        assert_eq!(r.batch.base_url(), "http://127.0.0.1:7001/tables/orders");
        assert_eq!(r.streaming.base_path, "/v1/orders");
        assert_eq!(r.streaming.base_query.as_deref(), Some("fmt=json"));
        assert_eq!(r.streaming.base_path_and_query(), "/v1/orders?fmt=json");
        assert_eq!(r.batch.base_path_and_query(), "/tables/orders");
        assert_eq!(r.canary.percent, 0.0);
        assert!(r.canary.sticky_header.is_none());
        assert_eq!(r.fallback.on, ReasonSet::all());
        assert_eq!(r.fallback.max_staleness, None);
        assert_eq!(r.fallback.circuit.failures, 5);
        assert_eq!(r.fallback.circuit.cooldown, Duration::from_secs(30));
        assert_eq!(r.freshness.header.as_str(), "x-data-watermark");
        assert!(r.freshness.last_modified_fallback);
        assert_eq!(r.freshness.probe_interval, Some(Duration::from_secs(30)));
        assert_eq!(r.freshness.probe_method, Method::HEAD);
        assert_eq!(r.freshness.window, Duration::from_secs(300));
        assert_eq!(r.reconcile.sample, 0.01);
        assert!(!r.reconcile.sample_explicit);
        assert_eq!(r.reconcile.records, "");
        assert_eq!(r.reconcile.key, None);
        assert!(r.reconcile.ignore.is_empty());
        assert_eq!(r.reconcile.numeric_tolerance, 0.0);
        assert_eq!(r.reconcile.event_time_field, None);
        assert_eq!(r.reconcile.divergence_log, None);
        assert_eq!(r.reconcile.max_inflight, 32);
        assert_eq!(r.reconcile.max_body_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn sides_override_defaults() {
        let c = ok("\
version: 1
consumer: dash
risk: high
listen: 127.0.0.1:0
admin: 127.0.0.1:0
shutdown_grace: 3s
max_buffered_body: 1024
defaults: { connect_timeout: 100ms, timeout: 1s, max_inflight: 64 }
routes:
  - name: orders
    match: { path_prefix: /v1/orders, methods: [GET, POST] }
    batch: { url: 'http://127.0.0.1:7001/t', timeout: 5s }
    streaming: { url: 'http://127.0.0.1:7002/s', connect_timeout: 50ms, max_inflight: 512 }
    mode: canary
    canary: { percent: 12.5, sticky_header: X-Customer-Id }
    fallback: { on: [connect, 5xx], max_staleness: 10m, circuit: { failures: 0, cooldown: 1m } }
    freshness: { header: X-Watermark, last_modified: false, probe_interval: off, probe_method: GET, window: 1m }
    reconcile:
      records: /data
      key: id
      ignore: [ingested_at]
      numeric_tolerance: 0.0001
      event_time: ts
      divergence_log: logs/div.jsonl
      max_inflight: 4
      max_body_bytes: 1000
");
        assert_eq!(c.settings.risk, Risk::High);
        assert_eq!(c.settings.runtime.shutdown_grace, Duration::from_secs(3));
        assert_eq!(c.settings.runtime.max_buffered_body, 1024);
        let r = &c.routes[0];
        assert!(r.methods.contains(&Method::POST) && !r.methods.contains(&Method::HEAD));
        assert_eq!(r.batch.connect_timeout, Duration::from_millis(100));
        assert_eq!(r.batch.timeout, Duration::from_secs(5));
        assert_eq!(r.batch.max_inflight, Some(64));
        assert_eq!(r.streaming.connect_timeout, Duration::from_millis(50));
        assert_eq!(r.streaming.timeout, Duration::from_secs(1));
        assert_eq!(r.streaming.max_inflight, Some(512));
        assert_eq!(r.mode, Mode::Canary);
        assert_eq!(r.canary.percent, 12.5);
        assert_eq!(
            r.canary.sticky_header.as_ref().unwrap().as_str(),
            "x-customer-id"
        );
        assert!(r.fallback.on.contains(FallbackReason::Status5xx));
        assert!(!r.fallback.on.contains(FallbackReason::Stale));
        assert_eq!(r.fallback.max_staleness, Some(Duration::from_secs(600)));
        assert_eq!(r.fallback.circuit.failures, 0);
        assert_eq!(r.fallback.circuit.cooldown, Duration::from_secs(60));
        assert_eq!(r.freshness.header.as_str(), "x-watermark");
        assert!(!r.freshness.last_modified_fallback);
        assert_eq!(r.freshness.probe_interval, None);
        assert_eq!(r.freshness.probe_method, Method::GET);
        assert_eq!(r.freshness.window, Duration::from_secs(60));
        assert_eq!(r.reconcile.records, "/data");
        assert_eq!(r.reconcile.key.as_deref(), Some("id"));
        assert_eq!(r.reconcile.ignore, vec!["ingested_at".to_owned()]);
        assert_eq!(r.reconcile.numeric_tolerance, 0.0001);
        assert_eq!(r.reconcile.event_time_field.as_deref(), Some("ts"));
        assert_eq!(
            r.reconcile.divergence_log.as_deref(),
            Some(Path::new("logs/div.jsonl")),
            "relative to the data directory, not the config's"
        );
        assert_eq!(r.reconcile.max_inflight, 4);
        assert_eq!(r.reconcile.max_body_bytes, 1000);
    }

    #[test]
    fn routes_are_sorted_longest_prefix_first() {
        let c = ok("\
version: 1
consumer: dash
routes:
  - { name: root, match: { path_prefix: / }, batch: 'http://b/', streaming: 'http://s/' }
  - { name: orders, match: { path_prefix: /v1/orders }, batch: 'http://b/', streaming: 'http://s/' }
  - { name: v1, match: { path_prefix: /v1 }, batch: 'http://b/', streaming: 'http://s/' }
  - { name: late, match: { path_prefix: /v1/orders/late }, batch: 'http://b/', streaming: 'http://s/' }
");
        let names: Vec<_> = c.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["late", "orders", "v1", "root"]);
    }

    #[test]
    fn every_error_is_reported_at_its_place() {
        let text = "\
version: 1
consumer: dash
routes:
  - name: orders
    match:
      path_prefix: /v1/orders
    batch: http://127.0.0.1:7001/t
    streaming:
      url: http://127.0.0.1:7002/s
      timout: 300ms
    mode: stream
  - name: orders
    match: { path_prefix: /v1/refunds }
    batch:
      url: ftp://127.0.0.1/x
      timeout: 2 secs
    streaming: http://127.0.0.1:7002/r
  - name: payments
    batch: http://127.0.0.1:7001/p
    streaming: http://127.0.0.1:7002/p
    canary: { percent: abc }
";
        assert_eq!(
            errors(text),
            [
                "10:7: unknown key `timout` (expected one of: url, connect_timeout, timeout, max_inflight, ca_file)",
                "11:11: unknown mode `stream` (expected batch, shadow, canary, streaming or streaming_only)",
                "12:11: duplicate route name `orders` (first defined at 4:11)",
                "15:12: bad URL `ftp://127.0.0.1/x`: scheme `ftp` is not http or https",
                "16:16: bad duration `2 secs`: expected a number and a unit (ms, s, m, h), e.g. 250ms",
                "18:5: route has no `match` (e.g. match: { path_prefix: /v1/orders })",
                "21:24: expected a number, found `abc`",
            ]
        );
    }

    #[test]
    fn yaml_syntax_errors_are_located() {
        let errs = errors("version: 1\nroutes:\n  - name: [a\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("YAML syntax error"), "{errs:?}");
        assert!(!errs[0].starts_with("1:1:"), "{errs:?}");
    }

    #[test]
    fn a_repeated_key_is_placed_at_its_second_use() {
        assert_eq!(
            errors("version: 1\nconsumer: a\nroutes: []\nconsumer: b\n"),
            ["4:1: YAML syntax error: duplicate entry with key \"consumer\""]
        );
        // Inside a route too, not at the route's start.
        let nested = format!("{MINIMAL}    mode: batch\n    mode: streaming\n");
        let errs = errors(&nested);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "9:5: YAML syntax error: routes[0]: duplicate entry with key \"mode\""
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn a_key_indented_out_of_its_block_says_where_it_belongs() {
        let text = format!("{MINIMAL}    fallback:\n    on: [connect]\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("9:5: unknown key `on`"), "{errs:?}");
        assert!(
            errs[0].ends_with(
                "`on` belongs in `fallback`, which is empty above: indent it under `fallback:`"
            ),
            "{errs:?}"
        );
    }
}
