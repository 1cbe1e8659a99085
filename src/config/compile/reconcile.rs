//! A route's `reconcile` block: how streaming's answers are compared with
//! batch's.

use std::path::PathBuf;

use super::super::locate::YamlPath;
use super::super::model::{Format, Mode, Reconcile};
use super::super::raw::RawRoute;
use super::Cx;
use super::scalars::{non_empty, parse_count, parse_json_pointer, parse_number};

const DEFAULT_SHADOW_SAMPLE: f64 = 1.0;
const DEFAULT_SAMPLE: f64 = 0.01;
const DEFAULT_RECONCILE_INFLIGHT: usize = 32;
const DEFAULT_RECONCILE_BODY: usize = 8 * 1024 * 1024;

impl Cx<'_> {
    pub(super) fn reconcile(&mut self, route: &RawRoute, at: &YamlPath, mode: Mode) -> Reconcile {
        let empty = Default::default();
        let raw = route.reconcile.as_ref().unwrap_or(&empty);
        let sample = self.parse(&raw.sample, &at.key("sample"), |s| {
            let v = parse_number(s)?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "sample `{s}` is out of range: use 0 to 1 (0.05 = 5% of reads)"
                ));
            }
            Ok(v)
        });
        let records = self.parse(&raw.records, &at.key("records"), parse_json_pointer);
        let key = self.parse(&raw.key, &at.key("key"), |s| non_empty("key", s));
        let mut ignore = Vec::new();
        for (i, f) in raw.ignore.iter().flatten().enumerate() {
            ignore.extend(self.parse(f, &at.key("ignore").index(i), |s| non_empty("ignore", s)));
        }
        let numeric_tolerance = self.parse(&raw.numeric_tolerance, &at.key("numeric_tolerance"), |s| {
            let v = parse_number(s)?;
            if v < 0.0 {
                return Err(format!("numeric_tolerance `{s}` is negative: use 0 or more (relative, 0.0001 = 0.01%)"));
            }
            Ok(v)
        });
        let event_time = self.parse(&raw.event_time, &at.key("event_time"), |s| {
            non_empty("event_time", s)
        });
        // Kept as written: a relative path is in the data directory, which
        // is the running process's business (`--data-dir`), not the file's.
        let divergence_log = self.parse(&raw.divergence_log, &at.key("divergence_log"), |s| {
            non_empty("divergence_log", s).map(PathBuf::from)
        });
        let max_inflight = self.parse(&raw.max_inflight, &at.key("max_inflight"), |s| {
            parse_count(s, 1)
        });
        let max_body_bytes = self.parse(&raw.max_body_bytes, &at.key("max_body_bytes"), |s| {
            parse_count(s, 1)
        });
        let format = self.parse(&raw.format, &at.key("format"), |s| {
            Format::parse(s).ok_or_else(|| {
                format!("format `{s}` is not one of auto, json, ndjson, csv, tsv, parquet, bytes")
            })
        });
        let default_sample = if mode == Mode::Shadow {
            DEFAULT_SHADOW_SAMPLE
        } else {
            DEFAULT_SAMPLE
        };
        Reconcile {
            sample: sample.unwrap_or(default_sample),
            sample_explicit: raw.sample.is_some(),
            records: records.unwrap_or_default(),
            key,
            ignore,
            numeric_tolerance: numeric_tolerance.unwrap_or(0.0),
            event_time_field: event_time,
            divergence_log,
            max_inflight: max_inflight.unwrap_or(DEFAULT_RECONCILE_INFLIGHT),
            max_body_bytes: max_body_bytes.unwrap_or(DEFAULT_RECONCILE_BODY),
            format: format.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{MINIMAL, ok};

    #[test]
    fn shadow_mode_compares_every_read_by_default() {
        let c = ok(&format!("{MINIMAL}    mode: shadow\n"));
        assert_eq!(c.routes[0].reconcile.sample, 1.0);
        let c = ok(&format!(
            "{MINIMAL}    mode: shadow\n    reconcile: {{ sample: 0.5 }}\n"
        ));
        assert_eq!(c.routes[0].reconcile.sample, 0.5);
        assert!(c.routes[0].reconcile.sample_explicit);
    }

    #[test]
    fn format_is_one_of_the_formats_and_auto_by_default() {
        use super::super::super::model::Format;
        let c = ok(MINIMAL);
        assert_eq!(c.routes[0].reconcile.format, Format::Auto);
        let c = ok(&format!("{MINIMAL}    reconcile: {{ format: parquet }}\n"));
        assert_eq!(c.routes[0].reconcile.format, Format::Parquet);
        let e =
            super::super::fixtures::errors(&format!("{MINIMAL}    reconcile: {{ format: xml }}\n"));
        assert!(
            e.iter()
                .any(|e| e.contains("format `xml` is not one of auto, json")),
            "{e:?}"
        );
    }
}
