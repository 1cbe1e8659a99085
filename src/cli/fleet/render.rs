//! The fleet board and the decommission answer as text a person reads.

use super::verdict::{ConsumerFigures, Phase, human_duration};
use super::{Board, Decommission, HISTORY_STEP};

/// The board: one block per dataset, its table, then its verdicts.
pub fn board(b: &Board) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "fleet at {}   window {}   (time in mode and last batch read: to the {})\n",
        rfc3339(b.evaluated_at),
        human_duration(b.window_seconds),
        human_duration(b.history_step_seconds)
    ));
    if b.datasets.is_empty() {
        out.push_str("\nno consumer known through cutover (no cutover_route_mode series)\n");
        return out;
    }
    for d in &b.datasets {
        out.push_str(&format!(
            "\ndataset {}   {} consumer{}\n",
            d.dataset,
            d.consumers.len(),
            if d.consumers.len() == 1 { "" } else { "s" }
        ));
        let mut rows = vec![HEADINGS.map(str::to_owned).to_vec()];
        for c in &d.consumers {
            rows.push(row(c, b.evaluated_at, b.window_seconds));
        }
        out.push_str(&crate::cli::status_table::table(&rows, &NUMERIC, "  "));
        let s = &d.shadow;
        out.push_str(&format!(
            "  leave shadow: {} ({})\n",
            if s.ready { "READY" } else { "not yet" },
            s.reason
        ));
        let n = &d.next_to_move;
        match &n.consumer {
            None => out.push_str("  next to move: none (no reporting consumer reads batch)\n"),
            Some(c) => {
                let risk = n.risk.map_or("unknown risk", |r| r.as_str());
                let tie = if n.tied_with.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; tied in risk with {}: ordered by consumer name",
                        n.tied_with.join(", ")
                    )
                };
                if n.ready {
                    out.push_str(&format!("  next to move: {c} ({risk}): READY{tie}\n"));
                } else {
                    out.push_str(&format!("  next to move: {c} ({risk}): waiting{tie}\n"));
                    for w in &n.waiting_for {
                        out.push_str(&format!("    - {w}\n"));
                    }
                }
            }
        }
        if d.risk_order_violations.is_empty() {
            out.push_str("  risk order: ok\n");
        } else {
            out.push_str("  risk order: VIOLATED\n");
            for v in &d.risk_order_violations {
                out.push_str(&format!(
                    "    - {} ({}) reads streaming while {} ({}) still reads batch\n",
                    v.on_streaming,
                    v.on_streaming_risk.map_or("unknown", |r| r.as_str()),
                    v.on_batch,
                    v.on_batch_risk.map_or("unknown", |r| r.as_str()),
                ));
            }
        }
        out.push_str(&batch_lines(d));
    }
    out.push_str(
        "\nREADS, FALLBACK, ERR Δ (streaming minus batch failed share, percentage points), DIVERG, COMPARED, CONTRACT (violated share of checked streaming answers) and TRIPS are over the window.\n",
    );
    let mut known: Vec<&str> = b
        .datasets
        .iter()
        .flat_map(|d| d.consumers.iter().map(|c| c.consumer.as_str()))
        .collect();
    known.sort_unstable();
    known.dedup();
    let counted = b.datasets.iter().any(|d| d.unknown_readers.is_some());
    out.push_str(&format!(
        "{} consumer{} known through cutover; {}\n",
        known.len(),
        if known.len() == 1 { "" } else { "s" },
        if counted {
            "readers that never went through cutover are counted from batch's own requests (--batch-requests), not named."
        } else {
            "a reader that never went through cutover is invisible here."
        }
    ));
    out
}

const HEADINGS: [&str; 12] = [
    "CONSUMER",
    "RISK",
    "MODE",
    "IN MODE",
    "READS B/S",
    "FALLBACK",
    "ERR Δ",
    "DIVERG",
    "COMPARED",
    "CONTRACT",
    "TRIPS",
    "LAST BATCH READ",
];

const NUMERIC: [bool; HEADINGS.len()] = [
    false, false, false, true, true, true, true, true, true, true, true, false,
];

fn row(c: &ConsumerFigures, now: f64, window: f64) -> Vec<String> {
    let mode = match c.phase() {
        Phase::NotReporting => format!(
            "NOT REPORTING (last {}, seen {})",
            if c.last_modes.is_empty() {
                "?".to_owned()
            } else {
                c.last_modes.join("+")
            },
            // Without a time, it was known only from its raw samples of
            // the last RECENT_SECONDS (it lived between two steps).
            c.last_seen.map_or_else(
                || format!("in the last {}", human_duration(super::RECENT_SECONDS)),
                |t| format!("{} ago", human_duration((now - t).max(0.0)))
            )
        ),
        _ if c.gate_tripped_now => format!("{} (gate tripped: rolled back)", c.modes.join("+")),
        _ => c.modes.join("+"),
    };
    let in_mode = c.mode_since.map_or("-".to_owned(), |s| {
        format!(
            "{}{}",
            if s.at_least { "≥" } else { "" },
            human_duration(now - s.at)
        )
    });
    vec![
        c.consumer.clone(),
        c.risk.map_or("?", |r| r.as_str()).to_owned(),
        mode,
        in_mode,
        format!("{:.0}/{:.0}", c.reads_batch, c.reads_streaming),
        percent(c.fallback_ratio(), 1),
        c.error_ratio_delta().map_or("-".to_owned(), |d| {
            let pp = d * 100.0;
            if pp.abs() < 0.05 {
                "0.0pp".to_owned()
            } else {
                format!("{pp:+.1}pp")
            }
        }),
        percent(c.divergence_ratio(), 3),
        format!("{:.0}", c.comparisons),
        percent(c.contract_violation_ratio(), 2),
        format!("{:.0}", c.gate_trips_window),
        c.last_batch_read.map_or_else(
            || {
                // The hourly history can miss a sidecar that lived between
                // two steps; the window's counters did not.
                if c.attempts_batch > 0.0 {
                    format!("within {} (time not resolved)", human_duration(window))
                } else {
                    format!("none in {}", human_duration(super::HISTORY_SECONDS))
                }
            },
            |t| {
                // The history's step can put the last read a moment past
                // now: say "0s ago", not a negative time.
                format!(
                    "{} ago (±{})",
                    human_duration((now - t).max(0.0)),
                    human_duration(HISTORY_STEP)
                )
            },
        ),
    ]
}

fn percent(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_owned(), |r| format!("{:.*}%", decimals, r * 100.0))
}

/// A dataset's readers not behind cutover and decommission steps.
fn batch_lines(d: &super::DatasetBoard) -> String {
    let mut out = String::new();
    if let Some(u) = &d.unknown_readers {
        match u.reads {
            Some(r) => out.push_str(&format!(
                "  readers not behind cutover: {r:.0} reads (batch served {:.0}, cutover sent it {:.0})\n",
                u.batch_served.unwrap_or(0.0),
                u.sent_by_cutover
            )),
            None => out.push_str(&format!(
                "  readers not behind cutover: unknown ({})\n",
                u.reason.as_deref().unwrap_or("no figure")
            )),
        }
    }
    for line in super::batch::steps_text(&d.decommission_steps) {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// The decommission answer: verdict, the consumers known, the honest limit.
pub fn decommission(d: &Decommission) -> String {
    let mut out = format!(
        "decommission {} over the last {}: {}\n",
        d.dataset,
        human_duration(d.window_seconds),
        if d.ready {
            "READY: batch can be switched off"
        } else {
            "NOT READY"
        }
    );
    out.push_str(&format!(
        "{} consumer{} known through cutover\n",
        d.consumers.len(),
        if d.consumers.len() == 1 { "" } else { "s" }
    ));
    for c in &d.consumers {
        let modes = if c.modes.is_empty() {
            "?".to_owned()
        } else {
            c.modes.join("+")
        };
        if c.blocks.is_empty() {
            out.push_str(&format!("  {}  {modes}  no batch read\n", c.consumer));
            continue;
        }
        let last = match c.last_batch_read {
            // Prometheus rounds the range's end to the millisecond, so the
            // last step can be a moment past now: "0s ago", not "- ago".
            Some(t) => format!(
                "; last batch read {} ({} ago)",
                rfc3339(t),
                human_duration((d.evaluated_at - t).max(0.0))
            ),
            None if c.batch_reads > 0.0 || c.batch_reads_unseen_by_increase => {
                "; last batch read within the window (time not resolved)".to_owned()
            }
            None => String::new(),
        };
        let reads = if c.batch_reads > 0.0 {
            format!(" ({:.0} batch reads)", c.batch_reads)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {}  {modes}  BLOCKS: {}{reads}{last}\n",
            c.consumer,
            c.blocks.join("; ")
        ));
    }
    match (&d.unknown_readers, &d.unknown_readers_block) {
        (Some(_), Some(why)) => out.push_str(&format!("  BLOCKS: {why}\n")),
        (Some(u), None) => out.push_str(&format!(
            "  readers not behind cutover: {:.0} reads (batch served {:.0}, cutover sent it {:.0})\n",
            u.reads.unwrap_or(0.0),
            u.batch_served.unwrap_or(0.0),
            u.sent_by_cutover
        )),
        _ => out.push_str(
            "Limit: only reads through a cutover sidecar are seen here; a reader of the batch output that never went through cutover is invisible to this check (pass --batch-requests to count them from batch's own requests).\n",
        ),
    }
    out
}

/// Unix seconds as RFC 3339 UTC, to the second.
pub fn rfc3339(t: f64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.floor() as i64)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{t:.0}"))
}
