//! What outlives a read: the live config snapshot and its routes (`live`),
//! per-route state kept across reloads (`route`), the gate's trips
//! (`gate`), metrics, the access and divergence logs, reloads, and the
//! `/status` document.

pub(crate) mod access_log;
pub(crate) mod divergence_log;
pub(crate) mod gate;
pub mod live;
pub mod metrics;
pub(crate) mod reload;
pub(crate) mod route;
pub mod status;
