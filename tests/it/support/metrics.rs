//! What `/metrics` says, read by name: the Prometheus text parsed into
//! samples (`Metrics`), the SPEC's metric names written once (the constants
//! below), and one helper per family named for what it counts (`Families`),
//! so that a test reads `m.fallbacks("5xx")` rather than a name and a label
//! list.
//!
//! ```ignore
//! let m = p.scrape().await;
//! assert_eq!(m.requests("batch", "2xx"), 3.0);          // any route (one series)
//! assert_eq!(m.route("orders").fallbacks("connect"), 1.0);
//! assert_eq!(m.consumer("renamed").reloads("ok"), 1.0);
//! assert_eq!(m.required().route("orders").circuit_open(), 0.0); // exported, 0
//! ```
//!
//! The names are spelled out here rather than taken from `cutover::metrics`:
//! they are the interface a dashboard depends on, so a rename in the library
//! must fail these tests, not follow along silently.

// ------------------------------------------------------------ names (SPEC)

pub const REQUESTS: &str = "cutover_requests_total";
pub const UPSTREAM_REQUESTS: &str = "cutover_upstream_requests_total";
pub const FALLBACKS: &str = "cutover_fallbacks_total";
pub const DATA_WATERMARK: &str = "cutover_data_watermark_timestamp_seconds";
pub const DATA_AGE: &str = "cutover_data_age_seconds";
pub const FRESHNESS_DELTA: &str = "cutover_freshness_delta_seconds";
pub const ERROR_RATIO: &str = "cutover_error_ratio";
pub const ERROR_RATIO_DELTA: &str = "cutover_error_ratio_delta";
pub const RECONCILE: &str = "cutover_reconcile_total";
pub const DIVERGENCES: &str = "cutover_reconcile_divergences_total";
pub const RECONCILE_SKIPPED: &str = "cutover_reconcile_skipped_total";
pub const DIVERGENCE_RATIO: &str = "cutover_divergence_ratio";
pub const ROUTE_MODE: &str = "cutover_route_mode";
pub const CIRCUIT_OPEN: &str = "cutover_circuit_open";
pub const CONFIG_RELOADS: &str = "cutover_config_reloads_total";
pub const CONFIG_GENERATION: &str = "cutover_config_generation";
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "cutover_config_last_reload_successful";
pub const CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP: &str =
    "cutover_config_last_reload_success_timestamp_seconds";
pub const BUILD_INFO: &str = "cutover_build_info";
pub const CONSUMER_INFO: &str = "cutover_consumer_info";
pub const GATE_TRIPPED: &str = "cutover_gate_tripped";
pub const GATE_TRIPS: &str = "cutover_gate_trips_total";
pub const GATE_CHECKS: &str = "cutover_gate_checks_total";
pub const SEQUENCE_PINS: &str = "cutover_sequence_pins";
pub const SEQUENCE_PINNED_READS: &str = "cutover_sequence_pinned_reads_total";
pub const SEQUENCE_REFUSED: &str = "cutover_sequence_refused_total";
pub const CONNECTIONS_OPEN: &str = "cutover_connections_open";
pub const CONNECTIONS_REFUSED: &str = "cutover_connections_refused_total";
pub const READS_INFLIGHT: &str = "cutover_reads_inflight";
pub const READS_SHED: &str = "cutover_reads_shed_total";

// ------------------------------------------------------------ one helper per family

/// Each metric family a test asserts on, by what it counts. Every helper is
/// the value of the one matching series (0 when there is none; more than
/// one fails the test: narrow with `route` or `consumer`). The test does the
/// asserting.
pub trait Families {
    /// The value of `name` on the one series whose labels include `labels`
    /// (and the view's own), 0 when absent.
    fn series(&self, name: &str, labels: &[(&str, &str)]) -> f64;

    /// Reads answered, by serving side and code class (`2xx` .. `5xx`).
    fn requests(&self, side: &str, code_class: &str) -> f64 {
        self.series(REQUESTS, &[("side", side), ("code_class", code_class)])
    }

    /// Upstream attempts, by side and result (`ok`, `connect`, `5xx`, ...).
    fn upstream(&self, side: &str, result: &str) -> f64 {
        self.series(UPSTREAM_REQUESTS, &[("side", side), ("result", result)])
    }

    /// Fallbacks to batch, by reason.
    fn fallbacks(&self, reason: &str) -> f64 {
        self.series(FALLBACKS, &[("reason", reason)])
    }

    /// Comparisons, by result (`match`, `diverged`, `skipped`).
    fn reconciled(&self, result: &str) -> f64 {
        self.series(RECONCILE, &[("result", result)])
    }

    /// Divergences, by category.
    fn divergences(&self, category: &str) -> f64 {
        self.series(DIVERGENCES, &[("category", category)])
    }

    /// Comparisons skipped, by reason.
    fn skipped(&self, reason: &str) -> f64 {
        self.series(RECONCILE_SKIPPED, &[("reason", reason)])
    }

    /// Contract checks of streaming answers, by result (`pass`,
    /// `violation`, `skipped`).
    fn contract_checks(&self, result: &str) -> f64 {
        self.series("cutover_contract_checks_total", &[("result", result)])
    }

    /// Answers that broke a contract rule, by rule.
    fn contract_violations(&self, rule: &str) -> f64 {
        self.series("cutover_contract_violations_total", &[("rule", rule)])
    }

    fn divergence_ratio(&self) -> f64 {
        self.series(DIVERGENCE_RATIO, &[])
    }

    /// 1 on the mode a route is in (effective), 0 on the others.
    fn route_mode(&self, mode: &str) -> f64 {
        self.series(ROUTE_MODE, &[("mode", mode)])
    }

    fn circuit_open(&self) -> f64 {
        self.series(CIRCUIT_OPEN, &[])
    }

    /// Config reloads, by result (`ok`, `error`).
    fn reloads(&self, result: &str) -> f64 {
        self.series(CONFIG_RELOADS, &[("result", result)])
    }

    fn generation(&self) -> f64 {
        self.series(CONFIG_GENERATION, &[])
    }

    fn last_reload_successful(&self) -> f64 {
        self.series(CONFIG_LAST_RELOAD_SUCCESSFUL, &[])
    }

    fn gate_tripped(&self) -> f64 {
        self.series(GATE_TRIPPED, &[])
    }

    /// Gate trips, by the check that tripped.
    fn gate_trips(&self, check: &str) -> f64 {
        self.series(GATE_TRIPS, &[("check", check)])
    }

    /// Gate evaluations, by result (`pass`, `fail`, `inconclusive`).
    fn gate_checks(&self, result: &str) -> f64 {
        self.series(GATE_CHECKS, &[("result", result)])
    }

    fn error_ratio(&self, side: &str) -> f64 {
        self.series(ERROR_RATIO, &[("side", side)])
    }

    /// Streaming's error ratio less batch's.
    fn error_ratio_delta(&self) -> f64 {
        self.series(ERROR_RATIO_DELTA, &[])
    }

    /// A side's last data watermark, Unix seconds.
    fn watermark(&self, side: &str) -> f64 {
        self.series(DATA_WATERMARK, &[("side", side)])
    }

    fn data_age(&self, side: &str) -> f64 {
        self.series(DATA_AGE, &[("side", side)])
    }

    fn freshness_delta(&self) -> f64 {
        self.series(FRESHNESS_DELTA, &[])
    }

    /// Logical reads remembered as pinned to a side.
    fn sequence_pins(&self) -> f64 {
        self.series(SEQUENCE_PINS, &[])
    }

    /// Reads served by the side their sequence is pinned to.
    fn pinned_reads(&self, side: &str) -> f64 {
        self.series(SEQUENCE_PINNED_READS, &[("side", side)])
    }

    /// Continuing reads refused because their side failed.
    fn sequence_refused(&self) -> f64 {
        self.series(SEQUENCE_REFUSED, &[])
    }
}

impl Families for Metrics {
    fn series(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
    }
}

/// One scrape seen through fixed labels: `m.route("orders")`,
/// `m.consumer("c").route("orders")`. Every `Families` helper on it also
/// requires those labels. Under `m.required()` a series that is not
/// exported fails the test instead of reading 0.
pub struct Scoped<'a> {
    metrics: &'a Metrics,
    labels: Vec<(&'a str, &'a str)>,
    required: bool,
}

impl<'a> Scoped<'a> {
    pub fn route(mut self, route: &'a str) -> Scoped<'a> {
        self.labels.push(("route", route));
        self
    }

    pub fn consumer(mut self, consumer: &'a str) -> Scoped<'a> {
        self.labels.push(("consumer", consumer));
        self
    }
}

impl Families for Scoped<'_> {
    fn series(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let all: Vec<(&str, &str)> = self.labels.iter().chain(labels).copied().collect();
        match self.metrics.get(name, &all) {
            Some(v) => v,
            None if self.required => {
                panic!("{name} {all:?} is not exported:\n{}", self.metrics.text)
            }
            None => 0.0,
        }
    }
}

// ------------------------------------------------------------ the text, parsed

/// One sample line: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// A parsed Prometheus text exposition.
#[derive(Debug)]
pub struct Metrics {
    pub text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let value: f64 = value.parse().expect("numeric sample");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let rest = rest.trim_end_matches('}');
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').expect("label k=v");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (n.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics {
            text: text.to_owned(),
            samples,
        }
    }

    /// The value of the one series of `name` whose labels include all of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        match matching.as_slice() {
            [] => None,
            [v] => Some(*v),
            many => panic!("{name} {labels:?} matches {} series", many.len()),
        }
    }

    /// As `get`, 0 when the series is absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

impl Metrics {
    /// The series of one route.
    pub fn route<'a>(&'a self, route: &'a str) -> Scoped<'a> {
        self.view(false).route(route)
    }

    /// The series of one consumer.
    pub fn consumer<'a>(&'a self, consumer: &'a str) -> Scoped<'a> {
        self.view(false).consumer(consumer)
    }

    /// Every series, each one required: for a test that proves a series is
    /// exported (with 0 as much as with any other value).
    pub fn required(&self) -> Scoped<'_> {
        self.view(true)
    }

    fn view(&self, required: bool) -> Scoped<'_> {
        Scoped {
            metrics: self,
            labels: Vec::new(),
            required,
        }
    }

    /// Every sample: name, labels, value.
    pub fn samples(&self) -> impl Iterator<Item = (&str, &[(String, String)], f64)> {
        self.samples
            .iter()
            .map(|(n, l, v)| (n.as_str(), l.as_slice(), *v))
    }
}
