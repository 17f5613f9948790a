//! Durations written as Go-style strings (`2ms`, `30s`, `1m30s`): the one parser and the
//! one renderer of durations in the workspace (CRD fields, the runtime config file and
//! command-line flags all go through them).
//!
//! Values are exact to the nanosecond. A fraction may have only as many digits as its
//! unit keeps whole nanoseconds (`ns` none, `us` 3, `ms` 6, `s`, `m` and `h` 9), so
//! `1.5ms` is 1 500 000 ns and `1.5ns` is refused rather than rounded; a number has at
//! most 15 digits before its point, so that no string within the
//! schema's length limit overflows. [`super::DURATION_PATTERN`] states the same rules.

use std::fmt::Write as _;
use std::time::Duration;

/// Most digits before the decimal point of one `<number><unit>` component.
const MAX_INTEGER_DIGITS: usize = 15;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_HOUR: u64 = 3_600;
/// The largest hour count one component can carry (`MAX_INTEGER_DIGITS` nines).
const MAX_HOURS_PER_COMPONENT: u64 = 10u64.pow(MAX_INTEGER_DIGITS as u32) - 1;

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
    /// A number has more than 15 digits before its point.
    #[error("duration {0:?}: a number has more than 15 digits before its point")]
    TooManyDigits(String),
    /// A fraction is finer than one nanosecond.
    #[error(
        "duration {0:?}: a fraction is finer than a nanosecond \
         (at most 3 digits for us, 6 for ms, 9 for s, m and h; none for ns)"
    )]
    TooPrecise(String),
    /// The value does not fit in a [`Duration`].
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a duration such as `2ms`, `1.5s`, `2m` or `1h30m` (the format of [`super::DURATION_PATTERN`]).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let (nanos, after) = component(rest).map_err(|error| error(text.to_owned()))?;
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
        rest = after;
    }
    let secs = u64::try_from(total_nanos / u128::from(NANOS_PER_SEC))
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    // The remainder of a division by 1e9 always fits in u32.
    let sub_nanos = (total_nanos % u128::from(NANOS_PER_SEC)) as u32;
    Ok(Duration::new(secs, sub_nanos))
}

/// Writes `duration` as the shortest `h`/`m`/`s` (or, under a second, `ms`/`us`/`ns`)
/// string that [`parse_duration`] reads back to exactly `duration`: `1m30s`, `1.5ms`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    let (secs, nanos) = (duration.as_secs(), u64::from(duration.subsec_nanos()));
    let mut out = String::new();
    if secs == 0 {
        match nanos {
            0 => out.push_str("0s"),
            n if n < 1_000 => write_decimal(&mut out, n, 0, "ns"),
            n if n < 1_000_000 => write_decimal(&mut out, n, 3, "us"),
            n => write_decimal(&mut out, n, 6, "ms"),
        }
        return out;
    }
    let mut hours = secs / SECS_PER_HOUR;
    // Past the digits one component may carry, the pattern's repetition carries the rest.
    while hours > MAX_HOURS_PER_COMPONENT {
        let _ = write!(out, "{MAX_HOURS_PER_COMPONENT}h");
        hours -= MAX_HOURS_PER_COMPONENT;
    }
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    let minutes = secs % SECS_PER_HOUR / 60;
    if minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let seconds = secs % 60;
    if seconds > 0 || nanos > 0 {
        write_decimal(&mut out, seconds * NANOS_PER_SEC + nanos, 9, "s");
    }
    out
}

/// Appends `value / 10^decimals` with its fraction's trailing zeros dropped, then `unit`.
fn write_decimal(out: &mut String, value: u64, decimals: u32, unit: &str) {
    let scale = 10u64.pow(decimals);
    let _ = write!(out, "{}", value / scale);
    let fraction = value % scale;
    if fraction > 0 {
        let digits = format!("{fraction:0width$}", width = decimals as usize);
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push_str(unit);
}

/// How a component is wrong; given the whole input, it makes the error.
type Fault = fn(String) -> DurationError;

/// Reads one leading `<number><unit>` off `text`: its nanoseconds and what follows.
fn component(text: &str) -> Result<(u128, &str), Fault> {
    let int_len = leading_digits(text);
    if int_len == 0 {
        return Err(DurationError::MissingNumber);
    }
    if int_len > MAX_INTEGER_DIGITS {
        return Err(DurationError::TooManyDigits);
    }
    let frac_len = text[int_len..].strip_prefix('.').map_or(0, leading_digits);
    // `1.s` keeps its dot with the unit, which then is unknown.
    let number_len = if frac_len > 0 {
        int_len + 1 + frac_len
    } else {
        int_len
    };
    let (number, after_number) = text.split_at(number_len);
    let unit_len = after_number
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(after_number.len());
    let (unit, after_unit) = after_number.split_at(unit_len);
    let (nanos_per_unit, max_fraction) =
        unit_nanos(unit).ok_or(DurationError::UnknownUnit as Fault)?;
    if frac_len > max_fraction {
        return Err(DurationError::TooPrecise);
    }
    // Exact: every allowed fraction digit divides the unit's nanoseconds by ten evenly.
    let nanos = decimal_times(number, nanos_per_unit).ok_or(DurationError::Overflow as Fault)?;
    Ok((nanos, after_unit))
}

fn leading_digits(text: &str) -> usize {
    text.find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len())
}

/// Nanoseconds in one `unit`, and the most fraction digits that stay whole nanoseconds.
fn unit_nanos(unit: &str) -> Option<(u128, usize)> {
    Some(match unit {
        "ns" => (1, 0),
        "us" => (1_000, 3),
        "ms" => (1_000_000, 6),
        "s" => (1_000_000_000, 9),
        "m" => (60 * 1_000_000_000, 9),
        "h" => (3_600 * 1_000_000_000, 9),
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
        assert_eq!(
            parse_duration("1h2m3.5s"),
            Ok(Duration::from_millis(3_723_500))
        );
    }

    #[test]
    fn reads_fractions_exactly() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0.25ms"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_nanos(1_500_000)));
        assert_eq!(parse_duration("0.001us"), Ok(Duration::from_nanos(1)));
        assert_eq!(
            parse_duration("0.000000001h"),
            Ok(Duration::from_nanos(3_600))
        );
        assert_eq!(
            parse_duration("1.123456789s"),
            Ok(Duration::new(1, 123_456_789))
        );
    }

    #[test]
    fn refuses_fractions_finer_than_a_nanosecond() {
        for text in [
            "1.5ns",
            "0.0001us",
            "0.0000001ms",
            "1.0000000001s",
            "1m0.1234567891m",
        ] {
            assert_eq!(
                parse_duration(text),
                Err(DurationError::TooPrecise(text.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_malformed_text() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        for (text, error) in [
            (
                "s",
                DurationError::MissingNumber as fn(String) -> DurationError,
            ),
            ("-1s", DurationError::MissingNumber),
            (".5s", DurationError::MissingNumber),
            ("10", DurationError::UnknownUnit),
            ("10d", DurationError::UnknownUnit),
            ("1.s", DurationError::UnknownUnit),
            ("2 ms", DurationError::UnknownUnit),
            ("1µs", DurationError::UnknownUnit),
            ("1234567890123456s", DurationError::TooManyDigits),
        ] {
            assert_eq!(parse_duration(text), Err(error(text.into())), "{text}");
        }
    }

    #[test]
    fn refuses_values_past_u64_seconds() {
        let huge = "999999999999999h".repeat(6);
        assert_eq!(
            parse_duration(&huge),
            Err(DurationError::Overflow(huge.clone()))
        );
    }

    #[test]
    fn renders_the_shortest_exact_form() {
        #[rustfmt::skip]
        let table = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(100), "100ns"),
            (Duration::from_nanos(1_500), "1.5us"),
            (Duration::from_nanos(1_500_000), "1.5ms"),
            (Duration::from_nanos(1_000_001), "1.000001ms"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_millis(3_723_500), "1h2m3.5s"),
            (Duration::new(3_601, 1), "1h1.000000001s"),
        ];
        for (duration, text) in table {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
    }

    #[test]
    fn renders_the_largest_duration_in_parseable_components() {
        let text = format_duration(Duration::MAX);
        assert_eq!(parse_duration(&text), Ok(Duration::MAX), "{text}");
    }
}
