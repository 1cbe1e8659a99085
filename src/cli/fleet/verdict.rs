//! The fleet board's verdicts as pure functions over plain figures: whether a
//! dataset may leave shadow, which consumer moves next, whether the risk
//! order is broken, and whether batch can be switched off. No network here;
//! `query` fills the figures, `render` prints them.

use std::collections::BTreeMap;

use serde::Serialize;

/// The migration guide's divergence tolerance: under 0.1 % of comparisons.
pub const MAX_DIVERGENCE_RATIO: f64 = 0.001;

/// Fewer comparisons than this cannot show a ratio under 0.1 %: one
/// divergence in fewer than 1000 comparisons is already 0.1 % or more.
pub const MIN_COMPARISONS: f64 = 1000.0;

/// How long every lower-or-equal-risk consumer must have read streaming,
/// without a gate trip, before the next one moves (the guide's two weeks).
pub const SETTLE_SECONDS: f64 = 14.0 * 86_400.0;

/// Divergence categories that must be absent before leaving shadow (the
/// guide: "missing or duplicated records (fix before proceeding)").
pub const BLOCKING_CATEGORIES: [&str; 2] = ["missing", "duplicate"];

/// A consumer's risk level, from `cutover_consumer_info{risk}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn parse(s: &str) -> Option<Risk> {
        match s {
            "low" => Some(Risk::Low),
            "medium" => Some(Risk::Medium),
            "high" => Some(Risk::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// Ordering key for a risk that may be unknown: unknown sorts after `high`,
/// so a consumer whose risk Prometheus does not know is never moved early.
fn risk_rank(r: Option<Risk>) -> u8 {
    match r {
        Some(Risk::Low) => 0,
        Some(Risk::Medium) => 1,
        Some(Risk::High) => 2,
        None => 3,
    }
}

fn risk_name(r: Option<Risk>) -> &'static str {
    r.map_or("unknown", Risk::as_str)
}

/// Which side a consumer's reads of a dataset come from, by effective mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Every route of the dataset is `batch` or `shadow`, or some are: the
    /// consumer still reads batch.
    Batch,
    /// Every route is `canary`, `streaming` or `streaming_only` (the modes a
    /// gate watches: streaming answers the consumer).
    Streaming,
    /// No current `cutover_route_mode` sample: the sidecar stopped reporting.
    NotReporting,
}

/// Whether `mode` serves the consumer from streaming (as `Mode::serves_streaming`).
pub fn mode_reads_streaming(mode: &str) -> bool {
    matches!(mode, "canary" | "streaming" | "streaming_only")
}

/// When a run (of a mode, or of reading streaming) began. `at_least` is set
/// when the run reaches back to the start of the history looked at, so it
/// may be older.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Since {
    pub at: f64,
    pub at_least: bool,
}

/// Everything the board knows about one consumer's reads of one dataset
/// (summed over that consumer's routes of the dataset). Counts are over the
/// window unless named otherwise; `None` means Prometheus had no sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumerFigures {
    pub consumer: String,
    pub dataset: String,
    pub risk: Option<Risk>,
    /// Effective modes now, one per distinct mode among the routes; empty
    /// when the sidecar is not reporting.
    pub modes: Vec<String>,
    /// The modes seen last, for a consumer that stopped reporting.
    pub last_modes: Vec<String>,
    /// Last time any `cutover_route_mode` sample was seen (history resolution).
    pub last_seen: Option<f64>,
    pub mode_since: Option<Since>,
    pub streaming_since: Option<Since>,
    pub gate_tripped_now: bool,
    pub reads_batch: f64,
    pub reads_streaming: f64,
    pub fallbacks: f64,
    pub attempts_batch: f64,
    pub failures_batch: f64,
    pub attempts_streaming: f64,
    pub failures_streaming: f64,
    pub comparisons: f64,
    pub diverged: f64,
    pub divergences: BTreeMap<String, f64>,
    /// Streaming answers checked against a contract (pass or violation),
    /// and of those the violations.
    pub contract_checked: f64,
    pub contract_violations: f64,
    /// Earliest time in the window at which comparisons had been counted.
    pub compared_since: Option<f64>,
    pub gate_trips_window: f64,
    /// Trips over the last 14 days, counting a `cutover_gate_tripped` seen at 1.
    pub gate_trips_settle: f64,
    pub last_batch_read: Option<f64>,
}

impl ConsumerFigures {
    pub fn phase(&self) -> Phase {
        if self.modes.is_empty() {
            Phase::NotReporting
        } else if self.modes.iter().all(|m| mode_reads_streaming(m)) {
            Phase::Streaming
        } else {
            Phase::Batch
        }
    }

    /// Reads served by batch after streaming was chosen, over reads for
    /// which streaming was chosen (served by streaming, or fallen back).
    pub fn fallback_ratio(&self) -> Option<f64> {
        ratio(self.fallbacks, self.reads_streaming + self.fallbacks)
    }

    /// Streaming minus batch failed share of upstream attempts.
    pub fn error_ratio_delta(&self) -> Option<f64> {
        Some(
            ratio(self.failures_streaming, self.attempts_streaming)?
                - ratio(self.failures_batch, self.attempts_batch)?,
        )
    }

    pub fn divergence_ratio(&self) -> Option<f64> {
        ratio(self.diverged, self.comparisons)
    }

    /// Violated share of the contract checks in the window.
    pub fn contract_violation_ratio(&self) -> Option<f64> {
        ratio(self.contract_violations, self.contract_checked)
    }
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0 && part.is_finite() && whole.is_finite()).then(|| part / whole)
}

/// Whether a dataset may leave shadow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShadowVerdict {
    pub ready: bool,
    pub divergence_ratio: Option<f64>,
    pub comparisons: f64,
    pub diverged: f64,
    pub missing: f64,
    pub duplicate: f64,
    /// Seconds of the window the comparisons cover (from the earliest one).
    pub covered_seconds: Option<f64>,
    pub reason: String,
}

/// Ready to leave shadow: over at least `window` seconds, at least
/// `MIN_COMPARISONS` comparisons, a divergence ratio under 0.1 %, and no
/// `missing` or `duplicate` divergence. All consumers' comparisons count.
pub fn shadow_verdict(consumers: &[&ConsumerFigures], window: f64, now: f64) -> ShadowVerdict {
    // Folded from +0.0: `Sum for f64` starts at -0.0, so a category no
    // consumer has would print as "-0 duplicate records".
    let total = |v: &mut dyn Iterator<Item = f64>| v.fold(0.0, |a, b| a + b);
    let comparisons = total(&mut consumers.iter().map(|c| c.comparisons));
    let diverged = total(&mut consumers.iter().map(|c| c.diverged));
    let category = |k: &str| {
        total(
            &mut consumers
                .iter()
                .filter_map(|c| c.divergences.get(k).copied()),
        )
    };
    let (missing, duplicate) = (category("missing"), category("duplicate"));
    let since = consumers
        .iter()
        .filter_map(|c| c.compared_since)
        .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.min(t))));
    let covered_seconds = since.map(|t| (now - t).max(0.0));
    let divergence_ratio = ratio(diverged, comparisons);
    // A sample is at most one evaluation step younger than the window start.
    let covered = covered_seconds.is_some_and(|c| c >= window * 0.95);
    let reason = if comparisons < MIN_COMPARISONS {
        format!(
            "too few comparisons: {comparisons:.0} of the {MIN_COMPARISONS:.0} needed to show under 0.1 %"
        )
    } else if missing > 0.0 || duplicate > 0.0 {
        format!("{missing:.0} missing and {duplicate:.0} duplicate records: fix before proceeding")
    } else if divergence_ratio.is_none_or(|r| r >= MAX_DIVERGENCE_RATIO) {
        format!(
            "divergence ratio {} is not under 0.1 %",
            divergence_ratio.map_or("-".to_owned(), |r| format!("{:.3} %", r * 100.0))
        )
    } else if !covered {
        format!(
            "comparisons cover only {} of the window",
            covered_seconds.map_or("none".to_owned(), human_duration)
        )
    } else {
        "divergence under 0.1 % over the window, no missing or duplicate records".to_owned()
    };
    let ready = comparisons >= MIN_COMPARISONS
        && missing == 0.0
        && duplicate == 0.0
        && divergence_ratio.is_some_and(|r| r < MAX_DIVERGENCE_RATIO)
        && covered;
    ShadowVerdict {
        ready,
        divergence_ratio,
        comparisons,
        diverged,
        missing,
        duplicate,
        covered_seconds,
        reason,
    }
}

/// The next consumer to move to streaming, and whether it may move now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NextToMove {
    /// `None` when no reporting consumer of the dataset still reads batch.
    pub consumer: Option<String>,
    pub risk: Option<Risk>,
    pub ready: bool,
    /// Why it may not move yet: one line per consumer that has not settled.
    pub waiting_for: Vec<String>,
    /// Other batch readers of the same risk, after it by name.
    pub tied_with: Vec<String>,
}

/// The lowest-risk consumer still reading batch (ties: by consumer name) is
/// next; it may move when every consumer of lower or equal risk already on
/// streaming has read streaming for 14 days without a gate trip. Consumers
/// that stopped reporting are neither candidates nor settled: they are
/// listed as waited for when their risk is lower or equal.
pub fn next_to_move(consumers: &[&ConsumerFigures], now: f64) -> NextToMove {
    let mut batch: Vec<&&ConsumerFigures> = consumers
        .iter()
        .filter(|c| c.phase() == Phase::Batch)
        .collect();
    batch.sort_by(|a, b| {
        risk_rank(a.risk)
            .cmp(&risk_rank(b.risk))
            .then_with(|| a.consumer.cmp(&b.consumer))
    });
    let Some(next) = batch.first() else {
        return NextToMove {
            consumer: None,
            risk: None,
            ready: false,
            waiting_for: Vec::new(),
            tied_with: Vec::new(),
        };
    };
    let rank = risk_rank(next.risk);
    let tied_with = batch[1..]
        .iter()
        .filter(|c| risk_rank(c.risk) == rank)
        .map(|c| c.consumer.clone())
        .collect();
    let mut waiting_for = Vec::new();
    for c in consumers.iter().filter(|c| risk_rank(c.risk) <= rank) {
        match c.phase() {
            Phase::Batch => {}
            Phase::NotReporting => waiting_for.push(format!(
                "{} ({}) stopped reporting: its mode is unknown",
                c.consumer,
                risk_name(c.risk)
            )),
            Phase::Streaming => {
                let on = c.streaming_since.map(|s| now - s.at);
                if on.is_none_or(|s| s < SETTLE_SECONDS) {
                    waiting_for.push(format!(
                        "{} ({}) has read streaming for {} of 14d",
                        c.consumer,
                        risk_name(c.risk),
                        on.map_or("an unknown time".to_owned(), human_duration)
                    ));
                }
                if c.gate_trips_settle > 0.0 || c.gate_tripped_now {
                    waiting_for.push(format!(
                        "{} ({}) had a gate trip in the last 14d",
                        c.consumer,
                        risk_name(c.risk)
                    ));
                }
            }
        }
    }
    NextToMove {
        consumer: Some(next.consumer.clone()),
        risk: next.risk,
        ready: waiting_for.is_empty(),
        waiting_for,
        tied_with,
    }
}

/// A higher-risk consumer on streaming while a lower-risk one reads batch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub on_streaming: String,
    pub on_streaming_risk: Option<Risk>,
    pub on_batch: String,
    pub on_batch_risk: Option<Risk>,
}

/// Every pair breaking the risk order. Equal risks never break it; a
/// consumer of unknown risk is compared as if it were the highest.
pub fn risk_order_violations(consumers: &[&ConsumerFigures]) -> Vec<Violation> {
    let mut out = Vec::new();
    for s in consumers.iter().filter(|c| c.phase() == Phase::Streaming) {
        for b in consumers.iter().filter(|c| c.phase() == Phase::Batch) {
            if risk_rank(s.risk) > risk_rank(b.risk) {
                out.push(Violation {
                    on_streaming: s.consumer.clone(),
                    on_streaming_risk: s.risk,
                    on_batch: b.consumer.clone(),
                    on_batch_risk: b.risk,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.on_streaming, &a.on_batch).cmp(&(&b.on_streaming, &b.on_batch)));
    out
}

/// One consumer's standing for a decommission.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecommissionConsumer {
    pub consumer: String,
    pub modes: Vec<String>,
    pub reporting: bool,
    /// Batch attempts of any kind (served, fallback, comparison, probe) in the window.
    pub batch_reads: f64,
    /// A batch counter series that appeared during the window already above
    /// zero (a new pod, say): reads `increase()` cannot see.
    pub batch_reads_unseen_by_increase: bool,
    pub last_batch_read: Option<f64>,
    /// Why this consumer blocks the decommission; empty when it does not.
    pub blocks: Vec<String>,
}

/// Batch can be switched off when every known consumer is `streaming_only`
/// (all its routes of the dataset), still reporting, and sent no read of
/// any kind to batch during the window.
pub fn decommission(consumers: &[DecommissionConsumer]) -> bool {
    !consumers.is_empty() && consumers.iter().all(|c| c.blocks.is_empty())
}

/// Fills `blocks` for one consumer.
pub fn decommission_blocks(c: &mut DecommissionConsumer) {
    c.blocks.clear();
    if !c.reporting {
        c.blocks.push(format!(
            "stopped reporting (last modes: {}): cannot show it no longer reads batch",
            if c.modes.is_empty() {
                "unknown".to_owned()
            } else {
                c.modes.join(", ")
            }
        ));
    } else if c.modes.iter().any(|m| m != "streaming_only") {
        c.blocks
            .push(format!("mode {} is not streaming_only", c.modes.join("+")));
    }
    if c.batch_reads > 0.0 || c.batch_reads_unseen_by_increase || c.last_batch_read.is_some() {
        c.blocks
            .push("sent reads to batch during the window".to_owned());
    }
}

/// When the current run began in a history sampled every `step` seconds:
/// `points` are the evaluation times (ascending) with whether the condition
/// held. The run is the contiguous stretch ending at the last point; a
/// missing point (a gap longer than 1.5 steps) ends it as a `false` would.
/// Only a run reaching back to `range_start` (the history's first step) may
/// be older than it looks (`at_least`); one starting later began there.
pub fn run_start(points: &[(f64, bool)], range_start: f64, step: f64) -> Option<Since> {
    let &(last_t, last_ok) = points.last()?;
    if !last_ok {
        return None;
    }
    let mut start = last_t;
    for &(t, ok) in points.iter().rev().skip(1) {
        if !ok || start - t > step * 1.5 {
            break;
        }
        start = t;
    }
    Some(Since {
        at: start,
        at_least: start - range_start < step * 0.5,
    })
}

/// The last time a counter shows reads in a range-query series: a rise, a
/// drop to a non-zero value (a reset after which reads were counted again),
/// or a first sample above zero that is not at the range's start (a series
/// born in the range, e.g. a new pod). Resolution: the query's step.
pub fn last_counter_rise(values: &[(f64, f64)], range_start: f64, step: f64) -> Option<f64> {
    let mut last = None;
    let mut prev: Option<f64> = None;
    for &(t, v) in values {
        if !v.is_finite() {
            continue;
        }
        let rose = match prev {
            None => v > 0.0 && t - range_start > step * 0.5,
            Some(p) => v > p || (v < p && v > 0.0),
        };
        if rose {
            last = Some(t);
        }
        prev = Some(v);
    }
    last
}

/// `3d04h`, `5h12m`, `7m`, `42s`: a span as people say it.
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".to_owned();
    }
    let s = seconds.round() as u64;
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_000.0;
    const DAY: f64 = 86_400.0;

    fn consumer(name: &str, risk: Risk, mode: &str) -> ConsumerFigures {
        ConsumerFigures {
            consumer: name.to_owned(),
            dataset: "orders".to_owned(),
            risk: Some(risk),
            modes: vec![mode.to_owned()],
            ..Default::default()
        }
    }

    fn on_streaming_for(mut c: ConsumerFigures, days: f64) -> ConsumerFigures {
        c.streaming_since = Some(Since {
            at: NOW - days * DAY,
            at_least: false,
        });
        c
    }

    fn compared(mut c: ConsumerFigures, comparisons: f64, diverged: f64) -> ConsumerFigures {
        c.comparisons = comparisons;
        c.diverged = diverged;
        c.compared_since = Some(NOW - 3600.0);
        c
    }

    #[test]
    fn shadow_is_ready_under_a_tenth_of_a_percent_over_the_window() {
        let a = compared(consumer("a", Risk::Low, "shadow"), 5000.0, 4.0);
        let v = shadow_verdict(&[&a], 3600.0, NOW);
        assert!(v.ready, "{v:?}");
        assert_eq!(v.divergence_ratio, Some(0.0008));
    }

    #[test]
    fn shadow_is_not_ready_at_a_tenth_of_a_percent_or_above() {
        let a = compared(consumer("a", Risk::Low, "shadow"), 5000.0, 5.0);
        let v = shadow_verdict(&[&a], 3600.0, NOW);
        assert!(!v.ready);
        assert!(v.reason.contains("not under 0.1 %"), "{}", v.reason);
    }

    #[test]
    fn thin_traffic_is_never_ready() {
        let a = compared(consumer("a", Risk::Low, "shadow"), 999.0, 0.0);
        let v = shadow_verdict(&[&a], 3600.0, NOW);
        assert!(!v.ready);
        assert!(v.reason.contains("too few comparisons"), "{}", v.reason);
        let none = consumer("b", Risk::Low, "shadow");
        let v = shadow_verdict(&[&none], 3600.0, NOW);
        assert!(!v.ready);
        assert_eq!(v.divergence_ratio, None);
    }

    #[test]
    fn missing_or_duplicate_records_block_shadow_whatever_the_ratio() {
        for category in BLOCKING_CATEGORIES {
            let mut a = compared(consumer("a", Risk::Low, "shadow"), 100_000.0, 1.0);
            a.divergences.insert(category.to_owned(), 1.0);
            let v = shadow_verdict(&[&a], 3600.0, NOW);
            assert!(!v.ready, "{category}");
            assert!(v.reason.contains("fix before proceeding"), "{}", v.reason);
            // The category nobody has is a plain 0 (found against a real
            // Prometheus: "1 missing and -0 duplicate records").
            assert!(!v.reason.contains("-0"), "{}", v.reason);
        }
        // Other categories only count toward the ratio.
        let mut a = compared(consumer("a", Risk::Low, "shadow"), 100_000.0, 1.0);
        a.divergences.insert("timing".to_owned(), 1.0);
        assert!(shadow_verdict(&[&a], 3600.0, NOW).ready);
    }

    #[test]
    fn shadow_needs_comparisons_over_the_whole_window() {
        let mut a = compared(consumer("a", Risk::Low, "shadow"), 5000.0, 0.0);
        a.compared_since = Some(NOW - 1200.0);
        let v = shadow_verdict(&[&a], 3600.0, NOW);
        assert!(!v.ready);
        assert!(v.reason.contains("cover only 20m"), "{}", v.reason);
        // The earliest consumer's comparisons set the coverage.
        let b = compared(consumer("b", Risk::High, "streaming"), 10.0, 0.0);
        assert!(shadow_verdict(&[&a, &b], 3600.0, NOW).ready);
    }

    #[test]
    fn the_lowest_risk_batch_reader_is_next_once_earlier_ones_settled() {
        let low = on_streaming_for(consumer("dash", Risk::Low, "streaming"), 15.0);
        let medium = consumer("ops", Risk::Medium, "batch");
        let high = consumer("fraud", Risk::High, "shadow");
        let n = next_to_move(&[&high, &medium, &low], NOW);
        assert_eq!(n.consumer.as_deref(), Some("ops"));
        assert!(n.ready, "{n:?}");
        assert!(n.tied_with.is_empty());
    }

    #[test]
    fn next_waits_for_fourteen_days_without_a_trip() {
        let low = on_streaming_for(consumer("dash", Risk::Low, "streaming"), 3.0);
        let medium = consumer("ops", Risk::Medium, "batch");
        let n = next_to_move(&[&low, &medium], NOW);
        assert_eq!(n.consumer.as_deref(), Some("ops"));
        assert!(!n.ready);
        assert_eq!(
            n.waiting_for,
            ["dash (low) has read streaming for 3d00h of 14d"]
        );

        let mut tripped = on_streaming_for(consumer("dash", Risk::Low, "streaming"), 20.0);
        tripped.gate_trips_settle = 1.0;
        let n = next_to_move(&[&tripped, &medium], NOW);
        assert!(!n.ready);
        assert!(
            n.waiting_for[0].contains("gate trip"),
            "{:?}",
            n.waiting_for
        );
    }

    #[test]
    fn ties_in_risk_are_ordered_by_name_and_said() {
        let b = consumer("beta", Risk::Low, "batch");
        let a = consumer("alpha", Risk::Low, "batch");
        let n = next_to_move(&[&b, &a], NOW);
        assert_eq!(n.consumer.as_deref(), Some("alpha"));
        assert_eq!(n.tied_with, ["beta"]);
        // An equal-risk consumer already on streaming must have settled too.
        let c = on_streaming_for(consumer("gamma", Risk::Low, "canary"), 1.0);
        let n = next_to_move(&[&b, &a, &c], NOW);
        assert!(!n.ready);
    }

    #[test]
    fn a_missing_consumer_is_waited_for_not_dropped() {
        let mut gone = consumer("gone", Risk::Low, "streaming");
        gone.modes.clear();
        gone.last_modes = vec!["streaming".to_owned()];
        assert_eq!(gone.phase(), Phase::NotReporting);
        let ops = consumer("ops", Risk::Medium, "batch");
        let n = next_to_move(&[&gone, &ops], NOW);
        assert_eq!(n.consumer.as_deref(), Some("ops"));
        assert!(!n.ready);
        assert!(n.waiting_for[0].contains("stopped reporting"));
        // Nor is it counted as reading either side for the risk order.
        assert!(risk_order_violations(&[&gone, &ops]).is_empty());
    }

    #[test]
    fn no_batch_reader_means_nobody_is_next() {
        let a = on_streaming_for(consumer("a", Risk::Low, "streaming_only"), 30.0);
        let n = next_to_move(&[&a], NOW);
        assert_eq!(n.consumer, None);
    }

    #[test]
    fn risk_order_is_violated_only_by_a_strictly_higher_risk_on_streaming() {
        let low = consumer("dash", Risk::Low, "batch");
        let high = consumer("fraud", Risk::High, "streaming");
        let medium = consumer("ops", Risk::Medium, "canary");
        let v = risk_order_violations(&[&low, &high, &medium]);
        let pairs: Vec<_> = v
            .iter()
            .map(|v| (v.on_streaming.as_str(), v.on_batch.as_str()))
            .collect();
        assert_eq!(pairs, [("fraud", "dash"), ("ops", "dash")]);
        let tie = consumer("other", Risk::Low, "streaming");
        assert!(risk_order_violations(&[&low, &tie]).is_empty());
        // Shadow still reads batch.
        let shadow = consumer("dash", Risk::Low, "shadow");
        assert_eq!(risk_order_violations(&[&shadow, &high]).len(), 1);
    }

    #[test]
    fn a_consumer_with_one_route_on_batch_still_reads_batch() {
        let mut c = consumer("mixed", Risk::Low, "streaming");
        c.modes.push("batch".to_owned());
        assert_eq!(c.phase(), Phase::Batch);
    }

    #[test]
    fn two_datasets_are_judged_apart() {
        // The caller groups by dataset; each group is judged alone.
        let orders_low = consumer("dash", Risk::Low, "batch");
        let mut customers_high = consumer("fraud", Risk::High, "streaming");
        customers_high.dataset = "customers".to_owned();
        assert!(risk_order_violations(&[&orders_low]).is_empty());
        assert!(risk_order_violations(&[&customers_high]).is_empty());
        assert_eq!(
            risk_order_violations(&[&orders_low, &customers_high]).len(),
            1
        );
    }

    #[test]
    fn run_start_finds_the_current_run_and_says_when_it_may_be_older() {
        let step = 3600.0;
        let pts: Vec<(f64, bool)> = (0..10).map(|i| (i as f64 * step, i >= 4)).collect();
        assert_eq!(
            run_start(&pts, 0.0, step),
            Some(Since {
                at: 4.0 * step,
                at_least: false
            })
        );
        let all: Vec<(f64, bool)> = (0..10).map(|i| (i as f64 * step, true)).collect();
        assert_eq!(run_start(&all, 0.0, step).map(|s| s.at_least), Some(true));
        // A series that begins after the history's start began then.
        assert_eq!(
            run_start(&all, -step, step).map(|s| s.at_least),
            Some(false)
        );
        // A gap (the sidecar was down) ends the run.
        let gap = [
            (0.0, true),
            (step, true),
            (4.0 * step, true),
            (5.0 * step, true),
        ];
        assert_eq!(run_start(&gap, 0.0, step).map(|s| s.at), Some(4.0 * step));
        assert_eq!(run_start(&[(0.0, false)], 0.0, step), None);
        assert_eq!(run_start(&[], 0.0, step), None);
    }

    #[test]
    fn counter_resets_do_not_hide_reads() {
        let step = 60.0;
        // 10 → restart (0) → 3: reads after the reset.
        let reset = [
            (0.0, 10.0),
            (60.0, 10.0),
            (120.0, 0.0),
            (180.0, 3.0),
            (240.0, 3.0),
        ];
        assert_eq!(last_counter_rise(&reset, 0.0, step), Some(180.0));
        // A reset straight to a non-zero value (reads before the next sample).
        let jump = [(0.0, 10.0), (60.0, 2.0), (120.0, 2.0)];
        assert_eq!(last_counter_rise(&jump, 0.0, step), Some(60.0));
        // A restart with no reads since is not a read.
        let idle = [(0.0, 10.0), (60.0, 0.0), (120.0, 0.0)];
        assert_eq!(last_counter_rise(&idle, 0.0, step), None);
        // A flat counter from before the range: no read in it.
        let flat = [(0.0, 7.0), (60.0, 7.0)];
        assert_eq!(last_counter_rise(&flat, 0.0, step), None);
        // A series born in the range above zero (a new pod): a read.
        let born = [(120.0, 4.0), (180.0, 4.0)];
        assert_eq!(last_counter_rise(&born, 0.0, step), Some(120.0));
    }

    #[test]
    fn decommission_needs_streaming_only_and_no_batch_read() {
        let clean = |name: &str| DecommissionConsumer {
            consumer: name.to_owned(),
            modes: vec!["streaming_only".to_owned()],
            reporting: true,
            batch_reads: 0.0,
            batch_reads_unseen_by_increase: false,
            last_batch_read: None,
            blocks: Vec::new(),
        };
        let mut all = vec![clean("a"), clean("b")];
        all.iter_mut().for_each(decommission_blocks);
        assert!(decommission(&all));

        let mut read = clean("c");
        read.batch_reads = 1.0;
        read.last_batch_read = Some(NOW - DAY);
        decommission_blocks(&mut read);
        assert_eq!(read.blocks, ["sent reads to batch during the window"]);

        let mut streaming = clean("d");
        streaming.modes = vec!["streaming".to_owned()];
        decommission_blocks(&mut streaming);
        assert!(streaming.blocks[0].contains("not streaming_only"));

        let mut unseen = clean("e");
        unseen.batch_reads_unseen_by_increase = true;
        decommission_blocks(&mut unseen);
        assert!(!unseen.blocks.is_empty());

        let mut gone = clean("f");
        gone.reporting = false;
        decommission_blocks(&mut gone);
        assert!(gone.blocks[0].contains("stopped reporting"));

        assert!(!decommission(&[]));
    }

    #[test]
    fn figures_derive_ratios_and_none_without_traffic() {
        let mut c = consumer("a", Risk::Low, "streaming");
        assert_eq!(c.fallback_ratio(), None);
        assert_eq!(c.error_ratio_delta(), None);
        c.reads_streaming = 95.0;
        c.fallbacks = 5.0;
        c.attempts_streaming = 100.0;
        c.failures_streaming = 5.0;
        c.attempts_batch = 10.0;
        c.failures_batch = 0.0;
        assert_eq!(c.fallback_ratio(), Some(0.05));
        assert_eq!(c.error_ratio_delta(), Some(0.05));
    }
}
