//! Reconciliation's comparator: batch's and streaming's answers to the same
//! read, compared as records (`compare`, with a fast path for identical
//! answers in `identical`), the outcome of a comparison, and its text for
//! `cutover diff`. The comparisons at run time are `serve::compare`.

pub mod compare;
pub mod decode;
pub mod diff;
pub mod format;
mod identical;
pub mod outcome;
pub mod prepare;
pub mod records;
pub mod report;

pub use compare::compare;
pub use outcome::{Skip, Verdict};
pub use report::{Answer, Category, Divergence, Layout, Report, Spec};
