//! `cutover fleet --html FILE`: the board as one self-contained page (inline
//! CSS and SVG; no script, no external style or image), a section per
//! dataset: the board's table and verdicts exactly as the text board words
//! them, a timeline of each consumer's mode over the history with the
//! guide's phases as bands and gate trips and fallbacks marked, each
//! consumer's divergence over time, and the decommission steps.
//!
//! Pure: the histories arrive as Prometheus answered them (`History`), so
//! the page is tested without a network.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::query::Series;
use super::render::{self, HEADINGS, NUMERIC};
use super::verdict::{human_duration, mode_reads_streaming, rfc3339};
use super::{Board, DatasetBoard};

/// What the page draws beyond the board: range-query answers at `step`.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub start: f64,
    pub end: f64,
    pub step: f64,
    /// Effective modes (`consumer`, `dataset`, `mode`; 1 while in it).
    pub modes: Vec<Series>,
    /// Diverged over compared per step (`consumer`, `dataset`).
    pub divergence: Vec<Series>,
    /// Steps with a gate trip (`consumer`, `dataset`).
    pub gate_trips: Vec<Series>,
    /// Steps with a fallback (`consumer`, `dataset`).
    pub fallbacks: Vec<Series>,
}

/// The modes in the order a migration moves through them; a consumer with
/// routes in several is drawn in the earliest (what still reads batch).
const MODES: [&str; 5] = ["batch", "shadow", "canary", "streaming", "streaming_only"];
const MODE_COLOURS: [&str; 5] = ["#8c8c8c", "#4e79a7", "#f2b447", "#59a14f", "#1b7837"];
/// One colour per consumer in the divergence chart, in board order.
const LINE_COLOURS: [&str; 6] = [
    "#4e79a7", "#e15759", "#59a14f", "#b07aa1", "#f28e2b", "#76b7b2",
];
/// The guide's tolerance for leaving shadow, drawn on the divergence chart.
const TOLERANCE: f64 = 0.001;

/// The guide's phases, as a dataset's consumers' modes at one time place it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Band {
    /// Nobody moved, somebody compares: phase 1.
    Shadow,
    /// One consumer reads streaming: phase 2.
    ReadMigration,
    /// Several do, not every one `streaming_only`: phase 3.
    ConsumerMigration,
    /// Every consumer `streaming_only`: phase 4.
    Decommission,
}

impl Band {
    fn label(self) -> &'static str {
        match self {
            Band::Shadow => "phase 1: shadow",
            Band::ReadMigration => "phase 2: read migration",
            Band::ConsumerMigration => "phase 3: consumer migration",
            Band::Decommission => "phase 4: decommission",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Band::Shadow => "#e8eef6",
            Band::ReadMigration => "#fdf3dc",
            Band::ConsumerMigration => "#e6f2e3",
            Band::Decommission => "#d5ead6",
        }
    }

    /// The phase of a dataset at one time from each consumer's drawn mode;
    /// `None` while every consumer is on plain `batch`.
    fn of(modes: &[&str]) -> Option<Band> {
        if !modes.is_empty() && modes.iter().all(|m| *m == "streaming_only") {
            return Some(Band::Decommission);
        }
        match modes.iter().filter(|m| mode_reads_streaming(m)).count() {
            0 if modes.contains(&"shadow") => Some(Band::Shadow),
            0 => None,
            1 => Some(Band::ReadMigration),
            _ => Some(Band::ConsumerMigration),
        }
    }
}

/// `&`, `<`, `>` and quotes made safe inside HTML text and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}\
h1{font-size:20px}h2{font-size:17px;margin-top:36px;border-bottom:1px solid #ccc}\
h3{font-size:14px;margin:18px 0 6px}\
table{border-collapse:collapse;font-size:12px}th,td{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
pre{background:#f6f6f6;padding:8px 10px;font-size:12px;white-space:pre-wrap}\
svg text{font:11px system-ui,sans-serif;fill:#333}\
.legend span{display:inline-block;margin-right:14px;font-size:12px}\
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}\
ol.steps{display:flex;gap:8px;list-style:none;padding:0}\
ol.steps li{flex:1;border:1px solid #ccc;border-radius:4px;padding:6px 8px;font-size:12px}\
ol.steps li.done{background:#d5ead6}ol.steps li.now{background:#fdf3dc}ol.steps li.later{background:#f6f6f6}";

/// The page for `board` and its `history`.
pub fn page(board: &Board, history: &History) -> String {
    let mut out = String::new();
    let title = format!("cutover fleet at {}", rfc3339(board.evaluated_at));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n<p>Window {w} for the table's figures; the timeline and divergence cover {h} to the {s}.</p>\n",
        t = esc(&title),
        w = human_duration(board.window_seconds),
        h = human_duration(history.end - history.start),
        s = human_duration(history.step),
    );
    if board.datasets.is_empty() {
        out.push_str("<p>No consumer known through cutover (no cutover_route_mode series).</p>\n");
    }
    out.push_str(&legend());
    for d in &board.datasets {
        dataset(&mut out, board, d, history);
    }
    out.push_str("</body></html>\n");
    out
}

fn legend() -> String {
    let mut out = String::from("<p class=\"legend\">");
    for (m, c) in MODES.iter().zip(MODE_COLOURS) {
        let _ = write!(out, "<span><i style=\"background:{c}\"></i>{m}</span>");
    }
    out.push_str(
        "<span><svg width=\"12\" height=\"12\"><path d=\"M1 1h10l-5 9z\" fill=\"#d62728\"/></svg> gate trip</span>\
         <span><svg width=\"12\" height=\"12\"><rect x=\"5\" y=\"0\" width=\"2\" height=\"12\" fill=\"#ff7f0e\"/></svg> fallback</span></p>\n",
    );
    out
}

fn dataset(out: &mut String, board: &Board, d: &DatasetBoard, history: &History) {
    let name = esc(&d.dataset);
    let _ = write!(
        out,
        "<section class=\"dataset\" id=\"dataset-{name}\">\n<h2>dataset {name}</h2>\n<table><tr>"
    );
    for h in HEADINGS {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    for (c, row) in
        d.consumers
            .iter()
            .zip(render::rows_of(d, board.evaluated_at, board.window_seconds))
    {
        let _ = write!(out, "<tr data-consumer=\"{}\">", esc(&c.consumer));
        for (cell, numeric) in row.iter().zip(NUMERIC) {
            let class = if numeric { " class=\"num\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", esc(cell));
        }
        out.push_str("</tr>\n");
    }
    let _ = write!(
        out,
        "</table>\n<pre class=\"verdicts\">{}</pre>\n",
        esc(&render::verdict_lines(d))
    );
    let consumers: Vec<&str> = d.consumers.iter().map(|c| c.consumer.as_str()).collect();
    let of = |all: &[Series]| -> BTreeMap<String, Vec<(f64, f64)>> {
        let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in all.iter().filter(|s| s.label("dataset") == d.dataset) {
            by.entry(s.label("consumer").to_owned())
                .or_default()
                .extend(s.samples.iter().copied());
        }
        by
    };
    let modes = drawn_modes(&history.modes, &d.dataset, history.step);
    out.push_str("<h3>mode timeline</h3>\n");
    out.push_str(&timeline(
        &consumers,
        &modes,
        &of(&history.gate_trips),
        &of(&history.fallbacks),
        history,
    ));
    out.push_str("<h3>divergence (diverged share of compared reads, per step)</h3>\n");
    out.push_str(&divergence(&consumers, &of(&history.divergence), history));
    out.push_str("<h3>decommission steps</h3>\n");
    out.push_str(&steps(d));
    out.push_str("</section>\n");
}

/// Per consumer, per step (rounded to whole seconds): the mode drawn (the
/// earliest of its routes' modes in `MODES`) and every mode it had.
type Drawn = BTreeMap<String, BTreeMap<i64, (usize, BTreeSet<&'static str>)>>;

fn drawn_modes(modes: &[Series], dataset: &str, step: f64) -> Drawn {
    let mut out: Drawn = BTreeMap::new();
    for s in modes.iter().filter(|s| s.label("dataset") == dataset) {
        let Some(i) = MODES.iter().position(|m| *m == s.label("mode")) else {
            continue;
        };
        let at = out.entry(s.label("consumer").to_owned()).or_default();
        for &(t, _) in s.samples.iter().filter(|(_, v)| *v == 1.0) {
            let e = at.entry(slot(t, step)).or_insert((i, BTreeSet::new()));
            e.0 = e.0.min(i);
            e.1.insert(MODES[i]);
        }
    }
    out
}

fn slot(t: f64, step: f64) -> i64 {
    (t / step).round() as i64
}

/// The geometry every chart of a dataset shares: the history on the x axis.
struct Axis {
    start: f64,
    end: f64,
}

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 12.0;

impl Axis {
    fn new(h: &History) -> Axis {
        Axis {
            start: h.start,
            end: h.end.max(h.start + 1.0),
        }
    }

    fn x(&self, t: f64) -> f64 {
        let t = t.clamp(self.start, self.end);
        LEFT + (t - self.start) / (self.end - self.start) * (WIDTH - LEFT - RIGHT)
    }

    /// Tick times and labels: dates for a history of days, else times.
    fn ticks(&self) -> Vec<(f64, String)> {
        let span = self.end - self.start;
        let every = [
            3600.0,
            6.0 * 3600.0,
            86_400.0,
            2.0 * 86_400.0,
            7.0 * 86_400.0,
        ]
        .into_iter()
        .find(|e| span / e <= 12.0)
        .unwrap_or(30.0 * 86_400.0);
        let mut t = (self.start / every).ceil() * every;
        let mut out = Vec::new();
        while t <= self.end {
            let stamp = rfc3339(t);
            let label = if every >= 86_400.0 {
                stamp.get(5..10).unwrap_or(&stamp).to_owned()
            } else {
                stamp.get(11..16).unwrap_or(&stamp).to_owned()
            };
            out.push((t, label));
            t += every;
        }
        out
    }

    fn grid(&self, out: &mut String, top: f64, bottom: f64) {
        for (t, label) in self.ticks() {
            let x = self.x(t);
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                bottom + 13.0,
                esc(&label)
            );
        }
    }
}

const ROW: f64 = 22.0;
const BAND: f64 = 18.0;

fn timeline(
    consumers: &[&str],
    modes: &Drawn,
    trips: &BTreeMap<String, Vec<(f64, f64)>>,
    fallbacks: &BTreeMap<String, Vec<(f64, f64)>>,
    h: &History,
) -> String {
    let axis = Axis::new(h);
    let rows_top = BAND + 4.0;
    let bottom = rows_top + ROW * consumers.len() as f64;
    let mut out = format!(
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{:.0}\" viewBox=\"0 0 {WIDTH} {:.0}\">",
        bottom + 18.0,
        bottom + 18.0
    );
    // The phase bands, behind everything.
    let slots: BTreeSet<i64> = modes.values().flat_map(|m| m.keys().copied()).collect();
    let bands = slot_runs(slots.iter().filter_map(|&s| {
        let drawn: Vec<&str> = modes
            .values()
            .filter_map(|m| m.get(&s).map(|(i, _)| MODES[*i]))
            .collect();
        Band::of(&drawn).map(|band| (s, band))
    }));
    for (band, from, to) in &bands {
        let (x0, x1) = (
            axis.x(*from as f64 * h.step),
            axis.x((*to + 1) as f64 * h.step),
        );
        let _ = write!(
            out,
            "<g class=\"band\"><title>{l}: {a} to {b}</title><rect x=\"{x0:.1}\" y=\"0\" width=\"{w:.1}\" height=\"{bottom:.1}\" fill=\"{c}\"/>",
            l = band.label(),
            a = rfc3339(*from as f64 * h.step),
            b = rfc3339((*to + 1) as f64 * h.step),
            w = (x1 - x0).max(0.5),
            c = band.colour(),
        );
        // The whole label where it fits, else "phase N", else none.
        let label = band.label();
        let short = label.split(':').next().unwrap_or(label);
        if let Some(text) = [label, short]
            .into_iter()
            .find(|t| x1 - x0 > 6.5 * t.len() as f64 + 8.0)
        {
            let _ = write!(out, "<text x=\"{:.1}\" y=\"13\">{text}</text>", x0 + 4.0);
        }
        out.push_str("</g>");
    }
    axis.grid(&mut out, 0.0, bottom);
    for (row, consumer) in consumers.iter().enumerate() {
        let y = rows_top + ROW * row as f64;
        let _ = write!(
            out,
            "<g class=\"consumer\" data-consumer=\"{c}\"><text x=\"4\" y=\"{:.1}\">{c}</text>",
            y + 14.0,
            c = esc(consumer)
        );
        let segments = slot_runs(
            modes
                .get(*consumer)
                .into_iter()
                .flatten()
                .map(|(&s, (i, all))| (s, (*i, all.iter().copied().collect::<Vec<_>>().join("+")))),
        );
        for ((i, label), from, to) in &segments {
            let (x0, x1) = (
                axis.x(*from as f64 * h.step),
                axis.x((*to + 1) as f64 * h.step),
            );
            let _ = write!(
                out,
                "<rect class=\"mode\" data-mode=\"{label}\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{c}: {label} from {} to {}</title></rect>",
                y + 3.0,
                (x1 - x0).max(0.5),
                ROW - 6.0,
                MODE_COLOURS[*i],
                rfc3339(*from as f64 * h.step),
                rfc3339((*to + 1) as f64 * h.step),
                c = esc(consumer),
            );
        }
        // A marker per run of steps with trips (or fallbacks): the steps
        // are an hour each, so a run is one event as a person reads it.
        for (from, to) in runs(trips.get(*consumer), h.step) {
            let x = axis.x(from);
            let _ = write!(
                out,
                "<path class=\"gate-trip\" d=\"M{:.1} {:.1}h10l-5 9z\" fill=\"#d62728\"><title>{}: gate trips from {} to {}</title></path>",
                x - 5.0,
                y,
                esc(consumer),
                rfc3339(from - h.step),
                rfc3339(to)
            );
        }
        for (from, to) in runs(fallbacks.get(*consumer), h.step) {
            let (x0, x1) = (axis.x(from - h.step), axis.x(to));
            let _ = write!(
                out,
                "<rect class=\"fallback\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"4\" fill=\"#ff7f0e\"><title>{}: fallbacks from {} to {}</title></rect>",
                y + ROW - 4.0,
                (x1 - x0).max(2.0),
                esc(consumer),
                rfc3339(from - h.step),
                rfc3339(to)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>\n");
    out
}

/// Consecutive sample times (each ending a step) merged into runs: the
/// first and last time of each.
fn runs(points: Option<&Vec<(f64, f64)>>, step: f64) -> Vec<(f64, f64)> {
    time_runs(points.into_iter().flatten().copied().collect(), step)
        .iter()
        .filter_map(|run| Some((run.first()?.0, run.last()?.0)))
        .collect()
}

/// Samples `(time, value)` sorted by time and cut where a step is missing:
/// each run's samples are at most one step (and a half, for the range
/// query's jitter) apart.
fn time_runs(mut points: Vec<(f64, f64)>, step: f64) -> Vec<Vec<(f64, f64)>> {
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    for p in points {
        match out.last_mut() {
            Some(run) if run.last().is_some_and(|l| p.0 - l.0 <= step * 1.5) => run.push(p),
            _ => out.push(vec![p]),
        }
    }
    out
}

/// Consecutive history slots with equal values merged: `(value, first
/// slot, last slot)` for `(slot, value)` in slot order.
fn slot_runs<K: PartialEq>(items: impl IntoIterator<Item = (i64, K)>) -> Vec<(K, i64, i64)> {
    let mut out: Vec<(K, i64, i64)> = Vec::new();
    for (s, k) in items {
        match out.last_mut() {
            Some((v, _, end)) if *v == k && *end + 1 == s => *end = s,
            _ => out.push((k, s, s)),
        }
    }
    out
}

const CHART: f64 = 120.0;

fn divergence(
    consumers: &[&str],
    ratios: &BTreeMap<String, Vec<(f64, f64)>>,
    h: &History,
) -> String {
    let axis = Axis::new(h);
    let finite = |v: &f64| v.is_finite();
    let top = ratios
        .values()
        .flatten()
        .map(|(_, v)| *v)
        .filter(finite)
        .fold(TOLERANCE * 2.0, f64::max);
    let y = |v: f64| 8.0 + CHART * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut out = format!(
        "<svg class=\"divergence\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{:.0}\" viewBox=\"0 0 {WIDTH} {:.0}\">",
        CHART + 28.0,
        CHART + 28.0
    );
    axis.grid(&mut out, 8.0, 8.0 + CHART);
    for v in [0.0, TOLERANCE, top] {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.3} %</text>",
            LEFT - 6.0,
            y(v) + 4.0,
            v * 100.0
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{t:.1}\" x2=\"{:.1}\" y2=\"{t:.1}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"><title>the guide's tolerance: 0.1 %</title></line>",
        WIDTH - RIGHT,
        t = y(TOLERANCE)
    );
    let mut drawn = 0;
    for (i, consumer) in consumers.iter().enumerate() {
        let colour = LINE_COLOURS[i % LINE_COLOURS.len()];
        let Some(points) = ratios.get(*consumer) else {
            continue;
        };
        // One polyline per run of consecutive steps: a gap (nothing
        // compared) is not drawn as a line through it.
        let finite = points.iter().copied().filter(|(_, v)| v.is_finite());
        let lines = time_runs(finite.collect(), h.step);
        let _ = write!(
            out,
            "<g class=\"consumer\" data-consumer=\"{c}\"><title>{c}</title>",
            c = esc(consumer)
        );
        for line in lines {
            let pts: Vec<String> = line
                .iter()
                .map(|&(t, v)| format!("{:.1},{:.1}", axis.x(t), y(v)))
                .collect();
            let _ = write!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>",
                pts.join(" ")
            );
            drawn += 1;
        }
        out.push_str("</g>");
    }
    if drawn == 0 {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">no comparisons in the history</text>",
            LEFT + 12.0,
            8.0 + CHART / 2.0
        );
    }
    out.push_str("</svg>\n<p class=\"legend\">");
    for (i, consumer) in consumers.iter().enumerate() {
        let _ = write!(
            out,
            "<span><i style=\"background:{}\"></i>{}</span>",
            LINE_COLOURS[i % LINE_COLOURS.len()],
            esc(consumer)
        );
    }
    out.push_str("</p>\n");
    out
}

/// The three steps as three boxes (done, under way, later), then the
/// board's own words for them.
fn steps(d: &DatasetBoard) -> String {
    let s = &d.decommission_steps;
    let (one, two) = match (s.known, s.step) {
        (false, _) => ("later", "later"),
        (true, 0) => ("later", "later"),
        (true, 1) => ("now", "later"),
        _ => ("done", "now"),
    };
    let step1 = match (s.step1_seconds, s.clean) {
        (Some(ran), Some(true)) => format!("running {}, clean", human_duration(ran)),
        (Some(ran), _) => format!("running {}, not clean", human_duration(ran)),
        _ if !s.known => "unknown".to_owned(),
        _ => "not begun".to_owned(),
    };
    let step2 = if s.step2_may_begin {
        "may begin".to_owned()
    } else {
        "after 7 clean days of step 1".to_owned()
    };
    let mut out = format!(
        "<ol class=\"steps\"><li class=\"{one}\"><b>1. batch stopped producing</b><br>{}</li>\
         <li class=\"{two}\"><b>2. archive batch's outputs</b><br>{}</li>\
         <li class=\"later\"><b>3. remove batch's code</b><br>7 days after step 2</li></ol>\n",
        esc(&step1),
        esc(&step2)
    );
    let _ = writeln!(
        out,
        "<pre class=\"steps-text\">{}</pre>",
        esc(&super::batch::steps_text(s).join("\n"))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::fleet::batch::Steps;
    use crate::cli::fleet::verdict::{ConsumerFigures, next_to_move, shadow_verdict};

    const H: f64 = 3600.0;
    const START: f64 = 1_800_000_000.0;

    fn series(labels: &[(&str, &str)], samples: Vec<(f64, f64)>) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            samples,
        }
    }

    /// `consumer` in `mode` for steps `from..to` of dataset `orders`.
    fn mode(consumer: &str, mode: &str, from: u32, to: u32) -> Series {
        series(
            &[
                ("consumer", consumer),
                ("dataset", "orders"),
                ("mode", mode),
            ],
            (from..to)
                .map(|i| (START + f64::from(i) * H, 1.0))
                .collect(),
        )
    }

    fn board(consumers: &[&str]) -> Board {
        let now = START + 40.0 * H;
        let consumers: Vec<ConsumerFigures> = consumers
            .iter()
            .map(|c| ConsumerFigures {
                consumer: (*c).to_owned(),
                dataset: "orders".to_owned(),
                modes: vec!["streaming_only".to_owned()],
                ..Default::default()
            })
            .collect();
        let all: Vec<&ConsumerFigures> = consumers.iter().collect();
        let shadow = shadow_verdict(&all, 3600.0, now);
        let next = next_to_move(&all, &shadow, now);
        Board {
            evaluated_at: now,
            window_seconds: 3600.0,
            history_step_seconds: H,
            datasets: vec![DatasetBoard {
                dataset: "orders".to_owned(),
                consumers,
                shadow,
                next_to_move: next,
                risk_order_violations: Vec::new(),
                unknown_readers: None,
                decommission_steps: Steps::unknown("no --batch-watermark"),
            }],
        }
    }

    fn history() -> History {
        History {
            start: START,
            end: START + 40.0 * H,
            step: H,
            modes: vec![
                mode("dash", "shadow", 0, 10),
                mode("dash", "streaming", 10, 30),
                mode("dash", "streaming_only", 30, 41),
                mode("ops", "shadow", 0, 20),
                mode("ops", "canary", 20, 30),
                mode("ops", "streaming_only", 30, 41),
            ],
            divergence: vec![series(
                &[("consumer", "dash"), ("dataset", "orders")],
                vec![(START + 2.0 * H, 0.0005), (START + 3.0 * H, 0.004)],
            )],
            gate_trips: vec![series(
                &[("consumer", "ops"), ("dataset", "orders")],
                vec![(START + 25.0 * H, 1.0)],
            )],
            fallbacks: vec![series(
                &[("consumer", "dash"), ("dataset", "orders")],
                [21.0, 22.0, 23.0, 27.0]
                    .map(|i| (START + i * H, 1.0))
                    .to_vec(),
            )],
        }
    }

    #[test]
    fn the_timeline_draws_each_run_of_a_mode_once_inside_the_guides_phases() {
        let html = page(&board(&["dash", "ops"]), &history());
        // One rectangle per run, per consumer: dash 3, ops 3.
        assert_eq!(html.matches("<rect class=\"mode\"").count(), 6, "{html}");
        for want in [
            "<title>dash: shadow from 2027-01-15T08:00:00Z to 2027-01-15T18:00:00Z</title>",
            "<title>ops: canary from 2027-01-16T04:00:00Z to 2027-01-16T14:00:00Z</title>",
        ] {
            assert!(html.contains(want), "{want} missing");
        }
        // Phases in order: shadow (0-10), read migration (10-20), consumer
        // migration (20-30), decommission (30-41).
        let bands: Vec<&str> = html
            .match_indices("<g class=\"band\"><title>")
            .map(|(i, _)| {
                let rest = &html[i + 23..];
                &rest[..rest.find(':').unwrap_or(0)]
            })
            .collect();
        assert_eq!(bands, ["phase 1", "phase 2", "phase 3", "phase 4"]);
        assert_eq!(html.matches("class=\"gate-trip\"").count(), 1);
        // Three fallback steps in a row are one mark, a fourth apart another.
        assert_eq!(html.matches("class=\"fallback\"").count(), 2);
        assert!(html.contains(
            "<title>dash: fallbacks from 2027-01-16T04:00:00Z to 2027-01-16T07:00:00Z</title>"
        ));
        // dash's two compared steps are one line; ops compared nothing.
        assert_eq!(html.matches("<polyline").count(), 1);
        assert!(!html.contains("no comparisons in the history"));
    }

    #[test]
    fn names_are_escaped_and_nothing_is_fetched() {
        let mut h = history();
        h.modes.push(mode("<script>x</script>", "batch", 0, 3));
        let html = page(&board(&["dash", "<script>x</script>"]), &h);
        assert!(!html.contains("<script"), "an unescaped name");
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        // Self-contained: no external style, script or image.
        for banned in ["<link", "src=", "@import", "url("] {
            assert!(!html.contains(banned), "{banned} in the page");
        }
    }

    #[test]
    fn a_gap_in_the_comparisons_breaks_the_line() {
        let mut h = history();
        h.divergence[0].samples.push((START + 9.0 * H, 0.0));
        let html = page(&board(&["dash", "ops"]), &h);
        assert_eq!(html.matches("<polyline").count(), 2);
    }
}
