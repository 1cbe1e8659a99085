//! What a reload changes, key by key, for the log: the serving config and
//! the new one are both written out as their effective config (every key
//! with the value that applies, defaults filled in) and compared. A key
//! written out with its default value is no change; an edit of any key
//! (`gate.failures`, `reconcile.sample`, `limits.max_connections`) is named
//! with its old and new value.

use serde_yaml::{Mapping, Value};

use super::effective;
use super::model::{Route, Settings};

/// A value longer than this is shown cut, with an ellipsis: the log line
/// names the key, the file holds the rest.
const SHOWN_VALUE_CHARS: usize = 60;

/// Every change from the old config to the new one, in the effective
/// config's key order: `orders: shadow -> streaming` for a route's mode,
/// `orders: added` / `orders: removed` for whole routes, and
/// `orders.gate.failures: 3 -> 5` or `risk: low -> medium` for any other key
/// (`(unset)` where a key without a default is absent).
pub fn describe(old: (&Settings, &[&Route]), new: (&Settings, &[&Route])) -> Vec<String> {
    let parse = |(settings, routes): (&Settings, &[&Route])| {
        serde_yaml::from_str::<Value>(&effective::render(settings, routes)).unwrap_or_default()
    };
    let (old, new) = (parse(old), parse(new));
    let mut changes = Vec::new();
    compare_top(&old, &new, &mut changes);
    changes
}

fn compare_top(old: &Value, new: &Value, out: &mut Vec<String>) {
    let (old, new) = (mapping(old), mapping(new));
    for (key, new_value) in &new {
        let name = key_name(key);
        if name == "routes" {
            compare_routes(old.get(key), new_value, out);
        } else {
            compare(&name, old.get(key), Some(new_value), out);
        }
    }
    for (key, old_value) in &old {
        if !new.contains_key(key) {
            compare(&key_name(key), Some(old_value), None, out);
        }
    }
}

/// Routes are matched by name, not by position: the effective config lists
/// them longest prefix first, which an edit of a prefix reorders.
fn compare_routes(old: Option<&Value>, new: &Value, out: &mut Vec<String>) {
    let routes = |v: Option<&Value>| -> Vec<(String, Mapping)> {
        v.and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .map(|r| {
                        let m = mapping(r);
                        let name = m.get("name").map(scalar).unwrap_or_default();
                        (name, m)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old, new) = (routes(old), routes(Some(new)));
    for (name, route) in &new {
        let Some((_, before)) = old.iter().find(|(n, _)| n == name) else {
            out.push(format!("{name}: added"));
            continue;
        };
        for (key, value) in route {
            let key = key_name(key);
            if key == "mode" {
                let was = before.get("mode").map(scalar).unwrap_or_default();
                let now = scalar(value);
                if was != now {
                    out.push(format!("{name}: {was} -> {now}"));
                }
            } else {
                compare(&format!("{name}.{key}"), before.get(&key), Some(value), out);
            }
        }
        for (key, value) in before {
            if !route.contains_key(key) {
                compare(&format!("{name}.{}", key_name(key)), Some(value), None, out);
            }
        }
    }
    for (name, _) in &old {
        if !new.iter().any(|(n, _)| n == name) {
            out.push(format!("{name}: removed"));
        }
    }
}

/// Maps are walked key by key; anything else (a scalar, a list) is one
/// value, named whole when it differs.
fn compare(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<String>) {
    match (old, new) {
        (Some(Value::Mapping(a)), Some(Value::Mapping(b))) => {
            for (key, value) in b {
                let child = format!("{path}.{}", key_name(key));
                compare(&child, a.get(key), Some(value), out);
            }
            for (key, value) in a {
                if !b.contains_key(key) {
                    compare(&format!("{path}.{}", key_name(key)), Some(value), None, out);
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {} -> {}", shown(a), shown(b))),
    }
}

fn mapping(v: &Value) -> Mapping {
    v.as_mapping().cloned().unwrap_or_default()
}

fn key_name(key: &Value) -> String {
    scalar(key)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}

/// One line, cut at `SHOWN_VALUE_CHARS`: a list or map is written as JSON-like
/// flow (`[a, b]`), an absent key as `(unset)`.
fn shown(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "(unset)".to_owned();
    };
    let text = flow(v);
    if text.chars().count() <= SHOWN_VALUE_CHARS {
        return text;
    }
    let cut: String = text.chars().take(SHOWN_VALUE_CHARS).collect();
    format!("{cut}...")
}

fn flow(v: &Value) -> String {
    match v {
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", key_name(k), flow(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        other => scalar(other),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "version: 1
consumer: billing
listen: 127.0.0.1:8080
admin: 127.0.0.1:9901
routes:
  - name: orders
    match: { path_prefix: /v1/orders }
    batch: http://127.0.0.1:7001
    streaming: http://127.0.0.1:7002
    mode: streaming
    gate: { failures: 3, max_fallback_ratio: 0.05 }
  - name: customers
    match: { path_prefix: /v1/customers }
    batch: http://127.0.0.1:7001
    streaming: http://127.0.0.1:7002
    mode: shadow
";

    fn changes(old: &str, new: &str) -> Vec<String> {
        let compile =
            |t: &str| crate::config::compile_str(Path::new("c.yaml"), t, 1).expect("compiles");
        let (a, b) = (compile(old), compile(new));
        let ra: Vec<&Route> = a.routes.iter().collect();
        let rb: Vec<&Route> = b.routes.iter().collect();
        describe((&a.settings, &ra), (&b.settings, &rb))
    }

    #[test]
    fn names_a_gate_or_sample_edit_with_its_values() {
        let new = BASE.replace("failures: 3,", "failures: 5,").replace(
            "mode: shadow\n",
            "mode: shadow\n    reconcile: { sample: 0.25 }\n",
        );
        let got = changes(BASE, &new);
        assert!(
            got.contains(&"orders.gate.failures: 3 -> 5".to_owned()),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|c| c.starts_with("customers.reconcile.sample: ") && c.ends_with(" -> 0.25")),
            "{got:?}"
        );
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn a_key_written_with_its_default_is_no_change() {
        // 5m is freshness.window's default: writing it out changes nothing.
        let new = BASE.replace(
            "mode: shadow\n",
            "mode: shadow\n    freshness: { window: 5m }\n",
        );
        assert!(changes(BASE, &new).is_empty(), "{:?}", changes(BASE, &new));
        let new = BASE.replace(
            "mode: shadow\n",
            "mode: shadow\n    freshness: { window: 10m }\n",
        );
        assert_eq!(
            changes(BASE, &new),
            vec!["customers.freshness.window: 5m -> 10m".to_owned()]
        );
    }

    #[test]
    fn modes_and_whole_routes_keep_their_short_form() {
        let new = BASE
            .replace("mode: streaming", "mode: batch")
            .replace("  - name: customers", "  - name: refunds")
            .replace("path_prefix: /v1/customers", "path_prefix: /v1/refunds");
        let got = changes(BASE, &new);
        assert!(
            got.contains(&"orders: streaming -> batch".to_owned()),
            "{got:?}"
        );
        assert!(got.contains(&"refunds: added".to_owned()), "{got:?}");
        assert!(got.contains(&"customers: removed".to_owned()), "{got:?}");
    }

    #[test]
    fn process_keys_are_named_too() {
        let new = BASE.replace("consumer: billing\n", "consumer: billing\nrisk: high\n");
        let got = changes(BASE, &new);
        assert_eq!(got, vec!["risk: low -> high".to_owned()]);
    }
}
