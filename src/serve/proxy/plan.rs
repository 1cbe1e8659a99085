//! plan: before anything is sent, the side a read goes to and whether it
//! is compared, from the mode, the canary split and the read's sequence
//! (`decide::sequence`); and after it is answered, what the route's pin
//! table learns.

use http::Method;
use http::header::{self, HeaderValue};
use http::request::Parts;

use super::error::ProxyError;
use crate::config::{Mode, SideName};
use crate::decide::freshness::now_unix_ms;
use crate::serve::compare as reconcile;
use crate::state::live::LiveRoute;

/// What `plan` decided for a read before anything is sent.
pub(super) struct Plan {
    /// The mode this read is served in: the configured one, or the one a
    /// tripped gate rolled the route back to.
    pub(super) mode: Mode,
    /// The side chosen to serve, before any fallback.
    pub(super) chosen: SideName,
    /// Whether the other side is read too and the answers compared.
    pub(super) compare: bool,
    /// Whether the object this read names is compared whole after it is
    /// answered (a HEAD or a ranged GET that starts a sequence, in a mode
    /// that compares, sampled as `compare` is): `serve::whole`.
    pub(super) whole_object: bool,
    /// The read's place in its sequence.
    pub(super) sequence: Role,
}

/// A read's place in its sequence (`sequence`), as `plan` found it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    /// Not looked at: a plain read (no `Range`, no query) of a route that
    /// remembers no sequence, outside canary mode. Costs nothing.
    Untracked,
    /// Starts a sequence: decided by the mode (and canary split), never by
    /// an earlier pin, since a read that starts one mixes nothing.
    /// `remember`: the route keeps it in its table.
    Starts {
        key: u64,
        remember: bool,
        /// It carries `Range` or a sequence param (of a sequence unseen
        /// within `pin_ttl`): it starts a sequence, but not plainly.
        may_continue: bool,
    },
    /// Continues a sequence its pin says `chosen` answered: never the other side.
    Continues { key: u64 },
}

/// plan: the side that serves the read (sequence pin, mode, canary split by
/// sticky header or sequence) and whether this read is compared. Costs one
/// atomic load more than the mode decision on a plain read of a route with
/// no sequences. `Err`: the read continues a sequence whose side this mode
/// no longer serves (a rollback mid-object), answered by cutover.
pub(super) fn plan(route: &LiveRoute, parts: &Parts) -> Result<Plan, ProxyError> {
    let cfg = &route.config;
    // A tripped gate rolls every new read back (one atomic load, no lock).
    let rolled_back = route.state.gate.rollback();
    let mode = rolled_back.unwrap_or(cfg.mode);
    let sticky = cfg
        .canary
        .sticky_header
        .as_ref()
        .and_then(|h| parts.headers.get(h))
        .map(HeaderValue::as_bytes);
    let (sequence, pin) = sequence_role(route, parts, mode);
    // Shadow mode reads streaming only for reads that start a sequence, so
    // streaming never receives batch's cursors or a range of batch's file.
    let starts_plainly = match sequence {
        Role::Untracked => true,
        Role::Starts { may_continue, .. } => !may_continue,
        Role::Continues { .. } => false,
    };
    let shadow_samples = |explicit: bool| !explicit || reconcile::sampled(cfg, sticky);
    let chosen = match (sequence, pin) {
        (Role::Continues { .. }, Some(side)) => {
            if !crate::decide::sequence::mode_serves(mode, side) {
                return Err(ProxyError::Pinned { side, cause: None });
            }
            route.state.metrics.sequence_pinned_reads[side.index()].increment(1);
            side
        }
        _ => {
            let key = match sequence {
                Role::Starts { key, .. } | Role::Continues { key, .. } => key,
                Role::Untracked => 0,
            };
            crate::decide::routing::choose_side(
                mode,
                &cfg.canary,
                crate::decide::routing::canary_point(sticky, key),
            )
        }
    };
    // Whether this mode compares this read at all (one sampling draw, used
    // for both kinds of comparison below).
    let wanted = if rolled_back.is_some() && mode != cfg.mode {
        // Rolled back to batch or shadow: batch serves; shadow compares as
        // shadow mode does (every read unless `reconcile.sample` says).
        mode == Mode::Shadow && shadow_samples(cfg.reconcile.sample_explicit)
    } else {
        match mode {
            Mode::Batch | Mode::StreamingOnly => false,
            Mode::Shadow => shadow_samples(true),
            Mode::Canary | Mode::Streaming => reconcile::sampled(cfg, sticky),
        }
    };
    // A HEAD carries no body: comparing two would count a match with
    // nothing compared, diluting the divergence ratio (SPEC 1.2).
    let is_head = parts.method == Method::HEAD;
    let compare = !is_head && wanted && (mode != Mode::Shadow || starts_plainly);
    // A HEAD or a ranged read that starts an object is the object's turn to
    // be compared whole, off the consumer's path (`serve::whole`): neither
    // is comparable itself. A read continuing one never is: its object was
    // its sequence start's turn; nor a page of a listing, whose cursor the
    // other side never issued.
    let whole_object = wanted
        && (parts.method == Method::GET || is_head)
        && (is_head || parts.headers.contains_key(header::RANGE))
        && !matches!(sequence, Role::Continues { .. })
        && !carries_sequence_param(route, parts);
    Ok(Plan {
        mode,
        chosen,
        compare,
        whole_object,
        sequence,
    })
}

/// Whether the read's query carries one of the route's `sequence.params`
/// (a listing's cursor or offset), whatever its `Range`.
fn carries_sequence_param(route: &LiveRoute, parts: &Parts) -> bool {
    parts.uri.query().is_some()
        && crate::decide::sequence::classify(
            &route.config.sequence,
            parts.uri.path(),
            parts.uri.query(),
            &http::HeaderMap::new(),
        )
        .may_continue
}

/// The read's sequence role, and for a read that continues a sequence the
/// side its pin names.
fn sequence_role(route: &LiveRoute, parts: &Parts, mode: Mode) -> (Role, Option<SideName>) {
    let pins = &route.state.pins;
    let rules = &route.config.sequence;
    let plain = parts.uri.query().is_none() && !parts.headers.contains_key(header::RANGE);
    let tracking = pins.tracking();
    if plain && mode != Mode::Canary && pins.is_empty() && !tracking {
        return (Role::Untracked, None);
    }
    let read = crate::decide::sequence::classify(
        rules,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
    );
    if read.may_continue {
        pins.start_tracking();
    }
    let pin = if pins.is_empty() {
        None
    } else {
        pins.get(read.key, rules.pin_ttl, now_unix_ms())
    };
    match pin {
        Some(p) if read.may_continue => (Role::Continues { key: read.key }, Some(p.side)),
        _ => (
            Role::Starts {
                key: read.key,
                // A range reader's `HEAD` (or first plain read) starts the
                // sequence its ranges continue, before the route is tracking.
                remember: read.may_continue || tracking || parts.method == Method::HEAD,
                may_continue: read.may_continue,
            },
            None,
        ),
    }
}

/// After the read: the route's table learns which side answered its
/// sequence, so the reads that continue it go there too. A fallback pins the
/// sequence to batch; a continuing read keeps its pin fresh; plain reads of a
/// route that never reads in ranges or pages, and never fell back, are not
/// remembered at all.
pub(super) fn remember_sequence(
    route: &LiveRoute,
    parts: &Parts,
    plan: &Plan,
    served_by: SideName,
    fell_back: bool,
) {
    let rules = &route.config.sequence;
    let key = match plan.sequence {
        Role::Untracked if !fell_back => return,
        Role::Untracked => {
            crate::decide::sequence::classify(
                rules,
                parts.uri.path(),
                parts.uri.query(),
                &parts.headers,
            )
            .key
        }
        Role::Starts {
            remember: false, ..
        } if !fell_back => return,
        Role::Starts { key, .. } | Role::Continues { key } => key,
    };
    let held = route
        .state
        .pins
        .record(key, served_by, rules, now_unix_ms());
    route.state.metrics.sequence_pins.set(held as f64);
}
