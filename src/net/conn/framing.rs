//! Follows an HTTP/1 request stream as the consumer sent it, head by head,
//! to see the two things hyper's parser hides from the service: a request
//! that carries both `Content-Length` and `Transfer-Encoding` (hyper drops
//! the length and frames by the coding) and one that repeats
//! `Content-Length` (hyper keeps one). Both are refused, as nginx does.
//!
//! The follower only skips bodies (by length, or chunk by chunk); it never
//! decides framing for hyper. Whatever it does not understand turns it off,
//! so a mistake here can only miss a refusal, never refuse a good request:
//! hyper still rejects what is malformed.

use super::target::TargetScan;

/// Why a request's framing is refused (the 400's text).
pub const BOTH_FRAMINGS: &str = "both Transfer-Encoding and Content-Length\n";
pub const REPEATED_LENGTH: &str = "more than one Content-Length\n";

/// hyper's default header count: beyond it hyper answers 431 itself.
const MAX_HEADERS: usize = 100;

/// The head size beyond which the follower stops (hyper refuses such heads).
const MAX_HEAD: usize = 64 * 1024 + 1024;

/// Where the follower is in the consumer's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside (or before) a request head.
    Head,
    /// Inside a body framed by length: bytes still to come.
    Length(u64),
    /// Reading a chunk-size line: the size so far, digits seen.
    ChunkSize { size: u64, digits: u8 },
    /// After the size, up to the end of the line (extensions).
    ChunkExt { size: u64 },
    /// Inside a chunk's data: bytes still to come.
    ChunkData(u64),
    /// After a chunk's data: its CRLF.
    ChunkEnd,
    /// In the trailer section: at the start of a line, or inside one.
    Trailer { line_start: bool },
    /// Not following any more (an upgrade, a parse it cannot make, or a
    /// refusal already made).
    Off,
}

/// One connection's follower. `feed` it every byte read, in order.
#[derive(Debug)]
pub struct Follower {
    state: State,
    /// A head that arrived over several reads, kept until its end.
    partial: Vec<u8>,
    /// Heads completed so far (the next one's index).
    heads: u64,
    /// The first refused head: its index and why.
    refused: Option<(u64, &'static str)>,
    /// Request targets with bytes hyper refuses (`target`).
    pub targets: TargetScan,
    /// Offsets into the last `feed`'s bytes that hyper must see encoded.
    pub encode: Vec<usize>,
}

impl Default for Follower {
    fn default() -> Follower {
        Follower {
            state: State::Head,
            partial: Vec::new(),
            heads: 0,
            refused: None,
            targets: TargetScan::default(),
            encode: Vec::new(),
        }
    }
}

impl Follower {
    /// The first refused request on the connection: its index (0 for the
    /// connection's first request) and why.
    pub fn first_refusal(&self) -> Option<(u64, &'static str)> {
        self.refused
    }

    /// Whether the follower still follows the stream.
    pub fn following(&self) -> bool {
        self.state != State::Off
    }

    /// Follows `bytes`, the next ones the consumer sent.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        self.encode.clear();
        let mut offset = 0;
        while !bytes.is_empty() {
            let used = match self.state {
                State::Off => return,
                State::Head => {
                    let head = self.heads;
                    let used = self.head(bytes);
                    let mut at = std::mem::take(&mut self.encode);
                    let before = at.len();
                    self.targets.scan(head, &bytes[..used], &mut at);
                    for i in &mut at[before..] {
                        *i += offset;
                    }
                    self.encode = at;
                    if self.heads > head {
                        self.targets.next_head();
                    }
                    used
                }
                State::Length(left) => self.skip(left, bytes.len(), State::Head, State::Length),
                State::ChunkData(left) => {
                    self.skip(left, bytes.len(), State::ChunkEnd, State::ChunkData)
                }
                _ => {
                    self.chunk_byte(bytes[0]);
                    1
                }
            };
            bytes = &bytes[used..];
            offset += used;
        }
    }

    /// Skips what it can of `left` body bytes among `available`: `done`
    /// follows once none are left, else `more` with what is.
    fn skip(&mut self, left: u64, available: usize, done: State, more: fn(u64) -> State) -> usize {
        let n = left.min(available as u64);
        self.state = match left - n {
            0 => done,
            rest => more(rest),
        };
        n as usize
    }

    /// One byte of chunked framing outside chunk data.
    fn chunk_byte(&mut self, b: u8) {
        self.state = match (self.state, b) {
            (State::ChunkSize { size, digits }, _) if b.is_ascii_hexdigit() => {
                if digits >= 16 {
                    State::Off
                } else {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    State::ChunkSize {
                        size: size << 4 | d,
                        digits: digits + 1,
                    }
                }
            }
            (State::ChunkSize { digits: 0, .. }, _) => State::Off,
            (State::ChunkSize { size, .. } | State::ChunkExt { size }, b'\n') => {
                if size == 0 {
                    State::Trailer { line_start: true }
                } else {
                    State::ChunkData(size)
                }
            }
            (State::ChunkSize { size, .. } | State::ChunkExt { size }, _) => {
                State::ChunkExt { size }
            }
            (State::ChunkEnd, b'\r') => State::ChunkEnd,
            (State::ChunkEnd, b'\n') => State::ChunkSize { size: 0, digits: 0 },
            (State::Trailer { line_start: true }, b'\r') => State::Trailer { line_start: true },
            (State::Trailer { line_start: true }, b'\n') => State::Head,
            (State::Trailer { .. }, b'\n') => State::Trailer { line_start: true },
            (State::Trailer { .. }, _) => State::Trailer { line_start: false },
            _ => State::Off,
        };
    }

    /// Head bytes: parses the head once it is whole (httparse finds its
    /// end) and judges it. Returns how many of `bytes` belong to the head.
    fn head(&mut self, bytes: &[u8]) -> usize {
        if self.partial.is_empty() {
            // The common case: the whole head in one read.
            return match self.judge(bytes) {
                Judged::Whole(len, next) => self.next(len, next),
                Judged::Partial => {
                    self.keep(bytes);
                    bytes.len()
                }
            };
        }
        // A head that arrived over several reads: judged again only when a
        // line ended (as hyper does, so no worse than hyper's own parse).
        let had = self.partial.len();
        self.keep(bytes);
        if self.state == State::Off || !bytes.contains(&b'\n') {
            return bytes.len();
        }
        let head = std::mem::take(&mut self.partial);
        let judged = self.judge(&head);
        self.partial = head;
        match judged {
            Judged::Whole(len, next) if len > had => {
                // A long head's buffer is not kept for the connection's life.
                if self.partial.capacity() > 4096 {
                    self.partial = Vec::new();
                } else {
                    self.partial.clear();
                }
                self.next(len - had, next)
            }
            Judged::Whole(..) => {
                self.state = State::Off;
                bytes.len()
            }
            Judged::Partial => bytes.len(),
        }
    }

    /// A whole head was `used` bytes of this read; `next` follows it.
    fn next(&mut self, used: usize, next: State) -> usize {
        self.heads += 1;
        self.state = next;
        used
    }

    /// Keeps head bytes that arrived before the head's end.
    fn keep(&mut self, bytes: &[u8]) {
        if self.partial.len() + bytes.len() > MAX_HEAD {
            self.state = State::Off;
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// Parses one whole head: its framing, and whether cutover refuses it.
    fn judge(&mut self, head: &[u8]) -> Judged {
        // Uninitialised slots: zeroing MAX_HEADERS of them cost every read
        // more than parsing its few headers.
        let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            head,
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Judged::Partial,
            // hyper refuses it itself, and closes.
            Err(_) => return Judged::Whole(head.len(), State::Off),
        };
        if req.method == Some("CONNECT") {
            return Judged::Whole(len, State::Off);
        }
        let (mut lengths, mut length, mut coding) = (0u32, None, None);
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                lengths += 1;
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                coding = Some(h.value);
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                // What follows may not be HTTP/1 at all.
                return Judged::Whole(len, State::Off);
            }
        }
        let refused = match (lengths, coding) {
            (1.., Some(_)) => Some(BOTH_FRAMINGS),
            (2.., None) => Some(REPEATED_LENGTH),
            _ => None,
        };
        if let Some(why) = refused {
            // The connection closes after the refusal: stop here.
            self.refused.get_or_insert((self.heads, why));
            return Judged::Whole(len, State::Off);
        }
        let next = match (coding, length) {
            (Some(c), _) if ends_chunked(c) => State::ChunkSize { size: 0, digits: 0 },
            // Not chunked last: hyper refuses it.
            (Some(_), _) => State::Off,
            (None, Some(0)) if lengths == 1 => State::Head,
            (None, Some(n)) => State::Length(n),
            (None, None) if lengths == 0 => State::Head,
            // An unparsable length: hyper refuses it.
            (None, None) => State::Off,
        };
        Judged::Whole(len, next)
    }
}

enum Judged {
    /// The head goes on past these bytes.
    Partial,
    /// A whole head of this many bytes, and what follows it.
    Whole(usize, State),
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked`.
fn ends_chunked(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl Follower {
        /// Why request `n` is refused: it or one before it was.
        fn refusal(&self, n: u64) -> Option<&'static str> {
            self.refused.filter(|(at, _)| n >= *at).map(|(_, why)| why)
        }
    }

    fn follow(stream: &[u8]) -> Follower {
        let mut f = Follower::default();
        f.feed(stream);
        f
    }

    #[test]
    fn both_framings_and_repeated_lengths_are_refused_from_their_request_on() {
        let good = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        for (bad, why) in [
            (
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                BOTH_FRAMINGS,
            ),
            (
                "POST /a HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
                BOTH_FRAMINGS,
            ),
            (
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                REPEATED_LENGTH,
            ),
        ] {
            let f = follow(format!("{good}{good}{bad}").as_bytes());
            assert_eq!(f.refusal(0), None, "{bad}");
            assert_eq!(f.refusal(1), None, "{bad}");
            assert_eq!(f.refusal(2), Some(why), "{bad}");
            assert_eq!(f.refusal(3), Some(why), "{bad}");
        }
    }

    #[test]
    fn bodies_are_skipped_so_the_next_head_is_judged() {
        // A body that looks like a bad head is a body, not a head.
        let looks_bad = "Content-Length: 1\r\nContent-Length: 1\r\n\r\n";
        let stream = format!(
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{looks_bad}\
             POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
             5;ext=\"a\"\r\n{looks_bad:.5}\r\n0\r\nTrailer: 1\r\n\r\n\
             GET /c HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n\
             GET /d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            looks_bad.len()
        );
        let f = follow(stream.as_bytes());
        assert_eq!(f.refusal(2), None);
        assert_eq!(f.refusal(3), Some(REPEATED_LENGTH));
    }

    #[test]
    fn bare_line_feeds_and_leading_empty_lines_are_heads_too() {
        let f = follow(b"\r\nGET /a HTTP/1.1\nHost: x\nContent-Length: 1\nContent-Length: 1\n\n");
        assert_eq!(f.refusal(0), Some(REPEATED_LENGTH));
    }

    #[test]
    fn an_upgrade_or_a_malformed_head_stops_following() {
        for stream in [
            &b"GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"[..],
            b"NOT A REQUEST\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            let mut f = follow(stream);
            assert!(!f.following(), "{stream:?}");
            f.feed(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n");
            assert_eq!(f.refusal(0), None);
            assert_eq!(f.refusal(1), None);
        }
    }

    /// A stream of requests with every framing, pipelined.
    fn stream() -> impl Strategy<Value = (Vec<u8>, Option<u64>)> {
        let request = (0u8..4, proptest::collection::vec(any::<u8>(), 0..40));
        proptest::collection::vec(request, 1..6).prop_map(|reqs| {
            let mut out = Vec::new();
            let mut first_bad = None;
            for (i, (kind, body)) in reqs.iter().enumerate() {
                out.extend_from_slice(b"POST /x HTTP/1.1\r\nHost: x\r\n");
                match kind {
                    0 => {
                        out.extend_from_slice(
                            format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                        );
                        out.extend_from_slice(body);
                    }
                    1 => {
                        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                        for part in body.chunks(7) {
                            out.extend_from_slice(format!("{:X};e=1\r\n", part.len()).as_bytes());
                            out.extend_from_slice(part);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\nX-T: 1\r\n\r\n");
                    }
                    2 => out.extend_from_slice(b"\r\n"),
                    _ => {
                        out.extend_from_slice(b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc");
                        first_bad.get_or_insert(i as u64);
                    }
                }
            }
            (out, first_bad)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// However the stream is cut into reads, the first refused request is
        /// the first one that repeats its length, and none before it.
        #[test]
        fn any_split_finds_the_first_bad_request((bytes, first_bad) in stream(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut f = Follower::default();
            let mut from = 0;
            for cut in at.into_iter().chain([bytes.len()]) {
                f.feed(&bytes[from..cut]);
                from = cut;
            }
            match first_bad {
                Some(n) => {
                    prop_assert_eq!(f.refusal(n), Some(REPEATED_LENGTH));
                    if n > 0 {
                        prop_assert_eq!(f.refusal(n - 1), None);
                    }
                }
                None => {
                    prop_assert_eq!(f.refusal(u64::MAX), None);
                    prop_assert!(f.following());
                }
            }
        }

        /// Arbitrary bytes never panic and never refuse what has no head.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let f = follow(&bytes);
            let _ = f.refusal(0);
        }
    }
}
