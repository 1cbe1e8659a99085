//! Per-route state that outlives config snapshots: circuit, windows, last
//! watermarks, in-flight counts, the figures `/status` shows and the metric
//! handles, keyed by route name. Every event is recorded by one call that
//! updates both the metric and the figure, so the two never disagree.

use crate::decide::budget::{Budget, Held};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{FallbackReason, Rule, SideName};
use crate::decide::fallback::{AttemptOutcome, Circuit};
use crate::decide::freshness::{RatioWindow, WatermarkCell};
use crate::decide::reconcile::outcome::{Skip, Verdict};
use crate::decide::reconcile::report::{Category, Report};
use crate::decide::sequence::Pins;
use crate::decide::whole_object::Versions;
use crate::state::gate::GateState;
use crate::state::metrics::{Metrics, RouteKey, RouteMetrics};

/// Everything about a route that must survive a reload.
#[derive(Debug)]
pub struct RouteState {
    pub metrics: RouteMetrics,
    pub circuit: Circuit,
    /// Indexed by `SideName::index`.
    watermarks: [WatermarkCell; 2],
    /// Failed share of upstream attempts, per side. Replaced (reset) only when
    /// a reload changes the window length.
    errors: ArcSwap<[RatioWindow; 2]>,
    /// Diverged share of comparisons.
    divergence: ArcSwap<RatioWindow>,
    /// Fallen-back share of reads answered.
    fallback_share: ArcSwap<RatioWindow>,
    /// Streaming reads waiting for a response head (for `max_inflight`).
    streaming_inflight: AtomicUsize,
    /// When the idle-side probe's last answer was applied, per side (Unix
    /// ms): a watermark seen no later than this came from the probe.
    pub probed_at: [AtomicI64; 2],
    /// Reads answered, per serving side (metric handles cannot be read back).
    reads: [AtomicU64; 2],
    /// Fallbacks by reason (`FallbackReason::index`).
    fallbacks: [AtomicU64; FallbackReason::ALL.len()],
    /// Comparisons (shadow or sampled) in flight, for `reconcile.max_inflight`.
    reconcile_inflight: AtomicUsize,
    /// Comparisons by verdict (`Verdict::index`).
    verdicts: [AtomicU64; Verdict::ALL.len()],
    /// Fallbacks logged at `info`, a few a second at most.
    pub fallback_log: LogBudget,
    /// How often a `timing` divergence reaches the divergence log.
    pub timing_log: Sampled,
    /// Contract checks by result (`ContractResult::index`).
    contract: [AtomicU64; ContractResult::ALL.len()],
    /// Answers that broke each rule (`Rule::index`).
    contract_rules: [AtomicU64; Rule::ALL.len()],
    /// Dead-letter lines written, a few a second at most.
    pub dead_letter_log: LogBudget,
    /// The route's gate: its own windows (fed below) and its trip.
    pub gate: GateState,
    /// The process's budget of bytes held by comparisons (shared by every
    /// route; `limits.max_compared_bytes`).
    compare_budget: Arc<Budget>,
    /// The sequences the route remembers, with the side that answers them.
    pub pins: Pins,
    /// The objects read in ranges that were compared whole, by version
    /// (`serve::whole`), so each version is fetched whole once per window.
    pub whole_objects: Versions,
    /// The `Last-Modified` dates each side served recently, so a date
    /// validator reaches only a side that can judge it (`validators`).
    pub issued_dates: crate::net::validators::IssuedDates,
}

/// A budget of log events per second, so a failing upstream cannot flood
/// the log: `take` says whether this event may be logged, and how many were
/// left out since the last one that was.
#[derive(Debug, Default)]
pub struct LogBudget {
    second: AtomicI64,
    used: AtomicU64,
    dropped: AtomicU64,
}

impl LogBudget {
    /// Events logged per second at most.
    pub const PER_SECOND: u64 = 5;

    /// `Some(dropped since the last logged event)` when this one may be logged.
    pub fn take(&self, now_ms: i64) -> Option<u64> {
        let second = now_ms.div_euclid(1000);
        if self.second.swap(second, Ordering::AcqRel) != second {
            self.used.store(0, Ordering::Release);
        }
        if self.used.fetch_add(1, Ordering::AcqRel) < Self::PER_SECOND {
            Some(self.dropped.swap(0, Ordering::AcqRel))
        } else {
            self.dropped.fetch_add(1, Ordering::AcqRel);
            None
        }
    }
}

/// One event per period at most, counting what it leaves out: the
/// divergence log keeps a `timing` divergence (expected while the sides'
/// watermarks differ) once in a while, so its room goes to defects.
#[derive(Debug, Default)]
pub struct Sampled {
    next_ms: AtomicI64,
    left_out: AtomicU64,
}

impl Sampled {
    /// `Some(left out since the last event taken)` when this event may be
    /// logged (the first, and then one per `period_ms`); `None` otherwise.
    pub fn take(&self, now_ms: i64, period_ms: i64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Acquire);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + period_ms,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            return Some(self.left_out.swap(0, Ordering::AcqRel));
        }
        None
    }

    /// Counts `n` events not logged.
    pub fn leave_out(&self, n: u64) {
        self.left_out.fetch_add(n, Ordering::AcqRel);
    }
}

/// What one contract check of a streaming answer came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractResult {
    Pass,
    Violation,
    /// Not checked: too large, undecodable, or not records.
    Skipped,
}

impl ContractResult {
    pub const ALL: [ContractResult; 3] = [
        ContractResult::Pass,
        ContractResult::Violation,
        ContractResult::Skipped,
    ];

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A route's figures at one moment: what `/status`, the scrape-time gauges
/// and `cutover status` show. `None` is unknown (nothing seen, or nothing in
/// the window), never a reassuring 0.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Reads answered, per serving side.
    pub reads: [u64; 2],
    /// Fallbacks by reason (`FallbackReason::index`).
    pub fallbacks: [u64; FallbackReason::ALL.len()],
    /// Comparisons by verdict (`Verdict::index`).
    pub verdicts: [u64; Verdict::ALL.len()],
    pub age: [Option<f64>; 2],
    /// Batch age minus streaming age.
    pub freshness_delta: Option<f64>,
    pub error_ratio: [Option<f64>; 2],
    /// Streaming minus batch error ratio.
    pub error_ratio_delta: Option<f64>,
    pub divergence_ratio: Option<f64>,
    /// Fallen-back share of reads answered.
    pub fallback_ratio: Option<f64>,
    /// What every ratio above looks back over.
    pub window: Duration,
    /// Contract checks by result (`ContractResult::index`).
    pub contract: [u64; ContractResult::ALL.len()],
    /// Answers that broke each rule (`Rule::index`).
    pub contract_rules: [u64; Rule::ALL.len()],
}

impl Figures {
    pub fn fallbacks_total(&self) -> u64 {
        self.fallbacks.iter().sum()
    }
}

impl RouteState {
    pub fn new(
        metrics: &Metrics,
        key: &RouteKey,
        window: Duration,
        compare_budget: Arc<Budget>,
    ) -> RouteState {
        RouteState {
            metrics: RouteMetrics::new(metrics, key),
            circuit: Circuit::default(),
            watermarks: Default::default(),
            errors: ArcSwap::from_pointee([RatioWindow::new(window), RatioWindow::new(window)]),
            divergence: ArcSwap::from_pointee(RatioWindow::new(window)),
            fallback_share: ArcSwap::from_pointee(RatioWindow::new(window)),
            streaming_inflight: AtomicUsize::new(0),
            probed_at: Default::default(),
            reads: Default::default(),
            fallbacks: Default::default(),
            reconcile_inflight: AtomicUsize::new(0),
            verdicts: Default::default(),
            fallback_log: LogBudget::default(),
            timing_log: Sampled::default(),
            contract: Default::default(),
            contract_rules: Default::default(),
            dead_letter_log: LogBudget::default(),
            gate: GateState::default(),
            compare_budget,
            pins: Pins::default(),
            whole_objects: Versions::default(),
            issued_dates: Default::default(),
        }
    }

    /// Resets the windows when a new config changes their length.
    fn set_window(&self, window: Duration) {
        if self.errors.load()[0].window() != RatioWindow::new(window).window() {
            self.errors.store(Arc::new([
                RatioWindow::new(window),
                RatioWindow::new(window),
            ]));
            self.divergence.store(Arc::new(RatioWindow::new(window)));
            self.fallback_share
                .store(Arc::new(RatioWindow::new(window)));
        }
    }

    pub fn watermark(&self, side: SideName) -> &WatermarkCell {
        &self.watermarks[side.index()]
    }

    /// A read answered to the consumer by `side` with `status`; `fell_back`
    /// when batch answered a read that chose streaming.
    pub fn record_read(
        &self,
        side: SideName,
        status: u16,
        elapsed: Duration,
        fell_back: bool,
        now_ms: i64,
    ) {
        let s = side.index();
        self.reads[s].fetch_add(1, Ordering::Relaxed);
        self.fallback_share.load().record(fell_back, now_ms);
        self.gate.record_read(side, fell_back, now_ms);
        self.metrics.requests[s][RouteMetrics::code_class(status)].increment(1);
        self.metrics.request_duration[s].record(elapsed.as_secs_f64());
    }

    /// A read that chose streaming and is answered by batch.
    pub fn record_fallback(&self, reason: FallbackReason) {
        self.fallbacks[reason.index()].fetch_add(1, Ordering::Relaxed);
        self.metrics.fallbacks[reason.index()].increment(1);
    }

    /// One upstream attempt that was made: its result, its time to the
    /// response head, the watermark it carried, and the error window.
    pub fn record_attempt(
        &self,
        side: SideName,
        outcome: AttemptOutcome,
        elapsed: Duration,
        watermark_ms: Option<i64>,
        now_ms: i64,
    ) {
        let s = side.index();
        self.metrics.upstream_duration[s].record(elapsed.as_secs_f64());
        if let Some(w) = watermark_ms {
            self.watermarks[s].record(w, now_ms);
            self.metrics.watermark[s].set(w as f64 / 1000.0);
        }
        if let Some(i) = outcome.result_index() {
            self.metrics.upstream_requests[s][i].increment(1);
            self.errors.load()[s].record(outcome.is_failure(), now_ms);
            self.gate.record_attempt(side, outcome.is_failure(), now_ms);
        }
    }

    /// One idle-side probe's answer, applied to one of the routes whose side
    /// shares the probe's target (`serve::probe`). The watermark is kept as
    /// any read's is. The attempt is counted (its result) only on the route
    /// that `sent` it: one request, one count, whoever shares it. Its time
    /// is not in `cutover_upstream_duration_seconds`: a HEAD's is not a
    /// read's, and an idle side would pay a histogram's series for it.
    /// A probe that could not connect is left out of the error window and
    /// the gate's: a probe is not a consumer's read, and its connect failure
    /// may be this host's pressure rather than the side's health. Probes
    /// never feed the circuit (only streaming reads do, `proxy`).
    pub fn record_probe(
        &self,
        side: SideName,
        outcome: AttemptOutcome,
        watermark_ms: Option<i64>,
        now_ms: i64,
        sent: bool,
    ) {
        let s = side.index();
        if let Some(w) = watermark_ms {
            self.watermarks[s].record(w, now_ms);
            self.metrics.watermark[s].set(w as f64 / 1000.0);
        }
        let Some(i) = outcome.result_index() else {
            return;
        };
        if sent {
            self.metrics.upstream_requests[s][i].increment(1);
        }
        if outcome != AttemptOutcome::Connect {
            self.errors.load()[s].record(outcome.is_failure(), now_ms);
            self.gate.record_attempt(side, outcome.is_failure(), now_ms);
        }
    }

    /// A comparison that ran: its verdict, its divergences by category, and
    /// the divergence window.
    pub fn record_comparison(&self, report: &Report, now_ms: i64) {
        let diverged = report.diverged();
        let verdict = if diverged {
            Verdict::Diverged
        } else {
            Verdict::Match
        };
        self.count_verdict(verdict);
        self.divergence.load().record(diverged, now_ms);
        self.gate.record_comparison(diverged, now_ms);
        for c in Category::ALL {
            let n = report.count(c);
            if n > 0 {
                self.metrics.divergences[c.index()].increment(n);
            }
        }
    }

    /// A comparison that did not happen, and why.
    pub fn record_skip(&self, why: Skip) {
        self.count_verdict(Verdict::Skipped);
        self.metrics.reconcile_skipped[why.index()].increment(1);
    }

    /// A streaming answer's contract check: its result, the rules it broke
    /// (each once), and the gate's window.
    pub fn record_contract(
        &self,
        result: ContractResult,
        broken: impl IntoIterator<Item = Rule>,
        now_ms: i64,
    ) {
        self.contract[result.index()].fetch_add(1, Ordering::Relaxed);
        self.metrics.contract_checks[result.index()].increment(1);
        for rule in broken {
            self.contract_rules[rule.index()].fetch_add(1, Ordering::Relaxed);
            self.metrics.contract_violations[rule.index()].increment(1);
        }
        if result != ContractResult::Skipped {
            self.gate
                .record_contract(result == ContractResult::Violation, now_ms);
        }
    }

    fn count_verdict(&self, v: Verdict) {
        self.verdicts[v.index()].fetch_add(1, Ordering::Relaxed);
        self.metrics.reconcile[v.index()].increment(1);
    }

    /// The route's figures at `now_ms`.
    pub fn figures(&self, now_ms: i64) -> Figures {
        let load = |a: &[AtomicU64]| {
            a.iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        };
        let age = SideName::BOTH.map(|s| self.watermark(s).age_seconds(now_ms));
        let errors = self.errors.load();
        let error_ratio = SideName::BOTH.map(|s| errors[s.index()].ratio(now_ms));
        let both = |a: [Option<f64>; 2], f: fn(f64, f64) -> f64| match a {
            [Some(b), Some(s)] => Some(f(b, s)),
            _ => None,
        };
        let mut figures = Figures {
            age,
            freshness_delta: both(age, |b, s| b - s),
            error_ratio,
            error_ratio_delta: both(error_ratio, |b, s| s - b),
            divergence_ratio: self.divergence.load().ratio(now_ms),
            fallback_ratio: self.fallback_share.load().ratio(now_ms),
            window: errors[0].window(),
            ..Figures::default()
        };
        figures.reads.copy_from_slice(&load(&self.reads));
        figures.fallbacks.copy_from_slice(&load(&self.fallbacks));
        figures.verdicts.copy_from_slice(&load(&self.verdicts));
        figures.contract.copy_from_slice(&load(&self.contract));
        figures
            .contract_rules
            .copy_from_slice(&load(&self.contract_rules));
        figures
    }

    /// A share of the comparisons' byte budget, for what a contract check
    /// holds (a body read ahead, or copied as it is served).
    pub fn compare_held(&self) -> Arc<Held> {
        Held::new(self.compare_budget.clone())
    }

    /// Takes a streaming in-flight slot unless `max` are taken. The guard
    /// gives it back.
    pub fn try_streaming_slot(&self, max: Option<usize>) -> Option<InflightGuard<'_>> {
        let n = self.streaming_inflight.fetch_add(1, Ordering::AcqRel);
        let guard = InflightGuard(&self.streaming_inflight);
        match max {
            Some(max) if n >= max => None, // guard drops, giving the slot back
            _ => Some(guard),
        }
    }
}

/// Takes a comparison slot unless `max` are taken; the slot is owned so it
/// can travel with the comparison task.
pub fn try_reconcile_slot(state: &Arc<RouteState>, max: usize) -> Option<ReconcileSlot> {
    let n = state.reconcile_inflight.fetch_add(1, Ordering::AcqRel);
    let slot = ReconcileSlot {
        state: state.clone(),
        held: Held::new(state.compare_budget.clone()),
    };
    (n < max).then_some(slot)
}

/// A comparison's slot, and the bytes of the process's budget its answers
/// hold; both given back when dropped (the bytes once every handle from
/// `held` is dropped too).
#[derive(Debug)]
pub struct ReconcileSlot {
    state: Arc<RouteState>,
    held: Arc<Held>,
}

impl ReconcileSlot {
    /// A handle for what buffers an answer of this comparison.
    pub fn held(&self) -> Arc<Held> {
        self.held.clone()
    }
}

impl Drop for ReconcileSlot {
    fn drop(&mut self) {
        self.state.reconcile_inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Gives back a streaming in-flight slot when dropped.
#[derive(Debug)]
pub struct InflightGuard<'a>(&'a AtomicUsize);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Hands out `RouteState` by (consumer, route name) so that a reload finds
/// the state the previous generation used. Only touched while a config is
/// applied, never per read.
#[derive(Debug, Clone)]
pub struct StateRegistry {
    metrics: Metrics,
    routes: Arc<Mutex<HashMap<RouteKey, Arc<RouteState>>>>,
    /// Bytes held by comparisons, across routes (`limits.max_compared_bytes`).
    compare_budget: Arc<Budget>,
}

impl StateRegistry {
    pub fn new(metrics: Metrics) -> StateRegistry {
        StateRegistry {
            metrics,
            routes: Default::default(),
            compare_budget: Arc::new(Budget::new(usize::MAX)),
        }
    }

    /// The comparisons' byte budget (its bound is set by each config).
    pub fn compare_budget(&self) -> &Arc<Budget> {
        &self.compare_budget
    }

    /// A registry whose metrics go nowhere useful: for tests and benchmarks.
    pub fn detached() -> StateRegistry {
        StateRegistry::new(Metrics::new())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The state for this route, shared with earlier generations; its
    /// windows take `window`'s length (reset if that changed).
    pub fn route_state(&self, key: &RouteKey, window: Duration) -> Arc<RouteState> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let state = routes.entry(key.clone()).or_insert_with(|| {
            Arc::new(RouteState::new(
                &self.metrics,
                key,
                window,
                self.compare_budget.clone(),
            ))
        });
        state.set_window(window);
        self.metrics.show_route(key);
        state.clone()
    }

    /// Forgets every route but `keep` (a config just applied): their state
    /// goes, and their series leave `/metrics`. A route that comes back
    /// later starts afresh (its counters go on from where they were, as
    /// Prometheus counters must).
    pub fn retain(&self, keep: &[RouteKey]) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|key, _| {
            let kept = keep.contains(key);
            if !kept {
                self.metrics.hide_route(key);
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(route: &str) -> RouteKey {
        RouteKey {
            consumer: "c".into(),
            route: route.into(),
            dataset: format!("{route}-ds"),
        }
    }

    #[test]
    fn same_route_name_gets_the_same_state() {
        let r = StateRegistry::detached();
        let w = Duration::from_secs(300);
        let a = r.route_state(&key("orders"), w);
        let b = r.route_state(&key("orders"), w);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &r.route_state(&key("refunds"), w)));
    }

    #[test]
    fn a_dropped_route_is_forgotten_and_its_series_hidden() {
        let r = StateRegistry::detached();
        let w = Duration::from_secs(300);
        let orders = r.route_state(&key("orders"), w);
        r.route_state(&key("refunds"), w).record_read(
            SideName::Batch,
            200,
            Duration::ZERO,
            false,
            0,
        );
        orders.record_read(SideName::Batch, 200, Duration::ZERO, false, 0);
        r.retain(&[key("orders")]);
        let text = r.metrics().render();
        assert!(text.contains("route=\"orders\""), "{text}");
        assert!(!text.contains("route=\"refunds\""), "{text}");
        assert!(Arc::ptr_eq(&orders, &r.route_state(&key("orders"), w)));
        let back = r.route_state(&key("refunds"), w);
        assert_eq!(back.figures(0).reads, [0, 0]);
        assert!(r.metrics().render().contains("route=\"refunds\""));
    }

    #[test]
    fn one_call_counts_the_metric_and_the_figure() {
        let r = StateRegistry::detached();
        let s = r.route_state(&key("orders"), Duration::from_secs(60));
        s.record_read(SideName::Streaming, 200, Duration::ZERO, false, 1_000);
        s.record_read(SideName::Batch, 200, Duration::ZERO, true, 1_000);
        s.record_fallback(FallbackReason::Timeout);
        s.record_skip(Skip::Inflight);
        let f = s.figures(1_000);
        assert_eq!(f.reads, [1, 1]);
        assert_eq!(f.fallbacks_total(), 1);
        assert_eq!(f.fallback_ratio, Some(0.5));
        assert_eq!(f.window, Duration::from_secs(60));
        assert_eq!(f.verdicts[Verdict::Skipped.index()], 1);
        let text = r.metrics().render();
        assert!(
            text.contains(
                "cutover_fallbacks_total{consumer=\"c\",route=\"orders\",dataset=\"orders-ds\",reason=\"timeout\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_log_budget_allows_a_few_a_second_and_counts_the_rest() {
        let b = LogBudget::default();
        let logged = (0..20).filter(|_| b.take(10_000).is_some()).count();
        assert_eq!(logged as u64, LogBudget::PER_SECOND);
        // The next second: allowed again, and told how many were left out.
        assert_eq!(b.take(11_000), Some(20 - LogBudget::PER_SECOND));
        assert_eq!(b.take(11_001), Some(0));
    }

    #[test]
    fn inflight_slots_are_bounded_and_returned() {
        let r = StateRegistry::detached();
        let s = r.route_state(&key("orders"), Duration::from_secs(60));
        let a = s.try_streaming_slot(Some(2)).expect("first slot");
        let b = s.try_streaming_slot(Some(2)).expect("second slot");
        assert!(s.try_streaming_slot(Some(2)).is_none());
        drop(a);
        assert!(s.try_streaming_slot(Some(2)).is_some());
        drop(b);
        assert_eq!(s.streaming_inflight.load(Ordering::Relaxed), 0);
    }
}
