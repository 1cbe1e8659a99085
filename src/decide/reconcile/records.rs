//! One side's records, indexed without building their value trees: each
//! record's raw JSON text (borrowed from the answer), its key, its event
//! time and a digest of its normalised content; and, per top-level field,
//! how many records carry it and with which JSON types (for `schema`).
//!
//! Why: a `serde_json::Value` tree holds about 12x its text (a `String` per
//! key and string, a `BTreeMap` per object), so two 8 MiB answers that
//! differ cost some 200 MiB when compared as trees. Two records whose
//! digests are equal are equal after normalisation, so only records whose
//! digests differ are parsed into values, and rechecked there with the
//! numeric tolerance (a digest is exact: `1000.0` and `1000.5` differ in it
//! even when the tolerance says they match).
//!
//! Normalisation, as `compare::Comparer::equal` has it: object field order
//! never matters (fields are summed, not chained), `ignore` fields are left
//! out at any depth, `5` and `5.0` are one number. The digest is 128 bits
//! of XXH3: two different records share one with odds of about 2^-128.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use xxhash_rust::xxh3::{Xxh3, xxh3_128, xxh3_128_with_seed};

use crate::decide::freshness::parse_watermark;

/// A 128-bit digest as two words: a `u128` would pad every row to 16 bytes.
pub type Hash = [u64; 2];

fn split(h: u128) -> Hash {
    [h as u64, (h >> 64) as u64]
}

/// One record of one side: 56 bytes besides its text, which stays in the
/// answer.
#[derive(Debug)]
pub struct Row<'a> {
    pub raw: &'a RawValue,
    /// The digest of the key's text as the comparison indexes it (a
    /// string's text, any other value's JSON, "null" when absent): records
    /// are matched by it. The text itself is found again only for the
    /// records a divergence names (`key_text`).
    pub key: Hash,
    pub digest: Hash,
    /// The `event_time` field, Unix ms; `NO_TIME` when none parses.
    event_ms: i64,
}

const NO_TIME: i64 = i64::MIN;

impl Row<'_> {
    /// The record as a value, for the few that need one (rechecks, samples).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.raw.get()).unwrap_or(Value::Null)
    }

    /// The record's event time, Unix ms, when it has one that parses.
    pub fn event_ms(&self) -> Option<i64> {
        (self.event_ms != NO_TIME).then_some(self.event_ms)
    }

    /// The text of the record's `key` field, as the comparison indexes it.
    pub fn key_text(&self, key: &str) -> String {
        match self.value().get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "null".to_owned(),
        }
    }
}

fn key_hash(text: &str) -> Hash {
    split(xxh3_128(text.as_bytes()))
}

/// JSON types, as bits of `Field::types`.
pub const NULL: u8 = 1;
pub const BOOL: u8 = 2;
pub const NUMBER: u8 = 4;
pub const STRING: u8 = 8;
pub const ARRAY: u8 = 16;
pub const OBJECT: u8 = 32;

/// The names of a type set, for the divergence log.
pub fn type_names(types: u8) -> String {
    let names = [
        (BOOL, "boolean"),
        (NUMBER, "number"),
        (STRING, "string"),
        (ARRAY, "array"),
        (OBJECT, "object"),
        (NULL, "null"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| types & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

/// How one top-level field appears across a side's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Field {
    /// Records carrying it.
    pub count: usize,
    /// JSON types it was seen with.
    pub types: u8,
}

/// One side's records, indexed.
#[derive(Debug, Default)]
pub struct Side<'a> {
    pub rows: Vec<Row<'a>>,
    /// Top-level fields of object records (ignored fields left out).
    pub fields: Fields,
}

/// Top-level fields by name, in the order first seen. A list, not a map:
/// records of one answer almost always carry the same fields in the same
/// order, so the field at a record's position `i` is looked at first, and a
/// hash per field per record (the cost of a map) is saved.
#[derive(Debug, Default)]
pub struct Fields(Vec<(Box<str>, Field)>);

impl Fields {
    fn seen(&mut self, position: usize, name: &str, types: u8) {
        let at = match self.0.get(position) {
            Some((n, _)) if **n == *name => Some(position),
            _ => self.0.iter().position(|(n, _)| **n == *name),
        };
        match at {
            Some(i) => {
                let f = &mut self.0[i].1;
                f.count += 1;
                f.types |= types;
            }
            None => self.0.push((name.into(), Field { count: 1, types })),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Field> {
        self.0.iter().find(|(n, _)| **n == *name).map(|(_, f)| f)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| &**n)
    }
}

/// What the digest leaves out and what the index picks up.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'s> {
    pub key: Option<&'s str>,
    pub ignore: &'s [String],
    /// Top-level fields left out besides `ignore`: the fields found to be
    /// `schema` divergences, so their records are not also `aggregate`.
    pub schema: &'s HashSet<String>,
    pub event_time: Option<&'s str>,
}

/// Indexes records given as raw JSON texts.
/// `Err`: a record the raw scan let through does not parse as a value would
/// (a number out of range, such as `1e400`).
pub fn index<'a>(
    raws: Vec<&'a RawValue>,
    rules: &Rules<'_>,
) -> Result<Side<'a>, serde_json::Error> {
    let mut side = Side {
        rows: Vec::with_capacity(raws.len()),
        fields: Fields::default(),
    };
    for raw in raws {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let top = Top {
            rules,
            fields: &mut side.fields,
        };
        let found = top.deserialize(&mut de)?;
        side.rows.push(Row {
            raw,
            key: match (rules.key, &found.key) {
                (None, _) => [0, 0],
                (Some(_), Some(text)) => key_hash(text),
                (Some(_), None) => key_hash("null"),
            },
            digest: split(found.digest),
            event_ms: found.event_ms.unwrap_or(NO_TIME),
        });
    }
    Ok(side)
}

/// Recomputes the digests leaving out `rules.schema` too.
pub fn redigest(side: &mut Side<'_>, rules: &Rules<'_>) {
    let mut scratch = Fields::default();
    for row in &mut side.rows {
        let mut de = serde_json::Deserializer::from_str(row.raw.get());
        let top = Top {
            rules,
            fields: &mut scratch,
        };
        if let Ok(found) = top.deserialize(&mut de) {
            row.digest = split(found.digest);
        }
    }
}

/// Splits NDJSON text into its records: one JSON value per line, blank
/// lines (and a last line without a newline) allowed. `Err`: the 1-based
/// number of a line that is not JSON.
pub fn lines(text: &[u8]) -> Result<Vec<&RawValue>, usize> {
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<&RawValue>(line) {
            Ok(raw) => out.push(raw),
            Err(_) => return Err(i + 1),
        }
    }
    Ok(out)
}

/// What a JSON document holds at the `records` pointer.
#[derive(Debug)]
pub enum Located<'a> {
    /// The record array's elements, as raw texts.
    Array(Vec<&'a RawValue>),
    /// Something that is not an array.
    NotArray,
    /// Nothing: the pointer names no value (or is no pointer).
    Nothing,
}

/// Follows `pointer` into a JSON document without building it. `Err`: the
/// body is not JSON (by the same parser a `Value` is built with).
pub fn at_pointer<'a>(body: &'a [u8], pointer: &str) -> Result<Located<'a>, serde_json::Error> {
    let Some(tokens) = super::identical::pointer_tokens(pointer) else {
        let mut de = serde_json::Deserializer::from_slice(body);
        super::identical::Skip.deserialize(&mut de)?;
        de.end()?;
        return Ok(Located::Nothing);
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = Seek { tokens: &tokens }.deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// Follows the pointer's tokens; at its end, collects the array's elements
/// as raw texts. Everything else is parsed and dropped.
struct Seek<'t> {
    tokens: &'t [String],
}

impl Seek<'_> {
    fn scalar<'a>(&self) -> Located<'a> {
        if self.tokens.is_empty() {
            Located::NotArray
        } else {
            Located::Nothing
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Located<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Located<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Located<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Located<'de>, E> {
        Ok(self.scalar())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Located<'de>, E> {
        Ok(self.scalar())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Located<'de>, E> {
        Ok(self.scalar())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Located<'de>, E> {
        Ok(self.scalar())
    }
    fn visit_str<E>(self, _: &str) -> Result<Located<'de>, E> {
        Ok(self.scalar())
    }
    fn visit_unit<E>(self) -> Result<Located<'de>, E> {
        Ok(self.scalar())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located<'de>, A::Error> {
        let Some((token, rest)) = self.tokens.split_first() else {
            let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(r) = seq.next_element::<&'de RawValue>()? {
                rows.push(r);
            }
            return Ok(Located::Array(rows));
        };
        let want = super::identical::parse_index(token);
        let mut found = Located::Nothing;
        let mut i = 0;
        loop {
            let more = if want == Some(i) {
                seq.next_element_seed(Seek { tokens: rest })?
                    .map(|f| found = f)
                    .is_some()
            } else {
                seq.next_element_seed(super::identical::Skip)?.is_some()
            };
            if !more {
                return Ok(found);
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located<'de>, A::Error> {
        use super::identical::{KeyIs, Skip};
        let Some((token, rest)) = self.tokens.split_first() else {
            while map.next_key_seed(Skip)?.is_some() {
                map.next_value_seed(Skip)?;
            }
            return Ok(Located::NotArray);
        };
        // A key given twice: the last value counts, as in a parsed `Value`.
        let mut found = Located::Nothing;
        while let Some(is_token) = map.next_key_seed(KeyIs(token))? {
            if is_token {
                found = map.next_value_seed(Seek { tokens: rest })?;
            } else {
                map.next_value_seed(Skip)?;
            }
        }
        Ok(found)
    }
}

const TAG_NULL: u64 = 1;
const TAG_BOOL: u64 = 2;
const TAG_INT: u64 = 3;
const TAG_FLOAT: u64 = 4;
const TAG_STRING: u64 = 5;
const TAG_ARRAY: u64 = 6;
const TAG_OBJECT: u64 = 7;

fn int_digest(i: i128) -> u128 {
    xxh3_128_with_seed(&i.to_le_bytes(), TAG_INT)
}

/// `5` and `5.0` are one number: a float with no fraction that an integer
/// holds exactly is digested as that integer.
fn float_digest(f: f64) -> u128 {
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        int_digest(f as i128)
    } else {
        xxh3_128_with_seed(&f.to_bits().to_le_bytes(), TAG_FLOAT)
    }
}

fn str_digest(s: &str) -> u128 {
    xxh3_128_with_seed(s.as_bytes(), TAG_STRING)
}

/// One field's share of its object's digest: summed with the others, so
/// field order never matters.
fn field_digest(name: &str, value: u128) -> u128 {
    let mut buf = [0u8; 112];
    let n = name.len();
    if n <= 96 {
        buf[..n].copy_from_slice(name.as_bytes());
        buf[n..n + 16].copy_from_slice(&value.to_le_bytes());
        xxh3_128(&buf[..n + 16])
    } else {
        let mut h = Xxh3::new();
        h.update(name.as_bytes());
        h.update(&value.to_le_bytes());
        h.digest128()
    }
}

fn object_digest(sum: u128) -> u128 {
    xxh3_128_with_seed(&sum.to_le_bytes(), TAG_OBJECT)
}

/// What `Top` finds in one record.
struct Found<'a> {
    digest: u128,
    key: Option<Cow<'a, str>>,
    event_ms: Option<i64>,
}

/// A record: its digest, and, when it is an object, its key, event time and
/// field types.
struct Top<'r, 's> {
    rules: &'r Rules<'s>,
    fields: &'r mut Fields,
}

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = Found<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Found<'de>, E> {
        Ok(scalar(Digest::bool(b)))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Found<'de>, E> {
        Ok(scalar(int_digest(i.into())))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Found<'de>, E> {
        Ok(scalar(int_digest(u.into())))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Found<'de>, E> {
        Ok(scalar(float_digest(f)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Found<'de>, E> {
        Ok(scalar(str_digest(s)))
    }
    fn visit_unit<E>(self) -> Result<Found<'de>, E> {
        Ok(scalar(Digest::null()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Found<'de>, A::Error> {
        Ok(scalar(Digest::seq(self.rules.ignore, seq)?))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found<'de>, A::Error> {
        let rules = self.rules;
        let mut sum = 0u128;
        let mut key = None;
        let mut event_ms = None;
        let mut position = 0;
        while let Some(name) = map.next_key_seed(Name)? {
            let name: &str = &name;
            if rules.ignore.iter().any(|i| i == name) {
                map.next_value_seed(Digest {
                    ignore: rules.ignore,
                })?;
                continue;
            }
            let (digest, types) = if rules.key == Some(name) {
                let (text, digest, types) = map.next_value_seed(KeyText {
                    ignore: rules.ignore,
                })?;
                key = Some(text);
                (digest, types)
            } else if rules.event_time == Some(name) {
                let (time, digest, types) = map.next_value_seed(EventTime)?;
                event_ms = time;
                (digest, types)
            } else {
                map.next_value_seed(Typed {
                    ignore: rules.ignore,
                })?
            };
            self.fields.seen(position, name, types);
            position += 1;
            if !rules.schema.is_empty() && rules.schema.contains(name) {
                continue;
            }
            sum = sum.wrapping_add(field_digest(name, digest));
        }
        Ok(Found {
            digest: object_digest(sum),
            key,
            event_ms,
        })
    }
}

fn scalar<'a>(digest: u128) -> Found<'a> {
    Found {
        digest,
        key: None,
        event_ms: None,
    }
}

/// The digest of a parsed value, equal to the one `Digest` computes from its text.
pub fn value_digest(v: &Value, ignore: &[String]) -> u128 {
    match v {
        Value::Null => Digest::null(),
        Value::Bool(b) => Digest::bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => int_digest(i.into()),
            (_, Some(u), _) => int_digest(u.into()),
            (_, _, Some(f)) => float_digest(f),
            _ => int_digest(0),
        },
        Value::String(s) => str_digest(s),
        Value::Array(a) => {
            let mut h = Xxh3::with_seed(TAG_ARRAY);
            for e in a {
                h.update(&value_digest(e, ignore).to_le_bytes());
            }
            h.digest128()
        }
        Value::Object(m) => {
            let mut sum = 0u128;
            for (k, e) in m {
                if ignore.iter().any(|i| i == k) {
                    continue;
                }
                sum = sum.wrapping_add(field_digest(k, value_digest(e, ignore)));
            }
            object_digest(sum)
        }
    }
}

/// The record's key: its text as the comparison indexes it (a string's
/// text, borrowed when it has no escapes; any other value's JSON), its
/// digest and its type.
struct KeyText<'s> {
    ignore: &'s [String],
}

impl<'de> DeserializeSeed<'de> for KeyText<'_> {
    type Value = (Cow<'de, str>, u128, u8);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyText<'_> {
    type Value = (Cow<'de, str>, u128, u8);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok((Cow::Borrowed(s), str_digest(s), STRING))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok((Cow::Owned(s.to_owned()), str_digest(s), STRING))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Self::Value, E> {
        Ok((Cow::Owned(i.to_string()), int_digest(i.into()), NUMBER))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Self::Value, E> {
        Ok((Cow::Owned(u.to_string()), int_digest(u.into()), NUMBER))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
        Ok((
            Cow::Owned(Value::from(f).to_string()),
            float_digest(f),
            NUMBER,
        ))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok((Cow::Owned(b.to_string()), Digest::bool(b), BOOL))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((Cow::Borrowed("null"), Digest::null(), NULL))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok((
            Cow::Owned(v.to_string()),
            value_digest(&v, self.ignore),
            ARRAY,
        ))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok((
            Cow::Owned(v.to_string()),
            value_digest(&v, self.ignore),
            OBJECT,
        ))
    }
}

/// The record's event time (RFC 3339 or Unix s/ms, as a string or a
/// number), its digest and its type.
struct EventTime;

impl<'de> DeserializeSeed<'de> for EventTime {
    type Value = (Option<i64>, u128, u8);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventTime {
    type Value = (Option<i64>, u128, u8);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok((parse_watermark(s.as_bytes()), str_digest(s), STRING))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Self::Value, E> {
        Ok((
            parse_watermark(i.to_string().as_bytes()),
            int_digest(i.into()),
            NUMBER,
        ))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Self::Value, E> {
        Ok((
            parse_watermark(u.to_string().as_bytes()),
            int_digest(u.into()),
            NUMBER,
        ))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
        let text = Value::from(f).to_string();
        Ok((parse_watermark(text.as_bytes()), float_digest(f), NUMBER))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok((None, Digest::bool(b), BOOL))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((None, Digest::null(), NULL))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Ok((None, Digest::seq(&[], seq)?, ARRAY))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok((None, Digest::map(&[], map)?, OBJECT))
    }
}

/// An object key, borrowed when it has no escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

/// A value's digest and its JSON type.
struct Typed<'s> {
    ignore: &'s [String],
}

impl<'de> DeserializeSeed<'de> for Typed<'_> {
    type Value = (u128, u8);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(u128, u8), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Typed<'_> {
    type Value = (u128, u8);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<(u128, u8), E> {
        Ok((Digest::bool(b), BOOL))
    }
    fn visit_i64<E>(self, i: i64) -> Result<(u128, u8), E> {
        Ok((int_digest(i.into()), NUMBER))
    }
    fn visit_u64<E>(self, u: u64) -> Result<(u128, u8), E> {
        Ok((int_digest(u.into()), NUMBER))
    }
    fn visit_f64<E>(self, f: f64) -> Result<(u128, u8), E> {
        Ok((float_digest(f), NUMBER))
    }
    fn visit_str<E>(self, s: &str) -> Result<(u128, u8), E> {
        Ok((str_digest(s), STRING))
    }
    fn visit_unit<E>(self) -> Result<(u128, u8), E> {
        Ok((Digest::null(), NULL))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(u128, u8), A::Error> {
        Ok((Digest::seq(self.ignore, seq)?, ARRAY))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(u128, u8), A::Error> {
        Ok((Digest::map(self.ignore, map)?, OBJECT))
    }
}

/// Any value's digest, from its text.
struct Digest<'s> {
    ignore: &'s [String],
}

impl Digest<'_> {
    fn null() -> u128 {
        xxh3_128_with_seed(&[], TAG_NULL)
    }

    fn bool(b: bool) -> u128 {
        xxh3_128_with_seed(&[u8::from(b)], TAG_BOOL)
    }

    fn seq<'de, A: SeqAccess<'de>>(ignore: &[String], mut seq: A) -> Result<u128, A::Error> {
        let mut h = Xxh3::with_seed(TAG_ARRAY);
        while let Some(d) = seq.next_element_seed(Digest { ignore })? {
            h.update(&d.to_le_bytes());
        }
        Ok(h.digest128())
    }

    fn map<'de, A: MapAccess<'de>>(ignore: &[String], mut map: A) -> Result<u128, A::Error> {
        // A name given twice: both count here, the last in a parsed value;
        // the digests then differ and the recheck on values decides.
        let mut sum = 0u128;
        while let Some(name) = map.next_key_seed(Name)? {
            let d = map.next_value_seed(Digest { ignore })?;
            if ignore.iter().any(|i| **i == *name) {
                continue;
            }
            sum = sum.wrapping_add(field_digest(&name, d));
        }
        Ok(object_digest(sum))
    }
}

impl<'de> DeserializeSeed<'de> for Digest<'_> {
    type Value = u128;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u128, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Digest<'_> {
    type Value = u128;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<u128, E> {
        Ok(Digest::bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<u128, E> {
        Ok(int_digest(i.into()))
    }
    fn visit_u64<E>(self, u: u64) -> Result<u128, E> {
        Ok(int_digest(u.into()))
    }
    fn visit_f64<E>(self, f: f64) -> Result<u128, E> {
        Ok(float_digest(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<u128, E> {
        Ok(str_digest(s))
    }
    fn visit_unit<E>(self) -> Result<u128, E> {
        Ok(Digest::null())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<u128, A::Error> {
        Digest::seq(self.ignore, seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<u128, A::Error> {
        Digest::map(self.ignore, map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_back(h: Hash) -> u128 {
        u128::from(h[0]) | (u128::from(h[1]) << 64)
    }

    fn digest_of(text: &str, ignore: &[String]) -> u128 {
        let empty = HashSet::new();
        let rules = Rules {
            key: None,
            ignore,
            schema: &empty,
            event_time: None,
        };
        let raw: &RawValue = serde_json::from_str(text).unwrap();
        split_back(index(vec![raw], &rules).unwrap().rows[0].digest)
    }

    #[test]
    fn digests_follow_normalisation() {
        let none: &[String] = &[];
        let same = [
            (r#"{"a":1,"b":[1,2]}"#, r#"{"b":[1,2],"a":1}"#),
            (r#"{"a":5}"#, r#"{"a":5.0}"#),
            (r#"{"a":"x\u0079"}"#, r#"{"a":"xy"}"#),
            (r#"{"a":{"y":1,"x":2}}"#, r#"{"a":{"x":2,"y":1}}"#),
        ];
        for (x, y) in same {
            assert_eq!(digest_of(x, none), digest_of(y, none), "{x} {y}");
        }
        let differ = [
            (r#"{"a":1}"#, r#"{"a":"1"}"#),
            (r#"{"a":[1,2]}"#, r#"{"a":[2,1]}"#),
            (r#"{"a":1000.0}"#, r#"{"a":1000.5}"#),
            (r#"{"a":null}"#, r#"{}"#),
            (r#"{"a":1,"b":2}"#, r#"{"a":2,"b":1}"#),
            (r#"{"ab":1}"#, r#"{"a":1}"#),
            (r#"[[1],[2]]"#, r#"[[1,2]]"#),
            (r#"{"a":true}"#, r#"{"a":1}"#),
        ];
        for (x, y) in differ {
            assert_ne!(digest_of(x, none), digest_of(y, none), "{x} {y}");
        }
        let ignore = vec!["at".to_owned()];
        assert_eq!(
            digest_of(r#"{"a":1,"at":2,"n":{"at":3}}"#, &ignore),
            digest_of(r#"{"a":1,"n":{}}"#, &ignore)
        );
    }

    #[test]
    fn the_digest_of_a_parsed_value_is_the_digest_of_its_text() {
        let ignore = vec!["skip".to_owned()];
        for text in [
            r#"{"id":1,"v":[1,2.5,{"skip":1,"k":"s"}],"n":null,"b":false}"#,
            r#"[1,"two",3.0,-4]"#,
            r#"18446744073709551615"#,
            r#"{"big":1e300,"neg":-9223372036854775808}"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                value_digest(&v, &ignore),
                digest_of(text, &ignore),
                "{text}"
            );
        }
    }

    #[test]
    fn index_finds_keys_event_times_and_field_types() {
        let empty = HashSet::new();
        let rules = Rules {
            key: Some("id"),
            ignore: &[],
            schema: &empty,
            event_time: Some("ts"),
        };
        let text = br#"{"id":"a","ts":"2023-11-14T22:13:20Z","v":1}
{"id":2,"v":"x"}

{"v":null}
"#;
        let raws = lines(text).unwrap();
        let side = index(raws, &rules).unwrap();
        let keys: Vec<_> = side.rows.iter().map(|r| r.key).collect();
        assert_eq!(keys, [key_hash("a"), key_hash("2"), key_hash("null")]);
        let texts: Vec<_> = side.rows.iter().map(|r| r.key_text("id")).collect();
        assert_eq!(texts, ["a", "2", "null"]);
        assert_eq!(side.rows[0].event_ms(), Some(1_700_000_000_000));
        assert_eq!(side.rows[1].event_ms(), None);
        assert_eq!(
            *side.fields.get("v").unwrap(),
            Field {
                count: 3,
                types: NUMBER | STRING | NULL
            }
        );
        assert_eq!(side.fields.get("id").unwrap().count, 2);
        assert_eq!(lines(b"{\"a\":1}\n{oops}\n").unwrap_err(), 2);
        assert_eq!(lines(b"{\"a\":1}\r\n\r\n").unwrap().len(), 1);
    }
}
