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
    show: usize,
) -> Exit {
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
    let (b, s) = match (read(batch), read(streaming)) {
        (Ok(b), Ok(s)) => (b, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cutover diff: {e}");
            return Exit::Unusable;
        }
    };
    fn answer((body, wm): &(Vec<u8>, Option<i64>)) -> crate::decide::reconcile::Answer<'_> {
        crate::decide::reconcile::Answer::json(200, body, *wm)
    }
    let report = crate::decide::reconcile::compare(spec, answer(&b), answer(&s));
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
