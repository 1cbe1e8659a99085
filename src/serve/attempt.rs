//! One upstream attempt, recorded: the read goes to one side of a route, and
//! its result, latency, watermark and error window are counted whoever asked
//! (the consumer's read, a comparison's other read, or a freshness probe).

use std::time::{Duration, Instant};

use http::{Response, StatusCode};

use crate::config::{Route, SideName};
use crate::decide::fallback::AttemptOutcome;
use crate::decide::freshness::{now_unix_ms, watermark_of};
use crate::net::upstream::{self, AttemptError, Outgoing, UpstreamBody};
use crate::state::live::LiveRoute;

/// What one attempt brought back.
#[derive(Debug)]
pub struct Attempt {
    /// The one classification of the attempt (metric result, fallback
    /// reason, circuit).
    pub outcome: AttemptOutcome,
    /// The watermark the answer carried (Unix ms), if any.
    pub watermark_ms: Option<i64>,
    /// Time to the response head (or to the failure).
    pub elapsed: Duration,
    /// The response head (its body still streaming), or why there is none.
    pub response: Result<Response<UpstreamBody>, AttemptError>,
}

/// Sends `out` to `side` of `route`, waits for the response head (at most
/// the side's timeout) and records the attempt in the route's state.
pub async fn send(route: &LiveRoute, side: SideName, out: Outgoing<'_>) -> Attempt {
    let (response, elapsed) = exchange(route, side, out).await;
    let now_ms = now_unix_ms();
    let (outcome, watermark_ms) = judge(&route.config, side, &response, now_ms);
    route
        .state
        .record_attempt(side, outcome, elapsed, watermark_ms, now_ms);
    Attempt {
        outcome,
        watermark_ms,
        elapsed,
        response,
    }
}

/// Sends `out` to `side` of `route` and waits for the response head (at
/// most the side's timeout), recording nothing: for a caller that records
/// the answer itself (the idle-side probe, whose one answer serves every
/// route that shares its target).
pub async fn exchange(
    route: &LiveRoute,
    side: SideName,
    out: Outgoing<'_>,
) -> (Result<Response<UpstreamBody>, AttemptError>, Duration) {
    let started = Instant::now();
    let response = upstream::attempt(route.client(side), route.config.side(side), out).await;
    (response, started.elapsed())
}

/// What `response` from `side` means to a route configured as `cfg`: its
/// outcome and the watermark it carried (each route reads its own
/// `freshness.header` and judges staleness by its own `max_staleness`).
pub fn judge(
    cfg: &Route,
    side: SideName,
    response: &Result<Response<UpstreamBody>, AttemptError>,
    now_ms: i64,
) -> (AttemptOutcome, Option<i64>) {
    match response {
        Ok(resp) => {
            let watermark = watermark_of(
                resp.headers(),
                &cfg.freshness.header,
                cfg.freshness.last_modified_fallback,
            );
            let max_age = match side {
                SideName::Streaming => cfg.fallback.max_staleness,
                SideName::Batch => None,
            };
            (
                classify(resp.status(), watermark, max_age, now_ms),
                watermark,
            )
        }
        Err(AttemptError::Connect(_)) => (AttemptOutcome::Connect, None),
        Err(AttemptError::Protocol(_)) => (AttemptOutcome::Protocol, None),
        Err(AttemptError::Timeout(_)) => (AttemptOutcome::Timeout, None),
    }
}

/// An answer's outcome: 5xx first (a failure whatever its data), then data
/// older than `max_age`, then 4xx, else ok.
fn classify(
    status: StatusCode,
    watermark_ms: Option<i64>,
    max_age: Option<Duration>,
    now_ms: i64,
) -> AttemptOutcome {
    let stale = matches!((watermark_ms, max_age), (Some(w), Some(max)) if now_ms - w > max.as_millis() as i64);
    if status.is_server_error() {
        AttemptOutcome::Status5xx
    } else if stale {
        AttemptOutcome::Stale
    } else if status.is_client_error() {
        AttemptOutcome::Status4xx
    } else {
        AttemptOutcome::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_5xx_then_stale_then_4xx() {
        let max = Some(Duration::from_secs(10));
        let now = 100_000;
        let old = Some(now - 20_000);
        let fresh = Some(now - 1_000);
        let c = |code: u16, wm, max| classify(StatusCode::from_u16(code).unwrap(), wm, max, now);
        assert_eq!(c(503, old, max), AttemptOutcome::Status5xx);
        assert_eq!(c(404, old, max), AttemptOutcome::Stale);
        assert_eq!(c(200, old, max), AttemptOutcome::Stale);
        assert_eq!(c(404, fresh, max), AttemptOutcome::Status4xx);
        assert_eq!(c(200, fresh, max), AttemptOutcome::Ok);
        assert_eq!(c(200, None, max), AttemptOutcome::Ok);
        assert_eq!(c(200, old, None), AttemptOutcome::Ok);
    }
}
