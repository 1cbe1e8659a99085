//! The answer formats reconciliation reads (`reconcile.format`), how one is
//! recognised (by `Content-Type`, or a file's extension for `cutover diff`),
//! and CSV, TSV and Parquet answers turned into NDJSON records, so that
//! every format is compared by the same record comparator.

use std::fmt;
use std::path::Path;

pub use crate::config::Format;

impl Format {
    /// The format an answer's `Content-Type` names, parameters and case
    /// ignored; None for any other type (then `auto` tries JSON, then bytes).
    ///
    /// - JSON: `application/json`, `text/json`, and any `+json` suffix
    ///   (`application/problem+json`, `application/vnd.api+json`...), except
    ///   `application/stream+json`.
    /// - NDJSON: `application/x-ndjson`, `application/ndjson`,
    ///   `application/jsonl`, `application/x-jsonl`, `application/jsonlines`,
    ///   `application/x-jsonlines`, `text/x-ndjson`, `text/ndjson`,
    ///   `text/jsonl`, and `application/stream+json` (what Spring WebFlux
    ///   served NDJSON as before `application/x-ndjson`). Not
    ///   `application/json-seq` (RFC 7464): its records start with an RS
    ///   byte, which an NDJSON reader would take as part of the record.
    /// - CSV: `text/csv`, `application/csv`. TSV: `text/tab-separated-values`,
    ///   `text/tsv`.
    /// - Parquet: `application/vnd.apache.parquet` (the registered type),
    ///   `application/x-parquet`, `application/parquet`.
    pub fn from_content_type(ct: &[u8]) -> Option<Format> {
        let essence = ct.split(|b| *b == b';').next().unwrap_or_default();
        let essence = std::str::from_utf8(essence).ok()?.trim();
        // Lowercased on the stack when it fits (every type named here does):
        // this runs on every answer a route may compare or check. A longer
        // one (a vendor `...+json`) is lowercased on the heap, as before.
        let mut stack = [0u8; 96];
        let heap;
        let essence = match stack.get_mut(..essence.len()) {
            Some(lower) => {
                lower.copy_from_slice(essence.as_bytes());
                lower.make_ascii_lowercase();
                std::str::from_utf8(lower).ok()?
            }
            None => {
                heap = essence.to_ascii_lowercase();
                heap.as_str()
            }
        };
        let format = match essence {
            "application/json" | "text/json" => Format::Json,
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonl"
            | "application/jsonlines"
            | "application/x-jsonlines"
            | "application/stream+json"
            | "text/x-ndjson"
            | "text/ndjson"
            | "text/jsonl" => Format::Ndjson,
            "text/csv" | "application/csv" => Format::Csv,
            "text/tab-separated-values" | "text/tsv" => Format::Tsv,
            "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet" => {
                Format::Parquet
            }
            other if other.ends_with("+json") && other.contains('/') => Format::Json,
            _ => return None,
        };
        Some(format)
    }

    /// The format a file's name says, for `cutover diff`: `.json`,
    /// `.ndjson`/`.jsonl`, `.csv`, `.tsv`, `.parquet` (case ignored), after
    /// a trailing `.gz`, `.br`, `.zst` or `.deflate` is taken off; that
    /// suffix is returned as the content-coding to undo (`gzip`, `br`,
    /// `zstd`, `deflate`: the names [`super::decode::decode`] reads).
    pub fn from_path(path: &Path) -> (Option<Format>, Option<&'static str>) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return (None, None);
        };
        let lower = name.to_ascii_lowercase();
        let (stem, encoding) = match lower.rsplit_once('.') {
            Some((stem, "gz")) => (stem, Some("gzip")),
            Some((stem, "br")) => (stem, Some("br")),
            Some((stem, "zst")) => (stem, Some("zstd")),
            Some((stem, "deflate")) => (stem, Some("deflate")),
            _ => (lower.as_str(), None),
        };
        let format = match stem.rsplit_once('.').map(|(_, ext)| ext) {
            Some("json") => Some(Format::Json),
            Some("ndjson" | "jsonl") => Some(Format::Ndjson),
            Some("csv") => Some(Format::Csv),
            Some("tsv") => Some(Format::Tsv),
            Some("parquet") => Some(Format::Parquet),
            _ => None,
        };
        (format, encoding)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an answer could not be read as records of its format; the
/// comparison skips it with reason `format`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    /// A CSV or TSV answer that does not parse, or would be misread: a row
    /// with another number of fields than the header, a repeated header
    /// name, bytes that are not UTF-8. `line` counts from 1.
    #[error("not {format}: line {line}: {why}")]
    NotCsv {
        format: Format,
        line: u64,
        why: String,
    },
    /// Not a Parquet file, or one this reader cannot read.
    #[error("not Parquet: {0}")]
    NotParquet(String),
    /// The records would pass `limit` bytes as NDJSON.
    #[error("records pass {limit} bytes as NDJSON")]
    TooLarge { limit: usize },
    /// `to_ndjson` reads CSV, TSV and Parquet only.
    #[error("{0} is not read as rows")]
    NotRows(Format),
}

/// CSV, TSV or Parquet records as NDJSON text: one JSON object per line, in
/// the order of the input, fields named by the header row (CSV/TSV) or the
/// schema (Parquet). Output past `limit` bytes is [`FormatError::TooLarge`].
///
/// CSV/TSV cells are typed so that no value changes meaning: an empty cell
/// is null, a cell that is exactly a JSON number (JSON's own grammar, so
/// `007`, `+1`, `1.`, `.5`, `0x10`, ` 1` stay strings) is that number, and
/// every other cell is a string (`true` and `NaN` too). See
/// [`parquet_to_ndjson`] for Parquet's values.
pub fn to_ndjson(format: Format, body: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
    match format {
        Format::Csv => csv_to_ndjson(format, b',', body, limit),
        Format::Tsv => csv_to_ndjson(format, b'\t', body, limit),
        Format::Parquet => parquet_to_ndjson(body, limit),
        other => Err(FormatError::NotRows(other)),
    }
}

// ---------------------------------------------------------------------
// CSV and TSV

/// TSV is read as CSV with a tab: quotes are honoured, as pandas and
/// Python's `csv` write them when a field holds a tab or newline. Blank
/// lines are skipped (so a trailing one is fine; a one-column file cannot
/// carry an empty row).
fn csv_to_ndjson(
    format: Format,
    delimiter: u8,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, FormatError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let not_csv = |e: csv::Error| FormatError::NotCsv {
        format,
        line: e.position().map(|p| p.line()).unwrap_or(1),
        why: match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields where the header has {expected_len}"),
            _ => e.to_string(),
        },
    };
    let header = reader.headers().map_err(not_csv)?.clone();
    let mut seen = std::collections::HashSet::new();
    for name in header.iter() {
        if !seen.insert(name) {
            return Err(FormatError::NotCsv {
                format,
                line: 1,
                why: format!("the header names `{name}` twice"),
            });
        }
    }
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(not_csv)? {
        out.push(b'{');
        for (i, (name, cell)) in header.iter().zip(record.iter()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(&mut out, name);
            out.push(b':');
            write_cell(&mut out, cell);
        }
        out.extend_from_slice(b"}\n");
        if out.len() > limit {
            return Err(FormatError::TooLarge { limit });
        }
    }
    Ok(out)
}

/// One CSV cell as a JSON value: null, a number, or a string.
fn write_cell(out: &mut Vec<u8>, cell: &str) {
    if cell.is_empty() {
        out.extend_from_slice(b"null");
    } else if is_json_number(cell) {
        out.extend_from_slice(cell.as_bytes());
    } else {
        write_str(out, cell);
    }
}

/// Whether `s` is a number in JSON's grammar (RFC 8259 section 6):
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, and one that a
/// JSON reader takes as a finite number (`1e999` overflows: a string).
fn is_json_number(s: &str) -> bool {
    fn digits(b: &[u8], mut i: usize) -> usize {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    }
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i + 1),
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(b, i + 1);
        if end == i + 1 {
            return false;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(b, i);
        if end == i {
            return false;
        }
        i = end;
    }
    if i != b.len() {
        return false;
    }
    // A JSON reader takes an integer past u64 as a float too (serde_json
    // does), so every shape must be a finite double.
    s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// A JSON string, escaped as RFC 8259 requires.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in s.as_bytes().iter().enumerate() {
        let escape: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(s.as_bytes().get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(s.as_bytes().get(start..).unwrap_or_default());
    out.push(b'"');
}

// ---------------------------------------------------------------------
// Parquet

use parquet::basic::{LogicalType, TimeUnit};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use parquet::schema::types::Type;

/// Parquet rows as NDJSON, read from the body in memory.
///
/// Values, chosen so that a streaming side's JSON of the same data compares
/// equal and nothing is silently changed:
/// - integers (signed, unsigned, any width) and floats: JSON numbers
///   (floats in their shortest round-trip form; float32 as its own shortest
///   form, so `0.1f32` is `0.1`); NaN and infinities, which JSON lacks:
///   the strings `"NaN"`, `"inf"`, `"-inf"`;
/// - strings, enums and JSON-typed byte arrays: strings; bool: bool;
///   null: null;
/// - timestamps (millis, micros, nanos, and Spark's INT96 as the reader's
///   millis): RFC 3339 UTC strings with the unit's digits
///   (`2024-05-01T12:00:00.123456Z`), also for timestamps not adjusted to
///   UTC (their wall time, written with `Z`), so `event_time` parses; a
///   year outside 0000..9999 stays the integer it is stored as;
/// - dates: `"YYYY-MM-DD"`; times of day: `"HH:MM:SS"` with the unit's
///   digits;
/// - decimals: the exact decimal text (`12.30`), as a JSON number when the
///   column's precision is at most 15 digits (every such value reads back
///   exactly as a double), else as a string, so that a column is one JSON
///   type in every row;
/// - other byte arrays: lowercase hex (lossless, no extra crate), UUIDs in
///   their 8-4-4-4-12 form;
/// - groups: objects; lists: arrays; maps: objects keyed by the key's text
///   (a string key as is, any other key as its JSON text).
///
/// The parquet crate can panic on some corrupt files (and on logical types
/// its record reader does not implement), so the read runs under
/// `catch_unwind` and a panic is a [`FormatError::NotParquet`]; this relies
/// on the profile's default `panic = "unwind"`. A file whose metadata says
/// its uncompressed data passes `limit` is refused before any page is read.
pub fn parquet_to_ndjson(body: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
    let bytes = bytes::Bytes::copy_from_slice(body);
    match std::panic::catch_unwind(move || read_parquet(bytes, limit)) {
        Ok(result) => result,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the reader failed".to_string());
            Err(FormatError::NotParquet(why))
        }
    }
}

fn read_parquet(bytes: bytes::Bytes, limit: usize) -> Result<Vec<u8>, FormatError> {
    let not_parquet = |e: parquet::errors::ParquetError| FormatError::NotParquet(e.to_string());
    let reader = SerializedFileReader::new(bytes).map_err(not_parquet)?;
    let metadata = reader.metadata();
    let uncompressed: i64 = metadata
        .row_groups()
        .iter()
        .map(|rg| rg.total_byte_size().max(0))
        .fold(0, i64::saturating_add);
    if usize::try_from(uncompressed).map_or(true, |n| n > limit) {
        return Err(FormatError::TooLarge { limit });
    }
    let schema = metadata.file_metadata().schema();
    check_names(schema)?;
    let mut out = Vec::new();
    for row in reader.get_row_iter(None).map_err(not_parquet)? {
        let row = row.map_err(not_parquet)?;
        write_row(&mut out, &row, Some(schema));
        out.push(b'\n');
        if out.len() > limit {
            return Err(FormatError::TooLarge { limit });
        }
    }
    Ok(out)
}

/// A group's fields; none for a primitive (`Type::get_fields` panics there).
fn fields(t: &Type) -> &[parquet::schema::types::TypePtr] {
    if t.is_group() { t.get_fields() } else { &[] }
}

/// No group names a field twice: as a JSON object, one would hide the other.
fn check_names(t: &Type) -> Result<(), FormatError> {
    {
        let mut seen = std::collections::HashSet::new();
        for f in fields(t) {
            if !seen.insert(f.name()) {
                return Err(FormatError::NotParquet(format!(
                    "`{}` names the field `{}` twice",
                    t.name(),
                    f.name()
                )));
            }
            check_names(f)?;
        }
    }
    Ok(())
}

/// A row or group as an object. `schema` is its group type when known: the
/// record reader's fields come in the schema's order, and a field's logical
/// type (a nanosecond timestamp, a UUID) is only there.
fn write_row(out: &mut Vec<u8>, row: &Row, schema: Option<&Type>) {
    let types = schema.map(fields);
    out.push(b'{');
    for (i, (name, field)) in row.get_column_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        let t = types
            .and_then(|ts| ts.get(i))
            .map(|t| t.as_ref())
            .filter(|t| t.name() == name);
        write_field(out, field, t);
    }
    out.push(b'}');
}

fn write_field(out: &mut Vec<u8>, field: &Field, t: Option<&Type>) {
    let logical = t.and_then(|t| t.get_basic_info().logical_type_ref());
    match field {
        Field::Null => out.extend_from_slice(b"null"),
        Field::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Field::Byte(n) => write_display(out, n),
        Field::Short(n) => write_display(out, n),
        Field::Int(n) => write_int(out, i64::from(*n), logical),
        Field::Long(n) => write_int(out, *n, logical),
        Field::UByte(n) => write_display(out, n),
        Field::UShort(n) => write_display(out, n),
        Field::UInt(n) => write_display(out, n),
        Field::ULong(n) => write_display(out, n),
        Field::Float16(x) => write_f32(out, f32::from(*x)),
        Field::Float(x) => write_f32(out, *x),
        Field::Double(x) => write_f64(out, *x),
        Field::Decimal(d) => write_decimal(out, d.data(), d.precision(), d.scale()),
        Field::Str(s) => write_str(out, s),
        Field::Bytes(b) => write_bytes(out, b.data(), logical),
        Field::Date(days) => match date(*days) {
            Some(s) => write_str(out, &s),
            None => write_display(out, days),
        },
        Field::TimeMillis(ms) => write_time_of_day(out, i64::from(*ms), TimeUnit::MILLIS),
        Field::TimeMicros(us) => write_time_of_day(out, *us, TimeUnit::MICROS),
        Field::TimestampMillis(ms) => write_timestamp(out, *ms, TimeUnit::MILLIS),
        Field::TimestampMicros(us) => write_timestamp(out, *us, TimeUnit::MICROS),
        Field::Group(row) => write_row(out, row, t),
        Field::ListInternal(list) => {
            let element = t.and_then(list_element);
            out.push(b'[');
            for (i, e) in list.elements().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_field(out, e, element);
            }
            out.push(b']');
        }
        Field::MapInternal(map) => {
            let (key_type, value_type) = t.and_then(map_key_value).unzip();
            out.push(b'{');
            for (i, (k, v)) in map.entries().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    Field::Str(s) => write_str(out, s),
                    other => {
                        let mut text = Vec::new();
                        write_field(&mut text, other, key_type);
                        write_str(out, &String::from_utf8_lossy(&text));
                    }
                }
                out.push(b':');
                write_field(out, v, value_type);
            }
            out.push(b'}');
        }
    }
}

fn write_display(out: &mut Vec<u8>, v: impl fmt::Display) {
    out.extend_from_slice(v.to_string().as_bytes());
}

/// An INT32 or INT64 the record reader left as a plain integer: a
/// nanosecond timestamp or time (no converted type exists for them, so
/// only the logical type says so), else the number.
fn write_int(out: &mut Vec<u8>, n: i64, logical: Option<&LogicalType>) {
    match logical {
        Some(LogicalType::Timestamp(t)) => write_timestamp(out, n, t.unit),
        Some(LogicalType::Time(t)) => write_time_of_day(out, n, t.unit),
        Some(LogicalType::Date) => match i32::try_from(n).ok().and_then(date) {
            Some(s) => write_str(out, &s),
            None => write_display(out, n),
        },
        _ => write_display(out, n),
    }
}

fn write_f64(out: &mut Vec<u8>, x: f64) {
    match serde_json::Number::from_f64(x) {
        Some(n) => write_display(out, n),
        None => write_str(
            out,
            if x.is_nan() {
                "NaN"
            } else if x > 0.0 {
                "inf"
            } else {
                "-inf"
            },
        ),
    }
}

/// A float32 by its own shortest form: widened to f64 first, `0.1f32`
/// would print as 0.10000000149011612.
fn write_f32(out: &mut Vec<u8>, x: f32) {
    let widened = x.to_string().parse::<f64>().unwrap_or(f64::from(x));
    write_f64(out, widened);
}

/// Units per second, and the digits of a fraction, per time unit.
fn unit_scale(unit: TimeUnit) -> (i64, usize) {
    match unit {
        TimeUnit::MILLIS => (1_000, 3),
        TimeUnit::MICROS => (1_000_000, 6),
        _ => (1_000_000_000, 9),
    }
}

fn write_timestamp(out: &mut Vec<u8>, n: i64, unit: TimeUnit) {
    let (per_second, digits) = unit_scale(unit);
    let nanos = i128::from(n) * i128::from(1_000_000_000 / per_second);
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) if (0..=9999).contains(&t.year()) => {
            let fraction = t.nanosecond() / 10u32.pow(9 - digits as u32);
            let s = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:0digits$}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                fraction,
            );
            write_str(out, &s);
        }
        _ => write_display(out, n),
    }
}

fn write_time_of_day(out: &mut Vec<u8>, n: i64, unit: TimeUnit) {
    let (per_second, digits) = unit_scale(unit);
    let (seconds, fraction) = (n.div_euclid(per_second), n.rem_euclid(per_second));
    if !(0..86_400).contains(&seconds) {
        return write_display(out, n);
    }
    let s = format!(
        "{:02}:{:02}:{:02}.{:0digits$}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        fraction
    );
    write_str(out, &s);
}

/// Days since 1970-01-01 as `YYYY-MM-DD`, None outside years 0000..9999.
fn date(days: i32) -> Option<String> {
    // 2440588 is the Julian day number of 1970-01-01.
    let d = time::Date::from_julian_day(2_440_588i32.checked_add(days)?).ok()?;
    (0..=9999)
        .contains(&d.year())
        .then(|| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
}

/// Precision up to which every decimal is read back exactly as a double
/// (DBL_DIG): such columns are JSON numbers, wider ones strings.
const DECIMAL_AS_NUMBER_DIGITS: i32 = 15;

/// A decimal from its unscaled big-endian two's-complement bytes.
fn write_decimal(out: &mut Vec<u8>, unscaled: &[u8], precision: i32, scale: i32) {
    let (negative, mut digits) = big_endian_to_decimal(unscaled);
    let scale = usize::try_from(scale).unwrap_or(0);
    if digits.len() <= scale {
        let pad = scale + 1 - digits.len();
        digits.insert_str(0, &"0".repeat(pad));
    }
    let point = digits.len() - scale;
    let mut text = String::with_capacity(digits.len() + 2);
    if negative {
        text.push('-');
    }
    text.push_str(digits.get(..point).unwrap_or("0"));
    if scale > 0 {
        text.push('.');
        text.push_str(digits.get(point..).unwrap_or_default());
    }
    if precision <= DECIMAL_AS_NUMBER_DIGITS {
        out.extend_from_slice(text.as_bytes());
    } else {
        write_str(out, &text);
    }
}

/// A signed big-endian integer of any width as (negative, decimal digits
/// of its magnitude): Parquet's BYTE_ARRAY decimals have no width bound.
fn big_endian_to_decimal(bytes: &[u8]) -> (bool, String) {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = bytes.to_vec();
    if negative {
        // Two's complement: invert and add one.
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    let mut digits = Vec::new();
    while magnitude.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in magnitude.iter_mut() {
            let cur = rem << 8 | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    (negative, String::from_utf8_lossy(&digits).into_owned())
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8], logical: Option<&LogicalType>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let uuid = matches!(logical, Some(LogicalType::Uuid)) && b.len() == 16;
    out.push(b'"');
    for (i, byte) in b.iter().enumerate() {
        if uuid && matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 0x0f)]);
    }
    out.push(b'"');
}

/// A list's element type: the LIST-annotated group's repeated child, or that
/// child's one field (the three-level form writers use today); a bare
/// repeated field is its own element.
fn list_element(t: &Type) -> Option<&Type> {
    if !t.is_group()
        || !matches!(
            t.get_basic_info().logical_type_ref(),
            Some(LogicalType::List)
        )
    {
        return Some(t);
    }
    let repeated = fields(t).first()?;
    match fields(repeated) {
        [one] => Some(one.as_ref()),
        _ => Some(repeated.as_ref()),
    }
}

/// A MAP group's key and value types, through its repeated `key_value`.
fn map_key_value(t: &Type) -> Option<(&Type, &Type)> {
    let kv = fields(t).first()?;
    match fields(kv) {
        [k, v] => Some((k.as_ref(), v.as_ref())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn csv(body: &str) -> Vec<String> {
        lines(&to_ndjson(Format::Csv, body.as_bytes(), 1 << 20).unwrap())
    }

    #[test]
    fn config_words_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("CSV"), None);
        assert_eq!(Format::parse("xml"), None);
        assert_eq!(Format::default(), Format::Auto);
    }

    #[test]
    fn content_types() {
        for (ct, want) in [
            ("application/json", Some(Format::Json)),
            ("Application/JSON; charset=utf-8", Some(Format::Json)),
            ("application/problem+json", Some(Format::Json)),
            ("application/vnd.api+json;v=2", Some(Format::Json)),
            ("text/json", Some(Format::Json)),
            ("application/x-ndjson", Some(Format::Ndjson)),
            ("application/ndjson", Some(Format::Ndjson)),
            ("application/jsonl", Some(Format::Ndjson)),
            ("application/x-jsonlines", Some(Format::Ndjson)),
            ("application/stream+json", Some(Format::Ndjson)),
            ("text/x-ndjson", Some(Format::Ndjson)),
            ("text/csv; header=present", Some(Format::Csv)),
            ("text/tab-separated-values", Some(Format::Tsv)),
            ("application/vnd.apache.parquet", Some(Format::Parquet)),
            ("application/x-parquet", Some(Format::Parquet)),
            ("application/json-seq", None),
            ("text/plain", None),
            ("application/octet-stream", None),
            ("+json", None),
            ("", None),
        ] {
            assert_eq!(Format::from_content_type(ct.as_bytes()), want, "{ct}");
        }
        assert_eq!(Format::from_content_type(b"\xff/json"), None);
        let long = format!("Application/Vnd.{}+JSON; charset=utf-8", "x".repeat(120));
        assert_eq!(
            Format::from_content_type(long.as_bytes()),
            Some(Format::Json)
        );
    }

    #[test]
    fn file_names() {
        for (name, format, encoding) in [
            ("a.json", Some(Format::Json), None),
            ("dir/a.NDJSON", Some(Format::Ndjson), None),
            ("a.jsonl.gz", Some(Format::Ndjson), Some("gzip")),
            ("a.csv.br", Some(Format::Csv), Some("br")),
            ("a.tsv.zst", Some(Format::Tsv), Some("zstd")),
            ("a.parquet", Some(Format::Parquet), None),
            ("a.json.deflate", Some(Format::Json), Some("deflate")),
            ("a.gz", None, Some("gzip")),
            ("a.txt", None, None),
            ("json", None, None),
        ] {
            assert_eq!(
                Format::from_path(Path::new(name)),
                (format, encoding),
                "{name}"
            );
        }
    }

    #[test]
    fn csv_fields_quoted_with_commas_quotes_and_newlines() {
        let body = "id,note\n1,\"a, b\"\n2,\"say \"\"hi\"\"\"\n3,\"two\nlines\"\n";
        assert_eq!(
            csv(body),
            [
                r#"{"id":1,"note":"a, b"}"#,
                r#"{"id":2,"note":"say \"hi\""}"#,
                r#"{"id":3,"note":"two\nlines"}"#,
            ]
        );
    }

    #[test]
    fn csv_bom_crlf_and_trailing_blank_line() {
        let body = "\u{feff}id,name\r\n1,a\r\n2,b\r\n\r\n";
        assert_eq!(
            csv(body),
            [r#"{"id":1,"name":"a"}"#, r#"{"id":2,"name":"b"}"#]
        );
        // Header only, and an empty body: no records.
        assert!(csv("id,name\n").is_empty());
        assert!(csv("").is_empty());
    }

    #[test]
    fn tsv_is_tab_separated() {
        let out = to_ndjson(Format::Tsv, b"id\tname\n1\ta,b\n2\t\"x\ty\"\n", 1 << 20).unwrap();
        assert_eq!(
            lines(&out),
            [r#"{"id":1,"name":"a,b"}"#, r#"{"id":2,"name":"x\ty"}"#]
        );
    }

    /// The typing table: only JSON's own number grammar is a number.
    #[test]
    fn csv_cells_are_typed_without_guessing() {
        let cells = [
            ("", "null"),
            ("0", "0"),
            ("-0", "-0"),
            ("42", "42"),
            ("-1.5", "-1.5"),
            ("1e3", "1e3"),
            ("2.5E-7", "2.5E-7"),
            ("12345678901234567890123", "12345678901234567890123"),
            ("007", r#""007""#),
            ("+1", r#""+1""#),
            ("1.", r#""1.""#),
            (".5", r#"".5""#),
            ("0x10", r#""0x10""#),
            (" 1", r#"" 1""#),
            ("1 ", r#""1 ""#),
            ("1e", r#""1e""#),
            ("1e999", r#""1e999""#),
            ("-", r#""-""#),
            ("NaN", r#""NaN""#),
            ("inf", r#""inf""#),
            ("true", r#""true""#),
            ("null", r#""null""#),
            ("1,000", r#""1,000""#),
            ("tab\there", r#""tab\there""#),
            ("bell\u{7}", r#""bell\u0007""#),
            ("back\\slash", r#""back\\slash""#),
        ];
        for (cell, want) in cells {
            let quoted = format!("\"{}\"", cell.replace('"', "\"\""));
            let got = csv(&format!("v\n{quoted}\n"));
            assert_eq!(got, [format!("{{\"v\":{want}}}")], "cell {cell:?}");
            // Every line is JSON that a reader accepts.
            let _: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
        }
    }

    #[test]
    fn csv_rows_never_misalign() {
        let err = to_ndjson(Format::Csv, b"a,b\n1,2\n3\n", 1 << 20).unwrap_err();
        assert_eq!(
            err,
            FormatError::NotCsv {
                format: Format::Csv,
                line: 3,
                why: "1 fields where the header has 2".into()
            }
        );
        assert!(to_ndjson(Format::Csv, b"a,b\n1,2,3\n", 1 << 20).is_err());
        assert!(matches!(
            to_ndjson(Format::Csv, b"a,a\n1,2\n", 1 << 20),
            Err(FormatError::NotCsv { line: 1, .. })
        ));
        assert!(matches!(
            to_ndjson(Format::Tsv, b"a\n\xff\n", 1 << 20),
            Err(FormatError::NotCsv {
                format: Format::Tsv,
                ..
            })
        ));
    }

    #[test]
    fn output_past_the_limit_is_refused() {
        let body = "v\n".to_string() + &"x\n".repeat(1000);
        assert_eq!(
            to_ndjson(Format::Csv, body.as_bytes(), 100),
            Err(FormatError::TooLarge { limit: 100 })
        );
        assert_eq!(
            to_ndjson(Format::Json, b"{}", 100),
            Err(FormatError::NotRows(Format::Json))
        );
    }

    // -----------------------------------------------------------------
    // Parquet

    use parquet::basic::{Compression, ZstdLevel};
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    const SCHEMA: &str = "
        message rows {
          required int64 id;
          optional binary name (UTF8);
          optional double score;
          optional int64 ns (TIMESTAMP(NANOS,true));
          optional int64 amount (DECIMAL(18,3));
          optional group tags (LIST) { repeated group list { optional binary element (UTF8); } }
        }";

    struct Fixture {
        id: i64,
        name: Option<&'static str>,
        score: Option<f64>,
        ns: Option<i64>,
        amount: Option<i64>,
        tags: Option<&'static [&'static str]>,
    }

    const ROWS: [Fixture; 4] = [
        Fixture {
            id: 1,
            name: Some("a"),
            score: Some(1.5),
            ns: Some(1_714_564_800_123_456_789),
            amount: Some(12_345),
            tags: Some(&["x", "y"]),
        },
        Fixture {
            id: 2,
            name: None,
            score: Some(f64::INFINITY),
            ns: None,
            amount: Some(-5),
            tags: Some(&[]),
        },
        Fixture {
            id: 3,
            name: Some("c,d\n"),
            score: None,
            ns: Some(0),
            amount: None,
            tags: None,
        },
        Fixture {
            id: 4,
            name: Some(""),
            score: Some(2.0),
            ns: None,
            amount: Some(0),
            tags: Some(&["z"]),
        },
    ];

    const WANT: [&str; 4] = [
        r#"{"id":1,"name":"a","score":1.5,"ns":"2024-05-01T12:00:00.123456789Z","amount":"12.345","tags":["x","y"]}"#,
        r#"{"id":2,"name":null,"score":"inf","ns":null,"amount":"-0.005","tags":[]}"#,
        r#"{"id":3,"name":"c,d\n","score":null,"ns":"1970-01-01T00:00:00.000000000Z","amount":null,"tags":null}"#,
        r#"{"id":4,"name":"","score":2.0,"ns":null,"amount":"0.000","tags":["z"]}"#,
    ];

    /// Values and definition levels of an optional column.
    fn optional<T: Clone>(
        rows: &[Fixture],
        get: impl Fn(&Fixture) -> Option<T>,
    ) -> (Vec<T>, Vec<i16>) {
        let values = rows.iter().filter_map(&get).collect();
        let defs = rows.iter().map(|r| i16::from(get(r).is_some())).collect();
        (values, defs)
    }

    /// `ROWS` as a Parquet file, in row groups of the given sizes.
    fn parquet_file(groups: &[usize], compression: Compression) -> Vec<u8> {
        let schema = Arc::new(parse_message_type(SCHEMA).unwrap());
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(compression)
                .build(),
        );
        let mut writer = SerializedFileWriter::new(Vec::new(), schema, props).unwrap();
        let mut start = 0;
        for size in groups {
            let rows = &ROWS[start..start + size];
            start += size;
            let mut group = writer.next_row_group().unwrap();
            let mut i = 0;
            while let Some(mut column) = group.next_column().unwrap() {
                match i {
                    0 => {
                        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                        column
                            .typed::<Int64Type>()
                            .write_batch(&ids, None, None)
                            .unwrap();
                    }
                    1 => {
                        let (v, d) = optional(rows, |r| r.name.map(ByteArray::from));
                        column
                            .typed::<ByteArrayType>()
                            .write_batch(&v, Some(&d), None)
                            .unwrap();
                    }
                    2 => {
                        let (v, d) = optional(rows, |r| r.score);
                        column
                            .typed::<DoubleType>()
                            .write_batch(&v, Some(&d), None)
                            .unwrap();
                    }
                    3 | 4 => {
                        let (v, d) = optional(rows, |r| if i == 3 { r.ns } else { r.amount });
                        column
                            .typed::<Int64Type>()
                            .write_batch(&v, Some(&d), None)
                            .unwrap();
                    }
                    _ => {
                        // tags: null list 0, empty list 1, element 3 (never null here).
                        let (mut v, mut d, mut r) = (Vec::new(), Vec::new(), Vec::new());
                        for row in rows {
                            match row.tags {
                                None => (d.push(0), r.push(0)),
                                Some([]) => (d.push(1), r.push(0)),
                                Some(tags) => {
                                    for (j, t) in tags.iter().enumerate() {
                                        v.push(ByteArray::from(*t));
                                        d.push(3);
                                        r.push(i16::from(j > 0));
                                    }
                                    ((), ())
                                }
                            };
                        }
                        column
                            .typed::<ByteArrayType>()
                            .write_batch(&v, Some(&d), Some(&r))
                            .unwrap();
                    }
                }
                column.close().unwrap();
                i += 1;
            }
            group.close().unwrap();
        }
        writer.into_inner().unwrap()
    }

    #[test]
    fn parquet_rows_in_order_whatever_the_layout_and_codec() {
        for groups in [&[4][..], &[1, 3], &[2, 1, 1]] {
            for compression in [
                Compression::UNCOMPRESSED,
                Compression::SNAPPY,
                Compression::ZSTD(ZstdLevel::default()),
                Compression::LZ4_RAW,
                Compression::GZIP(Default::default()),
            ] {
                let file = parquet_file(groups, compression);
                let out = parquet_to_ndjson(&file, 1 << 20)
                    .unwrap_or_else(|e| panic!("{groups:?} {compression:?}: {e}"));
                assert_eq!(lines(&out), WANT, "{groups:?} {compression:?}");
                assert_eq!(to_ndjson(Format::Parquet, &file, 1 << 20).unwrap(), out);
            }
        }
    }

    #[test]
    fn parquet_output_past_the_limit_is_refused() {
        let file = parquet_file(&[4], Compression::SNAPPY);
        assert_eq!(
            parquet_to_ndjson(&file, 200),
            Err(FormatError::TooLarge { limit: 200 })
        );
        // Under the metadata's uncompressed size: refused before reading.
        assert_eq!(
            parquet_to_ndjson(&file, 10),
            Err(FormatError::TooLarge { limit: 10 })
        );
    }

    #[test]
    fn not_parquet_is_an_error_never_a_panic() {
        let file = parquet_file(&[1, 3], Compression::SNAPPY);
        for body in [
            &b""[..],
            b"PAR1",
            b"not parquet at all",
            b"PAR1\x00\x00\x00\x00PAR1",
            &file[..file.len() / 2],
            &file[..file.len() - 1],
        ] {
            assert!(
                matches!(
                    parquet_to_ndjson(body, 1 << 20),
                    Err(FormatError::NotParquet(_))
                ),
                "{} bytes",
                body.len()
            );
        }
        // Every single-byte corruption of a real file: an error or rows,
        // and the process survives it.
        for i in (0..file.len()).step_by(3) {
            let mut bad = file.clone();
            bad[i] ^= 0x5a;
            let _ = parquet_to_ndjson(&bad, 1 << 20);
        }
    }

    /// A file pyarrow 26 wrote (snappy, row groups of 2, no Arrow schema
    /// or statistics, to stay small), made by:
    ///
    /// ```text
    /// import datetime as dt, decimal, pyarrow as pa, pyarrow.parquet as pq
    /// utc = dt.timezone.utc
    /// t = pa.table({
    ///   "id": pa.array([1, 2, 3], pa.int64()),
    ///   "name": pa.array(["a\"b", None, "ü"], pa.string()),
    ///   "score": pa.array([0.5, float("nan"), None], pa.float64()),
    ///   "ratio": pa.array([0.1, None, -2.5], pa.float32()),
    ///   "event_time": pa.array([dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=utc), None,
    ///                           dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=utc)],
    ///                          pa.timestamp("us", tz="UTC")),
    ///   "ns": pa.array([1714564800123456789, None, 0], pa.timestamp("ns", tz="UTC")),
    ///   "day": pa.array([dt.date(2024, 5, 1), None, dt.date(1970, 1, 1)], pa.date32()),
    ///   "amount": pa.array([decimal.Decimal("12.30"), None, decimal.Decimal("-0.05")],
    ///                      pa.decimal128(10, 2)),
    ///   "ok": pa.array([True, None, False], pa.bool_()),
    ///   "tags": pa.array([["x", "y"], None, []], pa.list_(pa.string())),
    ///   "point": pa.array([{"x": 1, "y": 2}, None, {"x": 3, "y": None}],
    ///                     pa.struct([("x", pa.int32()), ("y", pa.int32())])),
    ///   "attrs": pa.array([[("k", 1)], None, []], pa.map_(pa.string(), pa.int64())),
    ///   "blob": pa.array([b"\x00\xff", None, b""], pa.binary()),
    /// })
    /// pq.write_table(t, "tests/data/pyarrow-snappy.parquet", compression="snappy",
    ///                row_group_size=2, store_schema=False, write_statistics=False)
    /// ```
    #[test]
    fn a_pyarrow_file_reads() {
        let file = include_bytes!("../../../tests/data/pyarrow-snappy.parquet");
        let out = parquet_to_ndjson(file, 1 << 20).unwrap();
        assert_eq!(
            lines(&out),
            [
                concat!(
                    r#"{"id":1,"name":"a\"b","score":0.5,"ratio":0.1,"#,
                    r#""event_time":"2024-05-01T12:00:00.123456Z","ns":"2024-05-01T12:00:00.123456789Z","#,
                    r#""day":"2024-05-01","amount":12.30,"ok":true,"tags":["x","y"],"#,
                    r#""point":{"x":1,"y":2},"attrs":{"k":1},"blob":"00ff"}"#
                ),
                concat!(
                    r#"{"id":2,"name":null,"score":"NaN","ratio":null,"event_time":null,"ns":null,"#,
                    r#""day":null,"amount":null,"ok":null,"tags":null,"point":null,"attrs":null,"blob":null}"#
                ),
                concat!(
                    r#"{"id":3,"name":"ü","score":null,"ratio":-2.5,"#,
                    r#""event_time":"1999-12-31T23:59:59.000000Z","ns":"1970-01-01T00:00:00.000000000Z","#,
                    r#""day":"1970-01-01","amount":-0.05,"ok":false,"tags":[],"#,
                    r#""point":{"x":3,"y":null},"attrs":{},"blob":""}"#
                ),
            ]
        );
        // event_time is what freshness reads.
        let first: serde_json::Value = serde_json::from_str(&lines(&out)[0]).unwrap();
        let event_time = first["event_time"].as_str().unwrap();
        assert_eq!(
            crate::decide::freshness::parse_watermark(event_time.as_bytes()),
            Some(1_714_564_800_123)
        );
    }

    #[test]
    fn decimals_of_any_width() {
        assert_eq!(big_endian_to_decimal(&[0x00]), (false, "0".into()));
        assert_eq!(big_endian_to_decimal(&[0xff]), (true, "1".into()));
        assert_eq!(big_endian_to_decimal(&[0x80]), (true, "128".into()));
        assert_eq!(big_endian_to_decimal(&[0x01, 0x00]), (false, "256".into()));
        // 2^127 - 1 and -2^127 (decimal128's extremes), and one byte wider.
        let mut max = vec![0x7f];
        max.extend([0xff; 15]);
        assert_eq!(big_endian_to_decimal(&max).1, i128::MAX.to_string());
        let mut min = vec![0x80];
        min.extend([0x00; 15]);
        assert_eq!(
            big_endian_to_decimal(&min),
            (true, i128::MIN.to_string()[1..].to_string())
        );
        let mut wide = vec![0x01];
        wide.extend([0x00; 16]);
        assert_eq!(
            big_endian_to_decimal(&wide).1,
            "340282366920938463463374607431768211456"
        );

        let text = |unscaled: &[u8], precision, scale| {
            let mut out = Vec::new();
            write_decimal(&mut out, unscaled, precision, scale);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(&[0x04, 0xd2], 10, 2), "12.34");
        assert_eq!(text(&[0xff, 0xfb], 10, 3), "-0.005");
        assert_eq!(text(&[0x07], 5, 0), "7");
        assert_eq!(text(&[0x07], 16, 1), r#""0.7""#);
    }

    #[test]
    fn times_and_floats() {
        let one = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            one(&|o| write_timestamp(o, -1, TimeUnit::MILLIS)),
            r#""1969-12-31T23:59:59.999Z""#
        );
        assert_eq!(
            one(&|o| write_timestamp(o, i64::MAX, TimeUnit::MILLIS)),
            i64::MAX.to_string()
        );
        assert_eq!(
            one(&|o| write_time_of_day(o, 45_296_789, TimeUnit::MILLIS)),
            r#""12:34:56.789""#
        );
        assert_eq!(one(&|o| write_time_of_day(o, -1, TimeUnit::MICROS)), "-1");
        assert_eq!(date(-1).as_deref(), Some("1969-12-31"));
        assert_eq!(date(i32::MAX), None);
        assert_eq!(one(&|o| write_f32(o, 0.1)), "0.1");
        assert_eq!(one(&|o| write_f32(o, f32::NEG_INFINITY)), r#""-inf""#);
        assert_eq!(one(&|o| write_f64(o, 1e300)), "1e+300");
        assert_eq!(
            one(&|o| write_bytes(o, &[0x12; 16], Some(&LogicalType::Uuid))),
            r#""12121212-1212-1212-1212-121212121212""#
        );
    }
}
