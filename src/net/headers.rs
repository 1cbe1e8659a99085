//! Header rules for a proxy in the middle: hop-by-hop headers never cross
//! (RFC 9110 7.6.1), and the consumer's address, host, scheme and the
//! route's prefix are added to the forwarding headers (`x-forwarded-*`,
//! RFC 7239 `forwarded`), so links an upstream builds lead back to cutover.

use std::net::SocketAddr;
use std::sync::Mutex;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Removes hop-by-hop headers: the fixed list and any named in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the names (enum compares for standard headers) finds
    // which are present; most heads carry none or only `Connection`, and
    // each removal costs a hashed lookup.
    let mut present = [false; HOP_COUNT];
    for name in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[i] = true;
        }
    }
    if present[0] {
        // Every `Connection` line, every name it lists ("close" and
        // "keep-alive" are options, and Keep-Alive is on the list anyway).
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|n| !n.eq_ignore_ascii_case(b"close") && !n.eq_ignore_ascii_case(b"keep-alive"))
            .filter_map(|n| HeaderName::from_bytes(n).ok())
            .collect();
        for name in named {
            h.remove(name);
        }
    }
    for (hop, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        h.remove(hop);
    }
}

const HOP_COUNT: usize = 8;
/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
/// `Trailer` is not one (RFC 9110 6.6.2): it names an answer's trailer
/// fields, which are relayed to a consumer that asked (`wants_trailers`).
pub(crate) const HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The consumer's address and the header values derived from it, built once
/// per connection rather than per read.
#[derive(Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    ip: HeaderValue,
    /// `for=...` as RFC 7239 spells it (an IPv6 address quoted).
    for_param: String,
    /// The `forwarded` element for a read without a host.
    forwarded: HeaderValue,
    /// The last host seen on this connection and its `forwarded` element:
    /// a connection's reads nearly always name one host, so each read after
    /// the first reuses the value instead of building it.
    with_host: Mutex<Option<(HeaderValue, HeaderValue)>>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        let ip = addr.ip();
        let for_param = match ip {
            std::net::IpAddr::V4(v4) => format!("for={v4}"),
            std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
        };
        Peer {
            addr,
            ip: HeaderValue::from_str(&ip.to_string())
                .expect("an IP address is a valid header value"),
            forwarded: HeaderValue::from_str(&format!("{for_param};proto={PROTO}"))
                .expect("ASCII without control characters"),
            for_param,
            with_host: Mutex::new(None),
        }
    }

    /// The consumer's host as a header value and this hop's `forwarded`
    /// element naming it, from the connection's cache when the host is the
    /// last one seen. `None` when `host` cannot be a header value.
    fn host_values(&self, host: &[u8]) -> Option<(HeaderValue, HeaderValue)> {
        // `try_lock`: two h2 streams at once build the value each rather
        // than wait for each other.
        if let Ok(cached) = self.with_host.try_lock()
            && let Some((h, f)) = cached.as_ref()
            && h.as_bytes() == host
        {
            return Some((h.clone(), f.clone()));
        }
        let host_value = HeaderValue::from_bytes(host).ok()?;
        let mut element = Vec::with_capacity(self.for_param.len() + host.len() + 20);
        element.extend_from_slice(self.for_param.as_bytes());
        element.extend_from_slice(b";host=");
        push_rfc7239_value(&mut element, host);
        element.extend_from_slice(b";proto=");
        element.extend_from_slice(PROTO.as_bytes());
        let forwarded = HeaderValue::from_bytes(&element).ok()?;
        if let Ok(mut cached) = self.with_host.try_lock() {
            *cached = Some((host_value.clone(), forwarded.clone()));
        }
        Some((host_value, forwarded))
    }
}

/// Whether a request's `TE` says its sender takes trailer fields (the
/// `trailers` token, RFC 9110 10.1.4). Read before `TE` is stripped.
pub fn wants_trailers(h: &HeaderMap) -> bool {
    h.get_all(header::TE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
}

/// The scheme the consumer used: the consumer listener is plain HTTP (TLS,
/// if any, ends before cutover on the consumer's side).
const PROTO: &str = "http";

/// Appends `value` as an RFC 7239 `value`: a token as it is, anything else
/// (a `:` before a port, an IPv6 literal's brackets) as a quoted-string.
fn push_rfc7239_value(out: &mut Vec<u8>, value: &[u8]) {
    let token = !value.is_empty() && value.iter().all(|&b| is_tchar(b));
    if token {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// RFC 9110 5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the consumer asked for, as every upstream read of it names it: the
/// host it sent (`Host`, or the target's authority: h2's `:authority`, an
/// absolute-form target) and the route's consumer-facing prefix.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub host: Option<&'a [u8]>,
    /// `x-forwarded-prefix`: the route's `path_prefix`, empty for `/`.
    pub prefix: &'a HeaderValue,
}

/// Sets `x-forwarded-host`, `-proto` and `-prefix` to what this cutover saw
/// (a consumer's own values are replaced: the upstream builds links that
/// must lead back here), and appends the consumer's address to
/// `x-forwarded-for` and this hop's element, `for=`, `host=` and `proto=`,
/// to `forwarded` (earlier hops' elements are kept, in order).
pub fn add_forwarded(h: &mut HeaderMap, peer: &Peer, origin: Origin<'_>) {
    // Several lines are one list (RFC 9110 5.3): keep them all, in order.
    let prev: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if prev.is_empty() {
        Some(peer.ip.clone())
    } else {
        HeaderValue::from_str(&format!("{}, {}", prev.join(", "), peer.addr.ip())).ok()
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    match origin.host.and_then(|host| peer.host_values(host)) {
        Some((host, forwarded)) => {
            h.insert(X_FORWARDED_HOST, host);
            h.append(header::FORWARDED, forwarded);
        }
        None => {
            h.remove(X_FORWARDED_HOST);
            h.append(header::FORWARDED, peer.forwarded.clone());
        }
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(PROTO));
    h.insert(X_FORWARDED_PREFIX, origin.prefix.clone());
}

/// The `x-forwarded-prefix` value of a route with `path_prefix` `prefix`:
/// the prefix itself, and empty for `/` (the consumer-facing prefix is
/// nothing; `/` would turn an upstream's `prefix + "/next"` into the
/// scheme-relative `//next`). Built once per config, not per read.
pub fn forwarded_prefix(prefix: &str) -> HeaderValue {
    let p = if prefix == "/" { "" } else { prefix };
    HeaderValue::from_str(p).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_connection_named_ones_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.append(header::CONNECTION, "x-other".parse().unwrap());
        h.insert("x-other", "2".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-customer-id", "42".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-customer-id"));
    }

    #[test]
    fn only_the_trailers_token_asks_for_trailers() {
        for (te, wants) in [
            ("trailers", true),
            ("gzip, Trailers", true),
            ("deflate;q=0.5, trailers", true),
            ("gzip", false),
            ("trailersx", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::TE, te.parse().unwrap());
            assert_eq!(wants_trailers(&h), wants, "{te}");
        }
        assert!(!wants_trailers(&HeaderMap::new()));
    }

    #[test]
    fn forwarded_headers_append() {
        let prefix = forwarded_prefix("/v1/orders");
        let none = Origin {
            host: None,
            prefix: &prefix,
        };
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "10.0.0.1".parse().unwrap());
        add_forwarded(&mut h, &Peer::new("127.0.0.1:5000".parse().unwrap()), none);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        assert_eq!(h[header::FORWARDED], "for=127.0.0.1;proto=http");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &Peer::new("[::1]:5000".parse().unwrap()), none);
        assert_eq!(h[&X_FORWARDED_FOR], "::1");
        assert_eq!(h[header::FORWARDED], "for=\"[::1]\";proto=http");
    }

    #[test]
    fn forwarded_names_the_host_quoted_when_it_is_not_a_token() {
        let peer = Peer::new("127.0.0.1:5000".parse().unwrap());
        let prefix = forwarded_prefix("/v1/orders");
        for (host, element) in [
            (
                &b"consumer.local"[..],
                "for=127.0.0.1;host=consumer.local;proto=http",
            ),
            (
                b"localhost:8080",
                "for=127.0.0.1;host=\"localhost:8080\";proto=http",
            ),
            (
                b"[::1]:8080",
                "for=127.0.0.1;host=\"[::1]:8080\";proto=http",
            ),
            (b"a\"b\\c", "for=127.0.0.1;host=\"a\\\"b\\\\c\";proto=http"),
            // The cached value is not reused for another host.
            (
                b"consumer.local",
                "for=127.0.0.1;host=consumer.local;proto=http",
            ),
        ] {
            let mut h = HeaderMap::new();
            h.insert(X_FORWARDED_HOST, "spoofed".parse().unwrap());
            h.insert(X_FORWARDED_PROTO, "https".parse().unwrap());
            h.insert(X_FORWARDED_PREFIX, "/elsewhere".parse().unwrap());
            h.insert(header::FORWARDED, "for=10.0.0.9".parse().unwrap());
            let origin = Origin {
                host: Some(host),
                prefix: &prefix,
            };
            add_forwarded(&mut h, &peer, origin);
            assert_eq!(h[&X_FORWARDED_HOST].as_bytes(), host);
            assert_eq!(h[&X_FORWARDED_PROTO], "http");
            assert_eq!(h[&X_FORWARDED_PREFIX], "/v1/orders");
            let fwd: Vec<_> = h.get_all(header::FORWARDED).iter().collect();
            assert_eq!(
                fwd,
                [
                    &HeaderValue::from_static("for=10.0.0.9"),
                    &HeaderValue::from_str(element).unwrap()
                ]
            );
        }
    }

    #[test]
    fn the_root_prefix_is_forwarded_empty() {
        assert_eq!(forwarded_prefix("/"), "");
        assert_eq!(forwarded_prefix("/v1"), "/v1");
    }
}
