//! The `cutover` command line: parses arguments, sets up logging, and runs
//! one command of the library's `cli`, whose `Exit` is the exit code.

use std::process::ExitCode;

use clap::Parser;
use cutover::cli::args::{Cli, Command, LogFormat};
use cutover::cli::{self, Exit};

/// `--features jemalloc` (the image's build): see Cargo.toml.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let exit = match cli.command {
        Command::Check { config, file } => match config.or(file) {
            Some(path) => cli::check::check(&path, &cli.data_dir),
            None => Exit::Unusable,
        },
        Command::Run { config, threads } => cli::run::run(&config, threads, cli.data_dir),
        Command::Demo => cli::run::demo(),
        Command::Status { admin, json } => cli::status::status(&admin, json),
        Command::Fleet {
            prometheus,
            dataset,
            window,
            json,
            decommission,
            batch_requests,
            unknown_tolerance,
            batch_watermark,
            html,
            fail_on_violation,
            basic_auth_user,
            basic_auth_password_file,
            bearer_token_file,
            ca_file,
        } => {
            use cutover::cli::fleet::query::Auth;
            let auth = match (basic_auth_user, basic_auth_password_file, bearer_token_file) {
                (Some(user), Some(password_file), _) => Auth::Basic {
                    user,
                    password_file,
                },
                (_, _, Some(token)) => Auth::BearerFile(token),
                _ => Auth::None,
            };
            cli::fleet::command::fleet(
                &prometheus,
                &auth,
                ca_file.as_ref(),
                dataset,
                window.as_deref(),
                json,
                decommission.as_deref(),
                &cli::fleet::command::Batch {
                    requests: batch_requests,
                    watermark: batch_watermark,
                    unknown_tolerance,
                },
                html.as_deref(),
                fail_on_violation,
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
            format,
        } => {
            let spec = cutover::decide::reconcile::Spec {
                records: &records,
                key: key.as_deref(),
                ignore: &ignore,
                numeric_tolerance,
                event_time: event_time.as_deref(),
            };
            cli::diff::diff(
                &spec,
                (&batch_file, batch_watermark),
                (&streaming_file, streaming_watermark),
                format.as_deref(),
                show,
            )
        }
    };
    exit.into()
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
