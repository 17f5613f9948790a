//! Durations written as Go-style strings (`2ms`, `30s`, `1m30s`).

use std::time::Duration;

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration")]
    Empty,
    /// A component does not start with a decimal number.
    #[error("duration {0:?}: expected a number")]
    MissingNumber(String),
    /// A number is not followed by `ns`, `us`, `ms`, `s`, `m` or `h`.
    #[error("duration {0:?}: unit must be one of ns, us, ms, s, m, h")]
    UnknownUnit(String),
    /// The value does not fit in a [`Duration`].
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a duration such as `2ms`, `30s`, `2m` or `1h30m` (the format of [`super::DURATION_PATTERN`]).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let (number, after_number) = split_number(rest);
        if number.is_empty() {
            return Err(DurationError::MissingNumber(text.to_owned()));
        }
        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let nanos_per_unit =
            unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit(text.to_owned()))?;
        let nanos = decimal_times(number, nanos_per_unit)
            .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
        rest = after_unit;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    // The remainder of a division by 1e9 always fits in u32.
    let sub_nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub_nanos))
}

/// Splits a leading `digits[.digits]` off `text`.
fn split_number(text: &str) -> (&str, &str) {
    let int_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if int_len == 0 {
        return ("", text);
    }
    let after_int = &text[int_len..];
    if let Some(fraction) = after_int.strip_prefix('.') {
        let frac_len = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if frac_len > 0 {
            return text.split_at(int_len + 1 + frac_len);
        }
    }
    text.split_at(int_len)
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// `number * scale` for a decimal `number` (`int[.frac]`), truncating below one unit of `scale`'s base.
pub(crate) fn decimal_times(number: &str, scale: u128) -> Option<u128> {
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let whole: u128 = int_part.parse().ok()?;
    let mut value = whole.checked_mul(scale)?;
    let mut place = scale;
    for digit in frac_part.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        value = value.checked_add(u128::from(digit - b'0') * place)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_single_units() {
        assert_eq!(parse_duration("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn adds_compound_components() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h0m5s"), Ok(Duration::from_secs(3605)));
    }

    #[test]
    fn reads_fractions() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25ms"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn refuses_malformed_text() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("s"),
            Err(DurationError::MissingNumber("s".into()))
        );
        assert_eq!(
            parse_duration("10"),
            Err(DurationError::UnknownUnit("10".into()))
        );
        assert_eq!(
            parse_duration("10d"),
            Err(DurationError::UnknownUnit("10d".into()))
        );
        assert_eq!(
            parse_duration("-1s"),
            Err(DurationError::MissingNumber("-1s".into()))
        );
        assert_eq!(
            parse_duration("1.s"),
            Err(DurationError::UnknownUnit("1.s".into()))
        );
    }

    #[test]
    fn refuses_values_past_u64_seconds() {
        let huge = format!("{}h", u64::MAX);
        assert_eq!(
            parse_duration(&huge),
            Err(DurationError::Overflow(huge.clone()))
        );
    }
}
