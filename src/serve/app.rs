//! What a running cutover shares between its listeners and tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::net::conn::{Counters, ReadSlots};
use crate::state::divergence_log::DivergenceLogs;
use crate::state::live::Live;
use crate::state::reload::{ReloadOutcome, Reloader};

/// The serving snapshot and everything beside it that outlives a reload.
#[derive(Debug)]
pub struct App {
    pub live: Live,
    pub reloader: Reloader,
    /// `listen` and `admin` as bound (the real ports when the config said `:0`).
    pub bound: (SocketAddr, SocketAddr),
    /// Set once both listeners accept connections (`/readyz`).
    pub ready: AtomicBool,
    /// Divergence log writers, one per file, shared across reloads.
    pub divergence_logs: DivergenceLogs,
    /// Connections on `listen` and on `admin`: open now, refused so far.
    pub consumer_connections: Arc<Counters>,
    pub admin_connections: Arc<Counters>,
    /// Reads in flight and shed (`limits.max_inflight_reads`).
    pub reads: ReadSlots,
}

impl App {
    /// Re-reads the config file and applies it if good (see `Reloader::apply`).
    pub fn reload(&self, force: bool) -> ReloadOutcome {
        self.reloader.apply(&self.live, force)
    }
}
