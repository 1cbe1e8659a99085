//! A route's `gate` block (SPEC 1.1): automatic rollback.

use std::time::Duration;

use super::super::locate::{Target, YamlPath};
use super::super::model::{Gate, Mode};
use super::super::raw::RawGate;
use super::Cx;
use super::scalars::{parse_count, parse_nonzero, parse_number};

const DEFAULT_GATE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_GATE_FAILURES: u32 = 3;
const DEFAULT_GATE_MIN_READS: u64 = 100;

impl Cx<'_> {
    /// A route's `gate` block. `None` when it has an error (reported).
    pub(super) fn gate(
        &mut self,
        raw: &RawGate,
        route_at: &YamlPath,
        mode: Mode,
        default_window: Duration,
    ) -> Option<Gate> {
        let at = route_at.key("gate");
        let before = self.problems.len();
        let interval = self.parse(&raw.interval, &at.key("interval"), parse_nonzero);
        let window = self.parse(&raw.window, &at.key("window"), parse_nonzero);
        let failures = self.parse(&raw.failures, &at.key("failures"), |s| {
            parse_count(s, 1)
                .and_then(|n| u32::try_from(n).map_err(|_| format!("`{s}` is too large")))
        });
        let min_reads = self.parse(&raw.min_reads, &at.key("min_reads"), |s| {
            parse_count(s, 0).map(|n| n as u64)
        });
        let mut ratio = |value: &Option<String>, key: &str| {
            self.parse(value, &at.key(key), |s| {
                let v = parse_number(s)?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!(
                        "{key} `{s}` is out of range: use a ratio from 0 to 1 (0.05 = 5%)"
                    ));
                }
                Ok(v)
            })
        };
        let max_error_ratio_delta = ratio(&raw.max_error_ratio_delta, "max_error_ratio_delta");
        let max_fallback_ratio = ratio(&raw.max_fallback_ratio, "max_fallback_ratio");
        let max_divergence_ratio = ratio(&raw.max_divergence_ratio, "max_divergence_ratio");
        let max_contract_violation_ratio = ratio(
            &raw.max_contract_violation_ratio,
            "max_contract_violation_ratio",
        );
        let max_streaming_age = self.parse(
            &raw.max_streaming_age,
            &at.key("max_streaming_age"),
            parse_nonzero,
        );
        let rollback_to = self.parse(&raw.rollback_to, &at.key("rollback_to"), |s| match s {
            "batch" => Ok(Mode::Batch),
            "shadow" => Ok(Mode::Shadow),
            _ => Err(format!("rollback_to `{s}` must be batch or shadow")),
        });
        let thresholds = [
            &raw.max_error_ratio_delta,
            &raw.max_fallback_ratio,
            &raw.max_divergence_ratio,
            &raw.max_streaming_age,
            &raw.max_contract_violation_ratio,
        ];
        if thresholds.iter().all(|t| t.is_none()) {
            self.problems.push(
                &at,
                Target::Key,
                "`gate` has no threshold: set at least one of max_error_ratio_delta, \
                 max_fallback_ratio, max_divergence_ratio, max_streaming_age, max_contract_violation_ratio",
            );
        }
        let interval = interval.unwrap_or(DEFAULT_GATE_INTERVAL);
        let window = window.unwrap_or(default_window);
        if window < interval && self.problems.len() == before {
            let (key, what) = match raw.window {
                Some(_) => ("window", "window"),
                None => ("interval", "interval"),
            };
            self.error(
                &at.key(key),
                format!(
                    "gate {what}: window ({window:?}) is shorter than interval ({interval:?}); \
                     a check must look back at least as far as the time between checks"
                ),
            );
        }
        if !mode.serves_streaming() {
            self.warnings.push(
                &at,
                Target::Key,
                format!(
                    "a gate on a `{}` route does nothing: it watches reads streaming serves \
                     (canary, streaming, streaming_only)",
                    mode.as_str()
                ),
            );
        }
        if self.problems.len() != before {
            return None;
        }
        Some(Gate {
            interval,
            window,
            failures: failures.unwrap_or(DEFAULT_GATE_FAILURES),
            min_reads: min_reads.unwrap_or(DEFAULT_GATE_MIN_READS),
            max_error_ratio_delta,
            max_fallback_ratio,
            max_divergence_ratio,
            max_streaming_age,
            max_contract_violation_ratio,
            rollback_to: rollback_to.unwrap_or(Mode::Batch),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::super::ConfigError;
    use super::super::fixtures::{MINIMAL, errors, ok};
    use super::*;

    const GATED: &str = "\
version: 1
consumer: dash
state_file: state/gates.json
routes:
  - name: orders
    match: { path_prefix: /v1/orders }
    batch: http://b/
    streaming: http://s/
    mode: streaming
    gate:
";

    #[test]
    fn a_gate_compiles_with_its_defaults() {
        let c = ok(&format!("{GATED}      max_fallback_ratio: 0.05\n"));
        assert!(c.warnings.is_empty());
        assert_eq!(
            c.settings.state_file.as_deref(),
            Some(Path::new("state/gates.json")),
            "relative to the data directory, not the config's"
        );
        let g = c.routes[0].gate.clone().expect("gate");
        assert_eq!(
            g,
            Gate {
                interval: Duration::from_secs(30),
                window: Duration::from_secs(300),
                failures: 3,
                min_reads: 100,
                max_error_ratio_delta: None,
                max_fallback_ratio: Some(0.05),
                max_divergence_ratio: None,
                max_streaming_age: None,
                max_contract_violation_ratio: None,
                rollback_to: Mode::Batch,
            }
        );
        let c = ok(&format!(
            "{GATED}      {{ interval: 100ms, window: 1s, failures: 1, min_reads: 0, max_error_ratio_delta: 0, \
             max_divergence_ratio: 1, max_streaming_age: 10m, max_contract_violation_ratio: 0.02, rollback_to: shadow }}\n"
        )
        .replace("gate:\n      {", "gate: {"));
        let g = c.routes[0].gate.clone().expect("gate");
        assert_eq!(g.interval, Duration::from_millis(100));
        assert_eq!(g.window, Duration::from_secs(1));
        assert_eq!((g.failures, g.min_reads), (1, 0));
        assert_eq!(g.max_streaming_age, Some(Duration::from_secs(600)));
        assert_eq!(g.max_contract_violation_ratio, Some(0.02));
        assert_eq!(g.rollback_to, Mode::Shadow);
        assert_eq!(ok(MINIMAL).routes[0].gate, None);
        assert_eq!(ok(MINIMAL).settings.state_file, None);
    }

    #[test]
    fn gate_rules() {
        assert_eq!(
            errors(&format!(
                "{GATED}      interval: 2s\n      window: 1s\n      failures: 0\n      rollback_to: canary\n"
            )),
            [
                "10:5: `gate` has no threshold: set at least one of max_error_ratio_delta, \
                 max_fallback_ratio, max_divergence_ratio, max_streaming_age, max_contract_violation_ratio",
                "13:17: expected a whole number, 1 or more, found `0`",
                "14:20: rollback_to `canary` must be batch or shadow",
            ]
        );
        assert_eq!(
            errors(&format!(
                "{GATED}      window: 1s\n      interval: 2s\n      max_fallback_ratio: 1.5\n      max_divergence_ratio: -0.1\n      max_error_ratio_delta: x\n"
            )),
            [
                "13:27: max_fallback_ratio `1.5` is out of range: use a ratio from 0 to 1 (0.05 = 5%)",
                "14:29: max_divergence_ratio `-0.1` is out of range: use a ratio from 0 to 1 (0.05 = 5%)",
                "15:30: expected a number, found `x`",
            ]
        );
        assert_eq!(
            errors(&format!(
                "{GATED}      window: 1s\n      interval: 2s\n      max_fallback_ratio: 0.5\n"
            )),
            [
                "11:15: gate window: window (1s) is shorter than interval (2s); \
              a check must look back at least as far as the time between checks"
            ]
        );
        assert_eq!(
            errors(&format!(
                "{GATED}      interval: 10m\n      max_fallback_ratio: 0.5\n"
            )),
            [
                "11:17: gate interval: window (300s) is shorter than interval (600s); \
              a check must look back at least as far as the time between checks"
            ]
        );
        assert_eq!(
            errors(&format!(
                "{GATED}      surprise: 1\n      max_fallback_ratio: 0.5\n"
            ))[0],
            "11:7: unknown key `surprise` (expected one of: interval, window, failures, min_reads, \
             max_error_ratio_delta, max_fallback_ratio, max_divergence_ratio, max_streaming_age, max_contract_violation_ratio, rollback_to)"
        );
    }

    #[test]
    fn a_gate_on_a_route_streaming_does_not_serve_is_a_warning() {
        for mode in ["batch", "shadow"] {
            let text = format!("{GATED}      max_fallback_ratio: 0.5\n")
                .replace("mode: streaming", &format!("mode: {mode}"));
            let c = ok(&text);
            assert!(c.routes[0].gate.is_some());
            let w: Vec<String> = c.warnings.iter().map(ConfigError::warning).collect();
            assert_eq!(
                w,
                [format!(
                    "/etc/cutover/c.yaml:10:5: warning: a gate on a `{mode}` route does nothing: \
                     it watches reads streaming serves (canary, streaming, streaming_only)"
                )]
            );
        }
    }
}
