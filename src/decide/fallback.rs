//! When a read that chose streaming may be answered by batch instead, and why.
//!
//! The rule, written once: a fallback is one hop (streaming to batch, never
//! back), decided on streaming's response head before a byte of it reached the
//! consumer, only for a reason the route's `fallback.on` lists, never in
//! `streaming_only` mode, and only when the request can be sent again (its
//! body, if any, was buffered in full). Stale streaming data falls back only
//! when batch's last known watermark is newer than the stale answer's:
//! otherwise batch would serve data older still, at the cost of a second
//! round trip, and the stale streaming answer is served (still counted as
//! `stale`).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

use crate::config::{CircuitPolicy, FallbackPolicy, FallbackReason, Mode};

/// What one upstream attempt came to, or why none was made. The one
/// classification of an attempt: it gives the metric `result` label, the
/// fallback reason, whether the circuit counts it, and whether the error
/// window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A usable answer below 400, fresh enough.
    Ok,
    /// A 4xx answer: the caller's problem, passed through.
    Status4xx,
    /// A 5xx answer.
    Status5xx,
    /// Refused, reset, DNS or TLS failure before a response head.
    Connect,
    /// No response head within the side's timeout.
    Timeout,
    /// An answer whose watermark is older than `max_staleness`.
    Stale,
    /// The upstream answered with something that is not HTTP/1.1 cutover can
    /// frame (counted as `connect`: the side failed to give an answer).
    Protocol,
    /// Not attempted: streaming was at `max_inflight`.
    Overflow,
    /// Not attempted: the circuit is open.
    CircuitOpen,
}

impl AttemptOutcome {
    /// The outcomes of attempts that were made, in the order of the
    /// `result` label's values (`RESULT_LABELS`).
    pub const RESULTS: [AttemptOutcome; 6] = [
        AttemptOutcome::Ok,
        AttemptOutcome::Status4xx,
        AttemptOutcome::Status5xx,
        AttemptOutcome::Connect,
        AttemptOutcome::Timeout,
        AttemptOutcome::Stale,
    ];

    /// The `result` label of `cutover_upstream_requests_total`, for an
    /// attempt that was made; `None` for one that was not.
    pub fn result(self) -> Option<&'static str> {
        Some(match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Status4xx => "4xx",
            AttemptOutcome::Status5xx => "5xx",
            AttemptOutcome::Connect | AttemptOutcome::Protocol => "connect",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::Stale => "stale",
            AttemptOutcome::Overflow | AttemptOutcome::CircuitOpen => return None,
        })
    }

    /// Index into per-result arrays (`RESULTS` order), for an attempt made.
    pub fn result_index(self) -> Option<usize> {
        let label = self.result()?;
        AttemptOutcome::RESULTS
            .iter()
            .position(|r| r.result() == Some(label))
    }

    /// The fallback reason this outcome would give, if it is a failure.
    pub fn fallback_reason(self) -> Option<FallbackReason> {
        Some(match self {
            AttemptOutcome::Ok | AttemptOutcome::Status4xx => return None,
            AttemptOutcome::Connect | AttemptOutcome::Protocol => FallbackReason::Connect,
            AttemptOutcome::Timeout => FallbackReason::Timeout,
            AttemptOutcome::Status5xx => FallbackReason::Status5xx,
            AttemptOutcome::Stale => FallbackReason::Stale,
            AttemptOutcome::Overflow => FallbackReason::Overflow,
            AttemptOutcome::CircuitOpen => FallbackReason::Circuit,
        })
    }

    /// Whether the side failed to answer: counts against the circuit and in
    /// the error ratio. Stale data is an answer, 4xx is the caller's, and
    /// overflow and an open circuit never reached the side.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            AttemptOutcome::Connect
                | AttemptOutcome::Protocol
                | AttemptOutcome::Timeout
                | AttemptOutcome::Status5xx
        )
    }

    /// Whether nothing was sent upstream (so even an unbuffered body can
    /// still go to batch).
    pub fn nothing_sent(self) -> bool {
        matches!(self, AttemptOutcome::Overflow | AttemptOutcome::CircuitOpen)
    }
}

/// What `decide` needs to know besides the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The request can be sent again (its body, if any, is buffered).
    pub replayable: bool,
    /// The watermark of streaming's answer (Unix ms), if it had one.
    pub answer_watermark_ms: Option<i64>,
    /// The last watermark batch showed (Unix ms), if it ever showed one.
    pub batch_watermark_ms: Option<i64>,
}

/// Decides whether the read falls back to batch. `Some(reason)`: answer from
/// batch and say `reason`; `None`: the streaming outcome stands (an answer, or
/// an error passed through to the consumer).
pub fn decide(
    mode: Mode,
    policy: &FallbackPolicy,
    outcome: AttemptOutcome,
    facts: Facts,
) -> Option<FallbackReason> {
    let reason = outcome.fallback_reason()?;
    if mode == Mode::StreamingOnly || !policy.on.contains(reason) {
        return None;
    }
    if outcome == AttemptOutcome::Stale {
        let batch_is_newer = matches!(
            (facts.batch_watermark_ms, facts.answer_watermark_ms),
            (Some(b), Some(s)) if b > s
        );
        if !batch_is_newer {
            return None;
        }
    }
    (facts.replayable || outcome.nothing_sent()).then_some(reason)
}

/// What the circuit says about the next streaming attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Closed,
    /// The cooldown is over and this read is the one trial read.
    Trial,
    /// Open (or half-open with a trial already in flight): do not call streaming.
    Open,
}

/// What recording an attempt did to the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitChange {
    None,
    /// Opened, or re-opened after a failed trial read.
    Opened,
    /// Closed again by a good read.
    Closed,
}

/// A route's streaming circuit breaker. Lock-free; survives reloads with the
/// route's state. Times are milliseconds on any monotonic-enough clock the
/// caller passes in.
#[derive(Debug, Default)]
pub struct Circuit {
    consecutive_failures: AtomicU32,
    /// 0 while closed; else when the cooldown ends.
    open_until_ms: AtomicI64,
    trial_in_flight: AtomicBool,
}

impl Circuit {
    /// Asks whether a streaming attempt may go ahead at `now_ms`.
    pub fn admit(&self, now_ms: i64) -> Admission {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Closed;
        }
        if now_ms < until {
            return Admission::Open;
        }
        match self.trial_in_flight.compare_exchange(
            false,
            true,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Admission::Trial,
            Err(_) => Admission::Open,
        }
    }

    /// Records a streaming attempt's outcome, and whether this call opened
    /// (or re-opened) or closed the circuit.
    pub fn record(
        &self,
        policy: &CircuitPolicy,
        admission: Admission,
        failed: bool,
        now_ms: i64,
    ) -> CircuitChange {
        if !failed {
            self.consecutive_failures.store(0, Ordering::Release);
            if admission == Admission::Trial || self.open_until_ms.load(Ordering::Acquire) != 0 {
                self.open_until_ms.store(0, Ordering::Release);
                self.trial_in_flight.store(false, Ordering::Release);
                return CircuitChange::Closed;
            }
            return CircuitChange::None;
        }
        if policy.failures == 0 {
            return CircuitChange::None;
        }
        let open = |this: &Circuit| {
            let until = now_ms + policy.cooldown.as_millis() as i64;
            this.open_until_ms.store(until.max(1), Ordering::Release);
            this.trial_in_flight.store(false, Ordering::Release);
        };
        if admission == Admission::Trial {
            open(self);
            return CircuitChange::Opened;
        }
        let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= policy.failures && self.open_until_ms.load(Ordering::Acquire) == 0 {
            open(self);
            return CircuitChange::Opened;
        }
        CircuitChange::None
    }

    /// Gives up a trial slot without a verdict (the read was cancelled).
    pub fn abandon_trial(&self) {
        self.trial_in_flight.store(false, Ordering::Release);
    }

    /// Whether the circuit is open (or half-open) at `now_ms`.
    pub fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }

    /// Current run of consecutive failures.
    pub fn failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Acquire)
    }

    /// "closed", "open" or "half_open" at `now_ms`, for `/status`.
    pub fn state_name(&self, now_ms: i64) -> &'static str {
        match self.open_until_ms.load(Ordering::Acquire) {
            0 => "closed",
            until if now_ms < until => "open",
            _ => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReasonSet;
    use std::time::Duration;

    /// A replayable (or not) read whose stale answer batch could beat.
    fn facts(replayable: bool) -> Facts {
        Facts {
            replayable,
            answer_watermark_ms: Some(1_000),
            batch_watermark_ms: Some(2_000),
        }
    }

    fn policy(on: ReasonSet) -> FallbackPolicy {
        FallbackPolicy {
            on,
            max_staleness: None,
            circuit: CircuitPolicy {
                failures: 3,
                cooldown: Duration::from_secs(10),
            },
        }
    }

    #[test]
    fn every_failure_falls_back_when_listed() {
        let p = policy(ReasonSet::all());
        for (o, r) in [
            (AttemptOutcome::Connect, FallbackReason::Connect),
            (AttemptOutcome::Timeout, FallbackReason::Timeout),
            (AttemptOutcome::Status5xx, FallbackReason::Status5xx),
            (AttemptOutcome::Stale, FallbackReason::Stale),
            (AttemptOutcome::Overflow, FallbackReason::Overflow),
            (AttemptOutcome::CircuitOpen, FallbackReason::Circuit),
        ] {
            assert_eq!(decide(Mode::Streaming, &p, o, facts(true)), Some(r));
            assert_eq!(decide(Mode::Canary, &p, o, facts(true)), Some(r));
            assert_eq!(decide(Mode::StreamingOnly, &p, o, facts(true)), None);
        }
        assert_eq!(
            decide(Mode::Streaming, &p, AttemptOutcome::Ok, facts(true)),
            None
        );
    }

    #[test]
    fn unlisted_reasons_pass_through() {
        let mut on = ReasonSet::empty();
        on.insert(FallbackReason::Connect);
        let p = policy(on);
        assert_eq!(
            decide(Mode::Streaming, &p, AttemptOutcome::Connect, facts(true)),
            Some(FallbackReason::Connect)
        );
        assert_eq!(
            decide(Mode::Streaming, &p, AttemptOutcome::Status5xx, facts(true)),
            None
        );
    }

    #[test]
    fn an_unbuffered_body_blocks_fallback_once_sent() {
        let p = policy(ReasonSet::all());
        assert_eq!(
            decide(Mode::Streaming, &p, AttemptOutcome::Status5xx, facts(false)),
            None
        );
        assert_eq!(
            decide(Mode::Streaming, &p, AttemptOutcome::Timeout, facts(false)),
            None
        );
        assert_eq!(
            decide(Mode::Streaming, &p, AttemptOutcome::Overflow, facts(false)),
            Some(FallbackReason::Overflow)
        );
    }

    #[test]
    fn stale_falls_back_only_to_newer_batch_data() {
        let p = policy(ReasonSet::all());
        let stale = |batch, answer| {
            decide(
                Mode::Streaming,
                &p,
                AttemptOutcome::Stale,
                Facts {
                    replayable: true,
                    answer_watermark_ms: answer,
                    batch_watermark_ms: batch,
                },
            )
        };
        assert_eq!(stale(Some(2_000), Some(1_000)), Some(FallbackReason::Stale));
        // Batch is older still, or as old, or unknown: streaming's answer stands.
        assert_eq!(stale(Some(500), Some(1_000)), None);
        assert_eq!(stale(Some(1_000), Some(1_000)), None);
        assert_eq!(stale(None, Some(1_000)), None);
    }

    #[test]
    fn circuit_opens_after_consecutive_failures_then_half_opens() {
        let p = policy(ReasonSet::all()).circuit;
        let c = Circuit::default();
        let t = 1_000;
        for i in 0..2 {
            assert_eq!(c.admit(t), Admission::Closed);
            assert_eq!(
                c.record(&p, Admission::Closed, true, t + i),
                CircuitChange::None
            );
        }
        // A success resets the run.
        assert_eq!(
            c.record(&p, Admission::Closed, false, t),
            CircuitChange::None
        );
        for _ in 0..2 {
            c.record(&p, Admission::Closed, true, t);
        }
        assert_eq!(
            c.record(&p, Admission::Closed, true, t),
            CircuitChange::Opened
        );
        assert_eq!(c.admit(t + 1), Admission::Open);
        assert_eq!(c.state_name(t + 1), "open");
        // Cooldown over: exactly one trial read.
        let later = t + 10_000;
        assert_eq!(c.admit(later), Admission::Trial);
        assert_eq!(c.admit(later), Admission::Open);
        assert_eq!(c.state_name(later), "half_open");
        // The trial fails: open again for a full cooldown.
        assert_eq!(
            c.record(&p, Admission::Trial, true, later),
            CircuitChange::Opened
        );
        assert_eq!(c.admit(later + 9_999), Admission::Open);
        // Next trial succeeds: closed.
        assert_eq!(c.admit(later + 10_000), Admission::Trial);
        assert_eq!(
            c.record(&p, Admission::Trial, false, later + 10_000),
            CircuitChange::Closed
        );
        assert_eq!(c.admit(later + 10_001), Admission::Closed);
        assert_eq!(c.failures(), 0);
    }

    #[test]
    fn zero_failures_disables_the_circuit() {
        let p = CircuitPolicy {
            failures: 0,
            cooldown: Duration::from_secs(1),
        };
        let c = Circuit::default();
        for _ in 0..100 {
            c.record(&p, Admission::Closed, true, 0);
        }
        assert_eq!(c.admit(0), Admission::Closed);
    }
}
