//! `spec.window`: the daily time window a canary may advance in.

use k8s_openapi::jiff::Timestamp as ApiTimestamp;
use modelplane_api::{
    canary::Window,
    units::{ClockError, parse_time_of_day},
};

/// Why a window cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// `start` or `end` is not `HH:MM`.
    #[error("spec.window: {0}")]
    Clock(#[from] ClockError),
    /// The time zone is not in the IANA database.
    #[error("spec.window.timeZone {0:?} is not an IANA time zone (e.g. Europe/Berlin)")]
    TimeZone(String),
}

/// Whether `now` is inside the window (`start` inclusive, `end` exclusive, in the window's
/// time zone; an `end` before `start` spans midnight; equal ends mean all day).
pub fn inside(window: &Window, now: ApiTimestamp) -> Result<bool, WindowError> {
    let start = parse_time_of_day(&window.start)?;
    let end = parse_time_of_day(&window.end)?;
    let zone = jiff::tz::TimeZone::get(&window.time_zone)
        .map_err(|_| WindowError::TimeZone(window.time_zone.clone()))?;
    let instant = jiff::Timestamp::from_second(now.as_second())
        .map_err(|_| WindowError::TimeZone(window.time_zone.clone()))?;
    let local = instant.to_zoned(zone).time();
    let (start, end, local) = (minutes(start), minutes(end), minutes(local));
    Ok(match start.cmp(&end) {
        std::cmp::Ordering::Equal => true,
        std::cmp::Ordering::Less => start <= local && local < end,
        std::cmp::Ordering::Greater => local >= start || local < end,
    })
}

fn minutes(time: jiff::civil::Time) -> i32 {
    i32::from(time.hour()) * 60 + i32::from(time.minute())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: &str, end: &str, zone: &str) -> Window {
        Window {
            start: start.into(),
            end: end.into(),
            time_zone: zone.into(),
        }
    }

    fn at(text: &str) -> ApiTimestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn a_window_is_read_in_its_time_zone() {
        // 02:00-06:00 in Berlin is 01:00-05:00 UTC in winter.
        let berlin = window("02:00", "06:00", "Europe/Berlin");
        assert_eq!(inside(&berlin, at("2026-12-04T00:59:00Z")), Ok(false));
        assert_eq!(inside(&berlin, at("2026-12-04T01:00:00Z")), Ok(true));
        assert_eq!(inside(&berlin, at("2026-12-04T04:59:00Z")), Ok(true));
        assert_eq!(inside(&berlin, at("2026-12-04T05:00:00Z")), Ok(false));
        // In summer Berlin is UTC+2.
        assert_eq!(inside(&berlin, at("2026-07-04T00:30:00Z")), Ok(true));
    }

    #[test]
    fn a_window_may_span_midnight_and_equal_ends_mean_all_day() {
        let night = window("22:00", "02:00", "UTC");
        assert_eq!(inside(&night, at("2026-12-04T23:00:00Z")), Ok(true));
        assert_eq!(inside(&night, at("2026-12-04T01:59:00Z")), Ok(true));
        assert_eq!(inside(&night, at("2026-12-04T12:00:00Z")), Ok(false));
        let always = window("00:00", "00:00", "UTC");
        assert_eq!(inside(&always, at("2026-12-04T12:00:00Z")), Ok(true));
    }

    #[test]
    fn an_unknown_time_zone_is_an_error_naming_it() {
        let bad = window("02:00", "06:00", "Mars/Olympus");
        let error = inside(&bad, at("2026-12-04T01:00:00Z")).expect_err("unknown zone");
        assert!(error.to_string().contains("Mars/Olympus"), "{error}");
    }
}
