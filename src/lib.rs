//! cutover: a sidecar HTTP proxy that moves one consumer's reads from a batch
//! pipeline's output to a streaming pipeline's output, one config edit at a
//! time, with batch as the automatic fallback.
//!
//! The modules are the layers of the design, each importing only those
//! below it (docs/architecture.md; `tests/it/layers.rs` holds them to it):
//! `cli` (command-line clients) > `serve` (the serving tasks) > `state`
//! (what outlives a read) > `net` (connections, upstream clients, header
//! rules) > `decide` (pure per-read decisions) > `config`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod decide;
pub mod net;
pub mod serve;
pub mod state;

pub use serve::{Options, Running, StartError, run, run_with, start, start_with};
pub use state::reload::ReloadOutcome;
