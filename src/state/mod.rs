//! What outlives a read: the live config snapshot and its routes (`live`),
//! per-route state kept across reloads (`route`), the gate's trips
//! (`gate`), metrics, the access and divergence logs, reloads, and the
//! `/status` document.

pub mod access_log;
pub mod divergence_log;
pub mod gate;
pub mod live;
pub mod metrics;
pub mod reload;
pub mod route;
pub mod status;
