//! Pure per-read decisions and the small primitives they use: route matching
//! and the side a read goes to (`routing`), which reads belong together
//! (`sequence`), when a fallback is allowed and the circuit (`fallback`),
//! watermarks and windows (`freshness`), comparing two answers
//! (`reconcile`), which objects read in ranges are compared whole
//! (`whole_object`), and byte budgets (`budget`). Nothing here does I/O.

pub(crate) mod budget;
pub mod contract;
pub(crate) mod fallback;
pub mod freshness;
pub mod reconcile;
pub mod routing;
pub(crate) mod sequence;
pub(crate) mod whole_object;
