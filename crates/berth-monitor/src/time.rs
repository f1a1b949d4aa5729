//! Timestamps as Docker writes them: RFC 3339 in UTC with nine fractional digits.

/// `t` as `2026-11-29T00:00:00.123456789Z`.
pub fn rfc3339_nano(t: jiff::Timestamp) -> String {
    format!("{t:.9}")
}

/// Now, as [`rfc3339_nano`] formats it.
pub fn now() -> String {
    rfc3339_nano(jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_digits_in_utc() {
        let t = jiff::Timestamp::new(1_795_824_000, 123_000_000).unwrap();
        assert_eq!(rfc3339_nano(t), "2026-11-28T00:00:00.123000000Z");
        let t = jiff::Timestamp::new(0, 5).unwrap();
        assert_eq!(rfc3339_nano(t), "1970-01-01T00:00:00.000000005Z");
        assert_eq!(now().len(), "2026-11-28T16:00:00.123000000Z".len());
    }
}
