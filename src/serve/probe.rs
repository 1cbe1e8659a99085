//! Keeps both sides' freshness current: a side that no read has touched for
//! `freshness.probe_interval` gets one light request (HEAD by default) to its
//! base URL, so `cutover_freshness_delta_seconds` stays meaningful while every
//! read goes to the other side. A busy side is never probed, and batch is
//! never probed in `streaming_only` mode.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use tokio::sync::watch;

use crate::config::{Mode, SideName};
use crate::decide::freshness::now_unix_ms;
use crate::net::upstream::{Outgoing, RequestBody};
use crate::serve::app::App;

/// How often the probe loop looks for idle sides.
const TICK: Duration = Duration::from_secs(1);

/// Runs until `shutdown` flips.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => probe_idle_sides(&app),
            _ = shutdown.changed() => return,
        }
    }
}

fn probe_idle_sides(app: &App) {
    let snap = app.live.snapshot.load();
    let now = now_unix_ms();
    for route in &snap.routes {
        let Some(interval) = route.config.freshness.probe_interval else {
            continue;
        };
        let interval_ms = interval.as_millis() as i64;
        for side in SideName::BOTH {
            // In `streaming_only` nothing may reach batch: its silence is
            // the proof that batch can be switched off.
            if side == SideName::Batch && route.config.mode == Mode::StreamingOnly {
                continue;
            }
            let st = &route.state;
            let seen = st.watermark(side).seen_at();
            let probed = &st.probed_at[side.index()];
            if now - seen < interval_ms || now - probed.load(Ordering::Relaxed) < interval_ms {
                continue;
            }
            probed.store(now, Ordering::Relaxed);
            let route = route.clone();
            tokio::spawn(async move {
                let cfg = &route.config;
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::USER_AGENT,
                    HeaderValue::from_static("cutover-probe"),
                );
                let out = Outgoing {
                    method: Cow::Borrowed(&cfg.freshness.probe_method),
                    path_and_query: cfg.side(side).base_path_and_query(),
                    headers: Cow::Owned(headers),
                    body: RequestBody::empty(),
                };
                let attempt = crate::serve::attempt::send(&route, side, out).await;
                tracing::debug!(route = %cfg.name, side = side.as_str(), outcome = ?attempt.outcome, "freshness probe");
            });
        }
    }
}
