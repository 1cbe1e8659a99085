//! Gates: a route that rolls itself back when streaming misbehaves.
//!
//! Every `gate.interval` one task (`run`) evaluates each gated route's
//! thresholds over the gate's own window: per check **pass**, **fail** or
//! **inconclusive** (too little traffic; never a failure). `gate.failures`
//! evaluations in a row with a failed check **trip** the gate: one atomic
//! that `proxy::plan` loads per read turns the route's mode into
//! `rollback_to` for every new read. A trip stays until a person edits the
//! route's `mode` or `gate` (`GateState::configure` compares the compiled
//! values); with `state_file` it survives a restart too (`state_file`).
//!
//! Decisions, so they are written down once:
//! - An evaluation with no failed check resets the count (SPEC: failures
//!   must be consecutive), even when every check was inconclusive.
//! - `error_ratio_delta` when batch had no attempt in the window: batch
//!   counts as 0 errors, so the delta is streaming's own error ratio. In
//!   `streaming` mode batch only sees fallbacks, comparisons and probes; an
//!   "inconclusive" there would blind the check exactly when streaming
//!   serves everything.
//! - `min_reads` applies to every check: streaming reads (reads that chose
//!   streaming, whoever answered) for `error_ratio_delta`, `fallback_ratio`
//!   and `streaming_age`; comparisons for `divergence_ratio`; checked
//!   answers for `contract_violation_ratio`.
//! - A gate on a `batch` or `shadow` route is never evaluated (a config
//!   warning says so); its `/status` state is `off`.

pub mod state_file;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::config::{Gate, Mode, SideName};
use crate::decide::freshness::RatioWindow;

/// One threshold a gate checks; the `check` label of `cutover_gate_trips_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    ErrorRatioDelta,
    FallbackRatio,
    DivergenceRatio,
    StreamingAge,
    ContractViolationRatio,
}

impl Check {
    pub const ALL: [Check; 5] = [
        Check::ErrorRatioDelta,
        Check::FallbackRatio,
        Check::DivergenceRatio,
        Check::StreamingAge,
        Check::ContractViolationRatio,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::ErrorRatioDelta => "error_ratio_delta",
            Check::FallbackRatio => "fallback_ratio",
            Check::DivergenceRatio => "divergence_ratio",
            Check::StreamingAge => "streaming_age",
            Check::ContractViolationRatio => "contract_violation_ratio",
        }
    }

    pub fn parse(s: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The gate's threshold for this check (seconds for `streaming_age`),
    /// `None` when the gate does not check it.
    pub fn threshold(self, gate: &Gate) -> Option<f64> {
        match self {
            Check::ErrorRatioDelta => gate.max_error_ratio_delta,
            Check::FallbackRatio => gate.max_fallback_ratio,
            Check::DivergenceRatio => gate.max_divergence_ratio,
            Check::StreamingAge => gate.max_streaming_age.map(|d| d.as_secs_f64()),
            Check::ContractViolationRatio => gate.max_contract_violation_ratio,
        }
    }
}

/// What one check came to; the `result` label of `cutover_gate_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckVerdict {
    Pass,
    Fail,
    /// Too little traffic (or nothing seen): never counts toward a trip.
    Inconclusive,
}

impl CheckVerdict {
    pub const ALL: [CheckVerdict; 3] = [
        CheckVerdict::Pass,
        CheckVerdict::Fail,
        CheckVerdict::Inconclusive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckVerdict::Pass => "pass",
            CheckVerdict::Fail => "fail",
            CheckVerdict::Inconclusive => "inconclusive",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The counts a gate's checks are computed from, over the gate's window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GateFigures {
    /// Reads that chose streaming (whoever answered them).
    pub streaming_reads: u64,
    /// Of those, the reads batch answered.
    pub fallbacks: u64,
    /// Upstream attempts per side (`SideName::index`): (failed, total).
    pub attempts: [(u64, u64); 2],
    pub comparisons: u64,
    pub diverged: u64,
    /// Streaming answers checked against the contract, and of those the
    /// ones that broke it.
    pub contract_checks: u64,
    pub contract_violations: u64,
    /// Now minus streaming's last watermark, in seconds; `None`: none seen.
    pub streaming_age: Option<f64>,
}

/// One check of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckResult {
    pub check: Check,
    /// `None` when there was nothing to compute it from.
    pub value: Option<f64>,
    pub threshold: f64,
    /// The traffic the value stands on (reads, or comparisons).
    pub sample: u64,
    pub verdict: CheckVerdict,
}

/// pass / fail / inconclusive for one value: inconclusive below `min_reads`
/// or without a value, fail above the threshold (equal passes).
pub fn verdict(value: Option<f64>, threshold: f64, sample: u64, min_reads: u64) -> CheckVerdict {
    match value {
        _ if sample < min_reads => CheckVerdict::Inconclusive,
        None => CheckVerdict::Inconclusive,
        Some(v) if v > threshold => CheckVerdict::Fail,
        Some(_) => CheckVerdict::Pass,
    }
}

/// Every check the gate configures, in `Check::ALL` order. Pure.
pub fn evaluate(gate: &Gate, f: &GateFigures) -> Vec<CheckResult> {
    let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
    Check::ALL
        .into_iter()
        .filter_map(|check| {
            let threshold = check.threshold(gate)?;
            let (value, sample) = match check {
                Check::ErrorRatioDelta => {
                    let [(bf, bt), (sf, st)] = f.attempts;
                    // No batch attempt in the window: batch counts as 0 errors.
                    let batch = ratio(bf, bt).unwrap_or(0.0);
                    (ratio(sf, st).map(|s| s - batch), f.streaming_reads)
                }
                Check::FallbackRatio => (ratio(f.fallbacks, f.streaming_reads), f.streaming_reads),
                Check::DivergenceRatio => (ratio(f.diverged, f.comparisons), f.comparisons),
                Check::StreamingAge => (f.streaming_age, f.streaming_reads),
                Check::ContractViolationRatio => (
                    ratio(f.contract_violations, f.contract_checks),
                    f.contract_checks,
                ),
            };
            Some(CheckResult {
                check,
                value,
                threshold,
                sample,
                verdict: verdict(value, threshold, sample, gate.min_reads),
            })
        })
        .collect()
}

/// The count of consecutive bad evaluations after one more: up by one when
/// a check failed, else back to 0. Pure.
pub fn next_count(count: u32, results: &[CheckResult]) -> u32 {
    if results.iter().any(|r| r.verdict == CheckVerdict::Fail) {
        count.saturating_add(1)
    } else {
        0
    }
}

/// Why and when a gate tripped.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    pub check: Check,
    pub value: f64,
    pub threshold: f64,
    pub at: SystemTime,
}

/// The gate's own windows, fed by the same `RouteState::record_*` calls as
/// the route's figures; only a gated route has them.
#[derive(Debug)]
struct GateWindows {
    /// Reads that chose streaming; "failed" = batch answered (a fallback).
    streaming_reads: RatioWindow,
    /// Upstream attempts per side.
    attempts: [RatioWindow; 2],
    /// Comparisons; "failed" = diverged.
    comparisons: RatioWindow,
    /// Contract checks; "failed" = a violation.
    contract: RatioWindow,
}

impl GateWindows {
    fn new(window: Duration) -> GateWindows {
        GateWindows {
            streaming_reads: RatioWindow::new(window),
            attempts: [RatioWindow::new(window), RatioWindow::new(window)],
            comparisons: RatioWindow::new(window),
            contract: RatioWindow::new(window),
        }
    }

    fn figures(&self, streaming_age: Option<f64>, now_ms: i64) -> GateFigures {
        let (fallbacks, streaming_reads) = self.streaming_reads.counts(now_ms);
        let (diverged, comparisons) = self.comparisons.counts(now_ms);
        let (contract_violations, contract_checks) = self.contract.counts(now_ms);
        GateFigures {
            streaming_reads,
            fallbacks,
            attempts: [
                self.attempts[0].counts(now_ms),
                self.attempts[1].counts(now_ms),
            ],
            comparisons,
            diverged,
            contract_checks,
            contract_violations,
            streaming_age,
        }
    }
}

/// A route's gate: what survives reloads in `RouteState`.
#[derive(Debug, Default)]
pub struct GateState {
    /// 0: serving as configured; else 1 + the `Mode::index` every new read
    /// uses. The only part a read touches (one load in `proxy::plan`).
    rollback: AtomicU8,
    /// `None` unless the route has a gate that is evaluated.
    windows: ArcSwapOption<GateWindows>,
    /// Touched by the evaluation task, reloads and `/status`; never per read.
    record: Mutex<GateRecord>,
}

#[derive(Debug, Default)]
struct GateRecord {
    /// The configured mode and gate this state belongs to; a reload with
    /// other values re-arms. `None`: no gate.
    armed_for: Option<(Mode, Gate)>,
    /// Evaluations in a row with a failed check.
    consecutive: u32,
    last: Vec<CheckResult>,
    evaluated_at: Option<SystemTime>,
    next_due: Option<Instant>,
    trip: Option<Trip>,
}

impl GateState {
    /// The mode a tripped gate imposes on every new read; `None` when the
    /// route serves as configured. Lock-free: the read path calls it.
    #[inline]
    pub fn rollback(&self) -> Option<Mode> {
        match self.rollback.load(Ordering::Acquire) {
            0 => None,
            i => Mode::ALL.get(usize::from(i) - 1).copied(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds the state to a route's compiled `mode` and `gate` (each time a
    /// config is applied). Unchanged values keep everything, a trip
    /// included; changed ones re-arm: trip, count and windows start afresh.
    pub fn configure(&self, route: &str, mode: Mode, gate: Option<&Gate>) {
        let mut rec = self.lock();
        let wanted = gate.map(|g| (mode, g.clone()));
        if rec.armed_for == wanted {
            return;
        }
        if rec.trip.is_some() {
            tracing::info!(
                route,
                mode = mode.as_str(),
                "gate re-armed: the route's mode or gate was edited"
            );
        }
        *rec = GateRecord {
            armed_for: wanted,
            ..GateRecord::default()
        };
        self.rollback.store(0, Ordering::Release);
        let windows = gate
            .filter(|_| mode.serves_streaming())
            .map(|g| Arc::new(GateWindows::new(g.window)));
        self.windows.store(windows);
    }

    /// A trip read back from the state file, for the `mode` and `gate` it
    /// was recorded under; ignored unless the state is armed for exactly those.
    pub fn restore(&self, mode: Mode, gate: &Gate, trip: Trip) -> bool {
        let mut rec = self.lock();
        if rec.armed_for.as_ref() != Some(&(mode, gate.clone())) || !mode.serves_streaming() {
            return false;
        }
        rec.trip = Some(trip);
        self.rollback
            .store(gate.rollback_to.index() as u8 + 1, Ordering::Release);
        true
    }

    /// A read answered by `side`; `fell_back` when it chose streaming.
    #[inline]
    pub fn record_read(&self, side: SideName, fell_back: bool, now_ms: i64) {
        if (side == SideName::Streaming || fell_back)
            && let Some(w) = &*self.windows.load()
        {
            w.streaming_reads.record(fell_back, now_ms);
        }
    }

    /// An upstream attempt that was made.
    #[inline]
    pub fn record_attempt(&self, side: SideName, failed: bool, now_ms: i64) {
        if let Some(w) = &*self.windows.load() {
            w.attempts[side.index()].record(failed, now_ms);
        }
    }

    /// A comparison that ran.
    #[inline]
    pub fn record_comparison(&self, diverged: bool, now_ms: i64) {
        if let Some(w) = &*self.windows.load() {
            w.comparisons.record(diverged, now_ms);
        }
    }

    /// A streaming answer checked against the contract.
    #[inline]
    pub fn record_contract(&self, violated: bool, now_ms: i64) {
        if let Some(w) = &*self.windows.load() {
            w.contract.record(violated, now_ms);
        }
    }

    /// Whether an evaluation is due at `now`, and when the next one is.
    /// The first comes one `interval` after the gate was armed.
    pub(crate) fn schedule(&self, interval: Duration, now: Instant) -> (bool, Instant) {
        let mut rec = self.lock();
        match rec.next_due {
            Some(due) if now >= due => {
                // Behind (a busy machine): the next one an interval from now.
                let next = if due + interval > now {
                    due + interval
                } else {
                    now + interval
                };
                rec.next_due = Some(next);
                (true, next)
            }
            Some(due) => (false, due),
            None => {
                let next = now + interval;
                rec.next_due = Some(next);
                (false, next)
            }
        }
    }

    /// Evaluates the gate over its window at `now_ms` and trips it if this
    /// was the `failures`-th bad evaluation in a row. Returns the results
    /// and the trip this evaluation caused, if it did; `None` when the state
    /// is not armed for `mode` and `gate` (a reload re-armed it meanwhile).
    pub fn evaluate(
        &self,
        mode: Mode,
        gate: &Gate,
        streaming_age: Option<f64>,
        now_ms: i64,
        now: SystemTime,
    ) -> Option<(Vec<CheckResult>, Option<Trip>)> {
        let windows = self.windows.load_full()?;
        let results = evaluate(gate, &windows.figures(streaming_age, now_ms));
        let mut rec = self.lock();
        if rec.armed_for.as_ref() != Some(&(mode, gate.clone())) {
            return None;
        }
        rec.consecutive = next_count(rec.consecutive, &results);
        rec.last = results.clone();
        rec.evaluated_at = Some(now);
        let mut tripped = None;
        if rec.trip.is_none() && rec.consecutive >= gate.failures {
            // The first failed check (in `Check::ALL` order) names the trip.
            if let Some(failed) = results.iter().find(|r| r.verdict == CheckVerdict::Fail) {
                let trip = Trip {
                    check: failed.check,
                    value: failed.value.unwrap_or(f64::NAN),
                    threshold: failed.threshold,
                    at: now,
                };
                self.rollback
                    .store(gate.rollback_to.index() as u8 + 1, Ordering::Release);
                rec.trip = Some(trip.clone());
                tripped = Some(trip);
            }
        }
        Some((results, tripped))
    }

    /// The trip in force, if the gate is tripped.
    pub fn trip(&self) -> Option<Trip> {
        self.lock().trip.clone()
    }

    /// `off`, `armed` or `tripped`, with the gate's settings, its last
    /// evaluation of each check and its trip: the `/status` `gate` field.
    pub fn status(&self) -> Value {
        let rec = self.lock();
        let Some((_, gate)) = rec.armed_for.as_ref().filter(|(m, _)| m.serves_streaming()) else {
            return json!({ "state": "off" });
        };
        let time = |t: SystemTime| crate::decide::freshness::rfc3339(t);
        let finite = |v: f64| v.is_finite().then_some(v);
        let mut checks = Map::new();
        for r in &rec.last {
            checks.insert(
                r.check.as_str().to_owned(),
                json!({
                    "value": r.value.and_then(finite),
                    "threshold": r.threshold,
                    "verdict": r.verdict.as_str(),
                    "sample": r.sample,
                }),
            );
        }
        json!({
            "state": if rec.trip.is_some() { "tripped" } else { "armed" },
            "rollback_to": gate.rollback_to.as_str(),
            "interval_seconds": gate.interval.as_secs_f64(),
            "window_seconds": gate.window.as_secs_f64(),
            "failures": gate.failures,
            "min_reads": gate.min_reads,
            "consecutive_failures": rec.consecutive,
            "evaluated_at": rec.evaluated_at.and_then(time),
            "checks": checks,
            "trip": rec.trip.as_ref().map(|t| json!({
                "check": t.check.as_str(),
                "value": finite(t.value),
                "threshold": t.threshold,
                "at": time(t.at),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate {
            interval: Duration::from_millis(100),
            window: Duration::from_secs(1),
            failures: 3,
            min_reads: 10,
            max_error_ratio_delta: Some(0.1),
            max_fallback_ratio: Some(0.2),
            max_divergence_ratio: Some(0.01),
            max_streaming_age: Some(Duration::from_secs(60)),
            max_contract_violation_ratio: Some(0.05),
            rollback_to: Mode::Batch,
        }
    }

    fn healthy() -> GateFigures {
        GateFigures {
            streaming_reads: 100,
            fallbacks: 5,
            attempts: [(1, 10), (5, 100)],
            comparisons: 50,
            diverged: 0,
            contract_checks: 100,
            contract_violations: 5,
            streaming_age: Some(3.0),
        }
    }

    fn verdicts(f: &GateFigures) -> Vec<(&'static str, CheckVerdict)> {
        evaluate(&gate(), f)
            .iter()
            .map(|r| (r.check.as_str(), r.verdict))
            .collect()
    }

    use CheckVerdict::{Fail, Inconclusive, Pass};

    #[test]
    fn healthy_figures_pass_every_check() {
        assert_eq!(
            verdicts(&healthy()),
            [
                ("error_ratio_delta", Pass),
                ("fallback_ratio", Pass),
                ("divergence_ratio", Pass),
                ("streaming_age", Pass),
                ("contract_violation_ratio", Pass),
            ]
        );
        let r = evaluate(&gate(), &healthy());
        assert!((r[0].value.unwrap() - (0.05 - 0.1)).abs() < 1e-9);
        assert_eq!(r[1].value, Some(0.05));
        assert_eq!(r[3].threshold, 60.0);
    }

    #[test]
    fn each_check_fails_on_its_own() {
        type Spoil = fn(&mut GateFigures);
        let cases: [(&str, Spoil); 5] = [
            ("error_ratio_delta", |f| f.attempts[1] = (30, 100)),
            ("fallback_ratio", |f| f.fallbacks = 30),
            ("divergence_ratio", |f| f.diverged = 1),
            ("streaming_age", |f| f.streaming_age = Some(61.0)),
            ("contract_violation_ratio", |f| f.contract_violations = 6),
        ];
        for (name, bad) in cases {
            let mut f = healthy();
            bad(&mut f);
            let failed: Vec<_> = verdicts(&f)
                .into_iter()
                .filter(|(_, v)| *v == Fail)
                .map(|(c, _)| c)
                .collect();
            assert_eq!(failed, [name]);
        }
    }

    #[test]
    fn thin_traffic_and_nothing_seen_are_inconclusive() {
        let thin = GateFigures {
            streaming_reads: 9,
            fallbacks: 9,
            attempts: [(0, 0), (9, 9)],
            comparisons: 9,
            diverged: 9,
            contract_checks: 9,
            contract_violations: 9,
            streaming_age: Some(1e6),
        };
        assert!(verdicts(&thin).iter().all(|(_, v)| *v == Inconclusive));
        let unseen = GateFigures {
            streaming_age: None,
            attempts: [(0, 0), (0, 0)],
            ..healthy()
        };
        let v = verdicts(&unseen);
        assert_eq!(v[0], ("error_ratio_delta", Inconclusive));
        assert_eq!(v[3], ("streaming_age", Inconclusive));
        // At the threshold passes; only above fails.
        assert_eq!(verdict(Some(0.2), 0.2, 10, 10), Pass);
        assert_eq!(verdict(Some(0.21), 0.2, 10, 10), Fail);
    }

    #[test]
    fn batch_without_attempts_counts_as_no_errors() {
        let f = GateFigures {
            attempts: [(0, 0), (20, 100)],
            ..healthy()
        };
        let r = evaluate(&gate(), &f);
        assert_eq!((r[0].value, r[0].verdict), (Some(0.2), Fail));
    }

    #[test]
    fn only_configured_checks_run() {
        let g = Gate {
            max_error_ratio_delta: None,
            max_divergence_ratio: None,
            max_streaming_age: None,
            max_contract_violation_ratio: None,
            ..gate()
        };
        let r = evaluate(&g, &healthy());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].check, Check::FallbackRatio);
    }

    fn result(verdict: CheckVerdict) -> CheckResult {
        CheckResult {
            check: Check::FallbackRatio,
            value: Some(0.0),
            threshold: 0.0,
            sample: 0,
            verdict,
        }
    }

    #[test]
    fn hysteresis_counts_consecutive_failures_only() {
        let bad = [result(Pass), result(Fail)];
        let good = [result(Pass)];
        let thin = [result(Inconclusive)];
        // Two bad, one good, two bad: never three in a row.
        let mut count = 0;
        let mut peak = 0;
        for e in [&bad[..], &bad, &good, &bad, &bad] {
            count = next_count(count, e);
            peak = peak.max(count);
        }
        assert_eq!((count, peak), (2, 2));
        // An evaluation with nothing but inconclusive checks also resets.
        assert_eq!(next_count(2, &thin), 0);
        assert_eq!(next_count(2, &bad), 3);
    }

    fn ms(t: i64) -> i64 {
        1_700_000_000_000 + t
    }

    #[test]
    fn a_gate_trips_after_failures_in_a_row_and_stays_until_re_armed() {
        let g = Gate {
            failures: 2,
            min_reads: 4,
            ..gate()
        };
        let s = GateState::default();
        s.configure("orders", Mode::Streaming, Some(&g));
        let bad = |t: i64| {
            for _ in 0..4 {
                s.record_read(SideName::Batch, true, ms(t));
            }
        };
        bad(0);
        let now = SystemTime::now();
        let (r, trip) = s
            .evaluate(Mode::Streaming, &g, None, ms(10), now)
            .expect("armed");
        assert_eq!(r[1].verdict, Fail);
        assert!(trip.is_none() && s.rollback().is_none());
        let (_, trip) = s
            .evaluate(Mode::Streaming, &g, None, ms(20), now)
            .expect("armed");
        let trip = trip.expect("second bad evaluation trips");
        assert_eq!((trip.check, trip.value), (Check::FallbackRatio, 1.0));
        assert_eq!(s.rollback(), Some(Mode::Batch));
        assert_eq!(s.status()["state"], "tripped");
        assert_eq!(s.status()["trip"]["check"], "fallback_ratio");
        // Good evaluations afterwards do not untrip it, nor does a reload
        // with the same mode and gate.
        s.configure("orders", Mode::Streaming, Some(&g));
        let (_, again) = s
            .evaluate(Mode::Streaming, &g, None, ms(5_000), now)
            .expect("armed");
        assert!(again.is_none());
        assert_eq!(s.rollback(), Some(Mode::Batch));
        // An edit of the mode re-arms it, with fresh windows.
        s.configure("orders", Mode::Canary, Some(&g));
        assert_eq!(s.rollback(), None);
        assert_eq!(s.status()["state"], "armed");
        assert_eq!(s.status()["consecutive_failures"], 0);
        // An evaluation for a config the state is no longer armed for is dropped.
        assert!(s.evaluate(Mode::Streaming, &g, None, ms(0), now).is_none());
    }

    #[test]
    fn two_bad_one_good_two_bad_does_not_trip_three_failures() {
        let g = Gate {
            failures: 3,
            min_reads: 2,
            window: Duration::from_millis(100),
            ..gate()
        };
        let s = GateState::default();
        s.configure("orders", Mode::Streaming, Some(&g));
        let now = SystemTime::now();
        // Each evaluation sees only the reads of its own 100 ms window.
        let mut t = 0;
        let mut step = |fell_back: bool| {
            t += 200;
            s.record_read(SideName::Streaming, false, ms(t));
            let side = if fell_back {
                SideName::Batch
            } else {
                SideName::Streaming
            };
            s.record_read(side, fell_back, ms(t));
            s.record_read(side, fell_back, ms(t));
            let (r, trip) = s
                .evaluate(Mode::Streaming, &g, None, ms(t + 1), now)
                .expect("armed");
            (r[1].verdict, trip.is_some())
        };
        let seen: Vec<_> = [true, true, false, true, true]
            .into_iter()
            .map(&mut step)
            .collect();
        assert_eq!(
            seen,
            [
                (Fail, false),
                (Fail, false),
                (Pass, false),
                (Fail, false),
                (Fail, false)
            ]
        );
        assert_eq!(s.rollback(), None);
        assert_eq!(step(true), (Fail, true), "the third bad one in a row trips");
        assert_eq!(s.rollback(), Some(Mode::Batch));
    }

    #[test]
    fn an_edit_of_the_gate_re_arms_and_removing_it_turns_it_off() {
        let g = Gate {
            failures: 1,
            min_reads: 1,
            ..gate()
        };
        let s = GateState::default();
        s.configure("orders", Mode::Streaming, Some(&g));
        s.record_read(SideName::Batch, true, ms(0));
        let tripped = s.evaluate(Mode::Streaming, &g, None, ms(1), SystemTime::now());
        assert!(tripped.expect("armed").1.is_some());
        let edited = Gate {
            max_fallback_ratio: Some(0.5),
            ..g.clone()
        };
        s.configure("orders", Mode::Streaming, Some(&edited));
        assert_eq!(s.rollback(), None);
        s.configure("orders", Mode::Streaming, None);
        assert_eq!(s.status(), json!({ "state": "off" }));
    }

    #[test]
    fn shadow_rollback_and_gates_on_batch_routes() {
        let g = Gate {
            rollback_to: Mode::Shadow,
            ..gate()
        };
        let s = GateState::default();
        s.configure("orders", Mode::Streaming, Some(&g));
        let trip = Trip {
            check: Check::StreamingAge,
            value: 99.0,
            threshold: 60.0,
            at: SystemTime::now(),
        };
        assert!(s.restore(Mode::Streaming, &g, trip.clone()));
        assert_eq!(s.rollback(), Some(Mode::Shadow));
        // A gate on a batch route is never evaluated or restored.
        let b = GateState::default();
        b.configure("orders", Mode::Batch, Some(&g));
        assert!(!b.restore(Mode::Batch, &g, trip));
        assert!(
            b.evaluate(Mode::Batch, &g, None, 0, SystemTime::now())
                .is_none()
        );
        assert_eq!(b.status()["state"], "off");
    }

    #[test]
    fn reads_that_did_not_choose_streaming_are_not_streaming_reads() {
        let s = GateState::default();
        s.configure("orders", Mode::Canary, Some(&gate()));
        s.record_read(SideName::Batch, false, ms(0));
        s.record_read(SideName::Streaming, false, ms(0));
        s.record_read(SideName::Batch, true, ms(0));
        s.record_attempt(SideName::Streaming, true, ms(0));
        s.record_comparison(true, ms(0));
        let w = s.windows.load_full().expect("windows");
        let f = w.figures(None, ms(1));
        assert_eq!((f.streaming_reads, f.fallbacks), (2, 1));
        assert_eq!(f.attempts, [(0, 0), (1, 1)]);
        assert_eq!((f.comparisons, f.diverged), (1, 1));
    }

    #[test]
    fn schedule_waits_one_interval_then_keeps_the_beat() {
        let s = GateState::default();
        let i = Duration::from_millis(100);
        let t0 = Instant::now();
        assert_eq!(s.schedule(i, t0), (false, t0 + i));
        assert_eq!(s.schedule(i, t0 + i / 2), (false, t0 + i));
        assert_eq!(s.schedule(i, t0 + i), (true, t0 + 2 * i));
        // Far behind: the next one is an interval from now.
        assert_eq!(s.schedule(i, t0 + 10 * i), (true, t0 + 11 * i));
    }
}
