//! Data freshness and failure windows: watermark parsing, the last watermark
//! seen per side, and the sliding windows behind the error-rate and divergence
//! ratios.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{HeaderName, LAST_MODIFIED};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds from a watermark value: RFC 3339 (any offset), Unix
/// seconds (with or without a fraction) or Unix milliseconds. A bare integer
/// of 12 digits or more is read as milliseconds (seconds that large are past
/// `t` as RFC 3339 (UTC), for /status, the state file and the access log.
pub fn rfc3339(t: std::time::SystemTime) -> Option<String> {
    time::OffsetDateTime::from(t).format(&Rfc3339).ok()
}

/// the year 33000). `None` for anything else.
pub fn parse_watermark(value: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(value).ok()?.trim();
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    if b.iter().all(|c| c.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        return Some(if b.len() >= 12 {
            n
        } else {
            n.checked_mul(1000)?
        });
    }
    if b.iter().all(|c| c.is_ascii_digit() || *c == b'.')
        && b.iter().filter(|c| **c == b'.').count() == 1
    {
        let secs: f64 = s.parse().ok()?;
        if secs.is_finite() && secs >= 0.0 {
            return Some((secs * 1000.0).round() as i64);
        }
        return None;
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The watermark of a response: the configured header, else `Last-Modified`
/// (an HTTP date) when allowed.
pub fn watermark_of(headers: &HeaderMap, header: &HeaderName, last_modified: bool) -> Option<i64> {
    if let Some(v) = headers.get(header) {
        return parse_watermark(v.as_bytes());
    }
    if last_modified {
        let v = headers.get(LAST_MODIFIED)?.to_str().ok()?;
        let t = httpdate::parse_http_date(v).ok()?;
        return t
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64);
    }
    None
}

/// The last watermark seen from one side (Unix ms; 0 = never seen), and when
/// it was last seen (for the idle-side probe).
#[derive(Debug, Default)]
pub struct WatermarkCell {
    watermark_ms: AtomicI64,
    seen_at_ms: AtomicI64,
}

impl WatermarkCell {
    pub fn record(&self, watermark_ms: i64, now_ms: i64) {
        self.watermark_ms.store(watermark_ms, Ordering::Relaxed);
        self.seen_at_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The watermark, if any was ever seen.
    pub fn get(&self) -> Option<i64> {
        match self.watermark_ms.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v),
        }
    }

    /// When a read or probe last brought a watermark (Unix ms; 0 = never).
    pub fn seen_at(&self) -> i64 {
        self.seen_at_ms.load(Ordering::Relaxed)
    }

    /// Data age in seconds at `now_ms`.
    pub fn age_seconds(&self, now_ms: i64) -> Option<f64> {
        self.get().map(|w| (now_ms - w) as f64 / 1000.0)
    }
}

const SLOTS: usize = 30;

/// A ratio (failed / total) over a sliding window, lock-free: the window is cut
/// into 30 slots, each stamped with the epoch it counts; a slot found stale is
/// reset by the first writer of the new epoch. Counts that race a reset may be
/// lost, which a ratio over minutes tolerates.
#[derive(Debug)]
pub struct RatioWindow {
    slot_ms: u64,
    slots: [Slot; SLOTS],
}

#[derive(Debug, Default)]
struct Slot {
    epoch: AtomicU64,
    total: AtomicU64,
    failed: AtomicU64,
}

impl RatioWindow {
    pub fn new(window: Duration) -> RatioWindow {
        let slot_ms = (window.as_millis() as u64 / SLOTS as u64).max(1);
        RatioWindow {
            slot_ms,
            slots: Default::default(),
        }
    }

    /// The window length this was built for.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.slot_ms * SLOTS as u64)
    }

    /// Counts one event at `now_ms`.
    pub fn record(&self, failed: bool, now_ms: i64) {
        let epoch = now_ms.max(0) as u64 / self.slot_ms;
        let slot = &self.slots[(epoch % SLOTS as u64) as usize];
        let seen = slot.epoch.load(Ordering::Acquire);
        if seen != epoch
            && slot
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.total.store(0, Ordering::Relaxed);
            slot.failed.store(0, Ordering::Relaxed);
        }
        slot.total.fetch_add(1, Ordering::Relaxed);
        if failed {
            slot.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (failed, total) over the window ending at `now_ms`.
    pub fn counts(&self, now_ms: i64) -> (u64, u64) {
        let epoch = now_ms.max(0) as u64 / self.slot_ms;
        let oldest = epoch.saturating_sub(SLOTS as u64 - 1);
        let (mut failed, mut total) = (0, 0);
        for s in &self.slots {
            let e = s.epoch.load(Ordering::Acquire);
            if e >= oldest && e <= epoch {
                total += s.total.load(Ordering::Relaxed);
                failed += s.failed.load(Ordering::Relaxed);
            }
        }
        (failed, total)
    }

    /// Failed share over the window; `None` when nothing was counted.
    pub fn ratio(&self, now_ms: i64) -> Option<f64> {
        let (failed, total) = self.counts(now_ms);
        (total > 0).then(|| failed as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_watermark_form() {
        assert_eq!(parse_watermark(b"1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_watermark(b"1700000000123"), Some(1_700_000_000_123));
        assert_eq!(parse_watermark(b"1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(
            parse_watermark(b"2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_watermark(b"2023-11-15T00:13:20.250+02:00"),
            Some(1_700_000_000_250)
        );
        for bad in [&b""[..], b"soon", b"12:00", b"-5", b"1.2.3", b"\xff"] {
            assert_eq!(parse_watermark(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn last_modified_is_used_only_when_allowed_and_header_absent() {
        let name = HeaderName::from_static("x-data-watermark");
        let mut h = HeaderMap::new();
        h.insert(
            LAST_MODIFIED,
            "Tue, 14 Nov 2023 22:13:20 GMT".parse().unwrap(),
        );
        assert_eq!(watermark_of(&h, &name, true), Some(1_700_000_000_000));
        assert_eq!(watermark_of(&h, &name, false), None);
        h.insert(&name, "1600000000".parse().unwrap());
        assert_eq!(watermark_of(&h, &name, true), Some(1_600_000_000_000));
    }

    #[test]
    fn window_counts_recent_events_and_forgets_old_ones() {
        let w = RatioWindow::new(Duration::from_secs(300));
        let t0 = 1_700_000_000_000;
        assert_eq!(w.ratio(t0), None);
        for i in 0..10 {
            w.record(i < 3, t0 + i * 1000);
        }
        assert_eq!(w.counts(t0 + 10_000), (3, 10));
        assert!((w.ratio(t0 + 10_000).unwrap() - 0.3).abs() < 1e-9);
        // Four minutes later the events are still inside the window...
        w.record(false, t0 + 240_000);
        assert_eq!(w.counts(t0 + 240_000), (3, 11));
        // ...and six minutes later only the last one is.
        assert_eq!(w.counts(t0 + 360_000 + 10_000), (0, 1));
        assert_eq!(w.ratio(t0 + 900_000), None);
    }

    #[test]
    fn watermark_cell_reports_age() {
        let c = WatermarkCell::default();
        assert_eq!(c.age_seconds(5000), None);
        c.record(1000, 2000);
        assert_eq!(c.age_seconds(5000), Some(4.0));
        assert_eq!(c.seen_at(), 2000);
    }
}
