//! The config file as written: serde types whose leaves are still text, the
//! known-key table for every level, and the pass that turns a YAML value into
//! them while collecting every unknown key and misplaced list or map.
//!
//! Leaves are `String` (numbers and booleans are turned into their text) so
//! that `compile` can parse each one and report every bad value in one pass;
//! serde's `deny_unknown_fields` is only a safety net behind the key tables.
//!
//! Each map is declared once, with `raw_map!`: the serde struct and its key
//! table come from the same list, so a key cannot be read without being
//! known (or known without being read). A key's default lives beside the
//! code that parses it, in the `compile` section that owns the key.

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::locate::{Problems, Target, YamlPath};

/// Declares a raw map: the serde struct (every field optional, unknown
/// fields denied) and `$KEYS`, its known-key table in the same order.
/// `field: Type = Shape` for each key; `field as "key"` when the key is not
/// a Rust identifier (`match`).
macro_rules! raw_map {
    (
        $(#[$meta:meta])*
        $name:ident, $keys:ident {
            $( $(#[$fmeta:meta])* $field:ident $(as $key:literal)? : $ty:ty = $shape:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $( $(#[$fmeta])* $(#[serde(rename = $key)])? pub $field: $ty, )*
        }

        pub(super) const $keys: &[Field] = &[
            $( Field::new(raw_map!(@key $field $($key)?), { use Shape::*; $shape }) ),*
        ];
    };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
}

/// A scalar leaf, kept as its text.
type Text = Option<String>;
/// A list of scalars; `None` items were empty (already reported).
type TextList = Option<Vec<Option<String>>>;

raw_map! {
    /// The whole file.
    RawConfig, TOP_KEYS {
        version: Text = Scalar,
        consumer: Text = Scalar,
        risk: Text = Scalar,
        listen: Text = Scalar,
        admin: Text = Scalar,
        shutdown_grace: Text = Scalar,
        max_buffered_body: Text = Scalar,
        max_spooled_body: Text = Scalar,
        state_file: Text = Scalar,
        defaults: Option<RawDefaults> = Map(DEFAULTS_KEYS),
        access_log: Option<RawAccessLog> = Map(ACCESS_LOG_KEYS),
        limits: Option<RawLimits> = Map(LIMITS_KEYS),
        /// `None` items are list entries that were not maps (already reported).
        routes: Option<Vec<Option<RawRoute>>> = Seq(&Map(ROUTE_KEYS)),
    }
}

raw_map! {
    /// How long a consumer may take, and how much of cutover it may hold.
    RawLimits, LIMITS_KEYS {
        head_timeout: Text = Scalar,
        body_timeout: Text = Scalar,
        handshake_timeout: Text = Scalar,
        idle_timeout: Text = Scalar,
        stream_idle_timeout: Text = Scalar,
        h2_ping_interval: Text = Scalar,
        h2_ping_timeout: Text = Scalar,
        max_connections: Text = Scalar,
        admin_max_connections: Text = Scalar,
        max_inflight_reads: Text = Scalar,
        max_compared_bytes: Text = Scalar,
        max_spooled_bytes: Text = Scalar,
    }
}

raw_map! {
    /// One JSON line per read, opt-in.
    RawAccessLog, ACCESS_LOG_KEYS {
        path: Text = Scalar,
        sample: Text = Scalar,
    }
}

raw_map! {
    /// Side settings that apply to every side unless the side overrides them.
    RawDefaults, DEFAULTS_KEYS {
        connect_timeout: Text = Scalar,
        timeout: Text = Scalar,
        max_inflight: Text = Scalar,
        ca_file: Text = Scalar,
    }
}

raw_map! {
    RawRoute, ROUTE_KEYS {
        name: Text = Scalar,
        matcher as "match": Option<RawMatch> = Map(MATCH_KEYS),
        batch: Option<RawSide> = ScalarOrMap(SIDE_KEYS),
        streaming: Option<RawSide> = ScalarOrMap(SIDE_KEYS),
        mode: Text = Scalar,
        dataset: Text = Scalar,
        canary: Option<RawCanary> = Map(CANARY_KEYS),
        fallback: Option<RawFallback> = Map(FALLBACK_KEYS),
        freshness: Option<RawFreshness> = Map(FRESHNESS_KEYS),
        reconcile: Option<RawReconcile> = Map(RECONCILE_KEYS),
        gate: Option<RawGate> = Map(GATE_KEYS),
        sequence: Option<RawSequence> = Map(SEQUENCE_KEYS),
        contract: Option<RawContract> = Map(CONTRACT_KEYS),
    }
}

raw_map! {
    RawMatch, MATCH_KEYS {
        path_prefix: Text = Scalar,
        methods: TextList = Seq(&Scalar),
    }
}

/// `batch: http://host/path` or `batch: { url: ..., timeout: ... }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSide {
    Url(String),
    Full(RawSideMap),
}

raw_map! {
    RawSideMap, SIDE_KEYS {
        url: Text = Scalar,
        connect_timeout: Text = Scalar,
        timeout: Text = Scalar,
        max_inflight: Text = Scalar,
        ca_file: Text = Scalar,
    }
}

raw_map! {
    RawCanary, CANARY_KEYS {
        percent: Text = Scalar,
        sticky_header: Text = Scalar,
    }
}

raw_map! {
    /// Which reads belong together (one object, one listing) and how long a
    /// sequence stays on its side.
    RawSequence, SEQUENCE_KEYS {
        params: TextList = Seq(&Scalar),
        pin_ttl: Text = Scalar,
        max_pins: Text = Scalar,
    }
}

raw_map! {
    RawFallback, FALLBACK_KEYS {
        on: TextList = Seq(&Scalar),
        max_staleness: Text = Scalar,
        circuit: Option<RawCircuit> = Map(CIRCUIT_KEYS),
    }
}

raw_map! {
    RawCircuit, CIRCUIT_KEYS {
        failures: Text = Scalar,
        cooldown: Text = Scalar,
    }
}

raw_map! {
    RawFreshness, FRESHNESS_KEYS {
        header: Text = Scalar,
        last_modified: Text = Scalar,
        probe_interval: Text = Scalar,
        probe_method: Text = Scalar,
        window: Text = Scalar,
    }
}

raw_map! {
    RawReconcile, RECONCILE_KEYS {
        sample: Text = Scalar,
        records: Text = Scalar,
        key: Text = Scalar,
        ignore: TextList = Seq(&Scalar),
        numeric_tolerance: Text = Scalar,
        event_time: Text = Scalar,
        divergence_log: Text = Scalar,
        max_inflight: Text = Scalar,
        max_body_bytes: Text = Scalar,
        format: Text = Scalar,
    }
}

raw_map! {
    /// A route's automatic rollback (SPEC 1.1 `gate`).
    RawGate, GATE_KEYS {
        interval: Text = Scalar,
        window: Text = Scalar,
        failures: Text = Scalar,
        min_reads: Text = Scalar,
        max_error_ratio_delta: Text = Scalar,
        max_fallback_ratio: Text = Scalar,
        max_divergence_ratio: Text = Scalar,
        max_streaming_age: Text = Scalar,
        max_contract_violation_ratio: Text = Scalar,
        rollback_to: Text = Scalar,
    }
}

raw_map! {
    /// What streaming's answers must satisfy (SPEC 1.2 "Contracts").
    RawContract, CONTRACT_KEYS {
        schema: Text = Scalar,
        unique: TextList = Seq(&Scalar),
        sorted_by: TextList = Seq(&Scalar),
        not_null: TextList = Seq(&Scalar),
        complete: Option<RawComplete> = Map(COMPLETE_KEYS),
        on_violation: Text = Scalar,
        max_body_bytes: Text = Scalar,
        sample: Text = Scalar,
        dead_letter: Text = Scalar,
    }
}

raw_map! {
    /// `contract.complete`: the records cover the window the query names.
    RawComplete, COMPLETE_KEYS {
        event_time: Text = Scalar,
        from: Text = Scalar,
        to: Text = Scalar,
        tolerance: Text = Scalar,
    }
}

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
    /// tables decide what is reported, the structs what is read. `raw_map!`
    /// makes both from one list; this checks the macro (a rename included).
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
        assert_eq!(serde_keys::<RawContract>(), table(CONTRACT_KEYS));
        assert_eq!(serde_keys::<RawComplete>(), table(COMPLETE_KEYS));
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
