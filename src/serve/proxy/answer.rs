//! The consumer's answer as cutover shapes it: its body type, the headers
//! cutover adds, and the access log entry every read has. Shared by the
//! pipeline (`proxy`) and cutover's own answers (`error`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderName;
use http::request::Parts;
use http_body_util::{Either, Full};

use crate::serve::tee::Tee;
use crate::state::access_log::{AccessLog, Entry};
use crate::state::live::LiveRoute;

/// What the consumer receives: an upstream body streamed through untouched
/// (copied on the side when a comparison needs it), or a short local answer
/// (404, 405, 502, ...).
pub type ProxyBody = Either<Tee, Full<Bytes>>;

pub const SERVED_BY: HeaderName = HeaderName::from_static("x-cutover-served-by");
pub const FALLBACK: HeaderName = HeaderName::from_static("x-cutover-fallback");
/// On every answer cutover made itself, its reason (`ProxyError::reason`).
pub const ERROR: HeaderName = HeaderName::from_static("x-cutover-error");
/// One id per read: the consumer's, or one cutover makes; sent with every
/// upstream attempt of the read.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An access log entry with what every read has; the upstream's part is
/// empty (cutover answered).
pub(crate) fn entry(
    log: &AccessLog,
    route: Option<&LiveRoute>,
    parts: &Parts,
    status: StatusCode,
    elapsed: Duration,
) -> Entry {
    Entry {
        ts: SystemTime::now(),
        consumer: log.consumer().clone(),
        route: route.map(|r| r.config.name.clone()),
        dataset: route.map(|r| r.config.dataset.clone()),
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        status: status.as_u16(),
        served_by: None,
        fallback: None,
        error: None,
        upstream_status: None,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        request_id: parts.headers.get(&REQUEST_ID).cloned(),
    }
}
