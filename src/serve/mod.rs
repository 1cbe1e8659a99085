//! The serving tasks: `start` / `run` bring up a cutover (listeners, the
//! config watcher, reloads, the gate and probe tasks), and below them each
//! task that serves: the consumer's reads (`proxy`), the admin endpoints,
//! the idle-side probe, the gate checks, and comparisons off the read's path
//! (per read, and of objects read in ranges, whole: `whole`).

pub(crate) mod admin;
pub mod app;
pub(crate) mod attempt;
pub(crate) mod compare;
pub(crate) mod contract;
pub(crate) mod gate_task;
pub(crate) mod probe;
pub(crate) mod proxy;
pub(crate) mod tee;
pub(crate) mod whole;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::ConfigErrors;
use crate::config::watch::Trigger;
pub use crate::serve::app::App;
use crate::state::divergence_log::DivergenceLogs;
use crate::state::live::Live;
use crate::state::metrics::{Metrics, ProcessMetrics};
pub use crate::state::reload::ReloadOutcome;
use crate::state::reload::Reloader;
use crate::state::route::StateRegistry;

/// Why cutover could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    CaFile(#[from] crate::net::upstream::CaFileError),
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

/// How a cutover runs, beside its config file.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where relative log paths in the config (`divergence_log`) are
    /// written: never beside the config, which may be a read-only ConfigMap
    /// mount. `cutover run --data-dir`; default the working directory.
    pub data_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            data_dir: PathBuf::from("."),
        }
    }
}

/// Loads the config, binds both listeners, starts the watcher, the probe and
/// the servers, and returns once they accept connections. Relative log
/// paths go to the working directory (see `start_with`).
pub async fn start(config_path: &Path) -> Result<Running, StartError> {
    start_with(config_path, Options::default()).await
}

/// As `start`, with `options`.
pub async fn start_with(config_path: &Path, options: Options) -> Result<Running, StartError> {
    start_with_metrics(config_path, options, Metrics::new()).await
}

async fn start_with_metrics(
    config_path: &Path,
    options: Options,
    metrics: Metrics,
) -> Result<Running, StartError> {
    let config_path = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_owned());
    let text = crate::config::read(&config_path)?;
    let compiled = crate::config::compile_str(&config_path, &text, 1)?;
    let settings = compiled.settings.clone();
    for w in &compiled.warnings {
        tracing::warn!("{w}");
    }
    let process_metrics = ProcessMetrics::new(&metrics, &settings.consumer);
    let live = Live::new(
        compiled,
        crate::config::sha256_hex(&text),
        StateRegistry::new(metrics),
        options.data_dir.clone(),
    )?;
    crate::state::gate::state_file::restore(&live);
    let (listen, admin) = (settings.listen, settings.admin);
    let grace = settings.runtime.shutdown_grace;
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
    let app = Arc::new(App {
        live,
        reloader: Reloader::new(config_path.clone(), &settings, process_metrics),
        bound: (listen_addr, admin_addr),
        ready: Default::default(),
        divergence_logs: DivergenceLogs::new(options.data_dir),
        consumer_connections: Default::default(),
        admin_connections: Default::default(),
        reads: Default::default(),
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (trigger_tx, triggers) = mpsc::channel(1);
    let watcher = crate::config::watch::spawn(config_path.clone(), trigger_tx, shutdown_rx.clone())
        .map_err(|source| StartError::Watch {
            path: config_path.clone(),
            source,
        })?;
    let reloads = tokio::spawn(apply_reloads(app.clone(), triggers));
    let probe = tokio::spawn(probe::run(app.clone(), shutdown_rx.clone()));
    let reopen = tokio::spawn(reopen_logs_on_sigusr1(app.clone()));
    let upkeep = tokio::spawn(upkeep(app.clone(), shutdown_rx.clone()));
    let gates = tokio::spawn(gate_task::run(app.clone(), shutdown_rx.clone()));
    let rt = &settings.runtime;
    let limits = crate::net::conn::ConnLimits {
        max_connections: rt.max_connections,
        handshake_timeout: rt.handshake_timeout,
        head_timeout: rt.head_timeout,
        idle_timeout: rt.idle_timeout,
        stream_idle_timeout: rt.stream_idle_timeout,
        ping_interval: rt.h2_ping_interval,
        ping_timeout: rt.h2_ping_timeout,
        strict_framing: true,
    };
    let admin_limits = crate::net::conn::ConnLimits {
        max_connections: rt.admin_max_connections,
        strict_framing: false,
        ..limits.clone()
    };
    let admin_task = tokio::spawn(admin::serve(
        app.clone(),
        admin_listener,
        shutdown_rx.clone(),
        admin_limits,
    ));
    let proxy_task = tokio::spawn(proxy::serve(
        app.clone(),
        proxy_listener,
        shutdown_rx,
        grace,
        limits,
    ));
    app.ready.store(true, Ordering::Release);
    tracing::info!(%listen_addr, %admin_addr, config = %config_path.display(), "cutover serving");

    let task = tokio::spawn(async move {
        let _ = proxy_task.await;
        watcher.stop();
        reloads.abort();
        reopen.abort();
        probe.abort();
        upkeep.abort();
        gates.abort();
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
                app.live.registry.metrics().run_upkeep();
                app.live.upstreams.sweep();
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Reopens the access log files on SIGUSR1 (after logrotate moved them).
async fn reopen_logs_on_sigusr1(app: Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        return;
    };
    while usr1.recv().await.is_some() {
        tracing::info!("SIGUSR1: reopening the access log");
        app.live.access_logs.reopen();
    }
}

/// Applies a reload for each trigger the watcher sends, off the runtime's
/// threads (reading and compiling the file blocks).
async fn apply_reloads(app: Arc<App>, mut triggers: mpsc::Receiver<Trigger>) {
    while let Some(trigger) = triggers.recv().await {
        let force = trigger == Trigger::Hangup;
        if force {
            tracing::info!("SIGHUP: reloading config");
        }
        let app = app.clone();
        match tokio::task::spawn_blocking(move || app.reload(force)).await {
            Ok(ReloadOutcome::Unchanged) => {
                tracing::debug!("config file touched, content unchanged")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "config reload task failed"),
        }
    }
}

/// Serves until `shutdown` completes, then drains and returns.
pub async fn run(config_path: &Path, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    run_with(config_path, Options::default(), shutdown).await
}

/// As `run`, with `options`.
pub async fn run_with(
    config_path: &Path,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let running = start_with(config_path, options).await?;
    shutdown.await;
    running.shutdown().await;
    Ok(())
}
