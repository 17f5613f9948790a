//! The schema patterns and the `units` parsers agree: the API server admits exactly
//! the strings the operator and the runtime can read.

use std::time::Duration;

use jsonschema::Validator;
use modelplane_api::units::{
    CPU_MAX_PATTERN, DURATION_PATTERN, DurationError, MAX_UNIT_STRING, PERCENT_PATTERN,
    QUANTITY_PATTERN, TIME_OF_DAY_PATTERN, format_duration, parse_cpu_max, parse_duration,
    parse_percent, parse_quantity, parse_time_of_day,
};
use proptest::prelude::*;
use serde_json::json;

/// Strings that probe the edges of every format.
const SAMPLES: &[&str] = &[
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
    "1m30s",
    "1h2m3.5s",
    "1.5ms",
    "1.5ns",
    "0.001us",
    "0.0001us",
    "1.000000001s",
    "1.0000000001s",
    "999999999999999h",
    "1234567890123456s",
    "1µs",
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

/// What the CRD admits for a duration field: the pattern within the length limit.
fn duration_field() -> Validator {
    jsonschema::validator_for(&json!({
        "type": "string",
        "pattern": DURATION_PATTERN,
        "maxLength": MAX_UNIT_STRING,
    }))
    .expect("pattern compiles")
}

fn duration_pattern() -> Validator {
    jsonschema::validator_for(&json!({"type": "string", "pattern": DURATION_PATTERN}))
        .expect("pattern compiles")
}

/// Nanoseconds per unit and the fraction digits the pattern allows it.
const UNITS: [(&str, u128, usize); 6] = [
    ("ns", 1, 0),
    ("us", 1_000, 3),
    ("ms", 1_000_000, 6),
    ("s", 1_000_000_000, 9),
    ("m", 60_000_000_000, 9),
    ("h", 3_600_000_000_000, 9),
];

/// One `<number>[.<fraction>]<unit>` component as the pattern describes it, with its
/// value in nanoseconds worked out independently of the parser.
fn component() -> impl Strategy<Value = (String, u128)> {
    (0..UNITS.len(), "[0-9]{1,15}", "[0-9]{1,9}", any::<bool>()).prop_map(
        |(unit, int, fraction, with_fraction)| {
            let (name, nanos, max_fraction) = UNITS[unit];
            let fraction = &fraction[..fraction.len().min(max_fraction)];
            let fraction = if with_fraction { fraction } else { "" };
            let mut value = int.parse::<u128>().expect("digits") * nanos;
            if !fraction.is_empty() {
                let padded = format!("{fraction:0<max_fraction$}");
                value += padded.parse::<u128>().expect("digits") * nanos
                    / 10u128.pow(max_fraction as u32);
            }
            let dot = if fraction.is_empty() { "" } else { "." };
            (format!("{int}{dot}{fraction}{name}"), value)
        },
    )
}

fn assert_renders_back(text: &str, duration: Duration, pattern: &Validator) {
    let rendered = format_duration(duration);
    assert!(
        pattern.is_valid(&json!(rendered)),
        "{text} renders as {rendered}"
    );
    assert_eq!(
        parse_duration(&rendered),
        Ok(duration),
        "{text} -> {rendered}"
    );
    let config: modelplane_config::Duration = text.parse().expect("the runtime config reads it");
    assert_eq!(config.get(), duration, "{text}");
    assert_eq!(config.to_string(), rendered, "{text}");
}

proptest! {
    #[test]
    fn every_duration_the_crd_admits_parses_exactly_and_renders_back(
        components in prop::collection::vec(component(), 1..=4)
    ) {
        let text: String = components.iter().map(|(text, _)| text.as_str()).collect();
        let nanos: u128 = components.iter().map(|(_, nanos)| nanos).sum();
        let (field, pattern) = (duration_field(), duration_pattern());
        prop_assert!(pattern.is_valid(&json!(text)), "pattern refuses {text}");
        match parse_duration(&text) {
            Ok(duration) => {
                prop_assert_eq!(duration.as_nanos(), nanos, "{}", text);
                assert_renders_back(&text, duration, &pattern);
            }
            // Only past the length limit can the sum exceed u64 seconds.
            Err(DurationError::Overflow(_)) if !field.is_valid(&json!(text)) => {}
            Err(error) => prop_assert!(false, "{text} is admitted but refused: {error}"),
        }
    }

    #[test]
    fn every_string_the_duration_pattern_matches_parses(
        text in prop::string::string_regex(DURATION_PATTERN.trim_start_matches('^').trim_end_matches('$'))
            .expect("pattern is a proptest regex")
    ) {
        let (field, pattern) = (duration_field(), duration_pattern());
        prop_assert!(pattern.is_valid(&json!(text)), "pattern refuses {text}");
        match parse_duration(&text) {
            Ok(duration) => assert_renders_back(&text, duration, &pattern),
            Err(DurationError::Overflow(_)) if !field.is_valid(&json!(text)) => {}
            Err(error) => prop_assert!(false, "{text} is admitted but refused: {error}"),
        }
    }

    #[test]
    fn duration_pattern_and_parser_agree_on_any_text(
        text in prop_oneof![
            "[0-9.nsumhµ ]{0,12}",
            // Near misses: long numbers, fine fractions, unknown units.
            "[0-9]{1,24}(\\.[0-9]{0,12})?(ns|us|ms|s|m|h|d)",
        ]
    ) {
        let admitted = duration_field().is_valid(&json!(text));
        prop_assert_eq!(admitted, parse_duration(&text).is_ok(), "{}", text);
    }
}
