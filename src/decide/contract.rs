//! The contract checker (SPEC 1.2 "Contracts"): one decoded answer's records
//! against a route's contract (`schema`, `unique`, `sorted_by`, `not_null`,
//! `complete`), found as the comparator finds them. Pure: no I/O, no clock.
//!
//! One pass over the records. Each record is parsed into a `Value` only
//! when a schema is configured (the validator needs one); otherwise only the
//! named top-level fields are picked out of its text (everything else is
//! scanned past), so a check costs one `Vec` of raw texts per answer and no
//! allocation per record. `unique` keeps a 128-bit XXH3 digest of each
//! record's key values, never the values: two different keys share one with
//! odds of about 2^-128.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Number, Value};
use xxhash_rust::xxh3::Xxh3;

use super::freshness::parse_watermark;
use super::reconcile::outcome::Skip;
use super::reconcile::prepare::{Prepared, prepare};
use super::reconcile::records::{Located, at_pointer, lines};
use super::reconcile::report::Layout;
use crate::config::{Contract, Reconcile, Rule};

/// Violations listed per rule; past this they are only counted, so an
/// answer that breaks a rule in every record stays a small verdict.
pub const MAX_LISTED: usize = 3;

/// Characters of a value quoted in a message.
const MAX_VALUE_CHARS: usize = 80;

/// One broken rule in one answer: the record (its index among the answer's
/// records) and field it was found at, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub index: Option<usize>,
    /// A top-level field name; for `schema`, the JSON pointer into the
    /// record that failed (absent when the record itself did).
    pub field: Option<String>,
    pub message: String,
}

/// What one check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The first [`MAX_LISTED`] violations of each rule, in the order found.
    pub violations: Vec<Violation>,
    /// Violations found per rule (by [`Rule::index`]), listed or not.
    pub counts: [usize; Rule::ALL.len()],
}

impl Verdict {
    /// No rule broken: the answer keeps the contract.
    pub fn passed(&self) -> bool {
        self.counts.iter().all(|c| *c == 0)
    }

    /// Each broken rule once, in `Rule::ALL` order: what the answer counts
    /// as (`cutover_contract_violations_total{rule}`, the dead letter's
    /// `rules`).
    pub fn rules(&self) -> impl Iterator<Item = Rule> + '_ {
        Rule::ALL.into_iter().filter(|r| self.counts[r.index()] > 0)
    }

    fn note(&mut self, rule: Rule, index: Option<usize>, detail: impl FnOnce() -> Detail) {
        let count = &mut self.counts[rule.index()];
        *count += 1;
        if *count <= MAX_LISTED {
            let Detail { field, message } = detail();
            self.violations.push(Violation {
                rule,
                index,
                field,
                message,
            });
        }
    }
}

struct Detail {
    field: Option<String>,
    message: String,
}

fn detail(field: &str, message: String) -> Detail {
    Detail {
        field: Some(field.to_owned()),
        message,
    }
}

/// Why an answer could not be checked: it counts as `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchecked {
    /// Larger than `reconcile.max_body_bytes`, decoded or read into records.
    TooLarge,
    /// Its `Content-Encoding` is unknown, or its body does not decode.
    Encoding,
    /// Not records: not the format it says it is, `bytes`, or no record
    /// array at `reconcile.records`.
    Format,
}

impl Unchecked {
    pub fn as_str(self) -> &'static str {
        match self {
            Unchecked::TooLarge => "too_large",
            Unchecked::Encoding => "encoding",
            Unchecked::Format => "format",
        }
    }
}

/// Decodes, reads and checks one answer as it came over the wire, as the
/// comparator reads it: `reconcile.format`, `reconcile.records`, and
/// `reconcile.max_body_bytes` bounding the bytes as sent and as decoded.
pub fn check_answer(
    contract: &Contract,
    reconcile: &Reconcile,
    content_encoding: Option<&[u8]>,
    content_type: Option<&[u8]>,
    body: &[u8],
    query: Option<&str>,
    watermark_ms: Option<i64>,
) -> Result<Verdict, Unchecked> {
    // `prepare` bounds what it decodes; a body sent as is, only the
    // buffer that held it did.
    if body.len() > reconcile.max_body_bytes {
        return Err(Unchecked::TooLarge);
    }
    let prepared = prepare(
        reconcile.format,
        content_encoding,
        content_type,
        body,
        reconcile.max_body_bytes,
    )
    .map_err(|skip| match skip {
        Skip::TooLarge => Unchecked::TooLarge,
        Skip::Encoding => Unchecked::Encoding,
        _ => Unchecked::Format,
    })?;
    check(contract, &reconcile.records, &prepared, query, watermark_ms)
}

/// Checks one decoded answer. `records_pointer`: `reconcile.records`;
/// `query`: the read's query string (`complete`'s `from` and `to`);
/// `watermark_ms`: the answer's watermark (`complete`'s end). `Err`: the
/// answer holds no records to check (`Unchecked::Format`).
pub fn check(
    contract: &Contract,
    records_pointer: &str,
    prepared: &Prepared<'_>,
    query: Option<&str>,
    watermark_ms: Option<i64>,
) -> Result<Verdict, Unchecked> {
    let raws = match prepared.layout {
        Layout::Json { .. } => match at_pointer(&prepared.body, records_pointer) {
            Ok(Located::Array(raws)) => raws,
            Ok(Located::NotArray | Located::Nothing) | Err(_) => return Err(Unchecked::Format),
        },
        Layout::Lines => lines(&prepared.body).map_err(|_| Unchecked::Format)?,
        Layout::Bytes | Layout::Unreadable => return Err(Unchecked::Format),
    };
    check_records(contract, &raws, query, watermark_ms)
}

/// Checks records given as raw JSON texts (what [`check`] finds in an
/// answer). `Err`: a record the raw scan let through does not parse as a
/// value (a number out of range, such as `1e400`, under a schema).
pub fn check_records(
    contract: &Contract,
    raws: &[&RawValue],
    query: Option<&str>,
    watermark_ms: Option<i64>,
) -> Result<Verdict, Unchecked> {
    let plan = Plan::new(contract, query, watermark_ms);
    let mut state = State::new(&plan, raws.len());
    if let Some(schema) = &contract.schema {
        let mut prev: Option<Value> = None;
        for (i, raw) in raws.iter().enumerate() {
            let value: Value = serde_json::from_str(raw.get()).map_err(|_| Unchecked::Format)?;
            if !schema.validator.is_valid(&value) {
                state.verdict.note(Rule::Schema, Some(i), || {
                    match schema.validator.iter_errors(&value).next() {
                        Some(e) => {
                            let path = e.instance_path().to_string();
                            Detail {
                                field: (!path.is_empty()).then_some(path),
                                message: e.to_string(),
                            }
                        }
                        None => Detail {
                            field: None,
                            message: "does not match the schema".to_owned(),
                        },
                    }
                });
            }
            state.record(i, Source::Value(&value), prev.as_ref().map(Source::Value));
            prev = Some(value);
        }
    } else if !plan.names.is_empty() {
        let mut cur: Vec<Option<&RawValue>> = vec![None; plan.names.len()];
        let mut prev = cur.clone();
        for (i, raw) in raws.iter().enumerate() {
            cur.fill(None);
            pick(raw, &plan.names, &mut cur).map_err(|_| Unchecked::Format)?;
            state.record(i, Source::Raw(&cur), (i > 0).then_some(Source::Raw(&prev)));
            std::mem::swap(&mut cur, &mut prev);
        }
    }
    Ok(state.finish(raws.len()))
}

/// The contract as this answer checks it: the top-level fields it reads,
/// by slot, and the window `complete` is held to, when it applies.
struct Plan<'c> {
    names: Vec<&'c str>,
    unique: Vec<usize>,
    /// Slot, descending.
    sorted: Vec<(usize, bool)>,
    not_null: Vec<usize>,
    complete: Option<Window<'c>>,
}

/// `complete` for one answer: the records' event times reach from `from_ms`
/// to `end_ms` (the smaller of `to` and the watermark), each within
/// `tolerance_ms`.
struct Window<'c> {
    field: &'c str,
    slot: usize,
    from_ms: i64,
    end_ms: i64,
    tolerance_ms: i64,
}

impl<'c> Plan<'c> {
    fn new(contract: &'c Contract, query: Option<&str>, watermark_ms: Option<i64>) -> Plan<'c> {
        let mut names: Vec<&'c str> = Vec::new();
        let mut slot = |name: &'c str| match names.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                names.push(name);
                names.len() - 1
            }
        };
        let unique = contract.unique.iter().map(|f| slot(f)).collect();
        let sorted = contract
            .sorted_by
            .iter()
            .map(|k| (slot(&k.field), k.descending))
            .collect();
        let not_null = contract.not_null.iter().map(|f| slot(f)).collect();
        let complete = contract.complete.as_ref().and_then(|c| {
            let watermark_ms = watermark_ms?;
            let from_ms = time_param(query?, &c.from)?;
            let to_ms = time_param(query?, &c.to)?;
            Some(Window {
                field: &c.event_time,
                slot: slot(&c.event_time),
                from_ms,
                end_ms: to_ms.min(watermark_ms),
                tolerance_ms: i64::try_from(c.tolerance.as_millis()).unwrap_or(i64::MAX),
            })
        });
        Plan {
            names,
            unique,
            sorted,
            not_null,
            complete,
        }
    }
}

/// A query parameter's value as a time (RFC 3339 or Unix s/ms), the first
/// one named `name`. Percent-escapes are decoded; a `+` stays a `+` (an
/// offset such as `+02:00` is often sent unescaped, and no time has a
/// space). A parameter that does not parse is as good as absent: the read
/// named no window, which is the reader's doing, not streaming's.
fn time_param(query: &str, name: &str) -> Option<i64> {
    let value = query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (*percent_decode(n) == *name.as_bytes()).then_some(v)
    })?;
    parse_watermark(&percent_decode(value))
}

/// `%XX` escapes decoded; a `%` not followed by two hex digits is kept.
fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// Fills `slots` with the raw values of the record's top-level fields named
/// in `names` (the last one given when a name repeats, as in a parsed
/// value); a record that is not an object leaves them all empty.
fn pick<'a>(
    raw: &'a RawValue,
    names: &[&str],
    slots: &mut [Option<&'a RawValue>],
) -> Result<(), serde_json::Error> {
    if !raw.get().trim_start().starts_with('{') {
        return Ok(());
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(Pick { names, slots })
}

struct Pick<'p, 'a> {
    names: &'p [&'p str],
    slots: &'p mut [Option<&'a RawValue>],
}

impl<'a> Visitor<'a> for Pick<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(slot) = map.next_key_seed(SlotOf(self.names))? {
            match slot {
                Some(s) => self.slots[s] = Some(map.next_value::<&'a RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object key's slot among the named fields, without keeping the key.
struct SlotOf<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for SlotOf<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for SlotOf<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, s: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|n| *n == s))
    }
}

/// Where one record's named fields are read from.
#[derive(Clone, Copy)]
enum Source<'r, 'a> {
    /// Picked from its text (no schema).
    Raw(&'r [Option<&'a RawValue>]),
    /// Its parsed value (a schema needed one).
    Value(&'r Value),
}

impl<'r> Source<'r, '_> {
    fn get(self, names: &[&str], slot: usize) -> Scalar<'r> {
        match self {
            Source::Raw(slots) => slots[slot].map_or(Scalar::Missing, scalar_of_raw),
            Source::Value(v) => v.get(names[slot]).map_or(Scalar::Missing, scalar_of_value),
        }
    }
}

/// A field's value as the rules see it.
#[derive(Debug, Clone)]
enum Scalar<'v> {
    Missing,
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'v, str>),
    /// An array or object, as compact JSON with sorted keys (so that equal
    /// values have one text), or a number out of range as written.
    Other(Cow<'v, str>),
}

fn scalar_of_raw(raw: &RawValue) -> Scalar<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'n') => Scalar::Null,
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'"') if !text.contains('\\') => Scalar::Str(Cow::Borrowed(&text[1..text.len() - 1])),
        Some(b'"') => match serde_json::from_str::<String>(text) {
            Ok(s) => Scalar::Str(Cow::Owned(s)),
            Err(_) => Scalar::Other(Cow::Borrowed(text)),
        },
        Some(b'[' | b'{') => match serde_json::from_str::<Value>(text) {
            Ok(v) => Scalar::Other(Cow::Owned(v.to_string())),
            Err(_) => Scalar::Other(Cow::Borrowed(text)),
        },
        // Most numbers are integers: std's parse is quicker than a JSON
        // deserializer, and JSON's grammar (no `+`) is within its own.
        _ => match text.parse::<i64>().map(Number::from) {
            Ok(n) => Scalar::Number(n),
            Err(_) => match serde_json::from_str::<Number>(text) {
                Ok(n) => Scalar::Number(n),
                Err(_) => Scalar::Other(Cow::Borrowed(text)),
            },
        },
    }
}

fn scalar_of_value(v: &Value) -> Scalar<'_> {
    match v {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => Scalar::Number(n.clone()),
        Value::String(s) => Scalar::Str(Cow::Borrowed(s)),
        Value::Array(_) | Value::Object(_) => Scalar::Other(Cow::Owned(v.to_string())),
    }
}

impl Scalar<'_> {
    fn is_null(&self) -> bool {
        matches!(self, Scalar::Missing | Scalar::Null)
    }

    /// As a time (RFC 3339 or Unix s/ms, as `freshness::parse_watermark`
    /// reads a watermark), a string's or a number's; Unix ms.
    fn time(&self) -> Option<i64> {
        match self {
            Scalar::Str(s) => parse_watermark(s.as_bytes()),
            Scalar::Number(n) => number_time(n),
            _ => None,
        }
    }

    /// The value as a message quotes it (JSON, cut short).
    fn quoted(&self) -> String {
        let text = match self {
            Scalar::Missing => return "missing".to_owned(),
            Scalar::Null => "null".to_owned(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Str(s) => Value::from(&**s).to_string(),
            Scalar::Other(t) => t.to_string(),
        };
        if text.chars().count() > MAX_VALUE_CHARS {
            let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
            format!("{cut}...")
        } else {
            text
        }
    }

    /// The text strings compare by.
    fn text(&self) -> Cow<'_, str> {
        match self {
            Scalar::Missing | Scalar::Null => Cow::Borrowed("null"),
            Scalar::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Scalar::Number(n) => Cow::Owned(n.to_string()),
            Scalar::Str(s) | Scalar::Other(s) => Cow::Borrowed(s),
        }
    }

    /// Feeds the value to a key digest: tagged, length-prefixed, and with
    /// `5` and `5.0` one number, as the comparator normalises.
    fn digest(&self, h: &mut Xxh3) {
        match self {
            Scalar::Missing | Scalar::Null => h.update(&[0]),
            Scalar::Bool(b) => h.update(&[1, u8::from(*b)]),
            Scalar::Number(n) => match exact_int(n) {
                Some(i) => {
                    h.update(&[2]);
                    h.update(&i.to_le_bytes());
                }
                None => {
                    h.update(&[3]);
                    h.update(&n.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
                }
            },
            Scalar::Str(s) => {
                h.update(&[4]);
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Scalar::Other(t) => {
                h.update(&[5]);
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
        }
    }
}

/// A number that an integer holds exactly.
fn exact_int(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i128)
}

/// A JSON number as a time: its JSON text read as a watermark is (as
/// `records.rs` reads a numeric event time), without allocating.
fn number_time(n: &Number) -> Option<i64> {
    let mut buf = [0u8; 40];
    let mut w: &mut [u8] = &mut buf;
    serde_json::to_writer(&mut w, n).ok()?;
    let left = w.len();
    parse_watermark(&buf[..buf.len() - left])
}

/// `sorted_by`'s order of two values of one key, ascending: numbers as
/// numbers when both are; else times when both read as one (RFC 3339 or
/// Unix s/ms); else their texts (a number's and a bool's JSON). A missing
/// or null value comes before every other (SQL's `NULLS FIRST` ascending,
/// so last under a descending key), and ties with another null.
/// `a_time`/`b_time`: the values' times when already read (`Some(None)`:
/// read, and not a time).
fn order(a: &Scalar<'_>, a_time: Read, b: &Scalar<'_>, b_time: Read) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        (false, false) => {}
    }
    if let (Scalar::Number(x), Scalar::Number(y)) = (a, b) {
        return match (exact_int(x), exact_int(y)) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }
        };
    }
    let a_time = a_time.unwrap_or_else(|| a.time());
    let b_time = b_time.unwrap_or_else(|| b.time());
    if let (Some(x), Some(y)) = (a_time, b_time) {
        return x.cmp(&y);
    }
    a.text().cmp(&b.text())
}

/// A value's time, once read: `None` when not read yet.
type Read = Option<Option<i64>>;

/// The digests seen are XXH3 already: hashed again they would only cost.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64 ^ (n >> 64) as u64;
    }
}

/// What the pass over the records carries from one to the next.
struct State<'p> {
    plan: &'p Plan<'p>,
    verdict: Verdict,
    /// Key digest to the index of the first record with it.
    seen: HashMap<u128, usize, BuildHasherDefault<Prehashed>>,
    /// The sort keys' times of the record before, and of this one.
    prev_times: Vec<Read>,
    cur_times: Vec<Read>,
    /// Earliest and latest event time, Unix ms, with their record.
    first: Option<(i64, usize)>,
    last: Option<(i64, usize)>,
}

impl<'p> State<'p> {
    fn new(plan: &'p Plan<'p>, records: usize) -> State<'p> {
        let seen = if plan.unique.is_empty() {
            HashMap::default()
        } else {
            HashMap::with_capacity_and_hasher(records, BuildHasherDefault::default())
        };
        State {
            plan,
            verdict: Verdict::default(),
            seen,
            prev_times: vec![None; plan.sorted.len()],
            cur_times: vec![None; plan.sorted.len()],
            first: None,
            last: None,
        }
    }

    /// The rules that read fields, on record `i`; `prev` is record `i - 1`.
    fn record(&mut self, i: usize, cur: Source<'_, '_>, prev: Option<Source<'_, '_>>) {
        let plan = self.plan;
        let names = &plan.names;
        for &slot in &plan.not_null {
            let v = cur.get(names, slot);
            if v.is_null() {
                self.verdict.note(Rule::NotNull, Some(i), || {
                    let what = if matches!(v, Scalar::Missing) {
                        "missing"
                    } else {
                        "null"
                    };
                    detail(names[slot], format!("`{}` is {what}", names[slot]))
                });
            }
        }
        if !plan.unique.is_empty() {
            let mut h = Xxh3::new();
            for &slot in &plan.unique {
                cur.get(names, slot).digest(&mut h);
            }
            let first = *self.seen.entry(h.digest128()).or_insert(i);
            if first != i {
                self.verdict.note(Rule::Unique, Some(i), || {
                    let fields: Vec<&str> = plan.unique.iter().map(|s| names[*s]).collect();
                    let values: Vec<String> = plan
                        .unique
                        .iter()
                        .map(|s| cur.get(names, *s).quoted())
                        .collect();
                    Detail {
                        field: Some(fields.join(",")),
                        message: format!(
                            "record {i} repeats record {first}'s {} = {}",
                            fields.join(", "),
                            values.join(", ")
                        ),
                    }
                });
            }
        }
        if !plan.sorted.is_empty() {
            self.sorted(i, cur, prev);
        }
        if let Some(w) = &plan.complete {
            let v = cur.get(names, w.slot);
            match v.time() {
                Some(t) => {
                    if self.first.is_none_or(|(f, _)| t < f) {
                        self.first = Some((t, i));
                    }
                    if self.last.is_none_or(|(l, _)| t > l) {
                        self.last = Some((t, i));
                    }
                }
                None => self.verdict.note(Rule::Complete, Some(i), || {
                    let why = match v {
                        Scalar::Missing => "is missing".to_owned(),
                        other => format!("{} is not a time", other.quoted()),
                    };
                    detail(w.field, format!("`{}` {why}", w.field))
                }),
            }
        }
    }

    /// Record `i` against record `i - 1`, key by key: in order when the
    /// first key that differs goes the key's way.
    fn sorted(&mut self, i: usize, cur: Source<'_, '_>, prev: Option<Source<'_, '_>>) {
        let plan = self.plan;
        let names = &plan.names;
        // A string's time is read once, as this record and as the next one's
        // `prev`; a number's only when it meets a string.
        for (k, &(slot, _)) in plan.sorted.iter().enumerate() {
            self.cur_times[k] = match cur.get(names, slot) {
                v @ Scalar::Str(_) => Some(v.time()),
                _ => None,
            };
        }
        if let Some(prev) = prev {
            for (k, &(slot, descending)) in plan.sorted.iter().enumerate() {
                let (a, b) = (prev.get(names, slot), cur.get(names, slot));
                let mut ord = order(&a, self.prev_times[k], &b, self.cur_times[k]);
                if descending {
                    ord = ord.reverse();
                }
                match ord {
                    Ordering::Less => break,
                    Ordering::Equal => continue,
                    Ordering::Greater => {
                        self.verdict.note(Rule::Sorted, Some(i), || {
                            let way = if descending {
                                "descending"
                            } else {
                                "ascending"
                            };
                            detail(
                                names[slot],
                                format!(
                                    "record {i}'s `{}` {} comes after record {}'s {} ({way})",
                                    names[slot],
                                    b.quoted(),
                                    i - 1,
                                    a.quoted()
                                ),
                            )
                        });
                        break;
                    }
                }
            }
        }
        std::mem::swap(&mut self.prev_times, &mut self.cur_times);
    }

    /// `complete`'s reach, once every record was seen.
    fn finish(mut self, records: usize) -> Verdict {
        let plan = self.plan;
        let Some(w) = &plan.complete else {
            return self.verdict;
        };
        if w.from_ms >= w.end_ms {
            // Nothing to reach: the window is empty, or the watermark is
            // not past its start yet.
            return self.verdict;
        }
        let window = || format!("{} to {}", rfc3339(w.from_ms), rfc3339(w.end_ms));
        match (self.first, self.last) {
            (Some((first, fi)), Some((last, li))) => {
                if first > w.from_ms.saturating_add(w.tolerance_ms) {
                    self.verdict.note(Rule::Complete, Some(fi), || {
                        detail(
                            w.field,
                            format!(
                                "the earliest `{}` is {}, past the window's start ({})",
                                w.field,
                                rfc3339(first),
                                window()
                            ),
                        )
                    });
                }
                if last < w.end_ms.saturating_sub(w.tolerance_ms) {
                    self.verdict.note(Rule::Complete, Some(li), || {
                        detail(
                            w.field,
                            format!(
                                "the latest `{}` is {}, short of the window's end ({})",
                                w.field,
                                rfc3339(last),
                                window()
                            ),
                        )
                    });
                }
            }
            _ if records == 0 => self.verdict.note(Rule::Complete, None, || Detail {
                field: None,
                message: format!("no records for the window {}", window()),
            }),
            // Records, none with a time: each was a violation already.
            _ => {}
        }
        self.verdict
    }
}

/// Unix ms as RFC 3339 (UTC), for messages; the number itself when out of
/// range.
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Complete, Format, OnViolation, Schema, SortKey};
    use proptest::prelude::*;
    use serde_json::json;
    use std::io::Write;
    use std::sync::Arc;
    use std::time::Duration;

    fn contract() -> Contract {
        Contract {
            schema: None,
            unique: Vec::new(),
            sorted_by: Vec::new(),
            not_null: Vec::new(),
            complete: None,
            on_violation: OnViolation::Record,
            max_body_bytes: 1 << 20,
            sample: 1.0,
            dead_letter: None,
        }
    }

    fn names(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|f| (*f).to_owned()).collect()
    }

    fn sorted_by(keys: &[&str]) -> Vec<SortKey> {
        keys.iter()
            .map(|k| match k.strip_prefix('-') {
                Some(f) => SortKey {
                    field: f.to_owned(),
                    descending: true,
                },
                None => SortKey {
                    field: (*k).to_owned(),
                    descending: false,
                },
            })
            .collect()
    }

    fn schema(s: Value) -> Schema {
        Schema {
            path: "orders.schema.json".into(),
            validator: Arc::new(jsonschema::validator_for(&s).expect("a valid schema")),
        }
    }

    fn complete() -> Complete {
        Complete {
            event_time: "ts".to_owned(),
            from: "start".to_owned(),
            to: "end".to_owned(),
            tolerance: Duration::from_secs(60),
        }
    }

    fn reconcile(format: Format, records: &str) -> Reconcile {
        Reconcile {
            sample: 1.0,
            sample_explicit: false,
            records: records.to_owned(),
            key: None,
            ignore: Vec::new(),
            numeric_tolerance: 0.0,
            event_time_field: None,
            divergence_log: None,
            max_inflight: 4,
            max_body_bytes: 1 << 20,
            format,
        }
    }

    fn run(c: &Contract, format: Format, records: &str, body: &[u8]) -> Result<Verdict, Unchecked> {
        check_answer(c, &reconcile(format, records), None, None, body, None, None)
    }

    fn rules(v: &Verdict) -> Vec<Rule> {
        v.rules().collect()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).expect("writes to a Vec");
        e.finish().expect("writes to a Vec")
    }

    /// Every rule but `complete` on one contract, in every record layout:
    /// the good answer passes, the bad one breaks each rule once.
    #[test]
    fn each_rule_in_every_layout() {
        let mut c = contract();
        c.unique = names(&["id"]);
        c.sorted_by = sorted_by(&["id"]);
        c.not_null = names(&["amount"]);
        let good = [json!({"id": 1, "amount": 5}), json!({"id": 2, "amount": 0})];
        // 3 then 2: unsorted; 2 again: not unique; amount null.
        let bad = [
            json!({"id": 3, "amount": 1}),
            json!({"id": 2, "amount": 1}),
            json!({"id": 2, "amount": null}),
        ];
        let ndjson = |rs: &[Value]| -> Vec<u8> {
            rs.iter()
                .map(|r| format!("{r}\n"))
                .collect::<String>()
                .into_bytes()
        };
        let nested = |rs: &[Value]| serde_json::to_vec(&json!({"data": rs})).unwrap();
        let whole = |rs: &[Value]| serde_json::to_vec(rs).unwrap();
        let want = [Rule::Unique, Rule::Sorted, Rule::NotNull];
        for (format, pointer, body) in [
            (Format::Json, "/data", nested as fn(&[Value]) -> Vec<u8>),
            (Format::Auto, "", whole),
            (Format::Ndjson, "/ignored", ndjson),
        ] {
            let v = run(&c, format, pointer, &body(&good)).unwrap();
            assert!(v.passed(), "{format:?}: {v:?}");
            let v = run(&c, format, pointer, &body(&bad)).unwrap();
            assert_eq!(rules(&v), want, "{format:?}");
            let by_rule = |r: Rule| v.violations.iter().find(|x| x.rule == r).unwrap();
            assert_eq!(by_rule(Rule::Sorted).index, Some(1));
            assert_eq!(by_rule(Rule::Unique).index, Some(2));
            assert!(by_rule(Rule::Unique).message.contains("record 1"), "{v:?}");
            assert_eq!(by_rule(Rule::NotNull).index, Some(2));
            assert_eq!(by_rule(Rule::NotNull).field.as_deref(), Some("amount"));
        }
        // CSV: "2" is the number 2, an empty cell is null.
        let v = run(&c, Format::Csv, "", b"id,amount\n1,5\n2,0\n").unwrap();
        assert!(v.passed(), "{v:?}");
        let v = run(&c, Format::Csv, "", b"id,amount\n3,1\n2,1\n2,\n").unwrap();
        assert_eq!(rules(&v), want);
        // A CSV "1" is a number, "01" a string: they are not one key.
        let v = run(&c, Format::Csv, "", b"id,amount\n1,1\n01,1\n").unwrap();
        assert!(!v.rules().any(|r| r == Rule::Unique), "{v:?}");
    }

    #[test]
    fn schema_reports_the_failing_records() {
        let mut c = contract();
        c.schema = Some(schema(json!({
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "integer"}, "amount": {"type": "number"}}
        })));
        let body = br#"{"data":[{"id":1,"amount":2.5},{"id":"x"},{"amount":1},7,{"id":2}]}"#;
        let v = run(&c, Format::Json, "/data", body).unwrap();
        assert_eq!(rules(&v), [Rule::Schema]);
        assert_eq!(v.counts[Rule::Schema.index()], 3);
        let got: Vec<_> = v
            .violations
            .iter()
            .map(|x| (x.index, x.field.as_deref()))
            .collect();
        assert_eq!(
            got,
            [(Some(1), Some("/id")), (Some(2), None), (Some(3), None)]
        );
        assert!(v.violations[0].message.contains("integer"), "{v:?}");
        let v = run(&c, Format::Ndjson, "", b"{\"id\":1}\n{\"id\":2}\n").unwrap();
        assert!(v.passed());
    }

    #[test]
    fn a_flood_stays_small_and_counts_once_per_rule() {
        let mut c = contract();
        c.not_null = names(&["a"]);
        c.schema = Some(schema(json!({"required": ["a"]})));
        let body = "{}\n".repeat(1000);
        let v = run(&c, Format::Ndjson, "", body.as_bytes()).unwrap();
        assert_eq!(rules(&v), [Rule::Schema, Rule::NotNull]);
        assert_eq!(v.violations.len(), 2 * MAX_LISTED);
        assert_eq!(v.counts[Rule::NotNull.index()], 1000);
        assert!(!v.violations[0].message.is_empty());
    }

    /// Same checks on a schema-less contract (fields picked from the text)
    /// and with a schema (fields read from the parsed value).
    #[test]
    fn fields_read_alike_from_text_and_from_values() {
        let body = concat!(
            r#"[{"k":"a\u0062","n":1},{"n":1.0,"k":"ab"},[1],"str",{"k":{"y":1,"x":2}},"#,
            r#"{"k":{"x":2, "y":1}},{"k":null},{"n":2}]"#
        );
        for with_schema in [false, true] {
            let mut c = contract();
            c.unique = names(&["k", "n"]);
            c.not_null = names(&["k"]);
            if with_schema {
                c.schema = Some(schema(json!(true)));
            }
            let v = run(&c, Format::Json, "", body.as_bytes()).unwrap();
            let at = |r: Rule| -> Vec<_> {
                v.violations
                    .iter()
                    .filter(|x| x.rule == r)
                    .map(|x| x.index.unwrap())
                    .collect()
            };
            // "a\u0062" is "ab", 1.0 is 1; key order in objects never matters;
            // a non-object record and a missing k are null, as {"k":null} is.
            assert_eq!(at(Rule::Unique), [1, 3, 5], "schema {with_schema}");
            assert_eq!(v.counts[Rule::Unique.index()], 4, "schema {with_schema}");
            assert_eq!(at(Rule::NotNull), [2, 3, 6], "schema {with_schema}");
            assert_eq!(v.counts[Rule::NotNull.index()], 4);
        }
    }

    #[test]
    fn sorted_descending_multi_key_and_nulls_first() {
        let check_sorted = |keys: &[&str], records: Value| {
            let mut c = contract();
            c.sorted_by = sorted_by(keys);
            let body = serde_json::to_vec(&records).unwrap();
            let v = run(&c, Format::Json, "", &body).unwrap();
            v.violations
                .iter()
                .map(|x| x.index.unwrap())
                .collect::<Vec<_>>()
        };
        let rows = json!([
            {"g": "b", "n": 3},
            {"g": "b", "n": 1},
            {"g": "a", "n": 9},
            {"g": "a", "n": 9},
            {"g": "a", "n": 2}
        ]);
        assert_eq!(
            check_sorted(&["-g", "-n"], rows.clone()),
            Vec::<usize>::new()
        );
        assert_eq!(check_sorted(&["-g", "n"], rows.clone()), [1, 4]);
        assert_eq!(check_sorted(&["g"], rows.clone()), [2]);
        // Nulls (and missing values) first ascending, last descending.
        let nulls = json!([{"n": null}, {}, {"n": 1}, {"n": 2}]);
        assert!(check_sorted(&["n"], nulls.clone()).is_empty());
        assert_eq!(check_sorted(&["-n"], nulls), [2, 3]);
        assert_eq!(
            check_sorted(&["-n"], json!([{"n": 2}, {"n": 1}, {}])),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn sort_values_compare_as_numbers_times_or_strings() {
        let ord = |a: Value, b: Value| {
            let (a, b) = (scalar_of_value(&a), scalar_of_value(&b));
            order(&a, None, &b, None)
        };
        // Numbers: 9 < 10 (as strings "10" < "9"); 1 == 1.0.
        assert_eq!(ord(json!(9), json!(10)), Ordering::Less);
        assert_eq!(ord(json!(1), json!(1.0)), Ordering::Equal);
        assert_eq!(ord(json!(-1.5), json!(-2)), Ordering::Greater);
        // Times: offsets count; Unix seconds against RFC 3339.
        assert_eq!(
            ord(
                json!("2024-01-01T01:00:00+02:00"),
                json!("2024-01-01T00:00:00Z")
            ),
            Ordering::Less
        );
        assert_eq!(
            ord(json!(1_700_000_000), json!("2023-11-14T22:13:20Z")),
            Ordering::Equal
        );
        assert_eq!(ord(json!("9"), json!("10")), Ordering::Less);
        // Strings otherwise.
        assert_eq!(ord(json!("b"), json!("ab")), Ordering::Greater);
        assert_eq!(ord(json!("10x"), json!("9x")), Ordering::Less);
        assert_eq!(ord(json!(null), json!("a")), Ordering::Less);
        // Through the checker, from text: times in a string column.
        let mut c = contract();
        c.sorted_by = sorted_by(&["ts"]);
        let body = br#"{"ts":"2024-01-01T00:00:00Z"}
{"ts":"2024-01-01T02:00:00+01:00"}
{"ts":1704070800}
{"ts":"2024-01-01T00:30:00Z"}
"#;
        let v = run(&c, Format::Ndjson, "", body).unwrap();
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert_eq!(v.violations[0].index, Some(3));
        assert_eq!(v.violations[0].field.as_deref(), Some("ts"));
    }

    fn window_check(
        body: &str,
        query: Option<&str>,
        watermark_ms: Option<i64>,
    ) -> Result<Verdict, Unchecked> {
        let mut c = contract();
        c.complete = Some(complete());
        check_answer(
            &c,
            &reconcile(Format::Ndjson, ""),
            None,
            None,
            body.as_bytes(),
            query,
            watermark_ms,
        )
    }

    #[test]
    fn complete_reaches_from_start_to_the_watermark() {
        const T0: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        let q = "start=2023-11-14T22%3A13%3A20Z&end=1700003600";
        let records = |secs: &[i64]| -> String {
            secs.iter()
                .map(|s| format!("{{\"ts\":{}}}\n", T0 / 1000 + s))
                .collect()
        };
        // Up to the end of the window (watermark past it), within 1m.
        let full = records(&[30, 600, 3550]);
        assert!(
            window_check(&full, Some(q), Some(T0 + 7_200_000))
                .unwrap()
                .passed()
        );
        // The watermark is sooner than `end`: the records need reach only it.
        let short = records(&[0, 1200]);
        assert!(
            window_check(&short, Some(q), Some(T0 + 1_230_000))
                .unwrap()
                .passed()
        );
        let v = window_check(&short, Some(q), Some(T0 + 7_200_000)).unwrap();
        assert_eq!(rules(&v), [Rule::Complete]);
        assert_eq!(v.violations[0].index, Some(1));
        assert!(v.violations[0].message.contains("short of"), "{v:?}");
        let late = records(&[90, 3600]);
        let v = window_check(&late, Some(q), Some(T0 + 7_200_000)).unwrap();
        assert_eq!(v.violations.len(), 1);
        assert_eq!(v.violations[0].index, Some(0));
        assert!(v.violations[0].message.contains("past the window's start"));
        // No records for a window that is not empty.
        let v = window_check("", Some(q), Some(T0 + 7_200_000)).unwrap();
        assert_eq!(rules(&v), [Rule::Complete]);
        assert_eq!(v.violations[0].index, None);
        // ...but none are owed before the watermark passes the start.
        assert!(window_check("", Some(q), Some(T0 - 1)).unwrap().passed());
        // An event time that is no time.
        let body = format!("{}{{\"ts\":\"soon\"}}\n{{}}\n", records(&[0, 3600]));
        let v = window_check(&body, Some(q), Some(T0 + 7_200_000)).unwrap();
        assert_eq!(v.counts[Rule::Complete.index()], 2);
        assert_eq!(v.violations[0].index, Some(2));
        assert_eq!(v.violations[0].field.as_deref(), Some("ts"));
        // A `+` in the query is an offset, as sent unescaped.
        let plus = "end=2023-11-15T00:13:20+01:00&start=1700000000000";
        assert!(
            window_check(&full, Some(plus), Some(T0 + 7_200_000))
                .unwrap()
                .passed()
        );
    }

    #[test]
    fn complete_is_skipped_without_its_params_or_a_watermark() {
        let late = "{\"ts\":\"2030-01-01T00:00:00Z\"}\n";
        let q = "start=1700000000&end=1700003600";
        for (query, watermark) in [
            (None, Some(1_800_000_000_000)),
            (Some("start=1700000000"), Some(1_800_000_000_000)),
            (
                Some("start=1700000000&end=tomorrow"),
                Some(1_800_000_000_000),
            ),
            (Some(q), None),
        ] {
            assert!(
                window_check(late, query, watermark).unwrap().passed(),
                "{query:?} {watermark:?}"
            );
            assert!(window_check("{}\n", query, watermark).unwrap().passed());
        }
        assert!(
            !window_check(late, Some(q), Some(1_800_000_000_000))
                .unwrap()
                .passed()
        );
    }

    #[test]
    fn answers_that_cannot_be_checked() {
        let mut c = contract();
        c.not_null = names(&["id"]);
        assert_eq!(
            run(&c, Format::Json, "", b"{not json"),
            Err(Unchecked::Format)
        );
        assert_eq!(
            run(&c, Format::Json, "/data", b"{\"data\":{}}"),
            Err(Unchecked::Format)
        );
        assert_eq!(
            run(&c, Format::Json, "/nope", b"{\"data\":[]}"),
            Err(Unchecked::Format)
        );
        assert_eq!(
            run(&c, Format::Ndjson, "", b"{}\n{oops\n"),
            Err(Unchecked::Format)
        );
        assert_eq!(
            run(&c, Format::Csv, "", b"a,b\n1\n"),
            Err(Unchecked::Format)
        );
        assert_eq!(
            run(&c, Format::Parquet, "", b"PAR1 no"),
            Err(Unchecked::Format)
        );
        assert_eq!(run(&c, Format::Bytes, "", b"[]"), Err(Unchecked::Format));
        let mut r = reconcile(Format::Json, "");
        r.max_body_bytes = 100;
        let big = format!("[{}]", vec!["{\"id\":1}"; 50].join(","));
        let answer =
            |enc: Option<&[u8]>, body: &[u8]| check_answer(&c, &r, enc, None, body, None, None);
        assert_eq!(answer(None, big.as_bytes()), Err(Unchecked::TooLarge));
        assert_eq!(
            answer(Some(b"gzip"), &gzip(big.as_bytes())),
            Err(Unchecked::TooLarge)
        );
        assert_eq!(answer(Some(b"compress"), b"[]"), Err(Unchecked::Encoding));
    }

    #[test]
    fn a_gzip_answer_is_checked_decoded() {
        let mut c = contract();
        c.not_null = names(&["id"]);
        let r = reconcile(Format::Auto, "/data");
        let bad = gzip(br#"{"data":[{"id":1},{"id":null}]}"#);
        let v = check_answer(
            &c,
            &r,
            Some(b"gzip"),
            Some(b"application/json"),
            &bad,
            None,
            None,
        )
        .unwrap();
        assert_eq!(rules(&v), [Rule::NotNull]);
        assert_eq!(v.violations[0].index, Some(1));
        // CSV by Content-Type, gzipped.
        let csv = gzip(b"id\n1\n2\n");
        let v = check_answer(&c, &r, Some(b"gzip"), Some(b"text/csv"), &csv, None, None).unwrap();
        assert!(v.passed());
    }

    /// tests/data/pyarrow-snappy.parquet (format.rs has its rows): ids 1-3,
    /// `name` null in row 1, `event_time` 2024, null, 1999.
    #[test]
    fn parquet_answers_are_checked_as_records() {
        let file = include_bytes!("../../tests/data/pyarrow-snappy.parquet");
        let mut c = contract();
        c.unique = names(&["id"]);
        c.sorted_by = sorted_by(&["id"]);
        c.not_null = names(&["id", "day"]);
        c.schema = Some(schema(
            json!({"properties": {"score": {"type": ["number", "null"]}}}),
        ));
        let v = run(&c, Format::Parquet, "", file).unwrap();
        // score "NaN" is a string in row 1.
        assert_eq!(rules(&v), [Rule::Schema, Rule::NotNull], "{v:?}");
        let at: Vec<_> = v.violations.iter().map(|x| (x.rule, x.index)).collect();
        assert_eq!(at, [(Rule::Schema, Some(1)), (Rule::NotNull, Some(1))]);
        assert_eq!(v.violations[0].field.as_deref(), Some("/score"));
        // event_time: RFC 3339 with microseconds; row 1's null sorts first,
        // so it is out of order ascending, and row 2 is descending.
        let mut c = contract();
        c.sorted_by = sorted_by(&["event_time"]);
        let v = run(&c, Format::Parquet, "", file).unwrap();
        let at: Vec<_> = v.violations.iter().map(|x| x.index).collect();
        assert_eq!(at, [Some(1)], "{v:?}");
        let mut c = contract();
        c.sorted_by = sorted_by(&["-event_time"]);
        let v = run(&c, Format::Parquet, "", file).unwrap();
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert_eq!(v.violations[0].index, Some(2));
        let mut c = contract();
        c.complete = Some(Complete {
            event_time: "event_time".to_owned(),
            ..complete()
        });
        let q = Some("start=1999-12-31T23:59:00Z&end=2024-05-01T12:00:30Z");
        let r = reconcile(Format::Parquet, "");
        let v = check_answer(&c, &r, None, None, file, q, Some(i64::MAX)).unwrap();
        // Row 1's event time is null; the window is reached.
        assert_eq!(v.counts[Rule::Complete.index()], 1, "{v:?}");
        assert_eq!(v.violations[0].index, Some(1));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(&*percent_decode("a%3Ab%2bc+d"), b"a:b+c+d");
        assert_eq!(&*percent_decode("100%"), b"100%");
        assert_eq!(&*percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(
            time_param("x=1&st%61rt=1700000000", "start"),
            Some(1_700_000_000_000)
        );
        assert_eq!(time_param("start", "start"), None);
    }

    /// Records `(id, ts)` as NDJSON, sorted by `ts` (ms, as RFC 3339 or
    /// Unix ms alternately) and unique by `id`.
    fn page(rows: &[(u32, i64)]) -> Vec<u8> {
        let mut out = String::new();
        for (i, (id, ts)) in rows.iter().enumerate() {
            let ts = if i % 2 == 0 {
                json!(rfc3339(*ts))
            } else {
                json!(ts)
            };
            out.push_str(&format!("{}\n", json!({"id": id, "ts": ts})));
        }
        out.into_bytes()
    }

    fn sorted_unique_rows() -> impl Strategy<Value = Vec<(u32, i64)>> {
        proptest::collection::btree_map(
            any::<u32>(),
            1_000_000_000_000i64..2_000_000_000_000,
            0..40,
        )
        .prop_map(|m| {
            let mut times: Vec<i64> = m.values().copied().collect();
            times.sort_unstable();
            m.keys().copied().zip(times).collect()
        })
    }

    fn keeps_order() -> Contract {
        let mut c = contract();
        c.unique = names(&["id"]);
        c.not_null = names(&["id", "ts"]);
        c.sorted_by = sorted_by(&["ts"]);
        c
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn a_sorted_unique_page_always_passes(rows in sorted_unique_rows()) {
            let v = run(&keeps_order(), Format::Ndjson, "", &page(&rows)).unwrap();
            prop_assert!(v.passed(), "{:?}", v);
        }

        #[test]
        fn swapping_two_distinct_neighbours_breaks_sorted(
            rows in sorted_unique_rows(),
            at in any::<prop::sample::Index>(),
        ) {
            prop_assume!(rows.len() >= 2);
            let i = at.index(rows.len() - 1);
            prop_assume!(rows[i].1 != rows[i + 1].1);
            let mut rows = rows;
            let (a, b) = (rows[i].1, rows[i + 1].1);
            rows[i].1 = b;
            rows[i + 1].1 = a;
            let v = run(&keeps_order(), Format::Ndjson, "", &page(&rows)).unwrap();
            prop_assert_eq!(rules(&v), [Rule::Sorted]);
            prop_assert_eq!(v.violations[0].index, Some(i + 1));
        }
    }
}
