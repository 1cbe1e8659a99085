//! Keeps both sides' freshness current: a side that no read has touched for
//! `freshness.probe_interval` gets a light request (HEAD by default) to its
//! base URL, so `cutover_freshness_delta_seconds` stays meaningful while every
//! read goes to the other side. A busy side is never probed, and batch is
//! never probed in `streaming_only` mode.
//!
//! Many routes often share an upstream, so probes are planned per target
//! (one URL, method, interval and side settings), not per route:
//! - **shared**: one probe per target per interval, its answer applied to
//!   every route whose side wanted it (`RouteState::record_probe`: each
//!   route judges it by its own freshness settings; the attempt is counted
//!   once, on the route that sent it);
//! - **jittered**: each target has its own phase in the interval
//!   (`schedule`), so 300 routes do not all probe in the same second;
//! - **bounded**: at most `MAX_IN_FLIGHT` probes in flight; a due probe
//!   waits for a free slot (first come, first served), and a target whose
//!   last probe is still waiting or in flight skips its slot, so nothing
//!   piles up behind a hung upstream;
//! - a probe that cannot connect does not count against the side (error
//!   ratio, gate): see `RouteState::record_probe`.

mod schedule;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, header};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::config::{Mode, SideName};
use crate::decide::freshness::now_unix_ms;
use crate::net::upstream::{Outgoing, RequestBody};
use crate::serve::app::App;
use crate::state::live::{LiveRoute, Snapshot};

use schedule::Schedule;

/// How often the probe loop looks for due targets: fine enough that the
/// phases spread probes within a second, cheap (a comparison per target).
const TICK: Duration = Duration::from_millis(100);

/// Probes in flight at once, across every route and upstream.
const MAX_IN_FLIGHT: usize = 4;

/// Runs until `shutdown` flips.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut plan = Plan::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => plan.tick(&app, &slots, Instant::now()),
            _ = shutdown.changed() => return,
        }
    }
}

/// What makes two routes' probes one request: the same request to the same
/// place with the same client settings, on the same beat.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TargetKey {
    method: Method,
    /// The side's base URL: scheme, authority, path and query.
    url: String,
    interval: Duration,
    timeout: Duration,
    connect_timeout: Duration,
    ca_file: Option<PathBuf>,
}

/// One side of one route that a target's probe serves.
type Member = (Arc<LiveRoute>, SideName);

/// A target: its routes' sides (in snapshot order), when it is due, and
/// whether its last probe is still waiting or in flight.
#[derive(Debug)]
struct Target {
    key: TargetKey,
    members: Vec<Member>,
    schedule: Schedule,
    busy: Arc<AtomicBool>,
}

/// The targets of the snapshot that serves, regrouped when it changes; a
/// target that survives a reload keeps its schedule.
#[derive(Debug, Default)]
struct Plan {
    snapshot: Option<Arc<Snapshot>>,
    targets: Vec<Target>,
}

impl Plan {
    fn tick(&mut self, app: &App, slots: &Arc<Semaphore>, now: Instant) {
        self.refresh(app, now);
        let now_ms = now_unix_ms();
        let mut due: Vec<&mut Target> = self
            .targets
            .iter_mut()
            .filter(|t| t.schedule.is_due(now))
            .collect();
        // Oldest first: the order in which they queue for a slot.
        due.sort_by_key(|t| t.schedule.next_due());
        for target in due {
            target.schedule.advance(now);
            if target.busy.load(Ordering::Acquire) {
                continue;
            }
            let interval = target.key.interval;
            let wanting: Vec<Member> = target
                .members
                .iter()
                .filter(|(route, side)| wants_probe(route, *side, interval, now_ms))
                .cloned()
                .collect();
            if wanting.is_empty() {
                continue;
            }
            target.busy.store(true, Ordering::Release);
            let (method, slots, busy) = (
                target.key.method.clone(),
                slots.clone(),
                Busy(target.busy.clone()),
            );
            tokio::spawn(async move {
                let _busy = busy;
                // The semaphore is never closed.
                if let Ok(_slot) = slots.acquire_owned().await {
                    probe(method, wanting).await;
                }
            });
        }
    }

    /// Regroups the routes' sides into targets if another snapshot serves.
    fn refresh(&mut self, app: &App, now: Instant) {
        let snap = app.live.snapshot.load_full();
        if self
            .snapshot
            .as_ref()
            .is_some_and(|old| Arc::ptr_eq(old, &snap))
        {
            return;
        }
        let mut kept: HashMap<TargetKey, (Schedule, Arc<AtomicBool>)> = self
            .targets
            .drain(..)
            .map(|t| (t.key, (t.schedule, t.busy)))
            .collect();
        let mut index: HashMap<TargetKey, usize> = HashMap::new();
        for route in &snap.routes {
            let cfg = &route.config;
            let Some(interval) = cfg.freshness.probe_interval else {
                continue;
            };
            for side in SideName::BOTH {
                // In `streaming_only` nothing may reach batch: its silence is
                // the proof that batch can be switched off.
                if side == SideName::Batch && cfg.mode == Mode::StreamingOnly {
                    continue;
                }
                let s = cfg.side(side);
                let key = TargetKey {
                    method: cfg.freshness.probe_method.clone(),
                    url: s.base_url(),
                    interval,
                    timeout: s.timeout,
                    connect_timeout: s.connect_timeout,
                    ca_file: s.ca_file.clone(),
                };
                let member = (route.clone(), side);
                if let Some(&i) = index.get(&key) {
                    self.targets[i].members.push(member);
                    continue;
                }
                let (schedule, busy) = kept.remove(&key).unwrap_or_else(|| {
                    let phase =
                        schedule::phase_of(format!("{} {}", key.method, key.url).as_bytes());
                    (Schedule::first(now, phase, interval), Arc::default())
                });
                index.insert(key.clone(), self.targets.len());
                self.targets.push(Target {
                    key,
                    members: vec![member],
                    schedule,
                    busy,
                });
            }
        }
        self.snapshot = Some(snap);
    }
}

/// Whether `side` of `route` is idle: no read brought a watermark since the
/// last probe (the probe's own does not make it busy), or none for an
/// interval.
fn wants_probe(route: &LiveRoute, side: SideName, interval: Duration, now_ms: i64) -> bool {
    let st = &route.state;
    let seen = st.watermark(side).seen_at();
    let probed = st.probed_at[side.index()].load(Ordering::Relaxed);
    seen <= probed || now_ms - seen >= interval.as_millis() as i64
}

/// Marks a target free again when its probe task ends, however it ends.
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Sends one probe on behalf of `members` (the first sends it) and applies
/// its answer to each.
async fn probe(method: Method, members: Vec<Member>) {
    let Some((sender, side)) = members.first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static("cutover-probe"),
    );
    let out = Outgoing {
        method: Cow::Owned(method),
        path_and_query: sender.config.side(*side).base_path_and_query(),
        headers: Cow::Owned(headers),
        body: RequestBody::empty(),
    };
    // The time is the read path's figure, not a probe's (`record_probe`).
    let (response, _elapsed) = crate::serve::attempt::exchange(sender, *side, out).await;
    let now_ms = now_unix_ms();
    for (i, (route, side)) in members.iter().enumerate() {
        let (outcome, watermark_ms) =
            crate::serve::attempt::judge(&route.config, *side, &response, now_ms);
        route
            .state
            .record_probe(*side, outcome, watermark_ms, now_ms, i == 0);
        route.state.probed_at[side.index()].store(now_ms, Ordering::Relaxed);
        if i == 0 {
            tracing::debug!(route = %route.config.name, side = side.as_str(), shared_by = members.len(), ?outcome, "freshness probe");
        }
    }
}
