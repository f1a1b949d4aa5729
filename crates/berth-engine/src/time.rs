//! Timestamps as the Engine API writes them: RFC 3339 with nanoseconds in UTC, and unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the unix epoch, now.
pub fn now_nanos() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Formats unix nanoseconds as `2024-01-02T03:04:05.123456789Z` (trailing zeros of the fraction dropped, as Go
/// does with `time.RFC3339Nano`).
pub fn rfc3339_nanos(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Parses an RFC 3339 timestamp (`2024-01-02T03:04:05.5Z`, `...+02:00`) into unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t: jiff::Timestamp = s.parse().ok()?;
    i64::try_from(t.as_nanosecond()).ok()
}

/// Parses a timestamp as the Engine API accepts it in `since`/`until`: unix seconds with an optional fraction
/// (`1700000000`, `1700000000.123456789`) or RFC 3339. Returns unix nanoseconds.
pub fn parse_api_timestamp(s: &str) -> Option<i64> {
    if let Some(n) = parse_rfc3339(s) {
        return Some(n);
    }
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let mut frac_nanos = 0i64;
    if !frac.is_empty() {
        if !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let mut f = frac.to_string();
        f.truncate(9);
        while f.len() < 9 {
            f.push('0');
        }
        frac_nanos = f.parse().ok()?;
    }
    secs.checked_mul(1_000_000_000)?
        .checked_add(if secs < 0 { -frac_nanos } else { frac_nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let n = 1_700_000_000_123_456_789;
        let s = rfc3339_nanos(n);
        assert_eq!(s, "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse_rfc3339(&s), Some(n));
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_api_timestamp("1700000000.5"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(parse_api_timestamp("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_api_timestamp("yesterday"), None);
    }
}
