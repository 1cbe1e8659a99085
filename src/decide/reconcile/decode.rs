//! Undoing an answer's `Content-Encoding` for the comparison only (the
//! consumer gets the bytes as sent): gzip, deflate, br and zstd, bounded by
//! decoded bytes and by a ratio guard against decompression bombs.

use std::borrow::Cow;
use std::io::Read;

/// Why an answer's body could not be decoded; the comparison skips it with
/// reason `encoding`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A coding this proxy does not decode (`compress`, `exi`, a typo...).
    #[error("unknown content-encoding `{0}`")]
    Unknown(String),
    /// The body is not a complete, valid stream of its coding: bad header,
    /// bad checksum, cut short, or bytes after the end of the stream.
    #[error("{encoding} body does not decode: {why}")]
    Corrupt { encoding: &'static str, why: String },
    /// The decoded body would pass `limit` bytes (`max_body_bytes`).
    #[error("decodes past {limit} bytes")]
    TooLarge { limit: usize },
    /// The decoded body would pass `ratio` times its encoded size.
    #[error("decodes to more than {ratio}x its size")]
    Bomb { ratio: usize },
}

/// The codings decoded, by their canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Br,
    Zstd,
}

impl Coding {
    /// A content-coding token, already trimmed; case-insensitive, and the
    /// `x-gzip` alias RFC 9110 section 8.4.1.3 asks recipients to accept.
    fn parse(token: &str) -> Option<Coding> {
        let t = token.to_ascii_lowercase();
        match t.as_str() {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            "br" => Some(Coding::Br),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The largest decoded/encoded ratio accepted, past [`RATIO_FLOOR`].
    ///
    /// DEFLATE (gzip and deflate) cannot expand more than about 1032x (a
    /// 258-byte match in at most 2 bits), so 1100x is never reached by a
    /// valid stream: for them the guard is only a backstop. br and zstd have
    /// no such bound (zstd's RLE blocks and brotli's long repeats make a run
    /// of one byte cost almost nothing), and real answers do reach a few
    /// thousand x on near-constant data (the same record repeated, long runs
    /// of nulls), so their bound is higher: 10,000x still stops a crafted
    /// stream long before the byte limit on a large `max_body_bytes`, while
    /// leaving room for honest, very repetitive answers. The byte limit is
    /// what bounds memory; the ratio stops work on a stream that can only be
    /// a bomb.
    fn max_ratio(self) -> usize {
        match self {
            Coding::Gzip | Coding::Deflate => 1_100,
            Coding::Br | Coding::Zstd => 10_000,
        }
    }
}

/// Output up to this size is never refused by the ratio guard: a small
/// body is cheap to hold, whatever its ratio (a 30-byte gzip of 64 KiB of
/// spaces is legitimate).
pub const RATIO_FLOOR: usize = 1 << 20;

/// zstd's window is bounded to 8 MiB (log 23), as RFC 9659 section 3 asks
/// of HTTP's `zstd` coding: the decoder allocates the window a frame header
/// asks for, so without this bound a 20-byte frame could claim 2 GiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The size of one read from a decoder: what the output grows by at most
/// before the limits are checked.
const CHUNK: usize = 64 * 1024;

/// An answer's body with its `Content-Encoding` undone, for the comparison.
///
/// `content_encoding` is the raw header value (None, empty or `identity`:
/// the body as is, borrowed). A list (`gzip, br`) was applied in order, so
/// it is undone in reverse. Names are case-insensitive, `x-gzip` is gzip.
/// An empty body decodes to an empty body whatever the coding (servers send
/// the header on empty answers). No decoded layer may pass `limit` bytes
/// ([`DecodeError::TooLarge`]) nor its coding's ratio to its input past
/// [`RATIO_FLOOR`] ([`DecodeError::Bomb`]); memory stays within `limit`
/// plus one read's chunk.
pub fn decode<'a>(
    content_encoding: Option<&[u8]>,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let codings = codings(content_encoding.unwrap_or_default())?;
    let mut current = Cow::Borrowed(body);
    for coding in codings.into_iter().rev() {
        if current.is_empty() {
            break;
        }
        current = Cow::Owned(decode_one(coding, &current, limit)?);
    }
    Ok(current)
}

/// The header's codings in the order they were applied, `identity` and
/// empty list elements left out.
fn codings(header: &[u8]) -> Result<Vec<Coding>, DecodeError> {
    let Ok(text) = std::str::from_utf8(header) else {
        return Err(DecodeError::Unknown(
            String::from_utf8_lossy(header).into_owned(),
        ));
    };
    let mut out = Vec::new();
    for token in text.split(',').map(str::trim) {
        if token.is_empty() || token.eq_ignore_ascii_case("identity") {
            continue;
        }
        match Coding::parse(token) {
            Some(c) => out.push(c),
            None => return Err(DecodeError::Unknown(token.to_string())),
        }
    }
    Ok(out)
}

/// One layer undone.
fn decode_one(coding: Coding, input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let bound = Bound::new(coding, input.len(), limit);
    match coding {
        Coding::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), coding, &bound),
        Coding::Deflate => deflate(input, &bound),
        Coding::Br => read_bounded(
            brotli_decompressor::Decompressor::new(input, CHUNK),
            coding,
            &bound,
        ),
        Coding::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(coding, &e))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| corrupt(coding, &e))?;
            read_bounded(decoder, coding, &bound)
        }
    }
}

/// The two limits on one layer's output.
struct Bound {
    /// `max_body_bytes`.
    limit: usize,
    /// The ratio guard's output bound for this input.
    allowed: usize,
    ratio: usize,
}

impl Bound {
    fn new(coding: Coding, input_len: usize, limit: usize) -> Bound {
        let ratio = coding.max_ratio();
        Bound {
            limit,
            allowed: input_len.saturating_mul(ratio).max(RATIO_FLOOR),
            ratio,
        }
    }

    /// Whether the output may grow to `len` bytes, and which limit it
    /// passes if not (the smaller of the two is reached first).
    fn check(&self, len: usize) -> Result<(), DecodeError> {
        if len > self.limit.min(self.allowed) {
            return Err(if self.allowed < self.limit {
                DecodeError::Bomb { ratio: self.ratio }
            } else {
                DecodeError::TooLarge { limit: self.limit }
            });
        }
        Ok(())
    }
}

fn corrupt(coding: Coding, why: &dyn std::fmt::Display) -> DecodeError {
    DecodeError::Corrupt {
        encoding: coding.name(),
        why: why.to_string(),
    }
}

/// Appends `chunk` to `out` without `out`'s capacity passing the bound:
/// `Vec`'s own doubling could reserve up to twice the limit.
fn push_bounded(out: &mut Vec<u8>, chunk: &[u8], bound: &Bound) -> Result<(), DecodeError> {
    let len = out.len().saturating_add(chunk.len());
    bound.check(len)?;
    if len > out.capacity() {
        let cap = out
            .capacity()
            .saturating_mul(2)
            .max(len)
            .min(bound.limit.min(bound.allowed));
        out.reserve_exact(cap - out.len());
    }
    out.extend_from_slice(chunk);
    Ok(())
}

/// Reads a decoder to its end, chunk by chunk, stopping at the first chunk
/// that passes a limit. The decoders used report a stream cut short as an
/// error (gzip's missing trailer, brotli's and zstd's unfinished frame), so
/// a clean end is a complete stream.
fn read_bounded(
    mut decoder: impl Read,
    coding: Coding,
    bound: &Bound,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(coding, &e)),
        };
        push_bounded(&mut out, chunk.get(..n).unwrap_or_default(), bound)?;
    }
}

/// `deflate`: RFC 9110 says zlib-wrapped (RFC 1950), but some servers send
/// raw DEFLATE (RFC 1951), so a body that does not start with a zlib header,
/// or does not decode as zlib, is read as raw. Decoded with flate2's
/// low-level `Decompress` because its `Read` adapters end quietly on a
/// stream cut short; here the stream must reach its end marker and nothing
/// may follow it.
fn deflate(input: &[u8], bound: &Bound) -> Result<Vec<u8>, DecodeError> {
    if looks_like_zlib(input) {
        match inflate(input, true, bound) {
            Ok(out) => return Ok(out),
            Err(zlib @ DecodeError::Corrupt { .. }) => {
                // A raw stream whose first two bytes happen to pass the
                // header check (about 1 in 500): try it as raw, and report
                // the zlib error if that fails too.
                return inflate(input, false, bound).map_err(|raw| match raw {
                    DecodeError::Corrupt { .. } => zlib,
                    other => other,
                });
            }
            Err(other) => return Err(other),
        }
    }
    inflate(input, false, bound)
}

/// RFC 1950's header: method 8 (deflate), a window of at most 32 KiB, and a
/// check value that makes the first two bytes a multiple of 31.
fn looks_like_zlib(input: &[u8]) -> bool {
    match input {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

fn inflate(input: &[u8], zlib: bool, bound: &Bound) -> Result<Vec<u8>, DecodeError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut state = Decompress::new(zlib);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let consumed = state.total_in() as usize;
        let before = state.total_out();
        let rest = input.get(consumed..).unwrap_or_default();
        let status = state
            .decompress(rest, &mut chunk, FlushDecompress::None)
            .map_err(|e| corrupt(Coding::Deflate, &e))?;
        let produced = (state.total_out() - before) as usize;
        push_bounded(&mut out, chunk.get(..produced).unwrap_or_default(), bound)?;
        match status {
            Status::StreamEnd => {
                if (state.total_in() as usize) < input.len() {
                    return Err(corrupt(
                        Coding::Deflate,
                        &"bytes after the end of the stream",
                    ));
                }
                return Ok(out);
            }
            Status::Ok | Status::BufError => {
                let progressed = state.total_in() as usize > consumed || produced > 0;
                if !progressed {
                    return Err(corrupt(Coding::Deflate, &"the stream is cut short"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn br(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(data).unwrap();
        }
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    /// A JSON answer large enough to span several decoder chunks.
    fn answer() -> Vec<u8> {
        let mut s = String::from("[");
        for i in 0..20_000 {
            s.push_str(&format!(
                "{{\"id\":{i},\"name\":\"n{}\"}},",
                i * 7919 % 1000
            ));
        }
        s.push_str("{}]");
        s.into_bytes()
    }

    const MIB: usize = 1 << 20;

    #[test]
    fn every_encoding_round_trips() {
        let data = answer();
        for (name, encoded) in [
            ("gzip", gzip(&data)),
            ("x-gzip", gzip(&data)),
            ("GZip", gzip(&data)),
            ("deflate", zlib(&data)),
            ("deflate", raw_deflate(&data)),
            ("br", br(&data)),
            ("zstd", zstd(&data)),
        ] {
            assert!(encoded.len() < data.len(), "{name}");
            let out = decode(Some(name.as_bytes()), &encoded, 64 * MIB)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(out.as_ref(), data.as_slice(), "{name}");
        }
    }

    #[test]
    fn stacked_encodings_are_undone_in_reverse() {
        let data = answer();
        let encoded = br(&gzip(&data));
        let out = decode(Some(b"gzip, br"), &encoded, 64 * MIB).unwrap();
        assert_eq!(out.as_ref(), data.as_slice());
        // The other order does not decode: br is not a gzip stream.
        assert!(matches!(
            decode(Some(b"br, gzip"), &encoded, 64 * MIB),
            Err(DecodeError::Corrupt {
                encoding: "gzip",
                ..
            })
        ));
        // identity in the list is a no-op.
        let z = zstd(&data);
        let out = decode(Some(b"identity, zstd"), &z, 64 * MIB).unwrap();
        assert_eq!(out.as_ref(), data.as_slice());
    }

    #[test]
    fn identity_absent_and_empty_borrow_the_body() {
        let body = b"{\"a\":1}";
        for header in [None, Some(&b""[..]), Some(b"identity"), Some(b" IDENTITY ")] {
            let out = decode(header, body, 16).unwrap();
            assert!(matches!(out, Cow::Borrowed(_)), "{header:?}");
            assert_eq!(out.as_ref(), body);
        }
        // An empty body with a coding is an empty answer, not an error.
        assert_eq!(decode(Some(b"gzip"), b"", 16).unwrap().as_ref(), b"");
    }

    #[test]
    fn an_unknown_coding_is_named() {
        assert_eq!(
            decode(Some(b"gzip, compress"), b"x", 16),
            Err(DecodeError::Unknown("compress".into()))
        );
        assert_eq!(
            decode(Some(b"\xff"), b"x", 16),
            Err(DecodeError::Unknown("\u{fffd}".into()))
        );
    }

    #[test]
    fn a_stream_cut_short_is_corrupt_never_a_short_body() {
        let data = answer();
        for (name, encoded) in [
            ("gzip", gzip(&data)),
            ("deflate", zlib(&data)),
            ("deflate", raw_deflate(&data)),
            ("br", br(&data)),
            ("zstd", zstd(&data)),
        ] {
            for cut in [encoded.len() / 2, encoded.len() - 1] {
                let got = decode(Some(name.as_bytes()), &encoded[..cut], 64 * MIB);
                assert!(
                    matches!(got, Err(DecodeError::Corrupt { .. })),
                    "{name} cut at {cut} of {}: {got:?}",
                    encoded.len()
                );
            }
        }
    }

    #[test]
    fn garbage_and_trailing_bytes_are_corrupt() {
        for name in ["gzip", "deflate", "br", "zstd"] {
            let got = decode(Some(name.as_bytes()), b"not compressed at all", MIB);
            assert!(
                matches!(got, Err(DecodeError::Corrupt { .. })),
                "{name}: {got:?}"
            );
        }
        let mut z = zlib(b"{}");
        z.extend_from_slice(b"junk");
        assert!(matches!(
            decode(Some(b"deflate"), &z, MIB),
            Err(DecodeError::Corrupt {
                encoding: "deflate",
                ..
            })
        ));
        let mut g = gzip(b"{}");
        g.extend_from_slice(b"junk");
        assert!(matches!(
            decode(Some(b"gzip"), &g, MIB),
            Err(DecodeError::Corrupt {
                encoding: "gzip",
                ..
            })
        ));
    }

    #[test]
    fn multi_member_gzip_is_read_whole() {
        let mut body = gzip(b"[1,");
        body.extend(gzip(b"2]"));
        assert_eq!(
            decode(Some(b"gzip"), &body, MIB).unwrap().as_ref(),
            b"[1,2]"
        );
    }

    /// 1 GiB of zeros as 1024 gzip members of 1 MiB each (about 1 MiB of
    /// body): stopped at the 8 MiB limit, with the output's capacity never
    /// past it.
    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let member = gzip(&vec![0u8; MIB]);
        let bomb = member.repeat(1024);
        assert!(bomb.len() < 2 * MIB);
        let limit = 8 * MIB;
        let started = std::time::Instant::now();
        assert_eq!(
            decode(Some(b"gzip"), &bomb, limit),
            Err(DecodeError::TooLarge { limit })
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));

        // The same bound, seen from inside: the buffer stops at the limit.
        let bound = Bound::new(Coding::Gzip, bomb.len(), limit);
        let mut out = Vec::new();
        let chunk = vec![0u8; CHUNK];
        while push_bounded(&mut out, &chunk, &bound).is_ok() {}
        assert_eq!(out.len(), limit);
        assert_eq!(out.capacity(), limit);
    }

    #[test]
    fn a_zstd_bomb_is_refused_by_its_ratio() {
        // 256 MiB of zeros compress to a few KiB, far past 10,000x.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        let zeros = vec![0u8; MIB];
        for _ in 0..256 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() * 10_000 < 256 * MIB, "{}", bomb.len());
        assert_eq!(
            decode(Some(b"zstd"), &bomb, 1 << 30),
            Err(DecodeError::Bomb { ratio: 10_000 })
        );
        // With a smaller limit, the limit is what stops it.
        assert_eq!(
            decode(Some(b"zstd"), &bomb, 2 * MIB),
            Err(DecodeError::TooLarge { limit: 2 * MIB })
        );
    }

    #[test]
    fn a_small_but_highly_compressed_body_is_not_a_bomb() {
        // 512 KiB of spaces: a ratio in the thousands, under the floor.
        let data = vec![b' '; 512 * 1024];
        for (name, encoded) in [
            ("gzip", gzip(&data)),
            ("br", br(&data)),
            ("zstd", zstd(&data)),
        ] {
            assert!(
                encoded.len() * 1_100 < data.len() || name == "gzip",
                "{name}"
            );
            let out = decode(Some(name.as_bytes()), &encoded, MIB).unwrap();
            assert_eq!(out.len(), data.len(), "{name}");
        }
    }

    #[test]
    fn a_body_exactly_at_the_limit_decodes() {
        let data = answer();
        let g = gzip(&data);
        let out = decode(Some(b"gzip"), &g, data.len()).unwrap();
        assert_eq!(out.len(), data.len());
        assert_eq!(
            decode(Some(b"gzip"), &g, data.len() - 1),
            Err(DecodeError::TooLarge {
                limit: data.len() - 1
            })
        );
    }

    #[test]
    fn a_zstd_frame_asking_for_a_huge_window_is_refused() {
        // Long-distance matching at window log 27 (128 MiB): past HTTP's 8 MiB.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(27).unwrap();
        e.long_distance_matching(true).unwrap();
        e.write_all(&answer()).unwrap();
        let body = e.finish().unwrap();
        // Written as a stream (size unknown), so the frame header keeps the
        // 128 MiB window it was given.
        let got = decode(Some(b"zstd"), &body, 64 * MIB);
        assert!(
            matches!(
                got,
                Err(DecodeError::Corrupt {
                    encoding: "zstd",
                    ..
                })
            ),
            "{got:?}"
        );
    }
}
