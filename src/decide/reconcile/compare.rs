//! The comparator: two answers to the same read, batch's and streaming's,
//! normalised and compared record by record into divergence categories.
//!
//! Normalisation: object key order never matters; `ignore` fields are left
//! out at any depth; numbers match within a relative `numeric_tolerance`;
//! with a `key`, record order does not matter either. A difference that the
//! two sides' watermarks explain (the record's event time is newer than the
//! other side's watermark) is `timing`, an expected difference, not a defect.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::records::{self, Located};
use super::report::{Answer, Category, Divergence, Layout, MAX_VALUE_CHARS, Report, Spec};

fn truncate(v: &Value) -> String {
    // Serialise at most MAX_VALUE_CHARS (+ one char) so a 100k-record array
    // costs no more than a small one.
    struct Capped(Vec<u8>);
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let room = (MAX_VALUE_CHARS + 4).saturating_sub(self.0.len());
            if room == 0 {
                return Err(std::io::Error::other("full"));
            }
            let n = buf.len().min(room);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Capped(Vec::new());
    let _ = serde_json::to_writer(&mut w, v);
    let s = String::from_utf8_lossy(&w.0).into_owned();
    if s.len() <= MAX_VALUE_CHARS {
        return s;
    }
    let mut end = MAX_VALUE_CHARS;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn truncate_bytes(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(MAX_VALUE_CHARS * 4)]);
    truncate(&Value::String(s.into_owned()))
        .trim_matches('"')
        .to_owned()
}

/// Compares batch's and streaming's answers to the same read, with no bound
/// on the memory it takes (`cutover diff`, tests).
pub fn compare(spec: &Spec<'_>, batch: Answer<'_>, streaming: Answer<'_>) -> Report {
    compare_within(spec, batch, streaming, &|_| true)
}

/// What indexing one record costs besides its text: its row, its slot in the
/// list of raw records, and its share of the key table (a hash table's
/// entries at its usual load).
pub const ROW_BYTES: usize = std::mem::size_of::<records::Row<'static>>()
    + std::mem::size_of::<&serde_json::value::RawValue>()
    + std::mem::size_of::<(records::Hash, [u32; 2])>() * 8 / 7;

/// What a parsed `Value` tree holds per byte of its JSON text (measured:
/// about 12x on records of short fields; `bench/reconcile.py`).
pub const TREE_FACTOR: usize = 12;

/// `compare`, taking what it builds from a budget first: `take(n)` says
/// whether `n` more bytes may be held. Refused: `Report::over_budget`, and
/// nothing was compared.
pub fn compare_within(
    spec: &Spec<'_>,
    batch: Answer<'_>,
    streaming: Answer<'_>,
    take: &dyn Fn(usize) -> bool,
) -> Report {
    let mut report = Report::default();
    if batch.status != streaming.status {
        report.add(Divergence {
            category: Category::Status,
            key: None,
            field: None,
            side: None,
            batch: Some(batch.status.to_string()),
            streaming: Some(streaming.status.to_string()),
        });
        return report;
    }
    let json = |a: &Answer<'_>| matches!(a.layout, Layout::Json { .. });
    if batch.body == streaming.body
        && json(&batch)
        && json(&streaming)
        && let Some(report) = super::identical::report(spec, batch.body)
    {
        return report;
    }
    compare_trees(spec, batch, streaming, take)
}

/// One side's body, read as its layout says.
enum Read<'a> {
    /// Records (a JSON document's array at the pointer, or lines), indexed.
    Rows(records::Side<'a>),
    /// A JSON document with no record array at the pointer.
    Document,
    /// Not JSON, and nothing said it should be: compared as bytes.
    Bytes,
    /// Not what its format says it is.
    Unreadable,
    /// Its index would pass the byte budget.
    OverBudget,
}

fn read<'a>(
    spec: &Spec<'_>,
    rules: &records::Rules<'_>,
    a: &Answer<'a>,
    take: &dyn Fn(usize) -> bool,
) -> Read<'a> {
    let rows = match a.layout {
        Layout::Bytes => return Read::Bytes,
        Layout::Unreadable => return Read::Unreadable,
        Layout::Lines => records::lines(a.body).map_err(|_| ()),
        Layout::Json { .. } => match records::at_pointer(a.body, spec.records) {
            Ok(Located::Array(rows)) => Ok(rows),
            Ok(Located::NotArray | Located::Nothing) => return Read::Document,
            Err(_) => Err(()),
        },
    };
    if let Ok(rows) = &rows
        && !take(rows.len().saturating_mul(ROW_BYTES))
    {
        return Read::OverBudget;
    }
    match rows.and_then(|rows| records::index(rows, rules).map_err(|_| ())) {
        Ok(side) => Read::Rows(side),
        Err(()) if a.layout == (Layout::Json { declared: false }) => Read::Bytes,
        Err(()) => Read::Unreadable,
    }
}

/// The comparison proper: both bodies read into records and compared by
/// digest, values built only for records whose digests differ.
fn compare_trees(
    spec: &Spec<'_>,
    batch: Answer<'_>,
    streaming: Answer<'_>,
    take: &dyn Fn(usize) -> bool,
) -> Report {
    let mut report = Report::default();
    let none = HashSet::new();
    let rules = records::Rules {
        key: spec.key,
        ignore: spec.ignore,
        schema: &none,
        event_time: spec.event_time,
    };
    let b = read(spec, &rules, &batch, take);
    let s = match b {
        Read::OverBudget => Read::OverBudget,
        _ => read(spec, &rules, &streaming, take),
    };
    match (b, s) {
        (Read::OverBudget, _) | (_, Read::OverBudget) => report.over_budget = true,
        (Read::Unreadable, Read::Unreadable) => report.unreadable = true,
        (Read::Bytes, _) | (_, Read::Bytes) | (Read::Unreadable, _) | (_, Read::Unreadable) => {
            // One side is data and the other is not (or is not the data its
            // format says): the consumer would see the difference.
            if batch.body != streaming.body {
                report.add(body_divergence(
                    truncate_bytes(batch.body),
                    truncate_bytes(streaming.body),
                ));
            }
        }
        (Read::Rows(b), Read::Rows(s)) => {
            compare_rows(spec, &rules, b, s, &batch, &streaming, &mut report)
        }
        (Read::Document, Read::Document) if !spec.records.is_empty() => {
            report.no_records = true;
        }
        (b, s) => {
            // One side has records and the other has none (or the pointer is
            // the whole body and names no array): compared as whole values.
            let value = |r: Read<'_>, a: &Answer<'_>| match r {
                Read::Rows(side) => {
                    Value::Array(side.rows.iter().map(records::Row::value).collect())
                }
                _ => serde_json::from_slice(a.body).unwrap_or(Value::Null),
            };
            if !take(TREE_FACTOR.saturating_mul(batch.body.len() + streaming.body.len())) {
                report.over_budget = true;
                return report;
            }
            let (bv, sv) = (value(b, &batch), value(s, &streaming));
            let empty = HashSet::new();
            let cmp = Comparer {
                spec,
                schema: &empty,
            };
            if !cmp.equal(&bv, &sv, false) {
                report.add(body_divergence(truncate(&bv), truncate(&sv)));
            }
        }
    }
    report
}

/// Records against records: `schema` first, then by key or in order.
fn compare_rows(
    spec: &Spec<'_>,
    rules: &records::Rules<'_>,
    mut b: records::Side<'_>,
    mut s: records::Side<'_>,
    batch: &Answer<'_>,
    streaming: &Answer<'_>,
    report: &mut Report,
) {
    report.batch_rows = Some(b.rows.len());
    report.streaming_rows = Some(s.rows.len());
    let drift = schema_drift(&b, &s);
    let mut schema = HashSet::new();
    if !drift.is_empty() {
        for (name, bt, st) in &drift {
            report.add(Divergence {
                category: Category::Schema,
                key: None,
                field: Some(name.clone()),
                side: None,
                batch: Some(bt.clone()),
                streaming: Some(st.clone()),
            });
        }
        schema = drift.into_iter().map(|(name, _, _)| name).collect();
        let rules = records::Rules {
            schema: &schema,
            ..*rules
        };
        records::redigest(&mut b, &rules);
        records::redigest(&mut s, &rules);
    }
    let cmp = Comparer {
        spec,
        schema: &schema,
    };
    match spec.key {
        Some(key) => cmp.keyed(
            key,
            b,
            s,
            batch.watermark_ms,
            streaming.watermark_ms,
            report,
        ),
        None => {
            let same = b.rows.len() == s.rows.len()
                && b.rows
                    .iter()
                    .zip(&s.rows)
                    .all(|(x, y)| x.digest == y.digest || cmp.equal(&x.value(), &y.value(), true));
            if !same {
                report.add(body_divergence(
                    truncate_rows(&b.rows),
                    truncate_rows(&s.rows),
                ));
            }
        }
    }
}

/// The top-level fields whose presence or type differs between the sides:
/// carried by every record of one side and by none of the other's, or seen
/// with JSON types (null aside) the other side never has. By name, with each
/// side's description for the log.
fn schema_drift(b: &records::Side<'_>, s: &records::Side<'_>) -> Vec<(String, String, String)> {
    if b.rows.is_empty() || s.rows.is_empty() {
        return Vec::new();
    }
    let describe = |f: Option<&records::Field>, rows: usize| match f {
        None => "absent".to_owned(),
        Some(f) if f.count < rows => format!(
            "{} (in {} of {rows})",
            records::type_names(f.types),
            f.count
        ),
        Some(f) => records::type_names(f.types),
    };
    let mut names: Vec<&str> = b.fields.names().chain(s.fields.names()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let (bf, sf) = (b.fields.get(name), s.fields.get(name));
        let drifted = match (bf, sf) {
            (Some(f), None) => f.count == b.rows.len(),
            (None, Some(f)) => f.count == s.rows.len(),
            (Some(x), Some(y)) => {
                let (xt, yt) = (x.types & !records::NULL, y.types & !records::NULL);
                xt != 0 && yt != 0 && xt & yt == 0
            }
            (None, None) => false,
        };
        if drifted {
            out.push((
                name.to_owned(),
                describe(bf, b.rows.len()),
                describe(sf, s.rows.len()),
            ));
        }
    }
    out
}

/// The start of a record array, from the records' texts.
fn truncate_rows(rows: &[records::Row<'_>]) -> String {
    let mut out = String::from("[");
    for (i, r) in rows.iter().enumerate() {
        if out.len() > MAX_VALUE_CHARS {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(r.raw.get());
    }
    if out.len() <= MAX_VALUE_CHARS && out.len() > 1 || rows.is_empty() {
        out.push(']');
        return out;
    }
    let mut end = MAX_VALUE_CHARS.min(out.len());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &out[..end])
}

fn body_divergence(batch: String, streaming: String) -> Divergence {
    Divergence {
        category: Category::Body,
        key: None,
        field: None,
        side: None,
        batch: Some(batch),
        streaming: Some(streaming),
    }
}

struct Comparer<'s, 'a> {
    spec: &'s Spec<'a>,
    /// Top-level fields counted as `schema`, left out of the rest.
    schema: &'s HashSet<String>,
}

impl Comparer<'_, '_> {
    fn ignored(&self, k: &str, top: bool) -> bool {
        self.spec.ignore.iter().any(|i| i == k) || (top && self.schema.contains(k))
    }

    /// Equality after normalisation: ignored fields out, numbers within
    /// tolerance. `top`: `a` and `b` are records, whose `schema` fields are
    /// out too.
    fn equal(&self, a: &Value, b: &Value, top: bool) -> bool {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let kx = x.iter().filter(|(k, _)| !self.ignored(k, top));
                let ky = y.iter().filter(|(k, _)| !self.ignored(k, top));
                // serde_json's Map is ordered by key: walk both in step.
                let mut kx = kx.peekable();
                let mut ky = ky.peekable();
                loop {
                    match (kx.next(), ky.next()) {
                        (None, None) => return true,
                        (Some((ka, va)), Some((kb, vb))) if ka == kb => {
                            if !self.equal(va, vb, false) {
                                return false;
                            }
                        }
                        _ => return false,
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| self.equal(a, b, false))
            }
            (Value::Number(x), Value::Number(y)) => {
                if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64())
                    && i == j
                {
                    return true;
                }
                match (x.as_f64(), y.as_f64()) {
                    (Some(p), Some(q)) => {
                        p == q
                            || (p - q).abs() <= self.spec.numeric_tolerance * p.abs().max(q.abs())
                    }
                    _ => x == y,
                }
            }
            _ => a == b,
        }
    }

    /// The first top-level field (by name) whose values differ.
    fn first_difference(&self, a: &Value, b: &Value) -> Option<String> {
        let (Value::Object(x), Value::Object(y)) = (a, b) else {
            return None;
        };
        let mut names: Vec<&String> = x
            .keys()
            .chain(y.keys())
            .filter(|k| !self.ignored(k, true))
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .find(|k| match (x.get(*k), y.get(*k)) {
                (Some(p), Some(q)) => !self.equal(p, q, false),
                _ => true,
            })
            .cloned()
    }

    /// Whether a record whose event time is `event_ms` is newer than
    /// `other_watermark`: the other side has not caught up to it yet, so a
    /// difference is expected.
    fn explained_by_timing(event_ms: Option<i64>, other_watermark: Option<i64>) -> bool {
        matches!((event_ms, other_watermark), (Some(t), Some(w)) if t > w)
    }

    /// Keyed records: one table from each key's digest to the row holding
    /// it on each side (a second row with a key seen is a `duplicate`), then
    /// batch's rows in order (`missing`, or compared with streaming's row),
    /// then streaming's rows no batch row matched (`extra`).
    fn keyed(
        &self,
        key: &str,
        batch: records::Side<'_>,
        streaming: records::Side<'_>,
        batch_wm: Option<i64>,
        streaming_wm: Option<i64>,
        report: &mut Report,
    ) {
        const NONE: u32 = u32::MAX;
        let mut table: HashMap<records::Hash, [u32; 2]> =
            HashMap::with_capacity(batch.rows.len().max(streaming.rows.len()));
        for (side, rows) in [(0, &batch.rows), (1, &streaming.rows)] {
            let name = ["batch", "streaming"][side];
            for (i, r) in rows.iter().enumerate() {
                let at = table.entry(r.key).or_insert([NONE, NONE]);
                if at[side] == NONE {
                    at[side] = i as u32;
                    continue;
                }
                let first = &rows[at[side] as usize];
                report.add_with(Category::Duplicate, || Divergence {
                    category: Category::Duplicate,
                    key: Some(r.key_text(key)),
                    field: None,
                    side: Some(name),
                    batch: (side == 0).then(|| truncate(&first.value())),
                    streaming: (side == 1).then(|| truncate(&r.value())),
                });
            }
        }
        for (bi, br) in batch.rows.iter().enumerate() {
            let [first, si] = table.get(&br.key).copied().unwrap_or([NONE, NONE]);
            if first != bi as u32 {
                continue; // a duplicate, counted above
            }
            if si == NONE {
                let category = if Self::explained_by_timing(br.event_ms(), streaming_wm) {
                    Category::Timing
                } else {
                    Category::Missing
                };
                report.add_with(category, || Divergence {
                    category,
                    key: Some(br.key_text(key)),
                    field: None,
                    side: None,
                    batch: Some(truncate(&br.value())),
                    streaming: None,
                });
                continue;
            }
            let sr = &streaming.rows[si as usize];
            if br.digest == sr.digest {
                continue;
            }
            // Only here are values built: a digest is exact, the tolerance
            // is not.
            let (bv, sv) = (br.value(), sr.value());
            if self.equal(&bv, &sv, true) {
                continue;
            }
            let category = if Self::explained_by_timing(sr.event_ms(), batch_wm)
                || Self::explained_by_timing(br.event_ms(), streaming_wm)
            {
                Category::Timing
            } else {
                Category::Aggregate
            };
            report.add_with(category, || Divergence {
                category,
                key: Some(br.key_text(key)),
                field: self.first_difference(&bv, &sv),
                side: None,
                batch: Some(truncate(&bv)),
                streaming: Some(truncate(&sv)),
            });
        }
        for (si, sr) in streaming.rows.iter().enumerate() {
            let [bi, first] = table.get(&sr.key).copied().unwrap_or([NONE, NONE]);
            if bi != NONE || first != si as u32 {
                continue;
            }
            let category = if Self::explained_by_timing(sr.event_ms(), batch_wm) {
                Category::Timing
            } else {
                Category::Extra
            };
            report.add_with(category, || Divergence {
                category,
                key: Some(sr.key_text(key)),
                field: None,
                side: None,
                batch: None,
                streaming: Some(truncate(&sr.value())),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ans(status: u16, v: &Value, wm: Option<i64>) -> (u16, Vec<u8>, Option<i64>) {
        (status, serde_json::to_vec(v).unwrap(), wm)
    }

    fn run(spec: &Spec<'_>, b: &Value, s: &Value) -> Report {
        run_wm(spec, b, None, s, None)
    }

    fn run_wm(spec: &Spec<'_>, b: &Value, bwm: Option<i64>, s: &Value, swm: Option<i64>) -> Report {
        let (bs, bb, bw) = ans(200, b, bwm);
        let (ss, sb, sw) = ans(200, s, swm);
        compare(spec, Answer::json(bs, &bb, bw), Answer::json(ss, &sb, sw))
    }

    fn keyed<'a>(ignore: &'a [String]) -> Spec<'a> {
        Spec {
            records: "/data",
            key: Some("id"),
            ignore,
            numeric_tolerance: 0.001,
            event_time: Some("ts"),
        }
    }

    #[test]
    fn reordering_key_order_and_ignored_fields_are_not_divergences() {
        let ignore = vec!["ingested_at".to_owned()];
        let spec = keyed(&ignore);
        let b =
            json!({"data": [{"id": 1, "amount": 10, "ingested_at": "a"}, {"id": 2, "amount": 20}]});
        let s = json!({"data": [{"amount": 20, "id": 2}, {"ingested_at": "zzz", "amount": 10, "id": 1}]});
        let r = run(&spec, &b, &s);
        assert!(!r.diverged(), "{r:?}");
        assert_eq!(r.counts, [0; Category::ALL.len()]);
        assert_eq!((r.batch_rows, r.streaming_rows), (Some(2), Some(2)));
    }

    #[test]
    fn missing_extra_and_aggregate_are_found_by_key() {
        let spec = keyed(&[]);
        let b = json!({"data": [{"id": 1, "amount": 10}, {"id": 2, "amount": 20}, {"id": 3, "amount": 30}]});
        let s = json!({"data": [{"id": 1, "amount": 10}, {"id": 3, "amount": 31}, {"id": 4, "amount": 40}]});
        let r = run(&spec, &b, &s);
        assert_eq!(r.count(Category::Missing), 1);
        assert_eq!(r.count(Category::Extra), 1);
        assert_eq!(r.count(Category::Aggregate), 1);
        assert_eq!(r.count(Category::Timing), 0);
        let agg = r
            .samples
            .iter()
            .find(|d| d.category == Category::Aggregate)
            .unwrap();
        assert_eq!(agg.key.as_deref(), Some("3"));
        assert_eq!(agg.field.as_deref(), Some("amount"));
        assert!(r.diverged());
    }

    #[test]
    fn numeric_tolerance_is_relative_and_has_an_edge() {
        let spec = keyed(&[]); // 0.001
        let b = json!({"data": [{"id": 1, "amount": 1000.0}]});
        let within = json!({"data": [{"id": 1, "amount": 1000.999}]});
        let beyond = json!({"data": [{"id": 1, "amount": 1001.01}]});
        assert!(!run(&spec, &b, &within).diverged());
        assert_eq!(run(&spec, &b, &beyond).count(Category::Aggregate), 1);
        let exact = Spec {
            numeric_tolerance: 0.0,
            ..keyed(&[])
        };
        assert_eq!(run(&exact, &b, &within).count(Category::Aggregate), 1);
        // Integer and float spellings of the same number match.
        let i = json!({"data": [{"id": 1, "amount": 5}]});
        let f = json!({"data": [{"id": 1, "amount": 5.0}]});
        assert!(!run(&exact, &i, &f).diverged());
    }

    #[test]
    fn duplicates_on_either_side() {
        let spec = keyed(&[]);
        let b = json!({"data": [{"id": 1}, {"id": 1}, {"id": 2}]});
        let s = json!({"data": [{"id": 1}, {"id": 2}, {"id": 2}, {"id": 2}]});
        let r = run(&spec, &b, &s);
        assert_eq!(r.count(Category::Duplicate), 3);
        assert_eq!(r.count(Category::Missing) + r.count(Category::Extra), 0);
        let sides: Vec<_> = r.samples.iter().map(|d| d.side.unwrap()).collect();
        assert_eq!(sides, ["batch", "streaming", "streaming"]);
    }

    #[test]
    fn timing_versus_missing_is_decided_by_watermarks() {
        let spec = keyed(&[]);
        let batch_wm = 1_700_000_000_000; // batch ran at this time
        let b = json!({"data": [{"id": 1, "ts": 1_699_999_000}]});
        // Streaming has a record newer than batch's watermark: timing, not extra.
        let s = json!({"data": [{"id": 1, "ts": 1_699_999_000}, {"id": 2, "ts": "2023-11-14T22:20:00Z"}]});
        let r = run_wm(&spec, &b, Some(batch_wm), &s, Some(batch_wm + 600_000));
        assert_eq!(r.count(Category::Timing), 1, "{r:?}");
        assert_eq!(r.count(Category::Extra), 0);
        assert!(!r.diverged());
        // The same record older than batch's watermark is a real `extra`.
        let s_old =
            json!({"data": [{"id": 1, "ts": 1_699_999_000}, {"id": 2, "ts": 1_699_999_500}]});
        let r = run_wm(&spec, &b, Some(batch_wm), &s_old, Some(batch_wm + 600_000));
        assert_eq!(r.count(Category::Extra), 1);
        // Without watermarks nothing can be explained.
        let r = run(&spec, &b, &s);
        assert_eq!(r.count(Category::Extra), 1);
        // An updated record whose new event time is past batch's watermark: timing.
        let b_upd = json!({"data": [{"id": 1, "ts": 1_699_999_000, "amount": 2}]});
        let s_upd = json!({"data": [{"id": 1, "ts": 1_700_000_100, "amount": 3}]});
        let r = run_wm(
            &spec,
            &b_upd,
            Some(batch_wm),
            &s_upd,
            Some(batch_wm + 600_000),
        );
        assert_eq!(
            (r.count(Category::Timing), r.count(Category::Aggregate)),
            (1, 0)
        );
    }

    #[test]
    fn unkeyed_and_non_json_bodies_are_compared_as_values_and_bytes() {
        let spec = Spec {
            records: "/data",
            ..Spec::default()
        };
        let b = json!({"data": [1, 2, 3]});
        assert!(!run(&spec, &b, &json!({"data": [1, 2, 3]})).diverged());
        assert_eq!(
            run(&spec, &b, &json!({"data": [1, 3, 2]})).count(Category::Body),
            1
        );
        let whole = Spec::default();
        assert!(
            !run(
                &whole,
                &json!({"a": {"y": 1, "x": 2}}),
                &json!({"a": {"x": 2, "y": 1}})
            )
            .diverged()
        );
        let text = |b: &'static [u8], s: &'static [u8]| {
            compare(
                &whole,
                Answer::json(200, b, None),
                Answer::json(200, s, None),
            )
        };
        assert!(!text(b"a,b\n1,2\n", b"a,b\n1,2\n").diverged());
        let r = text(b"a,b\n1,2\n", b"a,b\n1,3\n");
        assert_eq!(r.count(Category::Body), 1);
        assert_eq!(r.samples[0].streaming.as_deref(), Some("a,b\\n1,3\\n"));
    }

    #[test]
    fn status_mismatch_is_a_divergence() {
        let r = compare(
            &Spec::default(),
            Answer::json(200, b"{}", None),
            Answer::json(404, b"{}", None),
        );
        assert_eq!(r.count(Category::Status), 1);
        assert!(r.diverged());
    }

    #[test]
    fn long_values_are_truncated() {
        let spec = keyed(&[]);
        let big = "x".repeat(10_000);
        let r = run(
            &spec,
            &json!({"data": [{"id": 1, "v": big}]}),
            &json!({"data": []}),
        );
        let v = r.samples[0].batch.as_ref().unwrap();
        assert!(v.len() <= MAX_VALUE_CHARS + 3, "{}", v.len());
    }

    #[test]
    fn identical_answers_report_what_the_full_comparison_reports() {
        let bodies: &[&str] = &[
            r#"{"data": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}"#,
            r#"{"data": [{"id": 1}, {"id": 1}]}"#,
            r#"{"data": [{"id": "1"}, {"id": 1}, {"id": 1.0}, {"id": 1e0}]}"#,
            r#"{"data": [{"id": "a\u0062"}, {"id": "ab"}]}"#,
            r#"{"data": [{"id": null}, {"v": 1}, 3, [1], {"id": {"k": [1, 2]}}]}"#,
            r#"{"data": [{"id": 1, "id": 2}, {"id": 2}]}"#,
            r#"{"data": 1, "data": [{"id": 1}]}"#,
            r#"{"data": [{"id": 1}], "data": {"x": 1}}"#,
            r#"{"page": {"a/b": [{"id": 5}], "t~x": [{"id": 6}, {"id": 7}]}}"#,
            r#"{"rows": [[{"id": 1}], [{"id": 2}, {"id": 2}]]}"#,
            r#"[{"id": 1}, {"id": 2}]"#,
            r#"{"data": []}"#,
            r#"{"other": [1]}"#,
            r#"{"data": [1e400]}"#,
            r#"{"data": [1], "x": "\ud800"}"#,
            r#"{"data": [1]} trailing"#,
            "a,b\n1,2\n",
            "",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        ];
        let pointers = [
            "/data",
            "",
            "/page/a~1b",
            "/page/t~0x",
            "/rows/1",
            "/rows/01",
            "/rows/9",
            "data",
            "/data/0",
            "/other",
        ];
        let mut shortcut_taken = 0;
        for body in bodies {
            for records in pointers {
                for key in [None, Some("id")] {
                    let spec = Spec {
                        records,
                        key,
                        ..Spec::default()
                    };
                    let answer = Answer::json(200, body.as_bytes(), Some(1));
                    let Some(fast) = super::super::identical::report(&spec, answer.body) else {
                        // Left to the full comparison: only for repeated keys.
                        assert!(
                            compare_trees(&spec, answer, answer, &|_| true)
                                .count(Category::Duplicate)
                                > 0
                        );
                        continue;
                    };
                    shortcut_taken += 1;
                    assert_eq!(
                        fast,
                        compare_trees(&spec, answer, answer, &|_| true),
                        "{body} {records:?} {key:?}"
                    );
                }
            }
        }
        assert!(shortcut_taken > 300, "{shortcut_taken}");
    }

    fn lines<'a>(body: &'a [u8]) -> Answer<'a> {
        Answer {
            layout: Layout::Lines,
            ..Answer::json(200, body, None)
        }
    }

    #[test]
    fn ndjson_records_compare_by_key_in_any_order() {
        let spec = keyed(&[]);
        let b = b"{\"id\":1,\"v\":\"a\"}\n{\"id\":2,\"v\":\"b\"}\n";
        let s = b"{\"v\":\"b\",\"id\":2}\r\n{\"id\":1,\"v\":\"a\"}\n\n";
        let r = compare(&spec, lines(b), lines(s));
        assert!(!r.diverged(), "{r:?}");
        assert_eq!((r.batch_rows, r.streaming_rows), (Some(2), Some(2)));
        // A JSON document on one side, lines on the other: the same records.
        let doc = br#"{"data": [{"id": 2, "v": "b"}, {"id": 1, "v": "a"}]}"#;
        assert!(!compare(&spec, Answer::json(200, doc, None), lines(s)).diverged());
        let changed = b"{\"id\":1,\"v\":\"a\"}\n{\"id\":2,\"v\":\"c\"}\n";
        let r = compare(&spec, lines(b), lines(changed));
        assert_eq!(r.count(Category::Aggregate), 1);
        assert_eq!(r.samples[0].key.as_deref(), Some("2"));
    }

    #[test]
    fn a_field_only_one_side_carries_or_of_another_type_is_schema_not_aggregate() {
        let spec = keyed(&[]);
        let b = json!({"data": [{"id": 1, "amount": 10, "region": "eu"}, {"id": 2, "amount": 20, "region": "us"}]});
        // Streaming dropped `region`, added `channel`, and sends amounts as strings.
        let s = json!({"data": [{"id": 1, "amount": "10", "channel": "web"}, {"id": 2, "amount": "20", "channel": "app"}]});
        let r = run(&spec, &b, &s);
        assert_eq!(r.count(Category::Schema), 3, "{r:?}");
        assert_eq!(r.count(Category::Aggregate), 0, "{r:?}");
        let fields: Vec<_> = r
            .samples
            .iter()
            .map(|d| d.field.as_deref().unwrap())
            .collect();
        assert_eq!(fields, ["amount", "channel", "region"]);
        assert_eq!(r.samples[0].batch.as_deref(), Some("number"));
        assert_eq!(r.samples[0].streaming.as_deref(), Some("string"));
        assert_eq!(r.samples[2].streaming.as_deref(), Some("absent"));
        // The other fields still count: a value change beside the drift.
        let s2 =
            json!({"data": [{"id": 1, "amount": "10"}, {"id": 2, "amount": "21", "region": "us"}]});
        let b2 =
            json!({"data": [{"id": 1, "amount": 10}, {"id": 2, "amount": 20, "region": "ca"}]});
        let r = run(&spec, &b2, &s2);
        assert_eq!(
            (r.count(Category::Schema), r.count(Category::Aggregate)),
            (1, 1),
            "{r:?}"
        );
        // A field some records lack on both sides, or null on one side, is no drift.
        let b3 = json!({"data": [{"id": 1, "note": "x"}, {"id": 2}]});
        let s3 = json!({"data": [{"id": 1, "note": null}, {"id": 2}]});
        let r = run(&spec, &b3, &s3);
        assert_eq!(
            (r.count(Category::Schema), r.count(Category::Aggregate)),
            (0, 1)
        );
    }

    #[test]
    fn unreadable_answers_are_skipped_when_both_are_and_diverge_when_one_is() {
        let spec = keyed(&[]);
        let declared = |body: &'static [u8]| Answer {
            layout: Layout::Json { declared: true },
            ..Answer::json(200, body, None)
        };
        let r = compare(&spec, declared(b"<html>"), declared(b"<html>!"));
        assert!(r.unreadable && !r.diverged(), "{r:?}");
        let r = compare(
            &spec,
            lines(b"{\"id\":1}\n"),
            lines(b"{\"id\":1}\nnot json\n"),
        );
        assert_eq!(r.count(Category::Body), 1, "{r:?}");
        let unreadable = Answer {
            layout: Layout::Unreadable,
            ..Answer::json(200, b"a,b\n1", None)
        };
        assert!(compare(&spec, unreadable, unreadable).unreadable);
    }

    #[test]
    fn the_budget_is_taken_before_anything_is_built() {
        let spec = keyed(&[]);
        let b = br#"{"data": [{"id": 1}, {"id": 2}]}"#;
        let s = br#"{"data": [{"id": 2}, {"id": 1}, {"id": 3}]}"#;
        let asked = std::cell::Cell::new(0);
        let r = compare_within(
            &spec,
            Answer::json(200, b, None),
            Answer::json(200, s, None),
            &|n| {
                asked.set(asked.get() + n);
                true
            },
        );
        assert_eq!(r.count(Category::Extra), 1);
        assert_eq!(asked.get(), 5 * ROW_BYTES);
        let r = compare_within(
            &spec,
            Answer::json(200, b, None),
            Answer::json(200, s, None),
            &|_| false,
        );
        assert!(r.over_budget && !r.diverged(), "{r:?}");
    }
}
