//! What became of one comparison: its verdict, and why it was skipped when
//! it was. The names are the metric label values.

/// A comparison's result: the `result` label of `cutover_reconcile_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Diverged,
    Skipped,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Match, Verdict::Diverged, Verdict::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Diverged => "diverged",
            Verdict::Skipped => "skipped",
        }
    }

    /// Index into per-verdict arrays (`ALL` order).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a comparison did not happen: the `reason` label of
/// `cutover_reconcile_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `reconcile.max_inflight` comparisons were already running.
    Inflight,
    /// An answer was larger than `reconcile.max_body_bytes`.
    TooLarge,
    /// The request body was too large to buffer, so it cannot be sent twice.
    Unbuffered,
    /// The consumer went away (or a body broke) before the answer was whole.
    Aborted,
    /// The other side gave no answer (refused, timed out).
    UpstreamError,
    /// `reconcile.records` points at no record array in either answer.
    NoRecords,
    /// Comparisons in flight already held `limits.max_compared_bytes`.
    Memory,
    /// A side answered `206`: a part of an object is not comparable with
    /// another part (SPEC 1.2: files read in ranges are compared whole).
    Partial,
    /// A side answered `304`: it sent no data to compare.
    NotModified,
    /// A side's `Content-Encoding` is unknown, or its body does not decode.
    Encoding,
    /// Neither answer reads as its format (`reconcile.format`, or the
    /// `Content-Type`) says it is.
    Format,
}

impl Skip {
    pub const ALL: [Skip; 11] = [
        Skip::Inflight,
        Skip::TooLarge,
        Skip::Unbuffered,
        Skip::Aborted,
        Skip::UpstreamError,
        Skip::NoRecords,
        Skip::Memory,
        Skip::Partial,
        Skip::NotModified,
        Skip::Encoding,
        Skip::Format,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Inflight => "inflight",
            Skip::TooLarge => "too_large",
            Skip::Unbuffered => "unbuffered",
            Skip::Aborted => "aborted",
            Skip::UpstreamError => "upstream_error",
            Skip::NoRecords => "no_records",
            Skip::Memory => "memory",
            Skip::Partial => "partial",
            Skip::NotModified => "not_modified",
            Skip::Encoding => "encoding",
            Skip::Format => "format",
        }
    }

    /// Index into per-reason arrays (`ALL` order).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Why two answers with these statuses are not compared, if they are
    /// not: a `206` or a `304` on either side carries no whole answer.
    pub fn for_statuses(batch: u16, streaming: u16) -> Option<Skip> {
        if batch == 206 || streaming == 206 {
            Some(Skip::Partial)
        } else if batch == 304 || streaming == 304 {
            Some(Skip::NotModified)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_all() {
        for (i, v) in Verdict::ALL.into_iter().enumerate() {
            assert_eq!(v.index(), i);
        }
        for (i, s) in Skip::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }

    #[test]
    fn partial_and_not_modified_answers_are_never_compared() {
        assert_eq!(Skip::for_statuses(206, 206), Some(Skip::Partial));
        assert_eq!(Skip::for_statuses(200, 206), Some(Skip::Partial));
        assert_eq!(Skip::for_statuses(304, 200), Some(Skip::NotModified));
        assert_eq!(Skip::for_statuses(304, 206), Some(Skip::Partial));
        assert_eq!(Skip::for_statuses(200, 200), None);
        assert_eq!(Skip::for_statuses(200, 503), None);
    }
}
