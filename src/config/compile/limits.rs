//! Runtime settings: `shutdown_grace`, the two body sizes at the top of
//! the file, and the `limits` block (timeouts and caps on what a consumer
//! may hold).

use std::time::Duration;

use super::super::locate::YamlPath;
use super::super::model::RuntimeSettings;
use super::super::raw::{RawConfig, RawLimits};
use super::Cx;
use super::scalars::{parse_count, parse_duration, parse_nonzero};

const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BUFFERED_BODY: usize = 64 * 1024;
/// SPEC 1.2: a POST query up to this can still fall back or be shadowed.
const DEFAULT_MAX_SPOOLED_BODY: usize = 16 * 1024 * 1024;
/// Four bodies at the default `max_spooled_body`: inside the 128 MiB
/// emptyDir of deploy/kubernetes beside the divergence logs.
const DEFAULT_MAX_SPOOLED_BYTES: usize = 64 * 1024 * 1024;
/// As nginx's `client_header_timeout` and hyper's default.
const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// As nginx's `client_body_timeout`.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// A local consumer shows its protocol in its first packet.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// As nginx's `keepalive_timeout` (75 s), rounded.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// As Envoy's `stream_idle_timeout`.
const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const DEFAULT_H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// About 25 MiB of idle HTTP/1 connections: inside a 64 MiB sidecar limit.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Prometheus, the kubelet's probes and a few people, with room to spare.
const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
const DEFAULT_MAX_INFLIGHT_READS: usize = 1024;
/// Two whole answers at the default `reconcile.max_body_bytes`.
const DEFAULT_MAX_COMPARED_BYTES: usize = 16 * 1024 * 1024;

impl Cx<'_> {
    /// The settings the listeners and the serving tasks take from the
    /// file: three top-level keys and the `limits` block.
    pub(super) fn runtime(&mut self, raw: &RawConfig, top: &YamlPath) -> RuntimeSettings {
        let shutdown_grace = self
            .parse(
                &raw.shutdown_grace,
                &top.key("shutdown_grace"),
                parse_duration,
            )
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        let max_buffered_body = self
            .parse(&raw.max_buffered_body, &top.key("max_buffered_body"), |s| {
                parse_count(s, 0)
            })
            .unwrap_or(DEFAULT_MAX_BUFFERED_BODY);
        let max_spooled_body = self
            .parse(&raw.max_spooled_body, &top.key("max_spooled_body"), |s| {
                parse_count(s, 0)
            })
            .unwrap_or(DEFAULT_MAX_SPOOLED_BODY);
        let limits = raw.limits.as_ref();
        let limits_at = top.key("limits");
        type Key = fn(&RawLimits) -> &Option<String>;
        let mut limit = |key: &str, get: Key, default: Duration| {
            limits
                .and_then(|l| self.parse(get(l), &limits_at.key(key), parse_nonzero))
                .unwrap_or(default)
        };
        let head_timeout = limit("head_timeout", |l| &l.head_timeout, DEFAULT_HEAD_TIMEOUT);
        let body_timeout = limit("body_timeout", |l| &l.body_timeout, DEFAULT_BODY_TIMEOUT);
        let handshake_timeout = limit(
            "handshake_timeout",
            |l| &l.handshake_timeout,
            DEFAULT_HANDSHAKE_TIMEOUT,
        );
        let idle_timeout = limit("idle_timeout", |l| &l.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        let stream_idle_timeout = limit(
            "stream_idle_timeout",
            |l| &l.stream_idle_timeout,
            DEFAULT_STREAM_IDLE_TIMEOUT,
        );
        let h2_ping_interval = limit(
            "h2_ping_interval",
            |l| &l.h2_ping_interval,
            DEFAULT_H2_PING_INTERVAL,
        );
        let h2_ping_timeout = limit(
            "h2_ping_timeout",
            |l| &l.h2_ping_timeout,
            DEFAULT_H2_PING_TIMEOUT,
        );
        let mut count = |key: &str, get: Key, default: usize| {
            limits
                .and_then(|l| self.parse(get(l), &limits_at.key(key), |s| parse_count(s, 1)))
                .unwrap_or(default)
        };
        let max_connections = count(
            "max_connections",
            |l| &l.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        );
        let admin_max_connections = count(
            "admin_max_connections",
            |l| &l.admin_max_connections,
            DEFAULT_ADMIN_MAX_CONNECTIONS,
        );
        let max_inflight_reads = count(
            "max_inflight_reads",
            |l| &l.max_inflight_reads,
            DEFAULT_MAX_INFLIGHT_READS,
        );
        let max_compared_bytes = count(
            "max_compared_bytes",
            |l| &l.max_compared_bytes,
            DEFAULT_MAX_COMPARED_BYTES,
        );
        let max_spooled_bytes = count(
            "max_spooled_bytes",
            |l| &l.max_spooled_bytes,
            DEFAULT_MAX_SPOOLED_BYTES,
        );
        RuntimeSettings {
            shutdown_grace,
            max_buffered_body,
            max_spooled_body,
            head_timeout,
            body_timeout,
            handshake_timeout,
            idle_timeout,
            stream_idle_timeout,
            h2_ping_interval,
            h2_ping_timeout,
            max_connections,
            admin_max_connections,
            max_inflight_reads,
            max_compared_bytes,
            max_spooled_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{MINIMAL, errors, ok};

    #[test]
    fn every_bad_limit_is_located_at_its_key() {
        let errs = errors(&format!(
            "{MINIMAL}limits:\n  max_connections: 0\n  idle_timeout: 0s\n  handshake_timeout: soon\n  max_compared_bytes: -1\n"
        ));
        assert_eq!(errs.len(), 4, "{errs:?}");
        for (at, what) in [
            ("9:20", "1 or more"),
            ("10:17", "more than 0"),
            ("11:22", "soon"),
            ("12:23", "-1"),
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(at) && e.contains(what)),
                "{at} {what}: {errs:?}"
            );
        }
    }

    #[test]
    fn spooling_keys_default_parse_and_are_located_when_bad() {
        let c = ok(MINIMAL);
        assert_eq!(c.settings.runtime.max_spooled_body, 16 * 1024 * 1024);
        assert_eq!(c.settings.runtime.max_spooled_bytes, 64 * 1024 * 1024);
        let c = ok(&format!(
            "max_spooled_body: 0\n{MINIMAL}limits:\n  max_spooled_bytes: 1000\n"
        ));
        assert_eq!(
            c.settings.runtime.max_spooled_body, 0,
            "0 turns spooling off"
        );
        assert_eq!(c.settings.runtime.max_spooled_bytes, 1000);
        let errs = errors(&format!(
            "max_spooled_body: lots\n{MINIMAL}limits:\n  max_spooled_bytes: 0\n"
        ));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("1:19") && errs[0].contains("lots"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("10:22") && errs[1].contains("1 or more"),
            "{errs:?}"
        );
    }
}
