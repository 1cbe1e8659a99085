//! The validated, typed configuration the rest of cutover sees: no serde, no strings to parse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method};

/// One config file, compiled: process-wide settings and the routes.
#[derive(Debug)]
pub struct Compiled {
    pub settings: Settings,
    /// Sorted by prefix length, longest first, so the first match wins.
    pub routes: Vec<Route>,
    /// What is allowed but probably not meant (a gate on a `batch` route),
    /// placed like errors: `cutover check` prints them, a reload logs them.
    pub warnings: Vec<super::ConfigError>,
}

/// The process-wide part of a config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Increments on each applied config (1 for the first).
    pub generation: u64,
    pub consumer: String,
    pub risk: Risk,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub runtime: RuntimeSettings,
    /// Where gate trips are kept across restarts; `None`: in memory only.
    pub state_file: Option<PathBuf>,
    /// `None`: no access log.
    pub access_log: Option<AccessLogSettings>,
}

/// Where the access log goes and how much of it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    pub target: LogTarget,
    /// Share of plain reads logged (0.0..=1.0); fallbacks and answers
    /// cutover made itself are always logged.
    pub sample: f64,
}

/// Where a log is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogTarget {
    Stdout,
    Stderr,
    /// Relative to the data directory (`--data-dir`), reopened on SIGUSR1.
    File(PathBuf),
}

/// Process-wide settings. Most apply live: each read takes them from the
/// config that serves it (`max_buffered_body`, `max_spooled_body`,
/// `body_timeout`, `max_inflight_reads`), or a reload resets a budget
/// (`max_compared_bytes`, `max_spooled_bytes`). What the listeners are
/// built with applies at start-up only (`restart_only_changes` names it
/// on a reload), and so does `shutdown_grace`, read once when serving starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// Time given to in-flight reads after SIGTERM/SIGINT before they are cut.
    pub shutdown_grace: Duration,
    /// Largest request body kept in memory so a fallback can resend it.
    pub max_buffered_body: usize,
    /// `max_spooled_body`: past `max_buffered_body`, a request body up to
    /// this is spooled to a file under `--data-dir` so it too can be sent
    /// twice (0: never; applies live).
    pub max_spooled_body: usize,
    /// `limits.head_timeout`: a request head (or the next one on a
    /// keep-alive connection) must arrive within this, on both listeners.
    pub head_timeout: Duration,
    /// `limits.body_timeout`: the longest pause between two pieces of a
    /// request body before the read is answered 408.
    pub body_timeout: Duration,
    /// `limits.handshake_timeout`: a new connection must show its protocol
    /// (an HTTP/1 byte, or the whole h2 preface) within this.
    pub handshake_timeout: Duration,
    /// `limits.idle_timeout`: an h2 connection with no read for this long
    /// is closed (GOAWAY). HTTP/1's keep-alive wait is `head_timeout`.
    pub idle_timeout: Duration,
    /// `limits.stream_idle_timeout`: an h2 stream whose answer sent nothing
    /// (upstream stalled, or the consumer stopped reading) for this long,
    /// counted from the answer's head, is reset alone.
    pub stream_idle_timeout: Duration,
    /// `limits.h2_ping_interval` / `h2_ping_timeout`: an h2 peer silent for
    /// the interval is pinged, and closed when the ping goes unanswered.
    pub h2_ping_interval: Duration,
    pub h2_ping_timeout: Duration,
    /// `limits.max_connections`: at this many consumer connections, a new
    /// one closes the longest-idle one to get in, or is closed at once
    /// and counted when none is idle.
    pub max_connections: usize,
    /// `limits.admin_max_connections`: the same for the admin listener.
    pub admin_max_connections: usize,
    /// `limits.max_inflight_reads`: reads waiting for an upstream answer
    /// beyond this are shed with 503 and `Retry-After` (applies live).
    pub max_inflight_reads: usize,
    /// `limits.max_compared_bytes`: bytes of answers all comparisons in
    /// flight may hold; a comparison past it is skipped (applies live).
    pub max_compared_bytes: usize,
    /// `limits.max_spooled_bytes`: bytes all spooled request bodies in
    /// flight may hold on disk; a body past it streams once (applies live).
    pub max_spooled_bytes: usize,
}

impl RuntimeSettings {
    /// What only a restart applies (the listeners are built with it):
    /// `key = value` for each that differs from `other`.
    pub fn restart_only_changes(&self, other: &RuntimeSettings) -> Vec<String> {
        let d = |v: Duration| format!("{v:?}");
        [
            ("head_timeout", d(self.head_timeout), d(other.head_timeout)),
            (
                "handshake_timeout",
                d(self.handshake_timeout),
                d(other.handshake_timeout),
            ),
            ("idle_timeout", d(self.idle_timeout), d(other.idle_timeout)),
            (
                "stream_idle_timeout",
                d(self.stream_idle_timeout),
                d(other.stream_idle_timeout),
            ),
            (
                "h2_ping_interval",
                d(self.h2_ping_interval),
                d(other.h2_ping_interval),
            ),
            (
                "h2_ping_timeout",
                d(self.h2_ping_timeout),
                d(other.h2_ping_timeout),
            ),
            (
                "max_connections",
                self.max_connections.to_string(),
                other.max_connections.to_string(),
            ),
            (
                "admin_max_connections",
                self.admin_max_connections.to_string(),
                other.admin_max_connections.to_string(),
            ),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(key, a, b)| format!("limits.{key} {a} -> {b}"))
        .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// Which side serves a route's reads: the migration phase it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Batch,
    Shadow,
    Canary,
    Streaming,
    StreamingOnly,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Batch,
        Mode::Shadow,
        Mode::Canary,
        Mode::Streaming,
        Mode::StreamingOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::Shadow => "shadow",
            Mode::Canary => "canary",
            Mode::Streaming => "streaming",
            Mode::StreamingOnly => "streaming_only",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Index into per-mode arrays (metric handles).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether streaming answers (some of) the consumer's reads: the modes
    /// a gate watches.
    pub fn serves_streaming(self) -> bool {
        matches!(self, Mode::Canary | Mode::Streaming | Mode::StreamingOnly)
    }
}

/// The two outputs of the same dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SideName {
    Batch,
    Streaming,
}

impl SideName {
    pub const BOTH: [SideName; 2] = [SideName::Batch, SideName::Streaming];

    pub fn as_str(self) -> &'static str {
        match self {
            SideName::Batch => "batch",
            SideName::Streaming => "streaming",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn other(self) -> SideName {
        match self {
            SideName::Batch => SideName::Streaming,
            SideName::Streaming => SideName::Batch,
        }
    }
}

/// Why a read that chose streaming was answered by batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    Connect,
    Timeout,
    Status5xx,
    Stale,
    Overflow,
    Circuit,
    /// Streaming's answer broke the route's contract (`on_violation: fallback`).
    Contract,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 7] = [
        FallbackReason::Connect,
        FallbackReason::Timeout,
        FallbackReason::Status5xx,
        FallbackReason::Stale,
        FallbackReason::Overflow,
        FallbackReason::Circuit,
        FallbackReason::Contract,
    ];

    /// The name used in config, in `x-cutover-fallback` and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Connect => "connect",
            FallbackReason::Timeout => "timeout",
            FallbackReason::Status5xx => "5xx",
            FallbackReason::Stale => "stale",
            FallbackReason::Overflow => "overflow",
            FallbackReason::Circuit => "circuit",
            FallbackReason::Contract => "contract",
        }
    }

    pub fn parse(s: &str) -> Option<FallbackReason> {
        FallbackReason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

/// A small set of fallback reasons (bit per reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReasonSet(u8);

impl ReasonSet {
    /// Every reason `fallback.on` may name (a contract's fallback follows
    /// `contract.on_violation` instead).
    pub fn all() -> ReasonSet {
        let mut s = ReasonSet(0);
        for r in FallbackReason::ALL
            .into_iter()
            .filter(|r| *r != FallbackReason::Contract)
        {
            s.insert(r);
        }
        s
    }

    pub fn empty() -> ReasonSet {
        ReasonSet(0)
    }

    pub fn insert(&mut self, r: FallbackReason) {
        self.0 |= 1 << r.index();
    }

    pub fn contains(self, r: FallbackReason) -> bool {
        self.0 & (1 << r.index()) != 0
    }
}

/// A small set of HTTP methods allowed on a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSet(Vec<Method>);

impl MethodSet {
    pub fn new(methods: Vec<Method>) -> MethodSet {
        MethodSet(methods)
    }

    pub fn contains(&self, m: &Method) -> bool {
        self.0.iter().any(|x| x == m)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Method> {
        self.0.iter()
    }
}

/// A configured route, compiled: settings only. What a route learns while
/// serving (circuit, windows, counts) lives beside it in `live::LiveRoute`.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// The data set the route reads (default: the route's name): a label on
    /// every per-route series, and what the fleet view groups by.
    pub dataset: String,
    /// Without a trailing slash (except the root prefix `/`).
    pub prefix: String,
    pub methods: MethodSet,
    pub batch: Side,
    pub streaming: Side,
    pub mode: Mode,
    pub canary: Canary,
    pub fallback: FallbackPolicy,
    pub freshness: Freshness,
    pub reconcile: Reconcile,
    /// Which reads belong together, and how long they stay on one side.
    pub sequence: Sequence,
    /// Automatic rollback; `None`: no gate.
    pub gate: Option<Gate>,
    /// What streaming's answers must satisfy; `None`: no contract.
    pub contract: Option<Contract>,
}

impl Route {
    /// The configuration of one of the route's two sides.
    pub fn side(&self, side: SideName) -> &Side {
        match side {
            SideName::Batch => &self.batch,
            SideName::Streaming => &self.streaming,
        }
    }
}

/// One upstream (batch or streaming) of a route.
#[derive(Debug, Clone)]
pub struct Side {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The URL's path without a trailing slash ("" for the root), which
    /// replaces the matched prefix.
    pub base_path: String,
    /// The URL's own query, kept in front of the read's query.
    pub base_query: Option<String>,
    pub connect_timeout: Duration,
    /// Until response headers arrive.
    pub timeout: Duration,
    /// Streaming reads in flight past which a read overflows to batch.
    pub max_inflight: Option<usize>,
    /// PEM file of extra trust anchors for an https upstream with a private CA.
    pub ca_file: Option<PathBuf>,
}

impl Side {
    /// The side's base URL as configured, for `/status`.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.authority,
            self.base_path_and_query()
        )
    }

    /// The base URL's path and query (what a probe asks for).
    pub fn base_path_and_query(&self) -> String {
        let path = if self.base_path.is_empty() {
            "/"
        } else {
            &self.base_path
        };
        match &self.base_query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Canary {
    /// Share of reads sent to streaming, 0.0..=100.0.
    pub percent: f64,
    pub sticky_header: Option<HeaderName>,
}

#[derive(Debug, Clone)]
pub struct FallbackPolicy {
    pub on: ReasonSet,
    pub max_staleness: Option<Duration>,
    pub circuit: CircuitPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive streaming failures that open the circuit.
    pub failures: u32,
    pub cooldown: Duration,
}

#[derive(Debug, Clone)]
pub struct Freshness {
    pub header: HeaderName,
    /// Use `Last-Modified` when the watermark header is absent.
    pub last_modified_fallback: bool,
    /// Probe a side that no read has touched for this long; `None` disables.
    pub probe_interval: Option<Duration>,
    pub probe_method: Method,
    /// Sliding window for the error-rate and divergence ratios.
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct Reconcile {
    /// Share of streaming-served reads compared against batch (0.0..=1.0);
    /// shadow mode compares every read unless set explicitly.
    pub sample: f64,
    pub sample_explicit: bool,
    /// JSON pointer to the record array ("" for the whole body).
    pub records: String,
    pub key: Option<String>,
    pub ignore: Vec<String>,
    pub numeric_tolerance: f64,
    /// Field holding a record's event time, for `timing` classification.
    pub event_time_field: Option<String>,
    pub divergence_log: Option<PathBuf>,
    /// Comparisons in flight past which a comparison is skipped.
    pub max_inflight: usize,
    /// Bytes of each answer kept for comparison; past this it is skipped.
    /// Decoded bytes count too.
    pub max_body_bytes: usize,
    pub format: Format,
}

/// `reconcile.format`: how answers are read into records (SPEC 1.2). How
/// one is recognised from a `Content-Type` is `decide::reconcile::format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// By `Content-Type`, else JSON if it parses, else bytes.
    #[default]
    Auto,
    Json,
    Ndjson,
    Csv,
    Tsv,
    Parquet,
    /// Compared as bytes: equal or not.
    Bytes,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Auto,
        Format::Json,
        Format::Ndjson,
        Format::Csv,
        Format::Tsv,
        Format::Parquet,
        Format::Bytes,
    ];

    /// The config's word for a format (`auto json ndjson csv tsv parquet
    /// bytes`, exactly, as every config word is).
    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Parquet => "parquet",
            Format::Bytes => "bytes",
        }
    }
}

/// Which reads of a route form one logical read (every read of one object,
/// every page of one listing), so that one side answers all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// Query parameters that continue a listing: left out of the listing's
    /// key, and a read carrying one continues a sequence.
    pub params: Vec<String>,
    /// How long after its last read a sequence keeps its side.
    pub pin_ttl: Duration,
    /// Sequences remembered per route; the least recently read go first.
    pub max_pins: usize,
}

/// A route's gate: every `interval`, each configured threshold is checked
/// over `window`; `failures` evaluations in a row with a failed check roll
/// the route back to `rollback_to`. Compared as a whole: a reload that
/// changes any of it re-arms a tripped gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub interval: Duration,
    pub window: Duration,
    pub failures: u32,
    /// Fewer streaming reads (comparisons, for the divergence check) in the
    /// window: the check is inconclusive.
    pub min_reads: u64,
    pub max_error_ratio_delta: Option<f64>,
    pub max_fallback_ratio: Option<f64>,
    pub max_divergence_ratio: Option<f64>,
    pub max_streaming_age: Option<Duration>,
    /// Violations over checked answers (`min_reads` counts checked answers).
    pub max_contract_violation_ratio: Option<f64>,
    /// `Batch` or `Shadow`.
    pub rollback_to: Mode,
}

/// A route's contract (SPEC 1.2 "Contracts"): the properties its consumers
/// depend on, checked on streaming's answers, record by record as the
/// comparator finds them (`reconcile.records`, `reconcile.format`).
#[derive(Debug, Clone)]
pub struct Contract {
    /// `contract.schema`, compiled once per reload; `None`: no schema rule.
    pub schema: Option<Schema>,
    /// Top-level fields whose values together no two records share.
    pub unique: Vec<String>,
    /// Top-level fields the records are ordered by (ties allowed).
    pub sorted_by: Vec<SortKey>,
    /// Top-level fields every record carries, not null.
    pub not_null: Vec<String>,
    pub complete: Option<Complete>,
    pub on_violation: OnViolation,
    /// Answers up to this are checked before they are served.
    pub max_body_bytes: usize,
    /// Share of streaming's answers checked (0.0..=1.0).
    pub sample: f64,
    /// Under `--data-dir`; `None`: violations are counted only.
    pub dead_letter: Option<PathBuf>,
}

/// A compiled JSON Schema and the file it came from.
#[derive(Clone)]
pub struct Schema {
    /// `contract.schema` joined to the config file's directory (as the
    /// config was named), for messages and the effective config.
    pub path: PathBuf,
    pub validator: std::sync::Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("path", &self.path).finish()
    }
}

/// One field of `sorted_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub field: String,
    /// Written with a leading `-`.
    pub descending: bool,
}

/// `contract.complete`: the records reach across the window the query
/// names, up to the answer's watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complete {
    /// The record field holding its event time (RFC 3339 or Unix s/ms).
    pub event_time: String,
    /// Query parameters naming the window's start and end.
    pub from: String,
    pub to: String,
    pub tolerance: Duration,
}

/// What a violation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnViolation {
    /// Counted, logged, served anyway.
    #[default]
    Record,
    /// Answered by batch instead, when the answer was held and checked
    /// before it was served.
    Fallback,
}

impl OnViolation {
    pub fn as_str(self) -> &'static str {
        match self {
            OnViolation::Record => "record",
            OnViolation::Fallback => "fallback",
        }
    }
}

/// The contract's rules, as metric labels and dead-letter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Schema,
    Unique,
    Sorted,
    NotNull,
    Complete,
}

impl Rule {
    pub const ALL: [Rule; 5] = [
        Rule::Schema,
        Rule::Unique,
        Rule::Sorted,
        Rule::NotNull,
        Rule::Complete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Schema => "schema",
            Rule::Unique => "unique",
            Rule::Sorted => "sorted",
            Rule::NotNull => "not_null",
            Rule::Complete => "complete",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
