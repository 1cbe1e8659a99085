//! The values behind a route's series: plain atomics, written on the read's
//! path without a lock or a lookup and read when `/metrics` is scraped.
//! Per route there are about 170 of them (every label value of every
//! family, so a counter never needs registering on the hot path); what a
//! scrape shows of them is `exposition`'s choice.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn increment(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value set now and then (an `f64`'s bits); NaN means unknown.
#[derive(Debug)]
pub struct Gauge(AtomicU64);

impl Default for Gauge {
    fn default() -> Self {
        Gauge(AtomicU64::new(0f64.to_bits()))
    }
}

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets: 1 ms to 2.5 s
/// in eight steps. A local sidecar's own cost is under 1 ms (the first
/// bucket says "fast"), an upstream's answer lands in the middle, a stuck
/// one in `+Inf`. Each bucket is one series per route and side, which is
/// what a thousand routes pay for (docs/metrics.md, "What a route costs").
pub const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5];

/// A latency histogram over `LATENCY_BUCKETS`: a count per bucket (not
/// cumulative; the exposition sums them), the count and the sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

/// What a scrape reads of a histogram: cumulative bucket counts, the count
/// and the sum.
pub struct HistogramSnapshot {
    pub cumulative: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn record(&self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        // The sum's bits are replaced whole; a lost race retries.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + seconds).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Read bucket by bucket while reads may record: the count is read
    /// last and raised to the buckets' total, so `+Inf` is never below a
    /// bucket (the text format's one rule about them).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0; LATENCY_BUCKETS.len()];
        let mut running = 0;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            running += b.load(Ordering::Relaxed);
            *c = running;
        }
        HistogramSnapshot {
            cumulative,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed).max(running),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_value_in_its_bucket_and_overflow_only_in_the_count() {
        let h = Histogram::default();
        for v in [0.0005, 0.001, 0.003, 0.2, 7.0] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, [2, 2, 3, 3, 3, 3, 4, 4]);
        assert_eq!(s.count, 5);
        assert!((s.sum - 7.2045).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn gauges_start_at_zero_and_hold_nan() {
        let g = Gauge::default();
        assert_eq!(g.get(), 0.0);
        g.set(f64::NAN);
        assert!(g.get().is_nan());
    }
}
