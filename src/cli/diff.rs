//! `cutover diff`: two saved answers (batch's and streaming's) compared
//! offline by the same comparator shadow mode uses.

use std::path::Path;

use super::Exit;

/// `cutover diff`: 0 when the two answers match within tolerance, 1 when
/// they diverge, 2 on bad input.
pub fn diff(
    spec: &crate::decide::reconcile::Spec<'_>,
    batch: (&Path, Option<String>),
    streaming: (&Path, Option<String>),
    format: Option<&str>,
    show: usize,
) -> Exit {
    use crate::decide::reconcile::format::Format;
    let format = match format.map(|f| (f, Format::parse(f))) {
        None => None,
        Some((_, Some(f))) => Some(f),
        Some((f, None)) => {
            eprintln!(
                "cutover diff: --format `{f}` is not one of auto, json, ndjson, csv, tsv, parquet, bytes"
            );
            return Exit::Unusable;
        }
    };
    let read = |(path, wm): (&Path, Option<String>)| -> Result<(Vec<u8>, Option<i64>), String> {
        let body = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let wm = match wm {
            Some(w) => Some(
                crate::decide::freshness::parse_watermark(w.as_bytes()).ok_or_else(|| {
                    format!("bad watermark `{w}`: expected RFC 3339 or Unix seconds/milliseconds")
                })?,
            ),
            None => None,
        };
        Ok((body, wm))
    };
    if spec.numeric_tolerance < 0.0 || !spec.numeric_tolerance.is_finite() {
        eprintln!("cutover diff: --numeric-tolerance must be a non-negative number");
        return Exit::Unusable;
    }
    let (batch_path, streaming_path) = (batch.0, streaming.0);
    let (b, s) = match (read(batch), read(streaming)) {
        (Ok(b), Ok(s)) => (b, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cutover diff: {e}");
            return Exit::Unusable;
        }
    };
    // Each file is decoded and read as its name (or --format) says, as an
    // answer is by its Content-Encoding and Content-Type.
    let (bp, sp) = match (
        prepare(batch_path, format, &b.0),
        prepare(streaming_path, format, &s.0),
    ) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cutover diff: {e}");
            return Exit::Unusable;
        }
    };
    let report = crate::decide::reconcile::compare(spec, answer(&bp, b.1), answer(&sp, s.1));
    if report.unreadable {
        eprintln!("cutover diff: neither file reads as its format: check --format");
        return Exit::Unusable;
    }
    if report.no_records {
        eprintln!(
            "cutover diff: --records {} finds no record array in either answer: check the pointer",
            spec.records
        );
        return Exit::Unusable;
    }
    print!("{}", crate::decide::reconcile::diff::render(&report, show));
    if report.diverged() {
        Exit::Failure
    } else {
        Exit::Success
    }
}

fn prepare<'a>(
    path: &Path,
    format: Option<crate::decide::reconcile::format::Format>,
    body: &'a [u8],
) -> Result<crate::decide::reconcile::prepare::Prepared<'a>, String> {
    let (by_name, encoding) = crate::decide::reconcile::format::Format::from_path(path);
    crate::decide::reconcile::prepare::prepare(
        format.or(by_name).unwrap_or_default(),
        encoding.map(str::as_bytes),
        None,
        body,
        usize::MAX,
    )
    .map_err(|why| format!("{}: not comparable ({})", path.display(), why.as_str()))
}

fn answer<'a>(
    p: &'a crate::decide::reconcile::prepare::Prepared<'_>,
    watermark_ms: Option<i64>,
) -> crate::decide::reconcile::Answer<'a> {
    crate::decide::reconcile::Answer {
        layout: p.layout,
        ..crate::decide::reconcile::Answer::json(200, &p.body, watermark_ms)
    }
}
