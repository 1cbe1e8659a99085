//! A route's `sequence` block: which reads belong together, and how long
//! they stay on one side.

use std::time::Duration;

use super::super::locate::YamlPath;
use super::super::model::Sequence;
use super::super::raw::RawSequence;
use super::Cx;
use super::scalars::{parse_count, parse_nonzero, parse_query_param};

/// The query parameters that continue a listing, as common APIs name them
/// (cursor and token paging, offset and page numbers, S3's markers).
const DEFAULT_SEQUENCE_PARAMS: &[&str] = &[
    "cursor",
    "page",
    "page_token",
    "offset",
    "next",
    "marker",
    "continuation",
    "start_after",
    "after",
];
const DEFAULT_PIN_TTL: Duration = Duration::from_secs(10 * 60);
const DEFAULT_MAX_PINS: usize = 10_000;

impl Cx<'_> {
    pub(super) fn sequence(&mut self, raw: Option<&RawSequence>, at: &YamlPath) -> Sequence {
        let empty = RawSequence::default();
        let raw = raw.unwrap_or(&empty);
        let params = match &raw.params {
            None => DEFAULT_SEQUENCE_PARAMS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            Some(list) => {
                let mut params: Vec<String> = Vec::new();
                for (i, p) in list.iter().enumerate() {
                    if let Some(p) = self.parse(p, &at.key("params").index(i), parse_query_param)
                        && !params.contains(&p)
                    {
                        params.push(p);
                    }
                }
                params
            }
        };
        let pin_ttl = self.parse(&raw.pin_ttl, &at.key("pin_ttl"), parse_nonzero);
        let max_pins = self.parse(&raw.max_pins, &at.key("max_pins"), |s| parse_count(s, 1));
        Sequence {
            params,
            pin_ttl: pin_ttl.unwrap_or(DEFAULT_PIN_TTL),
            max_pins: max_pins.unwrap_or(DEFAULT_MAX_PINS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{MINIMAL, errors, ok};
    use super::*;

    #[test]
    fn sequences_have_defaults_and_bad_keys_are_located() {
        let c = ok(MINIMAL);
        let seq = &c.routes[0].sequence;
        assert_eq!(seq.pin_ttl, Duration::from_secs(600));
        assert_eq!(seq.max_pins, 10_000);
        assert!(seq.params.iter().any(|p| p == "cursor"));
        assert!(seq.params.iter().any(|p| p == "offset"));
        let c = ok(&format!(
            "{MINIMAL}    sequence: {{ params: [token, token, page], pin_ttl: 30s, max_pins: 5 }}\n"
        ));
        let seq = &c.routes[0].sequence;
        assert_eq!(seq.params, ["token", "page"]);
        assert_eq!(seq.pin_ttl, Duration::from_secs(30));
        assert_eq!(seq.max_pins, 5);
        let errs = errors(&format!(
            "{MINIMAL}    sequence:\n      params: [\"a=b\"]\n      pin_ttl: 0s\n      max_pins: 0\n"
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        for (at, what) in [
            ("9:16", "a=b"),
            ("10:16", "more than 0"),
            ("11:17", "1 or more"),
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(at) && e.contains(what)),
                "{at} {what}: {errs:?}"
            );
        }
    }
}
