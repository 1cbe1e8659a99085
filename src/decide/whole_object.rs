//! Which objects read in ranges are compared whole, and when again: a
//! route's table of the object versions it compared (`Versions`), keyed by
//! the target the consumer read (path and query), and the rule that says
//! whether a read's object is due (`due`, pure).
//!
//! Why: a Parquet reader's `HEAD` and ranged GETs are never comparable one
//! by one (a `206` is a part of an object, a HEAD has no body), so the
//! object is fetched whole from both sides instead (`serve::whole`). That
//! costs two whole objects, so it is done once per object version (the
//! validators the consumer was served) per `freshness.window`, not once per
//! read: a reader taking a file in a hundred ranges costs one comparison.

use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;
use http::header::{ETAG, LAST_MODIFIED};
use lru::LruCache;

use crate::decide::routing::fnv1a;

/// Objects remembered per route, least recently compared dropped first: at
/// about 100 bytes an entry, at most some 100 KiB a route.
pub const MAX_OBJECTS: usize = 1024;

/// An answer's version, as a digest of its validator: the `ETag`, else the
/// `Last-Modified`, else none (`0`: such an object is compared once per
/// window, since a change cannot be seen).
pub fn version_of(headers: &HeaderMap) -> u64 {
    if let Some(tag) = headers.get(ETAG) {
        fnv1a(&[b"etag:", tag.as_bytes()].concat())
    } else if let Some(date) = headers.get(LAST_MODIFIED) {
        fnv1a(&[b"date:", date.as_bytes()].concat())
    } else {
        0
    }
}

/// The table's key for an object: the target the consumer read, path and
/// query (a listing-like object differs by query; a `Range` does not make
/// another object).
pub fn key_of(path: &str, query: Option<&str>) -> u64 {
    match query {
        Some(q) => fnv1a(&[path.as_bytes(), b"?", q.as_bytes()].concat()),
        None => fnv1a(path.as_bytes()),
    }
}

/// What a route remembers of one object it compared whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    /// The version the consumer was served when the comparison was decided.
    pub served: u64,
    /// Batch's and streaming's versions as the whole reads found them,
    /// once both came back.
    pub pair: Option<(u64, u64)>,
    /// When the comparison was decided (Unix ms): the window runs from here.
    pub at_ms: i64,
}

/// Whether a read served `served` of an object last compared as `last` is
/// due a comparison at `now_ms`: never compared, another version served,
/// or `window` passed since the last one.
pub fn due(last: Option<&Compared>, served: u64, window: Duration, now_ms: i64) -> bool {
    match last {
        None => true,
        Some(c) => {
            c.served != served
                || now_ms.saturating_sub(c.at_ms)
                    >= i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
        }
    }
}

/// A route's objects compared whole, at most `MAX_OBJECTS`. Survives
/// reloads with the route's state. Touched only by reads that start an
/// object (a HEAD, the first ranged GET), never by plain reads.
#[derive(Debug)]
pub struct Versions {
    /// Unbounded to the crate, bounded here: `LruCache::new` would allocate
    /// room for every object up front (35 KiB on every route, most of which
    /// never read an object in ranges).
    table: Mutex<LruCache<u64, Compared>>,
    max: usize,
}

impl Default for Versions {
    fn default() -> Versions {
        Versions::with_capacity(MAX_OBJECTS)
    }
}

/// A claimed comparison: give it back with `Versions::release` if it never
/// started, or record what it found with `Versions::compared`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    key: u64,
    at_ms: i64,
}

impl Versions {
    /// A table of at most `max` objects (at least one).
    pub fn with_capacity(max: usize) -> Versions {
        Versions {
            table: Mutex::new(LruCache::unbounded()),
            max: max.max(1),
        }
    }

    /// Claims the comparison of object `key` served as `served` if it is
    /// `due`: recorded at once, so reads of the object that arrive while
    /// it runs (the next ranges) do not start another.
    pub fn claim(&self, key: u64, served: u64, window: Duration, now_ms: i64) -> Option<Claim> {
        let mut table = self.lock();
        if !due(table.get(&key), served, window, now_ms) {
            return None;
        }
        table.put(
            key,
            Compared {
                served,
                pair: None,
                at_ms: now_ms,
            },
        );
        while table.len() > self.max {
            table.pop_lru();
        }
        Some(Claim { key, at_ms: now_ms })
    }

    /// Forgets a claim whose comparison never started (no slot was free),
    /// so the object's next reader tries again. A later claim of the same
    /// object is left alone.
    pub fn release(&self, claim: Claim) {
        let mut table = self.lock();
        if table
            .peek(&claim.key)
            .is_some_and(|c| c.at_ms == claim.at_ms)
        {
            table.pop(&claim.key);
        }
    }

    /// Records both sides' versions as the whole reads found them.
    pub fn compared(&self, claim: Claim, pair: (u64, u64)) {
        let mut table = self.lock();
        if let Some(c) = table.peek_mut(&claim.key)
            && c.at_ms == claim.at_ms
        {
            c.pair = Some(pair);
        }
    }

    /// What the table holds for `key`, without touching its recency.
    pub fn peek(&self, key: u64) -> Option<Compared> {
        self.lock().peek(&key).copied()
    }

    /// Objects held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<u64, Compared>> {
        // A panic while holding it left a table that is still a valid LRU.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const WINDOW: Duration = Duration::from_secs(300);

    #[test]
    fn an_object_is_due_once_per_version_per_window() {
        let v = Versions::default();
        let k = key_of("/v1/lake/a.parquet", None);
        assert!(v.claim(k, 7, WINDOW, 1_000).is_some(), "never compared");
        assert!(
            v.claim(k, 7, WINDOW, 2_000).is_none(),
            "same version, in the window"
        );
        assert!(
            v.claim(k, 8, WINDOW, 3_000).is_some(),
            "another version served"
        );
        assert!(v.claim(k, 8, WINDOW, 3_000 + 299_999).is_none());
        assert!(
            v.claim(k, 8, WINDOW, 3_000 + 300_000).is_some(),
            "the window passed"
        );
    }

    #[test]
    fn a_released_claim_lets_the_next_reader_try_and_spares_a_later_claim() {
        let v = Versions::default();
        let c = v.claim(1, 7, WINDOW, 1_000).expect("due");
        v.release(c);
        let later = v.claim(1, 7, WINDOW, 2_000).expect("due again");
        v.release(c);
        assert!(v.peek(1).is_some(), "the later claim stays");
        v.compared(later, (7, 9));
        assert_eq!(v.peek(1).and_then(|c| c.pair), Some((7, 9)));
    }

    #[test]
    fn the_table_is_bounded_least_recent_first() {
        let v = Versions::with_capacity(2);
        for k in 0..3 {
            v.claim(k, 1, WINDOW, 0);
        }
        assert_eq!(v.len(), 2);
        assert!(v.peek(0).is_none());
        assert!(
            v.claim(0, 1, WINDOW, 0).is_some(),
            "forgotten, so due again"
        );
    }

    #[test]
    fn the_query_names_another_object_and_the_validator_its_version() {
        assert_ne!(key_of("/a", None), key_of("/a", Some("x=1")));
        assert_ne!(key_of("/a", Some("x=1")), key_of("/a", Some("x=2")));
        let mut h = HeaderMap::new();
        assert_eq!(version_of(&h), 0);
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Wed, 01 May 2024 09:00:00 GMT"),
        );
        let by_date = version_of(&h);
        h.insert(ETAG, HeaderValue::from_static("\"v1\""));
        let by_tag = version_of(&h);
        assert!(by_date != 0 && by_tag != by_date, "the ETag wins");
    }
}
