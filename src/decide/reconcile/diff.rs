//! `cutover diff`: the comparator on two saved answers, offline, for
//! reconciling exports outside the read path.

use std::fmt::Write;

use super::report::{Category, Report};

/// A human summary of a report: rows, counts by category, the first divergences.
pub fn render(report: &Report, shown: usize) -> String {
    let mut out = String::new();
    let rows = |r: Option<usize>| r.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let _ = writeln!(
        out,
        "rows: batch {}, streaming {}",
        rows(report.batch_rows),
        rows(report.streaming_rows)
    );
    let total: u64 = report.counts.iter().sum();
    if total == 0 {
        out.push_str("match: no divergence\n");
        return out;
    }
    let verdict = if report.diverged() {
        "diverged"
    } else {
        "match (timing differences only, explained by the watermarks)"
    };
    let _ = writeln!(out, "{verdict}:");
    for c in Category::ALL {
        let n = report.count(c);
        if n > 0 {
            let _ = writeln!(out, "  {:<10} {n}", c.as_str());
        }
    }
    if !report.samples.is_empty() {
        let _ = writeln!(out, "first divergences:");
    }
    for d in report.samples.iter().take(shown) {
        let _ = write!(out, "  {}", d.category.as_str());
        if let Some(k) = &d.key {
            let _ = write!(out, " key={k}");
        }
        if let Some(f) = &d.field {
            let _ = write!(out, " field={f}");
        }
        if let Some(s) = d.side {
            let _ = write!(out, " side={s}");
        }
        out.push('\n');
        if let Some(b) = &d.batch {
            let _ = writeln!(out, "      batch:     {b}");
        }
        if let Some(s) = &d.streaming {
            let _ = writeln!(out, "      streaming: {s}");
        }
    }
    out
}
