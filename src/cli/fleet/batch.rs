//! What batch itself says, next to what cutover says: readers not behind
//! cutover (batch's own request counter minus every read cutover sent it)
//! and the guide's three decommission steps (from batch's own watermark).
//! Pure functions over answers; `super::board` runs the queries.

use std::collections::BTreeMap;

use serde::Serialize;

use super::query::Series;
use super::verdict::{Since, human_duration};

/// Step 1 must run this long, clean, before step 2 may begin; step 3
/// follows step 2 after as long again (the guide's week each).
pub const STEP_SECONDS: f64 = 7.0 * 86_400.0;

/// How much a consumer's failed-answer ratio may rise during step 1 over
/// its level in the 7 days before: 0.1 percentage point.
pub const FAILED_RATIO_MARGIN: f64 = 0.001;

/// Readers not behind cutover for one dataset over a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnknownReaders {
    /// Batch's served requests minus cutover's batch reads, floored at 0 and
    /// rounded to a whole read; `None` when batch's query matched nothing.
    pub reads: Option<f64>,
    /// What `--batch-requests` answered (summed over its series).
    pub batch_served: Option<f64>,
    /// Every read any cutover sent to batch: served, fallback, comparison, probe.
    pub sent_by_cutover: f64,
    pub window_seconds: f64,
    /// Why `reads` is unknown.
    pub reason: Option<String>,
}

/// Batch's requests minus cutover's, over the same window. `served` is the
/// `--batch-requests` answer; several series are summed.
pub fn unknown_readers(served: &[Series], sent_by_cutover: f64, window: f64) -> UnknownReaders {
    let values: Vec<f64> = served
        .iter()
        .filter_map(Series::value)
        .filter(|v| v.is_finite())
        .collect();
    let batch_served = (!values.is_empty()).then(|| values.iter().fold(0.0, |a, b| a + b));
    // Rounded: increase() extrapolates to the window's edges, so a figure
    // is fractional; what is printed is what is judged.
    let reads = batch_served.map(|b| (b - sent_by_cutover).max(0.0).round());
    UnknownReaders {
        reads,
        batch_served,
        sent_by_cutover,
        window_seconds: window,
        reason: batch_served.is_none().then(|| {
            "--batch-requests matched no series: batch's request counter is not in Prometheus under that query"
                .to_owned()
        }),
    }
}

/// Why readers not behind cutover block a decommission, if they do.
pub fn unknown_readers_block(u: &UnknownReaders, tolerance: f64) -> Option<String> {
    match u.reads {
        None => Some(format!(
            "readers not behind cutover unknown: {}",
            u.reason.as_deref().unwrap_or("no figure")
        )),
        Some(r) if r > tolerance => Some(format!(
            "readers not behind cutover: {r:.0} reads over the last {} (batch served {:.0}, cutover sent it {:.0}; --unknown-tolerance {tolerance:.0})",
            human_duration(u.window_seconds),
            u.batch_served.unwrap_or(0.0),
            u.sent_by_cutover
        )),
        Some(_) => None,
    }
}

/// `$dataset` and `$window` put into a `--batch-requests` or
/// `--batch-watermark` query. The dataset is escaped as inside a PromQL
/// string (the query supplies the quotes); the window is a PromQL duration.
pub fn substitute(query: &str, dataset: &str, window: f64) -> String {
    let escaped = dataset.replace('\\', r"\\").replace('"', "\\\"");
    query
        .replace("$dataset", &escaped)
        .replace("$window", &promql_duration(window))
}

/// `7d`, `5m`, `90s`: the largest whole unit of a window.
pub fn promql_duration(seconds: f64) -> String {
    let s = seconds.round().max(1.0) as u64;
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// Where a dataset is in the guide's three decommission steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Steps {
    /// Whether the steps could be measured (`--batch-watermark` given and answered).
    pub known: bool,
    /// 0: step 1 has not begun; 1: step 1 runs; 2: step 2 may begin.
    pub step: u8,
    /// When batch's watermark last changed (history resolution).
    pub batch_last_changed: Option<f64>,
    /// When step 1 began: the watermark's last change with every consumer
    /// `streaming_only`.
    pub step1_since: Option<Since>,
    pub step1_seconds: Option<f64>,
    /// Whether step 1 has been clean so far; `None` before it begins.
    pub clean: Option<bool>,
    /// Each reason step 1 is not clean.
    pub not_clean: Vec<String>,
    pub step2_may_begin: bool,
    /// Why the steps are unknown, or why step 1 has not begun.
    pub reason: Option<String>,
}

impl Steps {
    pub fn unknown(reason: &str) -> Steps {
        Steps {
            reason: Some(reason.to_owned()),
            ..Steps::default()
        }
    }
}

/// Why the steps are unknown without `--batch-watermark`.
pub const NO_WATERMARK: &str =
    "no --batch-watermark: a streaming_only sidecar never reads batch, so it cannot see batch stop";

/// When step 1 began, from batch's watermark history (`watermark`: its
/// samples, several series merged by their largest value per time) and,
/// per history step, whether every consumer of the dataset was
/// `streaming_only`. `Err` says why step 1 has not begun (or is unknown).
pub fn step1_start(
    watermark: &[Series],
    all_streaming_only: &BTreeMap<i64, bool>,
    history_start: f64,
    step: f64,
) -> Result<(Since, f64), String> {
    let mut at: BTreeMap<i64, f64> = BTreeMap::new();
    for s in watermark {
        for &(t, v) in s.samples.iter().filter(|(_, v)| v.is_finite()) {
            let e = at.entry(t.round() as i64).or_insert(v);
            *e = e.max(v);
        }
    }
    let points: Vec<(i64, f64)> = at.into_iter().collect();
    let Some(&(first_t, _)) = points.first() else {
        return Err("--batch-watermark matched no series in the history".to_owned());
    };
    let last_change = points
        .windows(2)
        .rev()
        .find(|w| w[1].1 != w[0].1)
        .map(|w| w[1].0);
    let so_at = |t: i64| {
        // The mode history's step nearest to t.
        all_streaming_only
            .range(t - (step / 2.0) as i64..=t + (step / 2.0) as i64)
            .next()
            .is_some_and(|(_, &so)| so)
    };
    match last_change {
        Some(t) if so_at(t) => Ok((
            Since {
                at: t as f64,
                at_least: false,
            },
            t as f64,
        )),
        Some(t) => Err(format!(
            "batch still produced at {} (its watermark changed) while not every consumer was streaming_only",
            super::verdict::rfc3339(t as f64)
        )),
        // Unchanged over the whole history: step 1 began before it, if
        // every consumer was streaming_only all along.
        None if points.iter().all(|&(t, _)| so_at(t)) => Ok((
            Since {
                at: first_t as f64,
                at_least: first_t as f64 - history_start < step * 0.5,
            },
            first_t as f64,
        )),
        None => Err(
            "batch's watermark did not change in the history, and not every consumer was streaming_only all along"
                .to_owned(),
        ),
    }
}

/// One consumer's failed-answer ratio (5xx answered to it) during step 1
/// and over the 7 days before.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedAnswers {
    pub consumer: String,
    pub during: Option<f64>,
    pub before: Option<f64>,
}

/// Per consumer: 5xx answers over all answers, from
/// `sum by (consumer, code_class) (increase(cutover_requests_total…))`.
pub fn failed_ratios(answers: &[Series]) -> BTreeMap<String, Option<f64>> {
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for s in answers {
        let v = s.value().filter(|v| v.is_finite()).unwrap_or(0.0);
        let e = sums.entry(s.label("consumer").to_owned()).or_default();
        e.1 += v;
        if s.label("code_class") == "5xx" {
            e.0 += v;
        }
    }
    sums.into_iter()
        .map(|(c, (f, all))| (c, (all > 0.0).then(|| f / all)))
        .collect()
}

/// Whether step 1 is clean, and what is left: `batch_reads_since` names
/// the consumers cutover saw read batch since step 1 began, `unknown` the
/// readers not behind cutover since then (`None`: not measured), `modes`
/// each consumer not `streaming_only` now.
pub fn judge_steps(
    since: Since,
    now: f64,
    batch_reads_since: &[String],
    not_streaming_only: &[String],
    unknown: Option<&UnknownReaders>,
    failed: &[FailedAnswers],
) -> Steps {
    let mut not_clean = Vec::new();
    for c in not_streaming_only {
        not_clean.push(format!("{c} is not streaming_only"));
    }
    for c in batch_reads_since {
        not_clean.push(format!("{c} sent reads to batch"));
    }
    match unknown {
        None => not_clean.push(
            "readers not behind cutover unknown: pass --batch-requests to measure them".to_owned(),
        ),
        Some(u) => match u.reads {
            None => not_clean.push(format!(
                "readers not behind cutover unknown: {}",
                u.reason.as_deref().unwrap_or("no figure")
            )),
            Some(r) if r > 0.0 => {
                not_clean.push(format!("readers not behind cutover: {r:.0} reads"));
            }
            Some(_) => {}
        },
    }
    for f in failed {
        let base = f.before.unwrap_or(0.0);
        if let Some(d) = f.during
            && d > base + FAILED_RATIO_MARGIN
        {
            not_clean.push(format!(
                "{} was answered {:.2} % 5xx, over its {:.2} % of the 7 days before plus 0.1 pp",
                f.consumer,
                d * 100.0,
                base * 100.0
            ));
        }
    }
    let ran = (now - since.at).max(0.0);
    let clean = not_clean.is_empty();
    let step2 = clean && ran >= STEP_SECONDS;
    Steps {
        known: true,
        step: if step2 { 2 } else { 1 },
        batch_last_changed: Some(since.at),
        step1_since: Some(since),
        step1_seconds: Some(ran),
        clean: Some(clean),
        not_clean,
        step2_may_begin: step2,
        reason: None,
    }
}

/// The steps as the board prints them, one line each after the first.
pub fn steps_text(s: &Steps) -> Vec<String> {
    let Some(since) = s.step1_since.filter(|_| s.known) else {
        let why = s.reason.as_deref().unwrap_or("unknown");
        return vec![if s.known {
            format!("decommission steps: step 1 (batch stopped producing) not begun: {why}")
        } else {
            format!("decommission steps: unknown ({why})")
        }];
    };
    let ran = s.step1_seconds.unwrap_or(0.0);
    let date = super::verdict::rfc3339(since.at);
    let date = date.split('T').next().unwrap_or(&date);
    let at_least = if since.at_least { "at least " } else { "" };
    let mut out = Vec::new();
    if s.clean == Some(true) {
        out.push(format!(
            "decommission steps: step 1 since {at_least}{date}, {} of 7d clean",
            days(ran)
        ));
    } else {
        out.push(format!(
            "decommission steps: step 1 since {at_least}{date} ({}), not clean:",
            days(ran)
        ));
        out.extend(s.not_clean.iter().map(|w| format!("  - {w}")));
    }
    if s.step2_may_begin {
        out.push(
            "step 2 (archive batch's outputs) may begin; step 3 (remove batch's code) follows 7 days after step 2"
                .to_owned(),
        );
    } else {
        out.push(
            "step 2 (archive batch's outputs) after 7 clean days of step 1; step 3 (remove batch's code) 7 days after step 2"
                .to_owned(),
        );
    }
    out
}

/// Whole days, as the steps count them (`3d`), or the time under one day.
fn days(seconds: f64) -> String {
    if seconds >= 86_400.0 {
        format!("{}d", (seconds / 86_400.0).floor() as u64)
    } else {
        human_duration(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_000.0;
    const DAY: f64 = 86_400.0;
    const H: f64 = 3600.0;

    fn one(v: f64) -> Series {
        Series {
            labels: BTreeMap::new(),
            samples: vec![(NOW, v)],
        }
    }

    #[test]
    fn unknown_readers_are_batch_minus_cutover_floored_and_rounded() {
        let u = unknown_readers(&[one(130.4)], 100.0, 300.0);
        assert_eq!(u.reads, Some(30.0));
        let u = unknown_readers(&[one(98.0)], 100.0, 300.0);
        assert_eq!(u.reads, Some(0.0), "floored at 0");
        let u = unknown_readers(&[one(40.0), one(20.0)], 0.0, 300.0);
        assert_eq!(u.reads, Some(60.0), "series summed");
        let none = unknown_readers(&[], 5.0, 300.0);
        assert_eq!(none.reads, None);
        assert!(unknown_readers_block(&none, 0.0).is_some());
        assert_eq!(unknown_readers_block(&u, 60.0), None);
        let why = unknown_readers_block(&u, 0.0).expect("blocks");
        assert!(
            why.starts_with("readers not behind cutover: 60 reads over the last 5m"),
            "{why}"
        );
    }

    #[test]
    fn substitution_escapes_the_dataset_and_writes_a_promql_duration() {
        let q = r#"sum(increase(x{table="$dataset"}[$window]))"#;
        assert_eq!(
            substitute(q, "orders", 7.0 * DAY),
            r#"sum(increase(x{table="orders"}[7d]))"#
        );
        assert_eq!(substitute("$dataset", r#"a"b"#, 90.0), r#"a\"b"#);
        assert_eq!(promql_duration(90.0), "90s");
        assert_eq!(promql_duration(300.0), "5m");
        assert_eq!(promql_duration(7200.0), "2h");
    }

    fn hourly(from: f64, to: f64, f: impl Fn(f64) -> f64) -> Series {
        let mut samples = Vec::new();
        let mut t = from;
        while t <= to {
            samples.push((t, f(t)));
            t += H;
        }
        Series {
            labels: BTreeMap::new(),
            samples,
        }
    }

    fn so(from: f64, to: f64, streaming_only_from: f64) -> BTreeMap<i64, bool> {
        let mut m = BTreeMap::new();
        let mut t = from;
        while t <= to {
            m.insert(t as i64, t >= streaming_only_from);
            t += H;
        }
        m
    }

    #[test]
    fn step_1_begins_at_the_watermarks_last_change_with_every_consumer_streaming_only() {
        let start = NOW - 30.0 * DAY;
        let stopped = NOW - 3.0 * DAY;
        // The watermark is batch's last output time: it moves every hour
        // until batch stops.
        let wm = hourly(start, NOW, |t| t.min(stopped));
        let modes = so(start, NOW, NOW - 8.0 * DAY);
        let (since, _) = step1_start(std::slice::from_ref(&wm), &modes, start, H).expect("begun");
        assert_eq!(since.at, stopped);
        assert!(!since.at_least);
        // Batch stopped while a consumer still read it: not begun.
        let late = so(start, NOW, NOW - 2.0 * DAY);
        let why = step1_start(&[wm], &late, start, H).expect_err("not begun");
        assert!(
            why.contains("while not every consumer was streaming_only"),
            "{why}"
        );
        // No sample at all.
        assert!(step1_start(&[], &modes, start, H).is_err());
        // Unchanged for the whole history, everyone streaming_only: at least.
        let flat = hourly(start, NOW, |_| 5.0);
        let all = so(start, NOW, start);
        let (since, _) = step1_start(&[flat], &all, start, H).expect("begun");
        assert!(since.at_least);
    }

    #[test]
    fn step_1_is_clean_then_step_2_may_begin_after_seven_days() {
        let zero = unknown_readers(&[one(0.0)], 0.0, 3.0 * DAY);
        let since = |d: f64| Since {
            at: NOW - d * DAY,
            at_least: false,
        };
        let ok = [FailedAnswers {
            consumer: "dash".into(),
            during: Some(0.0015),
            before: Some(0.001),
        }];
        let s = judge_steps(since(3.0), NOW, &[], &[], Some(&zero), &ok);
        assert_eq!((s.step, s.clean, s.step2_may_begin), (1, Some(true), false));
        let text = steps_text(&s);
        assert!(text[0].ends_with(", 3d of 7d clean"), "{text:?}");
        let s = judge_steps(since(10.0), NOW, &[], &[], Some(&zero), &ok);
        assert_eq!(s.step, 2);
        assert!(steps_text(&s)[1].starts_with("step 2 (archive batch's outputs) may begin"));
        // Each way step 1 is not clean.
        let worse = [FailedAnswers {
            consumer: "ops".into(),
            during: Some(0.0025),
            before: Some(0.001),
        }];
        let hidden = unknown_readers(&[one(4.0)], 0.0, 10.0 * DAY);
        let s = judge_steps(
            since(10.0),
            NOW,
            &["fraud".into()],
            &["dash".into()],
            Some(&hidden),
            &worse,
        );
        assert_eq!((s.step, s.clean), (1, Some(false)));
        assert_eq!(s.not_clean.len(), 4, "{:?}", s.not_clean);
        let s = judge_steps(since(10.0), NOW, &[], &[], None, &[]);
        assert_eq!(s.clean, Some(false), "unmeasured readers are not clean");
        assert_eq!(
            steps_text(&Steps::unknown(NO_WATERMARK))[0],
            format!("decommission steps: unknown ({NO_WATERMARK})")
        );
    }

    #[test]
    fn failed_ratios_are_5xx_over_every_answer() {
        let s = |c: &str, class: &str, v: f64| Series {
            labels: [("consumer", c), ("code_class", class)]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            samples: vec![(NOW, v)],
        };
        let r = failed_ratios(&[s("a", "2xx", 99.0), s("a", "5xx", 1.0), s("b", "2xx", 0.0)]);
        assert_eq!(r["a"], Some(0.01));
        assert_eq!(r["b"], None);
    }
}
