//! The proxy end to end, by topic: each mode, routing and path rewriting,
//! header hygiene, what a consumer may send (HTTP/2, bad requests, stalls,
//! bodies), the admin port and metrics by value, and the proxy's own traffic
//! to the sides (the idle-side probe, kept-alive connections). Real sockets
//! on 127.0.0.1:0, the real proxy, fake backends only.

use crate::support::*;

mod admin_port;
mod headers;
mod modes;
mod requests;
mod routing;
mod upstreams;

/// A single-route config in `mode`, quiet: no idle-side probe, no sampled
/// comparison reads, so hit counts stay exact.
fn quiet_route(batch: impl Into<Side>, streaming: impl Into<Side>, mode: &str) -> Route {
    Route::orders(batch, streaming).mode(mode).quiet()
}

/// One quiet route for a config of several.
fn route(name: &str, prefix: &str, batch: impl Into<Side>, streaming: impl Into<Side>) -> Route {
    Route::new(name, prefix, batch, streaming).quiet()
}

/// The echoed request a `Behaviour::Echo` backend answered with.
fn echoed(a: &Answer) -> serde_json::Value {
    assert_eq!(a.status, 200, "echo answer: {}", a.text());
    a.json()
}

fn echoed_header(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
