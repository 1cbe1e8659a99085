//! Property tests for the parsers that take outside bytes: watermarks from
//! any upstream, the comparator on any pair of answers, and the config
//! compiler on any text. Bounded case counts, so `cargo test` stays quick.

use std::path::Path;

use cutover::config::compile_str;
use cutover::decide::freshness::parse_watermark;
use cutover::decide::reconcile::{Answer, Category, Spec, compare};
use proptest::prelude::*;
use serde_json::json;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// A page of keyed records, as a streaming or batch answer would hold them.
fn page(records: &[(u32, i64)]) -> Vec<u8> {
    let data: Vec<_> = records
        .iter()
        .map(|(id, amount)| json!({ "id": id, "amount": amount }))
        .collect();
    serde_json::to_vec(&json!({ "data": data })).expect("JSON")
}

fn keyed() -> Spec<'static> {
    Spec {
        records: "/data",
        key: Some("id"),
        ignore: &[],
        numeric_tolerance: 0.0,
        event_time: None,
    }
}

fn answer(body: &[u8]) -> Answer<'_> {
    Answer::json(200, body, None)
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes in a watermark header: an answer or `None`, never a panic.
    #[test]
    fn a_watermark_of_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_watermark(&bytes);
    }

    /// Unix seconds read back as the same instant in milliseconds.
    #[test]
    fn unix_seconds_are_read_exactly(secs in 1_000_000_000u64..4_000_000_000u64) {
        prop_assert_eq!(parse_watermark(secs.to_string().as_bytes()), Some(secs as i64 * 1000));
    }

    /// Swapping the sides swaps `missing` and `extra`, and nothing else.
    #[test]
    fn swapping_sides_swaps_missing_and_extra(
        a in proptest::collection::btree_map(0u32..50, -1000i64..1000, 0..20),
        b in proptest::collection::btree_map(0u32..50, -1000i64..1000, 0..20),
    ) {
        let (a, b): (Vec<_>, Vec<_>) = (a.into_iter().collect(), b.into_iter().collect());
        let (pa, pb) = (page(&a), page(&b));
        let ab = compare(&keyed(), answer(&pa), answer(&pb));
        let ba = compare(&keyed(), answer(&pb), answer(&pa));
        prop_assert_eq!(ab.count(Category::Missing), ba.count(Category::Extra));
        prop_assert_eq!(ab.count(Category::Extra), ba.count(Category::Missing));
        prop_assert_eq!(ab.count(Category::Aggregate), ba.count(Category::Aggregate));
        prop_assert_eq!(ab.diverged(), ba.diverged());
    }

    /// The same records in another order never diverge.
    #[test]
    fn reordering_records_never_diverges(
        records in proptest::collection::btree_map(0u32..1000, any::<i64>(), 0..30),
        seed in any::<u64>(),
    ) {
        let records: Vec<_> = records.into_iter().collect();
        let mut shuffled = records.clone();
        // A deterministic shuffle from the seed (proptest shrinks the seed).
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let (pa, pb) = (page(&records), page(&shuffled));
        let report = compare(&keyed(), answer(&pa), answer(&pb));
        prop_assert!(!report.diverged(), "{:?}", report.samples);
    }

    /// Any text as a config: compiled or refused, never a panic, and every
    /// error placed at a line and column in the file.
    #[test]
    fn any_text_compiles_or_is_refused_with_located_errors(text in "\\PC{0,200}") {
        if let Err(errors) = compile_str(Path::new("c.yaml"), &text, 1) {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                prop_assert!(e.line >= 1 && e.column >= 1, "{}", e);
            }
        }
    }

    /// Config-shaped text with random values in its places: never a panic,
    /// errors always located.
    #[test]
    fn config_shaped_text_with_any_values_has_located_errors(
        mode in "[a-z_]{0,16}",
        prefix in "\\PC{0,20}",
        url in "\\PC{0,30}",
        duration in "[0-9]{0,25}[a-z]{0,3}",
        sample in "\\PC{0,8}",
    ) {
        let text = format!(
            "version: 1\nconsumer: c\nroutes:\n  - name: r\n    match: {{ path_prefix: '{}' }}\n    batch: '{}'\n    streaming: http://127.0.0.1:1/s\n    mode: {}\n    fallback: {{ max_staleness: '{}' }}\n    reconcile: {{ sample: '{}' }}\n",
            prefix.replace('\'', "''"),
            url.replace('\'', "''"),
            mode,
            duration,
            sample.replace('\'', "''"),
        );
        if let Err(errors) = compile_str(Path::new("c.yaml"), &text, 1) {
            for e in &errors.0 {
                prop_assert!(e.line >= 1 && e.column >= 1, "{}", e);
            }
        }
    }
}
