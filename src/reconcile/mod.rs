//! Reconciliation: comparing batch's and streaming's answers to the same read.

pub mod compare;
pub mod log;

pub use compare::{Answer, Category, Divergence, Report, Spec, compare};
