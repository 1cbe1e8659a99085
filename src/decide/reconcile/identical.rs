//! The comparator's shortcut for byte-identical answers: one pass over the
//! body that builds no value tree, giving the report the full comparison
//! would give.
//!
//! Why: building two `serde_json::Value` trees (a `String` per key and per
//! string, a `BTreeMap` per object) is what a comparison of a large answer
//! costs, about 8 ms of CPU and tens of MiB per 256 KiB side, on the
//! proxy's core. Two equal byte strings parse to equal values, so nothing can
//! diverge but duplicates of a key within one side; what the report still
//! needs is whether the `records` pointer finds an array, how long it is,
//! and whether any key repeats. This pass finds those with the same parser
//! (the same errors, the same depth limit) and defers to the full comparison
//! when a key repeats, so duplicates are reported exactly as before.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::report::{Report, Spec};

/// The report for two identical bodies, or `None` when only the full
/// comparison can give it (a key that repeats: its samples need the records).
pub fn report(spec: &Spec<'_>, body: &[u8]) -> Option<Report> {
    let tokens = match pointer_tokens(spec.records) {
        Some(t) => t,
        // Not a pointer: it finds nothing, as with `Value::pointer`; a
        // body that is not JSON is compared as bytes (equal) instead.
        None => {
            return Some(Report {
                no_records: parses(body),
                ..Report::default()
            });
        }
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = Seek {
        tokens: &tokens,
        key: spec.key,
    }
    .deserialize(&mut de)
    .and_then(|found| de.end().map(|()| found));
    match found {
        // Not JSON: the full comparison compares the bytes, which are equal.
        Err(_) => Some(Report::default()),
        Ok(Found::Array {
            duplicate: true, ..
        }) => None,
        Ok(Found::Array { rows, .. }) => Some(Report {
            batch_rows: Some(rows),
            streaming_rows: Some(rows),
            ..Report::default()
        }),
        // No record array: a mistaken pointer, unless the pointer is "" (the
        // whole body, compared as a value: equal).
        Ok(Found::Nothing | Found::NotArray) => Some(Report {
            no_records: !spec.records.is_empty(),
            ..Report::default()
        }),
    }
}

/// Whether the body is JSON at all, by the same parser.
fn parses(body: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(body);
    Skip.deserialize(&mut de).and_then(|()| de.end()).is_ok()
}

/// A JSON pointer's reference tokens, unescaped as `Value::pointer` does;
/// `None` when it is not a pointer ("" is the whole document: no tokens).
pub(super) fn pointer_tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// An array index token as `Value::pointer` reads it.
pub(super) fn parse_index(s: &str) -> Option<usize> {
    if s.starts_with('+') || (s.starts_with('0') && s.len() != 1) {
        return None;
    }
    s.parse().ok()
}

/// What the pointer found.
enum Found {
    Nothing,
    NotArray,
    Array { rows: usize, duplicate: bool },
}

/// Follows the pointer's tokens; at its end, counts the array's records and
/// looks for a repeated key. Everything else is parsed and dropped.
struct Seek<'a> {
    tokens: &'a [String],
    key: Option<&'a str>,
}

impl Seek<'_> {
    fn scalar(&self) -> Found {
        if self.tokens.is_empty() {
            Found::NotArray
        } else {
            Found::Nothing
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Found;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Found, E> {
        Ok(self.scalar())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Found, E> {
        Ok(self.scalar())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Found, E> {
        Ok(self.scalar())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Found, E> {
        Ok(self.scalar())
    }
    fn visit_str<E>(self, _: &str) -> Result<Found, E> {
        Ok(self.scalar())
    }
    fn visit_unit<E>(self) -> Result<Found, E> {
        Ok(self.scalar())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found, A::Error> {
        let Some((token, rest)) = self.tokens.split_first() else {
            // The record array.
            let mut rows = 0;
            let mut duplicate = false;
            match self.key {
                None => {
                    while seq.next_element_seed(Skip)?.is_some() {
                        rows += 1;
                    }
                }
                Some(key) => {
                    let mut seen = HashSet::new();
                    while let Some(k) = seq.next_element_seed(RecordKey(key))? {
                        rows += 1;
                        duplicate |= !seen.insert(k);
                    }
                }
            }
            return Ok(Found::Array { rows, duplicate });
        };
        let want = parse_index(token);
        let mut found = Found::Nothing;
        let mut i = 0;
        loop {
            let next = if want == Some(i) {
                seq.next_element_seed(Seek {
                    tokens: rest,
                    key: self.key,
                })?
                .map(|f| found = f)
            } else {
                seq.next_element_seed(Skip)?
            };
            if next.is_none() {
                return Ok(found);
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let Some((token, rest)) = self.tokens.split_first() else {
            while map.next_key_seed(Skip)?.is_some() {
                map.next_value_seed(Skip)?;
            }
            return Ok(Found::NotArray);
        };
        // A key given twice: the last value counts, as in a parsed `Value`.
        let mut found = Found::Nothing;
        while let Some(is_token) = map.next_key_seed(KeyIs(token))? {
            if is_token {
                found = map.next_value_seed(Seek {
                    tokens: rest,
                    key: self.key,
                })?;
            } else {
                map.next_value_seed(Skip)?;
            }
        }
        Ok(found)
    }
}

/// A record's key as the full comparison indexes it: a string's text, any
/// other value's JSON, "null" when the record has no such field or is no
/// object.
struct RecordKey<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for RecordKey<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordKey<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<String, E> {
        Ok("null".to_owned())
    }
    fn visit_i64<E>(self, _: i64) -> Result<String, E> {
        Ok("null".to_owned())
    }
    fn visit_u64<E>(self, _: u64) -> Result<String, E> {
        Ok("null".to_owned())
    }
    fn visit_f64<E>(self, _: f64) -> Result<String, E> {
        Ok("null".to_owned())
    }
    fn visit_str<E>(self, _: &str) -> Result<String, E> {
        Ok("null".to_owned())
    }
    fn visit_unit<E>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok("null".to_owned())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut value = None;
        while let Some(is_key) = map.next_key_seed(KeyIs(self.0))? {
            if is_key {
                value = Some(map.next_value::<Value>()?);
            } else {
                map.next_value_seed(Skip)?;
            }
        }
        Ok(match value {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => "null".to_owned(),
        })
    }
}

/// Whether an object key is the given name (read without a copy).
pub(super) struct KeyIs<'a>(pub(super) &'a str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, k: &str) -> Result<bool, E> {
        Ok(k == self.0)
    }
}

/// Parses any value and keeps nothing. Unlike `serde::de::IgnoredAny` it goes
/// through `deserialize_any`, so numbers and strings are checked exactly as
/// when a `Value` is built (serde_json's skipping path checks less).
pub(super) struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}
