//! Metric names (one constant each), their descriptions, the Prometheus
//! recorder, and the per-route handles the hot path increments without any
//! string lookup.

use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::config::{FallbackReason, Mode, Rule, SideName};
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

/// Histogram buckets for latencies: 100 us to 10 s, dense below 10 ms where a
/// local sidecar and a healthy upstream live.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

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
    /// Routes a reload removed, as the `{consumer="..",route=".."` that opens
    /// their series: left out of `render`. The exporter cannot delete a
    /// series, and a route that comes back continues its counters.
    hidden: Arc<Mutex<Vec<String>>>,
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
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
            .expect("bucket list is a non-empty constant")
            .build_recorder();
        let handle = recorder.handle();
        let m = Metrics {
            recorder: Arc::new(recorder),
            handle,
            hidden: Default::default(),
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

    /// Prometheus text exposition of everything recorded so far, less the
    /// series of routes a reload removed.
    pub fn render(&self) -> String {
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
        self.hide(route.labels_text());
    }

    /// Shows a route's series again (a reload brought it back).
    pub fn show_route(&self, route: &RouteKey) {
        self.show(&route.labels_text());
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

/// What identifies a route's series: the labels every per-route series
/// starts with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    pub consumer: String,
    pub route: String,
    pub dataset: String,
}

impl RouteKey {
    fn labels(&self) -> Vec<Label> {
        vec![
            label("consumer", self.consumer.clone()),
            label("route", self.route.clone()),
            label("dataset", self.dataset.clone()),
        ]
    }

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

/// Handles for one route, created once per route name and kept across
/// reloads. Indexed by `SideName::index`, `FallbackReason::index`, ...
#[derive(Debug)]
pub struct RouteMetrics {
    /// [side][code class]
    pub requests: [[Counter; CODE_CLASSES.len()]; 2],
    pub request_duration: [Histogram; 2],
    /// [side][`AttemptOutcome::result_index`]
    pub upstream_requests: [[Counter; AttemptOutcome::RESULTS.len()]; 2],
    pub upstream_duration: [Histogram; 2],
    pub fallbacks: [Counter; FallbackReason::ALL.len()],
    pub watermark: [Gauge; 2],
    pub data_age: [Gauge; 2],
    pub freshness_delta: Gauge,
    pub error_ratio: [Gauge; 2],
    pub error_ratio_delta: Gauge,
    pub reconcile: [Counter; Verdict::ALL.len()],
    pub divergences: [Counter; Category::ALL.len()],
    pub reconcile_skipped: [Counter; Skip::ALL.len()],
    pub divergence_ratio: Gauge,
    pub route_mode: [Gauge; Mode::ALL.len()],
    pub circuit_open: Gauge,
    pub circuit_opens: Counter,
    pub gate_tripped: Gauge,
    /// [`CheckVerdict::index`]
    pub gate_checks: [Counter; CheckVerdict::ALL.len()],
    /// [`Check::index`]
    pub gate_trips: [Counter; Check::ALL.len()],
    pub sequence_pins: Gauge,
    /// [side]
    pub sequence_pinned_reads: [Counter; 2],
    pub sequence_refused: Counter,
    /// [`CONTRACT_RESULTS`] index
    pub contract_checks: [Counter; CONTRACT_RESULTS.len()],
    /// [`Rule::index`]
    pub contract_violations: [Counter; Rule::ALL.len()],
}

impl RouteMetrics {
    pub fn new(m: &Metrics, key: &RouteKey) -> RouteMetrics {
        let base = || key.labels();
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut l = base();
            l.extend(extra.iter().map(|(k, v)| label(k, *v)));
            l
        };
        let sides = SideName::BOTH.map(|s| s.as_str());
        RouteMetrics {
            requests: sides.map(|s| {
                CODE_CLASSES
                    .map(|c| m.counter(REQUESTS_TOTAL, with(&[("side", s), ("code_class", c)])))
            }),
            request_duration: sides
                .map(|s| m.histogram(REQUEST_DURATION_SECONDS, with(&[("side", s)]))),
            upstream_requests: sides.map(|s| {
                AttemptOutcome::RESULTS.map(|r| {
                    let result = r.result().expect("RESULTS are attempts made");
                    m.counter(
                        UPSTREAM_REQUESTS_TOTAL,
                        with(&[("side", s), ("result", result)]),
                    )
                })
            }),
            upstream_duration: sides
                .map(|s| m.histogram(UPSTREAM_DURATION_SECONDS, with(&[("side", s)]))),
            fallbacks: FallbackReason::ALL
                .map(|r| m.counter(FALLBACKS_TOTAL, with(&[("reason", r.as_str())]))),
            watermark: sides
                .map(|s| m.gauge(DATA_WATERMARK_TIMESTAMP_SECONDS, with(&[("side", s)]))),
            data_age: sides.map(|s| m.gauge(DATA_AGE_SECONDS, with(&[("side", s)]))),
            freshness_delta: m.gauge(FRESHNESS_DELTA_SECONDS, base()),
            error_ratio: sides.map(|s| m.gauge(ERROR_RATIO, with(&[("side", s)]))),
            error_ratio_delta: m.gauge(ERROR_RATIO_DELTA, base()),
            reconcile: Verdict::ALL
                .map(|v| m.counter(RECONCILE_TOTAL, with(&[("result", v.as_str())]))),
            divergences: Category::ALL.map(|c| {
                m.counter(
                    RECONCILE_DIVERGENCES_TOTAL,
                    with(&[("category", c.as_str())]),
                )
            }),
            reconcile_skipped: Skip::ALL
                .map(|r| m.counter(RECONCILE_SKIPPED_TOTAL, with(&[("reason", r.as_str())]))),
            divergence_ratio: m.gauge(DIVERGENCE_RATIO, base()),
            route_mode: Mode::ALL.map(|md| m.gauge(ROUTE_MODE, with(&[("mode", md.as_str())]))),
            circuit_open: m.gauge(CIRCUIT_OPEN, base()),
            circuit_opens: m.counter(CIRCUIT_OPENS_TOTAL, base()),
            gate_tripped: m.gauge(GATE_TRIPPED, base()),
            gate_checks: CheckVerdict::ALL
                .map(|v| m.counter(GATE_CHECKS_TOTAL, with(&[("result", v.as_str())]))),
            gate_trips: Check::ALL
                .map(|c| m.counter(GATE_TRIPS_TOTAL, with(&[("check", c.as_str())]))),
            sequence_pins: m.gauge(SEQUENCE_PINS, base()),
            sequence_pinned_reads: sides
                .map(|s| m.counter(SEQUENCE_PINNED_READS_TOTAL, with(&[("side", s)]))),
            sequence_refused: m.counter(SEQUENCE_REFUSED_TOTAL, base()),
            contract_checks: CONTRACT_RESULTS
                .map(|r| m.counter(CONTRACT_CHECKS_TOTAL, with(&[("result", r)]))),
            contract_violations: Rule::ALL
                .map(|r| m.counter(CONTRACT_VIOLATIONS_TOTAL, with(&[("rule", r.as_str())]))),
        }
        .mark_unknown()
    }

    /// Marks every "unknown until seen" gauge as NaN, so a scrape before the
    /// first watermark (or attempt) does not read as perfectly fresh (or healthy).
    fn mark_unknown(self) -> RouteMetrics {
        for g in self
            .watermark
            .iter()
            .chain(&self.data_age)
            .chain(&self.error_ratio)
            .chain([&self.freshness_delta, &self.error_ratio_delta])
        {
            g.set(f64::NAN);
        }
        self
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
}
