//! The gate evaluation task: one task for every gated route, off the read
//! path, and the state file kept in step with the trips.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::SideName;
use crate::decide::freshness::now_unix_ms;
use crate::serve::app::App;
use crate::state::gate::{CheckVerdict, state_file};
use crate::state::live::LiveRoute;

/// The longest the evaluation task sleeps, so a reload that adds a gate is
/// noticed soon even when every other gate's interval is long.
const MAX_NAP: Duration = Duration::from_millis(250);

/// Evaluates one route's gate now: counts each check's verdict and, on a
/// trip, counts and logs it at `warn`.
pub fn evaluate_route(route: &LiveRoute, now_ms: i64) {
    let cfg = &route.config;
    let Some(gate) = &cfg.gate else { return };
    let state = &route.state;
    let age = state.watermark(SideName::Streaming).age_seconds(now_ms);
    let Some((results, trip)) = state
        .gate
        .evaluate(cfg.mode, gate, age, now_ms, SystemTime::now())
    else {
        return;
    };
    let m = &state.metrics;
    for r in &results {
        m.gate_checks[r.verdict.index()].increment(1);
    }
    if let Some(trip) = trip {
        m.gate_trips[trip.check.index()].increment(1);
        let also: Vec<&str> = results
            .iter()
            .filter(|r| r.verdict == CheckVerdict::Fail && r.check != trip.check)
            .map(|r| r.check.as_str())
            .collect();
        tracing::warn!(
            route = %cfg.name,
            check = trip.check.as_str(),
            value = trip.value,
            threshold = trip.threshold,
            window = ?gate.window,
            evaluations = gate.failures,
            also_failed = ?also,
            rollback_to = gate.rollback_to.as_str(),
            "gate tripped: {} failed {} evaluations in a row; every new read is served as {} until the route's mode or gate is edited",
            trip.check.as_str(),
            gate.failures,
            gate.rollback_to.as_str(),
        );
    }
}

/// The evaluation task: evaluates each gated route when its interval comes
/// round, and keeps the state file in step with the trips (the write is a
/// small file, done in this task: never on a read's path). Ends on `shutdown`.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut saved = None;
    loop {
        let snap = app.live.snapshot.load_full();
        let now = Instant::now();
        let mut wake = now + MAX_NAP;
        for route in &snap.routes {
            let Some(gate) = &route.config.gate else {
                continue;
            };
            if !route.config.mode.serves_streaming() {
                continue;
            }
            let (due, next) = route.state.gate.schedule(gate.interval, now);
            if due {
                evaluate_route(route, now_unix_ms());
            }
            wake = wake.min(next);
        }
        if let Some(path) = &snap.settings.state_file {
            let path = app.live.data_dir.join(path);
            state_file::save_if_changed(&path, &snap, &mut saved);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = shutdown.changed() => return,
        }
    }
}
