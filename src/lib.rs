//! cutover: a sidecar HTTP proxy that moves one consumer's reads from a batch
//! pipeline's output to a streaming pipeline's output, one config edit at a
//! time, with batch as the automatic fallback.
//!
//! `start` / `run` are what `main` and the integration tests call.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod demo;
pub mod fallback;
pub mod freshness;
pub mod metrics;
pub mod probe;
pub mod proxy;
pub mod reconcile;
pub mod routing;
pub mod state;
pub mod status_table;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Compiled, ConfigErrors};
use crate::metrics::{Metrics, ProcessMetrics};
use crate::state::StateRegistry;
use crate::upstream::{UpstreamClient, Upstreams};

/// A config plus the runtime resources it needs (pooled clients per side).
/// One `ArcSwap<Snapshot>` holds the live one; each read loads it once.
pub struct Snapshot {
    pub config: Compiled,
    /// `clients[i]` serves `config.routes[i]`, indexed by `SideName::index`.
    pub clients: Vec<[UpstreamClient; 2]>,
    /// Hash of the file text this came from, to skip reloads of unchanged content.
    pub source_hash: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("config", &self.config)
            .finish()
    }
}

/// The outcome of the last reload attempt, for `/status`.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// "ok", "error", or "" before any reload.
    pub result: &'static str,
    pub error: Option<String>,
    pub at: Option<SystemTime>,
    /// Set when the applied file changed `listen` or `admin`, which need a restart.
    pub restart_needed: Option<String>,
}

/// Everything a running cutover shares between its listeners and tasks.
pub struct App {
    pub snapshot: ArcSwap<Snapshot>,
    pub config_path: PathBuf,
    pub registry: StateRegistry,
    pub upstreams: Upstreams,
    pub process_metrics: ProcessMetrics,
    pub reload_status: Mutex<ReloadStatus>,
    pub ready: AtomicBool,
    /// Divergence log writers, one per file, shared across reloads.
    pub divergence_logs: reconcile::log::DivergenceLogs,
    /// Serialises reloads (watcher and SIGHUP may race); never taken per read.
    reload_lock: Mutex<()>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config_path", &self.config_path)
            .finish()
    }
}

/// Why cutover could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    CaFile(#[from] upstream::CaFileError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot write the demo files in {path}: {source}")]
    DemoFiles {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file parsed and is now live at this generation.
    Applied(u64),
    /// The file's content is what is already live; nothing changed.
    Unchanged,
    /// The file is bad; the last good config keeps serving.
    Rejected(String),
}

impl Snapshot {
    /// Pairs a compiled config with pooled clients for every side.
    fn new(
        config: Compiled,
        upstreams: &Upstreams,
        source_hash: u64,
    ) -> Result<Snapshot, upstream::CaFileError> {
        let mut clients = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            clients.push([upstreams.client(&r.batch)?, upstreams.client(&r.streaming)?]);
        }
        for r in &config.routes {
            publish_mode(r);
        }
        Ok(Snapshot {
            config,
            clients,
            source_hash,
        })
    }
}

impl App {
    /// Re-reads the config file and swaps it in if it is good. `force`
    /// applies it even if unchanged (SIGHUP). Counts, logs and records the
    /// result for `/status`.
    pub fn reload(&self, force: bool) -> ReloadOutcome {
        let _serial = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.snapshot.load();
        let text = match config::read(&self.config_path) {
            Ok(t) => t,
            Err(e) => return self.reject(e.to_string()),
        };
        let text_hash = routing::fnv1a(text.as_bytes());
        if !force && text_hash == current.source_hash {
            return ReloadOutcome::Unchanged;
        }
        let generation = current.config.generation + 1;
        let compiled =
            match config::compile_str(&self.config_path, &text, &self.registry, generation) {
                Ok(c) => c,
                Err(e) => return self.reject(e.to_string()),
            };
        let mut restart = Vec::new();
        if compiled.listen != current.config.listen {
            restart.push(format!(
                "listen {} -> {}",
                current.config.listen, compiled.listen
            ));
        }
        if compiled.admin != current.config.admin {
            restart.push(format!(
                "admin {} -> {}",
                current.config.admin, compiled.admin
            ));
        }
        let snapshot = match Snapshot::new(compiled, &self.upstreams, text_hash) {
            Ok(s) => s,
            Err(e) => return self.reject(e.to_string()),
        };
        self.snapshot.store(Arc::new(snapshot));
        self.process_metrics.reloads_ok.increment(1);
        self.process_metrics.generation.set(generation as f64);
        let restart_needed = (!restart.is_empty()).then(|| {
            let msg = format!("{} need a restart to take effect", restart.join(", "));
            tracing::warn!(config = %self.config_path.display(), "{msg}");
            msg
        });
        tracing::info!(generation, config = %self.config_path.display(), "config applied");
        *self.reload_status.lock().unwrap_or_else(|p| p.into_inner()) = ReloadStatus {
            result: "ok",
            error: None,
            at: Some(SystemTime::now()),
            restart_needed,
        };
        ReloadOutcome::Applied(generation)
    }

    fn reject(&self, error: String) -> ReloadOutcome {
        self.process_metrics.reloads_error.increment(1);
        tracing::error!(config = %self.config_path.display(), "config rejected, last good config keeps serving:\n{error}");
        let mut status = self.reload_status.lock().unwrap_or_else(|p| p.into_inner());
        status.result = "error";
        status.error = Some(error.clone());
        status.at = Some(SystemTime::now());
        ReloadOutcome::Rejected(error)
    }
}

/// Sets `cutover_route_mode` and `cutover_circuit_open` for a route's new config.
fn publish_mode(r: &config::Route) {
    for m in config::Mode::ALL {
        r.state.metrics.route_mode[m.index()].set(if m == r.mode { 1.0 } else { 0.0 });
    }
}

/// A started cutover: its bound addresses and the handle to stop it.
pub struct Running {
    pub app: Arc<App>,
    listen_addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Where consumers send reads (the real port when config said `:0`).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Where `/metrics`, `/healthz`, `/readyz` and `/status` answer.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Stops accepting, drains in-flight reads (bounded by `shutdown_grace`)
    /// and returns when everything has stopped.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the proxy stops (after `shutdown` from elsewhere).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Loads the config, binds both listeners, starts the watcher, the probe and
/// the servers, and returns once they accept connections.
pub async fn start(config_path: &Path) -> Result<Running, StartError> {
    start_with_metrics(config_path, Metrics::new()).await
}

async fn start_with_metrics(config_path: &Path, metrics: Metrics) -> Result<Running, StartError> {
    let config_path = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_owned());
    let registry = StateRegistry::new(metrics.clone());
    let text = config::read(&config_path)?;
    let compiled = config::compile_str(&config_path, &text, &registry, 1)?;
    let upstreams = Upstreams::default();
    let snapshot = Snapshot::new(compiled, &upstreams, routing::fnv1a(text.as_bytes()))?;
    let process_metrics = ProcessMetrics::new(&metrics, &snapshot.config.consumer);
    process_metrics.generation.set(1.0);
    let listen = snapshot.config.listen;
    let admin = snapshot.config.admin;
    let grace = snapshot.config.runtime.shutdown_grace;
    let app = Arc::new(App {
        snapshot: ArcSwap::from_pointee(snapshot),
        config_path: config_path.clone(),
        registry,
        upstreams,
        process_metrics,
        reload_status: Mutex::new(ReloadStatus::default()),
        ready: AtomicBool::new(false),
        divergence_logs: Default::default(),
        reload_lock: Mutex::new(()),
    });

    let bind = |what: &'static str, addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { what, addr, source })
    };
    let proxy_listener = bind("listen", listen).await?;
    let admin_listener = bind("admin", admin).await?;
    let listen_addr = proxy_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "listen",
            addr: listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "admin",
            addr: admin,
            source,
        })?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let watcher = config::watch::spawn(app.clone(), shutdown_rx.clone()).map_err(|source| {
        StartError::Watch {
            path: config_path.clone(),
            source,
        }
    })?;
    let probe = tokio::spawn(probe::run(app.clone(), shutdown_rx.clone()));
    let upkeep = tokio::spawn(upkeep(app.clone(), shutdown_rx.clone()));
    let admin_task = tokio::spawn(admin::serve(
        app.clone(),
        admin_listener,
        shutdown_rx.clone(),
    ));
    let proxy_task = tokio::spawn(proxy::serve(
        app.clone(),
        proxy_listener,
        shutdown_rx,
        grace,
    ));
    app.ready.store(true, Ordering::Release);
    tracing::info!(%listen_addr, %admin_addr, config = %config_path.display(), "cutover serving");

    let task = tokio::spawn(async move {
        let _ = proxy_task.await;
        watcher.stop();
        probe.abort();
        upkeep.abort();
        let _ = admin_task.await;
    });
    Ok(Running {
        app,
        listen_addr,
        admin_addr,
        shutdown: shutdown_tx,
        task,
    })
}

/// Drains histogram samples now and then so memory stays flat without
/// scrapes, and sweeps the upstream connection pools.
async fn upkeep(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                app.registry.metrics().run_upkeep();
                app.upstreams.sweep();
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Serves until `shutdown` completes, then drains and returns.
pub async fn run(config_path: &Path, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let running = start(config_path).await?;
    shutdown.await;
    running.shutdown().await;
    Ok(())
}
