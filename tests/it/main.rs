//! The integration tests, one binary: each module is one topic, all of them
//! share `support` (fake backends, configs, the real proxy, bounded waits,
//! metric helpers), compiled once. A new topic is a file here and one `mod`
//! line below. Run one topic with `cargo test --test it reconcile::`.
//!
//! The tests against a real Prometheus stay a crate of their own
//! (`tests/fleet_prometheus/`): CI runs them apart, one at a time.

mod support;

mod access_log;
mod admin;
mod alert_runbooks;
mod batch_transparent;
mod cli;
mod config_check;
mod contract_config;
mod contracts;
mod demo_walkthrough;
mod docs;
mod fallback;
mod fleet;
mod forwarding;
mod gates;
mod layers;
mod limits;
mod probes;
mod properties;
mod proxy;
mod reconcile;
mod reload;
mod sequences;
mod signals;
mod tls;
mod upstream;
