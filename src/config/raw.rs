//! The config file as written: serde types whose leaves are still text, the
//! known-key table for every level, and the pass that turns a YAML value into
//! them while collecting every unknown key and misplaced list or map.
//!
//! Leaves are `String` (numbers and booleans are turned into their text) so
//! that `compile` can parse each one and report every bad value in one pass;
//! serde's `deny_unknown_fields` is only a safety net behind the key tables.

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::locate::{Problems, Target, YamlPath};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub version: Option<String>,
    pub consumer: Option<String>,
    pub risk: Option<String>,
    pub listen: Option<String>,
    pub admin: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_buffered_body: Option<String>,
    pub max_spooled_body: Option<String>,
    pub state_file: Option<String>,
    pub defaults: Option<RawDefaults>,
    pub access_log: Option<RawAccessLog>,
    pub limits: Option<RawLimits>,
    /// `None` items are list entries that were not maps (already reported).
    pub routes: Option<Vec<Option<RawRoute>>>,
}

pub(super) const TOP_KEYS: &[Field] = &[
    Field::scalar("version"),
    Field::scalar("consumer"),
    Field::scalar("risk"),
    Field::scalar("listen"),
    Field::scalar("admin"),
    Field::scalar("shutdown_grace"),
    Field::scalar("max_buffered_body"),
    Field::scalar("max_spooled_body"),
    Field::scalar("state_file"),
    Field::new("defaults", Shape::Map(DEFAULTS_KEYS)),
    Field::new("access_log", Shape::Map(ACCESS_LOG_KEYS)),
    Field::new("limits", Shape::Map(LIMITS_KEYS)),
    Field::new("routes", Shape::Seq(&Shape::Map(ROUTE_KEYS))),
];

/// How long a consumer may take, and how much of cutover it may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub head_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub handshake_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub h2_ping_interval: Option<String>,
    pub h2_ping_timeout: Option<String>,
    pub max_connections: Option<String>,
    pub max_inflight_reads: Option<String>,
    pub max_compared_bytes: Option<String>,
    pub max_spooled_bytes: Option<String>,
}

pub(super) const LIMITS_KEYS: &[Field] = &[
    Field::scalar("head_timeout"),
    Field::scalar("body_timeout"),
    Field::scalar("handshake_timeout"),
    Field::scalar("idle_timeout"),
    Field::scalar("h2_ping_interval"),
    Field::scalar("h2_ping_timeout"),
    Field::scalar("max_connections"),
    Field::scalar("max_inflight_reads"),
    Field::scalar("max_compared_bytes"),
    Field::scalar("max_spooled_bytes"),
];

/// One JSON line per read, opt-in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    pub path: Option<String>,
    pub sample: Option<String>,
}

pub(super) const ACCESS_LOG_KEYS: &[Field] = &[Field::scalar("path"), Field::scalar("sample")];

/// Side settings that apply to every side unless the side overrides them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub max_inflight: Option<String>,
    pub ca_file: Option<String>,
}

pub(super) const DEFAULTS_KEYS: &[Field] = &[
    Field::scalar("connect_timeout"),
    Field::scalar("timeout"),
    Field::scalar("max_inflight"),
    Field::scalar("ca_file"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub batch: Option<RawSide>,
    pub streaming: Option<RawSide>,
    pub mode: Option<String>,
    pub dataset: Option<String>,
    pub canary: Option<RawCanary>,
    pub fallback: Option<RawFallback>,
    pub freshness: Option<RawFreshness>,
    pub reconcile: Option<RawReconcile>,
    pub gate: Option<RawGate>,
    pub sequence: Option<RawSequence>,
}

pub(super) const ROUTE_KEYS: &[Field] = &[
    Field::scalar("name"),
    Field::new("match", Shape::Map(MATCH_KEYS)),
    Field::new("batch", Shape::ScalarOrMap(SIDE_KEYS)),
    Field::new("streaming", Shape::ScalarOrMap(SIDE_KEYS)),
    Field::scalar("mode"),
    Field::scalar("dataset"),
    Field::new("canary", Shape::Map(CANARY_KEYS)),
    Field::new("fallback", Shape::Map(FALLBACK_KEYS)),
    Field::new("freshness", Shape::Map(FRESHNESS_KEYS)),
    Field::new("reconcile", Shape::Map(RECONCILE_KEYS)),
    Field::new("gate", Shape::Map(GATE_KEYS)),
    Field::new("sequence", Shape::Map(SEQUENCE_KEYS)),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub path_prefix: Option<String>,
    pub methods: Option<Vec<Option<String>>>,
}

pub(super) const MATCH_KEYS: &[Field] = &[
    Field::scalar("path_prefix"),
    Field::new("methods", Shape::Seq(&Shape::Scalar)),
];

/// `batch: http://host/path` or `batch: { url: ..., timeout: ... }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSide {
    Url(String),
    Full(RawSideMap),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSideMap {
    pub url: Option<String>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub max_inflight: Option<String>,
    pub ca_file: Option<String>,
}

pub(super) const SIDE_KEYS: &[Field] = &[
    Field::scalar("url"),
    Field::scalar("connect_timeout"),
    Field::scalar("timeout"),
    Field::scalar("max_inflight"),
    Field::scalar("ca_file"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCanary {
    pub percent: Option<String>,
    pub sticky_header: Option<String>,
}

pub(super) const CANARY_KEYS: &[Field] =
    &[Field::scalar("percent"), Field::scalar("sticky_header")];

/// Which reads belong together (one object, one listing) and how long a
/// sequence stays on its side.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSequence {
    pub params: Option<Vec<Option<String>>>,
    pub pin_ttl: Option<String>,
    pub max_pins: Option<String>,
}

pub(super) const SEQUENCE_KEYS: &[Field] = &[
    Field::new("params", Shape::Seq(&Shape::Scalar)),
    Field::scalar("pin_ttl"),
    Field::scalar("max_pins"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFallback {
    pub on: Option<Vec<Option<String>>>,
    pub max_staleness: Option<String>,
    pub circuit: Option<RawCircuit>,
}

pub(super) const FALLBACK_KEYS: &[Field] = &[
    Field::new("on", Shape::Seq(&Shape::Scalar)),
    Field::scalar("max_staleness"),
    Field::new("circuit", Shape::Map(CIRCUIT_KEYS)),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCircuit {
    pub failures: Option<String>,
    pub cooldown: Option<String>,
}

pub(super) const CIRCUIT_KEYS: &[Field] = &[Field::scalar("failures"), Field::scalar("cooldown")];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFreshness {
    pub header: Option<String>,
    pub last_modified: Option<String>,
    pub probe_interval: Option<String>,
    pub probe_method: Option<String>,
    pub window: Option<String>,
}

pub(super) const FRESHNESS_KEYS: &[Field] = &[
    Field::scalar("header"),
    Field::scalar("last_modified"),
    Field::scalar("probe_interval"),
    Field::scalar("probe_method"),
    Field::scalar("window"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReconcile {
    pub sample: Option<String>,
    pub records: Option<String>,
    pub key: Option<String>,
    pub ignore: Option<Vec<Option<String>>>,
    pub numeric_tolerance: Option<String>,
    pub event_time: Option<String>,
    pub divergence_log: Option<String>,
    pub max_inflight: Option<String>,
    pub max_body_bytes: Option<String>,
}

pub(super) const RECONCILE_KEYS: &[Field] = &[
    Field::scalar("sample"),
    Field::scalar("records"),
    Field::scalar("key"),
    Field::new("ignore", Shape::Seq(&Shape::Scalar)),
    Field::scalar("numeric_tolerance"),
    Field::scalar("event_time"),
    Field::scalar("divergence_log"),
    Field::scalar("max_inflight"),
    Field::scalar("max_body_bytes"),
];

/// A route's automatic rollback (SPEC 1.1 `gate`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGate {
    pub interval: Option<String>,
    pub window: Option<String>,
    pub failures: Option<String>,
    pub min_reads: Option<String>,
    pub max_error_ratio_delta: Option<String>,
    pub max_fallback_ratio: Option<String>,
    pub max_divergence_ratio: Option<String>,
    pub max_streaming_age: Option<String>,
    pub rollback_to: Option<String>,
}

pub(super) const GATE_KEYS: &[Field] = &[
    Field::scalar("interval"),
    Field::scalar("window"),
    Field::scalar("failures"),
    Field::scalar("min_reads"),
    Field::scalar("max_error_ratio_delta"),
    Field::scalar("max_fallback_ratio"),
    Field::scalar("max_divergence_ratio"),
    Field::scalar("max_streaming_age"),
    Field::scalar("rollback_to"),
];

/// One known key of a map and what its value must look like.
#[derive(Debug)]
pub(super) struct Field {
    pub key: &'static str,
    pub shape: Shape,
}

impl Field {
    const fn new(key: &'static str, shape: Shape) -> Field {
        Field { key, shape }
    }

    const fn scalar(key: &'static str) -> Field {
        Field::new(key, Shape::Scalar)
    }
}

/// What a node must look like before serde sees it.
#[derive(Debug)]
pub(super) enum Shape {
    /// A string, number or boolean; kept as its text.
    Scalar,
    Seq(&'static Shape),
    Map(&'static [Field]),
    /// A side: a bare URL or a map.
    ScalarOrMap(&'static [Field]),
}

/// Turns the parsed YAML into raw types. Every unknown key and every value of
/// the wrong kind (a list where a map belongs...) is reported to `problems`
/// and dropped, so that serde only sees what the tables allow and the rest of
/// the file is still checked. `None` when nothing usable is left.
pub(super) fn parse(mut value: Value, problems: &mut Problems) -> Option<RawConfig> {
    let root = YamlPath::root();
    match &value {
        Value::Null => {
            problems.push(
                &root,
                Target::Value,
                "the config is empty: expected `version: 1`, `consumer` and `routes`",
            );
            return None;
        }
        Value::Mapping(_) => {}
        _ => {
            problems.push(
                &root,
                Target::Value,
                "a config must be a map with `version: 1`, `consumer` and `routes`",
            );
            return None;
        }
    }
    normalize(&mut value, &Shape::Map(TOP_KEYS), &root, problems);
    match serde_yaml::from_value(value) {
        Ok(raw) => Some(raw),
        Err(e) => {
            // The tables above should make this unreachable; still say what broke.
            problems.push(&root, Target::Value, e.to_string());
            None
        }
    }
}

fn normalize(value: &mut Value, shape: &Shape, at: &YamlPath, problems: &mut Problems) {
    if let Value::Tagged(tagged) = value {
        problems.push(
            at,
            Target::Value,
            format!("unexpected YAML tag `{}`", tagged.tag),
        );
        *value = Value::Null;
        return;
    }
    match (shape, &mut *value) {
        (_, Value::Null) => {}
        (Shape::Scalar | Shape::ScalarOrMap(_), Value::String(_)) => {}
        (Shape::Scalar | Shape::ScalarOrMap(_), Value::Number(n)) => {
            *value = Value::String(n.to_string());
        }
        (Shape::Scalar | Shape::ScalarOrMap(_), Value::Bool(b)) => {
            *value = Value::String(b.to_string());
        }
        (Shape::Map(fields) | Shape::ScalarOrMap(fields), Value::Mapping(map)) => {
            normalize_map(map, fields, at, problems);
        }
        (Shape::Seq(item), Value::Sequence(items)) => {
            for (i, v) in items.iter_mut().enumerate() {
                let at = at.index(i);
                if v.is_null() {
                    problems.push(&at, Target::Value, "empty list item");
                } else {
                    normalize(v, item, &at, problems);
                }
            }
        }
        (shape, found) => {
            problems.push(at, Target::Value, wrong_kind(shape, found));
            *value = Value::Null;
        }
    }
}

fn normalize_map(map: &mut Mapping, fields: &[Field], at: &YamlPath, problems: &mut Problems) {
    let mut unknown = Vec::new();
    // The key before, when its value is empty: an unknown key that belongs
    // in its block was most likely meant to be indented under it.
    let mut empty_block: Option<&Field> = None;
    for (k, v) in map.iter_mut() {
        let name = key_text(k);
        match fields.iter().find(|f| k.as_str() == Some(f.key)) {
            Some(field) => {
                empty_block = v.is_null().then_some(field);
                normalize(v, &field.shape, &at.key(&name), problems);
            }
            None => {
                let hint = match empty_block.map(|f| (f.key, &f.shape)) {
                    Some((block, Shape::Map(inner) | Shape::ScalarOrMap(inner)))
                        if inner.iter().any(|f| f.key == name) =>
                    {
                        format!(
                            "; `{name}` belongs in `{block}`, which is empty above: indent it under `{block}:`"
                        )
                    }
                    _ => String::new(),
                };
                problems.push(
                    &at.key(&name),
                    Target::Key,
                    format!(
                        "unknown key `{name}` (expected one of: {}){hint}",
                        key_list(fields)
                    ),
                );
                unknown.push(k.clone());
                empty_block = None;
            }
        }
    }
    for k in unknown {
        map.shift_remove(&k);
    }
}

fn wrong_kind(shape: &Shape, found: &Value) -> String {
    let found = match found {
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        _ => "a single value",
    };
    match shape {
        Shape::Scalar => format!("expected a single value, found {found}"),
        Shape::Seq(_) => format!("expected a list, e.g. [a, b], found {found}"),
        Shape::Map(fields) => {
            format!(
                "expected a map with keys {}, found {found}",
                key_list(fields)
            )
        }
        Shape::ScalarOrMap(_) => {
            format!("expected a URL or a map with `url`, found {found}")
        }
    }
}

fn key_list(fields: &[Field]) -> String {
    fields.iter().map(|f| f.key).collect::<Vec<_>>().join(", ")
}

/// A map key as text, for messages and paths (keys are nearly always strings).
pub(super) fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_owned(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serde structs and the key tables must list the same keys: the
    /// tables decide what is reported, the structs what is read.
    #[test]
    fn key_tables_match_the_serde_structs() {
        fn serde_keys<T: for<'de> Deserialize<'de> + std::fmt::Debug>() -> Vec<String> {
            let err = serde_yaml::from_str::<T>("zz_not_a_key: 1")
                .unwrap_err()
                .to_string();
            // "expected `a` or `b`" or "expected one of `a`, `b`, `c`"
            let list = err.split(", expected ").nth(1).expect(&err);
            let list = list.split(" at line").next().unwrap_or(list);
            let list = list.trim_start_matches("one of ").replace(" or ", ", ");
            list.split(", ")
                .map(|k| k.trim_matches('`').to_owned())
                .collect()
        }
        fn table(fields: &[Field]) -> Vec<String> {
            fields.iter().map(|f| f.key.to_owned()).collect()
        }
        assert_eq!(serde_keys::<RawConfig>(), table(TOP_KEYS));
        assert_eq!(serde_keys::<RawDefaults>(), table(DEFAULTS_KEYS));
        assert_eq!(serde_keys::<RawAccessLog>(), table(ACCESS_LOG_KEYS));
        assert_eq!(serde_keys::<RawLimits>(), table(LIMITS_KEYS));
        assert_eq!(serde_keys::<RawRoute>(), table(ROUTE_KEYS));
        assert_eq!(serde_keys::<RawMatch>(), table(MATCH_KEYS));
        assert_eq!(serde_keys::<RawSideMap>(), table(SIDE_KEYS));
        assert_eq!(serde_keys::<RawCanary>(), table(CANARY_KEYS));
        assert_eq!(serde_keys::<RawFallback>(), table(FALLBACK_KEYS));
        assert_eq!(serde_keys::<RawCircuit>(), table(CIRCUIT_KEYS));
        assert_eq!(serde_keys::<RawFreshness>(), table(FRESHNESS_KEYS));
        assert_eq!(serde_keys::<RawReconcile>(), table(RECONCILE_KEYS));
        assert_eq!(serde_keys::<RawGate>(), table(GATE_KEYS));
        assert_eq!(serde_keys::<RawSequence>(), table(SEQUENCE_KEYS));
    }

    #[test]
    fn numbers_and_booleans_become_text_and_wrong_kinds_are_dropped() {
        let text = "version: 1\nconsumer: c\nroutes:\n  - name: a\n    canary: {percent: 12.5}\n    freshness: {last_modified: false}\n    match: [x]\n  - 7\n";
        let mut problems = Problems::default();
        let raw = parse(serde_yaml::from_str(text).unwrap(), &mut problems).unwrap();
        assert_eq!(raw.version.as_deref(), Some("1"));
        let routes = raw.routes.unwrap();
        let r = routes[0].as_ref().unwrap();
        assert_eq!(r.canary.as_ref().unwrap().percent.as_deref(), Some("12.5"));
        assert_eq!(
            r.freshness.as_ref().unwrap().last_modified.as_deref(),
            Some("false")
        );
        assert!(r.matcher.is_none());
        assert!(routes[1].is_none());
        let messages: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("expected a map with keys path_prefix, methods"));
        assert!(messages[1].starts_with("expected a map with keys name, match"));
    }
}
