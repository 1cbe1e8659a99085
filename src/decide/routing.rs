//! Route matching, path rewriting and the per-read side decision: pure
//! functions over the compiled config.

use crate::config::{Canary, Mode, Side, SideName};

/// Whether `prefix` matches `path` on a segment boundary. `prefix` has no
/// trailing slash unless it is `/`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The upstream path and query for a read: the matched prefix replaced by the
/// side's base path, the sub-path and the read's query kept (after the side's
/// own query, if it has one).
pub fn rewrite(route_prefix: &str, side: &Side, path: &str, query: Option<&str>) -> String {
    let rest = if route_prefix == "/" {
        path
    } else {
        &path[route_prefix.len().min(path.len())..]
    };
    let mut s = String::with_capacity(
        side.base_path.len()
            + rest.len()
            + 2
            + query.map_or(0, str::len)
            + side.base_query.as_ref().map_or(0, String::len),
    );
    s.push_str(&side.base_path);
    // `prefix_matches` guarantees `rest` is empty or starts with '/'.
    if rest.is_empty() {
        if side.base_path.is_empty() {
            s.push('/');
        }
    } else {
        s.push_str(rest);
    }
    match (side.base_query.as_deref(), query) {
        (Some(b), Some(q)) => {
            s.push('?');
            s.push_str(b);
            s.push('&');
            s.push_str(q);
        }
        (Some(q), None) | (None, Some(q)) => {
            s.push('?');
            s.push_str(q);
        }
        (None, None) => {}
    }
    // Every piece came from a valid URI (the read's or the config's), so the
    // result is one too: no space, no control character.
    s
}

/// The side chosen to serve a read in `mode` before any fallback or pin.
/// `point` places the read in the canary split (`canary_point`).
pub fn choose_side(mode: Mode, canary: &Canary, point: u64) -> SideName {
    match mode {
        Mode::Batch | Mode::Shadow => SideName::Batch,
        Mode::Streaming | Mode::StreamingOnly => SideName::Streaming,
        Mode::Canary => {
            if canary_to_streaming(canary, point) {
                SideName::Streaming
            } else {
                SideName::Batch
            }
        }
    }
}

/// Where a read falls in the canary split: by the sticky header's value
/// when the route has one and the read sent it, else by the read's
/// sequence (`sequence::classify`), so every read of one object or listing
/// lands on the same side (and on every sidecar).
pub fn canary_point(sticky: Option<&[u8]>, sequence_key: u64) -> u64 {
    sticky.map_or(sequence_key, fnv1a)
}

/// Whether a read at `point` goes to streaming: `percent` of points.
pub fn canary_to_streaming(canary: &Canary, point: u64) -> bool {
    ((point % 10_000) as f64) < canary.percent * 100.0
}

/// FNV-1a, 64-bit: stable across processes and versions, unlike std's hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::uri::{Authority, Scheme};
    use std::time::Duration;

    fn side(base: &str, query: Option<&str>) -> Side {
        Side {
            scheme: Scheme::HTTP,
            authority: Authority::from_static("127.0.0.1:7001"),
            base_path: base.to_owned(),
            base_query: query.map(str::to_owned),
            connect_timeout: Duration::from_millis(250),
            timeout: Duration::from_secs(2),
            max_inflight: None,
            ca_file: None,
        }
    }

    #[test]
    fn prefix_matches_on_segment_boundaries() {
        assert!(prefix_matches("/v1/orders", "/v1/orders"));
        assert!(prefix_matches("/v1/orders", "/v1/orders/7"));
        assert!(!prefix_matches("/v1/orders", "/v1/ordersX"));
        assert!(!prefix_matches("/v1/orders", "/v1/order"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn rewrite_replaces_prefix_and_keeps_subpath_and_query() {
        let s = side("/tables/orders", None);
        assert_eq!(
            rewrite("/v1/orders", &s, "/v1/orders/x", Some("q=1")),
            "/tables/orders/x?q=1"
        );
        assert_eq!(
            rewrite("/v1/orders", &s, "/v1/orders", None),
            "/tables/orders"
        );
        assert_eq!(
            rewrite("/v1/orders", &s, "/v1/orders/", None),
            "/tables/orders/"
        );
        let root = side("", None);
        assert_eq!(rewrite("/v1/orders", &root, "/v1/orders", None), "/");
        assert_eq!(rewrite("/v1/orders", &root, "/v1/orders/a", None), "/a");
        assert_eq!(
            rewrite("/", &root, "/v1/orders", Some("a=b")),
            "/v1/orders?a=b"
        );
        assert_eq!(rewrite("/", &s, "/x", None), "/tables/orders/x");
        assert_eq!(rewrite("/", &root, "/", None), "/");
        let with_q = side("/t", Some("format=json"));
        assert_eq!(
            rewrite("/v1", &with_q, "/v1/a", Some("q=1")),
            "/t/a?format=json&q=1"
        );
        assert_eq!(rewrite("/v1", &with_q, "/v1/a", None), "/t/a?format=json");
    }

    #[test]
    fn canary_is_sticky_and_near_its_percentage() {
        let c = Canary {
            percent: 10.0,
            sticky_header: None,
        };
        let point = |v: &str| canary_point(Some(v.as_bytes()), 0);
        let first = canary_to_streaming(&c, point("customer-42"));
        for _ in 0..100 {
            assert_eq!(canary_to_streaming(&c, point("customer-42")), first);
        }
        let hits = (0..20_000)
            .filter(|i| canary_to_streaming(&c, point(&format!("c{i}"))))
            .count();
        assert!(
            (1_600..2_400).contains(&hits),
            "{hits} of 20000 sticky values"
        );
        // Without a sticky value, the sequence decides: objects, not reads.
        let rules = crate::config::Sequence {
            params: vec!["cursor".into()],
            pin_ttl: Duration::from_secs(60),
            max_pins: 10,
        };
        let by_object = (0..20_000)
            .filter(|i| {
                let path = format!("/lake/part-{i}.parquet");
                let seq =
                    crate::decide::sequence::classify(&rules, &path, None, &Default::default());
                canary_to_streaming(&c, canary_point(None, seq.key))
            })
            .count();
        assert!(
            (1_600..2_400).contains(&by_object),
            "{by_object} of 20000 objects"
        );
        let none = Canary {
            percent: 0.0,
            sticky_header: None,
        };
        assert!((0..1000).all(|p| !canary_to_streaming(&none, p * 7919)));
        let all = Canary {
            percent: 100.0,
            sticky_header: None,
        };
        assert!((0..1000).all(|p| canary_to_streaming(&all, p * 7919)));
    }
}
