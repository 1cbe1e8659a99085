//! The PromQL the board and the decommission check ask Prometheus, built
//! from the metric table's names (`state::metrics`), so a renamed metric is
//! a compile error here rather than an empty board.

use super::query::quote;
use crate::state::metrics::{
    CONSUMER_INFO, CONTRACT_CHECKS_TOTAL, FALLBACKS_TOTAL, GATE_TRIPPED, GATE_TRIPS_TOTAL,
    RECONCILE_DIVERGENCES_TOTAL, RECONCILE_TOTAL, REQUESTS_TOTAL, ROUTE_MODE,
    UPSTREAM_REQUESTS_TOTAL,
};

/// How far back the mode history goes: enough for the 14-day rule twice over.
pub const HISTORY_SECONDS: f64 = 30.0 * 86_400.0;
/// The history's resolution: time in mode and last batch read are exact to an hour.
pub const HISTORY_STEP: f64 = 3600.0;
/// The settle period of the next-to-move rule, as PromQL.
pub(super) const SETTLE: &str = "14d";
/// How far back every raw sample of the mode series is looked at, beyond the
/// hourly history: a sidecar that stopped before any hourly step saw it (it
/// ran for minutes) is still known, with the modes it had last.
pub const RECENT_SECONDS: f64 = 2.0 * HISTORY_STEP;
/// The resolution of a recently stopped sidecar's "last seen".
pub const RECENT_STEP: f64 = 15.0;

/// `[3600s]`: a PromQL range of whole seconds.
pub(super) fn range(seconds: f64) -> String {
    format!("[{}s]", seconds.round().max(1.0) as u64)
}

/// `{a="b",dataset="x"}` from fixed matchers and the optional dataset.
pub(super) fn selector(metric: &str, matchers: &[&str], dataset: Option<&str>) -> String {
    let mut all: Vec<String> = matchers.iter().map(|m| (*m).to_owned()).collect();
    if let Some(d) = dataset {
        all.push(format!("dataset={}", quote(d)));
    }
    if all.is_empty() {
        metric.to_owned()
    } else {
        format!("{metric}{{{}}}", all.join(","))
    }
}

/// Every query the board runs, by name: docs/fleet.md quotes these.
pub fn board_queries(dataset: Option<&str>, window: f64) -> Vec<(&'static str, String)> {
    let w = range(window);
    let s = |metric: &str, m: &[&str]| selector(metric, m, dataset);
    let by = "consumer, dataset";
    // Comparisons had been counted since: the earliest evaluation step in the
    // window at which a comparison counter was above zero.
    let step = (window / 60.0).max(15.0).round() as u64;
    vec![
        (
            "risk",
            format!(
                "max by (consumer, risk) (last_over_time({CONSUMER_INFO}{}) == 1)",
                range(HISTORY_SECONDS)
            ),
        ),
        (
            "mode",
            format!("max by ({by}, mode) ({} == 1)", s(ROUTE_MODE, &[])),
        ),
        (
            "reads",
            format!(
                "sum by ({by}, side) (increase({}{w}))",
                s(REQUESTS_TOTAL, &[])
            ),
        ),
        (
            "fallbacks",
            format!("sum by ({by}) (increase({}{w}))", s(FALLBACKS_TOTAL, &[])),
        ),
        (
            "attempts",
            format!(
                "sum by ({by}, side, result) (increase({}{w}))",
                s(UPSTREAM_REQUESTS_TOTAL, &[])
            ),
        ),
        (
            "comparisons",
            format!(
                "sum by ({by}, result) (increase({}{w}))",
                s(RECONCILE_TOTAL, &[])
            ),
        ),
        (
            "divergences",
            format!(
                "sum by ({by}, category) (increase({}{w}))",
                s(RECONCILE_DIVERGENCES_TOTAL, &[])
            ),
        ),
        (
            "contract_checks",
            format!(
                "sum by ({by}, result) (increase({}{w}))",
                s(CONTRACT_CHECKS_TOTAL, &[])
            ),
        ),
        (
            "compared_since",
            format!(
                "min by ({by}) (min_over_time(timestamp({} > 0){}:{step}s]))",
                s(RECONCILE_TOTAL, &[r#"result=~"match|diverged""#]),
                w.trim_end_matches(']')
            ),
        ),
        (
            "gate_trips",
            format!("sum by ({by}) (increase({}{w}))", s(GATE_TRIPS_TOTAL, &[])),
        ),
        (
            "gate_trips_settle",
            format!(
                "sum by ({by}) (increase({}[{SETTLE}]))",
                s(GATE_TRIPS_TOTAL, &[])
            ),
        ),
        (
            "gate_tripped_settle",
            format!(
                "max by ({by}) (max_over_time({}[{SETTLE}]))",
                s(GATE_TRIPPED, &[])
            ),
        ),
        (
            "gate_tripped",
            format!("max by ({by}) ({})", s(GATE_TRIPPED, &[])),
        ),
        (
            "recent_modes",
            format!(
                "max by ({by}, mode) (last_over_time({}{}) == 1)",
                s(ROUTE_MODE, &[]),
                range(RECENT_SECONDS)
            ),
        ),
        // timestamp() of a plain selector is its sample's time; a subquery
        // step can still miss a life shorter than RECENT_STEP.
        (
            "recent_seen",
            format!(
                "max by ({by}) (max_over_time(timestamp({}){}:{}s]))",
                s(ROUTE_MODE, &[]),
                range(RECENT_SECONDS).trim_end_matches(']'),
                RECENT_STEP as u64
            ),
        ),
    ]
}

/// The history of effective modes (query_range, `HISTORY_STEP`).
pub fn mode_history_query(dataset: Option<&str>) -> String {
    format!(
        "max by (consumer, dataset, mode) ({} == 1)",
        selector(ROUTE_MODE, &[], dataset)
    )
}

/// The page's histories (query_range, `HISTORY_STEP`), by name: per
/// consumer and dataset, each step's divergence ratio (diverged over
/// compared), and the steps with a gate trip or a fallback in them.
pub fn page_history_queries(dataset: Option<&str>) -> Vec<(&'static str, String)> {
    let step = range(HISTORY_STEP);
    let s = |metric: &str, m: &[&str]| selector(metric, m, dataset);
    let by = "consumer, dataset";
    vec![
        (
            "divergence",
            format!(
                "sum by ({by}) (increase({}{step})) / sum by ({by}) (increase({}{step}))",
                s(RECONCILE_TOTAL, &[r#"result="diverged""#]),
                s(RECONCILE_TOTAL, &[r#"result=~"match|diverged""#]),
            ),
        ),
        (
            "gate_trips",
            format!(
                "(sum by ({by}) (increase({}{step})) > 0) or (max by ({by}) (max_over_time({}{step})) > 0)",
                s(GATE_TRIPS_TOTAL, &[]),
                s(GATE_TRIPPED, &[]),
            ),
        ),
        (
            "fallbacks",
            format!(
                "sum by ({by}) (increase({}{step})) > 0",
                s(FALLBACKS_TOTAL, &[])
            ),
        ),
    ]
}

/// The raw batch attempt counters (query_range): every kind of batch read.
pub fn batch_counter_query(dataset: Option<&str>) -> String {
    selector(UPSTREAM_REQUESTS_TOTAL, &[r#"side="batch""#], dataset)
}

/// The decommission queries for `dataset` over `window`.
pub fn decommission_queries(dataset: &str, window: f64) -> Vec<(&'static str, String)> {
    let w = range(window);
    let d = Some(dataset);
    let batch = batch_counter_query(d);
    vec![
        (
            "known",
            format!(
                "max by (consumer, dataset, mode) (last_over_time({}{w}) == 1)",
                selector(ROUTE_MODE, &[], d)
            ),
        ),
        (
            "mode",
            format!(
                "max by (consumer, dataset, mode) ({} == 1)",
                selector(ROUTE_MODE, &[], d)
            ),
        ),
        (
            "batch_reads",
            format!("sum by (consumer, dataset) (increase({batch}{w}))"),
        ),
        // A batch counter series that did not exist at the window's start
        // (a new pod: new `instance`) yet is above zero: increase() sees no
        // rise before its first sample, so those reads are caught here.
        (
            "batch_reads_new_series",
            format!(
                "max by (consumer, dataset) (max_over_time({batch}{w}) unless {batch} offset {}s)",
                window.round() as u64
            ),
        ),
    ]
}

/// The range step for the decommission's last-batch-read history: about
/// 2000 points over the window, never under 15 s.
pub fn decommission_step(window: f64) -> f64 {
    (window / 2000.0).max(15.0).round()
}

/// Every read any cutover sent to batch over `window`, per dataset: served,
/// fallback, comparison and probe attempts alike (what batch itself counted
/// as requests from cutover).
pub fn batch_sent_by_dataset_query(dataset: Option<&str>, window: f64) -> String {
    format!(
        "sum by (dataset) (increase({}{}))",
        batch_counter_query(dataset),
        range(window)
    )
}

/// Each consumer's answers of `dataset` over `window` by code class: its
/// failed-answer ratio is the `5xx` share.
pub fn answers_by_class_query(dataset: &str, window: f64) -> String {
    format!(
        "sum by (consumer, code_class) (increase({}{}))",
        selector(REQUESTS_TOTAL, &[], Some(dataset)),
        range(window)
    )
}
