//! The `/status` document: one type, written by the admin listener and read
//! back by `cutover status`. Every field has a default, so a document from
//! an older or newer cutover still reads (what it lacks shows as unknown).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `/status` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusDoc {
    pub consumer: String,
    pub risk: Option<String>,
    /// Where consumers' reads are accepted, as bound.
    pub listen: String,
    /// Where this document is served, as bound.
    pub admin: String,
    pub config: ConfigInfo,
    pub last_reload: LastReload,
    pub routes: Vec<RouteStatus>,
}

impl StatusDoc {
    /// What makes this cutover unhealthy, one line each: the last reload
    /// failed, a circuit is open, or a gate is tripped. Empty when healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.last_reload.result.as_deref() == Some("error") {
            problems.push("the last reload failed: the config file on disk is rejected".to_owned());
        }
        for r in &self.routes {
            if !r.circuit.is_empty() && r.circuit != "closed" {
                problems.push(format!(
                    "route {}: the streaming circuit is {}",
                    r.name, r.circuit
                ));
            }
            if r.gate_state() == Some("tripped") {
                problems.push(format!("route {}: its gate is tripped", r.name));
            }
        }
        problems
    }
}

/// The config serving now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigInfo {
    pub path: String,
    pub generation: Option<u64>,
    /// SHA-256 (hex) of the file text serving now.
    pub sha256: String,
}

/// The last reload attempt; all `None` before the first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LastReload {
    /// `ok` or `error`.
    pub result: Option<String>,
    pub error: Option<String>,
    /// RFC 3339.
    pub at: Option<String>,
    pub restart_needed: Option<String>,
}

/// A value per side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerSide<T> {
    pub batch: T,
    pub streaming: T,
}

impl<T: Copy> PerSide<T> {
    /// From an array indexed by `SideName::index`.
    pub fn from_array(a: [T; 2]) -> PerSide<T> {
        PerSide {
            batch: a[0],
            streaming: a[1],
        }
    }
}

/// One route's modes, circuit and figures. Ratios are 0.0..=1.0; `None` is
/// unknown (nothing seen, or nothing in the window).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteStatus {
    pub name: String,
    pub dataset: String,
    pub path_prefix: String,
    pub configured_mode: String,
    pub effective_mode: String,
    /// Share of reads sent to streaming in `canary` mode (0..=100).
    pub canary_percent: Option<f64>,
    /// `closed`, `open` or `half_open`.
    pub circuit: String,
    pub batch_url: String,
    pub streaming_url: String,
    /// Reads answered since start, by serving side.
    pub reads: PerSide<Option<u64>>,
    /// Fallbacks since start.
    pub fallbacks: Option<u64>,
    /// Fallbacks since start, by reason.
    pub fallbacks_by_reason: BTreeMap<String, u64>,
    /// Comparisons since start, by result (`match`, `diverged`, `skipped`).
    pub comparisons: BTreeMap<String, u64>,
    /// What every ratio below looks back over (the route's
    /// `freshness.window`); counts above are since start.
    pub window_seconds: Option<f64>,
    /// Fallen-back share of reads answered, over the window.
    pub fallback_rate: Option<f64>,
    pub data_age_seconds: PerSide<Option<f64>>,
    pub freshness_delta_seconds: Option<f64>,
    pub error_ratio: PerSide<Option<f64>>,
    pub error_ratio_delta: Option<f64>,
    pub divergence_ratio: Option<f64>,
    /// The route's gate, as the serving cutover describes it (kept as
    /// JSON so a newer cutover's gate details pass through).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<serde_json::Value>,
    /// The route's contract checks since start; `None`: no contract.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractStatus>,
}

/// A route's contract checks since start (SPEC 1.2): `checked` is `pass`
/// plus `violation`; `by_rule` counts answers that broke each rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContractStatus {
    pub checked: u64,
    pub pass: u64,
    pub violation: u64,
    pub skipped: u64,
    pub by_rule: BTreeMap<String, u64>,
    /// `record` or `fallback`.
    pub on_violation: String,
}

impl ContractStatus {
    /// Violated share of checked answers, `None` before the first check.
    pub fn violation_ratio(&self) -> Option<f64> {
        (self.checked > 0).then(|| self.violation as f64 / self.checked as f64)
    }
}

impl RouteStatus {
    /// `off`, `armed` or `tripped`, when the document says.
    pub fn gate_state(&self) -> Option<&str> {
        self.gate.as_ref()?.get("state")?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_a_failed_reload_an_open_circuit_and_a_tripped_gate() {
        let mut doc = StatusDoc {
            routes: vec![RouteStatus {
                name: "orders".into(),
                circuit: "closed".into(),
                ..RouteStatus::default()
            }],
            ..StatusDoc::default()
        };
        assert!(doc.problems().is_empty());
        doc.last_reload.result = Some("error".into());
        doc.routes[0].circuit = "half_open".into();
        doc.routes[0].gate = Some(serde_json::json!({ "state": "tripped" }));
        let problems = doc.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[1].contains("orders") && problems[1].contains("half_open"));
    }

    #[test]
    fn a_document_round_trips_and_missing_fields_default() {
        let doc = StatusDoc {
            consumer: "c".into(),
            routes: vec![RouteStatus {
                name: "orders".into(),
                reads: PerSide::from_array([Some(3), Some(4)]),
                fallback_rate: None,
                ..RouteStatus::default()
            }],
            ..StatusDoc::default()
        };
        let text = serde_json::to_string(&doc).expect("serialises");
        assert_eq!(
            serde_json::from_str::<StatusDoc>(&text).expect("parses"),
            doc
        );
        let sparse: StatusDoc =
            serde_json::from_str(r#"{"routes":[{"name":"x"}]}"#).expect("parses");
        assert_eq!(sparse.routes[0].reads.batch, None);
        assert_eq!(sparse.config.generation, None);
    }
}
