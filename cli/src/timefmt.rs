//! Times as operators read and write them: RFC 3339 in UTC with
//! milliseconds, and `--since`/`--until` as a duration ago or a time.

use crate::error::CliError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    jetway_shared::headers::now_ms()
}

/// `2026-01-02T03:04:05.678Z`.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// How long ago `ms` was, coarsely (`3s`, `5m`, `2h`, `4d`).
pub fn ago(ms: u64, now: u64) -> String {
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// Parses `--since`/`--until`: a duration before now (`10m`, `1h 30m`) or
/// an RFC 3339 time (`2026-01-02T03:04:05Z`). Returns Unix milliseconds.
pub fn parse_when(flag: &'static str, value: &str, now: u64) -> Result<u64, CliError> {
    if let Ok(d) = humantime::parse_duration(value) {
        return Ok(now.saturating_sub(d.as_millis() as u64));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(value) {
        return Ok(t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0));
    }
    Err(CliError::BadTime {
        flag,
        value: value.to_owned(),
    })
}

/// Unix milliseconds to a `SystemTime`.
pub fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_is_a_duration_ago_or_a_time() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_when("--since", "10m", now).ok(), Some(now - 600_000));
        assert_eq!(
            parse_when("--since", "2023-11-14T22:13:20Z", now).ok(),
            Some(1_700_000_000_000)
        );
        assert!(parse_when("--since", "yesterday-ish", now).is_err());
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
