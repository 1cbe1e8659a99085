//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/status`, the
//! status page `/` and the effective config `/config`. Never on the
//! consumer's listener.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{FallbackReason, Mode, Route, Rule, SideName, effective};
use crate::decide::freshness::now_unix_ms;
use crate::decide::reconcile::outcome::Verdict;
use crate::net::conn::{self, ConnInfo, ConnLimits};
use crate::serve::app::App;
use crate::state::live::LiveRoute;
use crate::state::metrics::{CONNECTIONS_RECLAIMED_TOTAL, Scrape, label};
use crate::state::route::{ContractResult, Figures};
use crate::state::status::{
    ConfigInfo, ContractStatus, LastReload, PerSide, RouteStatus, StatusDoc,
};

/// The status page: static HTML whose own script renders `/status` and
/// fetches it again every 2 s. Compiled in, so it needs no files at run time
/// and nothing from outside (no CDN, no fonts).
const STATUS_PAGE: &str = include_str!("status_page.html");

/// Serves the admin endpoints until `shutdown` flips. A slow or silent
/// client is cut here as on `listen` (`limits`): the admin port is
/// reachable from the whole pod network (Prometheus scrapes it).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    limits: ConnLimits,
) {
    let counters = app.admin_connections.clone();
    let make_service = |_: ConnInfo| {
        let app = app.clone();
        service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(answer(&app, &req)) }
        })
    };
    // Nothing to drain: every admin answer is made at once.
    conn::serve(
        listener,
        limits,
        counters,
        make_service,
        shutdown,
        Duration::ZERO,
    )
    .await;
}

/// An admin answer's body: made at once, or a scrape written in chunks as
/// the client reads it (a thousand routes' scrape is megabytes).
pub enum AdminBody {
    Full(Full<Bytes>),
    Scrape(Scrape),
}

impl hyper::body::Body for AdminBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            AdminBody::Full(f) => std::pin::Pin::new(f).poll_frame(cx),
            AdminBody::Scrape(s) => {
                std::task::Poll::Ready(s.next().map(|b| Ok(hyper::body::Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AdminBody::Full(f) => f.is_end_stream(),
            AdminBody::Scrape(_) => false,
        }
    }

    /// A whole answer's length (its `content-length`, on HEAD too); a
    /// scrape's is not known until written (chunked).
    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            AdminBody::Full(f) => f.size_hint(),
            AdminBody::Scrape(_) => hyper::body::SizeHint::default(),
        }
    }
}

fn answer(app: &App, req: &Request<Incoming>) -> Response<AdminBody> {
    if req.uri().path() == "/metrics" && matches!(*req.method(), Method::GET | Method::HEAD) {
        refresh_gauges(app);
        let mut r = Response::new(AdminBody::Scrape(app.live.registry.metrics().scrape()));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return r;
    }
    respond(app, req).map(AdminBody::Full)
}

fn respond(app: &App, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/" => {
            let mut r = Response::new(Full::new(Bytes::from_static(STATUS_PAGE.as_bytes())));
            let headers = r.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            // The page is self-contained: the browser may run its inline
            // script and fetch from this origin, and load nothing else.
            headers.insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                     connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
                ),
            );
            r
        }
        "/config" => text(StatusCode::OK, effective_config(app)),
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
            "try / (the status page), /status, /config, /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// `/config`: the serving config as cutover compiled it, defaults filled in
/// (see `config::effective`), under a comment naming where it came from.
/// Plain text rather than `application/yaml`, so a browser shows it.
fn effective_config(app: &App) -> String {
    let snap = app.live.snapshot.load();
    let routes: Vec<&Route> = snap.routes.iter().map(|r| &r.config).collect();
    let (listen, admin) = app.bound;
    format!(
        "# The effective config: {path} as cutover compiled it, every default filled in.\n\
         # generation {generation}, sha256 {sha}; bound: listen {listen}, admin {admin}\n\
         # It is itself a config (`cutover check -c FILE` accepts it).\n{body}",
        // A line break in the path would end the comment early.
        path = app
            .reloader
            .config_path()
            .display()
            .to_string()
            .replace(char::is_control, "?"),
        generation = snap.settings.generation,
        sha = snap.sha256,
        body = effective::render(&snap.settings, &routes),
    )
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

/// The mode a route is serving in right now: a tripped gate imposes its
/// `rollback_to`; an open circuit turns `streaming` and `canary` into
/// `batch` until a trial read succeeds.
pub fn effective_mode(route: &LiveRoute) -> Mode {
    if let Some(mode) = route.state.gate.rollback() {
        return mode;
    }
    match route.config.mode {
        Mode::Streaming | Mode::Canary if route.state.circuit.is_open() => Mode::Batch,
        m => m,
    }
}

/// Brings the gauges that depend on "now" up to date before a scrape.
fn refresh_gauges(app: &App) {
    let snap = app.live.snapshot.load();
    let now_ms = now_unix_ms();
    for route in &snap.routes {
        let m = &route.state.metrics;
        let f = route.state.figures(now_ms);
        // Unknown (nothing seen, or nothing in the window) is NaN, never a
        // stale value or a reassuring 0.
        let known = |v: Option<f64>| v.unwrap_or(f64::NAN);
        for s in SideName::BOTH {
            m.data_age[s.index()].set(known(f.age[s.index()]));
            m.error_ratio[s.index()].set(known(f.error_ratio[s.index()]));
        }
        m.freshness_delta.set(known(f.freshness_delta));
        m.error_ratio_delta.set(known(f.error_ratio_delta));
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
        let tripped = route.state.gate.rollback().is_some();
        m.gate_tripped.set(if tripped { 1.0 } else { 0.0 });
    }
    let metrics = app.live.registry.metrics();
    let consumer = &snap.settings.consumer;
    for (listener, c) in [
        ("consumer", &app.consumer_connections),
        ("admin", &app.admin_connections),
    ] {
        metrics.publish_connections(
            consumer,
            listener,
            c.open.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed),
        );
        let labels = vec![
            label("consumer", consumer.clone()),
            label("listener", listener),
        ];
        metrics
            .counter(CONNECTIONS_RECLAIMED_TOTAL, labels)
            .absolute(c.reclaimed.load(Ordering::Relaxed));
    }
    metrics.publish_reads(
        consumer,
        app.reads.inflight.load(Ordering::Relaxed),
        app.reads.shed.load(Ordering::Relaxed),
    );
}

/// A route's contract figures as `/status` shows them.
fn contract_status(contract: &crate::config::Contract, f: &Figures) -> ContractStatus {
    let n = |r: ContractResult| f.contract[r.index()];
    ContractStatus {
        checked: n(ContractResult::Pass) + n(ContractResult::Violation),
        pass: n(ContractResult::Pass),
        violation: n(ContractResult::Violation),
        skipped: n(ContractResult::Skipped),
        by_rule: Rule::ALL
            .iter()
            .map(|r| (r.as_str().to_owned(), f.contract_rules[r.index()]))
            .collect(),
        on_violation: contract.on_violation.as_str().to_owned(),
    }
}

/// The `/status` document: what `cutover status` prints.
pub fn status(app: &App) -> StatusDoc {
    let (reload, snap) = app.reloader.status_with(&app.live);
    let settings = &snap.settings;
    let now_ms = now_unix_ms();
    let routes = snap
        .routes
        .iter()
        .map(|r| {
            let cfg = &r.config;
            let f = r.state.figures(now_ms);
            RouteStatus {
                name: cfg.name.clone(),
                dataset: cfg.dataset.clone(),
                path_prefix: cfg.prefix.clone(),
                configured_mode: cfg.mode.as_str().to_owned(),
                effective_mode: effective_mode(r).as_str().to_owned(),
                canary_percent: (cfg.mode == Mode::Canary).then_some(cfg.canary.percent),
                circuit: r.state.circuit.state_name(now_ms).to_owned(),
                batch_url: cfg.batch.base_url(),
                streaming_url: cfg.streaming.base_url(),
                reads: PerSide::from_array(f.reads.map(Some)),
                fallbacks: Some(f.fallbacks_total()),
                fallbacks_by_reason: FallbackReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_owned(), f.fallbacks[r.index()]))
                    .collect(),
                comparisons: Verdict::ALL
                    .iter()
                    .map(|v| (v.as_str().to_owned(), f.verdicts[v.index()]))
                    .collect(),
                window_seconds: Some(f.window.as_secs_f64()),
                fallback_rate: f.fallback_ratio,
                data_age_seconds: PerSide::from_array(f.age),
                freshness_delta_seconds: f.freshness_delta,
                error_ratio: PerSide::from_array(f.error_ratio),
                error_ratio_delta: f.error_ratio_delta,
                divergence_ratio: f.divergence_ratio,
                gate: Some(r.state.gate.status()),
                contract: cfg.contract.as_ref().map(|c| contract_status(c, &f)),
            }
        })
        .collect();
    StatusDoc {
        consumer: settings.consumer.clone(),
        risk: Some(settings.risk.as_str().to_owned()),
        listen: app.bound.0.to_string(),
        admin: app.bound.1.to_string(),
        config: ConfigInfo {
            path: app.reloader.config_path().display().to_string(),
            generation: Some(settings.generation),
            sha256: snap.sha256.clone(),
        },
        last_reload: LastReload {
            result: reload.result.map(|r| r.as_str().to_owned()),
            error: reload.error,
            at: reload.at.and_then(crate::decide::freshness::rfc3339),
            restart_needed: reload.restart_needed,
        },
        routes,
    }
}
