//! One route: its name, dataset and `match`, and the blocks that shape how
//! it is served (`canary`, `fallback`, `freshness`); its sides, `reconcile`,
//! `gate`, `sequence` and `contract` have their own files. Also the checks across
//! routes (unique names and prefixes).

use std::collections::HashMap;
use std::time::Duration;

use http::Method;
use http::header::HeaderName;

use super::super::locate::{Target, YamlPath, locate};
use super::super::model::*;
use super::super::raw::RawRoute;
use super::Cx;
use super::scalars::{
    parse_bool, parse_duration, parse_header_name, parse_interval, parse_method, parse_mode,
    parse_nonzero, parse_percent, parse_prefix, parse_reason, parse_u32,
};
use super::side::SideDefaults;

const DEFAULT_CIRCUIT_FAILURES: u32 = 5;
const DEFAULT_CIRCUIT_COOLDOWN: Duration = Duration::from_secs(30);
const DEFAULT_WATERMARK_HEADER: &str = "x-data-watermark";
const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
const MIN_WINDOW: Duration = Duration::from_secs(30);

impl Cx<'_> {
    pub(super) fn check_unique(
        &mut self,
        route: &RawRoute,
        at: &YamlPath,
        names: &mut HashMap<String, YamlPath>,
        prefixes: &mut HashMap<String, (String, YamlPath)>,
    ) {
        let name = route.name.as_deref().map(str::trim).unwrap_or("");
        if !name.is_empty() {
            let here = at.key("name");
            match names.get(name) {
                Some(first) => {
                    let (line, column) = locate(self.text, first, Target::Value);
                    self.error(
                        &here,
                        format!("duplicate route name `{name}` (first defined at {line}:{column})"),
                    );
                }
                None => {
                    names.insert(name.to_owned(), here);
                }
            }
        }
        let raw_prefix = route
            .matcher
            .as_ref()
            .and_then(|m| m.path_prefix.as_deref());
        if let Some(prefix) = raw_prefix.and_then(|p| parse_prefix(p).ok()) {
            let here = at.key("match").key("path_prefix");
            match prefixes.get(&prefix) {
                Some((other, first)) => {
                    let (line, column) = locate(self.text, first, Target::Value);
                    self.error(
                        &here,
                        format!(
                            "path_prefix `{prefix}` is already used by route `{other}` \
                             (at {line}:{column}); each route needs its own prefix"
                        ),
                    );
                }
                None => {
                    prefixes.insert(prefix, (name.to_owned(), here));
                }
            }
        }
    }

    pub(super) fn route(
        &mut self,
        raw: &RawRoute,
        at: &YamlPath,
        defaults: &SideDefaults,
    ) -> Option<Route> {
        let name = match raw.name.as_deref().map(str::trim) {
            None => {
                self.missing(&at.key("name"), "route has no `name`");
                None
            }
            Some("") => {
                self.error(&at.key("name"), "route `name` is empty");
                None
            }
            Some(n) => self.label(&at.key("name"), "route `name`", n),
        };

        let dataset = match raw.dataset.as_deref().map(str::trim) {
            Some("") => {
                self.error(&at.key("dataset"), "route `dataset` is empty");
                None
            }
            Some(d) => self.label(&at.key("dataset"), "route `dataset`", d),
            None => name.clone(),
        };

        let match_at = at.key("match");
        let (prefix, methods) = match &raw.matcher {
            None => {
                self.missing(
                    &match_at,
                    "route has no `match` (e.g. match: { path_prefix: /v1/orders })",
                );
                (None, MethodSet::new(Vec::new()))
            }
            Some(m) => {
                let prefix = match &m.path_prefix {
                    None => {
                        self.missing(
                            &match_at.key("path_prefix"),
                            "`match` has no `path_prefix` (e.g. path_prefix: /v1/orders)",
                        );
                        None
                    }
                    some => self.parse(some, &match_at.key("path_prefix"), parse_prefix),
                };
                (prefix, self.methods(&m.methods, &match_at.key("methods")))
            }
        };

        let batch = self.side(&raw.batch, &at.key("batch"), "batch", defaults);
        let streaming = self.side(&raw.streaming, &at.key("streaming"), "streaming", defaults);

        let mode_at = at.key("mode");
        let mode = self.parse(&raw.mode, &mode_at, parse_mode);
        let canary = self.canary(raw, at, mode);
        let mode = mode.unwrap_or(Mode::Batch);
        let fallback = self.fallback(raw, &at.key("fallback"));
        let freshness = self.freshness(raw, &at.key("freshness"));
        let reconcile = self.reconcile(raw, &at.key("reconcile"), mode);
        let sequence = self.sequence(raw.sequence.as_ref(), &at.key("sequence"));
        let gate = raw
            .gate
            .as_ref()
            .and_then(|g| self.gate(g, at, mode, freshness.window));
        let contract = raw
            .contract
            .as_ref()
            .and_then(|c| self.contract(c, at, mode));
        if let Some(g) = raw.gate.as_ref()
            && g.max_contract_violation_ratio.is_some()
            && raw.contract.is_none()
        {
            self.warnings.push(
                &at.key("gate").key("max_contract_violation_ratio"),
                Target::Key,
                "gate max_contract_violation_ratio on a route with no `contract`: \
                 no answer is checked, so this check never decides",
            );
        }

        Some(Route {
            name: name?,
            dataset: dataset?,
            prefix: prefix?,
            methods,
            batch: batch?,
            streaming: streaming?,
            mode,
            canary,
            fallback,
            freshness,
            reconcile,
            sequence,
            gate,
            contract,
        })
    }

    fn methods(&mut self, raw: &Option<Vec<Option<String>>>, at: &YamlPath) -> MethodSet {
        let Some(list) = raw else {
            return MethodSet::new(vec![Method::GET, Method::HEAD]);
        };
        if list.is_empty() {
            self.error(
                at,
                "`methods` is empty: list at least one, e.g. [GET, HEAD]",
            );
        }
        let mut methods: Vec<Method> = Vec::new();
        for (i, m) in list.iter().enumerate() {
            match self.parse(m, &at.index(i), parse_method) {
                Some(m) if !methods.contains(&m) => methods.push(m),
                _ => {}
            }
        }
        MethodSet::new(methods)
    }

    fn canary(&mut self, route: &RawRoute, at: &YamlPath, mode: Option<Mode>) -> Canary {
        let empty = Default::default();
        let raw = route.canary.as_ref().unwrap_or(&empty);
        let route_at = at;
        let at = route_at.key("canary");
        let percent = self.parse(&raw.percent, &at.key("percent"), parse_percent);
        if mode == Some(Mode::Canary) && raw.percent.is_none() && !self.problems.reported_at(&at) {
            self.error(
                &route_at.key("mode"),
                "mode `canary` needs `canary.percent` (the share of reads sent to streaming, e.g. 10)",
            );
        }
        let sticky_header = self.parse(
            &raw.sticky_header,
            &at.key("sticky_header"),
            parse_header_name,
        );
        Canary {
            percent: percent.unwrap_or(0.0),
            sticky_header,
        }
    }

    fn fallback(&mut self, route: &RawRoute, at: &YamlPath) -> FallbackPolicy {
        let empty = Default::default();
        let raw = route.fallback.as_ref().unwrap_or(&empty);
        let on = match &raw.on {
            None => ReasonSet::all(),
            Some(list) => {
                let mut set = ReasonSet::empty();
                for (i, r) in list.iter().enumerate() {
                    if let Some(r) = self.parse(r, &at.key("on").index(i), parse_reason) {
                        set.insert(r);
                    }
                }
                set
            }
        };
        let max_staleness = self.parse(&raw.max_staleness, &at.key("max_staleness"), parse_nonzero);
        let circuit_empty = Default::default();
        let circuit = raw.circuit.as_ref().unwrap_or(&circuit_empty);
        let circuit_at = at.key("circuit");
        let failures = self.parse(&circuit.failures, &circuit_at.key("failures"), parse_u32);
        let cooldown = self.parse(
            &circuit.cooldown,
            &circuit_at.key("cooldown"),
            parse_nonzero,
        );
        FallbackPolicy {
            on,
            max_staleness,
            circuit: CircuitPolicy {
                failures: failures.unwrap_or(DEFAULT_CIRCUIT_FAILURES),
                cooldown: cooldown.unwrap_or(DEFAULT_CIRCUIT_COOLDOWN),
            },
        }
    }

    fn freshness(&mut self, route: &RawRoute, at: &YamlPath) -> Freshness {
        let empty = Default::default();
        let raw = route.freshness.as_ref().unwrap_or(&empty);
        let header = self.parse(&raw.header, &at.key("header"), parse_header_name);
        let last_modified = self.parse(&raw.last_modified, &at.key("last_modified"), parse_bool);
        let probe_interval = self.parse(
            &raw.probe_interval,
            &at.key("probe_interval"),
            parse_interval,
        );
        let probe_method = self.parse(&raw.probe_method, &at.key("probe_method"), |s| match s {
            "HEAD" => Ok(Method::HEAD),
            "GET" => Ok(Method::GET),
            _ => Err(format!("bad probe_method `{s}` (expected HEAD or GET)")),
        });
        let window = self.parse(&raw.window, &at.key("window"), |s| {
            let d = parse_duration(s)?;
            if d < MIN_WINDOW {
                return Err(format!("window `{s}` is too short: use at least 30s"));
            }
            Ok(d)
        });
        Freshness {
            header: header.unwrap_or(HeaderName::from_static(DEFAULT_WATERMARK_HEADER)),
            last_modified_fallback: last_modified.unwrap_or(true),
            probe_interval: probe_interval.unwrap_or(Some(DEFAULT_PROBE_INTERVAL)),
            probe_method: probe_method.unwrap_or(Method::HEAD),
            window: window.unwrap_or(DEFAULT_WINDOW),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::errors;

    #[test]
    fn route_rules() {
        let base = "version: 1\nconsumer: c\nroutes:\n";
        let errs = errors(&format!(
            "{base}  - name: a
    match: {{ path_prefix: /x, methods: [get, 'B@D'] }}
    batch: {{ timeout: 5 }}
    streaming: http://s/
    mode: canary
    fallback: {{ on: [connect, later] }}
    freshness: {{ window: 10s, last_modified: yes }}
    reconcile: {{ sample: 2, records: data }}
  - name: b
    match: {{ path_prefix: /x/ }}
    batch: http://b/
"
        ));
        assert_eq!(
            errs,
            [
                "5:41: method `get` must be uppercase: GET",
                "5:46: bad method `B@D` (e.g. GET, HEAD, POST)",
                "6:12: `batch` has no `url`",
                "6:23: bad duration `5`: add a unit (ms, s, m, h), e.g. 5s or 5ms",
                "8:11: mode `canary` needs `canary.percent` (the share of reads sent to streaming, e.g. 10)",
                "9:31: unknown fallback reason `later` (expected connect, timeout, 5xx, stale, overflow or circuit)",
                "10:26: window `10s` is too short: use at least 30s",
                "10:46: expected true or false, found `yes`",
                "11:26: sample `2` is out of range: use 0 to 1 (0.05 = 5% of reads)",
                "11:38: records `data` is not a JSON pointer: start it with `/`, e.g. /data",
                "12:5: route has no `streaming` side (a URL, e.g. streaming: http://127.0.0.1:7001/path)",
                "13:27: path_prefix `/x` is already used by route `a` (at 5:27); each route needs its own prefix",
            ]
        );
    }
}
