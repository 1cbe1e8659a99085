//! The command line as clap reads it: every command, flag and its help.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "cutover",
    version,
    about = "A sidecar proxy that makes a batch-to-streaming migration safe, one config edit at a time"
)]
pub struct Cli {
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Where relative log paths in the config (divergence_log) are written;
    /// never beside the config, which may be a read-only mount.
    #[arg(long, default_value = ".", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Batch's answer (JSON, NDJSON, CSV, TSV, Parquet, compressed or
        /// not, or any bytes).
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
        /// How both files are read: auto json ndjson csv tsv parquet bytes.
        /// Default: by each file's extension (`.json .ndjson .jsonl .csv .tsv
        /// .parquet`, each optionally followed by `.gz .br .zst .deflate`,
        /// which is decoded), else JSON if it parses, else bytes.
        #[arg(long)]
        format: Option<String>,
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
    /// that still reads batch. With --fail-on-violation: exit 1 when any
    /// dataset's risk order is VIOLATED. Exit 2 when Prometheus cannot be
    /// queried.
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
        /// PromQL for the requests batch itself served, with $dataset and
        /// $window substituted: the board shows readers not behind cutover.
        #[arg(long, value_name = "QUERY")]
        batch_requests: Option<String>,
        /// Readers not behind cutover (reads over the window) that
        /// --decommission tolerates when --batch-requests is given.
        #[arg(long, value_name = "READS", default_value_t = 0.0)]
        unknown_tolerance: f64,
        /// PromQL for batch's own last-output time, with $dataset: the
        /// decommission steps are measured from it.
        #[arg(long, value_name = "QUERY")]
        batch_watermark: Option<String>,
        /// Also write the board as one self-contained HTML page: per
        /// dataset the table, a timeline of each consumer's mode, gate
        /// trips, divergence over time and the decommission steps.
        #[arg(long, value_name = "FILE", conflicts_with = "decommission")]
        html: Option<PathBuf>,
        /// Exit 1 when any dataset's risk order is VIOLATED (a higher-risk
        /// consumer reads streaming while a lower-risk one still reads
        /// batch), after printing the board: a CI gate. Without it the
        /// board exits 0 whatever its verdicts.
        #[arg(long, conflicts_with = "decommission")]
        fail_on_violation: bool,
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
