//! One logical read, one side. A **sequence** is the reads that belong
//! together: every read of one object (same path, whatever its `Range`) and
//! every page of one listing (same path and query once the route's
//! `sequence.params` are left out). This module says which sequence a read
//! belongs to and whether it may continue one (pure), and keeps each route's
//! table of recent sequences with the side that answered them (`Pins`).
//!
//! Why: a Parquet reader takes the footer in one read and column chunks in
//! others; a paginating loop follows cursors one side issued. Answering any
//! of those reads from the other side hands the consumer data neither side
//! holds, so a read that continues a sequence is never answered by the other
//! side (`proxy::forward` passes the error through instead).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::HeaderMap;
use http::header::RANGE;
use lru::LruCache;

use crate::config::{Mode, Sequence, SideName};
use crate::decide::routing::fnv1a;

/// What a read is, in sequence terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceRead {
    /// The sequence's key: a hash of the path and of the query pairs that
    /// are not sequence params (in any order).
    pub key: u64,
    /// The read carries `Range` or one of the route's sequence params, so it
    /// continues a sequence when that sequence was seen within `pin_ttl`.
    pub may_continue: bool,
}

/// The sequence `path?query` belongs to under the route's rules. Costs one
/// pass over the path and query, no allocation.
pub fn classify(
    rules: &Sequence,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> SequenceRead {
    let mut may_continue = headers.contains_key(RANGE);
    let mut pairs: u64 = 0;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        if rules.params.iter().any(|p| p == name) {
            may_continue = true;
            continue;
        }
        // Summed, so `?a=1&b=2` and `?b=2&a=1` are one listing (a service's
        // own next link may order them its way); mixed first, so that a sum
        // of two pairs does not meet a third pair's hash by arithmetic.
        pairs = pairs.wrapping_add(mix(fnv1a(pair.as_bytes())));
    }
    SequenceRead {
        key: fnv1a(path.as_bytes()) ^ mix(pairs),
        may_continue,
    }
}

/// A 64-bit finaliser (splitmix64's), spreading every input bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Whether a route in `mode` may serve the consumer from `side` at all: a
/// sequence pinned to a side the mode no longer reads is refused, never
/// moved to the other side.
pub fn mode_serves(mode: Mode, side: SideName) -> bool {
    match mode {
        Mode::Batch | Mode::Shadow => side == SideName::Batch,
        Mode::Canary | Mode::Streaming => true,
        Mode::StreamingOnly => side == SideName::Streaming,
    }
}

/// A sequence cutover remembers: the side that answered its last read, which
/// answers every read that continues it (a fallback's side, after one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub side: SideName,
    last_ms: i64,
}

/// A route's remembered sequences, least recently read dropped first past
/// `max_pins`. Survives reloads with the route's state. A route whose reads
/// carry no `Range` and no sequence param and never fell back never touches
/// the lock: `is_empty` is one atomic load.
#[derive(Debug)]
pub struct Pins {
    table: Mutex<LruCache<u64, Pin>>,
    len: AtomicUsize,
    /// Set once the route saw a read that may continue a sequence: from
    /// then on its plain reads are remembered too (a reader's `HEAD` or
    /// first read starts the sequence its ranges continue).
    tracking: AtomicBool,
}

impl Default for Pins {
    fn default() -> Pins {
        Pins {
            table: Mutex::new(LruCache::unbounded()),
            len: AtomicUsize::new(0),
            tracking: AtomicBool::new(false),
        }
    }
}

impl Pins {
    /// Whether the table is empty (so a plain read need not look).
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    /// Whether reads of this route are remembered even without a `Range` or
    /// a sequence param.
    pub fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Relaxed)
    }

    /// The sequence's pin, if it was read within `ttl` of `now_ms`.
    pub fn get(&self, key: u64, ttl: Duration, now_ms: i64) -> Option<Pin> {
        let mut table = self.lock();
        let pin = *table.peek(&key)?;
        if expired(&pin, ttl, now_ms) {
            table.pop(&key);
            self.len.store(table.len(), Ordering::Relaxed);
            return None;
        }
        Some(pin)
    }

    /// Records a read of the sequence answered by `side`, at most
    /// `max_pins` kept (expired ones go first, then the least recently read).
    /// Returns the number of pins held.
    pub fn record(&self, key: u64, side: SideName, rules: &Sequence, now_ms: i64) -> usize {
        let mut table = self.lock();
        table.put(
            key,
            Pin {
                side,
                last_ms: now_ms,
            },
        );
        while let Some((_, oldest)) = table.peek_lru() {
            if table.len() > rules.max_pins || expired(oldest, rules.pin_ttl, now_ms) {
                table.pop_lru();
            } else {
                break;
            }
        }
        let len = table.len();
        self.len.store(len, Ordering::Relaxed);
        len
    }

    /// Notes that the route's reads continue sequences (see `tracking`).
    pub fn start_tracking(&self) {
        if !self.tracking() {
            self.tracking.store(true, Ordering::Relaxed);
        }
    }

    /// Pins held now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<u64, Pin>> {
        // A panic while holding it left a table that is still a valid LRU.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn expired(pin: &Pin, ttl: Duration, now_ms: i64) -> bool {
    now_ms.saturating_sub(pin.last_ms) > ttl.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rules() -> Sequence {
        Sequence {
            params: vec!["cursor".into(), "offset".into()],
            pin_ttl: Duration::from_secs(60),
            max_pins: 3,
        }
    }

    fn read(path: &str, query: Option<&str>) -> SequenceRead {
        classify(&rules(), path, query, &HeaderMap::new())
    }

    #[test]
    fn pages_of_one_listing_share_a_key_and_continue_it() {
        let first = read("/v1/orders", Some("limit=10&status=open"));
        let next = read("/v1/orders", Some("status=open&cursor=abc&limit=10"));
        let later = read("/v1/orders", Some("limit=10&offset=20&status=open"));
        assert!(!first.may_continue);
        assert!(next.may_continue && later.may_continue);
        assert_eq!(first.key, next.key);
        assert_eq!(first.key, later.key);
        // Another filter is another listing; another path another object.
        assert_ne!(
            first.key,
            read("/v1/orders", Some("limit=10&status=shut")).key
        );
        assert_ne!(
            first.key,
            read("/v1/orders/x", Some("limit=10&status=open")).key
        );
        assert_ne!(read("/v1/a", None).key, read("/v1/a", Some("b=1")).key);
        // A param's name is matched whole.
        assert!(!read("/v1/orders", Some("cursors=1&xoffset=2")).may_continue);
    }

    #[test]
    fn range_reads_of_one_object_share_its_key() {
        let mut h = HeaderMap::new();
        h.insert(RANGE, HeaderValue::from_static("bytes=-8"));
        let footer = classify(&rules(), "/lake/f.parquet", None, &h);
        assert!(footer.may_continue);
        assert_eq!(footer.key, read("/lake/f.parquet", None).key);
        assert!(!read("/lake/f.parquet", None).may_continue);
    }

    #[test]
    fn modes_serve_only_the_sides_they_read() {
        assert!(mode_serves(Mode::Batch, SideName::Batch));
        assert!(!mode_serves(Mode::Shadow, SideName::Streaming));
        assert!(mode_serves(Mode::Canary, SideName::Streaming));
        assert!(mode_serves(Mode::Streaming, SideName::Batch));
        assert!(!mode_serves(Mode::StreamingOnly, SideName::Batch));
    }

    #[test]
    fn pins_expire_and_the_least_recently_read_go_first() {
        let pins = Pins::default();
        let r = rules();
        assert!(pins.is_empty());
        pins.record(1, SideName::Batch, &r, 0);
        pins.record(2, SideName::Streaming, &r, 10);
        pins.record(3, SideName::Streaming, &r, 20);
        // Reading 1 again makes 2 the least recently read.
        pins.record(1, SideName::Batch, &r, 30);
        assert_eq!(pins.record(4, SideName::Streaming, &r, 40), 3);
        assert_eq!(pins.get(2, r.pin_ttl, 40), None);
        assert_eq!(
            pins.get(1, r.pin_ttl, 40).map(|p| p.side),
            Some(SideName::Batch)
        );
        // 60 s after its last read a pin still holds; a moment later it is gone.
        assert!(pins.get(3, r.pin_ttl, 60_020).is_some());
        assert_eq!(pins.get(3, r.pin_ttl, 60_021), None);
        assert_eq!(pins.len(), 2);
        // Recording sweeps expired pins from the old end.
        assert_eq!(pins.record(9, SideName::Batch, &r, 200_000), 1);
    }
}
