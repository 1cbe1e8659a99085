//! Redirects that point into a side lead back through cutover: a
//! `Location` or `Content-Location` naming the serving side's URL is
//! rewritten to the consumer-facing prefix, as nginx's
//! `proxy_redirect default` does; every other value passes untouched.

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Scheme;

use crate::config::Side;

/// The scheme a consumer-facing absolute URL gets: the consumer listener is
/// plain HTTP.
const CONSUMER_SCHEME: &str = "http";

/// Rewrites the answer's `Location` and `Content-Location` values that
/// point into `side` (the side that served) to `prefix`, the route's
/// `path_prefix`. `consumer_host` is the host the consumer asked for
/// (`x-forwarded-host`): an absolute value stays absolute at that host.
/// Called once per answer from an upstream; costs two lookups when neither
/// header is there.
pub fn rewrite_answer(
    h: &mut HeaderMap,
    side: &Side,
    prefix: &str,
    consumer_host: Option<&HeaderValue>,
) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        if !h.contains_key(&name) {
            continue;
        }
        let host = consumer_host.map(HeaderValue::as_bytes);
        let rewritten: Vec<Option<HeaderValue>> = h
            .get_all(&name)
            .iter()
            .map(|v| {
                rewrite(v.as_bytes(), side, prefix, host)
                    .and_then(|r| HeaderValue::from_bytes(&r).ok())
            })
            .collect();
        if rewritten.iter().all(Option::is_none) {
            continue;
        }
        let old: Vec<HeaderValue> = h.get_all(&name).iter().cloned().collect();
        h.remove(&name);
        for (old, new) in old.into_iter().zip(rewritten) {
            h.append(&name, new.unwrap_or(old));
        }
    }
}

/// The consumer-facing form of `value` when it points into `side`, else
/// `None` (leave it as it is).
///
/// Into the side means: an absolute URL with the side's scheme and
/// authority (host compared without case, a default port equal to none),
/// or a network-path (`//authority/...`) or absolute-path reference, whose
/// path is the side's base path or under it on a segment boundary
/// (`/tables/orders2` is not under `/tables/orders`). The base path is
/// replaced by `prefix` (nothing for `/`); the side's own base query, when
/// the value's query starts with it, is taken off again (the forward rewrite
/// put it there); the rest of the query and any fragment are kept. An
/// absolute URL stays absolute at `consumer_host` (`http://{host}{prefix}...`),
/// a network-path reference stays one; without a usable host either becomes
/// an absolute path.
pub fn rewrite(
    value: &[u8],
    side: &Side,
    prefix: &str,
    consumer_host: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let value = value.trim_ascii();
    let (form, rest) = split_reference(value, side)?;
    let path_end = rest
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let (path, tail) = rest.split_at(path_end);
    // An absolute URL with no path at all names the root.
    let path = if path.is_empty() { &b"/"[..] } else { path };
    let sub = under_base(path, side.base_path.as_bytes())?;
    let tail = without_base_query(tail, side.base_query.as_deref());

    let prefix = if prefix == "/" { "" } else { prefix };
    let host = consumer_host.filter(|h| usable_host(h));
    let mut out = Vec::with_capacity(prefix.len() + sub.len() + tail.len() + 32);
    match (form, host) {
        (Form::Absolute, Some(host)) => {
            out.extend_from_slice(CONSUMER_SCHEME.as_bytes());
            out.extend_from_slice(b"://");
            out.extend_from_slice(host);
        }
        (Form::NetworkPath, Some(host)) => {
            out.extend_from_slice(b"//");
            out.extend_from_slice(host);
        }
        _ => {}
    }
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(sub);
    if prefix.is_empty() && sub.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(&tail);
    Some(out)
}

/// How a reference named its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `http://authority/path`
    Absolute,
    /// `//authority/path`
    NetworkPath,
    /// `/path`
    AbsolutePath,
}

/// The reference's form and what follows its authority (path, query,
/// fragment), when it names `side` (or no authority at all); `None` for a
/// relative reference, another scheme or another authority.
fn split_reference<'a>(value: &'a [u8], side: &Side) -> Option<(Form, &'a [u8])> {
    let (form, after_scheme) = if let Some(rest) = value.strip_prefix(b"//") {
        (Form::NetworkPath, rest)
    } else if value.first() == Some(&b'/') {
        return Some((Form::AbsolutePath, value));
    } else {
        let colon = value.iter().position(|&b| b == b':')?;
        let (scheme, rest) = value.split_at(colon);
        if !scheme.eq_ignore_ascii_case(side.scheme.as_str().as_bytes()) {
            return None;
        }
        (Form::Absolute, rest.strip_prefix(b"://")?)
    };
    let end = after_scheme
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(end);
    same_authority(authority, side).then_some((form, rest))
}

/// Whether `authority` is the side's: same host (without case), same port
/// once the scheme's default fills in a missing one. User info never
/// matches (a side URL has none).
fn same_authority(authority: &[u8], side: &Side) -> bool {
    if authority.contains(&b'@') {
        return false;
    }
    let Ok(a) = http::uri::Authority::try_from(authority) else {
        return false;
    };
    let default = if side.scheme == Scheme::HTTPS {
        443
    } else {
        80
    };
    a.host().eq_ignore_ascii_case(side.authority.host())
        && a.port_u16().unwrap_or(default) == side.authority.port_u16().unwrap_or(default)
}

/// What follows `base` in `path` when `path` is `base` or under it on a
/// segment boundary; the whole path when the base is the root ("").
fn under_base<'a>(path: &'a [u8], base: &[u8]) -> Option<&'a [u8]> {
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.first() == Some(&b'/')).then_some(rest)
}

/// `tail` (`?query#fragment`, either optional) without the side's base
/// query in front of the query, when it is there whole.
fn without_base_query(tail: &[u8], base_query: Option<&str>) -> Vec<u8> {
    let (Some(base), Some(query)) = (base_query, tail.strip_prefix(b"?")) else {
        return tail.to_vec();
    };
    let Some(after) = query.strip_prefix(base.as_bytes()) else {
        return tail.to_vec();
    };
    match after.first() {
        // The query was the base query alone: no query at all.
        None | Some(b'#') => after.to_vec(),
        Some(b'&') => {
            let mut t = Vec::with_capacity(after.len());
            t.push(b'?');
            t.extend_from_slice(&after[1..]);
            t
        }
        // `format=jsonl` does not start with the parameter `format=json`.
        _ => tail.to_vec(),
    }
}

/// Whether the consumer's host can stand in a URL as its authority (it is
/// the consumer's own `Host`, but nothing cutover writes may change where
/// the URL's path begins).
fn usable_host(host: &[u8]) -> bool {
    !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::uri::Authority;
    use std::time::Duration;

    fn side(scheme: Scheme, authority: &'static str, base: &str, query: Option<&str>) -> Side {
        Side {
            scheme,
            authority: Authority::from_static(authority),
            base_path: base.to_owned(),
            base_query: query.map(str::to_owned),
            connect_timeout: Duration::from_millis(250),
            timeout: Duration::from_secs(2),
            max_inflight: None,
            ca_file: None,
        }
    }

    fn orders() -> Side {
        side(Scheme::HTTP, "127.0.0.1:7001", "/tables/orders", None)
    }

    fn rw(value: &str, side: &Side, prefix: &str, host: Option<&str>) -> Option<String> {
        rewrite(value.as_bytes(), side, prefix, host.map(str::as_bytes))
            .map(|v| String::from_utf8(v).expect("ASCII in, ASCII out"))
    }

    #[test]
    fn absolute_urls_into_the_side_point_at_the_consumers_host() {
        let s = orders();
        let host = Some("localhost:8080");
        for (from, to) in [
            (
                "http://127.0.0.1:7001/tables/orders/x?q=1",
                "http://localhost:8080/v1/orders/x?q=1",
            ),
            (
                "HTTP://127.0.0.1:7001/tables/orders",
                "http://localhost:8080/v1/orders",
            ),
            (
                "http://127.0.0.1:7001/tables/orders/",
                "http://localhost:8080/v1/orders/",
            ),
            (
                "http://127.0.0.1:7001/tables/orders?page=2#top",
                "http://localhost:8080/v1/orders?page=2#top",
            ),
            (
                "http://127.0.0.1:7001/tables/orders#top",
                "http://localhost:8080/v1/orders#top",
            ),
        ] {
            assert_eq!(
                rw(from, &s, "/v1/orders", host).as_deref(),
                Some(to),
                "{from}"
            );
        }
        // Without a host the consumer can use, an absolute path.
        assert_eq!(
            rw(
                "http://127.0.0.1:7001/tables/orders/x?q",
                &s,
                "/v1/orders",
                None
            )
            .as_deref(),
            Some("/v1/orders/x?q")
        );
        assert_eq!(
            rw(
                "http://127.0.0.1:7001/tables/orders/x",
                &s,
                "/v1/orders",
                Some("a/b")
            )
            .as_deref(),
            Some("/v1/orders/x")
        );
    }

    #[test]
    fn absolute_paths_and_network_paths_under_the_base_are_rewritten() {
        let s = orders();
        assert_eq!(
            rw("/tables/orders/x?q", &s, "/v1/orders", Some("h")).as_deref(),
            Some("/v1/orders/x?q")
        );
        assert_eq!(
            rw(
                "//127.0.0.1:7001/tables/orders/x",
                &s,
                "/v1/orders",
                Some("h:1")
            )
            .as_deref(),
            Some("//h:1/v1/orders/x")
        );
        assert_eq!(
            rw(" /tables/orders ", &s, "/v1/orders", None).as_deref(),
            Some("/v1/orders")
        );
    }

    #[test]
    fn only_whole_segments_of_the_base_path_match() {
        let s = orders();
        for untouched in [
            "/tables/orders2",
            "/tables/orders2/x",
            "/tables/order",
            "/tables",
            "/other/tables/orders",
            "http://127.0.0.1:7001/tables/ordersX",
            "http://127.0.0.1:7001/",
        ] {
            assert_eq!(
                rw(untouched, &s, "/v1/orders", Some("h")),
                None,
                "{untouched}"
            );
        }
    }

    #[test]
    fn other_hosts_schemes_and_relative_references_pass() {
        let s = orders();
        for untouched in [
            "http://127.0.0.1:7002/tables/orders/x",
            "http://example.com/tables/orders/x",
            "https://127.0.0.1:7001/tables/orders/x",
            "http://user@127.0.0.1:7001/tables/orders/x",
            "//example.com/tables/orders/x",
            "ftp://127.0.0.1:7001/tables/orders",
            "x?page=2",
            "../orders/x",
            "?page=2",
            "",
        ] {
            assert_eq!(
                rw(untouched, &s, "/v1/orders", Some("h")),
                None,
                "{untouched}"
            );
        }
    }

    #[test]
    fn hosts_match_without_case_and_default_ports_match_none() {
        let s = side(Scheme::HTTP, "batch.internal", "/t", None);
        assert_eq!(
            rw("http://BATCH.internal:80/t/x", &s, "/v1", None).as_deref(),
            Some("/v1/x")
        );
        let tls = side(Scheme::HTTPS, "batch.internal:443", "/t", None);
        assert_eq!(
            rw("https://batch.internal/t/x", &tls, "/v1", Some("h")).as_deref(),
            Some("http://h/v1/x")
        );
        assert_eq!(rw("http://batch.internal/t/x", &tls, "/v1", None), None);
    }

    #[test]
    fn root_base_paths_and_root_prefixes() {
        let root = side(Scheme::HTTP, "127.0.0.1:7001", "", None);
        assert_eq!(
            rw("/x", &root, "/v1/orders", None).as_deref(),
            Some("/v1/orders/x")
        );
        assert_eq!(
            rw("/", &root, "/v1/orders", None).as_deref(),
            Some("/v1/orders/")
        );
        assert_eq!(
            rw("http://127.0.0.1:7001", &root, "/v1/orders", Some("h")).as_deref(),
            Some("http://h/v1/orders/")
        );
        let s = orders();
        assert_eq!(rw("/tables/orders/x", &s, "/", None).as_deref(), Some("/x"));
        assert_eq!(rw("/tables/orders", &s, "/", None).as_deref(), Some("/"));
        assert_eq!(rw("/x", &root, "/", None).as_deref(), Some("/x"));
    }

    #[test]
    fn the_sides_base_query_is_taken_off_again() {
        let s = side(Scheme::HTTP, "127.0.0.1:7001", "/t", Some("format=json"));
        for (from, to) in [
            ("/t/x?format=json&page=2", "/v1/x?page=2"),
            ("/t/x?format=json", "/v1/x"),
            ("/t/x?format=json#f", "/v1/x#f"),
            ("/t/x?format=jsonl", "/v1/x?format=jsonl"),
            ("/t/x?page=2&format=json", "/v1/x?page=2&format=json"),
        ] {
            assert_eq!(rw(from, &s, "/v1", None).as_deref(), Some(to), "{from}");
        }
    }

    #[test]
    fn answers_are_rewritten_in_place_and_other_headers_untouched() {
        let s = orders();
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("/tables/orders/2"),
        );
        h.insert(
            header::CONTENT_LOCATION,
            HeaderValue::from_static("http://127.0.0.1:7001/tables/orders/2.json"),
        );
        h.insert(
            header::LINK,
            HeaderValue::from_static("</tables/orders/3>; rel=next"),
        );
        let host = HeaderValue::from_static("consumer:9");
        rewrite_answer(&mut h, &s, "/v1/orders", Some(&host));
        assert_eq!(h[header::LOCATION], "/v1/orders/2");
        assert_eq!(
            h[header::CONTENT_LOCATION],
            "http://consumer:9/v1/orders/2.json"
        );
        assert_eq!(h[header::LINK], "</tables/orders/3>; rel=next");
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("https://example.com/"),
        );
        rewrite_answer(&mut h, &s, "/v1/orders", Some(&host));
        assert_eq!(h[header::LOCATION], "https://example.com/");
    }
}
