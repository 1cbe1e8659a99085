//! Compiles the raw config into typed values, collecting every problem in
//! the file (not just the first) and placing each at its line and column.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use http::uri::{Authority, Scheme};
use http::{Method, Uri};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::locate::{Problems, Target, YamlPath, locate};
use super::model::*;
use super::raw::{
    self, RawAccessLog, RawConfig, RawDefaults, RawGate, RawLimits, RawRoute, RawSequence, RawSide,
    RawSideMap,
};
use super::{ConfigError, ConfigErrors};

pub(super) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub(super) const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
pub(super) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub(super) const DEFAULT_MAX_BUFFERED_BODY: usize = 64 * 1024;
/// SPEC 1.2: a POST query up to this can still fall back or be shadowed.
pub(super) const DEFAULT_MAX_SPOOLED_BODY: usize = 16 * 1024 * 1024;
/// Four bodies at the default `max_spooled_body`: inside the 128 MiB
/// emptyDir of deploy/kubernetes beside the divergence logs.
pub(super) const DEFAULT_MAX_SPOOLED_BYTES: usize = 64 * 1024 * 1024;
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Batch's `timeout` when neither the side nor `defaults` sets one: nginx's
/// `proxy_read_timeout`, so a slow warehouse query that answers directly
/// answers through cutover in batch mode too (SPEC 1.2).
pub(super) const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Streaming's: it must answer fast, and batch is there when it does not.
pub(super) const DEFAULT_STREAMING_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const DEFAULT_CIRCUIT_FAILURES: u32 = 5;
pub(super) const DEFAULT_CIRCUIT_COOLDOWN: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_WATERMARK_HEADER: &str = "x-data-watermark";
/// As nginx's `client_header_timeout` and hyper's default.
pub(super) const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// As nginx's `client_body_timeout`.
pub(super) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// A local consumer shows its protocol in its first packet.
pub(super) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// As nginx's `keepalive_timeout` (75 s), rounded.
pub(super) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_H2_PING_INTERVAL: Duration = Duration::from_secs(20);
pub(super) const DEFAULT_H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// About 25 MiB of idle HTTP/1 connections: inside a 64 MiB sidecar limit.
pub(super) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub(super) const DEFAULT_MAX_INFLIGHT_READS: usize = 1024;
/// Two whole answers at the default `reconcile.max_body_bytes`.
pub(super) const DEFAULT_MAX_COMPARED_BYTES: usize = 16 * 1024 * 1024;
pub(super) const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
pub(super) const MIN_WINDOW: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_SHADOW_SAMPLE: f64 = 1.0;
pub(super) const DEFAULT_SAMPLE: f64 = 0.01;
pub(super) const DEFAULT_RECONCILE_INFLIGHT: usize = 32;
pub(super) const DEFAULT_RECONCILE_BODY: usize = 8 * 1024 * 1024;
pub(super) const DEFAULT_GATE_INTERVAL: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_GATE_FAILURES: u32 = 3;
pub(super) const DEFAULT_GATE_MIN_READS: u64 = 100;
/// The query parameters that continue a listing, as common APIs name them
/// (cursor and token paging, offset and page numbers, S3's markers).
pub(super) const DEFAULT_SEQUENCE_PARAMS: &[&str] = &[
    "cursor",
    "page",
    "page_token",
    "offset",
    "next",
    "marker",
    "continuation",
    "start_after",
    "after",
];
pub(super) const DEFAULT_PIN_TTL: Duration = Duration::from_secs(10 * 60);
pub(super) const DEFAULT_MAX_PINS: usize = 10_000;

/// Parses, validates and compiles `text` (the file at `path`). On failure,
/// every problem found, each with its line and column, in file order. Pure:
/// nothing outside the returned value is read or changed.
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
    };
    let draft = raw::parse(value, &mut cx.problems).and_then(|raw| cx.config(&raw));
    match draft {
        Some(draft) if cx.problems.is_empty() => {
            let warnings = cx.warnings.into_errors(path, text);
            Ok(draft.finish(generation, warnings))
        }
        _ => Err(ConfigErrors(cx.problems.into_errors(path, text))),
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

/// Side settings from `defaults`, already parsed.
#[derive(Default)]
struct SideDefaults {
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    max_inflight: Option<usize>,
    ca_file: Option<PathBuf>,
}

/// The compile pass: where the file is, and what is wrong with it so far.
struct Cx<'a> {
    text: &'a str,
    /// Relative `ca_file` paths start here (the config's directory).
    dir: PathBuf,
    problems: Problems,
    /// Allowed but probably not meant; never stop the config applying.
    warnings: Problems,
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

    fn config(&mut self, raw: &RawConfig) -> Option<Draft> {
        let top = YamlPath::root();
        match raw.version.as_deref() {
            None => self.missing(&top.key("version"), "missing `version: 1`"),
            Some("1") => {}
            Some(v) => self.error(
                &top.key("version"),
                format!("unsupported version `{v}`: this cutover reads version 1"),
            ),
        }
        let consumer = match raw.consumer.as_deref().map(str::trim) {
            None => {
                self.missing(
                    &top.key("consumer"),
                    "missing `consumer`: name the consumer behind this sidecar",
                );
                None
            }
            Some("") => {
                self.error(&top.key("consumer"), "`consumer` is empty");
                None
            }
            Some(c) => self.label(&top.key("consumer"), "consumer", c),
        };
        let risk = self.parse(&raw.risk, &top.key("risk"), parse_risk);
        let listen = self.parse(&raw.listen, &top.key("listen"), parse_addr);
        let admin = self.parse(&raw.admin, &top.key("admin"), parse_addr);
        let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let admin = admin.unwrap_or_else(|| DEFAULT_ADMIN.parse().expect("valid default"));
        if same_socket(listen, admin) {
            let at = if raw.admin.is_some() {
                top.key("admin")
            } else {
                top.key("listen")
            };
            self.error(
                &at,
                format!("admin {admin} and listen {listen} share a port: give admin another port"),
            );
        }
        let shutdown_grace = self
            .parse(
                &raw.shutdown_grace,
                &top.key("shutdown_grace"),
                parse_duration,
            )
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        let max_buffered_body = self
            .parse(&raw.max_buffered_body, &top.key("max_buffered_body"), |s| {
                parse_count(s, 0)
            })
            .unwrap_or(DEFAULT_MAX_BUFFERED_BODY);
        let max_spooled_body = self
            .parse(&raw.max_spooled_body, &top.key("max_spooled_body"), |s| {
                parse_count(s, 0)
            })
            .unwrap_or(DEFAULT_MAX_SPOOLED_BODY);
        let state_file = self.parse(&raw.state_file, &top.key("state_file"), |s| {
            // As written: a relative path is under the process's --data-dir
            // (never beside the config, which may be read-only).
            non_empty("state_file", s).map(PathBuf::from)
        });
        let defaults = match &raw.defaults {
            Some(d) => self.defaults(d, &top.key("defaults")),
            None => SideDefaults::default(),
        };
        let limits = raw.limits.as_ref();
        let limits_at = top.key("limits");
        type Key = fn(&RawLimits) -> &Option<String>;
        let mut limit = |key: &str, get: Key, default: Duration| {
            limits
                .and_then(|l| self.parse(get(l), &limits_at.key(key), parse_nonzero))
                .unwrap_or(default)
        };
        let head_timeout = limit("head_timeout", |l| &l.head_timeout, DEFAULT_HEAD_TIMEOUT);
        let body_timeout = limit("body_timeout", |l| &l.body_timeout, DEFAULT_BODY_TIMEOUT);
        let handshake_timeout = limit(
            "handshake_timeout",
            |l| &l.handshake_timeout,
            DEFAULT_HANDSHAKE_TIMEOUT,
        );
        let idle_timeout = limit("idle_timeout", |l| &l.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        let h2_ping_interval = limit(
            "h2_ping_interval",
            |l| &l.h2_ping_interval,
            DEFAULT_H2_PING_INTERVAL,
        );
        let h2_ping_timeout = limit(
            "h2_ping_timeout",
            |l| &l.h2_ping_timeout,
            DEFAULT_H2_PING_TIMEOUT,
        );
        let mut count = |key: &str, get: Key, default: usize| {
            limits
                .and_then(|l| self.parse(get(l), &limits_at.key(key), |s| parse_count(s, 1)))
                .unwrap_or(default)
        };
        let max_connections = count(
            "max_connections",
            |l| &l.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        );
        let max_inflight_reads = count(
            "max_inflight_reads",
            |l| &l.max_inflight_reads,
            DEFAULT_MAX_INFLIGHT_READS,
        );
        let max_compared_bytes = count(
            "max_compared_bytes",
            |l| &l.max_compared_bytes,
            DEFAULT_MAX_COMPARED_BYTES,
        );
        let max_spooled_bytes = count(
            "max_spooled_bytes",
            |l| &l.max_spooled_bytes,
            DEFAULT_MAX_SPOOLED_BYTES,
        );
        let access_log = raw
            .access_log
            .as_ref()
            .map(|a| self.access_log(a, &top.key("access_log")));

        let routes_at = top.key("routes");
        let mut routes = Vec::new();
        match &raw.routes {
            None => self.missing(&routes_at, "missing `routes`: add at least one route"),
            Some(list) if list.is_empty() => {
                self.error(&routes_at, "`routes` is empty: add at least one route")
            }
            Some(list) => {
                let mut names: HashMap<String, YamlPath> = HashMap::new();
                let mut prefixes: HashMap<String, (String, YamlPath)> = HashMap::new();
                for (i, route) in list.iter().enumerate() {
                    let Some(route) = route else { continue };
                    let at = routes_at.index(i);
                    let draft = self.route(route, &at, &defaults);
                    self.check_unique(route, &at, &mut names, &mut prefixes);
                    routes.extend(draft);
                }
            }
        }

        Some(Draft {
            consumer: consumer?,
            risk: risk.unwrap_or(Risk::Low),
            listen,
            admin,
            runtime: RuntimeSettings {
                shutdown_grace,
                max_buffered_body,
                max_spooled_body,
                head_timeout,
                body_timeout,
                handshake_timeout,
                idle_timeout,
                h2_ping_interval,
                h2_ping_timeout,
                max_connections,
                max_inflight_reads,
                max_compared_bytes,
                max_spooled_bytes,
            },
            access_log,
            state_file,
            routes,
        })
    }

    fn access_log(&mut self, raw: &RawAccessLog, at: &YamlPath) -> AccessLogSettings {
        let target = match raw.path.as_deref().map(str::trim) {
            None | Some("stdout") => LogTarget::Stdout,
            Some("stderr") => LogTarget::Stderr,
            Some("") => {
                self.error(
                    &at.key("path"),
                    "`path` is empty: stdout, stderr or a file path",
                );
                LogTarget::Stdout
            }
            Some(file) => LogTarget::File(PathBuf::from(file)),
        };
        let sample = self
            .parse(&raw.sample, &at.key("sample"), |s| {
                let v = parse_number(s)?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!(
                        "sample `{s}` is out of range: use 0 to 1 (0.1 = 10% of plain reads)"
                    ));
                }
                Ok(v)
            })
            .unwrap_or(1.0);
        AccessLogSettings { target, sample }
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

    fn check_unique(
        &mut self,
        route: &RawRoute,
        at: &YamlPath,
        names: &mut HashMap<String, YamlPath>,
        prefixes: &mut HashMap<String, (String, YamlPath)>,
    ) {
        let name = route.name.as_deref().map(str::trim).unwrap_or("");
        if !name.is_empty() {
            let here = at.key("name");
            match names.get(name) {
                Some(first) => {
                    let (line, column) = locate(self.text, first, Target::Value);
                    self.error(
                        &here,
                        format!("duplicate route name `{name}` (first defined at {line}:{column})"),
                    );
                }
                None => {
                    names.insert(name.to_owned(), here);
                }
            }
        }
        let raw_prefix = route
            .matcher
            .as_ref()
            .and_then(|m| m.path_prefix.as_deref());
        if let Some(prefix) = raw_prefix.and_then(|p| parse_prefix(p).ok()) {
            let here = at.key("match").key("path_prefix");
            match prefixes.get(&prefix) {
                Some((other, first)) => {
                    let (line, column) = locate(self.text, first, Target::Value);
                    self.error(
                        &here,
                        format!(
                            "path_prefix `{prefix}` is already used by route `{other}` \
                             (at {line}:{column}); each route needs its own prefix"
                        ),
                    );
                }
                None => {
                    prefixes.insert(prefix, (name.to_owned(), here));
                }
            }
        }
    }

    fn defaults(&mut self, raw: &RawDefaults, at: &YamlPath) -> SideDefaults {
        SideDefaults {
            connect_timeout: self.parse(
                &raw.connect_timeout,
                &at.key("connect_timeout"),
                parse_timeout,
            ),
            timeout: self.parse(&raw.timeout, &at.key("timeout"), parse_timeout),
            max_inflight: self.parse(&raw.max_inflight, &at.key("max_inflight"), |s| {
                parse_count(s, 1)
            }),
            ca_file: self.ca_file(&raw.ca_file, &at.key("ca_file")),
        }
    }

    fn ca_file(&mut self, raw: &Option<String>, at: &YamlPath) -> Option<PathBuf> {
        let dir = self.dir.clone();
        self.parse(raw, at, |s| check_ca_file(&dir, s))
    }

    fn route(&mut self, raw: &RawRoute, at: &YamlPath, defaults: &SideDefaults) -> Option<Route> {
        let name = match raw.name.as_deref().map(str::trim) {
            None => {
                self.missing(&at.key("name"), "route has no `name`");
                None
            }
            Some("") => {
                self.error(&at.key("name"), "route `name` is empty");
                None
            }
            Some(n) => self.label(&at.key("name"), "route `name`", n),
        };

        let dataset = match raw.dataset.as_deref().map(str::trim) {
            Some("") => {
                self.error(&at.key("dataset"), "route `dataset` is empty");
                None
            }
            Some(d) => self.label(&at.key("dataset"), "route `dataset`", d),
            None => name.clone(),
        };

        let match_at = at.key("match");
        let (prefix, methods) = match &raw.matcher {
            None => {
                self.missing(
                    &match_at,
                    "route has no `match` (e.g. match: { path_prefix: /v1/orders })",
                );
                (None, MethodSet::new(Vec::new()))
            }
            Some(m) => {
                let prefix = match &m.path_prefix {
                    None => {
                        self.missing(
                            &match_at.key("path_prefix"),
                            "`match` has no `path_prefix` (e.g. path_prefix: /v1/orders)",
                        );
                        None
                    }
                    some => self.parse(some, &match_at.key("path_prefix"), parse_prefix),
                };
                (prefix, self.methods(&m.methods, &match_at.key("methods")))
            }
        };

        let batch = self.side(&raw.batch, &at.key("batch"), "batch", defaults);
        let streaming = self.side(&raw.streaming, &at.key("streaming"), "streaming", defaults);

        let mode_at = at.key("mode");
        let mode = self.parse(&raw.mode, &mode_at, parse_mode);
        let canary = self.canary(raw, at, mode);
        let mode = mode.unwrap_or(Mode::Batch);
        let fallback = self.fallback(raw, &at.key("fallback"));
        let freshness = self.freshness(raw, &at.key("freshness"));
        let reconcile = self.reconcile(raw, &at.key("reconcile"), mode);
        let sequence = self.sequence(raw.sequence.as_ref(), &at.key("sequence"));
        let gate = raw
            .gate
            .as_ref()
            .and_then(|g| self.gate(g, at, mode, freshness.window));

        Some(Route {
            name: name?,
            dataset: dataset?,
            prefix: prefix?,
            methods,
            batch: batch?,
            streaming: streaming?,
            mode,
            canary,
            fallback,
            freshness,
            reconcile,
            sequence,
            gate,
        })
    }

    fn sequence(&mut self, raw: Option<&RawSequence>, at: &YamlPath) -> Sequence {
        let empty = RawSequence::default();
        let raw = raw.unwrap_or(&empty);
        let params = match &raw.params {
            None => DEFAULT_SEQUENCE_PARAMS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            Some(list) => {
                let mut params: Vec<String> = Vec::new();
                for (i, p) in list.iter().enumerate() {
                    if let Some(p) = self.parse(p, &at.key("params").index(i), parse_query_param)
                        && !params.contains(&p)
                    {
                        params.push(p);
                    }
                }
                params
            }
        };
        let pin_ttl = self.parse(&raw.pin_ttl, &at.key("pin_ttl"), parse_nonzero);
        let max_pins = self.parse(&raw.max_pins, &at.key("max_pins"), |s| parse_count(s, 1));
        Sequence {
            params,
            pin_ttl: pin_ttl.unwrap_or(DEFAULT_PIN_TTL),
            max_pins: max_pins.unwrap_or(DEFAULT_MAX_PINS),
        }
    }

    fn methods(&mut self, raw: &Option<Vec<Option<String>>>, at: &YamlPath) -> MethodSet {
        let Some(list) = raw else {
            return MethodSet::new(vec![Method::GET, Method::HEAD]);
        };
        if list.is_empty() {
            self.error(
                at,
                "`methods` is empty: list at least one, e.g. [GET, HEAD]",
            );
        }
        let mut methods: Vec<Method> = Vec::new();
        for (i, m) in list.iter().enumerate() {
            match self.parse(m, &at.index(i), parse_method) {
                Some(m) if !methods.contains(&m) => methods.push(m),
                _ => {}
            }
        }
        MethodSet::new(methods)
    }

    fn side(
        &mut self,
        raw: &Option<RawSide>,
        at: &YamlPath,
        which: &str,
        defaults: &SideDefaults,
    ) -> Option<Side> {
        let empty = RawSideMap::default();
        let (url, url_at, over) = match raw {
            None => {
                self.missing(
                    at,
                    format!("route has no `{which}` side (a URL, e.g. {which}: http://127.0.0.1:7001/path)"),
                );
                return None;
            }
            Some(RawSide::Url(u)) => (Some(u.clone()), at.clone(), &empty),
            Some(RawSide::Full(m)) => (m.url.clone(), at.key("url"), m),
        };
        let url = match url {
            None => {
                self.missing(&url_at, format!("`{which}` has no `url`"));
                None
            }
            some => self.parse(&some, &url_at, parse_url),
        };
        let connect_timeout = self.parse(
            &over.connect_timeout,
            &at.key("connect_timeout"),
            parse_timeout,
        );
        let timeout = self.parse(&over.timeout, &at.key("timeout"), parse_timeout);
        let max_inflight = self.parse(&over.max_inflight, &at.key("max_inflight"), |s| {
            parse_count(s, 1)
        });
        let ca_file = self.ca_file(&over.ca_file, &at.key("ca_file"));
        let url = url?;
        Some(Side {
            scheme: url.scheme,
            authority: url.authority,
            base_path: url.base_path,
            base_query: url.base_query,
            connect_timeout: connect_timeout
                .or(defaults.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            timeout: timeout
                .or(defaults.timeout)
                .unwrap_or(default_timeout(which)),
            max_inflight: max_inflight.or(defaults.max_inflight),
            ca_file: ca_file.or_else(|| defaults.ca_file.clone()),
        })
    }

    fn canary(&mut self, route: &RawRoute, at: &YamlPath, mode: Option<Mode>) -> Canary {
        let empty = Default::default();
        let raw = route.canary.as_ref().unwrap_or(&empty);
        let route_at = at;
        let at = route_at.key("canary");
        let percent = self.parse(&raw.percent, &at.key("percent"), parse_percent);
        if mode == Some(Mode::Canary) && raw.percent.is_none() && !self.problems.reported_at(&at) {
            self.error(
                &route_at.key("mode"),
                "mode `canary` needs `canary.percent` (the share of reads sent to streaming, e.g. 10)",
            );
        }
        let sticky_header = self.parse(
            &raw.sticky_header,
            &at.key("sticky_header"),
            parse_header_name,
        );
        Canary {
            percent: percent.unwrap_or(0.0),
            sticky_header,
        }
    }

    fn fallback(&mut self, route: &RawRoute, at: &YamlPath) -> FallbackPolicy {
        let empty = Default::default();
        let raw = route.fallback.as_ref().unwrap_or(&empty);
        let on = match &raw.on {
            None => ReasonSet::all(),
            Some(list) => {
                let mut set = ReasonSet::empty();
                for (i, r) in list.iter().enumerate() {
                    if let Some(r) = self.parse(r, &at.key("on").index(i), parse_reason) {
                        set.insert(r);
                    }
                }
                set
            }
        };
        let max_staleness = self.parse(&raw.max_staleness, &at.key("max_staleness"), parse_nonzero);
        let circuit_empty = Default::default();
        let circuit = raw.circuit.as_ref().unwrap_or(&circuit_empty);
        let circuit_at = at.key("circuit");
        let failures = self.parse(&circuit.failures, &circuit_at.key("failures"), parse_u32);
        let cooldown = self.parse(
            &circuit.cooldown,
            &circuit_at.key("cooldown"),
            parse_nonzero,
        );
        FallbackPolicy {
            on,
            max_staleness,
            circuit: CircuitPolicy {
                failures: failures.unwrap_or(DEFAULT_CIRCUIT_FAILURES),
                cooldown: cooldown.unwrap_or(DEFAULT_CIRCUIT_COOLDOWN),
            },
        }
    }

    fn freshness(&mut self, route: &RawRoute, at: &YamlPath) -> Freshness {
        let empty = Default::default();
        let raw = route.freshness.as_ref().unwrap_or(&empty);
        let header = self.parse(&raw.header, &at.key("header"), parse_header_name);
        let last_modified = self.parse(&raw.last_modified, &at.key("last_modified"), parse_bool);
        let probe_interval = self.parse(
            &raw.probe_interval,
            &at.key("probe_interval"),
            parse_interval,
        );
        let probe_method = self.parse(&raw.probe_method, &at.key("probe_method"), |s| match s {
            "HEAD" => Ok(Method::HEAD),
            "GET" => Ok(Method::GET),
            _ => Err(format!("bad probe_method `{s}` (expected HEAD or GET)")),
        });
        let window = self.parse(&raw.window, &at.key("window"), |s| {
            let d = parse_duration(s)?;
            if d < MIN_WINDOW {
                return Err(format!("window `{s}` is too short: use at least 30s"));
            }
            Ok(d)
        });
        Freshness {
            header: header.unwrap_or(HeaderName::from_static(DEFAULT_WATERMARK_HEADER)),
            last_modified_fallback: last_modified.unwrap_or(true),
            probe_interval: probe_interval.unwrap_or(Some(DEFAULT_PROBE_INTERVAL)),
            probe_method: probe_method.unwrap_or(Method::HEAD),
            window: window.unwrap_or(DEFAULT_WINDOW),
        }
    }

    fn reconcile(&mut self, route: &RawRoute, at: &YamlPath, mode: Mode) -> Reconcile {
        let empty = Default::default();
        let raw = route.reconcile.as_ref().unwrap_or(&empty);
        let sample = self.parse(&raw.sample, &at.key("sample"), |s| {
            let v = parse_number(s)?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "sample `{s}` is out of range: use 0 to 1 (0.05 = 5% of reads)"
                ));
            }
            Ok(v)
        });
        let records = self.parse(&raw.records, &at.key("records"), parse_json_pointer);
        let key = self.parse(&raw.key, &at.key("key"), |s| non_empty("key", s));
        let mut ignore = Vec::new();
        for (i, f) in raw.ignore.iter().flatten().enumerate() {
            ignore.extend(self.parse(f, &at.key("ignore").index(i), |s| non_empty("ignore", s)));
        }
        let numeric_tolerance = self.parse(&raw.numeric_tolerance, &at.key("numeric_tolerance"), |s| {
            let v = parse_number(s)?;
            if v < 0.0 {
                return Err(format!("numeric_tolerance `{s}` is negative: use 0 or more (relative, 0.0001 = 0.01%)"));
            }
            Ok(v)
        });
        let event_time = self.parse(&raw.event_time, &at.key("event_time"), |s| {
            non_empty("event_time", s)
        });
        // Kept as written: a relative path is in the data directory, which
        // is the running process's business (`--data-dir`), not the file's.
        let divergence_log = self.parse(&raw.divergence_log, &at.key("divergence_log"), |s| {
            non_empty("divergence_log", s).map(PathBuf::from)
        });
        let max_inflight = self.parse(&raw.max_inflight, &at.key("max_inflight"), |s| {
            parse_count(s, 1)
        });
        let max_body_bytes = self.parse(&raw.max_body_bytes, &at.key("max_body_bytes"), |s| {
            parse_count(s, 1)
        });
        let default_sample = if mode == Mode::Shadow {
            DEFAULT_SHADOW_SAMPLE
        } else {
            DEFAULT_SAMPLE
        };
        Reconcile {
            sample: sample.unwrap_or(default_sample),
            sample_explicit: raw.sample.is_some(),
            records: records.unwrap_or_default(),
            key,
            ignore,
            numeric_tolerance: numeric_tolerance.unwrap_or(0.0),
            event_time_field: event_time,
            divergence_log,
            max_inflight: max_inflight.unwrap_or(DEFAULT_RECONCILE_INFLIGHT),
            max_body_bytes: max_body_bytes.unwrap_or(DEFAULT_RECONCILE_BODY),
        }
    }
}

impl Cx<'_> {
    /// A route's `gate` block. `None` when it has an error (reported).
    fn gate(
        &mut self,
        raw: &RawGate,
        route_at: &YamlPath,
        mode: Mode,
        default_window: Duration,
    ) -> Option<Gate> {
        let at = route_at.key("gate");
        let before = self.problems.len();
        let interval = self.parse(&raw.interval, &at.key("interval"), parse_nonzero);
        let window = self.parse(&raw.window, &at.key("window"), parse_nonzero);
        let failures = self.parse(&raw.failures, &at.key("failures"), |s| {
            parse_count(s, 1)
                .and_then(|n| u32::try_from(n).map_err(|_| format!("`{s}` is too large")))
        });
        let min_reads = self.parse(&raw.min_reads, &at.key("min_reads"), |s| {
            parse_count(s, 0).map(|n| n as u64)
        });
        let mut ratio = |value: &Option<String>, key: &str| {
            self.parse(value, &at.key(key), |s| {
                let v = parse_number(s)?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!(
                        "{key} `{s}` is out of range: use a ratio from 0 to 1 (0.05 = 5%)"
                    ));
                }
                Ok(v)
            })
        };
        let max_error_ratio_delta = ratio(&raw.max_error_ratio_delta, "max_error_ratio_delta");
        let max_fallback_ratio = ratio(&raw.max_fallback_ratio, "max_fallback_ratio");
        let max_divergence_ratio = ratio(&raw.max_divergence_ratio, "max_divergence_ratio");
        let max_streaming_age = self.parse(
            &raw.max_streaming_age,
            &at.key("max_streaming_age"),
            parse_nonzero,
        );
        let rollback_to = self.parse(&raw.rollback_to, &at.key("rollback_to"), |s| match s {
            "batch" => Ok(Mode::Batch),
            "shadow" => Ok(Mode::Shadow),
            _ => Err(format!("rollback_to `{s}` must be batch or shadow")),
        });
        let thresholds = [
            &raw.max_error_ratio_delta,
            &raw.max_fallback_ratio,
            &raw.max_divergence_ratio,
            &raw.max_streaming_age,
        ];
        if thresholds.iter().all(|t| t.is_none()) {
            self.problems.push(
                &at,
                Target::Key,
                "`gate` has no threshold: set at least one of max_error_ratio_delta, \
                 max_fallback_ratio, max_divergence_ratio, max_streaming_age",
            );
        }
        let interval = interval.unwrap_or(DEFAULT_GATE_INTERVAL);
        let window = window.unwrap_or(default_window);
        if window < interval && self.problems.len() == before {
            let (key, what) = match raw.window {
                Some(_) => ("window", "window"),
                None => ("interval", "interval"),
            };
            self.error(
                &at.key(key),
                format!(
                    "gate {what}: window ({window:?}) is shorter than interval ({interval:?}); \
                     a check must look back at least as far as the time between checks"
                ),
            );
        }
        if !mode.serves_streaming() {
            self.warnings.push(
                &at,
                Target::Key,
                format!(
                    "a gate on a `{}` route does nothing: it watches reads streaming serves \
                     (canary, streaming, streaming_only)",
                    mode.as_str()
                ),
            );
        }
        if self.problems.len() != before {
            return None;
        }
        Some(Gate {
            interval,
            window,
            failures: failures.unwrap_or(DEFAULT_GATE_FAILURES),
            min_reads: min_reads.unwrap_or(DEFAULT_GATE_MIN_READS),
            max_error_ratio_delta,
            max_fallback_ratio,
            max_divergence_ratio,
            max_streaming_age,
            rollback_to: rollback_to.unwrap_or(Mode::Batch),
        })
    }
}

/// Whether two addresses would collide: the same port (other than 0, which
/// picks a free one) on the same or an unspecified IP.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `250ms`, `2s`, `5m`, `1h`: a whole number and a unit.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("bad duration `{s}`: expected a number and a unit (ms, s, m, h), e.g. 250ms");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(bad());
    }
    if unit.is_empty() {
        return Err(format!(
            "bad duration `{s}`: add a unit (ms, s, m, h), e.g. {s}s or {s}ms"
        ));
    }
    let too_long =
        || format!("bad duration `{s}`: longer than the longest cutover takes, 365 days (8760h)");
    // All digits: a number that does not parse is too large for u64.
    let n: u64 = number.parse().map_err(|_| too_long())?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    };
    match millis {
        Some(ms) if ms <= MAX_DURATION_MS => Ok(Duration::from_millis(ms)),
        _ => Err(too_long()),
    }
}

/// The longest consumer, route or dataset name: a label value, not a novel
/// (a 100 KB consumer name once made `/metrics` 15 MB).
const MAX_LABEL_LEN: usize = 128;

/// The longest duration any key takes: a year. Far past any timeout,
/// window or staleness bound that means something, and far below where
/// millisecond arithmetic on Unix times could overflow.
const MAX_DURATION_MS: u64 = 365 * 24 * 3_600_000;

/// A duration that must be more than zero (timeouts, cooldowns).
fn parse_nonzero(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("`{s}` must be more than 0"));
    }
    Ok(d)
}

/// A side's `timeout` when neither it nor `defaults` says: batch's is
/// nginx's read timeout, streaming's the short one fallback relies on.
fn default_timeout(which: &str) -> Duration {
    if which == "batch" {
        DEFAULT_BATCH_TIMEOUT
    } else {
        DEFAULT_STREAMING_TIMEOUT
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_nonzero(s).map_err(|e| {
        if e.ends_with("more than 0") {
            format!("timeout `{s}` must be more than 0")
        } else {
            e
        }
    })
}

/// A probe interval: a duration, or `off` (`0s` means off too).
fn parse_interval(s: &str) -> Result<Option<Duration>, String> {
    if s == "off" {
        return Ok(None);
    }
    let d = parse_duration(s).map_err(|e| format!("{e}, or off"))?;
    Ok((!d.is_zero()).then_some(d))
}

/// The parts of an upstream URL that a side keeps.
#[derive(Debug)]
pub(super) struct SideUrl {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    base_query: Option<String>,
}

pub(super) fn parse_url(s: &str) -> Result<SideUrl, String> {
    let hint = "e.g. http://127.0.0.1:7001/tables/orders";
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("bad URL `{s}`: {e} ({hint})"))?;
    let scheme = match uri.scheme() {
        Some(sc) if *sc == Scheme::HTTP || *sc == Scheme::HTTPS => sc.clone(),
        Some(sc) => {
            return Err(format!("bad URL `{s}`: scheme `{sc}` is not http or https"));
        }
        None => {
            return Err(format!(
                "bad URL `{s}`: expected http:// or https:// and a host ({hint})"
            ));
        }
    };
    let authority = match uri.authority() {
        Some(a) if a.as_str().contains('@') => {
            return Err(format!(
                "bad URL `{s}`: credentials (user@) are not allowed in a URL"
            ));
        }
        Some(a) if a.as_str() != a.host() && a.port_u16().is_none() => {
            return Err(format!("bad URL `{s}`: bad port (expected 1 to 65535)"));
        }
        Some(a) if !a.host().is_empty() => a.clone(),
        _ => return Err(format!("bad URL `{s}`: no host ({hint})")),
    };
    if s.contains('#') {
        return Err(format!(
            "bad URL `{s}`: a fragment (#...) is never sent upstream; remove it"
        ));
    }
    Ok(SideUrl {
        scheme,
        authority,
        base_path: uri.path().trim_end_matches('/').to_owned(),
        base_query: uri.query().map(str::to_owned),
    })
}

/// A route's path prefix, without its trailing slash (except the root `/`).
pub(super) fn parse_prefix(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("path_prefix `{s}` must start with `/`"));
    }
    if s.contains(['?', '#']) {
        return Err(format!(
            "path_prefix `{s}` must be a path only, without `?` or `#`"
        ));
    }
    if s.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "path_prefix `{s}` contains a space or control character"
        ));
    }
    let trimmed = s.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
}

fn parse_method(s: &str) -> Result<Method, String> {
    if s != s.to_ascii_uppercase() {
        return Err(format!(
            "method `{s}` must be uppercase: {}",
            s.to_ascii_uppercase()
        ));
    }
    Method::from_bytes(s.as_bytes()).map_err(|_| format!("bad method `{s}` (e.g. GET, HEAD, POST)"))
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| {
        format!("unknown mode `{s}` (expected batch, shadow, canary, streaming or streaming_only)")
    })
}

fn parse_risk(s: &str) -> Result<Risk, String> {
    match s {
        "low" => Ok(Risk::Low),
        "medium" => Ok(Risk::Medium),
        "high" => Ok(Risk::High),
        _ => Err(format!("unknown risk `{s}` (expected low, medium or high)")),
    }
}

fn parse_reason(s: &str) -> Result<FallbackReason, String> {
    FallbackReason::parse(s).ok_or_else(|| {
        format!("unknown fallback reason `{s}` (expected connect, timeout, 5xx, stale, overflow or circuit)")
    })
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("bad address `{s}`: expected IP:PORT, e.g. 127.0.0.1:8080"))
}

fn parse_header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("bad header name `{s}` (e.g. x-customer-id)"))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, found `{s}`")),
    }
}

fn parse_number(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("expected a number, found `{s}`")),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("percent `{s}` is out of range: use 0 to 100"));
    }
    Ok(v)
}

/// A whole number of at least `min`.
fn parse_count(s: &str, min: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ if min == 0 => Err(format!("expected a whole number, 0 or more, found `{s}`")),
        _ => Err(format!(
            "expected a whole number, {min} or more, found `{s}`"
        )),
    }
}

fn parse_u32(s: &str) -> Result<u32, String> {
    s.parse()
        .map_err(|_| format!("expected a whole number, 0 or more, found `{s}`"))
}

/// A JSON pointer (RFC 6901): empty for the whole body, or `/a/b`.
fn parse_json_pointer(s: &str) -> Result<String, String> {
    if !s.is_empty() && !s.starts_with('/') {
        return Err(format!(
            "records `{s}` is not a JSON pointer: start it with `/`, e.g. /data"
        ));
    }
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "records `{s}`: `~` must be followed by 0 or 1 (~0 is ~, ~1 is /)"
            ));
        }
    }
    Ok(s.to_owned())
}

/// A query parameter name as it appears in a request target (before `=`).
fn parse_query_param(s: &str) -> Result<String, String> {
    let bad = |c: char| matches!(c, '&' | '=' | '#' | '?') || c.is_whitespace() || c.is_control();
    if s.is_empty() {
        return Err("a sequence param is empty".to_owned());
    }
    if s.chars().any(bad) {
        return Err(format!(
            "sequence param `{s}` is not a query parameter name (no `&`, `=`, `#`, `?` or spaces)"
        ));
    }
    Ok(s.to_owned())
}

fn non_empty(what: &str, s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err(format!("`{what}` is empty"))
    } else {
        Ok(s.to_owned())
    }
}

/// Resolves `s` against the config's directory and checks it holds at
/// least one PEM certificate.
fn check_ca_file(dir: &Path, s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("`ca_file` is empty".to_owned());
    }
    let path = dir.join(s);
    let pem = std::fs::read(&path)
        .map_err(|e| format!("cannot read ca_file `{}`: {e}", path.display()))?;
    let mut certs = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| format!("bad PEM in ca_file `{}`: {e}", path.display()))?;
        certs += 1;
    }
    if certs == 0 {
        return Err(format!(
            "ca_file `{}` holds no PEM certificate",
            path.display()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_text(text: &str) -> Result<Compiled, ConfigErrors> {
        compile(Path::new("/etc/cutover/c.yaml"), text, 7)
    }

    fn ok(text: &str) -> Compiled {
        compile_text(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Each error as `LINE:COLUMN: message`.
    fn errors(text: &str) -> Vec<String> {
        match compile_text(text) {
            Ok(_) => panic!("config was accepted"),
            Err(e) => {
                e.0.iter()
                    .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                    .collect()
            }
        }
    }

    const MINIMAL: &str = "\
version: 1
consumer: dash
routes:
  - name: orders
    match: { path_prefix: /v1/orders/ }
    batch: http://127.0.0.1:7001/tables/orders/
    streaming: https://stream.internal:8443/v1/orders?fmt=json
";

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
    fn names_that_become_labels_are_short_and_plain() {
        let long = "c".repeat(129);
        let errs = errors(&MINIMAL.replace("consumer: dash", &format!("consumer: {long}")));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("2:11: consumer is 129 bytes long: at most 128"),
            "{errs:?}"
        );
        let errs = errors(&MINIMAL.replace("name: orders", "name: 'orders v2'"));
        assert!(
            errs[0].contains("route `name` `orders v2` has ' '"),
            "{errs:?}"
        );
        assert!(compile_text(&MINIMAL.replace("name: orders", "name: orders.v2/eu:1_a-b")).is_ok());
    }

    #[test]
    fn every_bad_limit_is_located_at_its_key() {
        let errs = errors(&format!(
            "{MINIMAL}limits:\n  max_connections: 0\n  idle_timeout: 0s\n  handshake_timeout: soon\n  max_compared_bytes: -1\n"
        ));
        assert_eq!(errs.len(), 4, "{errs:?}");
        for (at, what) in [
            ("9:20", "1 or more"),
            ("10:17", "more than 0"),
            ("11:22", "soon"),
            ("12:23", "-1"),
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(at) && e.contains(what)),
                "{at} {what}: {errs:?}"
            );
        }
    }

    #[test]
    fn sequences_have_defaults_and_bad_keys_are_located() {
        let c = ok(MINIMAL);
        let seq = &c.routes[0].sequence;
        assert_eq!(seq.pin_ttl, Duration::from_secs(600));
        assert_eq!(seq.max_pins, 10_000);
        assert!(seq.params.iter().any(|p| p == "cursor"));
        assert!(seq.params.iter().any(|p| p == "offset"));
        let c = ok(&format!(
            "{MINIMAL}    sequence: {{ params: [token, token, page], pin_ttl: 30s, max_pins: 5 }}\n"
        ));
        let seq = &c.routes[0].sequence;
        assert_eq!(seq.params, ["token", "page"]);
        assert_eq!(seq.pin_ttl, Duration::from_secs(30));
        assert_eq!(seq.max_pins, 5);
        let errs = errors(&format!(
            "{MINIMAL}    sequence:\n      params: [\"a=b\"]\n      pin_ttl: 0s\n      max_pins: 0\n"
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        for (at, what) in [
            ("9:16", "a=b"),
            ("10:16", "more than 0"),
            ("11:17", "1 or more"),
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(at) && e.contains(what)),
                "{at} {what}: {errs:?}"
            );
        }
    }

    #[test]
    fn spooling_keys_default_parse_and_are_located_when_bad() {
        let c = ok(MINIMAL);
        assert_eq!(c.settings.runtime.max_spooled_body, 16 * 1024 * 1024);
        assert_eq!(c.settings.runtime.max_spooled_bytes, 64 * 1024 * 1024);
        let c = ok(&format!(
            "max_spooled_body: 0\n{MINIMAL}limits:\n  max_spooled_bytes: 1000\n"
        ));
        assert_eq!(
            c.settings.runtime.max_spooled_body, 0,
            "0 turns spooling off"
        );
        assert_eq!(c.settings.runtime.max_spooled_bytes, 1000);
        let errs = errors(&format!(
            "max_spooled_body: lots\n{MINIMAL}limits:\n  max_spooled_bytes: 0\n"
        ));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("1:19") && errs[0].contains("lots"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("10:22") && errs[1].contains("1 or more"),
            "{errs:?}"
        );
    }

    #[test]
    fn durations_are_bounded_by_a_year() {
        assert_eq!(
            parse_duration("8760h"),
            Ok(Duration::from_secs(365 * 86_400))
        );
        for huge in ["8761h", "18446744073709551615ms", "99999999999999999999s"] {
            let e = parse_duration(huge).expect_err(huge);
            assert!(e.contains("365 days"), "{huge}: {e}");
        }
        let errs = errors(&format!(
            "{MINIMAL}    fallback: {{ max_staleness: 18446744073709551615ms }}\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("365 days"), "{errs:?}");
    }

    #[test]
    fn durations_need_a_whole_number_and_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("2 secs").unwrap_err(),
            "bad duration `2 secs`: expected a number and a unit (ms, s, m, h), e.g. 250ms"
        );
        assert!(parse_duration("5").unwrap_err().contains("add a unit"));
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "2d",
            "2S",
            " 2s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_timeout("0ms").unwrap_err().contains("more than 0"));
        assert_eq!(parse_interval("off"), Ok(None));
        assert_eq!(parse_interval("0s"), Ok(None));
        assert_eq!(parse_interval("10s"), Ok(Some(Duration::from_secs(10))));
    }

    #[test]
    fn urls_are_http_or_https_with_a_host_and_nothing_secret() {
        let u = parse_url("http://127.0.0.1:7001/tables/orders/").unwrap();
        assert_eq!(u.scheme, Scheme::HTTP);
        assert_eq!(u.authority.as_str(), "127.0.0.1:7001");
        assert_eq!(u.base_path, "/tables/orders");
        assert_eq!(u.base_query, None);
        let u = parse_url("https://h/?a=1").unwrap();
        assert_eq!(
            (u.base_path.as_str(), u.base_query.as_deref()),
            ("", Some("a=1"))
        );
        assert_eq!(parse_url("http://h").unwrap().base_path, "");
        for bad in [
            "ftp://h/x",
            "/just/a/path",
            "127.0.0.1:7001",
            "http://user:pw@h/x",
            "http://h/x#frag",
            "http:///x",
            "http://h:99999/",
            "not a url",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_are_paths_without_trailing_slash() {
        assert_eq!(parse_prefix("/v1/orders/").unwrap(), "/v1/orders");
        assert_eq!(parse_prefix("/").unwrap(), "/");
        assert_eq!(parse_prefix("//").unwrap(), "/");
        for bad in ["v1", "/a?b", "/a#b", "/a b", ""] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
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
    fn shadow_mode_compares_every_read_by_default() {
        let c = ok(&format!("{MINIMAL}    mode: shadow\n"));
        assert_eq!(c.routes[0].reconcile.sample, 1.0);
        let c = ok(&format!(
            "{MINIMAL}    mode: shadow\n    reconcile: {{ sample: 0.5 }}\n"
        ));
        assert_eq!(c.routes[0].reconcile.sample, 0.5);
        assert!(c.routes[0].reconcile.sample_explicit);
    }

    #[test]
    fn defaults_timeout_applies_to_both_sides_and_a_sides_own_wins() {
        let both = ok(&MINIMAL.replace("routes:", "defaults: { timeout: 3s }\nroutes:"));
        assert_eq!(both.routes[0].batch.timeout, Duration::from_secs(3));
        assert_eq!(both.routes[0].streaming.timeout, Duration::from_secs(3));
        let own = ok(&MINIMAL
            .replace("routes:", "defaults: { timeout: 3s }\nroutes:")
            .replace(
                "batch: http://127.0.0.1:7001/tables/orders/",
                "batch: { url: 'http://127.0.0.1:7001/tables/orders/', timeout: 90s }",
            ));
        assert_eq!(own.routes[0].batch.timeout, Duration::from_secs(90));
        assert_eq!(own.routes[0].streaming.timeout, Duration::from_secs(3));
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
    fn the_access_log_is_off_by_default_and_checked_when_on() {
        assert_eq!(ok(MINIMAL).settings.access_log, None);
        let on = ok(&format!(
            "access_log: {{ path: logs/access.jsonl, sample: 0.1 }}\n{MINIMAL}"
        ));
        assert_eq!(
            on.settings.access_log,
            Some(AccessLogSettings {
                target: LogTarget::File(PathBuf::from("logs/access.jsonl")),
                sample: 0.1
            })
        );
        let stdout = ok(&format!("access_log: {{}}\n{MINIMAL}"));
        assert_eq!(
            stdout.settings.access_log,
            Some(AccessLogSettings {
                target: LogTarget::Stdout,
                sample: 1.0
            })
        );
        let bad = errors(&format!(
            "access_log: {{ path: '', sample: 2, colour: red }}\n{MINIMAL}"
        ));
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad.iter().all(|e| e.starts_with("1:")), "{bad:?}");
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
    fn top_level_problems_are_reported_together() {
        assert_eq!(
            errors("version: 2\nlisten: 127.0.0.1:9901\nrisk: huge\nroutes: []\nextra: 1\n"),
            [
                "1:1: missing `consumer`: name the consumer behind this sidecar",
                "1:10: unsupported version `2`: this cutover reads version 1",
                "2:9: admin 127.0.0.1:9901 and listen 127.0.0.1:9901 share a port: give admin another port",
                "3:7: unknown risk `huge` (expected low, medium or high)",
                "4:9: `routes` is empty: add at least one route",
                "5:1: unknown key `extra` (expected one of: version, consumer, risk, listen, admin, shutdown_grace, max_buffered_body, max_spooled_body, state_file, defaults, access_log, limits, routes)",
            ]
        );
        assert_eq!(
            errors(""),
            ["1:1: the config is empty: expected `version: 1`, `consumer` and `routes`"]
        );
    }

    #[test]
    fn route_rules() {
        let base = "version: 1\nconsumer: c\nroutes:\n";
        let errs = errors(&format!(
            "{base}  - name: a
    match: {{ path_prefix: /x, methods: [get, 'B@D'] }}
    batch: {{ timeout: 5 }}
    streaming: http://s/
    mode: canary
    fallback: {{ on: [connect, later] }}
    freshness: {{ window: 10s, last_modified: yes }}
    reconcile: {{ sample: 2, records: data }}
  - name: b
    match: {{ path_prefix: /x/ }}
    batch: http://b/
"
        ));
        assert_eq!(
            errs,
            [
                "5:41: method `get` must be uppercase: GET",
                "5:46: bad method `B@D` (e.g. GET, HEAD, POST)",
                "6:12: `batch` has no `url`",
                "6:23: bad duration `5`: add a unit (ms, s, m, h), e.g. 5s or 5ms",
                "8:11: mode `canary` needs `canary.percent` (the share of reads sent to streaming, e.g. 10)",
                "9:31: unknown fallback reason `later` (expected connect, timeout, 5xx, stale, overflow or circuit)",
                "10:26: window `10s` is too short: use at least 30s",
                "10:46: expected true or false, found `yes`",
                "11:26: sample `2` is out of range: use 0 to 1 (0.05 = 5% of reads)",
                "11:38: records `data` is not a JSON pointer: start it with `/`, e.g. /data",
                "12:5: route has no `streaming` side (a URL, e.g. streaming: http://127.0.0.1:7001/path)",
                "13:27: path_prefix `/x` is already used by route `a` (at 5:27); each route needs its own prefix",
            ]
        );
    }

    const GATED: &str = "\
version: 1
consumer: dash
state_file: state/gates.json
routes:
  - name: orders
    match: { path_prefix: /v1/orders }
    batch: http://b/
    streaming: http://s/
    mode: streaming
    gate:
";

    #[test]
    fn a_gate_compiles_with_its_defaults() {
        let c = ok(&format!("{GATED}      max_fallback_ratio: 0.05\n"));
        assert!(c.warnings.is_empty());
        assert_eq!(
            c.settings.state_file.as_deref(),
            Some(Path::new("state/gates.json")),
            "relative to the data directory, not the config's"
        );
        let g = c.routes[0].gate.clone().expect("gate");
        assert_eq!(
            g,
            Gate {
                interval: Duration::from_secs(30),
                window: Duration::from_secs(300),
                failures: 3,
                min_reads: 100,
                max_error_ratio_delta: None,
                max_fallback_ratio: Some(0.05),
                max_divergence_ratio: None,
                max_streaming_age: None,
                rollback_to: Mode::Batch,
            }
        );
        let c = ok(&format!(
            "{GATED}      {{ interval: 100ms, window: 1s, failures: 1, min_reads: 0, max_error_ratio_delta: 0, \
             max_divergence_ratio: 1, max_streaming_age: 10m, rollback_to: shadow }}\n"
        )
        .replace("gate:\n      {", "gate: {"));
        let g = c.routes[0].gate.clone().expect("gate");
        assert_eq!(g.interval, Duration::from_millis(100));
        assert_eq!(g.window, Duration::from_secs(1));
        assert_eq!((g.failures, g.min_reads), (1, 0));
        assert_eq!(g.max_streaming_age, Some(Duration::from_secs(600)));
        assert_eq!(g.rollback_to, Mode::Shadow);
        assert_eq!(ok(MINIMAL).routes[0].gate, None);
        assert_eq!(ok(MINIMAL).settings.state_file, None);
    }

    #[test]
    fn gate_rules() {
        assert_eq!(
            errors(&format!(
                "{GATED}      interval: 2s\n      window: 1s\n      failures: 0\n      rollback_to: canary\n"
            )),
            [
                "10:5: `gate` has no threshold: set at least one of max_error_ratio_delta, \
                 max_fallback_ratio, max_divergence_ratio, max_streaming_age",
                "13:17: expected a whole number, 1 or more, found `0`",
                "14:20: rollback_to `canary` must be batch or shadow",
            ]
        );
        assert_eq!(
            errors(&format!(
                "{GATED}      window: 1s\n      interval: 2s\n      max_fallback_ratio: 1.5\n      max_divergence_ratio: -0.1\n      max_error_ratio_delta: x\n"
            )),
            [
                "13:27: max_fallback_ratio `1.5` is out of range: use a ratio from 0 to 1 (0.05 = 5%)",
                "14:29: max_divergence_ratio `-0.1` is out of range: use a ratio from 0 to 1 (0.05 = 5%)",
                "15:30: expected a number, found `x`",
            ]
        );
        assert_eq!(
            errors(&format!(
                "{GATED}      window: 1s\n      interval: 2s\n      max_fallback_ratio: 0.5\n"
            )),
            [
                "11:15: gate window: window (1s) is shorter than interval (2s); \
              a check must look back at least as far as the time between checks"
            ]
        );
        assert_eq!(
            errors(&format!(
                "{GATED}      interval: 10m\n      max_fallback_ratio: 0.5\n"
            )),
            [
                "11:17: gate interval: window (300s) is shorter than interval (600s); \
              a check must look back at least as far as the time between checks"
            ]
        );
        assert_eq!(
            errors(&format!(
                "{GATED}      surprise: 1\n      max_fallback_ratio: 0.5\n"
            ))[0],
            "11:7: unknown key `surprise` (expected one of: interval, window, failures, min_reads, \
             max_error_ratio_delta, max_fallback_ratio, max_divergence_ratio, max_streaming_age, rollback_to)"
        );
    }

    #[test]
    fn a_gate_on_a_route_streaming_does_not_serve_is_a_warning() {
        for mode in ["batch", "shadow"] {
            let text = format!("{GATED}      max_fallback_ratio: 0.5\n")
                .replace("mode: streaming", &format!("mode: {mode}"));
            let c = ok(&text);
            assert!(c.routes[0].gate.is_some());
            let w: Vec<String> = c.warnings.iter().map(ConfigError::warning).collect();
            assert_eq!(
                w,
                [format!(
                    "/etc/cutover/c.yaml:10:5: warning: a gate on a `{mode}` route does nothing: \
                     it watches reads streaming serves (canary, streaming, streaming_only)"
                )]
            );
        }
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

    #[test]
    fn ca_file_is_relative_to_the_config_and_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
        let config = dir.path().join("c.yaml");
        let text = format!(
            "{MINIMAL}    batch: {{ url: 'https://b/', ca_file: empty.pem }}\ndefaults: {{ ca_file: ca.pem }}\n"
        )
        .replace("    batch: http://127.0.0.1:7001/tables/orders/\n", "");
        let err = compile(&config, &text, 1).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(
            err.0[0].message.contains("holds no PEM certificate"),
            "{err}"
        );
        let text = text.replace("empty.pem", "ca.pem");
        let c = compile(&config, &text, 1).unwrap();
        assert_eq!(c.routes[0].batch.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(
            c.routes[0].streaming.ca_file,
            Some(dir.path().join("ca.pem"))
        );
        let text = text.replace("ca_file: ca.pem }\n", "ca_file: nope.pem }\n");
        let err = compile(&config, &text, 1).unwrap_err();
        assert!(err.0[0].message.starts_with("cannot read ca_file"), "{err}");
    }
}
