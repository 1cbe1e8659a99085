//! A route's `contract` block (SPEC 1.2 "Contracts"): what consumers depend
//! on, checked on streaming's answers; and its JSON Schema, read and
//! compiled here, once per reload.
//!
//! Errors in the block are placed in the config like every other. Errors
//! inside the schema file (JSON syntax, a keyword with a bad value) are
//! placed in that file, `SCHEMA_FILE:LINE:COLUMN: message`, where
//! SCHEMA_FILE is the schema's path joined to the config's directory as the
//! config was named (so it opens from where `cutover check` ran). A schema
//! file that cannot be read is the config's error, at its `schema:` value.
//! `$ref`s reach files under the config's directory only: no network.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::super::ConfigError;
use super::super::locate::{Target, YamlPath};
use super::super::model::{Complete, Contract, Mode, OnViolation, Schema, SortKey};
use super::super::raw::{RawComplete, RawContract};
use super::Cx;
use super::json_locate::{char_column, locate_pointer};
use super::scalars::{non_empty, parse_count, parse_duration, parse_number};

const DEFAULT_CONTRACT_BODY: usize = 1024 * 1024;
const DEFAULT_CONTRACT_SAMPLE: f64 = 1.0;
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(60);

impl Cx<'_> {
    /// A route's `contract` block. `None` when it has an error (reported,
    /// in the config or in the schema file).
    pub(super) fn contract(
        &mut self,
        raw: &RawContract,
        route_at: &YamlPath,
        mode: Mode,
    ) -> Option<Contract> {
        let at = route_at.key("contract");
        let before = self.problems.len() + self.schema_errors.len();
        let schema = raw
            .schema
            .as_ref()
            .and_then(|s| match non_empty("schema", s) {
                Ok(s) => self.schema(&s, &at.key("schema")),
                Err(e) => {
                    self.error(&at.key("schema"), e);
                    None
                }
            });
        let unique = self.field_list(&raw.unique, &at.key("unique"), "unique");
        let not_null = self.field_list(&raw.not_null, &at.key("not_null"), "not_null");
        let sorted_by = self
            .field_list(&raw.sorted_by, &at.key("sorted_by"), "sorted_by")
            .into_iter()
            .map(|f| match f.strip_prefix('-') {
                Some(field) => SortKey {
                    field: field.to_owned(),
                    descending: true,
                },
                None => SortKey {
                    field: f,
                    descending: false,
                },
            })
            .collect();
        let complete = raw
            .complete
            .as_ref()
            .and_then(|c| self.complete(c, &at.key("complete")));
        let on_violation = self.parse(&raw.on_violation, &at.key("on_violation"), |s| match s {
            "record" => Ok(OnViolation::Record),
            "fallback" => Ok(OnViolation::Fallback),
            _ => Err(format!("on_violation `{s}` must be record or fallback")),
        });
        let max_body_bytes = self.parse(&raw.max_body_bytes, &at.key("max_body_bytes"), |s| {
            parse_count(s, 1)
        });
        let sample = self.parse(&raw.sample, &at.key("sample"), |s| {
            let v = parse_number(s)?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "sample `{s}` is out of range: use 0 to 1 (0.05 = 5% of answers)"
                ));
            }
            Ok(v)
        });
        // Kept as written: a relative path is under the process's
        // --data-dir, as reconcile.divergence_log is.
        let dead_letter = self.parse(&raw.dead_letter, &at.key("dead_letter"), |s| {
            non_empty("dead_letter", s).map(PathBuf::from)
        });
        let rules = [
            raw.schema.is_some(),
            raw.unique.is_some(),
            raw.sorted_by.is_some(),
            raw.not_null.is_some(),
            raw.complete.is_some(),
        ];
        if !rules.contains(&true) && !self.problems.reported_at(&at) {
            self.problems.push(
                &at,
                Target::Key,
                "`contract` has no rule: set at least one of schema, unique, sorted_by, \
                 not_null, complete",
            );
        }
        match mode {
            Mode::Batch => self.warnings.push(
                &at,
                Target::Key,
                "a contract on a `batch` route is never checked: it checks streaming's answers \
                 (shadow, canary, streaming, streaming_only)",
            ),
            Mode::Shadow if on_violation == Some(OnViolation::Fallback) => self.warnings.push(
                &at.key("on_violation"),
                Target::Value,
                "on_violation `fallback` on a `shadow` route only records: \
                 streaming's shadow answers are never served",
            ),
            _ => {}
        }
        if self.problems.len() + self.schema_errors.len() != before {
            return None;
        }
        Some(Contract {
            schema,
            unique,
            sorted_by,
            not_null,
            complete,
            on_violation: on_violation.unwrap_or_default(),
            max_body_bytes: max_body_bytes.unwrap_or(DEFAULT_CONTRACT_BODY),
            sample: sample.unwrap_or(DEFAULT_CONTRACT_SAMPLE),
            dead_letter,
        })
    }

    /// A list of top-level record fields: at least one, none empty.
    fn field_list(
        &mut self,
        raw: &Option<Vec<Option<String>>>,
        at: &YamlPath,
        key: &str,
    ) -> Vec<String> {
        let Some(list) = raw else {
            return Vec::new();
        };
        if list.is_empty() {
            self.error(
                at,
                format!("`{key}` is empty: list at least one field, e.g. [id]"),
            );
        }
        let mut fields = Vec::new();
        for (i, f) in list.iter().enumerate() {
            fields.extend(self.parse(f, &at.index(i), |s| {
                if s.trim().is_empty() {
                    return Err(format!("a `{key}` field is empty"));
                }
                if key == "sorted_by" && s == "-" {
                    return Err(
                        "sorted_by `-` names no field: write -FIELD for descending, e.g. -updated_at"
                            .to_owned(),
                    );
                }
                Ok(s.to_owned())
            }));
        }
        fields
    }

    fn complete(&mut self, raw: &RawComplete, at: &YamlPath) -> Option<Complete> {
        let mut required = |value: &Option<String>, key: &str, what: &str| {
            match value {
            None => {
                self.missing(
                    &at.key(key),
                    format!("`complete` has no `{key}` ({what})"),
                );
                None
            }
            some => self.parse(some, &at.key(key), |s| {
                let bad = |c: char| {
                    matches!(c, '&' | '=' | '#' | '?') || c.is_whitespace() || c.is_control()
                };
                if s.is_empty() {
                    Err(format!("`complete.{key}` is empty"))
                } else if key != "event_time" && s.chars().any(bad) {
                    Err(format!(
                        "`complete.{key}` `{s}` is not a query parameter name (no `&`, `=`, `#`, `?` or spaces)"
                    ))
                } else {
                    Ok(s.to_owned())
                }
            }),
        }
        };
        let event_time = required(
            &raw.event_time,
            "event_time",
            "the record field holding its event time, e.g. updated_at",
        );
        let from = required(
            &raw.from,
            "from",
            "the query parameter naming the window's start, e.g. start",
        );
        let to = required(
            &raw.to,
            "to",
            "the query parameter naming the window's end, e.g. end",
        );
        let tolerance = self.parse(&raw.tolerance, &at.key("tolerance"), parse_duration);
        Some(Complete {
            event_time: event_time?,
            from: from?,
            to: to?,
            tolerance: tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }

    /// Reads and compiles `contract.schema` (`written` as the config has
    /// it). `None` when it has an error (reported).
    fn schema(&mut self, written: &str, at: &YamlPath) -> Option<Schema> {
        let shown = self.dir.join(written);
        let text = match std::fs::read_to_string(&shown) {
            Ok(t) => t,
            Err(e) => {
                self.error(at, format!("cannot read schema `{}`: {e}", shown.display()));
                return None;
            }
        };
        let compiled = compile_schema(&self.dir, &shown, &text);
        match compiled {
            Ok(validator) => Some(Schema {
                path: shown,
                validator: Arc::new(validator),
            }),
            Err(e) => {
                self.schema_errors.push(*e);
                None
            }
        }
    }
}

/// A schema document already read: the name errors give it, and its text.
#[derive(Debug, Clone)]
struct Document {
    shown: PathBuf,
    text: String,
    value: Value,
}

/// Compiles the schema at `shown` (whose text is `text`), with `$ref`s to
/// files under `config_dir`. The error is placed in the file it is in.
fn compile_schema(
    config_dir: &Path,
    shown: &Path,
    text: &str,
) -> Result<jsonschema::Validator, Box<ConfigError>> {
    let at = |line, column, message: String| {
        Box::new(ConfigError {
            file: shown.to_owned(),
            line,
            column,
            message,
        })
    };
    let value = parse_json(shown, text)?;
    let absolute = std::fs::canonicalize(shown)
        .map_err(|e| at(1, 1, format!("cannot resolve the schema's path: {e}")))?;
    let uri = file_uri(&absolute).map_err(|e| at(1, 1, e))?;
    let root = Document {
        shown: shown.to_owned(),
        text: text.to_owned(),
        value: value.clone(),
    };
    // `$ref`s may reach files under the config's directory and under the
    // schema's own (the same one, unless `schema` names another place).
    let mut roots = Vec::new();
    if let Ok(dir) = std::fs::canonicalize(dir_or_here(config_dir)) {
        roots.push((dir, dir_or_here(config_dir).to_owned()));
    }
    if let (Some(dir), Some(named)) = (absolute.parent(), shown.parent()) {
        roots.push((dir.to_owned(), dir_or_here(named).to_owned()));
    }
    let retriever = LocalFiles {
        roots,
        seen: Arc::default(),
        failure: Arc::default(),
    };
    let (seen, failure) = (retriever.seen.clone(), retriever.failure.clone());
    let built = jsonschema::options()
        .with_base_uri(uri)
        .with_retriever(retriever)
        .build(&value);
    let error = match built {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    // A referenced file's own error (already placed in it) explains best.
    if let Some(e) = lock(&failure).take() {
        return Err(e);
    }
    let message = format!("invalid schema: {error}");
    if let jsonschema::error::ValidationErrorKind::Referencing(r) = error.kind() {
        let mut docs = vec![root];
        docs.extend(lock(&seen).iter().cloned());
        let needle = r.to_string();
        for doc in &docs {
            if let Some((line, column)) = find_ref(doc, &needle) {
                return Err(Box::new(ConfigError {
                    file: doc.shown.clone(),
                    line,
                    column,
                    message,
                }));
            }
        }
        return Err(at(1, 1, message));
    }
    let pointer = error.instance_path().as_str();
    let (line, column) = locate_pointer(text, pointer).unwrap_or((1, 1));
    let message = if pointer.is_empty() {
        message
    } else {
        format!("invalid schema at {pointer}: {error}")
    };
    Err(at(line, column, message))
}

/// `""` (a config named without a directory) is the working directory.
fn dir_or_here(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

fn parse_json(shown: &Path, text: &str) -> Result<Value, Box<ConfigError>> {
    serde_json::from_str(text).map_err(|e| {
        let line = e.line().max(1);
        let column = char_column(text, line, e.column().max(1));
        // serde_json repeats the position in its message; it is in front.
        let message = e.to_string().replacen(
            &format!(" at line {} column {}", e.line(), e.column()),
            "",
            1,
        );
        Box::new(ConfigError {
            file: shown.to_owned(),
            line,
            column,
            message: format!("JSON syntax error: {message}"),
        })
    })
}

/// Where the `$ref` an unresolvable-reference error is about is written in
/// `doc`: the first `$ref` whose target (or its fragment) the error names.
/// A heuristic, good for the usual one-reference-per-target schemas; the
/// error still names the reference when it misses.
fn find_ref(doc: &Document, error: &str) -> Option<(usize, usize)> {
    fn walk(v: &Value, pointer: String, refs: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let p = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                    if let (Some(r), "$ref") = (child.as_str(), k.as_str()) {
                        refs.push((p, r.to_owned()));
                    } else {
                        walk(child, p, refs);
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, format!("{pointer}/{i}"), refs);
                }
            }
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(&doc.value, String::new(), &mut refs);
    let names = |r: &str| {
        let (target, fragment) = r.split_once('#').unwrap_or((r, ""));
        (!target.is_empty() && error.contains(target))
            || (!fragment.is_empty() && error.contains(fragment))
    };
    let (pointer, _) = refs.iter().find(|(_, r)| names(r))?;
    locate_pointer(&doc.text, pointer)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it left plain data behind; still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `$ref` retriever: `file://` URIs under the config's directory, each
/// file parsed and checked against its meta-schema, its errors placed in it.
/// Everything else is refused: remote schemas are not fetched.
struct LocalFiles {
    /// Where a referenced file may be: each directory canonical (a file
    /// must canonicalize under one), and as the config names it, for the
    /// names errors give files.
    roots: Vec<(PathBuf, PathBuf)>,
    /// Every file retrieved, to place an error that names a `$ref` in it.
    seen: Arc<Mutex<Vec<Document>>>,
    /// The first error found inside a referenced file.
    failure: Arc<Mutex<Option<Box<ConfigError>>>>,
}

type RetrieveError = Box<dyn std::error::Error + Send + Sync>;

impl jsonschema::Retrieve for LocalFiles {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, RetrieveError> {
        let uri = uri.as_str();
        let Some(encoded) = uri.strip_prefix("file://") else {
            return Err(format!(
                "`{uri}`: remote schemas are not fetched; keep referenced schemas in files beside the config"
            )
            .into());
        };
        let encoded = encoded.split(['#', '?']).next().unwrap_or(encoded);
        let path = PathBuf::from(percent_decode(encoded)?);
        let absolute = std::fs::canonicalize(&path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let inside = self.roots.iter().find_map(|(dir, named)| {
            absolute
                .strip_prefix(dir)
                .ok()
                .map(|relative| named.join(relative))
        });
        let Some(shown) = inside else {
            return Err(format!(
                "`{}` is outside the config's directory: schemas are read only from there",
                path.display()
            )
            .into());
        };
        let text = std::fs::read_to_string(&absolute)
            .map_err(|e| format!("cannot read `{}`: {e}", shown.display()))?;
        let fail = |e: Box<ConfigError>| -> RetrieveError {
            let message = e.to_string();
            lock(&self.failure).get_or_insert(e);
            message.into()
        };
        let value = parse_json(&shown, &text).map_err(fail)?;
        if let Err(e) = jsonschema::meta::validate(&value) {
            let pointer = e.instance_path().as_str().to_owned();
            let (line, column) = locate_pointer(&text, &pointer).unwrap_or((1, 1));
            let message = if pointer.is_empty() {
                format!("invalid schema: {e}")
            } else {
                format!("invalid schema at {pointer}: {e}")
            };
            return Err(fail(Box::new(ConfigError {
                file: shown,
                line,
                column,
                message,
            })));
        }
        lock(&self.seen).push(Document {
            shown,
            text,
            value: value.clone(),
        });
        Ok(value)
    }
}

/// The `file://` URI of an absolute path, percent-encoding all but the
/// characters a URI path may hold as they are.
fn file_uri(absolute: &Path) -> Result<String, String> {
    let s = absolute.to_str().ok_or_else(|| {
        format!(
            "schema path `{}` is not UTF-8: it cannot be a URI",
            absolute.display()
        )
    })?;
    let mut uri = String::from("file://");
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(uri)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use serde_json::json;

    use super::super::super::model::{Compiled, Complete, OnViolation, SortKey};
    use super::super::super::{ConfigError, ConfigErrors};
    use super::super::compile;
    use super::super::fixtures::{MINIMAL, errors, ok};

    /// MINIMAL in streaming mode with `block` under `contract:`.
    fn with_contract(block: &str) -> String {
        format!("{MINIMAL}    mode: streaming\n    contract:\n{block}")
    }

    /// A config beside its schema files in a temporary directory.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new(files: &[(&str, &str)]) -> Files {
            let dir = tempfile::tempdir().expect("temp dir");
            for (name, text) in files {
                let path = dir.path().join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                std::fs::write(path, text).expect("write");
            }
            Files { dir }
        }

        fn config(&self) -> std::path::PathBuf {
            self.dir.path().join("c.yaml")
        }

        fn compile(&self, text: &str) -> Result<Compiled, ConfigErrors> {
            compile(&self.config(), text, 1)
        }

        /// Each error as `FILE:LINE:COLUMN: message`, FILE relative to the dir.
        fn errors(&self, text: &str) -> Vec<String> {
            let e = self.compile(text).expect_err("config was accepted");
            e.0.iter()
                .map(|e| {
                    let mut e: ConfigError = e.clone();
                    e.file = e
                        .file
                        .strip_prefix(self.dir.path())
                        .unwrap_or(&e.file)
                        .to_owned();
                    e.to_string()
                })
                .collect()
        }
    }

    const SCHEMA_KEY: &str = "      schema: orders.schema.json\n";

    #[test]
    fn defaults_apply_when_only_a_rule_is_set() {
        let c = ok(&with_contract("      unique: [id]\n"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let k = c.routes[0].contract.as_ref().expect("contract");
        assert!(k.schema.is_none());
        assert_eq!(k.unique, ["id"]);
        assert!(k.sorted_by.is_empty() && k.not_null.is_empty());
        assert_eq!(k.complete, None);
        assert_eq!(k.on_violation, OnViolation::Record);
        assert_eq!(k.max_body_bytes, 1_048_576);
        assert_eq!(k.sample, 1.0);
        assert_eq!(k.dead_letter, None);
        assert!(ok(MINIMAL).routes[0].contract.is_none());
    }

    #[test]
    fn every_key_compiles() {
        let c = ok(&with_contract(
            "      unique: [id, region]
      sorted_by: [-updated_at, id]
      not_null: [id, amount]
      complete: { event_time: updated_at, from: start, to: end }
      on_violation: fallback
      max_body_bytes: 4096
      sample: 0.25
      dead_letter: logs/contract.jsonl
",
        ));
        let k = c.routes[0].contract.as_ref().expect("contract");
        assert_eq!(k.unique, ["id", "region"]);
        assert_eq!(
            k.sorted_by,
            [
                SortKey {
                    field: "updated_at".into(),
                    descending: true
                },
                SortKey {
                    field: "id".into(),
                    descending: false
                },
            ]
        );
        assert_eq!(k.not_null, ["id", "amount"]);
        assert_eq!(
            k.complete,
            Some(Complete {
                event_time: "updated_at".into(),
                from: "start".into(),
                to: "end".into(),
                tolerance: Duration::from_secs(60),
            })
        );
        assert_eq!(k.on_violation, OnViolation::Fallback);
        assert_eq!(k.max_body_bytes, 4096);
        assert_eq!(k.sample, 0.25);
        assert_eq!(
            k.dead_letter.as_deref(),
            Some(Path::new("logs/contract.jsonl")),
            "relative to the data directory, not the config's"
        );
        let c = ok(&with_contract(
            "      complete: { event_time: ts, from: a, to: b, tolerance: 5s }\n",
        ));
        let tolerance = c.routes[0]
            .contract
            .as_ref()
            .and_then(|k| k.complete.as_ref());
        assert_eq!(tolerance.map(|t| t.tolerance), Some(Duration::from_secs(5)));
    }

    #[test]
    fn contract_rules_are_placed() {
        assert_eq!(
            errors(&with_contract(
                "      unique: []
      sorted_by: [a, '-', '']
      not_null: ['  ']
      on_violation: drop
      max_body_bytes: 0
      sample: 1.5
      dead_letter: ''
      complete: { from: 'a b', tolerance: 1 }
      extra: 1
"
            )),
            [
                "10:15: `unique` is empty: list at least one field, e.g. [id]",
                "11:22: sorted_by `-` names no field: write -FIELD for descending, e.g. -updated_at",
                "11:27: a `sorted_by` field is empty",
                "12:18: a `not_null` field is empty",
                "13:21: on_violation `drop` must be record or fallback",
                "14:23: expected a whole number, 1 or more, found `0`",
                "15:15: sample `1.5` is out of range: use 0 to 1 (0.05 = 5% of answers)",
                "16:20: `dead_letter` is empty",
                "17:17: `complete` has no `event_time` (the record field holding its event time, e.g. updated_at)",
                "17:17: `complete` has no `to` (the query parameter naming the window's end, e.g. end)",
                "17:25: `complete.from` `a b` is not a query parameter name (no `&`, `=`, `#`, `?` or spaces)",
                "17:43: bad duration `1`: add a unit (ms, s, m, h), e.g. 1s or 1ms",
                "18:7: unknown key `extra` (expected one of: schema, unique, sorted_by, not_null, \
                 complete, on_violation, max_body_bytes, sample, dead_letter)",
            ]
        );
    }

    #[test]
    fn complete_needs_its_three_fields() {
        let errs = errors(&with_contract("      complete:\n        tolerance: 1m\n"));
        assert_eq!(
            errs,
            [
                "11:9: `complete` has no `event_time` (the record field holding its event time, e.g. updated_at)",
                "11:9: `complete` has no `from` (the query parameter naming the window's start, e.g. start)",
                "11:9: `complete` has no `to` (the query parameter naming the window's end, e.g. end)",
            ]
        );
    }

    #[test]
    fn a_contract_with_no_rule_is_an_error() {
        assert_eq!(
            errors(&with_contract("      on_violation: fallback\n")),
            [
                "9:5: `contract` has no rule: set at least one of schema, unique, sorted_by, not_null, complete"
            ]
        );
    }

    #[test]
    fn a_contract_that_is_never_checked_warns() {
        let text = with_contract("      unique: [id]\n").replace("mode: streaming", "mode: batch");
        let c = ok(&text);
        assert!(c.routes[0].contract.is_some());
        let w: Vec<String> = c.warnings.iter().map(ConfigError::warning).collect();
        assert_eq!(
            w,
            [
                "/etc/cutover/c.yaml:9:5: warning: a contract on a `batch` route is never checked: \
              it checks streaming's answers (shadow, canary, streaming, streaming_only)"
            ]
        );
        let text = with_contract("      unique: [id]\n      on_violation: fallback\n")
            .replace("mode: streaming", "mode: shadow");
        let w: Vec<String> = ok(&text)
            .warnings
            .iter()
            .map(ConfigError::warning)
            .collect();
        assert_eq!(
            w,
            [
                "/etc/cutover/c.yaml:11:21: warning: on_violation `fallback` on a `shadow` route only \
              records: streaming's shadow answers are never served"
            ]
        );
    }

    #[test]
    fn a_gate_on_contract_violations_without_a_contract_warns() {
        let text = format!(
            "{MINIMAL}    mode: streaming\n    gate: {{ max_contract_violation_ratio: 0.1 }}\n"
        );
        let c = ok(&text);
        let w: Vec<String> = c.warnings.iter().map(ConfigError::warning).collect();
        assert_eq!(
            w,
            [
                "/etc/cutover/c.yaml:9:13: warning: gate max_contract_violation_ratio on a route with \
              no `contract`: no answer is checked, so this check never decides"
            ]
        );
    }

    #[test]
    fn a_schema_compiles_relative_to_the_config_and_validates() {
        let files = Files::new(&[(
            "orders.schema.json",
            r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}"#,
        )]);
        let c = files
            .compile(&with_contract(SCHEMA_KEY))
            .unwrap_or_else(|e| panic!("{e}"));
        let schema = c.routes[0]
            .contract
            .as_ref()
            .and_then(|k| k.schema.as_ref())
            .expect("schema");
        assert_eq!(schema.path, files.dir.path().join("orders.schema.json"));
        assert!(schema.validator.is_valid(&json!({"id": 1})));
        assert!(!schema.validator.is_valid(&json!({"id": "1"})));
        assert!(!schema.validator.is_valid(&json!({})));
    }

    #[test]
    fn draft_2020_12_by_default_and_schema_is_respected() {
        // `prefixItems` is 2020-12; draft-07 ignores it.
        let files = Files::new(&[
            ("a.json", r#"{"prefixItems": [{"type": "string"}]}"#),
            (
                "b.json",
                r#"{"$schema": "http://json-schema.org/draft-07/schema#", "prefixItems": [{"type": "string"}]}"#,
            ),
        ]);
        let validator = |name: &str| {
            let c = files
                .compile(&with_contract(&format!("      schema: {name}\n")))
                .unwrap_or_else(|e| panic!("{e}"));
            c.routes[0]
                .contract
                .as_ref()
                .and_then(|k| k.schema.clone())
                .expect("schema")
                .validator
        };
        assert!(!validator("a.json").is_valid(&json!([1])));
        assert!(validator("b.json").is_valid(&json!([1])));
    }

    #[test]
    fn a_missing_schema_file_is_the_configs_error() {
        let files = Files::new(&[]);
        let errs = files.errors(&with_contract(SCHEMA_KEY));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("c.yaml:10:15: cannot read schema `")
                && errs[0].contains("orders.schema.json`: No such file"),
            "{errs:?}"
        );
    }

    #[test]
    fn bad_json_is_placed_in_the_schema_file() {
        let files = Files::new(&[(
            "orders.schema.json",
            "{\n  \"type\": \"object\",\n  \"é\": [1, 2,]\n}\n",
        )]);
        assert_eq!(
            files.errors(&with_contract(SCHEMA_KEY)),
            ["orders.schema.json:3:14: JSON syntax error: trailing comma"]
        );
    }

    #[test]
    fn an_invalid_keyword_is_placed_at_its_value() {
        let files = Files::new(&[(
            "orders.schema.json",
            "{\n  \"type\": \"object\",\n  \"properties\": {\n    \"amount\": { \"minimum\": \"x\" }\n  }\n}\n",
        )]);
        let errs = files.errors(&with_contract(SCHEMA_KEY));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "orders.schema.json:4:28: invalid schema at /properties/amount/minimum: "
            ),
            "{errs:?}"
        );
        let files = Files::new(&[("orders.schema.json", "{ \"type\": 5 }")]);
        let errs = files.errors(&with_contract(SCHEMA_KEY));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("orders.schema.json:1:11: invalid schema at /type: "),
            "{errs:?}"
        );
    }

    #[test]
    fn a_ref_to_a_sibling_file_compiles_and_validates() {
        let files = Files::new(&[
            (
                "orders.schema.json",
                r#"{"type": "object", "properties": {
                    "id": {"$ref": "common.schema.json#/$defs/id"},
                    "at": {"$ref": "./defs/time.json"}}}"#,
            ),
            (
                "common.schema.json",
                r#"{"$defs": {"id": {"type": "string", "pattern": "^o-"}}}"#,
            ),
            (
                "defs/time.json",
                r#"{"type": "string", "format": "date-time"}"#,
            ),
        ]);
        let c = files
            .compile(&with_contract(SCHEMA_KEY))
            .unwrap_or_else(|e| panic!("{e}"));
        let v = c.routes[0]
            .contract
            .as_ref()
            .and_then(|k| k.schema.clone())
            .expect("schema")
            .validator;
        assert!(v.is_valid(&json!({"id": "o-1", "at": "2026-01-01T00:00:00Z"})));
        assert!(!v.is_valid(&json!({"id": "x-1"})));
        assert!(!v.is_valid(&json!({"at": 5})));
    }

    #[test]
    fn errors_in_a_referenced_file_name_that_file() {
        let files = Files::new(&[
            (
                "orders.schema.json",
                r#"{"properties": {"id": {"$ref": "common.schema.json#/$defs/id"}}}"#,
            ),
            (
                "common.schema.json",
                "{\"$defs\": {\n  \"id\": {\"type\": 5}}}",
            ),
        ]);
        let errs = files.errors(&with_contract(SCHEMA_KEY));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("common.schema.json:2:18: invalid schema at /$defs/id/type: "),
            "{errs:?}"
        );
        let files = Files::new(&[
            ("orders.schema.json", r#"{"$ref": "common.schema.json"}"#),
            ("common.schema.json", "{\"type\": }"),
        ]);
        assert_eq!(
            files.errors(&with_contract(SCHEMA_KEY)),
            ["common.schema.json:1:10: JSON syntax error: expected value"]
        );
    }

    #[test]
    fn remote_refs_and_files_outside_the_config_dir_are_refused() {
        let files = Files::new(&[
            (
                "orders.schema.json",
                "{\"properties\": {\n  \"id\": {\"$ref\": \"https://example.com/id.json\"}}}",
            ),
            (
                "inner/c.schema.json",
                r#"{"$ref": "../orders.schema.json"}"#,
            ),
            ("other.json", r#"{"$ref": "missing.json"}"#),
        ]);
        let errs = files.errors(&with_contract(SCHEMA_KEY));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("orders.schema.json:2:18: invalid schema: ")
                && errs[0].contains("remote schemas are not fetched"),
            "{errs:?}"
        );
        // A config in `inner/` may not reach its parent directory.
        let inner = files.dir.path().join("inner/c.yaml");
        let e = compile(&inner, &with_contract("      schema: c.schema.json\n"), 1)
            .expect_err("outside");
        assert!(
            e.0[0]
                .to_string()
                .contains("is outside the config's directory"),
            "{e}"
        );
        let errs = files.errors(&with_contract("      schema: other.json\n"));
        assert!(
            errs[0].starts_with("other.json:1:10: invalid schema: ")
                && errs[0].contains("cannot read"),
            "{errs:?}"
        );
    }
}
