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
    /// Every consumer is `streaming_only` and nothing was compared: the
    /// dataset left shadow (nothing can compare against batch any more).
    pub left: bool,
    pub divergence_ratio: Option<f64>,
    pub comparisons: f64,
    pub diverged: f64,
    pub missing: f64,
    pub duplicate: f64,
    /// Seconds of the window the comparisons cover (from the earliest one).
    pub covered_seconds: Option<f64>,
    pub reason: String,
    /// Each consumer's own verdict, by the same rule over its comparisons
    /// alone, in the board's consumer order.
    pub consumers: Vec<ConsumerShadow>,
    /// The consumers whose own comparisons hold the dataset in shadow
    /// (`ConsumerShadow::blocks` says why); empty when it is ready, and
    /// when what is missing is comparisons, not a consumer's divergence.
    pub blocked_by: Vec<String>,
}

/// One consumer's own divergence verdict: the dataset's rule (at least
/// `MIN_COMPARISONS`, under 0.1 %, no `missing`/`duplicate`, over the
/// window) applied to its comparisons alone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsumerShadow {
    pub consumer: String,
    pub risk: Option<Risk>,
    pub ready: bool,
    pub divergence_ratio: Option<f64>,
    pub comparisons: f64,
    pub diverged: f64,
    /// Its divergences by category over the window.
    pub categories: BTreeMap<String, f64>,
    pub covered_seconds: Option<f64>,
    /// Why it is ready or not, judged alone.
    pub reason: String,
    /// Why it holds the dataset in shadow: its `missing`/`duplicate`
    /// records, or a divergence ratio of 0.1 % or more, with its largest
    /// category. `None` when it does not, and always when the dataset is ready.
    pub blocks: Option<String>,
}

impl ConsumerShadow {
    fn category(&self, k: &str) -> f64 {
        self.categories.get(k).copied().unwrap_or(0.0)
    }

    /// Missing or duplicated records: streaming's own defect, not this
    /// consumer's comparison (the guide: "fix before proceeding").
    pub fn lost_or_duplicated(&self) -> bool {
        BLOCKING_CATEGORIES.iter().any(|k| self.category(k) > 0.0)
    }

    /// Its own comparisons show it diverging: missing or duplicate records,
    /// or a ratio of 0.1 % or more over at least `MIN_COMPARISONS` (fewer
    /// are too thin to judge it by).
    pub fn diverges(&self) -> bool {
        self.lost_or_duplicated()
            || (self.comparisons >= MIN_COMPARISONS
                && self
                    .divergence_ratio
                    .is_some_and(|r| r >= MAX_DIVERGENCE_RATIO))
    }
}

/// The counts one verdict is judged from.
struct Pooled {
    comparisons: f64,
    diverged: f64,
    missing: f64,
    duplicate: f64,
    since: Option<f64>,
}

fn pool(consumers: &[&ConsumerFigures]) -> Pooled {
    // Folded from +0.0: `Sum for f64` starts at -0.0, so a category no
    // consumer has would print as "-0 duplicate records".
    let total = |v: &mut dyn Iterator<Item = f64>| v.fold(0.0, |a, b| a + b);
    let category = |k: &str| {
        total(
            &mut consumers
                .iter()
                .filter_map(|c| c.divergences.get(k).copied()),
        )
    };
    Pooled {
        comparisons: total(&mut consumers.iter().map(|c| c.comparisons)),
        diverged: total(&mut consumers.iter().map(|c| c.diverged)),
        missing: category("missing"),
        duplicate: category("duplicate"),
        since: consumers
            .iter()
            .filter_map(|c| c.compared_since)
            .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.min(t)))),
    }
}

/// The rule itself, over pooled counts; `consumers` and `blocked_by` empty.
fn judge(p: &Pooled, window: f64, now: f64) -> ShadowVerdict {
    let Pooled {
        comparisons,
        diverged,
        missing,
        duplicate,
        since,
    } = *p;
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
            percent3(divergence_ratio)
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
        left: false,
        divergence_ratio,
        comparisons,
        diverged,
        missing,
        duplicate,
        covered_seconds,
        reason,
        consumers: Vec::new(),
        blocked_by: Vec::new(),
    }
}

/// Ready to leave shadow: over at least `window` seconds, at least
/// `MIN_COMPARISONS` comparisons, a divergence ratio under 0.1 %, and no
/// `missing` or `duplicate` divergence. All consumers' comparisons count.
///
/// Each consumer is also judged alone (`consumers`), and when the dataset
/// is not ready, the consumers whose own comparisons hold it back are named
/// (`blocked_by`): those with `missing`/`duplicate` records, and those
/// whose own ratio is 0.1 % or more (any pooled ratio of 0.1 % or more has
/// at least one), each with its largest divergence category, so a person
/// sees whom to fix.
pub fn shadow_verdict(consumers: &[&ConsumerFigures], window: f64, now: f64) -> ShadowVerdict {
    let mut verdict = judge(&pool(consumers), window, now);
    for c in consumers {
        let own = judge(&pool(&[c]), window, now);
        let mut s = ConsumerShadow {
            consumer: c.consumer.clone(),
            risk: c.risk,
            ready: own.ready,
            divergence_ratio: own.divergence_ratio,
            comparisons: own.comparisons,
            diverged: own.diverged,
            categories: c.divergences.clone(),
            covered_seconds: own.covered_seconds,
            reason: own.reason,
            blocks: None,
        };
        if !verdict.ready {
            s.blocks = blocking_reason(&s);
        }
        if s.blocks.is_some() {
            verdict.blocked_by.push(s.consumer.clone());
        }
        verdict.consumers.push(s);
    }
    // Past shadow for good: `streaming_only` never reads batch, so "too
    // few comparisons" would hold back a dataset that moved on long ago
    // (beside "step 1 ... clean" on the same board).
    let all_streaming_only = !consumers.is_empty()
        && consumers
            .iter()
            .all(|c| !c.modes.is_empty() && c.modes.iter().all(|m| m == "streaming_only"));
    if all_streaming_only && verdict.comparisons <= 0.0 {
        verdict.ready = true;
        verdict.left = true;
        verdict.reason =
            "every consumer is streaming_only: the dataset left shadow, nothing compares against batch any more"
                .to_owned();
        verdict.blocked_by.clear();
        for c in &mut verdict.consumers {
            c.blocks = None;
        }
    }
    verdict
}

/// Why `s` holds its dataset in shadow, if it does: `35.154 % over 4,000
/// comparisons, mostly timing (1,400 of 1,406 divergences)`.
fn blocking_reason(s: &ConsumerShadow) -> Option<String> {
    let over = format!(
        "{} over {} comparisons",
        percent3(s.divergence_ratio),
        thousands(s.comparisons)
    );
    if s.lost_or_duplicated() {
        return Some(format!(
            "{} missing and {} duplicate records (fix before proceeding), {over}",
            thousands(s.category("missing")),
            thousands(s.category("duplicate"))
        ));
    }
    if s.divergence_ratio.is_none_or(|r| r < MAX_DIVERGENCE_RATIO) {
        return None;
    }
    // The largest category; ties go to the first by name.
    let top = s.categories.iter().filter(|(_, n)| **n > 0.0).fold(
        None,
        |best: Option<(&String, f64)>, (k, &n)| match best {
            Some((_, b)) if b >= n => best,
            _ => Some((k, n)),
        },
    );
    let total = s.categories.values().fold(0.0, |a, b| a + b);
    Some(match top {
        Some((k, n)) => format!(
            "{over}, mostly {k} ({} of {} divergences)",
            thousands(n),
            thousands(total)
        ),
        None => format!("{over}, no divergence category recorded"),
    })
}

/// `35.154 %`, or `-` without comparisons.
fn percent3(r: Option<f64>) -> String {
    r.map_or("-".to_owned(), |r| format!("{:.3} %", r * 100.0))
}

/// A count with thousands separators: `1,314`.
pub fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if v < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// What shows streaming answers the next consumer correctly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvenBy {
    /// The dataset left shadow (its verdict is ready).
    Dataset,
    /// The dataset has not, but the consumer's own comparisons pass the
    /// same rule and no consumer saw missing or duplicate records: it moves
    /// on its own comparisons while others still block the dataset.
    OwnComparisons,
    /// Neither: it waits (`waiting_for_shadow` says why).
    NotProven,
}

/// The next consumer to move to streaming, and whether it may move now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NextToMove {
    /// `None` when no reporting consumer of the dataset still reads batch.
    pub consumer: Option<String>,
    pub risk: Option<Risk>,
    /// `settled` and proven (`proven_by` is not `not_proven`).
    pub ready: bool,
    /// Why it may not move yet: one line per consumer that has not settled.
    pub waiting_for: Vec<String>,
    /// Other batch readers of the same risk, after it by name.
    pub tied_with: Vec<String>,
    /// Every lower-or-equal-risk consumer on streaming has settled
    /// (`waiting_for` is empty): the 14-day rule alone.
    pub settled: bool,
    pub proven_by: ProvenBy,
    /// Why divergence holds it: the dataset's verdict, its own comparisons.
    pub waiting_for_shadow: Vec<String>,
    /// The consumers still blocking the dataset's "leave shadow" (named
    /// also when it moves on its own comparisons).
    pub dataset_blocked_by: Vec<String>,
}

/// The lowest-risk consumer still reading batch (ties: by consumer name) is
/// next. It is settled when every consumer of lower or equal risk already
/// on streaming has read streaming for 14 days without a gate trip.
/// Consumers that stopped reporting are neither candidates nor settled:
/// they are listed as waited for when their risk is lower or equal.
///
/// It is ready when settled and streaming is proven for it in shadow (the
/// guide: a consumer moves off batch only after Phase 1's divergence is
/// under tolerance), which is one of:
/// - the dataset's `shadow` verdict is ready, and its own comparisons (if
///   at least `MIN_COMPARISONS`) do not diverge: a pooled ratio does not
///   hide a consumer whose own answers diverge;
/// - the dataset's is not, but its own comparisons pass the same rule
///   alone, and no consumer saw `missing` or `duplicate` records (those are
///   streaming's defects, whoever saw them): it moves on its own
///   comparisons, and `dataset_blocked_by` names who still blocks the
///   dataset. A timing or aggregation artifact of one consumer's
///   comparison no longer holds back another that is clean.
///
/// Otherwise it waits, and `waiting_for_shadow` says why. So "next to move"
/// never reads ready beside a "leave shadow: not yet" without saying so.
pub fn next_to_move(
    consumers: &[&ConsumerFigures],
    shadow: &ShadowVerdict,
    now: f64,
) -> NextToMove {
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
            settled: false,
            proven_by: ProvenBy::NotProven,
            waiting_for_shadow: Vec::new(),
            dataset_blocked_by: shadow.blocked_by.clone(),
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
    let (proven_by, waiting_for_shadow) = proven(&next.consumer, shadow);
    let settled = waiting_for.is_empty();
    NextToMove {
        consumer: Some(next.consumer.clone()),
        risk: next.risk,
        ready: settled && proven_by != ProvenBy::NotProven,
        waiting_for,
        tied_with,
        settled,
        proven_by,
        waiting_for_shadow,
        dataset_blocked_by: shadow.blocked_by.clone(),
    }
}

/// Whether streaming is proven in shadow for `consumer` (the rule in
/// `next_to_move`), and if not, why.
fn proven(consumer: &str, shadow: &ShadowVerdict) -> (ProvenBy, Vec<String>) {
    let own = shadow.consumers.iter().find(|s| s.consumer == consumer);
    if let Some(o) = own.filter(|o| o.diverges()) {
        return (
            ProvenBy::NotProven,
            vec![format!(
                "{consumer}'s own comparisons diverge: {}",
                blocking_reason(o).unwrap_or_else(|| o.reason.clone())
            )],
        );
    }
    if shadow.ready {
        return (ProvenBy::Dataset, Vec::new());
    }
    let lost: Vec<&str> = shadow
        .consumers
        .iter()
        .filter(|s| s.lost_or_duplicated())
        .map(|s| s.consumer.as_str())
        .collect();
    let own_ready = own.is_some_and(|o| o.ready);
    if own_ready && lost.is_empty() {
        return (ProvenBy::OwnComparisons, Vec::new());
    }
    let mut why = vec![format!(
        "the dataset has not left shadow: {}{}",
        shadow.reason,
        if shadow.blocked_by.is_empty() {
            String::new()
        } else {
            format!(" (blocked by {})", shadow.blocked_by.join(", "))
        }
    )];
    if own_ready {
        why.push(format!(
            "{consumer}'s own comparisons pass, but {} saw missing or duplicate records: streaming's, so they hold every consumer",
            lost.join(", ")
        ));
    } else {
        why.push(format!(
            "{consumer}'s own comparisons cannot move it alone: {}",
            own.map_or("it is not on the board".to_owned(), |o| o.reason.clone())
        ));
    }
    (ProvenBy::NotProven, why)
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

/// Unix seconds as RFC 3339 UTC, to the second.
pub fn rfc3339(t: f64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.floor() as i64)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{t:.0}"))
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

    /// A dataset verdict that is ready, from a consumer not among the
    /// candidates: the settling rule alone decides.
    fn left_shadow() -> ShadowVerdict {
        let probe = compared(consumer("probe", Risk::High, "shadow"), 5000.0, 0.0);
        let v = shadow_verdict(&[&probe], 3600.0, NOW);
        assert!(v.ready, "{v:?}");
        v
    }

    fn next(consumers: &[&ConsumerFigures]) -> NextToMove {
        next_to_move(consumers, &left_shadow(), NOW)
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

    /// The board a new user saw: fraud's timing artifacts over 4,000
    /// comparisons, dash clean over 1,314, ops on batch.
    fn fraud_dirty_dash_clean() -> [ConsumerFigures; 3] {
        let dash = compared(consumer("dash", Risk::Low, "shadow"), 1314.0, 0.0);
        let ops = consumer("ops", Risk::Medium, "batch");
        let mut fraud = compared(consumer("fraud", Risk::High, "shadow"), 4000.0, 1406.0);
        fraud.divergences.insert("timing".to_owned(), 1400.0);
        fraud.divergences.insert("aggregation".to_owned(), 6.0);
        [dash, ops, fraud]
    }

    #[test]
    fn one_dirty_consumer_blocks_the_dataset_and_is_named_with_its_categories() {
        let [dash, ops, fraud] = fraud_dirty_dash_clean();
        let v = shadow_verdict(&[&dash, &ops, &fraud], 3600.0, NOW);
        assert!(!v.ready);
        assert!(
            v.reason.contains("26.458 % is not under 0.1 %"),
            "{}",
            v.reason
        );
        assert_eq!(v.blocked_by, ["fraud"]);
        let by = |n: &str| v.consumers.iter().find(|c| c.consumer == n).expect(n);
        assert!(by("dash").ready, "{:?}", by("dash"));
        assert_eq!(by("dash").blocks, None);
        assert_eq!(by("dash").divergence_ratio, Some(0.0));
        assert!(!by("ops").ready);
        assert_eq!(by("ops").blocks, None, "no comparisons is not a block");
        assert_eq!(
            by("fraud").blocks.as_deref(),
            Some("35.150 % over 4,000 comparisons, mostly timing (1,400 of 1,406 divergences)")
        );
        assert_eq!(by("fraud").categories.get("aggregation"), Some(&6.0));
    }

    #[test]
    fn a_clean_consumer_moves_on_its_own_comparisons_and_says_who_still_blocks() {
        let [dash, ops, fraud] = fraud_dirty_dash_clean();
        let all = [&dash, &ops, &fraud];
        let v = shadow_verdict(&all, 3600.0, NOW);
        let n = next_to_move(&all, &v, NOW);
        assert_eq!(n.consumer.as_deref(), Some("dash"));
        assert!(n.ready && n.settled, "{n:?}");
        assert_eq!(n.proven_by, ProvenBy::OwnComparisons);
        assert_eq!(n.dataset_blocked_by, ["fraud"]);
        assert!(n.waiting_for_shadow.is_empty());
    }

    #[test]
    fn missing_records_anywhere_hold_even_a_clean_consumer() {
        let [dash, ops, mut fraud] = fraud_dirty_dash_clean();
        fraud.divergences.insert("missing".to_owned(), 1.0);
        let all = [&dash, &ops, &fraud];
        let v = shadow_verdict(&all, 3600.0, NOW);
        assert!(
            v.consumers[2]
                .blocks
                .as_deref()
                .is_some_and(|b| b.starts_with("1 missing and 0 duplicate")),
            "{:?}",
            v.consumers[2]
        );
        let n = next_to_move(&all, &v, NOW);
        assert!(!n.ready && n.settled, "{n:?}");
        assert_eq!(n.proven_by, ProvenBy::NotProven);
        assert!(
            n.waiting_for_shadow[0].contains("(blocked by fraud)"),
            "{:?}",
            n.waiting_for_shadow
        );
        assert!(
            n.waiting_for_shadow[1].contains("fraud saw missing or duplicate records"),
            "{:?}",
            n.waiting_for_shadow
        );
    }

    #[test]
    fn all_clean_means_the_dataset_leaves_shadow_and_nobody_blocks() {
        let dash = compared(consumer("dash", Risk::Low, "shadow"), 1314.0, 0.0);
        let fraud = compared(consumer("fraud", Risk::High, "shadow"), 4000.0, 2.0);
        let v = shadow_verdict(&[&dash, &fraud], 3600.0, NOW);
        assert!(v.ready, "{v:?}");
        assert!(v.blocked_by.is_empty());
        assert!(
            v.consumers.iter().all(|c| c.ready && c.blocks.is_none()),
            "{:?}",
            v.consumers
        );
        let n = next_to_move(&[&dash, &fraud], &v, NOW);
        assert!(n.ready);
        assert_eq!(n.proven_by, ProvenBy::Dataset);
    }

    #[test]
    fn nothing_compared_means_nobody_moves_and_the_board_says_why() {
        // Was READY beside "leave shadow: not yet (too few comparisons)".
        let dash = consumer("dash", Risk::Low, "shadow");
        let ops = consumer("ops", Risk::Medium, "batch");
        let v = shadow_verdict(&[&dash, &ops], 3600.0, NOW);
        assert!(!v.ready);
        assert!(
            v.blocked_by.is_empty(),
            "no consumer's divergence is to blame"
        );
        let n = next_to_move(&[&dash, &ops], &v, NOW);
        assert!(n.settled && !n.ready, "{n:?}");
        assert_eq!(n.proven_by, ProvenBy::NotProven);
        assert!(
            n.waiting_for_shadow[0]
                .starts_with("the dataset has not left shadow: too few comparisons: 0"),
            "{:?}",
            n.waiting_for_shadow
        );
        assert!(
            n.waiting_for_shadow[1]
                .contains("dash's own comparisons cannot move it alone: too few"),
            "{:?}",
            n.waiting_for_shadow
        );
    }

    #[test]
    fn thin_own_traffic_does_not_move_a_consumer_alone() {
        let dash = compared(consumer("dash", Risk::Low, "shadow"), 500.0, 0.0);
        let fraud = compared(consumer("fraud", Risk::High, "shadow"), 5000.0, 50.0);
        let v = shadow_verdict(&[&dash, &fraud], 3600.0, NOW);
        assert_eq!(v.blocked_by, ["fraud"]);
        assert!(
            v.consumers[1]
                .blocks
                .as_deref()
                .is_some_and(|b| b.ends_with("no divergence category recorded"))
        );
        let n = next_to_move(&[&dash, &fraud], &v, NOW);
        assert!(!n.ready);
        assert!(
            n.waiting_for_shadow[1].contains("too few comparisons: 500"),
            "{:?}",
            n.waiting_for_shadow
        );
        // And thin dirty traffic is judged by the dataset, not alone.
        let thin = compared(consumer("dash", Risk::Low, "shadow"), 100.0, 1.0);
        let big = compared(consumer("fraud", Risk::High, "shadow"), 100_000.0, 0.0);
        let v = shadow_verdict(&[&thin, &big], 3600.0, NOW);
        assert!(v.ready);
        assert_eq!(
            next_to_move(&[&thin, &big], &v, NOW).proven_by,
            ProvenBy::Dataset
        );
    }

    #[test]
    fn a_pooled_ratio_does_not_hide_the_candidates_own_divergence() {
        let dash = compared(consumer("dash", Risk::Low, "shadow"), 2000.0, 10.0);
        let fraud = compared(consumer("fraud", Risk::High, "shadow"), 100_000.0, 0.0);
        let v = shadow_verdict(&[&dash, &fraud], 3600.0, NOW);
        assert!(v.ready, "{v:?}");
        let n = next_to_move(&[&dash, &fraud], &v, NOW);
        assert!(!n.ready && n.settled);
        assert!(
            n.waiting_for_shadow[0]
                .starts_with("dash's own comparisons diverge: 0.500 % over 2,000"),
            "{:?}",
            n.waiting_for_shadow
        );
    }

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1314.0), "1,314");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn the_lowest_risk_batch_reader_is_next_once_earlier_ones_settled() {
        let low = on_streaming_for(consumer("dash", Risk::Low, "streaming"), 15.0);
        let medium = consumer("ops", Risk::Medium, "batch");
        let high = consumer("fraud", Risk::High, "shadow");
        let n = next(&[&high, &medium, &low]);
        assert_eq!(n.consumer.as_deref(), Some("ops"));
        assert!(n.ready, "{n:?}");
        assert!(n.tied_with.is_empty());
    }

    #[test]
    fn next_waits_for_fourteen_days_without_a_trip() {
        let low = on_streaming_for(consumer("dash", Risk::Low, "streaming"), 3.0);
        let medium = consumer("ops", Risk::Medium, "batch");
        let n = next(&[&low, &medium]);
        assert_eq!(n.consumer.as_deref(), Some("ops"));
        assert!(!n.ready);
        assert_eq!(
            n.waiting_for,
            ["dash (low) has read streaming for 3d00h of 14d"]
        );

        let mut tripped = on_streaming_for(consumer("dash", Risk::Low, "streaming"), 20.0);
        tripped.gate_trips_settle = 1.0;
        let n = next(&[&tripped, &medium]);
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
        let n = next(&[&b, &a]);
        assert_eq!(n.consumer.as_deref(), Some("alpha"));
        assert_eq!(n.tied_with, ["beta"]);
        // An equal-risk consumer already on streaming must have settled too.
        let c = on_streaming_for(consumer("gamma", Risk::Low, "canary"), 1.0);
        let n = next(&[&b, &a, &c]);
        assert!(!n.ready);
    }

    #[test]
    fn a_missing_consumer_is_waited_for_not_dropped() {
        let mut gone = consumer("gone", Risk::Low, "streaming");
        gone.modes.clear();
        gone.last_modes = vec!["streaming".to_owned()];
        assert_eq!(gone.phase(), Phase::NotReporting);
        let ops = consumer("ops", Risk::Medium, "batch");
        let n = next(&[&gone, &ops]);
        assert_eq!(n.consumer.as_deref(), Some("ops"));
        assert!(!n.ready);
        assert!(n.waiting_for[0].contains("stopped reporting"));
        // Nor is it counted as reading either side for the risk order.
        assert!(risk_order_violations(&[&gone, &ops]).is_empty());
    }

    #[test]
    fn no_batch_reader_means_nobody_is_next() {
        let a = on_streaming_for(consumer("a", Risk::Low, "streaming_only"), 30.0);
        let n = next(&[&a]);
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
