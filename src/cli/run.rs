//! `cutover run` and `cutover demo`: a runtime with the chosen number of
//! workers, the serving library on it, and the signals that stop it.

use std::path::Path;

use super::Exit;

/// `cutover run`: serves `config` until SIGTERM or SIGINT, then drains.
/// 0 after a clean stop, 1 when it cannot start (logged once).
pub fn run(config: &Path, threads: Option<usize>, data_dir: std::path::PathBuf) -> Exit {
    serve(threads, |rt| {
        let options = crate::serve::Options { data_dir };
        rt.block_on(async { crate::serve::run_with(config, options, stop_signal()).await })
            .map_err(|e| e.to_string())
    })
}

/// `cutover demo`: the sample services, a config to edit, cutover serving it.
pub fn demo() -> Exit {
    serve(None, |rt| {
        rt.block_on(async { super::demo::run(stop_signal()).await })
            .map_err(|e| e.to_string())
    })
}

/// Runs `body` on a runtime of `threads` workers (default:
/// TOKIO_WORKER_THREADS, else one per core up to 2).
fn serve(
    threads: Option<usize>,
    body: impl FnOnce(&tokio::runtime::Runtime) -> Result<(), String>,
) -> Exit {
    let threads = threads
        .or_else(|| std::env::var("TOKIO_WORKER_THREADS").ok()?.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(2)
        })
        .max(1);
    let rt = match super::runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover: cannot start the runtime: {e}");
            return Exit::Failure;
        }
    };
    match body(&rt) {
        Ok(()) => Exit::Success,
        Err(error) => {
            // Through the logger, so `--log-format json` holds for start-up
            // errors too; one event, one line (config errors are joined).
            let error = error.replace('\n', "; ");
            tracing::error!(error = %error, "cutover cannot start");
            Exit::Failure
        }
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is
/// called (inside the runtime, before start-up), not when first polled: a
/// signal right after "cutover serving" must drain, not meet the default
/// disposition and kill the process.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers, never stop on our own.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
    }
}
