//! Metric names (one constant each), their descriptions, the Prometheus
//! recorder, and the per-route handles the hot path increments without any
//! string lookup.

mod cells;
mod exposition;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};

pub use self::cells::LATENCY_BUCKETS;
use self::cells::{Counter as Cell, Gauge as GaugeCell, Histogram as HistogramCell};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::config::{FallbackReason, Mode, Rule};
use crate::decide::fallback::AttemptOutcome;
use crate::decide::reconcile::outcome::{Skip, Verdict};
use crate::decide::reconcile::report::Category;
use crate::state::gate::{Check, CheckVerdict};

pub const REQUESTS_TOTAL: &str = "cutover_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "cutover_request_duration_seconds";
pub const UPSTREAM_REQUESTS_TOTAL: &str = "cutover_upstream_requests_total";
pub const UPSTREAM_DURATION_SECONDS: &str = "cutover_upstream_duration_seconds";
pub const FALLBACKS_TOTAL: &str = "cutover_fallbacks_total";
pub const DATA_WATERMARK_TIMESTAMP_SECONDS: &str = "cutover_data_watermark_timestamp_seconds";
pub const DATA_AGE_SECONDS: &str = "cutover_data_age_seconds";
pub const FRESHNESS_DELTA_SECONDS: &str = "cutover_freshness_delta_seconds";
pub const ERROR_RATIO: &str = "cutover_error_ratio";
pub const ERROR_RATIO_DELTA: &str = "cutover_error_ratio_delta";
pub const RECONCILE_TOTAL: &str = "cutover_reconcile_total";
pub const RECONCILE_DIVERGENCES_TOTAL: &str = "cutover_reconcile_divergences_total";
pub const DIVERGENCE_RATIO: &str = "cutover_divergence_ratio";
pub const ROUTE_MODE: &str = "cutover_route_mode";
pub const CIRCUIT_OPEN: &str = "cutover_circuit_open";
pub const CONFIG_RELOADS_TOTAL: &str = "cutover_config_reloads_total";
pub const CONFIG_GENERATION: &str = "cutover_config_generation";
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "cutover_config_last_reload_successful";
pub const CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: &str =
    "cutover_config_last_reload_success_timestamp_seconds";
pub const BUILD_INFO: &str = "cutover_build_info";
pub const CONSUMER_INFO: &str = "cutover_consumer_info";
pub const CIRCUIT_OPENS_TOTAL: &str = "cutover_circuit_opens_total";
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "cutover_access_log_dropped_total";
pub const GATE_TRIPPED: &str = "cutover_gate_tripped";
pub const GATE_CHECKS_TOTAL: &str = "cutover_gate_checks_total";
pub const GATE_TRIPS_TOTAL: &str = "cutover_gate_trips_total";
pub const CONNECTIONS_OPEN: &str = "cutover_connections_open";
pub const CONNECTIONS_REFUSED_TOTAL: &str = "cutover_connections_refused_total";
pub const CONNECTIONS_RECLAIMED_TOTAL: &str = "cutover_connections_reclaimed_total";
pub const READS_INFLIGHT: &str = "cutover_reads_inflight";
pub const READS_SHED_TOTAL: &str = "cutover_reads_shed_total";
pub const SEQUENCE_PINS: &str = "cutover_sequence_pins";
pub const SEQUENCE_PINNED_READS_TOTAL: &str = "cutover_sequence_pinned_reads_total";
pub const SEQUENCE_REFUSED_TOTAL: &str = "cutover_sequence_refused_total";

/// Response status classes used as the `code_class` label.
pub const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Comparisons skipped, by reason (an addition to SPEC's metrics).
pub const RECONCILE_SKIPPED_TOTAL: &str = "cutover_reconcile_skipped_total";
pub const CONTRACT_CHECKS_TOTAL: &str = "cutover_contract_checks_total";
pub const CONTRACT_VIOLATIONS_TOTAL: &str = "cutover_contract_violations_total";
/// Contract checks by result, in the order of `cutover_contract_checks_total`'s
/// `result` label.
pub const CONTRACT_RESULTS: [&str; 3] = ["pass", "violation", "skipped"];

/// What a metric is: one row per metric name, read by the exporter (its
/// `# HELP` and `# TYPE`) and by `cutover fleet`, whose PromQL names the same
/// constants, so a rename is a compile error rather than an empty board.
/// `labels` are the metric's own, beside `consumer`, `route` and `dataset`
/// on every per-route series.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric cutover exports.
pub const METRICS: &[Def] = &[
    Def {
        name: REQUESTS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["side", "code_class"],
        help: "Reads answered to the consumer, by the side that served them.",
    },
    Def {
        name: UPSTREAM_REQUESTS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["side", "result"],
        help: "Upstream attempts, shadow and probe included, by result.",
    },
    Def {
        name: FALLBACKS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["reason"],
        help: "Reads served by batch after streaming was chosen, by reason.",
    },
    Def {
        name: RECONCILE_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["result"],
        help: "Comparisons of the two sides' answers, by result.",
    },
    Def {
        name: RECONCILE_DIVERGENCES_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["category"],
        help: "Diverging records, by category.",
    },
    Def {
        name: RECONCILE_SKIPPED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["reason"],
        help: "Comparisons skipped to bound cost, by reason.",
    },
    Def {
        name: CONTRACT_CHECKS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["result"],
        help: "Streaming answers checked against the route's contract: pass, violation, or skipped (too large, undecodable, not records).",
    },
    Def {
        name: CONTRACT_VIOLATIONS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["rule"],
        help: "Streaming answers that broke a contract rule, once per answer per rule.",
    },
    Def {
        name: CONFIG_RELOADS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["result"],
        help: "Config reload attempts, by result.",
    },
    Def {
        name: ACCESS_LOG_DROPPED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &[],
        help: "Access log entries dropped because the writer's queue was full.",
    },
    Def {
        name: CIRCUIT_OPENS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &[],
        help: "Times the route's streaming circuit opened.",
    },
    Def {
        name: GATE_CHECKS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["result"],
        help: "Gate checks evaluated, by verdict (pass, fail, inconclusive).",
    },
    Def {
        name: GATE_TRIPS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["check"],
        help: "Gate trips, by the check that failed last.",
    },
    Def {
        name: CONNECTIONS_REFUSED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["listener"],
        help: "Connections closed at once because limits.max_connections were open, by listener.",
    },
    Def {
        name: CONNECTIONS_RECLAIMED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["listener"],
        help: "Idle connections closed gracefully to admit a new one at limits.max_connections, by listener.",
    },
    Def {
        name: READS_SHED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &[],
        help: "Reads answered 503 with Retry-After because limits.max_inflight_reads were in flight.",
    },
    Def {
        name: SEQUENCE_PINNED_READS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &["side"],
        help: "Reads whose side a sequence pin decided (a continuing read, or any read of a sequence a fallback pinned), by side.",
    },
    Def {
        name: SEQUENCE_REFUSED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        labels: &[],
        help: "Reads continuing a sequence whose side failed, answered with that failure rather than by the other side.",
    },
    Def {
        name: REQUEST_DURATION_SECONDS,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        labels: &["side"],
        help: "Consumer-visible latency to the response head.",
    },
    Def {
        name: UPSTREAM_DURATION_SECONDS,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        labels: &["side"],
        help: "Upstream time to response headers.",
    },
    Def {
        name: DATA_WATERMARK_TIMESTAMP_SECONDS,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        labels: &["side"],
        help: "Watermark last seen from the side (Unix seconds).",
    },
    Def {
        name: DATA_AGE_SECONDS,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        labels: &["side"],
        help: "Now minus the side's last watermark, at scrape time.",
    },
    Def {
        name: FRESHNESS_DELTA_SECONDS,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        labels: &[],
        help: "Batch age minus streaming age (positive: streaming is fresher).",
    },
    Def {
        name: ERROR_RATIO,
        kind: Kind::Gauge,
        unit: None,
        labels: &["side"],
        help: "Failed share of upstream attempts over the recent window.",
    },
    Def {
        name: ERROR_RATIO_DELTA,
        kind: Kind::Gauge,
        unit: None,
        labels: &[],
        help: "Streaming minus batch error ratio over the recent window.",
    },
    Def {
        name: DIVERGENCE_RATIO,
        kind: Kind::Gauge,
        unit: None,
        labels: &[],
        help: "Diverged share of comparisons over the recent window.",
    },
    Def {
        name: ROUTE_MODE,
        kind: Kind::Gauge,
        unit: None,
        labels: &["mode"],
        help: "1 for the route's effective mode, 0 for the others.",
    },
    Def {
        name: CIRCUIT_OPEN,
        kind: Kind::Gauge,
        unit: None,
        labels: &[],
        help: "1 while the route's streaming circuit is open.",
    },
    Def {
        name: CONFIG_GENERATION,
        kind: Kind::Gauge,
        unit: None,
        labels: &[],
        help: "Generation of the applied config; increments on each reload.",
    },
    Def {
        name: CONFIG_LAST_RELOAD_SUCCESSFUL,
        kind: Kind::Gauge,
        unit: None,
        labels: &[],
        help: "1 when the last reload attempt applied (or found nothing to change), 0 while the file on disk is rejected.",
    },
    Def {
        name: CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        labels: &[],
        help: "When the serving config was applied (Unix seconds).",
    },
    Def {
        name: GATE_TRIPPED,
        kind: Kind::Gauge,
        unit: None,
        labels: &[],
        help: "1 while the route's gate is tripped (the route is rolled back).",
    },
    Def {
        name: BUILD_INFO,
        kind: Kind::Gauge,
        unit: None,
        labels: &["version"],
        help: "1, labelled with cutover's version.",
    },
    Def {
        name: SEQUENCE_PINS,
        kind: Kind::Gauge,
        unit: None,
        labels: &[],
        help: "Sequences (objects read in ranges, listings read in pages) the route remembers with their side.",
    },
    Def {
        name: CONNECTIONS_OPEN,
        kind: Kind::Gauge,
        unit: None,
        labels: &["listener"],
        help: "Connections open now, by listener (consumer or admin).",
    },
    Def {
        name: READS_INFLIGHT,
        kind: Kind::Gauge,
        unit: None,
        labels: &[],
        help: "Reads waiting for an upstream's answer now.",
    },
    Def {
        name: CONSUMER_INFO,
        kind: Kind::Gauge,
        unit: None,
        labels: &["risk"],
        help: "1 for the consumer's risk (a risk it had before a reload reads 0).",
    },
];

/// The process's metrics: a recorder of its own (not the global one, so that
/// several proxies can live in one test process) and the handle that renders it.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// Consumers a reload renamed, as the `consumer=".."` that opens their
    /// process-level series: left out of `render`. The exporter cannot
    /// delete a series.
    hidden: Arc<Mutex<Vec<String>>>,
    /// Every route's values, kept for the process's life: a route a reload
    /// removed is not shown, and one that comes back continues its counters.
    routes: Arc<Mutex<BTreeMap<RouteKey, Arc<Registered>>>>,
}

/// A route's values and how its series open.
#[derive(Debug)]
struct Registered {
    labels: String,
    cells: Arc<RouteCells>,
    shown: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Builds the recorder with latency buckets and describes every metric.
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &LATENCY_BUCKETS)
            .expect("bucket list is a non-empty constant")
            .build_recorder();
        let handle = recorder.handle();
        let m = Metrics {
            recorder: Arc::new(recorder),
            handle,
            hidden: Default::default(),
            routes: Default::default(),
        };
        m.describe();
        m
    }

    fn describe(&self) {
        let r = &self.recorder;
        for d in METRICS {
            let (name, help) = (d.name.into(), d.help.into());
            match d.kind {
                Kind::Counter => r.describe_counter(name, d.unit, help),
                Kind::Gauge => r.describe_gauge(name, d.unit, help),
                Kind::Histogram => r.describe_histogram(name, d.unit, help),
            }
        }
    }

    /// Prometheus text exposition, whole: what `scrape` sends in chunks.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for chunk in self.scrape() {
            out.push_str(&String::from_utf8_lossy(&chunk));
        }
        out
    }

    /// The process-level series, less those of consumers a reload renamed.
    fn process_text(&self) -> String {
        let text = self.handle.render();
        let hidden = self.hidden.lock().unwrap_or_else(|p| p.into_inner());
        if hidden.is_empty() {
            return text;
        }
        let mut kept = String::with_capacity(text.len());
        for line in text.lines() {
            let labels = line.split_once('{').map_or("", |(_, l)| l);
            if !hidden.iter().any(|h| labels.starts_with(h.as_str())) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        kept
    }

    /// A scrape as chunks of about 64 KiB: the process-level series, then
    /// each per-route family a few routes at a time, written as the
    /// client takes them (a thousand routes never hold a whole scrape in
    /// memory). Values are read as each chunk is written.
    pub fn scrape(&self) -> Scrape {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        Scrape {
            head: Some(Bytes::from(self.process_text())),
            routes: routes
                .values()
                .filter(|r| r.shown.load(Ordering::Relaxed))
                .cloned()
                .collect(),
            family: 0,
            next_route: 0,
        }
    }

    /// The values of `key`'s route: the ones it had if it was seen before.
    fn route_cells(&self, key: &RouteKey) -> Arc<RouteCells> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let r = routes.entry(key.clone()).or_insert_with(|| {
            Arc::new(Registered {
                labels: key.labels_text(),
                cells: Arc::new(RouteCells::unknown()),
                shown: AtomicBool::new(true),
            })
        });
        r.shown.store(true, Ordering::Relaxed);
        r.cells.clone()
    }

    fn show_route_series(&self, key: &RouteKey, shown: bool) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = routes.get(key) {
            r.shown.store(shown, Ordering::Relaxed);
        }
    }

    /// A listener's connection figures (`conn::Counters`), as of now.
    pub fn publish_connections(
        &self,
        consumer: &str,
        listener: &'static str,
        open: usize,
        refused: u64,
    ) {
        let labels = || {
            vec![
                label("consumer", consumer.to_owned()),
                label("listener", listener),
            ]
        };
        self.gauge(CONNECTIONS_OPEN, labels()).set(open as f64);
        self.counter(CONNECTIONS_REFUSED_TOTAL, labels())
            .absolute(refused);
    }

    /// Reads in flight and shed (`conn::ReadSlots`), as of now.
    pub fn publish_reads(&self, consumer: &str, inflight: usize, shed: u64) {
        let labels = || vec![label("consumer", consumer.to_owned())];
        self.gauge(READS_INFLIGHT, labels()).set(inflight as f64);
        self.counter(READS_SHED_TOTAL, labels()).absolute(shed);
    }

    /// Leaves a removed route's series out of `render`.
    pub fn hide_route(&self, route: &RouteKey) {
        self.show_route_series(route, false);
    }

    /// Shows a route's series again (a reload brought it back).
    pub fn show_route(&self, route: &RouteKey) {
        self.show_route_series(route, true);
    }

    /// Leaves every series of a consumer a reload renamed out of `render`.
    pub fn hide_consumer(&self, consumer: &str) {
        self.hide(format!("consumer=\"{}\"", escape_label(consumer)));
    }

    /// Shows a consumer's series again (a reload named it again).
    pub fn show_consumer(&self, consumer: &str) {
        self.show(&format!("consumer=\"{}\"", escape_label(consumer)));
    }

    fn hide(&self, prefix: String) {
        let mut hidden = self.hidden.lock().unwrap_or_else(|p| p.into_inner());
        if !hidden.contains(&prefix) {
            hidden.push(prefix);
        }
    }

    fn show(&self, prefix: &str) {
        let mut hidden = self.hidden.lock().unwrap_or_else(|p| p.into_inner());
        hidden.retain(|h| h != prefix);
    }

    /// Drains histogram samples into their buckets; call now and then so an
    /// unscraped proxy does not hold samples.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn key(name: &'static str, labels: Vec<Label>) -> Key {
        Key::from_parts(name, labels)
    }

    pub fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Self::key(name, labels), &metadata())
    }

    pub fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &metadata())
    }

    pub fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, labels), &metadata())
    }
}

/// Bytes a chunk of a scrape aims at.
const CHUNK_BYTES: usize = 64 * 1024;
/// Routes written per step of a chunk.
const ROUTES_PER_STEP: usize = 16;

/// A scrape being written: an iterator of chunks (`Metrics::scrape`).
pub struct Scrape {
    head: Option<Bytes>,
    routes: Vec<Arc<Registered>>,
    family: usize,
    next_route: usize,
}

impl Iterator for Scrape {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if let Some(head) = self.head.take() {
            return Some(head);
        }
        let mut out = String::new();
        while self.family < exposition::FAMILIES && out.len() < CHUNK_BYTES {
            if out.capacity() == 0 {
                out.reserve(CHUNK_BYTES + CHUNK_BYTES / 4);
            }
            let end = (self.next_route + ROUTES_PER_STEP).min(self.routes.len());
            let first = self.next_route == 0;
            exposition::write_family(
                &mut out,
                self.family,
                &self.routes[self.next_route..end],
                first,
            );
            self.next_route = end;
            if end >= self.routes.len() {
                self.family += 1;
                self.next_route = 0;
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

/// What identifies a route's series: the labels every per-route series
/// starts with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub consumer: String,
    pub route: String,
    pub dataset: String,
}

impl RouteKey {
    /// How the exporter writes these labels at the start of a series
    /// (values escaped as the text format escapes them).
    fn labels_text(&self) -> String {
        format!(
            "consumer=\"{}\",route=\"{}\",dataset=\"{}\"",
            escape_label(&self.consumer),
            escape_label(&self.route),
            escape_label(&self.dataset)
        )
    }
}

/// A label value as the text format writes it.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

pub fn label(k: &'static str, v: impl Into<SharedString>) -> Label {
    Label::new(k, v)
}

/// A route's values, written by the read's path: one atomic per series the
/// route can have, indexed by `SideName::index`, `FallbackReason::index`, ...
#[derive(Debug, Default)]
pub struct RouteCells {
    /// [side][code class]
    pub requests: [[Cell; CODE_CLASSES.len()]; 2],
    pub request_duration: [HistogramCell; 2],
    /// [side][`AttemptOutcome::result_index`]
    pub upstream_requests: [[Cell; AttemptOutcome::RESULTS.len()]; 2],
    pub upstream_duration: [HistogramCell; 2],
    pub fallbacks: [Cell; FallbackReason::ALL.len()],
    pub watermark: [GaugeCell; 2],
    pub data_age: [GaugeCell; 2],
    pub freshness_delta: GaugeCell,
    pub error_ratio: [GaugeCell; 2],
    pub error_ratio_delta: GaugeCell,
    pub reconcile: [Cell; Verdict::ALL.len()],
    pub divergences: [Cell; Category::ALL.len()],
    pub reconcile_skipped: [Cell; Skip::ALL.len()],
    pub divergence_ratio: GaugeCell,
    pub route_mode: [GaugeCell; Mode::ALL.len()],
    /// The modes a scrape has shown at 1 (bit `Mode::index`): shown from
    /// then on, at 0 after the route leaves them, so Prometheus' last value
    /// of a mode left is 0, not a 1 that merely stopped.
    pub modes_shown: std::sync::atomic::AtomicU8,
    pub circuit_open: GaugeCell,
    pub circuit_opens: Cell,
    pub gate_tripped: GaugeCell,
    /// [`CheckVerdict::index`]
    pub gate_checks: [Cell; CheckVerdict::ALL.len()],
    /// [`Check::index`]
    pub gate_trips: [Cell; Check::ALL.len()],
    pub sequence_pins: GaugeCell,
    /// [side]
    pub sequence_pinned_reads: [Cell; 2],
    pub sequence_refused: Cell,
    /// [`CONTRACT_RESULTS`] index
    pub contract_checks: [Cell; CONTRACT_RESULTS.len()],
    /// [`Rule::index`]
    pub contract_violations: [Cell; Rule::ALL.len()],
}

impl RouteCells {
    /// Every "unknown until seen" gauge at NaN, so a scrape before the
    /// first watermark (or attempt) does not read as perfectly fresh (or
    /// healthy).
    fn unknown() -> RouteCells {
        let c = RouteCells::default();
        for g in c
            .watermark
            .iter()
            .chain(&c.data_age)
            .chain(&c.error_ratio)
            .chain([&c.freshness_delta, &c.error_ratio_delta])
        {
            g.set(f64::NAN);
        }
        c
    }
}

/// One route's values, created once per route and kept across reloads
/// (`Metrics` keeps them; a route that comes back continues its counters).
#[derive(Debug)]
pub struct RouteMetrics {
    cells: Arc<RouteCells>,
}

impl std::ops::Deref for RouteMetrics {
    type Target = RouteCells;

    fn deref(&self) -> &RouteCells {
        &self.cells
    }
}

impl RouteMetrics {
    pub fn new(m: &Metrics, key: &RouteKey) -> RouteMetrics {
        RouteMetrics {
            cells: m.route_cells(key),
        }
    }

    /// Index of a status code's class in `CODE_CLASSES` (anything odd counts as 5xx).
    pub fn code_class(status: u16) -> usize {
        match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        }
    }
}

/// Process-level handles (no `route` label).
#[derive(Debug)]
pub struct ProcessMetrics {
    pub reloads_ok: Counter,
    pub reloads_error: Counter,
    pub generation: Gauge,
    pub last_reload_successful: Gauge,
    pub last_reload_success_timestamp: Gauge,
    metrics: Metrics,
    consumer: String,
}

impl ProcessMetrics {
    pub fn new(m: &Metrics, consumer: &str) -> ProcessMetrics {
        let l = |extra: Option<(&'static str, &'static str)>| {
            let mut v = vec![label("consumer", consumer.to_owned())];
            if let Some((k, val)) = extra {
                v.push(label(k, val));
            }
            v
        };
        m.gauge(BUILD_INFO, l(Some(("version", env!("CARGO_PKG_VERSION")))))
            .set(1.0);
        ProcessMetrics {
            reloads_ok: m.counter(CONFIG_RELOADS_TOTAL, l(Some(("result", "ok")))),
            reloads_error: m.counter(CONFIG_RELOADS_TOTAL, l(Some(("result", "error")))),
            generation: m.gauge(CONFIG_GENERATION, l(None)),
            last_reload_successful: m.gauge(CONFIG_LAST_RELOAD_SUCCESSFUL, l(None)),
            last_reload_success_timestamp: m
                .gauge(CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS, l(None)),
            metrics: m.clone(),
            consumer: consumer.to_owned(),
        }
    }

    /// The counter of access log entries dropped for `consumer`.
    pub fn access_log_dropped(m: &Metrics, consumer: &str) -> Counter {
        m.counter(
            ACCESS_LOG_DROPPED_TOTAL,
            vec![label("consumer", consumer.to_owned())],
        )
    }

    /// Sets `cutover_consumer_info` to 1 for `risk`, 0 for a risk it had before.
    pub fn set_risk(&self, risk: &'static str, before: Option<&'static str>) {
        let gauge = |r: &'static str| {
            self.metrics.gauge(
                CONSUMER_INFO,
                vec![label("consumer", self.consumer.clone()), label("risk", r)],
            )
        };
        if let Some(old) = before.filter(|o| *o != risk) {
            gauge(old).set(0.0);
        }
        gauge(risk).set(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SideName;

    #[test]
    fn every_exported_family_is_in_the_table_with_its_type() {
        let m = Metrics::new();
        let key = RouteKey {
            consumer: "c".into(),
            route: "r".into(),
            dataset: "d".into(),
        };
        let route = RouteMetrics::new(&m, &key);
        route.request_duration[0].record(0.01);
        route.upstream_duration[0].record(0.01);
        let process = ProcessMetrics::new(&m, "c");
        process.set_risk("low", None);
        m.publish_connections("c", "consumer", 1, 0);
        m.publish_reads("c", 0, 0);
        let text = m.render();
        let mut seen = 0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            let def = METRICS
                .iter()
                .find(|d| d.name == name)
                .unwrap_or_else(|| panic!("{name} is exported but not in METRICS"));
            let want = match def.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            assert_eq!(kind, want, "{name}");
            seen += 1;
        }
        assert!(seen >= 25, "only {seen} families rendered:\n{text}");
        let mut names: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a metric is in the table twice");
        for d in METRICS {
            assert!(d.name.starts_with("cutover_"), "{}", d.name);
            assert_eq!(
                d.name.ends_with("_total"),
                d.kind == Kind::Counter,
                "{}: counters, and only counters, end in _total",
                d.name
            );
        }
    }

    fn series_of(text: &str, route: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&format!("route=\"{route}\"")))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_route_shows_what_carries_information_and_keeps_the_zeros_increase_needs() {
        let m = Metrics::new();
        let key = |r: &str| RouteKey {
            consumer: "c".into(),
            route: r.into(),
            dataset: "d".into(),
        };
        let batch = RouteMetrics::new(&m, &key("b"));
        batch.route_mode[Mode::Batch.index()].set(1.0);
        let streaming = RouteMetrics::new(&m, &key("s"));
        streaming.route_mode[Mode::Streaming.index()].set(1.0);
        let text = m.render();
        // An idle batch route: its one read counter at 0, its mode, its
        // circuit and gate, and the unknown gauges (NaN, not a fresh 0).
        let b = series_of(&text, "b");
        assert!(b.iter().any(|l| l.starts_with("cutover_requests_total{consumer=\"c\",route=\"b\",dataset=\"d\",side=\"batch\",code_class=\"2xx\"} 0")), "{b:#?}");
        assert!(
            !b.iter()
                .any(|l| l.contains("side=\"streaming\",code_class")),
            "{b:#?}"
        );
        assert!(
            !b.iter().any(|l| l.starts_with("cutover_fallbacks_total")),
            "{b:#?}"
        );
        assert!(b.iter().any(|l| l.ends_with("mode=\"batch\"} 1")));
        assert_eq!(
            b.iter()
                .filter(|l| l.starts_with("cutover_route_mode"))
                .count(),
            1
        );
        assert!(
            b.iter()
                .any(|l| l.starts_with("cutover_data_age_seconds") && l.ends_with(" NaN"))
        );
        assert!(
            !b.iter().any(|l| l.contains("_bucket")),
            "no histogram before a read"
        );
        assert!(
            b.len() <= 15,
            "{} series for an idle batch route: {b:#?}",
            b.len()
        );
        // An idle streaming route also keeps every fallback reason and the
        // comparisons at 0: their first event must show as an increase.
        let s = series_of(&text, "s");
        assert_eq!(
            s.iter()
                .filter(|l| l.starts_with("cutover_fallbacks_total"))
                .count(),
            FallbackReason::ALL.len()
        );
        assert_eq!(
            s.iter()
                .filter(|l| l.starts_with("cutover_reconcile_total"))
                .count(),
            2
        );
        assert!(
            s.len() <= 30,
            "{} series for an idle streaming route: {s:#?}",
            s.len()
        );
        // After a read: counted series and one histogram per side read.
        streaming.requests[SideName::Streaming.index()][1].increment(1);
        streaming.request_duration[SideName::Streaming.index()].record(0.004);
        streaming.divergences[0].increment(2);
        let text = m.render();
        let s = series_of(&text, "s");
        assert!(
            s.iter()
                .any(|l| l.contains("cutover_request_duration_seconds_bucket")
                    && l.ends_with("side=\"streaming\",le=\"0.005\"} 1")),
            "{s:#?}"
        );
        assert!(s.iter().any(|l| l.contains("le=\"+Inf\"} 1")));
        assert!(
            !s.iter()
                .any(|l| l.contains("_bucket") && l.contains("side=\"batch\""))
        );
        assert!(s.iter().any(|l| l.starts_with("cutover_reconcile_divergences_total") && l.ends_with("} 2")));
        // A removed route leaves the scrape, and comes back with its counts.
        m.hide_route(&key("s"));
        assert!(series_of(&m.render(), "s").is_empty());
        let again = RouteMetrics::new(&m, &key("s"));
        assert_eq!(again.requests[SideName::Streaming.index()][1].get(), 1);
        assert!(!series_of(&m.render(), "s").is_empty());
    }
}
