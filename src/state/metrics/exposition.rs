//! The per-route families as Prometheus text, written straight from the
//! routes' atomics into one buffer sized from the last scrape.
//!
//! What is shown is what carries information (docs/metrics.md, "What a
//! route costs"): every gauge, NaN included (unknown is not a reassuring
//! 0), but `cutover_route_mode` only for the modes the route has been in
//! (the effective one at 1, those it left at 0, so the last value of a mode
//! left is 0 rather than a 1 that stopped); a counter from its first count, and before it only
//! where a first event must be seen by `increase()` (a series born at 1
//! reads as no increase): the reads of the sides the mode serves from, the
//! fallbacks of a mode that falls back, the comparisons of a mode that
//! compares; a histogram from its first observation.

use std::fmt::Write as _;
use std::sync::Arc;

use super::cells::{Counter, Gauge, Histogram, LATENCY_BUCKETS};
use super::{
    CIRCUIT_OPEN, CIRCUIT_OPENS_TOTAL, CODE_CLASSES, CONTRACT_CHECKS_TOTAL, CONTRACT_RESULTS,
    CONTRACT_VIOLATIONS_TOTAL, DATA_AGE_SECONDS, DATA_WATERMARK_TIMESTAMP_SECONDS,
    DIVERGENCE_RATIO, ERROR_RATIO, ERROR_RATIO_DELTA, FALLBACKS_TOTAL, FRESHNESS_DELTA_SECONDS,
    GATE_CHECKS_TOTAL, GATE_TRIPPED, GATE_TRIPS_TOTAL, Kind, METRICS, RECONCILE_DIVERGENCES_TOTAL,
    RECONCILE_SKIPPED_TOTAL, RECONCILE_TOTAL, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, ROUTE_MODE,
    Registered, RouteCells, SEQUENCE_PINNED_READS_TOTAL, SEQUENCE_PINS, SEQUENCE_REFUSED_TOTAL,
    UPSTREAM_DURATION_SECONDS, UPSTREAM_REQUESTS_TOTAL,
};
use crate::config::{FallbackReason, Mode, Rule, SideName};
use crate::decide::fallback::AttemptOutcome;
use crate::decide::reconcile::outcome::{Skip, Verdict};
use crate::decide::reconcile::report::Category;
use crate::state::gate::{Check, CheckVerdict};

/// The route's effective mode: the `cutover_route_mode` gauge at 1.
fn mode(c: &RouteCells) -> Option<Mode> {
    Mode::ALL
        .into_iter()
        .zip(&c.route_mode)
        .find(|(_, g)| g.get() == 1.0)
        .map(|(m, _)| m)
}

fn serves(mode: Option<Mode>, side: SideName) -> bool {
    !matches!(
        (mode, side),
        (None, _)
            | (Some(Mode::StreamingOnly), SideName::Batch)
            | (Some(Mode::Batch | Mode::Shadow), SideName::Streaming)
    )
}

fn falls_back(mode: Option<Mode>) -> bool {
    matches!(mode, Some(Mode::Canary | Mode::Streaming))
}

fn compares(mode: Option<Mode>) -> bool {
    matches!(mode, Some(Mode::Shadow | Mode::Canary | Mode::Streaming))
}

/// The per-route families, in the order a scrape writes them.
pub const FAMILIES: usize = 25;

/// Writes family `f` (0..FAMILIES) for `routes`; its `# HELP` and `# TYPE`
/// first when `header` (a scrape written in chunks writes a family's
/// routes in several calls, the header with the first).
pub fn write_family(out: &mut String, f: usize, routes: &[Arc<Registered>], header: bool) {
    let sides = SideName::BOTH;
    let w = &mut Writer { out, header };
    match f {
        0 => {
            w.family(REQUESTS_TOTAL);
            for r in routes {
                let m = mode(&r.cells);
                for side in sides {
                    for (class, c) in CODE_CLASSES.iter().zip(&r.cells.requests[side.index()]) {
                        let keep = *class == "2xx" && serves(m, side);
                        w.counter(
                            REQUESTS_TOTAL,
                            &r.labels,
                            &[("side", side.as_str()), ("code_class", class)],
                            c,
                            keep,
                        );
                    }
                }
            }
        }
        1 => w.histogram_family(REQUEST_DURATION_SECONDS, routes, |c| &c.request_duration),
        2 => {
            w.family(UPSTREAM_REQUESTS_TOTAL);
            for r in routes {
                for side in sides {
                    for (outcome, c) in AttemptOutcome::RESULTS
                        .iter()
                        .zip(&r.cells.upstream_requests[side.index()])
                    {
                        let result = outcome.result().unwrap_or("unknown");
                        w.counter(
                            UPSTREAM_REQUESTS_TOTAL,
                            &r.labels,
                            &[("side", side.as_str()), ("result", result)],
                            c,
                            false,
                        );
                    }
                }
            }
        }
        3 => w.histogram_family(UPSTREAM_DURATION_SECONDS, routes, |c| &c.upstream_duration),
        4 => {
            w.family(FALLBACKS_TOTAL);
            for r in routes {
                let keep = falls_back(mode(&r.cells));
                for (reason, c) in FallbackReason::ALL.iter().zip(&r.cells.fallbacks) {
                    w.counter(
                        FALLBACKS_TOTAL,
                        &r.labels,
                        &[("reason", reason.as_str())],
                        c,
                        keep,
                    );
                }
            }
        }
        5 => {
            w.family(RECONCILE_TOTAL);
            for r in routes {
                let keep = compares(mode(&r.cells));
                for (v, c) in Verdict::ALL.iter().zip(&r.cells.reconcile) {
                    let keep = keep && *v != Verdict::Skipped;
                    w.counter(
                        RECONCILE_TOTAL,
                        &r.labels,
                        &[("result", v.as_str())],
                        c,
                        keep,
                    );
                }
            }
        }
        6 => w.counters(
            RECONCILE_DIVERGENCES_TOTAL,
            routes,
            "category",
            &Category::ALL.map(|c| c.as_str()),
            |c| &c.divergences[..],
        ),
        7 => w.counters(
            RECONCILE_SKIPPED_TOTAL,
            routes,
            "reason",
            &Skip::ALL.map(|s| s.as_str()),
            |c| &c.reconcile_skipped[..],
        ),
        8 => w.counters(
            CONTRACT_CHECKS_TOTAL,
            routes,
            "result",
            &CONTRACT_RESULTS,
            |c| &c.contract_checks[..],
        ),
        9 => w.counters(
            CONTRACT_VIOLATIONS_TOTAL,
            routes,
            "rule",
            &Rule::ALL.map(|r| r.as_str()),
            |c| &c.contract_violations[..],
        ),
        10 => w.counters(CIRCUIT_OPENS_TOTAL, routes, "", &[""], |c| {
            std::slice::from_ref(&c.circuit_opens)
        }),
        11 => w.counters(
            GATE_CHECKS_TOTAL,
            routes,
            "result",
            &CheckVerdict::ALL.map(|v| v.as_str()),
            |c| &c.gate_checks[..],
        ),
        12 => w.counters(
            GATE_TRIPS_TOTAL,
            routes,
            "check",
            &Check::ALL.map(|c| c.as_str()),
            |c| &c.gate_trips[..],
        ),
        13 => w.counters(
            SEQUENCE_PINNED_READS_TOTAL,
            routes,
            "side",
            &sides.map(|s| s.as_str()),
            |c| &c.sequence_pinned_reads[..],
        ),
        14 => w.counters(SEQUENCE_REFUSED_TOTAL, routes, "", &[""], |c| {
            std::slice::from_ref(&c.sequence_refused)
        }),
        15 => w.gauges(
            DATA_WATERMARK_TIMESTAMP_SECONDS,
            routes,
            "side",
            &sides.map(|s| s.as_str()),
            |c| &c.watermark[..],
        ),
        16 => w.gauges(
            DATA_AGE_SECONDS,
            routes,
            "side",
            &sides.map(|s| s.as_str()),
            |c| &c.data_age[..],
        ),
        17 => w.gauges(FRESHNESS_DELTA_SECONDS, routes, "", &[""], |c| {
            std::slice::from_ref(&c.freshness_delta)
        }),
        18 => w.gauges(
            ERROR_RATIO,
            routes,
            "side",
            &sides.map(|s| s.as_str()),
            |c| &c.error_ratio[..],
        ),
        19 => w.gauges(ERROR_RATIO_DELTA, routes, "", &[""], |c| {
            std::slice::from_ref(&c.error_ratio_delta)
        }),
        20 => w.gauges(DIVERGENCE_RATIO, routes, "", &[""], |c| {
            std::slice::from_ref(&c.divergence_ratio)
        }),
        21 => {
            w.family(ROUTE_MODE);
            for r in routes {
                let c = &r.cells;
                if let Some(m) = mode(c) {
                    c.modes_shown
                        .fetch_or(1 << m.index(), std::sync::atomic::Ordering::Relaxed);
                }
                let shown = c.modes_shown.load(std::sync::atomic::Ordering::Relaxed);
                for (m, g) in Mode::ALL.iter().zip(&c.route_mode) {
                    if shown & (1 << m.index()) != 0 {
                        w.series(ROUTE_MODE, "", &r.labels, &[("mode", m.as_str())]);
                        w.value(g.get());
                    }
                }
            }
        }
        22 => w.gauges(CIRCUIT_OPEN, routes, "", &[""], |c| {
            std::slice::from_ref(&c.circuit_open)
        }),
        23 => w.gauges(GATE_TRIPPED, routes, "", &[""], |c| {
            std::slice::from_ref(&c.gate_tripped)
        }),
        24 => {
            w.family(SEQUENCE_PINS);
            for r in routes {
                let g = &r.cells.sequence_pins;
                if g.get() != 0.0 {
                    w.series(SEQUENCE_PINS, "", &r.labels, &[]);
                    w.value(g.get());
                }
            }
        }
        _ => {}
    }
}

struct Writer<'a> {
    out: &'a mut String,
    /// Whether `family` writes the family's `# HELP` and `# TYPE`.
    header: bool,
}

impl Writer<'_> {
    fn family(&mut self, name: &str) {
        if !self.header {
            return;
        }
        let Some(d) = METRICS.iter().find(|d| d.name == name) else {
            return;
        };
        let kind = match d.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = write!(self.out, "# HELP {name} {}\n# TYPE {name} {kind}\n", d.help);
    }

    /// `name{labels,k="v",...}` (no value yet).
    fn series(&mut self, name: &str, suffix: &str, labels: &str, extra: &[(&str, &str)]) {
        let o = &mut *self.out;
        o.push_str(name);
        o.push_str(suffix);
        o.push('{');
        o.push_str(labels);
        for (k, v) in extra.iter().filter(|(k, _)| !k.is_empty()) {
            let _ = write!(o, ",{k}=\"{v}\"");
        }
        o.push('}');
    }

    fn value(&mut self, v: f64) {
        let o = &mut *self.out;
        if v.is_nan() {
            o.push_str(" NaN\n");
        } else if v.is_infinite() {
            o.push_str(if v > 0.0 { " +Inf\n" } else { " -Inf\n" });
        } else {
            let _ = writeln!(o, " {v}");
        }
    }

    fn counter(
        &mut self,
        name: &str,
        labels: &str,
        extra: &[(&str, &str)],
        c: &Counter,
        keep: bool,
    ) {
        let v = c.get();
        if v > 0 || keep {
            self.series(name, "", labels, extra);
            let _ = writeln!(self.out, " {v}");
        }
    }

    /// A counter family with one label (or none, `label` empty) whose
    /// series are shown from their first count.
    fn counters(
        &mut self,
        name: &str,
        routes: &[Arc<Registered>],
        label: &str,
        values: &[&str],
        cells: impl Fn(&RouteCells) -> &[Counter],
    ) {
        self.family(name);
        for r in routes {
            for (v, c) in values.iter().zip(cells(&r.cells)) {
                self.counter(name, &r.labels, &[(label, v)], c, false);
            }
        }
    }

    /// A gauge family with one label (or none): every series, NaN included.
    fn gauges(
        &mut self,
        name: &str,
        routes: &[Arc<Registered>],
        label: &str,
        values: &[&str],
        cells: impl Fn(&RouteCells) -> &[Gauge],
    ) {
        self.family(name);
        for r in routes {
            for (v, g) in values.iter().zip(cells(&r.cells)) {
                self.series(name, "", &r.labels, &[(label, v)]);
                self.value(g.get());
            }
        }
    }

    /// A histogram per side, shown from its first observation.
    fn histogram_family(
        &mut self,
        name: &str,
        routes: &[Arc<Registered>],
        cells: impl Fn(&RouteCells) -> &[Histogram; 2],
    ) {
        self.family(name);
        for r in routes {
            for (side, h) in SideName::BOTH.iter().zip(cells(&r.cells)) {
                if h.count() == 0 {
                    continue;
                }
                let s = h.snapshot();
                let side = side.as_str();
                for (le, n) in LATENCY_BUCKETS.iter().zip(s.cumulative) {
                    self.series(name, "_bucket", &r.labels, &[("side", side)]);
                    // `le` after `side`, as the exporter wrote it.
                    self.out.pop();
                    let _ = writeln!(self.out, ",le=\"{le}\"}} {n}");
                }
                self.series(
                    name,
                    "_bucket",
                    &r.labels,
                    &[("side", side), ("le", "+Inf")],
                );
                let _ = writeln!(self.out, " {}", s.count);
                self.series(name, "_sum", &r.labels, &[("side", side)]);
                self.value(s.sum);
                self.series(name, "_count", &r.labels, &[("side", side)]);
                let _ = writeln!(self.out, " {}", s.count);
            }
        }
    }
}
