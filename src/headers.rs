//! Header rules for a proxy in the middle: hop-by-hop headers never cross
//! (RFC 9110 7.6.1), and the consumer's address is added to
//! `x-forwarded-for` and `forwarded`.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

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
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    ip: HeaderValue,
    forwarded: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        let ip = addr.ip();
        let forwarded = match ip {
            std::net::IpAddr::V4(v4) => format!("for={v4};proto=http"),
            std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto=http"),
        };
        Peer {
            addr,
            ip: HeaderValue::from_str(&ip.to_string())
                .expect("an IP address is a valid header value"),
            forwarded: HeaderValue::from_str(&forwarded).expect("ASCII without control characters"),
        }
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

/// Appends the consumer's address to `x-forwarded-for` and `forwarded`.
pub fn add_forwarded(h: &mut HeaderMap, peer: &Peer) {
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
    h.append(header::FORWARDED, peer.forwarded.clone());
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
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "10.0.0.1".parse().unwrap());
        add_forwarded(&mut h, &Peer::new("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        assert_eq!(h[header::FORWARDED], "for=127.0.0.1;proto=http");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &Peer::new("[::1]:5000".parse().unwrap()));
        assert_eq!(h[&X_FORWARDED_FOR], "::1");
        assert_eq!(h[header::FORWARDED], "for=\"[::1]\";proto=http");
    }
}
