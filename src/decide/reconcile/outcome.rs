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
}

impl Skip {
    pub const ALL: [Skip; 7] = [
        Skip::Inflight,
        Skip::TooLarge,
        Skip::Unbuffered,
        Skip::Aborted,
        Skip::UpstreamError,
        Skip::NoRecords,
        Skip::Memory,
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
        }
    }

    /// Index into per-reason arrays (`ALL` order).
    pub fn index(self) -> usize {
        self as usize
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
}
