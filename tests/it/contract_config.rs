//! `cutover check` on a route's `contract` (SPEC 1.2 "Contracts"): the real
//! binary on real files; an error inside the schema file names that file.

use std::path::Path;

use serde_json::json;

use crate::support::{Config, Output, Route, refusing_addr, run_cutover_in};

/// Runs `cutover check --data-dir DIR CONFIG` from `dir`, within `WAIT`.
fn check_in(dir: &Path, config: &str) -> Output {
    run_cutover_in(
        dir,
        &[
            "check".as_ref(),
            "--data-dir".as_ref(),
            dir.as_os_str(),
            config.as_ref(),
        ],
    )
}

/// One streaming route whose contract names `orders.schema.json`.
fn config_with_schema() -> String {
    let down = refusing_addr();
    Config::new()
        .route(
            Route::orders(
                format!("http://{down}/tables/orders"),
                format!("http://{down}/v1/orders"),
            )
            .mode("streaming")
            .set(
                "contract",
                json!({ "schema": "orders.schema.json", "unique": ["id"] }),
            ),
        )
        .yaml()
}

#[test]
fn check_places_a_bad_schema_keyword_in_the_schema_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("c.yaml"), config_with_schema()).expect("write config");
    std::fs::write(
        dir.path().join("orders.schema.json"),
        "{\n  \"type\": \"object\",\n  \"properties\": {\n    \"id\": { \"type\": 5 }\n  }\n}\n",
    )
    .expect("write schema");
    let out = check_in(dir.path(), "c.yaml");
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("orders.schema.json:4:21: invalid schema at /properties/id/type: "),
        "{stderr}"
    );

    // Fixed, it passes; bad JSON is placed where serde_json stops.
    std::fs::write(
        dir.path().join("orders.schema.json"),
        r#"{"type": "object"}"#,
    )
    .expect("write schema");
    let out = check_in(dir.path(), "c.yaml");
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(0), "{stderr}");
    std::fs::write(
        dir.path().join("orders.schema.json"),
        "{\"type\": \"object\",\n}",
    )
    .expect("write schema");
    let out = check_in(dir.path(), "c.yaml");
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "orders.schema.json:2:1: JSON syntax error: trailing comma",
    );
}

#[test]
fn check_names_the_schema_path_beside_a_config_elsewhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
    std::fs::write(dir.path().join("etc/c.yaml"), config_with_schema()).expect("write config");
    std::fs::write(
        dir.path().join("etc/orders.schema.json"),
        "{\"minimum\": \"x\"}",
    )
    .expect("write schema");
    let out = check_in(dir.path(), "etc/c.yaml");
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("etc/orders.schema.json:1:13: invalid schema at /minimum: "),
        "{stderr}"
    );
    // A missing schema file is the config's error, at its `schema:` key.
    std::fs::remove_file(dir.path().join("etc/orders.schema.json")).expect("remove");
    let out = check_in(dir.path(), "etc/c.yaml");
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("etc/c.yaml:")
            && stderr.contains("cannot read schema `etc/orders.schema.json`"),
        "{stderr}"
    );
}
