//! `cutover fleet`: the migration board, or the decommission check, from
//! Prometheus, printed and mapped to an exit code.

use crate::cli::Exit;

/// What batch itself exports, for readers not behind cutover and the
/// decommission steps (`--batch-requests`, `--batch-watermark`,
/// `--unknown-tolerance`).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub requests: Option<String>,
    pub watermark: Option<String>,
    /// Reads over the window above which readers not behind cutover block.
    pub unknown_tolerance: f64,
}

/// `cutover fleet`: 0 (board printed, or batch can be switched off), 1 (a
/// consumer still reads batch, the --html page cannot be written, or with
/// `fail_on_violation` a dataset's risk order is violated), 2 (Prometheus
/// cannot be queried, or bad arguments).
// One argument per flag group of `cutover fleet`, as main parsed them.
#[allow(clippy::too_many_arguments)]
pub fn fleet(
    prometheus: &str,
    auth: &super::query::Auth,
    ca_file: Option<&std::path::PathBuf>,
    dataset: Option<String>,
    window: Option<&str>,
    json: bool,
    decommission: Option<&str>,
    batch: &Batch,
    html: Option<&std::path::Path>,
    fail_on_violation: bool,
) -> Exit {
    let default = if decommission.is_some() { "7d" } else { "1h" };
    let window = match super::parse_window(window.unwrap_or(default)) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("cutover fleet: --window {e}");
            return Exit::Unusable;
        }
    };
    let prom = match super::query::Prometheus::new(prometheus, auth, ca_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cutover fleet: {e}");
            return Exit::Unusable;
        }
    };
    let rt = match crate::cli::runtime(1) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover fleet: cannot start the runtime: {e}");
            return Exit::Failure;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let printed = if let Some(ds) = decommission {
        rt.block_on(super::decommission(
            &prom,
            ds,
            window,
            now,
            batch.requests.as_deref(),
            batch.unknown_tolerance,
        ))
        .map(|d| {
            if json {
                println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
            } else {
                print!("{}", super::render::decommission(&d));
            }
            d.ready
        })
    } else {
        let req = super::Request {
            dataset,
            window,
            now,
            batch_requests: batch.requests.clone(),
            batch_watermark: batch.watermark.clone(),
        };
        rt.block_on(async {
            let (b, modes) = super::board_and_modes(&prom, &req).await?;
            if let Some(path) = html {
                let history = super::page_history(&prom, &req, modes).await?;
                if let Err(e) = std::fs::write(path, super::html::page(&b, &history)) {
                    eprintln!("cutover fleet: cannot write {}: {e}", path.display());
                    return Ok(false);
                }
                eprintln!(
                    "cutover fleet: wrote the board's page to {}",
                    path.display()
                );
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&b).unwrap_or_default());
            } else {
                print!("{}", super::render::board(&b));
            }
            let violated = violated_datasets(&b);
            if fail_on_violation && !violated.is_empty() {
                eprintln!(
                    "cutover fleet: risk order VIOLATED for {} (--fail-on-violation)",
                    violated.join(", ")
                );
                return Ok(false);
            }
            Ok(true)
        })
    };
    match printed {
        Ok(true) => Exit::Success,
        Ok(false) => Exit::Failure,
        Err(e) => {
            eprintln!("cutover fleet: {e}");
            Exit::Unusable
        }
    }
}

/// The datasets whose risk order is violated, in board order.
pub fn violated_datasets(b: &super::Board) -> Vec<&str> {
    b.datasets
        .iter()
        .filter(|d| !d.risk_order_violations.is_empty())
        .map(|d| d.dataset.as_str())
        .collect()
}
