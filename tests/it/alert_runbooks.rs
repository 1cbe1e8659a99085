//! Every alert in deploy/prometheus/rules.yaml links a runbook that exists:
//! its `runbook_url` is `{{ or $externalLabels.runbook_base "docs" }}/operations.md#ANCHOR`
//! (one external label sets the base of every alert), and ANCHOR is a
//! heading of docs/operations.md. tests/it/docs.rs checks markdown links
//! only; a YAML annotation is not one, so this reads rules.yaml as text.
//!
//! std only: `- alert:` and `runbook_url:` lines as rules.yaml writes them.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

/// What every runbook_url starts with: the base from the `runbook_base`
/// external label, or the repository's `docs` directory without it.
const BASE: &str = r#"{{ or $externalLabels.runbook_base "docs" }}"#;
/// The page under the base.
const PAGE: &str = "/operations.md#";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a markdown text's ATX headings, outside fenced blocks.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = t.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
            out.insert(slug(&t[hashes..]));
        }
    }
    out
}

/// `(alert, runbook_url)` for each `- alert:` of a rules file, the url
/// `None` when the alert has none before the next rule.
fn alerts(rules: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for line in rules.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert:") {
            out.push((name.trim().to_owned(), None));
        } else if t.starts_with("- record:") {
            // A recording rule ends the alert before it.
            out.push((String::new(), None));
        } else if let Some(url) = t.strip_prefix("runbook_url:")
            && let Some(last) = out.last_mut()
        {
            let url = url.trim();
            let url = url
                .strip_prefix('\'')
                .and_then(|u| u.strip_suffix('\''))
                .or_else(|| url.strip_prefix('"').and_then(|u| u.strip_suffix('"')))
                .unwrap_or(url);
            last.1 = Some(url.to_owned());
        }
    }
    out.retain(|(name, _)| !name.is_empty());
    out
}

/// Each alert's problem with its runbook, if any.
fn problems(rules: &str, operations: &str) -> Vec<String> {
    let have = anchors(operations);
    let mut out = Vec::new();
    for (alert, url) in alerts(rules) {
        let Some(url) = url else {
            out.push(format!("{alert}: no runbook_url"));
            continue;
        };
        let Some(anchor) = url
            .strip_prefix(BASE)
            .and_then(|rest| rest.strip_prefix(PAGE))
        else {
            out.push(format!(
                "{alert}: runbook_url {url:?} is not {BASE}{PAGE}ANCHOR"
            ));
            continue;
        };
        if anchor != alert.to_lowercase() {
            out.push(format!(
                "{alert}: runbook_url names #{anchor}, not its own section #{}",
                alert.to_lowercase()
            ));
        }
        if !have.contains(anchor) {
            out.push(format!(
                "{alert}: docs/operations.md has no heading for #{anchor}"
            ));
        }
    }
    out
}

#[test]
fn every_alert_links_a_runbook_section_of_operations_md() {
    let root = repo_root();
    let rules = fs::read_to_string(root.join("deploy/prometheus/rules.yaml")).expect("rules.yaml");
    let operations = fs::read_to_string(root.join("docs/operations.md")).expect("operations.md");
    let found = alerts(&rules);
    // The alerts of issue 24 at least; a rules file read as nothing would pass.
    assert!(
        found.len() >= 12,
        "only {} alerts read: {found:?}",
        found.len()
    );
    for name in [
        "CutoverDown",
        "CutoverRiskOrderViolated",
        "CutoverScrapeLabelMissing",
    ] {
        assert!(found.iter().any(|(a, _)| a == name), "{name} not read");
    }
    let problems = problems(&rules, &operations);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Without the external label the URL is a path of this repository.
    assert!(root.join("docs/operations.md").is_file());
}

#[test]
fn the_checker_finds_each_kind_of_broken_runbook() {
    let operations =
        "# Operations\n## Alert runbooks\n### CutoverDown\ntext\n```\n### CutoverFenced\n```\n";
    let url = |anchor: &str| format!("'{BASE}{PAGE}{anchor}'");
    let rules = format!(
        "groups:\n  - rules:\n\
         \x20     - alert: CutoverDown\n        annotations:\n          runbook_url: {}\n\
         \x20     - alert: CutoverGone\n        annotations:\n          runbook_url: {}\n\
         \x20     - alert: CutoverFenced\n        annotations:\n          runbook_url: {}\n\
         \x20     - alert: CutoverElsewhere\n        annotations:\n          runbook_url: {}\n\
         \x20     - alert: CutoverRelative\n        annotations:\n          runbook_url: deploy/prometheus/README.md#cutoverrelative\n\
         \x20     - alert: CutoverBare\n        expr: up == 0\n\
         \x20     - record: x:y:z\n        expr: up\n",
        url("cutoverdown"),
        url("cutovergone"),
        url("cutoverfenced"),
        url("cutoverdown"),
    );
    let got = problems(&rules, operations);
    let has = |s: &str| got.iter().any(|p| p.contains(s));
    assert!(!has("CutoverDown:"), "{got:?}");
    assert!(
        has("CutoverGone: docs/operations.md has no heading"),
        "{got:?}"
    );
    assert!(
        has("CutoverFenced: docs/operations.md has no heading"),
        "{got:?}"
    );
    assert!(
        has("CutoverElsewhere: runbook_url names #cutoverdown"),
        "{got:?}"
    );
    assert!(has("CutoverRelative: runbook_url"), "{got:?}");
    assert!(has("CutoverBare: no runbook_url"), "{got:?}");
    assert_eq!(got.len(), 5, "{got:?}");
}
