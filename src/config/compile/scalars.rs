//! The leaves: each `parse_*` turns one value's text into its type, or
//! into the message that says what was expected. Pure, and shared by every
//! section.

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;
use http::header::HeaderName;

use super::super::model::{FallbackReason, Mode, Risk};

/// `250ms`, `2s`, `5m`, `1h`: a whole number and a unit.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("bad duration `{s}`: expected a number and a unit (ms, s, m, h), e.g. 250ms");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(bad());
    }
    if unit.is_empty() {
        return Err(format!(
            "bad duration `{s}`: add a unit (ms, s, m, h), e.g. {s}s or {s}ms"
        ));
    }
    let too_long =
        || format!("bad duration `{s}`: longer than the longest cutover takes, 365 days (8760h)");
    // All digits: a number that does not parse is too large for u64.
    let n: u64 = number.parse().map_err(|_| too_long())?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    };
    match millis {
        Some(ms) if ms <= MAX_DURATION_MS => Ok(Duration::from_millis(ms)),
        _ => Err(too_long()),
    }
}

/// The longest duration any key takes: a year. Far past any timeout,
/// window or staleness bound that means something, and far below where
/// millisecond arithmetic on Unix times could overflow.
const MAX_DURATION_MS: u64 = 365 * 24 * 3_600_000;

/// A duration that must be more than zero (timeouts, cooldowns).
pub(super) fn parse_nonzero(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("`{s}` must be more than 0"));
    }
    Ok(d)
}

pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_nonzero(s).map_err(|e| {
        if e.ends_with("more than 0") {
            format!("timeout `{s}` must be more than 0")
        } else {
            e
        }
    })
}

/// A probe interval: a duration, or `off` (`0s` means off too).
pub(super) fn parse_interval(s: &str) -> Result<Option<Duration>, String> {
    if s == "off" {
        return Ok(None);
    }
    let d = parse_duration(s).map_err(|e| format!("{e}, or off"))?;
    Ok((!d.is_zero()).then_some(d))
}

/// A route's path prefix, without its trailing slash (except the root `/`).
pub(super) fn parse_prefix(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("path_prefix `{s}` must start with `/`"));
    }
    if s.contains(['?', '#']) {
        return Err(format!(
            "path_prefix `{s}` must be a path only, without `?` or `#`"
        ));
    }
    if s.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "path_prefix `{s}` contains a space or control character"
        ));
    }
    let trimmed = s.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
}

pub(super) fn parse_method(s: &str) -> Result<Method, String> {
    if s != s.to_ascii_uppercase() {
        return Err(format!(
            "method `{s}` must be uppercase: {}",
            s.to_ascii_uppercase()
        ));
    }
    Method::from_bytes(s.as_bytes()).map_err(|_| format!("bad method `{s}` (e.g. GET, HEAD, POST)"))
}

pub(super) fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| {
        format!("unknown mode `{s}` (expected batch, shadow, canary, streaming or streaming_only)")
    })
}

pub(super) fn parse_risk(s: &str) -> Result<Risk, String> {
    match s {
        "low" => Ok(Risk::Low),
        "medium" => Ok(Risk::Medium),
        "high" => Ok(Risk::High),
        _ => Err(format!("unknown risk `{s}` (expected low, medium or high)")),
    }
}

pub(super) fn parse_reason(s: &str) -> Result<FallbackReason, String> {
    if s == FallbackReason::Contract.as_str() {
        return Err(
            "`contract` is not a fallback.on reason: a contract falls back by its own `contract.on_violation: fallback`".into(),
        );
    }
    FallbackReason::parse(s).ok_or_else(|| {
        format!("unknown fallback reason `{s}` (expected connect, timeout, 5xx, stale, overflow or circuit)")
    })
}

pub(super) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("bad address `{s}`: expected IP:PORT, e.g. 127.0.0.1:8080"))
}

pub(super) fn parse_header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("bad header name `{s}` (e.g. x-customer-id)"))
}

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, found `{s}`")),
    }
}

pub(super) fn parse_number(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("expected a number, found `{s}`")),
    }
}

pub(super) fn parse_percent(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("percent `{s}` is out of range: use 0 to 100"));
    }
    Ok(v)
}

/// A whole number of at least `min`.
pub(super) fn parse_count(s: &str, min: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ if min == 0 => Err(format!("expected a whole number, 0 or more, found `{s}`")),
        _ => Err(format!(
            "expected a whole number, {min} or more, found `{s}`"
        )),
    }
}

pub(super) fn parse_u32(s: &str) -> Result<u32, String> {
    s.parse()
        .map_err(|_| format!("expected a whole number, 0 or more, found `{s}`"))
}

/// A JSON pointer (RFC 6901): empty for the whole body, or `/a/b`.
pub(super) fn parse_json_pointer(s: &str) -> Result<String, String> {
    if !s.is_empty() && !s.starts_with('/') {
        return Err(format!(
            "records `{s}` is not a JSON pointer: start it with `/`, e.g. /data"
        ));
    }
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "records `{s}`: `~` must be followed by 0 or 1 (~0 is ~, ~1 is /)"
            ));
        }
    }
    Ok(s.to_owned())
}

/// A query parameter name as it appears in a request target (before `=`).
pub(super) fn parse_query_param(s: &str) -> Result<String, String> {
    let bad = |c: char| matches!(c, '&' | '=' | '#' | '?') || c.is_whitespace() || c.is_control();
    if s.is_empty() {
        return Err("a sequence param is empty".to_owned());
    }
    if s.chars().any(bad) {
        return Err(format!(
            "sequence param `{s}` is not a query parameter name (no `&`, `=`, `#`, `?` or spaces)"
        ));
    }
    Ok(s.to_owned())
}

pub(super) fn non_empty(what: &str, s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err(format!("`{what}` is empty"))
    } else {
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{MINIMAL, errors};
    use super::*;

    #[test]
    fn durations_are_bounded_by_a_year() {
        assert_eq!(
            parse_duration("8760h"),
            Ok(Duration::from_secs(365 * 86_400))
        );
        for huge in ["8761h", "18446744073709551615ms", "99999999999999999999s"] {
            let e = parse_duration(huge).expect_err(huge);
            assert!(e.contains("365 days"), "{huge}: {e}");
        }
        let errs = errors(&format!(
            "{MINIMAL}    fallback: {{ max_staleness: 18446744073709551615ms }}\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("365 days"), "{errs:?}");
    }

    #[test]
    fn durations_need_a_whole_number_and_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("2 secs").unwrap_err(),
            "bad duration `2 secs`: expected a number and a unit (ms, s, m, h), e.g. 250ms"
        );
        assert!(parse_duration("5").unwrap_err().contains("add a unit"));
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "2d",
            "2S",
            " 2s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_timeout("0ms").unwrap_err().contains("more than 0"));
        assert_eq!(parse_interval("off"), Ok(None));
        assert_eq!(parse_interval("0s"), Ok(None));
        assert_eq!(parse_interval("10s"), Ok(Some(Duration::from_secs(10))));
    }

    #[test]
    fn prefixes_are_paths_without_trailing_slash() {
        assert_eq!(parse_prefix("/v1/orders/").unwrap(), "/v1/orders");
        assert_eq!(parse_prefix("/").unwrap(), "/");
        assert_eq!(parse_prefix("//").unwrap(), "/");
        for bad in ["v1", "/a?b", "/a#b", "/a b", ""] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }
}
