//! Sizes as docker prints them (its `go-units` library): base 1000, a given number of significant digits.

/// `n` bytes in docker's units with `significant` digits: `human_size(4_261_000, 3)` is `4.26MB` (the CLI's
/// tables), `human_size(4_261_000, 4)` is `4.261MB` (`HumanSize`, the pull progress messages).
pub fn human_size(n: i64, significant: usize) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let integer_digits = if v >= 100.0 {
        3
    } else if v >= 10.0 {
        2
    } else {
        1
    };
    let decimals = significant.saturating_sub(integer_digits);
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn docker_units() {
        assert_eq!(human_size(4_261_000, 3), "4.26MB");
        assert_eq!(human_size(123_400_000, 3), "123MB");
        assert_eq!(human_size(512, 3), "512B");
        assert_eq!(human_size(4_261_000, 4), "4.261MB");
        assert_eq!(human_size(123_450_000, 4), "123.5MB");
        assert_eq!(human_size(1_000, 4), "1kB");
    }
}
