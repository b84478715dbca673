//! `approval.timeout` values: one or more `<digits><unit>` parts, units `h`, `m`, `s`, each at
//! most once and in that order ("90s", "15m", "1h30m"). The grammar is deliberately smaller than
//! humantime's: no spaces, no fractions, no days, so a value means exactly one thing.

use std::time::Duration;

/// Most digits in one part; keeps the arithmetic far from overflow ("99999999h" is already
/// out of bounds, but must not wrap on the way there).
const MAX_PART_DIGITS: usize = 9;

/// Parses a duration, or says what is wrong with it.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration (write e.g. \"15m\", \"90s\" or \"1h30m\")".to_owned());
    }
    let mut seconds: u64 = 0;
    // Units must appear in decreasing size; this is the smallest unit size still allowed.
    let mut next_allowed_unit_seconds = u64::MAX;
    let mut rest = text;
    while !rest.is_empty() {
        let digit_count = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digit_count == 0 {
            return Err(format!(
                "duration `{text}` must be digits followed by a unit (h, m, s)"
            ));
        }
        if digit_count > MAX_PART_DIGITS {
            return Err(format!("duration `{text}` is too large"));
        }
        let (digits, after_digits) = rest.split_at(digit_count);
        let amount: u64 = digits
            .parse()
            .map_err(|_| format!("duration `{text}` has an unreadable number"))?;
        let mut unit_chars = after_digits.chars();
        let unit_seconds = match unit_chars.next() {
            Some('h') => 3600,
            Some('m') => 60,
            Some('s') => 1,
            Some(other) => {
                return Err(format!(
                    "duration `{text}` has unknown unit `{other}` (use h, m or s)"
                ));
            }
            None => {
                return Err(format!(
                    "duration `{text}` lacks a unit after {digits} (use h, m or s)"
                ));
            }
        };
        if unit_seconds >= next_allowed_unit_seconds {
            return Err(format!(
                "duration `{text}` must list units once each, largest first (h, m, s)"
            ));
        }
        next_allowed_unit_seconds = unit_seconds;
        seconds = seconds.saturating_add(amount.saturating_mul(unit_seconds));
        rest = unit_chars.as_str();
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1h0m5s").unwrap(), Duration::from_secs(3605));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "15",
            "m",
            "15 m",
            " 15m",
            "15m ",
            "1.5h",
            "15min",
            "1d",
            "30m1h",
            "1m1m",
            "-5m",
            "+5m",
            "15M",
            "1234567890s",
            "５m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
