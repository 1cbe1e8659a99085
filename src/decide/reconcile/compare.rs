//! The comparator: two answers to the same read, batch's and streaming's,
//! normalised and compared record by record into divergence categories.
//!
//! Normalisation: object key order never matters; `ignore` fields are left
//! out at any depth; numbers match within a relative `numeric_tolerance`;
//! with a `key`, record order does not matter either. A difference that the
//! two sides' watermarks explain (the record's event time is newer than the
//! other side's watermark) is `timing`, an expected difference, not a defect.

use std::collections::HashMap;

use serde_json::Value;

use crate::decide::freshness::parse_watermark;

use super::report::{Answer, Category, Divergence, MAX_VALUE_CHARS, Report, Spec};

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

/// Compares batch's and streaming's answers to the same read.
pub fn compare(spec: &Spec<'_>, batch: Answer<'_>, streaming: Answer<'_>) -> Report {
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
    if batch.body == streaming.body
        && let Some(report) = super::identical::report(spec, batch.body)
    {
        return report;
    }
    compare_trees(spec, batch, streaming)
}

/// The comparison proper: both bodies parsed into values, normalised and
/// compared.
fn compare_trees(spec: &Spec<'_>, batch: Answer<'_>, streaming: Answer<'_>) -> Report {
    let mut report = Report::default();
    let (Ok(mut b), Ok(mut s)) = (
        serde_json::from_slice::<Value>(batch.body),
        serde_json::from_slice::<Value>(streaming.body),
    ) else {
        if batch.body != streaming.body {
            report.add(body_divergence(
                truncate_bytes(batch.body),
                truncate_bytes(streaming.body),
            ));
        }
        return report;
    };
    let cmp = Comparer { spec };
    let has_records = |v: &Value| matches!(v.pointer(spec.records), Some(Value::Array(_)));
    if !spec.records.is_empty() && !has_records(&b) && !has_records(&s) {
        report.no_records = true;
        return report;
    }
    if !(has_records(&b) && has_records(&s)) {
        if !cmp.equal(&b, &s) {
            report.add(body_divergence(truncate(&b), truncate(&s)));
        }
        return report;
    }
    // Move the record arrays out rather than cloning them.
    let take = |v: &mut Value| match v.pointer_mut(spec.records).map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let (br, sr) = (take(&mut b), take(&mut s));
    report.batch_rows = Some(br.len());
    report.streaming_rows = Some(sr.len());
    match spec.key {
        Some(key) => cmp.keyed(
            key,
            br,
            sr,
            batch.watermark_ms,
            streaming.watermark_ms,
            &mut report,
        ),
        None => {
            let same = br.len() == sr.len() && br.iter().zip(&sr).all(|(x, y)| cmp.equal(x, y));
            if !same {
                report.add(body_divergence(
                    truncate(&Value::Array(br)),
                    truncate(&Value::Array(sr)),
                ));
            }
        }
    }
    report
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
}

impl Comparer<'_, '_> {
    fn ignored(&self, k: &str) -> bool {
        self.spec.ignore.iter().any(|i| i == k)
    }

    /// Equality after normalisation: ignored fields out, numbers within tolerance.
    fn equal(&self, a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let kx = x.iter().filter(|(k, _)| !self.ignored(k));
                let ky = y.iter().filter(|(k, _)| !self.ignored(k));
                // serde_json's Map is ordered by key: walk both in step.
                let mut kx = kx.peekable();
                let mut ky = ky.peekable();
                loop {
                    match (kx.next(), ky.next()) {
                        (None, None) => return true,
                        (Some((ka, va)), Some((kb, vb))) if ka == kb => {
                            if !self.equal(va, vb) {
                                return false;
                            }
                        }
                        _ => return false,
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| self.equal(a, b))
            }
            (Value::Number(x), Value::Number(y)) => {
                if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                    if i == j {
                        return true;
                    }
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
            .filter(|k| !self.ignored(k))
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .find(|k| match (x.get(*k), y.get(*k)) {
                (Some(p), Some(q)) => !self.equal(p, q),
                _ => true,
            })
            .cloned()
    }

    fn event_time(&self, record: &Value) -> Option<i64> {
        let v = record.get(self.spec.event_time?)?;
        match v {
            Value::String(s) => parse_watermark(s.as_bytes()),
            Value::Number(n) => parse_watermark(n.to_string().as_bytes()),
            _ => None,
        }
    }

    /// Whether `record` is newer than `other_watermark`: the other side has
    /// not caught up to it yet, so a difference is expected.
    fn explained_by_timing(&self, record: &Value, other_watermark: Option<i64>) -> bool {
        matches!((self.event_time(record), other_watermark), (Some(t), Some(w)) if t > w)
    }

    fn keyed(
        &self,
        key: &str,
        batch: Vec<Value>,
        streaming: Vec<Value>,
        batch_wm: Option<i64>,
        streaming_wm: Option<i64>,
        report: &mut Report,
    ) {
        let index = |records: Vec<Value>, side: &'static str, report: &mut Report| {
            let mut map: HashMap<String, Value> = HashMap::with_capacity(records.len());
            for r in records {
                let k = match r.get(key) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "null".to_owned(),
                };
                if let Some(first) = map.get(&k) {
                    report.add(Divergence {
                        category: Category::Duplicate,
                        key: Some(k.clone()),
                        field: None,
                        side: Some(side),
                        batch: (side == "batch").then(|| truncate(first)),
                        streaming: (side == "streaming").then(|| truncate(&r)),
                    });
                    continue;
                }
                map.insert(k, r);
            }
            map
        };
        let b = index(batch, "batch", report);
        let mut s = index(streaming, "streaming", report);
        let mut keys: Vec<&String> = b.keys().collect();
        keys.sort();
        for k in keys {
            let br = &b[k];
            match s.remove(k) {
                None => {
                    let category = if self.explained_by_timing(br, streaming_wm) {
                        Category::Timing
                    } else {
                        Category::Missing
                    };
                    report.add(Divergence {
                        category,
                        key: Some(k.clone()),
                        field: None,
                        side: None,
                        batch: Some(truncate(br)),
                        streaming: None,
                    });
                }
                Some(sr) => {
                    if self.equal(br, &sr) {
                        continue;
                    }
                    let category = if self.explained_by_timing(&sr, batch_wm)
                        || self.explained_by_timing(br, streaming_wm)
                    {
                        Category::Timing
                    } else {
                        Category::Aggregate
                    };
                    report.add(Divergence {
                        category,
                        key: Some(k.clone()),
                        field: self.first_difference(br, &sr),
                        side: None,
                        batch: Some(truncate(br)),
                        streaming: Some(truncate(&sr)),
                    });
                }
            }
        }
        let mut extra: Vec<(String, Value)> = s.into_iter().collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, sr) in extra {
            let category = if self.explained_by_timing(&sr, batch_wm) {
                Category::Timing
            } else {
                Category::Extra
            };
            report.add(Divergence {
                category,
                key: Some(k),
                field: None,
                side: None,
                batch: None,
                streaming: Some(truncate(&sr)),
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
        compare(
            spec,
            Answer {
                status: bs,
                body: &bb,
                watermark_ms: bw,
            },
            Answer {
                status: ss,
                body: &sb,
                watermark_ms: sw,
            },
        )
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
        assert_eq!(r.counts, [0; 7]);
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
        let s_upd = json!({"data": [{"id": 1, "ts": 1_700_000_100, "amount": 3}]});
        let r = run_wm(&spec, &b, Some(batch_wm), &s_upd, Some(batch_wm + 600_000));
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
                Answer {
                    status: 200,
                    body: b,
                    watermark_ms: None,
                },
                Answer {
                    status: 200,
                    body: s,
                    watermark_ms: None,
                },
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
            Answer {
                status: 200,
                body: b"{}",
                watermark_ms: None,
            },
            Answer {
                status: 404,
                body: b"{}",
                watermark_ms: None,
            },
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
                    let answer = Answer {
                        status: 200,
                        body: body.as_bytes(),
                        watermark_ms: Some(1),
                    };
                    let Some(fast) = super::super::identical::report(&spec, answer.body) else {
                        // Left to the full comparison: only for repeated keys.
                        assert!(
                            compare_trees(&spec, answer, answer).count(Category::Duplicate) > 0
                        );
                        continue;
                    };
                    shortcut_taken += 1;
                    assert_eq!(
                        fast,
                        compare_trees(&spec, answer, answer),
                        "{body} {records:?} {key:?}"
                    );
                }
            }
        }
        assert!(shortcut_taken > 300, "{shortcut_taken}");
    }
}
