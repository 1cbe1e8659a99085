//! Configs built as typed values and serialised with serde, never pasted
//! together from indentation-sensitive strings.
//!
//! ```ignore
//! let config = Config::new().route(
//!     Route::orders(batch.url("/t"), Side::new(streaming.url("/s")).timeout("200ms"))
//!         .mode("streaming")
//!         .quiet()
//!         .fallback(json!({ "circuit": { "failures": 2, "cooldown": "1s" } })),
//! );
//! let proxy = Proxy::start(&config).await; // or config.yaml() for the text
//! ```

use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value, json};

/// A whole config file. Listen and admin default to `127.0.0.1:0`.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    version: u32,
    consumer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk: Option<String>,
    listen: String,
    admin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_buffered_body: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_spooled_body: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Value>,
    state_file: Option<String>,
    routes: Vec<Route>,
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

impl Config {
    /// Version 1, consumer `test`, on ports the OS picks, no routes yet.
    pub fn new() -> Config {
        Config {
            version: 1,
            consumer: "test".to_owned(),
            risk: None,
            listen: "127.0.0.1:0".to_owned(),
            admin: "127.0.0.1:0".to_owned(),
            shutdown_grace: None,
            max_buffered_body: None,
            max_spooled_body: None,
            access_log: None,
            limits: None,
            state_file: None,
            routes: Vec::new(),
        }
    }

    pub fn consumer(mut self, consumer: &str) -> Config {
        self.consumer = consumer.to_owned();
        self
    }

    /// `low`, `medium` or `high` (absent: the file says nothing, cutover assumes low).
    pub fn risk(mut self, risk: &str) -> Config {
        self.risk = Some(risk.to_owned());
        self
    }

    pub fn route(mut self, route: Route) -> Config {
        self.routes.push(route);
        self
    }

    pub fn listen(mut self, addr: SocketAddr) -> Config {
        self.listen = addr.to_string();
        self
    }

    pub fn admin(mut self, addr: SocketAddr) -> Config {
        self.admin = addr.to_string();
        self
    }

    /// e.g. "500ms".
    pub fn shutdown_grace(mut self, grace: &str) -> Config {
        self.shutdown_grace = Some(grace.to_owned());
        self
    }

    pub fn max_buffered_body(mut self, bytes: u64) -> Config {
        self.max_buffered_body = Some(bytes);
        self
    }

    pub fn max_spooled_body(mut self, bytes: u64) -> Config {
        self.max_spooled_body = Some(bytes);
        self
    }

    /// The `limits` block, as the file spells it.
    pub fn limits(mut self, limits: Value) -> Config {
        self.limits = Some(limits);
        self
    }

    /// The `access_log` block, as the file spells it.
    pub fn access_log(mut self, access_log: Value) -> Config {
        self.access_log = Some(access_log);
        self
    }

    /// Where gate trips survive a restart (relative: under the data directory).
    pub fn state_file(mut self, path: &str) -> Config {
        self.state_file = Some(path.to_owned());
        self
    }

    /// The config as YAML text.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(self).expect("config serialises")
    }

    /// Writes the YAML to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.yaml()).expect("write config");
    }
}

/// A config with this one route.
impl From<Route> for Config {
    fn from(route: Route) -> Config {
        Config::new().route(route)
    }
}

/// One route. Nested blocks (`canary`, `fallback`, `freshness`, `reconcile`)
/// are JSON values, written as the config file spells them.
#[derive(Clone, Debug, Serialize)]
pub struct Route {
    name: String,
    #[serde(rename = "match")]
    matches: Match,
    batch: Side,
    streaming: Side,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    freshness: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconcile: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate: Option<Value>,
    /// Any other key, e.g. one the config does not know.
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize)]
struct Match {
    path_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    methods: Option<Vec<String>>,
}

impl Route {
    pub fn new(
        name: &str,
        path_prefix: &str,
        batch: impl Into<Side>,
        streaming: impl Into<Side>,
    ) -> Route {
        Route {
            name: name.to_owned(),
            matches: Match {
                path_prefix: path_prefix.to_owned(),
                methods: None,
            },
            batch: batch.into(),
            streaming: streaming.into(),
            mode: None,
            dataset: None,
            canary: None,
            fallback: None,
            freshness: None,
            reconcile: None,
            gate: None,
            other: Map::new(),
        }
    }

    /// The usual route: `orders` on `/v1/orders`.
    pub fn orders(batch: impl Into<Side>, streaming: impl Into<Side>) -> Route {
        Route::new("orders", "/v1/orders", batch, streaming)
    }

    pub fn mode(mut self, mode: &str) -> Route {
        self.mode = Some(mode.to_owned());
        self
    }

    /// The data set the route reads (default: its name).
    pub fn dataset(mut self, dataset: &str) -> Route {
        self.dataset = Some(dataset.to_owned());
        self
    }

    /// The methods the route takes (GET and HEAD when not given).
    pub fn methods(mut self, methods: &[&str]) -> Route {
        self.matches.methods = Some(methods.iter().map(|m| (*m).to_owned()).collect());
        self
    }

    pub fn canary(mut self, canary: Value) -> Route {
        self.canary = Some(canary);
        self
    }

    pub fn fallback(mut self, fallback: Value) -> Route {
        self.fallback = Some(fallback);
        self
    }

    pub fn freshness(mut self, freshness: Value) -> Route {
        self.freshness = Some(freshness);
        self
    }

    pub fn reconcile(mut self, reconcile: Value) -> Route {
        self.reconcile = Some(reconcile);
        self
    }

    /// The route's automatic rollback.
    pub fn gate(mut self, gate: Value) -> Route {
        self.gate = Some(gate);
        self
    }

    /// No idle-side probe: backends see reads only.
    pub fn no_probe(self) -> Route {
        self.freshness(json!({ "probe_interval": "off" }))
    }

    /// No probe and no sampled comparison reads: hit counts stay exact.
    pub fn quiet(self) -> Route {
        self.no_probe().reconcile(json!({ "sample": 0 }))
    }

    /// Sets any other key, e.g. one the config does not know.
    pub fn set(mut self, key: &str, value: Value) -> Route {
        self.other.insert(key.to_owned(), value);
        self
    }
}

/// A backend side: written as a bare URL, or as a map once it has settings.
#[derive(Clone, Debug)]
pub struct Side(SideSettings);

#[derive(Clone, Debug, Serialize)]
struct SideSettings {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_inflight: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
}

impl Serialize for Side {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = &self.0;
        let bare = s.connect_timeout.is_none()
            && s.timeout.is_none()
            && s.max_inflight.is_none()
            && s.ca_file.is_none();
        if bare {
            s.url.serialize(serializer)
        } else {
            s.serialize(serializer)
        }
    }
}

impl Side {
    pub fn new(url: impl Into<String>) -> Side {
        Side(SideSettings {
            url: url.into(),
            connect_timeout: None,
            timeout: None,
            max_inflight: None,
            ca_file: None,
        })
    }

    /// e.g. "200ms".
    pub fn timeout(mut self, timeout: &str) -> Side {
        self.0.timeout = Some(timeout.to_owned());
        self
    }

    /// e.g. "2s".
    pub fn connect_timeout(mut self, connect_timeout: &str) -> Side {
        self.0.connect_timeout = Some(connect_timeout.to_owned());
        self
    }

    pub fn max_inflight(mut self, max_inflight: u64) -> Side {
        self.0.max_inflight = Some(max_inflight);
        self
    }

    pub fn ca_file(mut self, ca_file: &Path) -> Side {
        self.0.ca_file = Some(ca_file.display().to_string());
        self
    }
}

impl From<String> for Side {
    fn from(url: String) -> Side {
        Side::new(url)
    }
}

impl From<&str> for Side {
    fn from(url: &str) -> Side {
        Side::new(url)
    }
}

impl From<&String> for Side {
    fn from(url: &String) -> Side {
        Side::new(url.clone())
    }
}
