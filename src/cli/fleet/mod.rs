//! `cutover fleet`: the migration board for every consumer Prometheus knows,
//! and the decommission check for one dataset. `query` talks to Prometheus,
//! `verdict` holds the rules as pure functions, `render` prints the board.
//!
//! Every figure comes from an instant query evaluated at one time `now`
//! (counters through `increase()`, which is reset-safe), except two
//! histories read with `query_range`: the effective mode (time in mode,
//! time on streaming) and the raw batch attempt counters (last batch read).

pub mod batch;
pub mod command;
pub mod html;
pub mod promql;
pub mod query;
pub mod render;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use self::promql::*;
use self::query::{Prometheus, QueryError, Series};
use self::verdict::{
    ConsumerFigures, DecommissionConsumer, NextToMove, Risk, ShadowVerdict, Violation,
};

/// What `cutover fleet` was asked.
#[derive(Clone, Debug)]
pub struct Request {
    pub dataset: Option<String>,
    pub window: f64,
    /// Evaluation time (Unix seconds); every query uses it.
    pub now: f64,
    /// `--batch-requests`: PromQL for the requests batch itself served.
    pub batch_requests: Option<String>,
    /// `--batch-watermark`: PromQL for batch's own last-output time.
    pub batch_watermark: Option<String>,
}

/// The board: one entry per dataset.
#[derive(Clone, Debug, Serialize)]
pub struct Board {
    pub evaluated_at: f64,
    pub window_seconds: f64,
    pub history_step_seconds: f64,
    pub datasets: Vec<DatasetBoard>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DatasetBoard {
    pub dataset: String,
    pub consumers: Vec<ConsumerFigures>,
    pub shadow: ShadowVerdict,
    pub next_to_move: NextToMove,
    pub risk_order_violations: Vec<Violation>,
    /// Readers not behind cutover over the window; `None` without `--batch-requests`.
    pub unknown_readers: Option<batch::UnknownReaders>,
    /// The guide's three decommission steps.
    pub decommission_steps: batch::Steps,
}

/// The decommission answer for one dataset.
#[derive(Clone, Debug, Serialize)]
pub struct Decommission {
    pub dataset: String,
    pub evaluated_at: f64,
    pub window_seconds: f64,
    pub ready: bool,
    pub consumers: Vec<DecommissionConsumer>,
    /// Readers not behind cutover over the window; `None` without `--batch-requests`.
    pub unknown_readers: Option<batch::UnknownReaders>,
    /// Why they block the decommission (above `--unknown-tolerance`), if they do.
    pub unknown_readers_block: Option<String>,
}

type Key = (String, String);

fn key(s: &Series) -> Key {
    (
        s.label("consumer").to_owned(),
        s.label("dataset").to_owned(),
    )
}

/// Runs every board query (instant ones concurrently) and judges each dataset.
pub async fn board(prom: &Prometheus, req: &Request) -> Result<Board, QueryError> {
    Ok(board_and_modes(prom, req).await?.0)
}

/// The board, and the mode history it was judged from (what `--html`
/// draws, so it is not asked for twice).
pub async fn board_and_modes(
    prom: &Prometheus,
    req: &Request,
) -> Result<(Board, Vec<Series>), QueryError> {
    let ds = req.dataset.as_deref();
    let queries = board_queries(ds, req.window);
    let mut set = tokio::task::JoinSet::new();
    for (i, (_, q)) in queries.iter().enumerate() {
        let (prom, q, now) = (prom.clone(), q.clone(), req.now);
        set.spawn(async move { (i, prom.query(&q, now).await) });
    }
    let history_start = req.now - HISTORY_SECONDS.max(req.window);
    let (mode_query, batch_query) = (mode_history_query(ds), batch_counter_query(ds));
    let (modes, batch) = tokio::try_join!(
        prom.query_range(&mode_query, history_start, req.now, HISTORY_STEP),
        prom.query_range(&batch_query, history_start, req.now, HISTORY_STEP),
    )?;
    let mut answers: Vec<Vec<Series>> = vec![Vec::new(); queries.len()];
    // Each query is bounded by QUERY_TIMEOUT, so this loop is too.
    while let Some(joined) = set.join_next().await {
        let (i, result) = joined.map_err(|e| QueryError::Body {
            url: "query task".to_owned(),
            reason: e.to_string(),
        })?;
        answers[i] = result?;
    }
    let get = |name: &str| -> &[Series] {
        queries
            .iter()
            .position(|(n, _)| *n == name)
            .map_or(&[][..], |i| &answers[i][..])
    };
    let mut board = assemble(
        req,
        &Answers {
            risk: get("risk"),
            mode: get("mode"),
            reads: get("reads"),
            fallbacks: get("fallbacks"),
            attempts: get("attempts"),
            comparisons: get("comparisons"),
            divergences: get("divergences"),
            contract_checks: get("contract_checks"),
            compared_since: get("compared_since"),
            gate_trips: get("gate_trips"),
            gate_trips_settle: get("gate_trips_settle"),
            gate_tripped_settle: get("gate_tripped_settle"),
            gate_tripped: get("gate_tripped"),
            recent_modes: get("recent_modes"),
            recent_seen: get("recent_seen"),
            mode_history: &modes,
            batch_counters: &batch,
            history_start,
        },
    );
    batch_view(prom, req, &mut board, &modes, history_start).await?;
    Ok((board, modes))
}

/// The histories `--html` draws beyond the board: divergence per step and
/// the steps with gate trips or fallbacks, over the same history the board
/// reads, beside the board's own mode history (`modes`).
pub async fn page_history(
    prom: &Prometheus,
    req: &Request,
    modes: Vec<Series>,
) -> Result<html::History, QueryError> {
    let ds = req.dataset.as_deref();
    let start = req.now - HISTORY_SECONDS.max(req.window);
    let range = |q: String| async move { prom.query_range(&q, start, req.now, HISTORY_STEP).await };
    let queries = page_history_queries(ds);
    let find = |name: &str| {
        queries
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(String::new, |(_, q)| q.clone())
    };
    let (divergence, gate_trips, fallbacks) = tokio::try_join!(
        range(find("divergence")),
        range(find("gate_trips")),
        range(find("fallbacks")),
    )?;
    // The page starts where the history does: the first step any mode was seen.
    let first = modes
        .iter()
        .filter_map(|s| s.samples.first().map(|&(t, _)| t))
        .fold(req.now, f64::min);
    Ok(html::History {
        start: first.max(start),
        end: req.now,
        step: HISTORY_STEP,
        modes,
        divergence,
        gate_trips,
        fallbacks,
    })
}

/// Fills each dataset's readers not behind cutover and decommission steps
/// from batch's own queries (`--batch-requests`, `--batch-watermark`).
async fn batch_view(
    prom: &Prometheus,
    req: &Request,
    board: &mut Board,
    modes: &[Series],
    history_start: f64,
) -> Result<(), QueryError> {
    if req.batch_requests.is_none() && req.batch_watermark.is_none() {
        return Ok(());
    }
    let ds = req.dataset.as_deref();
    let sent = prom
        .query(&batch_sent_by_dataset_query(ds, req.window), req.now)
        .await?;
    let sent_in = |d: &str, answer: &[Series]| -> f64 {
        answer
            .iter()
            .filter(|s| s.label("dataset") == d)
            .filter_map(Series::value)
            .filter(|v| v.is_finite())
            .fold(0.0, |a, b| a + b)
    };
    let streaming_only = all_streaming_only(modes);
    let no_steps = BTreeMap::new();
    for d in &mut board.datasets {
        if let Some(q) = &req.batch_requests {
            let served = prom
                .query(&batch::substitute(q, &d.dataset, req.window), req.now)
                .await?;
            d.unknown_readers = Some(batch::unknown_readers(
                &served,
                sent_in(&d.dataset, &sent),
                req.window,
            ));
        }
        let Some(wq) = &req.batch_watermark else {
            continue;
        };
        let wm = prom
            .query_range(
                &batch::substitute(wq, &d.dataset, req.window),
                history_start,
                req.now,
                HISTORY_STEP,
            )
            .await?;
        let so = streaming_only.get(&d.dataset).unwrap_or(&no_steps);
        let (since, t1) = match batch::step1_start(&wm, so, history_start, HISTORY_STEP) {
            Ok(s) => s,
            Err(why) => {
                d.decommission_steps = batch::Steps {
                    known: !wm.is_empty(),
                    reason: Some(why),
                    ..batch::Steps::default()
                };
                continue;
            }
        };
        let ran = (req.now - t1).max(1.0);
        let unknown = match &req.batch_requests {
            Some(q) => {
                let (served_q, sent_q) = (
                    batch::substitute(q, &d.dataset, ran),
                    batch_sent_by_dataset_query(Some(&d.dataset), ran),
                );
                let (served, sent) = tokio::try_join!(
                    prom.query(&served_q, req.now),
                    prom.query(&sent_q, req.now),
                )?;
                Some(batch::unknown_readers(
                    &served,
                    sent_in(&d.dataset, &sent),
                    ran,
                ))
            }
            None => None,
        };
        let (during_q, before_q) = (
            answers_by_class_query(&d.dataset, ran),
            answers_by_class_query(&d.dataset, batch::STEP_SECONDS),
        );
        let (during, before) =
            tokio::try_join!(prom.query(&during_q, req.now), prom.query(&before_q, t1),)?;
        let (during, before) = (batch::failed_ratios(&during), batch::failed_ratios(&before));
        let failed: Vec<batch::FailedAnswers> = d
            .consumers
            .iter()
            .map(|c| batch::FailedAnswers {
                consumer: c.consumer.clone(),
                during: during.get(&c.consumer).copied().flatten(),
                before: before.get(&c.consumer).copied().flatten(),
            })
            .collect();
        let read_batch: Vec<String> = d
            .consumers
            .iter()
            .filter(|c| c.last_batch_read.is_some_and(|t| t > t1))
            .map(|c| c.consumer.clone())
            .collect();
        let not_so: Vec<String> = d
            .consumers
            .iter()
            .filter(|c| c.modes.is_empty() || c.modes.iter().any(|m| m != "streaming_only"))
            .map(|c| {
                if c.modes.is_empty() {
                    format!("{} (not reporting)", c.consumer)
                } else {
                    format!("{} ({})", c.consumer, c.modes.join("+"))
                }
            })
            .collect();
        d.decommission_steps = batch::judge_steps(
            since,
            req.now,
            &read_batch,
            &not_so,
            unknown.as_ref(),
            &failed,
        );
    }
    Ok(())
}

/// Per dataset, per history step: whether every consumer seen at that step
/// had only `streaming_only` routes of the dataset.
fn all_streaming_only(modes: &[Series]) -> BTreeMap<String, BTreeMap<i64, bool>> {
    let mut out: BTreeMap<String, BTreeMap<i64, bool>> = BTreeMap::new();
    for s in modes {
        let so = s.label("mode") == "streaming_only";
        let at = out.entry(s.label("dataset").to_owned()).or_default();
        for &(t, _) in s.samples.iter().filter(|(_, v)| *v == 1.0) {
            let e = at.entry(t.round() as i64).or_insert(true);
            *e &= so;
        }
    }
    out
}

/// Prometheus' answers to the board queries, by name.
pub struct Answers<'a> {
    pub risk: &'a [Series],
    pub mode: &'a [Series],
    pub reads: &'a [Series],
    pub fallbacks: &'a [Series],
    pub attempts: &'a [Series],
    pub comparisons: &'a [Series],
    pub divergences: &'a [Series],
    /// Contract checks by result (`pass`, `violation`, `skipped`).
    pub contract_checks: &'a [Series],
    pub compared_since: &'a [Series],
    pub gate_trips: &'a [Series],
    pub gate_trips_settle: &'a [Series],
    pub gate_tripped_settle: &'a [Series],
    pub gate_tripped: &'a [Series],
    /// The modes whose last sample in the last `RECENT_SECONDS` is 1.
    pub recent_modes: &'a [Series],
    /// When any mode series was last sampled in the last `RECENT_SECONDS`.
    pub recent_seen: &'a [Series],
    pub mode_history: &'a [Series],
    pub batch_counters: &'a [Series],
    pub history_start: f64,
}

/// Builds the board from the answers: pure, so it is tested without a network.
pub fn assemble(req: &Request, a: &Answers<'_>) -> Board {
    let risks: BTreeMap<String, Risk> = a
        .risk
        .iter()
        .filter_map(|s| {
            Some((
                s.label("consumer").to_owned(),
                Risk::parse(s.label("risk"))?,
            ))
        })
        .collect();
    // Known consumers: anything with a mode now, recently or in the history.
    let mut figures: BTreeMap<Key, ConsumerFigures> = BTreeMap::new();
    for s in a.mode.iter().chain(a.mode_history).chain(a.recent_modes) {
        let k = key(s);
        let risk = risks.get(&k.0).copied();
        figures.entry(k.clone()).or_insert_with(|| ConsumerFigures {
            risk,
            consumer: k.0,
            dataset: k.1,
            ..Default::default()
        });
    }
    let val = |s: &Series| s.value().filter(|v| v.is_finite()).unwrap_or(0.0);
    for s in a.mode {
        if s.value() == Some(1.0)
            && let Some(f) = known(&mut figures, s)
        {
            f.modes.push(s.label("mode").to_owned());
        }
    }
    for s in a.reads {
        let v = val(s);
        if let Some(f) = known(&mut figures, s) {
            match s.label("side") {
                "batch" => f.reads_batch += v,
                "streaming" => f.reads_streaming += v,
                _ => {}
            }
        }
    }
    for s in a.fallbacks {
        let v = val(s);
        if let Some(f) = known(&mut figures, s) {
            f.fallbacks += v;
        }
    }
    for s in a.attempts {
        let v = val(s);
        let failed = matches!(s.label("result"), "5xx" | "connect" | "timeout");
        if let Some(f) = known(&mut figures, s) {
            let (attempts, failures) = match s.label("side") {
                "batch" => (&mut f.attempts_batch, &mut f.failures_batch),
                "streaming" => (&mut f.attempts_streaming, &mut f.failures_streaming),
                _ => continue,
            };
            *attempts += v;
            if failed {
                *failures += v;
            }
        }
    }
    for s in a.comparisons {
        let v = val(s);
        let result = s.label("result").to_owned();
        if let Some(f) = known(&mut figures, s) {
            match result.as_str() {
                "match" => f.comparisons += v,
                "diverged" => {
                    f.comparisons += v;
                    f.diverged += v;
                }
                _ => {}
            }
        }
    }
    for s in a.divergences {
        let v = val(s);
        let category = s.label("category").to_owned();
        if let Some(f) = known(&mut figures, s) {
            *f.divergences.entry(category).or_default() += v;
        }
    }
    for s in a.contract_checks {
        let v = val(s);
        let result = s.label("result").to_owned();
        if let Some(f) = known(&mut figures, s) {
            match result.as_str() {
                "pass" => f.contract_checked += v,
                "violation" => {
                    f.contract_checked += v;
                    f.contract_violations += v;
                }
                _ => {}
            }
        }
    }
    for s in a.compared_since {
        let v = s.value().filter(|v| v.is_finite());
        if let Some(f) = known(&mut figures, s) {
            f.compared_since = v;
        }
    }
    for s in a.gate_trips {
        let v = val(s);
        if let Some(f) = known(&mut figures, s) {
            f.gate_trips_window += v;
        }
    }
    for s in a.gate_trips_settle.iter().chain(a.gate_tripped_settle) {
        let v = val(s);
        if let Some(f) = known(&mut figures, s) {
            f.gate_trips_settle = f.gate_trips_settle.max(v);
        }
    }
    for s in a.gate_tripped {
        let v = val(s);
        if let Some(f) = known(&mut figures, s) {
            f.gate_tripped_now |= v >= 1.0;
        }
    }
    history(&mut figures, a.mode_history, a.history_start);
    recent(&mut figures, a.recent_modes, a.recent_seen);
    for s in a.batch_counters {
        let rise = verdict::last_counter_rise(&s.samples, a.history_start, HISTORY_STEP);
        if let Some(f) = known(&mut figures, s)
            && let Some(t) = rise
        {
            f.last_batch_read = Some(f.last_batch_read.map_or(t, |l: f64| l.max(t)));
        }
    }

    let mut by_dataset: BTreeMap<String, Vec<ConsumerFigures>> = BTreeMap::new();
    for (_, mut f) in figures {
        f.modes.sort();
        f.modes.dedup();
        by_dataset.entry(f.dataset.clone()).or_default().push(f);
    }
    let datasets = by_dataset
        .into_iter()
        .map(|(dataset, mut consumers)| {
            consumers.sort_by(|a, b| {
                (a.risk.is_none(), a.risk, &a.consumer).cmp(&(
                    b.risk.is_none(),
                    b.risk,
                    &b.consumer,
                ))
            });
            let refs: Vec<&ConsumerFigures> = consumers.iter().collect();
            // "next to move" waits on "leave shadow" (or says it moves on
            // its own comparisons): see `verdict::next_to_move`.
            let shadow = verdict::shadow_verdict(&refs, req.window, req.now);
            DatasetBoard {
                next_to_move: verdict::next_to_move(&refs, &shadow, req.now),
                shadow,
                risk_order_violations: verdict::risk_order_violations(&refs),
                unknown_readers: None,
                decommission_steps: batch::Steps::unknown(if req.batch_watermark.is_some() {
                    "batch's watermark not read yet"
                } else {
                    batch::NO_WATERMARK
                }),
                dataset,
                consumers,
            }
        })
        .collect();
    Board {
        evaluated_at: req.now,
        window_seconds: req.window,
        history_step_seconds: HISTORY_STEP,
        datasets,
    }
}

/// The figures of a series' consumer and dataset, if that pair has a mode
/// (now or in the history): other series alone do not make a consumer known.
fn known<'a>(
    figures: &'a mut BTreeMap<Key, ConsumerFigures>,
    s: &Series,
) -> Option<&'a mut ConsumerFigures> {
    figures.get_mut(&key(s))
}

/// Time in the current mode, time on streaming, last seen and last modes,
/// from the mode history: per consumer and dataset, the set of modes at
/// each step.
fn history(figures: &mut BTreeMap<Key, ConsumerFigures>, modes: &[Series], start: f64) {
    let mut steps: BTreeMap<Key, BTreeMap<i64, BTreeSet<String>>> = BTreeMap::new();
    for s in modes {
        let at = steps.entry(key(s)).or_default();
        for &(t, v) in &s.samples {
            if v == 1.0 {
                at.entry(t.round() as i64)
                    .or_default()
                    .insert(s.label("mode").to_owned());
            }
        }
    }
    for (k, at) in steps {
        let Some(f) = figures.get_mut(&k) else {
            continue;
        };
        let Some((&last_t, last_modes)) = at.iter().next_back() else {
            continue;
        };
        f.last_seen = Some(last_t as f64);
        f.last_modes = last_modes.iter().cloned().collect();
        let current: BTreeSet<String> = if f.modes.is_empty() {
            last_modes.clone()
        } else {
            f.modes.iter().cloned().collect()
        };
        let same: Vec<(f64, bool)> = at.iter().map(|(&t, m)| (t as f64, *m == current)).collect();
        let streaming: Vec<(f64, bool)> = at
            .iter()
            .map(|(&t, m)| (t as f64, m.iter().all(|m| verdict::mode_reads_streaming(m))))
            .collect();
        if !f.modes.is_empty() {
            f.mode_since = verdict::run_start(&same, start, HISTORY_STEP);
            if f.modes.iter().all(|m| verdict::mode_reads_streaming(m)) {
                f.streaming_since = verdict::run_start(&streaming, start, HISTORY_STEP);
            }
        }
    }
}

/// For a consumer not reporting now: the modes of its last samples in the
/// last `RECENT_SECONDS` (later than any hourly step of the history), and
/// when they were taken, if a step of `recent_seen` caught it.
fn recent(figures: &mut BTreeMap<Key, ConsumerFigures>, modes: &[Series], seen: &[Series]) {
    let mut last: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
    for s in modes.iter().filter(|s| s.value() == Some(1.0)) {
        last.entry(key(s))
            .or_default()
            .insert(s.label("mode").to_owned());
    }
    for (k, modes) in last {
        if let Some(f) = figures.get_mut(&k).filter(|f| f.modes.is_empty()) {
            f.last_modes = modes.into_iter().collect();
        }
    }
    for s in seen {
        let t = s.value().filter(|t| t.is_finite());
        if let Some(f) = figures.get_mut(&key(s)).filter(|f| f.modes.is_empty())
            && let Some(t) = t
        {
            f.last_seen = Some(f.last_seen.map_or(t, |l: f64| l.max(t)));
        }
    }
}

/// Whether batch can be switched off for `dataset`.
/// With `batch_requests`, readers not behind cutover above `tolerance`
/// (reads over the window) also block.
pub async fn decommission(
    prom: &Prometheus,
    dataset: &str,
    window: f64,
    now: f64,
    batch_requests: Option<&str>,
    tolerance: f64,
) -> Result<Decommission, QueryError> {
    let queries = decommission_queries(dataset, window);
    let step = decommission_step(window);
    let batch_query = batch_counter_query(Some(dataset));
    let (known, mode, reads, new_series, history) = tokio::try_join!(
        prom.query(&queries[0].1, now),
        prom.query(&queries[1].1, now),
        prom.query(&queries[2].1, now),
        prom.query(&queries[3].1, now),
        prom.query_range(&batch_query, now - window, now, step),
    )?;
    let mut d = judge_decommission(
        dataset,
        window,
        now,
        step,
        &[&known, &mode, &reads, &new_series, &history],
    );
    if let Some(q) = batch_requests {
        let served = prom
            .query(&batch::substitute(q, dataset, window), now)
            .await?;
        let sent = d
            .consumers
            .iter()
            .map(|c| c.batch_reads)
            .fold(0.0, |a, b| a + b);
        let u = batch::unknown_readers(&served, sent, window);
        d.unknown_readers_block = batch::unknown_readers_block(&u, tolerance);
        d.ready &= d.unknown_readers_block.is_none();
        d.unknown_readers = Some(u);
    }
    Ok(d)
}

/// Pure part of `decommission`: answers in `decommission_queries` order,
/// then the batch counter history.
pub fn judge_decommission(
    dataset: &str,
    window: f64,
    now: f64,
    step: f64,
    answers: &[&Vec<Series>; 5],
) -> Decommission {
    let [known, mode, reads, new_series, history] = *answers;
    let mut consumers: BTreeMap<String, DecommissionConsumer> = BTreeMap::new();
    let mut last_modes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in known.iter() {
        decommission_entry(&mut consumers, s);
        last_modes
            .entry(s.label("consumer").to_owned())
            .or_default()
            .push(s.label("mode").to_owned());
    }
    for s in mode.iter().filter(|s| s.value() == Some(1.0)) {
        let c = decommission_entry(&mut consumers, s);
        c.reporting = true;
        c.modes.push(s.label("mode").to_owned());
    }
    for s in reads.iter() {
        let v = s.value().filter(|v| v.is_finite()).unwrap_or(0.0);
        decommission_entry(&mut consumers, s).batch_reads += v;
    }
    for s in new_series.iter() {
        if s.value().is_some_and(|v| v > 0.0) {
            decommission_entry(&mut consumers, s).batch_reads_unseen_by_increase = true;
        }
    }
    for s in history.iter() {
        if let Some(t) = verdict::last_counter_rise(&s.samples, now - window, step) {
            let c = decommission_entry(&mut consumers, s);
            c.last_batch_read = Some(c.last_batch_read.map_or(t, |l: f64| l.max(t)));
        }
    }
    let mut list: Vec<DecommissionConsumer> = consumers.into_values().collect();
    for c in &mut list {
        if !c.reporting {
            c.modes = last_modes.remove(&c.consumer).unwrap_or_default();
        }
        c.modes.sort();
        c.modes.dedup();
        verdict::decommission_blocks(c);
    }
    Decommission {
        dataset: dataset.to_owned(),
        evaluated_at: now,
        window_seconds: window,
        ready: verdict::decommission(&list),
        consumers: list,
        unknown_readers: None,
        unknown_readers_block: None,
    }
}

fn decommission_entry<'a>(
    consumers: &'a mut BTreeMap<String, DecommissionConsumer>,
    s: &Series,
) -> &'a mut DecommissionConsumer {
    consumers
        .entry(s.label("consumer").to_owned())
        .or_insert_with(|| DecommissionConsumer {
            consumer: s.label("consumer").to_owned(),
            modes: Vec::new(),
            reporting: false,
            batch_reads: 0.0,
            batch_reads_unseen_by_increase: false,
            last_batch_read: None,
            blocks: Vec::new(),
        })
}

/// Parses `--window`: `90s`, `30m`, `1h`, `7d`, `2w`, or combinations (`1h30m`).
pub fn parse_window(s: &str) -> Result<f64, String> {
    let bad = || format!("`{s}` is not a duration (e.g. 30m, 1h, 7d)");
    let mut total = 0.0;
    let mut digits = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: f64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total += n * match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            'w' => 604_800.0,
            _ => return Err(bad()),
        };
        any = true;
    }
    if !digits.is_empty() || !any || total <= 0.0 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(f64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn windows_parse_as_prometheus_durations() {
        assert_eq!(parse_window("1h"), Ok(3600.0));
        assert_eq!(parse_window("7d"), Ok(604_800.0));
        assert_eq!(parse_window("1h30m"), Ok(5400.0));
        assert!(parse_window("1").is_err());
        assert!(parse_window("h").is_err());
        assert!(parse_window("5x").is_err());
        assert!(parse_window("0s").is_err());
    }

    #[test]
    fn queries_filter_by_dataset_and_use_increase() {
        let q = board_queries(Some("orders"), 3600.0);
        let reads = &q.iter().find(|(n, _)| *n == "reads").expect("reads").1;
        assert_eq!(
            reads,
            r#"sum by (consumer, dataset, side) (increase(cutover_requests_total{dataset="orders"}[3600s]))"#
        );
        let d = decommission_queries("orders", 604_800.0);
        assert_eq!(
            d[2].1,
            r#"sum by (consumer, dataset) (increase(cutover_upstream_requests_total{side="batch",dataset="orders"}[604800s]))"#
        );
    }

    #[test]
    fn a_consumer_that_stopped_reporting_stays_on_the_board() {
        let now = 1_800_000_000.0;
        let req = Request {
            dataset: None,
            window: 3600.0,
            now,
            batch_requests: None,
            batch_watermark: None,
        };
        let gone_history = series(
            &[
                ("consumer", "gone"),
                ("dataset", "orders"),
                ("mode", "streaming"),
            ],
            &[(now - 7200.0, 1.0), (now - 3600.0, 1.0)],
        );
        let here = series(
            &[
                ("consumer", "here"),
                ("dataset", "orders"),
                ("mode", "batch"),
            ],
            &[(now, 1.0)],
        );
        let risk = series(&[("consumer", "gone"), ("risk", "low")], &[(now, 1.0)]);
        let a = Answers {
            risk: &[risk],
            mode: std::slice::from_ref(&here),
            reads: &[],
            fallbacks: &[],
            attempts: &[],
            comparisons: &[],
            divergences: &[],
            contract_checks: &[],
            compared_since: &[],
            gate_trips: &[],
            gate_trips_settle: &[],
            gate_tripped_settle: &[],
            gate_tripped: &[],
            recent_modes: &[],
            recent_seen: &[],
            mode_history: &[gone_history, here.clone()],
            batch_counters: &[],
            history_start: now - HISTORY_SECONDS,
        };
        let board = assemble(&req, &a);
        assert_eq!(board.datasets.len(), 1);
        let names: Vec<_> = board.datasets[0]
            .consumers
            .iter()
            .map(|c| (c.consumer.as_str(), c.phase()))
            .collect();
        assert_eq!(
            names,
            [
                ("gone", verdict::Phase::NotReporting),
                ("here", verdict::Phase::Batch)
            ]
        );
        assert_eq!(board.datasets[0].consumers[0].last_modes, ["streaming"]);
        assert_eq!(board.datasets[0].consumers[0].last_seen, Some(now - 3600.0));
    }

    #[test]
    fn a_sidecar_that_stopped_between_two_history_steps_is_not_dropped() {
        // It ran for 20 minutes and stopped 10 minutes ago: no hourly step
        // of the history saw it, its raw samples did (found against a real
        // Prometheus: such a consumer vanished from the board).
        let now = 1_800_000_000.0;
        let req = Request {
            dataset: None,
            window: 3600.0,
            now,
            batch_requests: None,
            batch_watermark: None,
        };
        let cdm = |m: &'static str| vec![("consumer", "brief"), ("dataset", "orders"), ("mode", m)];
        let recent = [
            series(&cdm("canary"), &[(now, 0.0)]),
            series(&cdm("streaming"), &[(now, 1.0)]),
        ];
        let seen = [series(
            &[("consumer", "brief"), ("dataset", "orders")],
            &[(now, now - 600.0)],
        )];
        let a = Answers {
            risk: &[],
            mode: &[],
            reads: &[],
            fallbacks: &[],
            attempts: &[],
            comparisons: &[],
            divergences: &[],
            contract_checks: &[],
            compared_since: &[],
            gate_trips: &[],
            gate_trips_settle: &[],
            gate_tripped_settle: &[],
            gate_tripped: &[],
            recent_modes: &recent,
            recent_seen: &seen,
            mode_history: &[],
            batch_counters: &[],
            history_start: now - HISTORY_SECONDS,
        };
        let board = assemble(&req, &a);
        let brief = &board.datasets[0].consumers[0];
        assert_eq!(brief.consumer, "brief");
        assert_eq!(brief.phase(), verdict::Phase::NotReporting);
        assert_eq!(brief.last_modes, ["streaming"]);
        assert_eq!(brief.last_seen, Some(now - 600.0));
        let text = render::board(&board);
        assert!(
            text.contains("NOT REPORTING (last streaming, seen 10m ago)"),
            "{text}"
        );
        // No step caught it at all: known, and said to be recent.
        let unseen = assemble(
            &req,
            &Answers {
                recent_seen: &[],
                ..a
            },
        );
        let text = render::board(&unseen);
        assert!(
            text.contains("NOT REPORTING (last streaming, seen in the last 2h00m)"),
            "{text}"
        );
    }

    #[test]
    fn decommission_names_the_consumer_that_read_batch_after_a_restart() {
        let now = 1_800_000_000.0;
        let w = 604_800.0;
        let step = decommission_step(w);
        let labels = |c: &'static str, m: &'static str| {
            vec![("consumer", c), ("dataset", "orders"), ("mode", m)]
        };
        let mode = vec![
            series(&labels("a", "streaming_only"), &[(now, 1.0)]),
            series(&labels("b", "streaming_only"), &[(now, 1.0)]),
        ];
        let known = mode.clone();
        // b's sidecar restarted: 40 → 0 → 2; increase() says 2.
        let reads = vec![series(
            &[("consumer", "b"), ("dataset", "orders")],
            &[(now, 2.0)],
        )];
        let history = vec![series(
            &[("consumer", "b"), ("dataset", "orders"), ("result", "ok")],
            &[
                (now - 3000.0, 40.0),
                (now - 2000.0, 0.0),
                (now - 1000.0, 2.0),
            ],
        )];
        let d = judge_decommission(
            "orders",
            w,
            now,
            step,
            &[&known, &mode, &reads, &vec![], &history],
        );
        assert!(!d.ready);
        let b = &d.consumers[1];
        assert_eq!(b.consumer, "b");
        assert_eq!(b.last_batch_read, Some(now - 1000.0));
        assert!(d.consumers[0].blocks.is_empty());
        let clean = judge_decommission(
            "orders",
            w,
            now,
            step,
            &[&known, &mode, &vec![], &vec![], &vec![]],
        );
        assert!(clean.ready);
    }
}
