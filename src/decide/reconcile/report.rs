//! What a comparison is asked (`Spec`, the two `Answer`s) and what it
//! finds (`Report`, its `Divergence`s by `Category`): the types the
//! comparator (`compare`), its fast path (`identical`), `cutover diff` and
//! the route's figures share.

/// What to compare and how loosely. Borrowed from the route's config.
#[derive(Debug, Clone, Default)]
pub struct Spec<'a> {
    /// JSON pointer to the record array; "" for the whole body.
    pub records: &'a str,
    pub key: Option<&'a str>,
    pub ignore: &'a [String],
    /// Relative: |a - b| <= tolerance * max(|a|, |b|).
    pub numeric_tolerance: f64,
    /// Field holding a record's event time (RFC 3339 or Unix s/ms).
    pub event_time: Option<&'a str>,
}

/// One side's answer, decoded (no `Content-Encoding` left).
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
    /// Unix ms, if the side sent one.
    pub watermark_ms: Option<i64>,
    /// How the body is read.
    pub layout: Layout,
}

impl<'a> Answer<'a> {
    /// A JSON answer as `auto` reads one with no telling `Content-Type`:
    /// JSON if it parses, else bytes.
    pub fn json(status: u16, body: &'a [u8], watermark_ms: Option<i64>) -> Answer<'a> {
        Answer {
            status,
            body,
            watermark_ms,
            layout: Layout::Json { declared: false },
        }
    }
}

/// How an answer's body is read into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One JSON document, its records at `Spec::records`. `declared`: the
    /// config or the `Content-Type` says JSON, so a body that does not parse
    /// is not JSON data (with `auto` and no such word, it is compared as bytes).
    Json { declared: bool },
    /// One JSON record per line: NDJSON, and CSV, TSV and Parquet once read
    /// into lines (`format::to_ndjson`).
    Lines,
    /// Compared byte by byte (`reconcile.format: bytes`).
    Bytes,
    /// Not readable as its format (a CSV with a ragged row, a body that is
    /// not Parquet): no records.
    Unreadable,
}

/// Divergence categories, the `category` label: SPEC's six, `schema`
/// (SPEC 1.2: a field one side's records always carry and the other's never
/// do, or whose JSON types differ), and `status` (the two sides answered
/// different status codes), cutover's addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Missing,
    Extra,
    Duplicate,
    Aggregate,
    Timing,
    Body,
    Status,
    Schema,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::Missing,
        Category::Extra,
        Category::Duplicate,
        Category::Aggregate,
        Category::Timing,
        Category::Body,
        Category::Status,
        Category::Schema,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Missing => "missing",
            Category::Extra => "extra",
            Category::Duplicate => "duplicate",
            Category::Aggregate => "aggregate",
            Category::Timing => "timing",
            Category::Body => "body",
            Category::Status => "status",
            Category::Schema => "schema",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether this category is a defect; `timing` is expected while the
    /// sides' watermarks differ.
    pub fn is_defect(self) -> bool {
        self != Category::Timing
    }
}

/// One divergence, with enough to investigate it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Divergence {
    pub category: Category,
    /// The record's key, when records are keyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The first differing field, for `aggregate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Which side, for `duplicate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<&'static str>,
    /// Both values, truncated to `MAX_VALUE_CHARS`.
    pub batch: Option<String>,
    pub streaming: Option<String>,
}

/// The result of one comparison.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Records (or bodies) per category, indexed by `Category::index`.
    pub counts: [u64; Category::ALL.len()],
    /// The `records` pointer found no record array in either answer: the
    /// comparison could not run (a mistaken pointer, not a divergence).
    pub no_records: bool,
    /// Neither answer reads as its declared format (SPEC 1.2 skip reason
    /// `format`): nothing was compared.
    pub unreadable: bool,
    /// What the comparison would build passed the byte budget
    /// (`limits.max_compared_bytes`): nothing was compared.
    pub over_budget: bool,
    pub batch_rows: Option<usize>,
    pub streaming_rows: Option<usize>,
    /// The first `MAX_SAMPLES` divergences.
    pub samples: Vec<Divergence>,
}

impl Report {
    /// Whether anything diverged in a way that is a defect (`timing` alone is a match).
    pub fn diverged(&self) -> bool {
        Category::ALL
            .iter()
            .any(|c| c.is_defect() && self.counts[c.index()] > 0)
    }

    pub fn count(&self, c: Category) -> u64 {
        self.counts[c.index()]
    }

    /// Whether a divergence of `category` would still be kept as a sample
    /// (so its values are worth building): while there is room, or, for a
    /// defect, while a `timing` sample holds a place it can take.
    pub(super) fn wants_sample(&self, category: Category) -> bool {
        self.samples.len() < MAX_SAMPLES
            || (category.is_defect() && self.samples.iter().any(|s| !s.category.is_defect()))
    }

    /// Counts one divergence whose sample is built only if it is kept.
    pub(super) fn add_with(&mut self, category: Category, sample: impl FnOnce() -> Divergence) {
        if self.wants_sample(category) {
            self.add(sample());
        } else {
            self.counts[category.index()] += 1;
        }
    }

    /// Counts `d` and keeps it as a sample while there is room; once the
    /// samples are full a defect takes the place of the last `timing`
    /// sample, so expected timing differences never crowd out a missing or
    /// changed record.
    pub(super) fn add(&mut self, d: Divergence) {
        self.counts[d.category.index()] += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(d);
        } else if d.category.is_defect()
            && let Some(i) = self.samples.iter().rposition(|s| !s.category.is_defect())
        {
            self.samples[i] = d;
        }
    }
}

/// Divergences kept per comparison for the log and `diff`.
pub const MAX_SAMPLES: usize = 20;
/// Characters of a value kept in a divergence.
pub const MAX_VALUE_CHARS: usize = 240;

#[cfg(test)]
mod tests {
    use super::*;

    fn divergence(category: Category, key: usize) -> Divergence {
        Divergence {
            category,
            key: Some(key.to_string()),
            field: None,
            side: None,
            batch: None,
            streaming: None,
        }
    }

    #[test]
    fn defects_take_the_places_of_timing_samples() {
        let mut r = Report::default();
        for k in 0..MAX_SAMPLES + 5 {
            r.add(divergence(Category::Timing, k));
        }
        assert!(r.wants_sample(Category::Missing));
        assert!(!r.wants_sample(Category::Timing));
        r.add(divergence(Category::Missing, 100));
        r.add_with(Category::Aggregate, || divergence(Category::Aggregate, 101));
        assert_eq!(r.samples.len(), MAX_SAMPLES);
        assert_eq!(r.count(Category::Timing), (MAX_SAMPLES + 5) as u64);
        let defects: Vec<_> = r
            .samples
            .iter()
            .filter(|s| s.category.is_defect())
            .collect();
        assert_eq!(defects.len(), 2, "{:?}", r.samples);
        // Once every place holds a defect, further ones are only counted.
        for k in 0..MAX_SAMPLES {
            r.add(divergence(Category::Extra, 200 + k));
        }
        assert!(r.samples.iter().all(|s| s.category.is_defect()));
        assert!(!r.wants_sample(Category::Extra));
        assert_eq!(r.count(Category::Extra), MAX_SAMPLES as u64);
    }
}
