//! From an answer as it came over the wire to an answer the comparator
//! reads: its `Content-Encoding` undone (`decode`), its format chosen
//! (`reconcile.format`, or by `Content-Type` when `auto`), and CSV, TSV or
//! Parquet read into NDJSON records (`format::to_ndjson`). For the
//! comparison only: the consumer always gets the bytes as sent.

use std::borrow::Cow;

use super::decode::{DecodeError, decode};
use super::format::{Format, FormatError, to_ndjson};
use super::outcome::Skip;
use super::report::Layout;

/// An answer's body, ready for the comparator.
#[derive(Debug)]
pub struct Prepared<'a> {
    pub body: Cow<'a, [u8]>,
    pub layout: Layout,
}

/// Decodes and reads one answer's body. `limit` bounds the decoded bytes,
/// and again the records read from them. `Err`: skipped, `too_large` past
/// `limit`, `encoding` when the coding is unknown or the body does not
/// decode. A body that is not the format it says it is comes back as
/// `Layout::Unreadable`: whether that is a skip or a divergence depends on
/// the other side (`compare`).
pub fn prepare<'a>(
    format: Format,
    content_encoding: Option<&[u8]>,
    content_type: Option<&[u8]>,
    body: &'a [u8],
    limit: usize,
) -> Result<Prepared<'a>, Skip> {
    let body = decode(content_encoding, body, limit).map_err(|e| match e {
        DecodeError::TooLarge { .. } => Skip::TooLarge,
        DecodeError::Unknown(_) | DecodeError::Corrupt { .. } | DecodeError::Bomb { .. } => {
            Skip::Encoding
        }
    })?;
    let format = match format {
        Format::Auto => content_type.and_then(Format::from_content_type),
        named => Some(named),
    };
    let layout = match format {
        None | Some(Format::Auto) => Layout::Json { declared: false },
        Some(Format::Json) => Layout::Json { declared: true },
        Some(Format::Ndjson) => Layout::Lines,
        Some(Format::Bytes) => Layout::Bytes,
        Some(rows @ (Format::Csv | Format::Tsv | Format::Parquet)) => {
            return match to_ndjson(rows, &body, limit) {
                Ok(lines) => Ok(Prepared {
                    body: Cow::Owned(lines),
                    layout: Layout::Lines,
                }),
                Err(FormatError::TooLarge { .. }) => Err(Skip::TooLarge),
                Err(_) => Ok(Prepared {
                    body,
                    layout: Layout::Unreadable,
                }),
            };
        }
    };
    Ok(Prepared { body, layout })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn the_format_follows_the_config_then_the_content_type() {
        let csv = b"id,v\n1,a\n";
        let p = prepare(
            Format::Auto,
            None,
            Some(b"text/csv; charset=utf-8"),
            csv,
            1 << 20,
        )
        .unwrap();
        assert_eq!(p.layout, Layout::Lines);
        assert_eq!(&*p.body, b"{\"id\":1,\"v\":\"a\"}\n");
        let p = prepare(Format::Auto, None, None, csv, 1 << 20).unwrap();
        assert_eq!(p.layout, Layout::Json { declared: false });
        let p = prepare(Format::Bytes, None, Some(b"text/csv"), csv, 1 << 20).unwrap();
        assert_eq!(p.layout, Layout::Bytes);
        let p = prepare(Format::Json, None, Some(b"text/csv"), csv, 1 << 20).unwrap();
        assert_eq!(p.layout, Layout::Json { declared: true });
        let ragged = b"id,v\n1\n";
        let p = prepare(Format::Csv, None, None, ragged, 1 << 20).unwrap();
        assert_eq!(p.layout, Layout::Unreadable);
    }

    #[test]
    fn bodies_are_decoded_first_and_bounded_decoded() {
        let zipped = gzip(b"id,v\n1,a\n");
        let p = prepare(Format::Csv, Some(b"gzip"), None, &zipped, 1 << 20).unwrap();
        assert_eq!(&*p.body, b"{\"id\":1,\"v\":\"a\"}\n");
        let big = vec![b' '; 100_000];
        assert_eq!(
            prepare(Format::Json, Some(b"gzip"), None, &gzip(&big), 10_000).unwrap_err(),
            Skip::TooLarge
        );
        assert_eq!(
            prepare(Format::Json, Some(b"compress"), None, b"x", 10).unwrap_err(),
            Skip::Encoding
        );
        let cut = gzip(b"{\"a\": 1}");
        assert_eq!(
            prepare(
                Format::Json,
                Some(b"gzip"),
                None,
                &cut[..cut.len() - 3],
                1 << 20
            )
            .unwrap_err(),
            Skip::Encoding
        );
    }
}
