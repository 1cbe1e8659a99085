//! The `cutover` command line: parses arguments, sets up logging, maps
//! outcomes to exit codes. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// `--features jemalloc` (the image's build): see Cargo.toml.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "cutover",
    version,
    about = "A sidecar proxy that makes a batch-to-streaming migration safe, one config edit at a time"
)]
struct Cli {
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Where relative log paths in the config (divergence_log) are written;
    /// never beside the config, which may be a read-only mount.
    #[arg(long, default_value = ".", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config; hot-reloads it on change and on SIGHUP.
    Run {
        /// The config file (YAML, version 1).
        #[arg(short, long)]
        config: PathBuf,
        /// Worker threads (default: TOKIO_WORKER_THREADS, else 1 per core up to 2).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Validate a config: exit 0 with a summary, or 1 with every error as FILE:LINE:COLUMN.
    Check {
        /// The config file; `-` reads it from standard input.
        #[arg(short, long, conflicts_with = "file", required_unless_present = "file")]
        config: Option<PathBuf>,
        /// The config file, as a positional argument (same as -c).
        file: Option<PathBuf>,
    },
    /// Run a self-contained demo: sample batch and streaming services, a config to edit live.
    Demo,
    /// Compare two saved answers (batch's and streaming's) offline: exit 0 when
    /// they match within tolerance, 1 when they diverge, 2 on bad input.
    Diff {
        /// Batch's answer (JSON, or any bytes).
        batch_file: PathBuf,
        /// Streaming's answer.
        streaming_file: PathBuf,
        /// JSON pointer to the record array (default: the whole body).
        #[arg(long, default_value = "")]
        records: String,
        /// Field that identifies a record; without it records compare in order.
        #[arg(long)]
        key: Option<String>,
        /// Fields left out of the comparison (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        ignore: Vec<String>,
        /// Relative tolerance for numbers.
        #[arg(long, default_value_t = 0.0)]
        numeric_tolerance: f64,
        /// Field holding a record's event time, for `timing`.
        #[arg(long)]
        event_time: Option<String>,
        /// Batch's watermark (RFC 3339 or Unix s/ms).
        #[arg(long)]
        batch_watermark: Option<String>,
        /// Streaming's watermark.
        #[arg(long)]
        streaming_watermark: Option<String>,
        /// How many divergences to print.
        #[arg(long, default_value_t = 10)]
        show: usize,
    },
    /// Print a table of every route from a running cutover's /status. Exit 0
    /// when healthy; 1 when the last reload failed, a gate is tripped or a
    /// circuit is open; 2 when the admin endpoint cannot be read.
    Status {
        /// The admin address of the running cutover.
        #[arg(long, default_value = "http://127.0.0.1:9901")]
        admin: String,
        /// Print the /status document as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The migration board from Prometheus: per dataset, each consumer's
    /// risk, mode, figures over the window and the verdicts (leave shadow,
    /// next to move, risk order). With --decommission DATASET: exit 0 only
    /// when batch can be switched off for it, else 1 naming each consumer
    /// that still reads batch. Exit 2 when Prometheus cannot be queried.
    Fleet {
        /// Prometheus' base URL (http or https), e.g. http://prometheus:9090.
        #[arg(long)]
        prometheus: String,
        /// Only this dataset.
        #[arg(long, conflicts_with = "decommission")]
        dataset: Option<String>,
        /// What the figures look back over (default 1h; 7d with --decommission).
        #[arg(long)]
        window: Option<String>,
        /// Print the board as one JSON document.
        #[arg(long)]
        json: bool,
        /// Check whether batch can be switched off for this dataset.
        #[arg(long, value_name = "DATASET")]
        decommission: Option<String>,
        /// Basic auth user; the password is read from --basic-auth-password-file.
        #[arg(
            long,
            requires = "basic_auth_password_file",
            conflicts_with = "bearer_token_file"
        )]
        basic_auth_user: Option<String>,
        /// File holding the basic auth password.
        #[arg(long, requires = "basic_auth_user")]
        basic_auth_password_file: Option<PathBuf>,
        /// File holding a bearer token.
        #[arg(long)]
        bearer_token_file: Option<PathBuf>,
        /// Extra CA certificates (PEM) for an https Prometheus.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check { config, file } => match config.or(file) {
            Some(path) => check(&path, &cli.data_dir),
            None => ExitCode::from(2),
        },
        Command::Run { config, threads } => serve(threads, |rt| {
            let options = cutover::Options {
                data_dir: cli.data_dir,
            };
            rt.block_on(async { cutover::run_with(&config, options, stop_signal()).await })
                .map_err(anyhow::Error::from)
        }),
        Command::Demo => serve(None, |rt| {
            rt.block_on(async { cutover::demo::run(stop_signal()).await })
                .map_err(anyhow::Error::from)
        }),
        Command::Status { admin, json } => status(&admin, json),
        Command::Fleet {
            prometheus,
            dataset,
            window,
            json,
            decommission,
            basic_auth_user,
            basic_auth_password_file,
            bearer_token_file,
            ca_file,
        } => {
            let auth = match (basic_auth_user, basic_auth_password_file, bearer_token_file) {
                (Some(user), Some(password_file), _) => cutover::fleet::query::Auth::Basic {
                    user,
                    password_file,
                },
                (_, _, Some(token)) => cutover::fleet::query::Auth::BearerFile(token),
                _ => cutover::fleet::query::Auth::None,
            };
            fleet(
                &prometheus,
                &auth,
                ca_file.as_ref(),
                dataset,
                window.as_deref(),
                json,
                decommission.as_deref(),
            )
        }
        Command::Diff {
            batch_file,
            streaming_file,
            records,
            key,
            ignore,
            numeric_tolerance,
            event_time,
            batch_watermark,
            streaming_watermark,
            show,
        } => {
            let spec = cutover::reconcile::Spec {
                records: &records,
                key: key.as_deref(),
                ignore: &ignore,
                numeric_tolerance,
                event_time: event_time.as_deref(),
            };
            diff(
                &spec,
                (&batch_file, batch_watermark),
                (&streaming_file, streaming_watermark),
                show,
            )
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn check(path: &std::path::Path, data_dir: &std::path::Path) -> ExitCode {
    // `-` is standard input: errors name it `<stdin>`, and relative paths in
    // it (ca_file) start at the working directory.
    let stdin = path.as_os_str() == "-";
    let (name, text) = if stdin {
        let mut text = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
            eprintln!("<stdin>: cannot read config: {e}");
            return ExitCode::FAILURE;
        }
        (std::path::PathBuf::from("<stdin>"), text)
    } else {
        match cutover::config::read(path) {
            Ok(text) => (path.to_owned(), text),
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                return ExitCode::FAILURE;
            }
        }
    };
    match cutover::config::compile_str(&name, &text, 1) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("{}", w.warning());
            }
            let routes: Vec<String> = c
                .routes
                .iter()
                .map(|r| format!("{} {}", r.name, r.mode.as_str()))
                .collect();
            println!(
                "{}: ok: {} route{} ({}), consumer {}",
                name.display(),
                c.routes.len(),
                if c.routes.len() == 1 { "" } else { "s" },
                routes.join(", "),
                c.settings.consumer
            );
            // Warnings, not errors: the directory may only exist where
            // cutover runs (an emptyDir in the pod).
            for r in &c.routes {
                if let Some(log) = &r.reconcile.divergence_log {
                    let at = data_dir.join(log);
                    if let Err(e) = writable(&at) {
                        eprintln!(
                            "{}: warning: route {}: divergence_log {} is not writable here ({e}); set --data-dir to a writable directory",
                            name.display(),
                            r.name,
                            at.display()
                        );
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Whether a log could be written at `path`: an existing file opens for
/// appending; otherwise a probe file is created beside it and removed.
fn writable(path: &std::path::Path) -> std::io::Result<()> {
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let probe = dir.join(format!(".cutover-check-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

fn serve(
    threads: Option<usize>,
    body: impl FnOnce(&tokio::runtime::Runtime) -> anyhow::Result<()>,
) -> ExitCode {
    let threads = threads
        .or_else(|| std::env::var("TOKIO_WORKER_THREADS").ok()?.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(2)
        })
        .max(1);
    // One thread: the current-thread scheduler, which skips work-stealing
    // bookkeeping a single worker never needs.
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.enable_all();
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match body(&rt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Through the logger, so `--log-format json` holds for start-up
            // errors too; one event, one line (config errors are joined).
            let error = e.to_string().replace('\n', "; ");
            tracing::error!(error = %error, "cutover cannot start");
            ExitCode::FAILURE
        }
    }
}

fn diff(
    spec: &cutover::reconcile::Spec<'_>,
    batch: (&std::path::Path, Option<String>),
    streaming: (&std::path::Path, Option<String>),
    show: usize,
) -> ExitCode {
    let read =
        |(path, wm): (&std::path::Path, Option<String>)| -> Result<(Vec<u8>, Option<i64>), String> {
            let body = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let wm = match wm {
                Some(w) => Some(
                    cutover::freshness::parse_watermark(w.as_bytes()).ok_or_else(|| {
                        format!(
                            "bad watermark `{w}`: expected RFC 3339 or Unix seconds/milliseconds"
                        )
                    })?,
                ),
                None => None,
            };
            Ok((body, wm))
        };
    if spec.numeric_tolerance < 0.0 || !spec.numeric_tolerance.is_finite() {
        eprintln!("cutover diff: --numeric-tolerance must be a non-negative number");
        return ExitCode::from(2);
    }
    let (b, s) = match (read(batch), read(streaming)) {
        (Ok(b), Ok(s)) => (b, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cutover diff: {e}");
            return ExitCode::from(2);
        }
    };
    fn answer((body, wm): &(Vec<u8>, Option<i64>)) -> cutover::reconcile::Answer<'_> {
        cutover::reconcile::Answer {
            status: 200,
            body,
            watermark_ms: *wm,
        }
    }
    let report = cutover::reconcile::compare(spec, answer(&b), answer(&s));
    if report.no_records {
        eprintln!(
            "cutover diff: --records {} finds no record array in either answer: check the pointer",
            spec.records
        );
        return ExitCode::from(2);
    }
    print!("{}", cutover::reconcile::diff::render(&report, show));
    if report.diverged() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
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

/// `cutover status` exit codes (SPEC 1.1).
const STATUS_UNHEALTHY: u8 = 1;
const STATUS_UNREACHABLE: u8 = 2;

fn status(admin: &str, json: bool) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover status: cannot start the runtime: {e}");
            return ExitCode::from(STATUS_UNREACHABLE);
        }
    };
    match rt.block_on(cutover::status_table::fetch(admin)) {
        Ok(doc) => {
            if json {
                match serde_json::to_string_pretty(&doc) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("cutover status: {e}");
                        return ExitCode::from(STATUS_UNREACHABLE);
                    }
                }
            } else {
                print!("{}", cutover::status_table::render(&doc));
            }
            let problems = doc.problems();
            if problems.is_empty() {
                return ExitCode::SUCCESS;
            }
            for p in &problems {
                eprintln!("cutover status: {p}");
            }
            ExitCode::from(STATUS_UNHEALTHY)
        }
        Err(e) => {
            let hint = e.hint();
            eprintln!("cutover status: {:#}", anyhow::Error::from(e));
            if let Some(hint) = hint {
                eprintln!("  {hint}");
            }
            ExitCode::from(STATUS_UNREACHABLE)
        }
    }
}

/// `cutover fleet`: 0 (board printed, or batch can be switched off), 1 (a
/// consumer still reads batch), 2 (Prometheus cannot be queried, or bad
/// arguments).
fn fleet(
    prometheus: &str,
    auth: &cutover::fleet::query::Auth,
    ca_file: Option<&PathBuf>,
    dataset: Option<String>,
    window: Option<&str>,
    json: bool,
    decommission: Option<&str>,
) -> ExitCode {
    const UNREACHABLE: u8 = 2;
    let default = if decommission.is_some() { "7d" } else { "1h" };
    let window = match cutover::fleet::parse_window(window.unwrap_or(default)) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("cutover fleet: --window {e}");
            return ExitCode::from(UNREACHABLE);
        }
    };
    let prom = match cutover::fleet::query::Prometheus::new(prometheus, auth, ca_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cutover fleet: {e}");
            return ExitCode::from(UNREACHABLE);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover fleet: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let printed = if let Some(ds) = decommission {
        rt.block_on(cutover::fleet::decommission(&prom, ds, window, now))
            .map(|d| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
                } else {
                    print!("{}", cutover::fleet::render::decommission(&d));
                }
                d.ready
            })
    } else {
        let req = cutover::fleet::Request {
            dataset,
            window,
            now,
        };
        rt.block_on(cutover::fleet::board(&prom, &req)).map(|b| {
            if json {
                println!("{}", serde_json::to_string_pretty(&b).unwrap_or_default());
            } else {
                print!("{}", cutover::fleet::render::board(&b));
            }
            true
        })
    };
    match printed {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cutover fleet: {e}");
            ExitCode::from(UNREACHABLE)
        }
    }
}
