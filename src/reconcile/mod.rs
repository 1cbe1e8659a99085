//! Reconciliation: comparing batch's and streaming's answers to the same
//! read (the comparator), at run time off the consumer's path (`run`, `tee`),
//! with a bounded divergence log.

pub mod budget;
pub mod compare;
pub mod diff;
mod identical;
pub mod log;
pub mod outcome;
pub mod run;
pub mod tee;

pub use compare::{Answer, Category, Divergence, Report, Spec, compare};
pub use outcome::{Skip, Verdict};
