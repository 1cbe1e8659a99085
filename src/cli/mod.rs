//! The command-line clients: what each `cutover` command does, one module
//! each, with one exit-code type (`Exit`) and one runtime builder
//! (`runtime`). `main` parses the arguments (`args`) and calls one of them.

pub mod args;
pub mod check;
pub mod demo;
pub mod diff;
pub mod fleet;
pub mod run;
pub mod status;
pub mod status_table;

use std::process::ExitCode;

/// How a command ends, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done, healthy, matching, ready.
    Success,
    /// 1: the answer is no (a bad config, a divergence, an unhealthy
    /// cutover, a consumer still reading batch), or serving failed.
    Failure,
    /// 2: the question could not be asked (bad input, an endpoint that
    /// cannot be read).
    Unusable,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        match e {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Failure => ExitCode::FAILURE,
            Exit::Unusable => ExitCode::from(2),
        }
    }
}

/// The tokio runtime a command runs on: `threads` workers (1: the
/// current-thread scheduler, which skips the work-stealing bookkeeping a
/// single worker never needs).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.enable_all().build()
}

/// An error and its causes on one line, `outer: cause: cause`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
