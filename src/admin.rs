//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/status`. Never on
//! the consumer's listener.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::App;
use crate::config::{Mode, Route, SideName};
use crate::freshness::now_unix_ms;

/// Serves the admin endpoints until `shutdown` flips.
pub async fn serve(app: Arc<App>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let app = app.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(respond(&app, &req)) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

fn respond(app: &App, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            refresh_gauges(app);
            let mut r = text(StatusCode::OK, app.registry.metrics().render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            if app.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
            }
        }
        "/status" => {
            let body = serde_json::to_string_pretty(&status(app)).unwrap_or_default();
            let mut r = text(StatusCode::OK, body);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "try /metrics, /healthz, /readyz or /status\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The mode a route is serving in right now: an open circuit turns
/// `streaming` and `canary` into `batch` until a trial read succeeds.
pub fn effective_mode(route: &Route) -> Mode {
    match route.mode {
        Mode::Streaming | Mode::Canary if route.state.circuit.is_open() => Mode::Batch,
        m => m,
    }
}

/// Per-route figures derived at a point in time.
struct Figures {
    age: [Option<f64>; 2],
    delta: Option<f64>,
    error_ratio: [Option<f64>; 2],
    error_delta: Option<f64>,
    divergence_ratio: Option<f64>,
}

fn figures(route: &Route, now_ms: i64) -> Figures {
    let st = &route.state;
    let age = SideName::BOTH.map(|s| st.watermark(s).age_seconds(now_ms));
    let errors = st.errors.load();
    let error_ratio = SideName::BOTH.map(|s| errors[s.index()].ratio(now_ms));
    let both = |a: [Option<f64>; 2], f: fn(f64, f64) -> f64| match a {
        [Some(b), Some(s)] => Some(f(b, s)),
        _ => None,
    };
    Figures {
        age,
        delta: both(age, |b, s| b - s),
        error_ratio,
        error_delta: both(error_ratio, |b, s| s - b),
        divergence_ratio: st.divergence.load().ratio(now_ms),
    }
}

/// Brings the gauges that depend on "now" up to date before a scrape.
fn refresh_gauges(app: &App) {
    let snap = app.snapshot.load();
    let now_ms = now_unix_ms();
    for route in &snap.config.routes {
        let m = &route.state.metrics;
        let f = figures(route, now_ms);
        // Unknown (nothing seen, or nothing in the window) is NaN, never a
        // stale value or a reassuring 0.
        let known = |v: Option<f64>| v.unwrap_or(f64::NAN);
        for s in SideName::BOTH {
            m.data_age[s.index()].set(known(f.age[s.index()]));
            m.error_ratio[s.index()].set(known(f.error_ratio[s.index()]));
        }
        m.freshness_delta.set(known(f.delta));
        m.error_ratio_delta.set(known(f.error_delta));
        m.divergence_ratio.set(f.divergence_ratio.unwrap_or(0.0));
        let effective = effective_mode(route);
        for mode in Mode::ALL {
            m.route_mode[mode.index()].set(if mode == effective { 1.0 } else { 0.0 });
        }
        m.circuit_open.set(if route.state.circuit.is_open() {
            1.0
        } else {
            0.0
        });
    }
}

fn rfc3339(t: std::time::SystemTime) -> Option<String> {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The `/status` document: what `cutover status` prints.
pub fn status(app: &App) -> Value {
    let snap = app.snapshot.load();
    let cfg = &snap.config;
    let now_ms = now_unix_ms();
    let reload = app
        .reload_status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let routes: Vec<Value> = cfg
        .routes
        .iter()
        .map(|r| {
            let st = &r.state;
            let f = figures(r, now_ms);
            let reads = SideName::BOTH.map(|s| st.reads[s.index()].load(Ordering::Relaxed));
            let total = reads[0] + reads[1];
            let fallbacks = st.fallbacks.load(Ordering::Relaxed);
            json!({
                "name": r.name,
                "path_prefix": r.prefix,
                "configured_mode": r.mode.as_str(),
                "effective_mode": effective_mode(r).as_str(),
                "circuit": st.circuit.state_name(now_ms),
                "batch_url": r.batch.base_url(),
                "streaming_url": r.streaming.base_url(),
                "reads": { "batch": reads[0], "streaming": reads[1] },
                "fallbacks": fallbacks,
                "fallback_rate": if total > 0 { Some(fallbacks as f64 / total as f64) } else { None },
                "data_age_seconds": { "batch": f.age[0], "streaming": f.age[1] },
                "freshness_delta_seconds": f.delta,
                "error_ratio": { "batch": f.error_ratio[0], "streaming": f.error_ratio[1] },
                "error_ratio_delta": f.error_delta,
                "divergence_ratio": f.divergence_ratio,
            })
        })
        .collect();
    json!({
        "consumer": cfg.consumer,
        "risk": cfg.risk.as_str(),
        "config": {
            "path": app.config_path.display().to_string(),
            "generation": cfg.generation,
        },
        "last_reload": {
            "result": if reload.result.is_empty() { None } else { Some(reload.result) },
            "error": reload.error,
            "at": reload.at.and_then(rfc3339),
            "restart_needed": reload.restart_needed,
        },
        "routes": routes,
    })
}
