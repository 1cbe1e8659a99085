//! What cutover answers itself, rather than an upstream: one error type,
//! turned into the consumer's response (status, headers, short text) in one
//! place, and logged there once.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use std::time::Instant;

use http::request::Parts;

use super::answer::{ERROR, ProxyBody, entry};
use crate::config::SideName;
use crate::net::upstream::{AttemptError, BodyReadError};
use crate::state::access_log::{AccessLog, Entry};
use crate::state::live::LiveRoute;

/// Why cutover answered a read itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request must never reach a backend (smuggling, dot segments).
    #[error("malformed request: {}", .0.trim_end())]
    Malformed(&'static str),
    /// The raw head framed its body twice over (both framings, or a
    /// repeated `Content-Length`): refused, and the connection closed.
    #[error("ambiguous framing: {}", .0.trim_end())]
    Framing(&'static str),
    /// `limits.max_inflight_reads` reads are already waiting on upstreams.
    #[error("cutover is at max_inflight_reads")]
    Shed,
    /// No route's `path_prefix` matches.
    #[error("no route for this path")]
    NoRoute,
    /// The route does not allow the method; `allow` lists those it does.
    #[error("method not allowed on this route")]
    MethodNotAllowed { allow: Option<HeaderValue> },
    /// The request body could not be read from the consumer.
    #[error("could not read the request body")]
    UnreadableBody,
    /// The consumer paused its request body past `limits.body_timeout`.
    #[error(transparent)]
    BodyTimeout(BodyReadError),
    /// cutover's disk failed a request body it was spooling (full, gone):
    /// like the other bounds cutover holds, answered 503 `overflow`.
    #[error(transparent)]
    Spool(BodyReadError),
    /// Streaming was at `max_inflight` and no fallback was allowed.
    #[error("streaming is at max_inflight")]
    Overflow,
    /// The streaming circuit is open and no fallback was allowed.
    #[error("the streaming circuit is open")]
    CircuitOpen,
    /// The upstream could not be reached or reset the connection.
    #[error(transparent)]
    Connect(AttemptError),
    /// No response head within the side's timeout.
    #[error(transparent)]
    Timeout(AttemptError),
    /// The upstream answered something that is not HTTP cutover can frame.
    #[error(transparent)]
    UpstreamProtocol(AttemptError),
    /// The read continues a sequence (a `Range` read, a next page) that
    /// `side` answered, and `side` failed (`cause`) or this mode no longer
    /// serves it (`None`): never answered by the other side.
    #[error("the read continues a sequence {} answers{}", side.as_str(), cause.as_ref().map_or(String::new(), |c| format!(", which failed: {c}")))]
    Pinned {
        side: SideName,
        cause: Option<Box<ProxyError>>,
    },
}

impl From<BodyReadError> for ProxyError {
    fn from(e: BodyReadError) -> ProxyError {
        match e {
            BodyReadError::Read(_) => ProxyError::UnreadableBody,
            BodyReadError::Stalled(_) => ProxyError::BodyTimeout(e),
            BodyReadError::Spool(_) => ProxyError::Spool(e),
        }
    }
}

impl From<AttemptError> for ProxyError {
    fn from(e: AttemptError) -> ProxyError {
        match e {
            AttemptError::Connect(_) => ProxyError::Connect(e),
            AttemptError::Timeout(_) => ProxyError::Timeout(e),
            AttemptError::Protocol(_) => ProxyError::UpstreamProtocol(e),
        }
    }
}

impl ProxyError {
    /// The status the consumer gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Malformed(_) | ProxyError::Framing(_) | ProxyError::UnreadableBody => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Overflow
            | ProxyError::CircuitOpen
            | ProxyError::Shed
            | ProxyError::Spool(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_) | ProxyError::UpstreamProtocol(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Pinned { cause: Some(c), .. } => c.status(),
            ProxyError::Pinned { cause: None, .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The reason's name: the `x-cutover-error` header and the access log's
    /// `error` field (SPEC 1.1 fixes the names).
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::Malformed(_) | ProxyError::Framing(_) | ProxyError::UnreadableBody => {
                "bad_request"
            }
            ProxyError::NoRoute => "no_route",
            ProxyError::MethodNotAllowed { .. } => "method",
            // SPEC's name for "cutover is at an in-flight bound".
            ProxyError::Overflow | ProxyError::Shed | ProxyError::Spool(_) => "overflow",
            ProxyError::CircuitOpen => "circuit",
            ProxyError::Connect(_) => "connect",
            ProxyError::Timeout(_) | ProxyError::BodyTimeout(_) => "timeout",
            ProxyError::UpstreamProtocol(_) => "upstream_protocol",
            ProxyError::Pinned { .. } => "pinned",
        }
    }

    /// The text of the answer: what went wrong, in a line.
    fn text(&self) -> &'static str {
        match self {
            ProxyError::Malformed(reason) | ProxyError::Framing(reason) => reason,
            ProxyError::Shed => "cutover is at max_inflight_reads: retry shortly\n",
            ProxyError::NoRoute => "no route for this path\n",
            ProxyError::MethodNotAllowed { .. } => "method not allowed on this route\n",
            ProxyError::UnreadableBody => "could not read the request body\n",
            ProxyError::BodyTimeout(_) => "the request body stalled\n",
            ProxyError::Pinned { cause: Some(_), .. } => {
                "the side answering this object or listing failed; retry the whole read\n"
            }
            ProxyError::Pinned { cause: None, .. } => {
                "this object or listing was being read from a side the route no longer serves; retry the whole read\n"
            }
            ProxyError::Spool(_) => "cutover could not spool the request body: retry shortly\n",
            _ => self
                .status()
                .canonical_reason()
                .unwrap_or("upstream failed"),
        }
    }

    /// The answer to a read refused before any upstream was asked: the
    /// response, and its access log entry (always written).
    pub(super) fn answer(
        self,
        log: Option<&AccessLog>,
        route: Option<&LiveRoute>,
        parts: &Parts,
        started: Instant,
    ) -> Response<ProxyBody> {
        let reason = self.reason();
        let resp = self.respond(route);
        if let Some(log) = log {
            log.record(Entry {
                error: Some(reason),
                ..entry(log, route, parts, resp.status(), started.elapsed())
            });
        }
        resp
    }

    /// The consumer's answer for this error, logged once here. `route` is
    /// the read's route once known.
    pub fn respond(self, route: Option<&LiveRoute>) -> Response<ProxyBody> {
        let status = self.status();
        let route_name = route.map_or("", |r| r.config.name.as_str());
        tracing::debug!(route = route_name, status = status.as_u16(), reason = self.reason(), error = %self, "cutover answered the read itself");
        let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
            self.text().as_bytes(),
        ))));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(ERROR, HeaderValue::from_static(self.reason()));
        match self {
            ProxyError::MethodNotAllowed { allow: Some(allow) } => {
                h.insert(header::ALLOW, allow);
            }
            // Nothing after an ambiguous body can be trusted to be a request
            // (only HTTP/1 heads are followed, so this is never h2).
            ProxyError::Framing(_) => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // As Envoy's overload manager and nginx's limit_req: come back soon.
            ProxyError::Shed => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}
