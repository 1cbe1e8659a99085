//! The fleet board and the decommission answer as text a person reads.

use super::verdict::{
    ConsumerFigures, NextToMove, Phase, ProvenBy, ShadowVerdict, human_duration, thousands,
};
use super::{Board, DatasetBoard, Decommission, HISTORY_STEP};

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
        rows.extend(rows_of(d, b.evaluated_at, b.window_seconds));
        out.push_str(&crate::cli::status_table::table(&rows, &NUMERIC, "  "));
        out.push_str(&verdict_lines(d));
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

/// The table's rows for one dataset, one per consumer, under `HEADINGS`.
pub fn rows_of(d: &DatasetBoard, now: f64, window: f64) -> Vec<Vec<String>> {
    d.consumers.iter().map(|c| row(c, now, window)).collect()
}

/// A dataset's verdicts as the board prints them under its table: leave
/// shadow, next to move, risk order, readers not behind cutover, the
/// decommission steps.
pub fn verdict_lines(d: &DatasetBoard) -> String {
    let mut out = shadow_lines(&d.shadow);
    out.push_str(&next_to_move_lines(&d.next_to_move, &d.shadow));
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
    out
}

/// The dataset's "leave shadow" verdict, who blocks it, and each
/// consumer's own verdict, one line each.
pub fn shadow_lines(s: &ShadowVerdict) -> String {
    if s.left {
        return format!("  leave shadow: done ({})\n", s.reason);
    }
    let mut out = format!(
        "  leave shadow: {} ({}){}\n",
        if s.ready { "READY" } else { "not yet" },
        s.reason,
        if s.blocked_by.is_empty() {
            String::new()
        } else {
            format!("; blocked by {}", s.blocked_by.join(", "))
        }
    );
    for c in &s.consumers {
        let who = format!(
            "{} ({})",
            c.consumer,
            c.risk.map_or("unknown", |r| r.as_str())
        );
        let line = if let Some(why) = &c.blocks {
            format!("{who}: BLOCKS: {why}")
        } else if c.comparisons <= 0.0 {
            format!("{who}: no comparisons in the window")
        } else if c.ready {
            format!(
                "{who}: ready alone ({} over {} comparisons)",
                spaced_percent(c.divergence_ratio),
                thousands(c.comparisons)
            )
        } else {
            format!("{who}: not yet alone ({})", c.reason)
        };
        out.push_str(&format!("    - {line}\n"));
    }
    out
}

/// "next to move", and what it waits for: settling, then divergence.
pub fn next_to_move_lines(n: &NextToMove, s: &ShadowVerdict) -> String {
    let Some(c) = &n.consumer else {
        return "  next to move: none (no reporting consumer reads batch)\n".to_owned();
    };
    let risk = n.risk.map_or("unknown risk", |r| r.as_str());
    let tie = if n.tied_with.is_empty() {
        String::new()
    } else {
        format!(
            "; tied in risk with {}: ordered by consumer name",
            n.tied_with.join(", ")
        )
    };
    if !n.ready {
        let mut out = format!("  next to move: {c} ({risk}): waiting{tie}\n");
        for w in n.waiting_for.iter().chain(&n.waiting_for_shadow) {
            out.push_str(&format!("    - {w}\n"));
        }
        return out;
    }
    match n.proven_by {
        ProvenBy::OwnComparisons => format!(
            "  next to move: {c} ({risk}): READY on its own comparisons{}; the dataset has not left shadow{}{tie}\n",
            s.consumers
                .iter()
                .find(|o| o.consumer == *c)
                .map_or(String::new(), |o| format!(
                    " ({} over {})",
                    spaced_percent(o.divergence_ratio),
                    thousands(o.comparisons)
                )),
            if n.dataset_blocked_by.is_empty() {
                String::new()
            } else {
                format!(
                    ": {} still block{} it",
                    n.dataset_blocked_by.join(", "),
                    if n.dataset_blocked_by.len() == 1 {
                        "s"
                    } else {
                        ""
                    }
                )
            }
        ),
        _ => format!("  next to move: {c} ({risk}): READY{tie}\n"),
    }
}

pub const HEADINGS: [&str; 12] = [
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

pub const NUMERIC: [bool; HEADINGS.len()] = [
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

/// `0.000 %`, as the verdict lines print a ratio.
fn spaced_percent(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |r| format!("{:.3} %", r * 100.0))
}

fn percent(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_owned(), |r| format!("{:.*}%", decimals, r * 100.0))
}

/// A dataset's readers not behind cutover and decommission steps.
fn batch_lines(d: &DatasetBoard) -> String {
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

pub use super::verdict::rfc3339;

#[cfg(test)]
mod tests {
    use super::super::verdict::{ConsumerFigures, Risk, next_to_move, shadow_verdict};
    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    fn consumer(
        name: &str,
        risk: Risk,
        mode: &str,
        compared: f64,
        diverged: f64,
    ) -> ConsumerFigures {
        ConsumerFigures {
            consumer: name.to_owned(),
            dataset: "orders".to_owned(),
            risk: Some(risk),
            modes: vec![mode.to_owned()],
            comparisons: compared,
            diverged,
            compared_since: (compared > 0.0).then_some(NOW - 3600.0),
            ..Default::default()
        }
    }

    fn shadow_and_next(all: &[&ConsumerFigures]) -> String {
        let s = shadow_verdict(all, 3600.0, NOW);
        let n = next_to_move(all, &s, NOW);
        format!("{}{}", shadow_lines(&s), next_to_move_lines(&n, &s))
    }

    #[test]
    fn the_board_names_the_blocking_consumer_and_moves_the_clean_one_saying_so() {
        let dash = consumer("dash", Risk::Low, "shadow", 1314.0, 0.0);
        let ops = consumer("ops", Risk::Medium, "batch", 0.0, 0.0);
        let mut fraud = consumer("fraud", Risk::High, "shadow", 4000.0, 1406.0);
        fraud.divergences.insert("timing".to_owned(), 1400.0);
        fraud.divergences.insert("aggregation".to_owned(), 6.0);
        let text = shadow_and_next(&[&dash, &ops, &fraud]);
        assert_eq!(
            text,
            "  leave shadow: not yet (divergence ratio 26.458 % is not under 0.1 %); blocked by fraud\n\
             \x20   - dash (low): ready alone (0.000 % over 1,314 comparisons)\n\
             \x20   - ops (medium): no comparisons in the window\n\
             \x20   - fraud (high): BLOCKS: 35.150 % over 4,000 comparisons, mostly timing (1,400 of 1,406 divergences)\n\
             \x20 next to move: dash (low): READY on its own comparisons (0.000 % over 1,314); the dataset has not left shadow: fraud still blocks it\n"
        );
    }

    #[test]
    fn a_ready_next_never_stands_beside_a_silent_not_yet() {
        // Nothing compared: the shadow verdict says not yet, and so does next.
        let dash = consumer("dash", Risk::Low, "shadow", 0.0, 0.0);
        let text = shadow_and_next(&[&dash]);
        assert!(
            text.contains("leave shadow: not yet (too few comparisons"),
            "{text}"
        );
        assert!(
            text.contains("next to move: dash (low): waiting\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "    - the dataset has not left shadow: too few comparisons: 0 of the 1000"
            ),
            "{text}"
        );
        assert!(!text.contains("READY"), "{text}");
        // Thin own traffic beside a dirty consumer: waits, says both.
        let dash = consumer("dash", Risk::Low, "shadow", 500.0, 0.0);
        let fraud = consumer("fraud", Risk::High, "shadow", 5000.0, 50.0);
        let text = shadow_and_next(&[&dash, &fraud]);
        assert!(
            text.contains("    - dash (low): not yet alone (too few comparisons: 500"),
            "{text}"
        );
        assert!(text.contains("(blocked by fraud)"), "{text}");
        assert!(!text.contains("READY"), "{text}");
        // All clean: plain READY on both lines.
        let dash = consumer("dash", Risk::Low, "shadow", 1314.0, 0.0);
        let fraud = consumer("fraud", Risk::High, "shadow", 4000.0, 2.0);
        let text = shadow_and_next(&[&dash, &fraud]);
        assert!(
            text.starts_with("  leave shadow: READY (divergence under 0.1 %"),
            "{text}"
        );
        assert!(!text.contains("blocked by"), "{text}");
        assert!(
            text.contains("    - fraud (high): ready alone (0.050 % over 4,000 comparisons)"),
            "{text}"
        );
        assert!(
            text.ends_with("  next to move: dash (low): READY\n"),
            "{text}"
        );
    }

    #[test]
    fn a_dataset_wholly_on_streaming_only_has_left_shadow_not_too_few_comparisons() {
        let dash = consumer("dash", Risk::Low, "streaming_only", 0.0, 0.0);
        let ops = consumer("ops", Risk::Medium, "streaming_only", 0.0, 0.0);
        let text = shadow_and_next(&[&dash, &ops]);
        assert!(
            text.starts_with(
                "  leave shadow: done (every consumer is streaming_only: the dataset left shadow"
            ),
            "{text}"
        );
        assert!(!text.contains("too few"), "{text}");
        // One consumer still on streaming: comparisons go on, and count.
        let ops = consumer("ops", Risk::Medium, "streaming", 0.0, 0.0);
        let text = shadow_and_next(&[&dash, &ops]);
        assert!(
            text.contains("leave shadow: not yet (too few comparisons"),
            "{text}"
        );
    }
}
