//! Request targets an origin takes but hyper refuses: curl and Go send
//! `?filter={"a":1}` with the `"` raw, and the `http` crate's URI parser
//! (which hyper's HTTP/1 server uses) refuses `"`, `<` and `>` in a query
//! and `<`, `>` and `` ` `` in a path with a 400, though httparse (the
//! request-line parser) and the origin take them.
//!
//! So on the consumer listener each such byte of a request line's target is
//! percent-encoded before hyper parses it, and the target as the consumer
//! sent it is kept beside the request (`RawTargets`): the plain-HTTP client
//! sends that one, byte for byte. Where a hyper client must carry the
//! target (HTTPS upstreams, bodies streamed once) it goes percent-encoded
//! (`for_hyper`): the same query to any origin that decodes its query, as
//! every form and URL decoder does; only an origin comparing raw bytes
//! (a signature over the target) could tell.
//!
//! What stays refused, by httparse before any of this: control characters
//! (NUL, TAB, DEL, bare CR or LF), a space inside the target, and bytes of
//! a target that are not UTF-8 (the `http` crate refuses those): each is a
//! way to make two parsers disagree on where a request line ends.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Targets this connection's consumer sent that hyper saw percent-encoded:
/// the request's index on the connection and the target as sent.
pub type RawTargets = Arc<Mutex<VecDeque<(u64, String)>>>;

/// Most targets kept waiting for their request (pipelined heads).
const MAX_WAITING: usize = 64;

/// Largest request head (request line and headers) a consumer may send.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The target request `n` was sent with, if hyper saw it encoded. Targets
/// of earlier requests still queued are dropped.
pub fn raw_target(targets: &RawTargets, n: u64) -> Option<String> {
    let mut q = targets.lock().unwrap_or_else(|p| p.into_inner());
    while q.front().is_some_and(|(at, _)| *at < n) {
        q.pop_front();
    }
    match q.front() {
        Some((at, _)) if *at == n => q.pop_front().map(|(_, t)| t),
        _ => None,
    }
}

/// Whether hyper's URI parser refuses `b` where it stands, though httparse
/// and origins take it.
fn refused_by_hyper(b: u8, in_query: bool) -> bool {
    match b {
        b'<' | b'>' => true,
        b'"' => in_query,
        b'`' => !in_query,
        _ => false,
    }
}

/// `target` with every byte hyper's URI parser refuses percent-encoded
/// (for a hyper client, or hyper's server).
pub fn for_hyper(target: &str) -> Cow<'_, str> {
    let mut in_query = false;
    let needs = target.bytes().any(|b| {
        in_query |= b == b'?';
        refused_by_hyper(b, in_query)
    });
    if !needs {
        return Cow::Borrowed(target);
    }
    let mut out = String::with_capacity(target.len() + 8);
    let mut in_query = false;
    for c in target.chars() {
        in_query |= c == '?';
        if c.is_ascii() && refused_by_hyper(c as u8, in_query) {
            out.push_str(&format!("%{:02X}", c as u8));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Where a request line is, byte by byte, for one head after another.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the method (RFC 9112 2.2 lets empty lines come first).
    #[default]
    Start,
    Method,
    Target {
        in_query: bool,
    },
    /// Past the target: the rest of the head is hyper's alone.
    Done,
}

/// Finds the request-target bytes of each head as they stream past, and
/// which of them hyper would refuse.
#[derive(Debug, Default)]
pub struct TargetScan {
    phase: Phase,
    /// The target so far (kept only while it is read).
    target: Vec<u8>,
    encoded: bool,
    /// Targets made ready for the service, and by which request index.
    pub ready: Vec<(u64, String)>,
}

impl TargetScan {
    /// Scans `bytes`, all of them bytes of head number `head`; pushes the
    /// offsets (into `bytes`) hyper must see percent-encoded into `encode`.
    pub fn scan(&mut self, head: u64, bytes: &[u8], encode: &mut Vec<usize>) {
        // A slice at a time (the request line is found with `position`,
        // which the compiler vectorises), and nothing past the target: the
        // rest of the head is hyper's alone. Most reads pay a few searches.
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            match self.phase {
                Phase::Done => return,
                Phase::Start => match rest.iter().position(|&b| b != b'\r' && b != b'\n') {
                    Some(n) => {
                        self.phase = Phase::Method;
                        at += n;
                    }
                    None => return,
                },
                Phase::Method => match rest.iter().position(|&b| b == b' ') {
                    Some(n) => {
                        self.phase = Phase::Target { in_query: false };
                        at += n + 1;
                    }
                    None => return,
                },
                Phase::Target { mut in_query } => {
                    let end = rest.iter().position(|&b| matches!(b, b' ' | b'\r' | b'\n'));
                    let target = &rest[..end.unwrap_or(rest.len())];
                    for (i, &b) in target.iter().enumerate() {
                        in_query |= b == b'?';
                        if refused_by_hyper(b, in_query) {
                            encode.push(at + i);
                            self.encoded = true;
                        }
                    }
                    let room = MAX_HEAD_BYTES.saturating_sub(self.target.len());
                    self.target
                        .extend_from_slice(&target[..target.len().min(room)]);
                    match end {
                        Some(_) => {
                            self.end_target(head);
                            self.phase = Phase::Done;
                            return;
                        }
                        None => {
                            self.phase = Phase::Target { in_query };
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The head ended: the next byte starts another one.
    pub fn next_head(&mut self) {
        self.phase = Phase::Start;
        self.target.clear();
        self.encoded = false;
    }

    fn end_target(&mut self, head: u64) {
        if self.encoded
            && self.ready.len() < MAX_WAITING
            && let Ok(t) = std::str::from_utf8(&self.target)
        {
            self.ready.push((head, t.to_owned()));
        }
        self.target.clear();
        self.encoded = false;
    }
}

/// `bytes` with the bytes at `at` (ascending offsets) percent-encoded.
pub fn encode_at(bytes: &[u8], at: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2 * at.len());
    let mut from = 0;
    for &i in at {
        out.extend_from_slice(&bytes[from..i]);
        out.extend_from_slice(format!("%{:02X}", bytes[i]).as_bytes());
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_hyper_refuses_is_encoded_and_only_where_it_refuses_it() {
        assert_eq!(for_hyper("/a/b?x=1"), "/a/b?x=1");
        assert_eq!(
            for_hyper("/a\"{}|^?f={\"a\":1}&q=<b>|^`{}"),
            "/a\"{}|^?f={%22a%22:1}&q=%3Cb%3E|^`{}"
        );
        assert_eq!(for_hyper("/a`<>"), "/a%60%3C%3E");
        for t in ["/a\"{}|^?f={\"a\":1}&q=<b>|^`{}", "/a`<>?x", "/é?q=\"é\""] {
            let encoded = for_hyper(t);
            assert!(
                http::Uri::try_from(encoded.as_ref()).is_ok(),
                "{t} -> {encoded}"
            );
            assert!(http::Uri::try_from(t).is_err(), "{t} is refused as sent");
        }
    }

    #[test]
    fn the_scan_finds_target_bytes_across_heads_and_pieces() {
        let stream = b"\r\nGET /a?q=\"x\" HTTP/1.1\r\nX-Q: \"<>\"\r\n\r\nGET /b<c HTTP/1.1\r\n\r\n";
        let first_len = stream.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut scan = TargetScan::default();
        let mut at = Vec::new();
        // The first head in two pieces, cut inside the target.
        scan.scan(0, &stream[..10], &mut at);
        let mut rest = Vec::new();
        scan.scan(0, &stream[10..first_len], &mut rest);
        at.extend(rest.iter().map(|i| i + 10));
        scan.next_head();
        let mut second = Vec::new();
        scan.scan(1, &stream[first_len..], &mut second);
        at.extend(second.iter().map(|i| i + first_len));
        let out = encode_at(stream, &at);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("GET /a?q=%22x%22 HTTP/1.1"), "{text}");
        assert!(text.contains("X-Q: \"<>\""), "headers untouched: {text}");
        assert!(text.contains("GET /b%3Cc HTTP/1.1"), "{text}");
        assert_eq!(
            scan.ready,
            vec![(0, "/a?q=\"x\"".to_owned()), (1, "/b<c".to_owned())]
        );
    }

    #[test]
    fn raw_targets_are_found_by_request_index() {
        let t: RawTargets = Default::default();
        t.lock()
            .unwrap()
            .extend([(1, "/a".to_owned()), (3, "/b".to_owned())]);
        assert_eq!(raw_target(&t, 0), None);
        assert_eq!(raw_target(&t, 1).as_deref(), Some("/a"));
        assert_eq!(raw_target(&t, 2), None);
        assert_eq!(raw_target(&t, 3).as_deref(), Some("/b"));
        assert!(t.lock().unwrap().is_empty());
    }
}
