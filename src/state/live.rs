//! The serving snapshot: a compiled config bound to what lives beside it.
//! Each route's settings meet their surviving state and their upstream
//! clients in one `LiveRoute`; one `ArcSwap<Snapshot>` holds the snapshot
//! that serves, and each read loads it once.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Compiled, Route, Settings, SideName};
use crate::decide::routing::prefix_matches;
use crate::net::upstream::spool::Spool;
use crate::net::upstream::{CaFileError, UpstreamClient, Upstreams};
use crate::state::access_log::{AccessLog, AccessLogs};
use crate::state::metrics::{ProcessMetrics, RouteKey};
use crate::state::route::{RouteState, StateRegistry};

/// A compiled route with its live state and its two sides' clients.
/// Spawned work (comparisons, probes) holds an `Arc` of it.
#[derive(Debug)]
pub struct LiveRoute {
    pub config: Route,
    pub state: Arc<RouteState>,
    /// Indexed by `SideName::index`.
    clients: [UpstreamClient; 2],
    /// `x-forwarded-prefix` for this route's reads (`headers::forwarded_prefix`).
    pub forwarded_prefix: http::HeaderValue,
}

impl LiveRoute {
    /// The pooled client of one of the route's sides.
    pub fn client(&self, side: SideName) -> &UpstreamClient {
        &self.clients[side.index()]
    }
}

/// One applied config, ready to serve. A reload replaces the whole value.
#[derive(Debug)]
pub struct Snapshot {
    pub settings: Settings,
    /// Longest prefix first, so the first match wins.
    pub routes: Vec<Arc<LiveRoute>>,
    /// SHA-256 of the file text this came from (hex): shown on `/status`,
    /// and how a reload of unchanged content is recognised.
    pub sha256: String,
    /// `None` when the config has no `access_log`.
    pub access_log: Option<AccessLog>,
}

impl Snapshot {
    /// The route whose `path_prefix` is the longest match for `path`, if any.
    /// A prefix matches on a segment boundary: `/v1/orders` matches
    /// `/v1/orders`, `/v1/orders/7` and `/v1/orders?x`, not `/v1/ordersX`.
    pub fn route_for(&self, path: &str) -> Option<&Arc<LiveRoute>> {
        self.routes
            .iter()
            .find(|r| prefix_matches(&r.config.prefix, path))
    }
}

/// Everything a snapshot is bound to, shared across reloads: the route
/// state registry and the upstream connection pools.
#[derive(Debug)]
pub struct Live {
    pub snapshot: ArcSwap<Snapshot>,
    /// Where relative paths of files cutover writes are (`--data-dir`).
    pub data_dir: PathBuf,
    pub registry: StateRegistry,
    pub upstreams: Upstreams,
    pub access_logs: AccessLogs,
    /// Request bodies spooled to disk so they can be sent twice
    /// (`max_spooled_body`), under `data_dir`.
    pub spool: Spool,
}

impl Live {
    /// Binds the first config; relative log paths go under `data_dir`.
    pub fn new(
        compiled: Compiled,
        sha256: String,
        registry: StateRegistry,
        data_dir: PathBuf,
    ) -> Result<Live, CaFileError> {
        let upstreams = Upstreams::default();
        let access_logs = AccessLogs::new(data_dir.clone());
        let spool = Spool::new(&data_dir, compiled.settings.runtime.max_spooled_bytes);
        let snapshot = bind(compiled, sha256, &registry, &upstreams, &access_logs)?;
        Ok(Live {
            spool,
            snapshot: ArcSwap::from_pointee(snapshot),
            data_dir,
            registry,
            upstreams,
            access_logs,
        })
    }

    /// Binds a newly compiled config and makes it the one that serves; the
    /// state of routes it no longer has is forgotten. On error nothing live
    /// changed.
    pub fn apply(&self, compiled: Compiled, sha256: String) -> Result<(), CaFileError> {
        let snapshot = bind(
            compiled,
            sha256,
            &self.registry,
            &self.upstreams,
            &self.access_logs,
        )?;
        let keep: Vec<RouteKey> = snapshot
            .routes
            .iter()
            .map(|r| route_key(&snapshot.settings, &r.config))
            .collect();
        self.registry.retain(&keep);
        self.spool
            .set_max(snapshot.settings.runtime.max_spooled_bytes);
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }
}

/// Pairs each compiled route with its state and clients. The clients are
/// built first: a bad `ca_file` fails before any state is touched.
fn bind(
    compiled: Compiled,
    sha256: String,
    registry: &StateRegistry,
    upstreams: &Upstreams,
    access_logs: &AccessLogs,
) -> Result<Snapshot, CaFileError> {
    let Compiled {
        settings, routes, ..
    } = compiled;
    let clients = routes
        .iter()
        .map(|r| Ok([upstreams.client(&r.batch)?, upstreams.client(&r.streaming)?]))
        .collect::<Result<Vec<_>, CaFileError>>()?;
    registry
        .compare_budget()
        .set_max(settings.runtime.max_compared_bytes);
    let routes = routes
        .into_iter()
        .zip(clients)
        .map(|(config, clients)| {
            let state =
                registry.route_state(&route_key(&settings, &config), config.freshness.window);
            state
                .gate
                .configure(&config.name, config.mode, config.gate.as_ref());
            Arc::new(LiveRoute {
                forwarded_prefix: crate::net::headers::forwarded_prefix(&config.prefix),
                config,
                state,
                clients,
            })
        })
        .collect();
    let access_log = settings.access_log.as_ref().map(|a| {
        let dropped = ProcessMetrics::access_log_dropped(registry.metrics(), &settings.consumer);
        access_logs.bind(a, &settings.consumer, dropped)
    });
    Ok(Snapshot {
        settings,
        routes,
        sha256,
        access_log,
    })
}

/// What a route's state is kept by across reloads.
fn route_key(settings: &Settings, route: &Route) -> RouteKey {
    RouteKey {
        consumer: settings.consumer.clone(),
        route: route.name.clone(),
        dataset: route.dataset.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CONFIG: &str = "\
version: 1
consumer: dash
routes:
  - { name: root, match: { path_prefix: / }, batch: 'http://b/', streaming: 'http://s/' }
  - { name: orders, match: { path_prefix: /v1/orders }, batch: 'http://b/', streaming: 'http://s/' }
  - { name: v1, match: { path_prefix: /v1 }, batch: 'http://b/', streaming: 'http://s/' }
";

    fn compiled(text: &str, generation: u64) -> Compiled {
        crate::config::compile_str(Path::new("c.yaml"), text, generation).expect("compiles")
    }

    /// `text` compiled and bound as the first config.
    fn bound(text: &str) -> Live {
        let registry = StateRegistry::detached();
        Live::new(
            compiled(text, 1),
            String::new(),
            registry,
            PathBuf::from("."),
        )
        .expect("binds")
    }

    #[test]
    fn the_longest_prefix_wins() {
        let live = bound(CONFIG);
        let snap = live.snapshot.load();
        let name = |p| snap.route_for(p).map(|r| r.config.name.as_str());
        assert_eq!(name("/v1/orders/7"), Some("orders"));
        assert_eq!(name("/v1/ordersX"), Some("v1"));
        assert_eq!(name("/x"), Some("root"));
    }

    #[test]
    fn route_state_survives_a_reload_and_dropped_routes_are_forgotten() {
        let live = bound(CONFIG);
        let before = live.snapshot.load_full();
        let only_orders = CONFIG
            .lines()
            .filter(|l| !l.contains("name: root") && !l.contains("name: v1"))
            .collect::<Vec<_>>()
            .join("\n");
        live.apply(compiled(&only_orders, 2), "2".into())
            .expect("applies");
        let after = live.snapshot.load();
        let orders = |s: &Snapshot| s.route_for("/v1/orders").expect("orders").state.clone();
        assert!(Arc::ptr_eq(&orders(&before), &orders(&after)));
        assert!(after.route_for("/x").is_none());
        let v1_before = before.route_for("/v1").expect("v1").state.clone();
        live.apply(compiled(CONFIG, 3), "3".into())
            .expect("applies");
        let v1_after = live
            .snapshot
            .load()
            .route_for("/v1")
            .expect("v1")
            .state
            .clone();
        assert!(!Arc::ptr_eq(&v1_before, &v1_after), "v1 was forgotten");
    }
}
