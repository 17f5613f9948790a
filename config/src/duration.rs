//! Durations in config files: serde glue over [`crate::units::parse_duration`] and
//! [`crate::units::format_duration`], so the file reads exactly what the CRD admits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::units::{DurationError, format_duration, parse_duration};

/// A duration written as in Kubernetes and Go: `250us`, `2ms`, `1.5s`, `1m30s`, `2h`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// No time at all.
    pub const ZERO: Self = Self(std::time::Duration::ZERO);

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// The standard-library duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Self)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_durations_read_compound_go_style_text() {
        let cases = [
            ("250us", 250_000),
            ("2ms", 2_000_000),
            ("1.5s", 1_500_000_000),
            ("1m", 60_000_000_000),
            ("1m30s", 90_000_000_000),
        ];
        for (text, nanos) in cases {
            let d: Duration = text.parse().expect(text);
            assert_eq!(d.get().as_nanos(), nanos, "{text}");
            assert_eq!(
                d.to_string().parse::<Duration>().expect("display parses"),
                d
            );
        }
        for bad in ["", "5", "ms", "5 days", "-1s", "1e400s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn config_file_limits_read_compound_durations() {
        #[derive(Deserialize)]
        struct Limits {
            timeout: Duration,
        }
        let limits: Limits = serde_yaml::from_str("timeout: 1m30s").expect("parses");
        assert_eq!(limits.timeout.get(), std::time::Duration::from_secs(90));
    }
}
