//! When one probe target is due: its own phase within the interval, derived
//! from a hash of what it reads, so targets are spread over the interval
//! rather than all due in the same second. Pure: time is passed in.

use std::time::Duration;

use tokio::time::Instant;

/// The first probes after a target appears (a start, or a reload that adds
/// it) are spread over at most this long, not the whole interval: the stale
/// rule needs batch's watermark, and `/status` its age, soon after a start,
/// not up to an interval (default 30 s, often more) later.
pub const FIRST_SPREAD: Duration = Duration::from_secs(5);

/// A target's place in time: its first probe at `origin` + `fraction` of
/// `min(interval, FIRST_SPREAD)`, then one at each `origin` + `fraction` of
/// `interval` + k × `interval` (k ≥ 1). The slots stay put whenever a probe
/// actually goes out (a late one, held for an in-flight slot, does not
/// shift the next), so the spread never decays into a common beat.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    /// `origin` + the target's phase: where slot 0 would be.
    base: Instant,
    next_due: Instant,
}

impl Schedule {
    /// A target seen first at `now`, with `fraction` (0..1) its phase.
    pub fn first(now: Instant, fraction: f64, interval: Duration) -> Schedule {
        let fraction = fraction.clamp(0.0, 1.0);
        Schedule {
            interval,
            base: now + interval.mul_f64(fraction),
            next_due: now + interval.min(FIRST_SPREAD).mul_f64(fraction),
        }
    }

    /// Whether the target's slot has come at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next_due
    }

    /// When the target is due next.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// The slot that came is done (probed, or skipped because no route
    /// wanted it): due next at the first slot after `now`, never slot 0
    /// (the first probe stood for it).
    pub fn advance(&mut self, now: Instant) {
        let step = self.interval.as_nanos().max(1);
        let k = match now.checked_duration_since(self.base) {
            Some(past) => past.as_nanos() / step + 1,
            None => 1,
        };
        let offset = Duration::from_nanos(u64::try_from(step * k).unwrap_or(u64::MAX));
        self.next_due = self.base + offset;
    }
}

/// A fraction in 0..1 from `bytes`: the same target always has the same
/// phase, different targets are spread evenly.
pub fn phase_of(bytes: &[u8]) -> f64 {
    let h = xxhash_rust::xxh3::xxh3_64(bytes);
    // The top 53 bits: an f64 holds them exactly.
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_short_interval_puts_the_first_probe_at_the_phase_then_every_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::first(t0, 0.25, 4 * S);
        assert_eq!(s.next_due(), t0 + S);
        assert!(!s.is_due(t0));
        assert!(s.is_due(t0 + S));
        s.advance(t0 + S);
        assert_eq!(s.next_due(), t0 + 5 * S);
        // Late (held for a slot): the next slot does not move.
        s.advance(t0 + 5 * S + S / 2);
        assert_eq!(s.next_due(), t0 + 9 * S);
        // Very late: slots missed are skipped, not fired in a row.
        s.advance(t0 + 20 * S);
        assert_eq!(s.next_due(), t0 + 21 * S);
    }

    #[test]
    fn a_long_interval_spreads_the_first_probe_over_the_first_spread_only() {
        let t0 = Instant::now();
        let mut s = Schedule::first(t0, 0.5, 60 * S);
        assert_eq!(s.next_due(), t0 + FIRST_SPREAD / 2);
        s.advance(t0 + FIRST_SPREAD / 2);
        // Then on its phase in the interval, at least one interval later.
        assert_eq!(s.next_due(), t0 + 30 * S + 60 * S);
        s.advance(t0 + 90 * S);
        assert_eq!(s.next_due(), t0 + 150 * S);
    }

    #[test]
    fn phases_are_stable_and_spread() {
        assert_eq!(phase_of(b"HEAD http://a/x"), phase_of(b"HEAD http://a/x"));
        let mut quarters = [0usize; 4];
        for i in 0..1000 {
            let f = phase_of(format!("HEAD http://127.0.0.1:8080/p{i}").as_bytes());
            assert!((0.0..1.0).contains(&f));
            quarters[(f * 4.0) as usize] += 1;
        }
        assert!(
            quarters.iter().all(|&n| (200..300).contains(&n)),
            "{quarters:?}"
        );
    }
}
