//! Validators never cross sides: a conditional read is judged only against
//! validators the side it reaches issued itself.
//!
//! - **ETags**: streaming's are marked on the way to the consumer
//!   (`"abc"` becomes `"abc~streaming"`, `W/` kept); batch's pass as they
//!   are, so batch mode stays byte-for-byte transparent. A conditional read
//!   sent to streaming carries streaming's tags unmarked and none of
//!   batch's; one sent to batch carries batch's tags and none of
//!   streaming's.
//! - **Dates** (`Last-Modified` echoed in `If-Modified-Since`,
//!   `If-Unmodified-Since`, `If-Range`) carry no mark, so each route keeps
//!   the `Last-Modified` values each side served recently (`IssuedDates`):
//!   streaming trusts a date only if it issued it; batch trusts a date
//!   unless streaming issued it and batch did not.
//!
//! A foreign validator is never sent. Where dropping it would turn a
//! precondition into no precondition (`If-Match`, `If-Unmodified-Since`), a
//! stand-in that no representation matches takes its place, so the side
//! answers `412` as it does for any validator it never issued; where
//! dropping it asks for the whole representation (`If-None-Match`,
//! `If-Modified-Since`, `If-Range` with its `Range`), it is dropped.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::SideName;

/// What marks an entity-tag streaming issued, inside its quotes: long and
/// odd enough that a tag batch issued hardly ends with it (if one did, it
/// would be taken for streaming's and dropped: a full answer, never a
/// wrong `304`).
pub const STREAMING_MARK: &[u8] = b"~streaming";

/// Sent in place of an `If-Match` whose every tag was foreign: an
/// entity-tag no side issues, so the precondition fails (`412`) as it would
/// for any tag the side never issued, instead of vanishing.
const NO_TAG: HeaderValue = HeaderValue::from_static("\"cutover-foreign-validator\"");

/// Sent in place of a foreign `If-Unmodified-Since`: every representation
/// was modified since 1970, so the precondition fails (`412`).
const EPOCH: HeaderValue = HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT");

/// The request headers that carry validators.
const CONDITIONAL: [HeaderName; 5] = [
    header::IF_NONE_MATCH,
    header::IF_MATCH,
    header::IF_RANGE,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

/// Slots per side in `IssuedDates`.
const SLOTS: usize = 1024;

/// The `Last-Modified` values (whole seconds) each side served on a route
/// recently: per side a table of `SLOTS` slots, each a date (plus one; 0 is
/// empty) at the slot its hash picks, a newer date taking an older one's
/// slot. 16 KiB per route and side that served a date (allocated at its
/// first: most routes never see one), one atomic load to look up, one load
/// and at most one store to record. A date pushed out is no longer trusted: a full
/// answer, never a wrong `304`. In memory only: after a restart no date is
/// known.
#[derive(Debug, Default)]
pub struct IssuedDates {
    /// Indexed by `SideName::index`; empty until the side serves a date.
    sides: [std::sync::OnceLock<Box<[AtomicU64]>>; 2],
}

impl IssuedDates {
    /// Remembers that `side` served `Last-Modified: secs`.
    pub fn record(&self, side: SideName, secs: u64) {
        let table = self.sides[side.index()]
            .get_or_init(|| (0..SLOTS).map(|_| AtomicU64::new(0)).collect());
        let slot = &table[slot_of(secs)];
        let value = secs.wrapping_add(1);
        // A date served again and again is stored once: no store, no
        // cache line taken from the other cores.
        if slot.load(Ordering::Relaxed) != value {
            slot.store(value, Ordering::Relaxed);
        }
    }

    /// Whether `side` served `Last-Modified: secs` recently.
    pub fn issued(&self, side: SideName, secs: u64) -> bool {
        self.sides[side.index()]
            .get()
            .is_some_and(|t| t[slot_of(secs)].load(Ordering::Relaxed) == secs.wrapping_add(1))
    }

    /// Whether a date may be sent to `side`: see `date_trusted`.
    fn trusted(&self, side: SideName, secs: Option<u64>) -> bool {
        let issued = |s| secs.is_some_and(|secs| self.issued(s, secs));
        date_trusted(side, issued(SideName::Streaming), issued(SideName::Batch))
    }
}

/// The table slot of a date (Fibonacci hashing: dates a second apart land
/// far apart).
fn slot_of(secs: u64) -> usize {
    const BITS: u32 = SLOTS.trailing_zeros();
    (secs.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as usize
}

/// Whether a date validator may be sent to `side`, given which sides were
/// seen issuing it: streaming trusts only its own dates; batch trusts every
/// date but one streaming issued and batch did not (so batch mode, where
/// streaming issues nothing, forwards every date as it is).
pub fn date_trusted(side: SideName, streaming_issued: bool, batch_issued: bool) -> bool {
    match side {
        SideName::Streaming => streaming_issued,
        SideName::Batch => !streaming_issued || batch_issued,
    }
}

/// The request headers as `side` gets them: every foreign validator taken
/// out (see the module doc). Borrowed, with no copy, when the read carries
/// no conditional header or nothing in it changes for this side, so a
/// plain read (and a batch read with batch's own validators) pays a few
/// lookups and nothing else.
pub fn for_side<'a>(h: &'a HeaderMap, side: SideName, dates: &IssuedDates) -> Cow<'a, HeaderMap> {
    if !CONDITIONAL.iter().any(|n| h.contains_key(n)) {
        return Cow::Borrowed(h);
    }
    let edits = edits(h, side, dates);
    if edits.is_empty() {
        return Cow::Borrowed(h);
    }
    let mut owned = h.clone();
    for (name, edit) in edits {
        match edit {
            Some(v) => {
                owned.insert(name, v);
            }
            None => {
                owned.remove(name);
            }
        }
    }
    Cow::Owned(owned)
}

/// The changes `side` needs: a header set to a new value, or removed
/// (`None`). Empty when the headers go as they are.
fn edits(
    h: &HeaderMap,
    side: SideName,
    dates: &IssuedDates,
) -> Vec<(HeaderName, Option<HeaderValue>)> {
    let mut out = Vec::new();
    if let Some(list) = tag_list(h, &header::IF_NONE_MATCH) {
        match own_tags(&list, side) {
            Kept::Same => {}
            Kept::None => out.push((header::IF_NONE_MATCH, None)),
            Kept::Some(v) => out.push((header::IF_NONE_MATCH, Some(v))),
        }
    }
    if let Some(list) = tag_list(h, &header::IF_MATCH) {
        match own_tags(&list, side) {
            Kept::Same => {}
            Kept::None => out.push((header::IF_MATCH, Some(NO_TAG))),
            Kept::Some(v) => out.push((header::IF_MATCH, Some(v))),
        }
    }
    if let Some(v) = h.get(header::IF_RANGE) {
        let b = v.as_bytes().trim_ascii();
        let kept = if b.starts_with(b"\"") || b.starts_with(b"W/") {
            own_tags(&[b], side)
        } else if dates.trusted(side, http_date(v)) {
            Kept::Same
        } else {
            Kept::None
        };
        match kept {
            Kept::Same => {}
            // RFC 9110 13.1.5: a validator that does not match means the
            // whole representation, so the range goes too.
            Kept::None => {
                out.push((header::IF_RANGE, None));
                out.push((header::RANGE, None));
            }
            Kept::Some(v) => out.push((header::IF_RANGE, Some(v))),
        }
    }
    if let Some(v) = h.get(header::IF_MODIFIED_SINCE)
        && !dates.trusted(side, http_date(v))
    {
        out.push((header::IF_MODIFIED_SINCE, None));
    }
    if let Some(v) = h.get(header::IF_UNMODIFIED_SINCE)
        && !dates.trusted(side, http_date(v))
    {
        out.push((header::IF_UNMODIFIED_SINCE, Some(EPOCH)));
    }
    out
}

/// An HTTP-date as Unix seconds (any of the three forms RFC 9110 5.6.7
/// accepts).
fn http_date(v: &HeaderValue) -> Option<u64> {
    let s = v.to_str().ok()?;
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Every entity-tag of a list header, across all its lines; `None` when the
/// header is absent or is `*` (any representation: no side's validator, it
/// goes as it is).
fn tag_list<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<Vec<&'a [u8]>> {
    let mut tags = Vec::new();
    for line in h.get_all(name) {
        let line = line.as_bytes();
        if line.trim_ascii() == b"*" {
            return None;
        }
        split_tags(line, &mut tags);
    }
    (!tags.is_empty() || h.contains_key(name)).then_some(tags)
}

/// Splits an entity-tag list on the commas outside quotes (a `,` may stand
/// inside a tag), trimmed, empty items left out.
fn split_tags<'a>(line: &'a [u8], out: &mut Vec<&'a [u8]>) {
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in line.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&line[start..]);
    out.retain_mut(|t| {
        *t = t.trim_ascii();
        !t.is_empty()
    });
}

/// What is left of a tag list for a side.
#[derive(Debug, PartialEq, Eq)]
enum Kept {
    /// Every tag is the side's and goes as it is.
    Same,
    /// No tag is the side's.
    None,
    /// Some are, as this new value.
    Some(HeaderValue),
}

/// The tags of `list` that `side` issued, as it issued them: to streaming
/// its marked tags unmarked, to batch its unmarked tags.
fn own_tags(list: &[&[u8]], side: SideName) -> Kept {
    let mut kept: Vec<Cow<'_, [u8]>> = Vec::with_capacity(list.len());
    let mut changed = false;
    for tag in list {
        match (side, unmark(tag)) {
            (SideName::Streaming, Some(own)) => {
                kept.push(Cow::Owned(own));
                changed = true;
            }
            (SideName::Batch, None) => kept.push(Cow::Borrowed(tag)),
            _ => changed = true,
        }
    }
    if kept.is_empty() {
        return Kept::None;
    }
    if !changed {
        return Kept::Same;
    }
    let joined = kept.join(&b", "[..]);
    // Made of bytes that were in a header value, and ", ".
    HeaderValue::from_bytes(&joined).map_or(Kept::None, Kept::Some)
}

/// A streaming-marked tag without its mark; `None` for an unmarked one.
fn unmark(tag: &[u8]) -> Option<Vec<u8>> {
    let (weak, opaque) = match tag.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    };
    let mut out = Vec::with_capacity(tag.len());
    if weak {
        out.extend_from_slice(b"W/");
    }
    match opaque
        .strip_prefix(b"\"")
        .and_then(|o| o.strip_suffix(b"\""))
    {
        Some(inner) => {
            out.push(b'"');
            out.extend_from_slice(inner.strip_suffix(STREAMING_MARK)?);
            out.push(b'"');
        }
        // A bare tag (some servers leave out the quotes) is marked bare.
        None => out.extend_from_slice(opaque.strip_suffix(STREAMING_MARK)?),
    }
    Some(out)
}

/// `tag` with streaming's mark: inside the quotes, `W/` kept.
fn mark(tag: &[u8]) -> Option<HeaderValue> {
    let tag = tag.trim_ascii();
    let opaque = tag.strip_prefix(b"W/").unwrap_or(tag);
    let quoted = opaque.len() >= 2 && opaque.starts_with(b"\"") && opaque.ends_with(b"\"");
    let mut out = Vec::with_capacity(tag.len() + STREAMING_MARK.len());
    if quoted {
        out.extend_from_slice(&tag[..tag.len() - 1]);
        out.extend_from_slice(STREAMING_MARK);
        out.push(b'"');
    } else {
        out.extend_from_slice(tag);
        out.extend_from_slice(STREAMING_MARK);
    }
    HeaderValue::from_bytes(&out).ok()
}

/// On an upstream's answer as it goes to the consumer: marks the `ETag` of
/// an answer streaming served, and remembers the `Last-Modified` the side
/// served. Nothing else in the head changes; an answer without either
/// header costs two lookups.
pub fn on_answer(h: &mut HeaderMap, served_by: SideName, dates: &IssuedDates) {
    if served_by == SideName::Streaming
        && let Some(tag) = h.get(header::ETAG)
        && let Some(marked) = mark(tag.as_bytes())
    {
        h.insert(header::ETAG, marked);
    }
    if let Some(secs) = h.get(header::LAST_MODIFIED).and_then(http_date) {
        dates.record(served_by, secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, HeaderValue::from_static(v));
        }
        h
    }

    fn sent(h: &HeaderMap, side: SideName, dates: &IssuedDates, name: HeaderName) -> Vec<String> {
        for_side(h, side, dates)
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ASCII").to_owned())
            .collect()
    }

    use SideName::{Batch, Streaming};

    #[test]
    fn streaming_tags_are_marked_inside_the_quotes() {
        let dates = IssuedDates::default();
        for (from, to) in [
            ("\"abc\"", "\"abc~streaming\""),
            ("W/\"abc\"", "W/\"abc~streaming\""),
            ("\"\"", "\"~streaming\""),
            ("abc", "abc~streaming"),
        ] {
            let mut h = headers(&[(header::ETAG, from)]);
            on_answer(&mut h, Streaming, &dates);
            assert_eq!(h[header::ETAG], to, "{from}");
            assert_eq!(
                unmark(to.as_bytes()).as_deref(),
                Some(from.as_bytes()),
                "{to}"
            );
            let mut h = headers(&[(header::ETAG, from)]);
            on_answer(&mut h, Batch, &dates);
            assert_eq!(h[header::ETAG], from, "batch's tags pass as they are");
        }
    }

    #[test]
    fn plain_reads_and_batchs_own_validators_are_not_copied() {
        let dates = IssuedDates::default();
        let h = headers(&[(header::ACCEPT, "*/*")]);
        assert!(matches!(for_side(&h, Batch, &dates), Cow::Borrowed(_)));
        assert!(matches!(for_side(&h, Streaming, &dates), Cow::Borrowed(_)));
        let h = headers(&[
            (header::IF_NONE_MATCH, "\"a\", W/\"b\""),
            (header::IF_MODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (header::IF_MATCH, "*"),
        ]);
        assert!(matches!(for_side(&h, Batch, &dates), Cow::Borrowed(_)));
    }

    #[test]
    fn if_none_match_keeps_only_the_sides_own_tags() {
        let dates = IssuedDates::default();
        let h = headers(&[(
            header::IF_NONE_MATCH,
            "\"b1\", W/\"s1~streaming\", \"s,2~streaming\"",
        )]);
        assert_eq!(sent(&h, Batch, &dates, header::IF_NONE_MATCH), ["\"b1\""]);
        assert_eq!(
            sent(&h, Streaming, &dates, header::IF_NONE_MATCH),
            ["W/\"s1\", \"s,2\""]
        );
        // Nothing of the side's left: no condition, a full answer.
        let h = headers(&[(header::IF_NONE_MATCH, "\"b1\"")]);
        assert!(sent(&h, Streaming, &dates, header::IF_NONE_MATCH).is_empty());
        let h = headers(&[(header::IF_NONE_MATCH, "\"s~streaming\"")]);
        assert!(sent(&h, Batch, &dates, header::IF_NONE_MATCH).is_empty());
        // Several lines are one list.
        let h = headers(&[
            (header::IF_NONE_MATCH, "\"b1\""),
            (header::IF_NONE_MATCH, "\"s~streaming\""),
        ]);
        assert_eq!(
            sent(&h, Streaming, &dates, header::IF_NONE_MATCH),
            ["\"s\""]
        );
        // `*` names no side's tag.
        let h = headers(&[(header::IF_NONE_MATCH, "*")]);
        assert_eq!(sent(&h, Streaming, &dates, header::IF_NONE_MATCH), ["*"]);
    }

    #[test]
    fn if_match_with_only_foreign_tags_fails_as_an_unknown_tag_does() {
        let dates = IssuedDates::default();
        let h = headers(&[(header::IF_MATCH, "\"s~streaming\"")]);
        assert_eq!(
            sent(&h, Batch, &dates, header::IF_MATCH),
            ["\"cutover-foreign-validator\""]
        );
        assert_eq!(sent(&h, Streaming, &dates, header::IF_MATCH), ["\"s\""]);
        let h = headers(&[(header::IF_MATCH, "\"b\", \"s~streaming\"")]);
        assert_eq!(sent(&h, Batch, &dates, header::IF_MATCH), ["\"b\""]);
        let h = headers(&[(header::IF_MATCH, "*")]);
        assert_eq!(sent(&h, Batch, &dates, header::IF_MATCH), ["*"]);
    }

    #[test]
    fn if_range_with_a_foreign_validator_takes_the_range_with_it() {
        let dates = IssuedDates::default();
        let h = headers(&[(header::IF_RANGE, "\"b\""), (header::RANGE, "bytes=0-9")]);
        let to_streaming = for_side(&h, Streaming, &dates);
        assert!(!to_streaming.contains_key(header::IF_RANGE));
        assert!(!to_streaming.contains_key(header::RANGE));
        assert!(matches!(for_side(&h, Batch, &dates), Cow::Borrowed(_)));
        let h = headers(&[
            (header::IF_RANGE, "\"s~streaming\""),
            (header::RANGE, "bytes=0-9"),
        ]);
        let to_streaming = for_side(&h, Streaming, &dates);
        assert_eq!(to_streaming[header::IF_RANGE], "\"s\"");
        assert_eq!(to_streaming[header::RANGE], "bytes=0-9");
        assert!(!for_side(&h, Batch, &dates).contains_key(header::RANGE));
        // A date: trusted as the date rule says.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let h = headers(&[(header::IF_RANGE, date), (header::RANGE, "bytes=0-9")]);
        assert!(!for_side(&h, Streaming, &dates).contains_key(header::RANGE));
        assert!(matches!(for_side(&h, Batch, &dates), Cow::Borrowed(_)));
        dates.record(Streaming, 784_111_777);
        assert!(matches!(for_side(&h, Streaming, &dates), Cow::Borrowed(_)));
        assert!(!for_side(&h, Batch, &dates).contains_key(header::RANGE));
    }

    #[test]
    fn dates_go_only_where_they_can_be_trusted() {
        assert!(date_trusted(Streaming, true, false));
        assert!(date_trusted(Streaming, true, true));
        assert!(!date_trusted(Streaming, false, true));
        assert!(!date_trusted(Streaming, false, false));
        assert!(date_trusted(Batch, false, false));
        assert!(date_trusted(Batch, false, true));
        assert!(date_trusted(Batch, true, true));
        assert!(!date_trusted(Batch, true, false));

        let dates = IssuedDates::default();
        let mut answer = headers(&[(header::LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT")]);
        on_answer(&mut answer, Streaming, &dates);
        // The same instant in the obsolete asctime form is the same date.
        let h = headers(&[
            (header::IF_MODIFIED_SINCE, "Sun Nov  6 08:49:37 1994"),
            (header::IF_UNMODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(matches!(for_side(&h, Streaming, &dates), Cow::Borrowed(_)));
        let to_batch = for_side(&h, Batch, &dates);
        assert!(!to_batch.contains_key(header::IF_MODIFIED_SINCE));
        assert_eq!(to_batch[header::IF_UNMODIFIED_SINCE], EPOCH);
        // Once batch served the same date too, batch may judge it.
        on_answer(&mut answer, Batch, &dates);
        assert!(matches!(for_side(&h, Batch, &dates), Cow::Borrowed(_)));
        // A date neither side served: batch judges it, streaming does not.
        let h = headers(&[(header::IF_MODIFIED_SINCE, "Mon, 07 Nov 1994 08:49:37 GMT")]);
        assert!(matches!(for_side(&h, Batch, &dates), Cow::Borrowed(_)));
        assert!(!for_side(&h, Streaming, &dates).contains_key(header::IF_MODIFIED_SINCE));
        // Unparseable: never streaming's.
        let h = headers(&[(header::IF_MODIFIED_SINCE, "yesterday")]);
        assert!(matches!(for_side(&h, Batch, &dates), Cow::Borrowed(_)));
        assert!(!for_side(&h, Streaming, &dates).contains_key(header::IF_MODIFIED_SINCE));
    }

    #[test]
    fn the_date_table_is_bounded_and_exact() {
        let dates = IssuedDates::default();
        for secs in 0..10 * SLOTS as u64 {
            dates.record(Batch, 1_700_000_000 + secs);
        }
        assert!(dates.issued(Batch, 1_700_000_000 + 10 * SLOTS as u64 - 1));
        assert!(!dates.issued(Streaming, 1_700_000_000));
        let remembered = (0..10 * SLOTS as u64)
            .filter(|s| dates.issued(Batch, 1_700_000_000 + s))
            .count();
        assert!(remembered <= SLOTS, "{remembered}");
        assert!(
            remembered > SLOTS / 2,
            "{remembered}: most slots hold a recent date"
        );
        assert!(!dates.issued(Batch, 0));
    }
}
