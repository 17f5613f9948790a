//! The schema patterns and the `units` parsers agree: the API server admits exactly
//! the strings the operator and the runtime can read.

use modelplane_api::units::{
    CPU_MAX_PATTERN, DURATION_PATTERN, PERCENT_PATTERN, QUANTITY_PATTERN, TIME_OF_DAY_PATTERN,
    parse_cpu_max, parse_duration, parse_percent, parse_quantity, parse_time_of_day,
};
use serde_json::json;

/// Strings that probe the edges of every format.
const SAMPLES: [&str; 40] = [
    "",
    "0",
    "4",
    "1.5",
    "1.",
    ".5",
    "-1",
    "+1",
    "500m",
    "1.5m",
    "8Gi",
    "8GB",
    "8 Gi",
    "2k",
    "2K",
    "1e3",
    "2ms",
    "30s",
    "2m",
    "1h30m",
    "1.5s",
    "10d",
    "2 ms",
    "s",
    "max",
    "2 cores",
    "1 core",
    "500m cores",
    "cores",
    "20%",
    "2.5%",
    "%",
    "20",
    "-5%",
    "02:00",
    "23:59",
    "24:00",
    "2:00",
    "12:60",
    "+1:00",
];

fn assert_agree(name: &str, pattern: &str, parses: impl Fn(&str) -> bool) {
    let validator = jsonschema::validator_for(&json!({"type": "string", "pattern": pattern}))
        .expect("pattern compiles");
    let disagreements: Vec<_> = SAMPLES
        .iter()
        .filter(|sample| validator.is_valid(&json!(sample)) != parses(sample))
        .collect();
    assert!(
        disagreements.is_empty(),
        "{name}: pattern and parser disagree on {disagreements:?}"
    );
}

#[test]
fn duration_pattern_matches_parse_duration() {
    assert_agree("duration", DURATION_PATTERN, |s| parse_duration(s).is_ok());
}

#[test]
fn quantity_pattern_matches_parse_quantity() {
    assert_agree("quantity", QUANTITY_PATTERN, |s| parse_quantity(s).is_ok());
}

#[test]
fn cpu_max_pattern_matches_parse_cpu_max() {
    assert_agree("cpu max", CPU_MAX_PATTERN, |s| parse_cpu_max(s).is_ok());
}

#[test]
fn percent_pattern_matches_parse_percent() {
    assert_agree("percent", PERCENT_PATTERN, |s| parse_percent(s).is_ok());
}

#[test]
fn time_of_day_pattern_matches_parse_time_of_day() {
    assert_agree("time of day", TIME_OF_DAY_PATTERN, |s| {
        parse_time_of_day(s).is_ok()
    });
}
