//! The file's own keys (`version`, `consumer`, `risk`, the two listeners,
//! `state_file`, `access_log`) and the walk over `routes`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::super::locate::YamlPath;
use super::super::model::*;
use super::super::raw::{RawAccessLog, RawConfig};
use super::scalars::{non_empty, parse_addr, parse_number, parse_risk};
use super::side::SideDefaults;
use super::{Cx, Draft};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

impl Cx<'_> {
    /// The whole file. `None` when a value the config cannot do without
    /// (`consumer`) is missing or bad; every problem is in `self.problems`.
    pub(super) fn config(&mut self, raw: &RawConfig) -> Option<Draft> {
        let top = YamlPath::root();
        match raw.version.as_deref() {
            None => self.missing(&top.key("version"), "missing `version: 1`"),
            Some("1") => {}
            Some(v) => self.error(
                &top.key("version"),
                format!("unsupported version `{v}`: this cutover reads version 1"),
            ),
        }
        let consumer = match raw.consumer.as_deref().map(str::trim) {
            None => {
                self.missing(
                    &top.key("consumer"),
                    "missing `consumer`: name the consumer behind this sidecar",
                );
                None
            }
            Some("") => {
                self.error(&top.key("consumer"), "`consumer` is empty");
                None
            }
            Some(c) => self.label(&top.key("consumer"), "consumer", c),
        };
        let risk = self.parse(&raw.risk, &top.key("risk"), parse_risk);
        let listen = self.parse(&raw.listen, &top.key("listen"), parse_addr);
        let admin = self.parse(&raw.admin, &top.key("admin"), parse_addr);
        let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let admin = admin.unwrap_or_else(|| DEFAULT_ADMIN.parse().expect("valid default"));
        if same_socket(listen, admin) {
            let at = if raw.admin.is_some() {
                top.key("admin")
            } else {
                top.key("listen")
            };
            self.error(
                &at,
                format!("admin {admin} and listen {listen} share a port: give admin another port"),
            );
        }
        let runtime = self.runtime(raw, &top);
        let state_file = self.parse(&raw.state_file, &top.key("state_file"), |s| {
            // As written: a relative path is under the process's --data-dir
            // (never beside the config, which may be read-only).
            non_empty("state_file", s).map(PathBuf::from)
        });
        let defaults = match &raw.defaults {
            Some(d) => self.defaults(d, &top.key("defaults")),
            None => SideDefaults::default(),
        };
        let access_log = raw
            .access_log
            .as_ref()
            .map(|a| self.access_log(a, &top.key("access_log")));

        let routes_at = top.key("routes");
        let mut routes = Vec::new();
        match &raw.routes {
            None => self.missing(&routes_at, "missing `routes`: add at least one route"),
            Some(list) if list.is_empty() => {
                self.error(&routes_at, "`routes` is empty: add at least one route")
            }
            Some(list) => {
                let mut names: HashMap<String, YamlPath> = HashMap::new();
                let mut prefixes: HashMap<String, (String, YamlPath)> = HashMap::new();
                for (i, route) in list.iter().enumerate() {
                    let Some(route) = route else { continue };
                    let at = routes_at.index(i);
                    let draft = self.route(route, &at, &defaults);
                    self.check_unique(route, &at, &mut names, &mut prefixes);
                    routes.extend(draft);
                }
            }
        }

        Some(Draft {
            consumer: consumer?,
            risk: risk.unwrap_or(Risk::Low),
            listen,
            admin,
            runtime,
            access_log,
            state_file,
            routes,
        })
    }

    fn access_log(&mut self, raw: &RawAccessLog, at: &YamlPath) -> AccessLogSettings {
        let target = match raw.path.as_deref().map(str::trim) {
            None | Some("stdout") => LogTarget::Stdout,
            Some("stderr") => LogTarget::Stderr,
            Some("") => {
                self.error(
                    &at.key("path"),
                    "`path` is empty: stdout, stderr or a file path",
                );
                LogTarget::Stdout
            }
            Some(file) => LogTarget::File(PathBuf::from(file)),
        };
        let sample = self
            .parse(&raw.sample, &at.key("sample"), |s| {
                let v = parse_number(s)?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!(
                        "sample `{s}` is out of range: use 0 to 1 (0.1 = 10% of plain reads)"
                    ));
                }
                Ok(v)
            })
            .unwrap_or(1.0);
        AccessLogSettings { target, sample }
    }
}

/// Whether two addresses would collide: the same port (other than 0, which
/// picks a free one) on the same or an unspecified IP.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{MINIMAL, compile_text, errors, ok};
    use super::*;

    #[test]
    fn names_that_become_labels_are_short_and_plain() {
        let long = "c".repeat(129);
        let errs = errors(&MINIMAL.replace("consumer: dash", &format!("consumer: {long}")));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("2:11: consumer is 129 bytes long: at most 128"),
            "{errs:?}"
        );
        let errs = errors(&MINIMAL.replace("name: orders", "name: 'orders v2'"));
        assert!(
            errs[0].contains("route `name` `orders v2` has ' '"),
            "{errs:?}"
        );
        assert!(compile_text(&MINIMAL.replace("name: orders", "name: orders.v2/eu:1_a-b")).is_ok());
    }

    #[test]
    fn the_access_log_is_off_by_default_and_checked_when_on() {
        assert_eq!(ok(MINIMAL).settings.access_log, None);
        let on = ok(&format!(
            "access_log: {{ path: logs/access.jsonl, sample: 0.1 }}\n{MINIMAL}"
        ));
        assert_eq!(
            on.settings.access_log,
            Some(AccessLogSettings {
                target: LogTarget::File(PathBuf::from("logs/access.jsonl")),
                sample: 0.1
            })
        );
        let stdout = ok(&format!("access_log: {{}}\n{MINIMAL}"));
        assert_eq!(
            stdout.settings.access_log,
            Some(AccessLogSettings {
                target: LogTarget::Stdout,
                sample: 1.0
            })
        );
        let bad = errors(&format!(
            "access_log: {{ path: '', sample: 2, colour: red }}\n{MINIMAL}"
        ));
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad.iter().all(|e| e.starts_with("1:")), "{bad:?}");
    }

    #[test]
    fn top_level_problems_are_reported_together() {
        assert_eq!(
            errors("version: 2\nlisten: 127.0.0.1:9901\nrisk: huge\nroutes: []\nextra: 1\n"),
            [
                "1:1: missing `consumer`: name the consumer behind this sidecar",
                "1:10: unsupported version `2`: this cutover reads version 1",
                "2:9: admin 127.0.0.1:9901 and listen 127.0.0.1:9901 share a port: give admin another port",
                "3:7: unknown risk `huge` (expected low, medium or high)",
                "4:9: `routes` is empty: add at least one route",
                "5:1: unknown key `extra` (expected one of: version, consumer, risk, listen, admin, shutdown_grace, max_buffered_body, max_spooled_body, state_file, defaults, access_log, limits, routes)",
            ]
        );
        assert_eq!(
            errors(""),
            ["1:1: the config is empty: expected `version: 1`, `consumer` and `routes`"]
        );
    }
}
