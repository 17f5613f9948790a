//! Percentages (`20%`) and wall-clock times of day (`02:00`).

use jiff::civil::Time;

/// Why a percentage could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("percentage {0:?}: expected a non-negative decimal followed by %")]
pub struct PercentError(pub String);

/// Parses `20%` into the fraction `0.2` (the format of [`super::PERCENT_PATTERN`]).
pub fn parse_percent(text: &str) -> Result<f64, PercentError> {
    let number = text
        .strip_suffix('%')
        .ok_or_else(|| PercentError(text.to_owned()))?;
    let valid = number.split('.').count() <= 2
        && number
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(PercentError(text.to_owned()));
    }
    number
        .parse::<f64>()
        .map(|value| value / 100.0)
        .map_err(|_| PercentError(text.to_owned()))
}

/// Why a time of day could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time of day {0:?}: expected HH:MM between 00:00 and 23:59")]
pub struct ClockError(pub String);

/// Parses a 24-hour `HH:MM` (the format of [`super::TIME_OF_DAY_PATTERN`]).
pub fn parse_time_of_day(text: &str) -> Result<Time, ClockError> {
    let invalid = || ClockError(text.to_owned());
    let (hours, minutes) = text.split_once(':').ok_or_else(invalid)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return Err(invalid());
    }
    let hours: i8 = hours.parse().map_err(|_| invalid())?;
    let minutes: i8 = minutes.parse().map_err(|_| invalid())?;
    Time::new(hours, minutes, 0, 0).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_percentages_as_fractions() {
        assert_eq!(parse_percent("20%"), Ok(0.2));
        assert_eq!(parse_percent("2.5%"), Ok(0.025));
        assert_eq!(parse_percent("0%"), Ok(0.0));
    }

    #[test]
    fn refuses_malformed_percentages() {
        for text in ["20", "%", "-5%", "1.%", "1e3%", "1.2.3%", "+5%"] {
            assert_eq!(
                parse_percent(text),
                Err(PercentError(text.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn reads_times_of_day() {
        assert_eq!(parse_time_of_day("02:00"), Ok(Time::constant(2, 0, 0, 0)));
        assert_eq!(parse_time_of_day("23:59"), Ok(Time::constant(23, 59, 0, 0)));
    }

    #[test]
    fn refuses_out_of_range_or_malformed_times() {
        for text in ["24:00", "12:60", "2:00", "0200", "ab:cd", "+1:00"] {
            assert_eq!(
                parse_time_of_day(text),
                Err(ClockError(text.into())),
                "{text}"
            );
        }
    }
}
