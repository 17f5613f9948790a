//! `spec.analysis` of a Canary: the metrics that decide whether a step may advance.

use std::time::Duration;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::number_or_string;
use crate::units::{
    DURATION_PATTERN, DurationError, MAX_UNIT_STRING, PERCENT_PATTERN, duration_body,
    parse_duration,
};

/// Most metrics in one analysis.
pub const MAX_METRICS: u32 = 8;
/// Longest PromQL query.
pub const MAX_QUERY: u32 = 4096;

/// Names of the built-in metrics, each compared candidate against stable over the same interval.
pub const BUILTIN_METRICS: [&str; 11] = [
    "errorRate",
    "emptyOutputRate",
    "latencyP50",
    "latencyP95",
    "latencyP99",
    "timeToFirstTokenP50",
    "timeToFirstTokenP95",
    "timeToFirstTokenP99",
    "timePerOutputTokenP50",
    "timePerOutputTokenP95",
    "timePerOutputTokenP99",
];

/// The CEL rule on a metric check: a built-in name unless `prometheus` is set.
pub fn builtin_name_rule() -> String {
    let names: Vec<String> = BUILTIN_METRICS.iter().map(|n| format!("'{n}'")).collect();
    format!(
        "has(self.prometheus) || self.name in [{}]",
        names.join(", ")
    )
}

/// The message of [`builtin_name_rule`].
pub fn builtin_name_message() -> String {
    format!(
        "name must be a built-in metric ({}) unless prometheus is set",
        BUILTIN_METRICS.join(", ")
    )
}

/// How and how often the candidate is judged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Time between two analyses (a duration, e.g. `1m`).
    #[serde(default = "default_interval")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub interval: String,
    /// Consecutive failed analyses that roll the canary back.
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_limit: i32,
    /// The checks; names are unique. Every one must pass for an analysis to pass.
    #[serde(default)]
    #[schemars(length(max = MAX_METRICS))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub metrics: Vec<MetricCheck>,
    /// Where built-in metrics come from: `pods` (the operator scrapes the runtimes'
    /// `/metrics`) or `prometheus` (the operator's configured Prometheus).
    #[serde(default)]
    pub source: MetricSource,
    /// Confidence of every statistical decision (one-sided), e.g. `0.95`: a candidate fails
    /// a check only when it is worse than stable (or its ceiling) at this confidence.
    #[serde(default = "default_confidence")]
    #[schemars(range(min = 0.5, max = 0.9999))]
    pub confidence: f64,
    /// Requests (observations, for latencies) each version needs in an interval before a
    /// check can pass; fewer is Inconclusive, never a pass.
    #[serde(default = "default_min_samples")]
    #[schemars(range(min = 1, max = 1000000))]
    pub min_samples: i32,
    /// Consecutive Inconclusive analyses after which `onInconclusive` applies.
    #[serde(default = "default_inconclusive_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub inconclusive_limit: i32,
    /// What happens at `inconclusiveLimit`: `Hold` (stay at the step, keep collecting) or
    /// `Fail` (roll back).
    #[serde(default)]
    pub on_inconclusive: InconclusivePolicy,
    /// Consecutive analyses whose metrics could not be read (pods unreachable, Prometheus
    /// down) that roll the canary back.
    #[serde(default = "default_metric_error_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub metric_error_limit: i32,
}

/// What a canary does when its analyses stay Inconclusive.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum InconclusivePolicy {
    /// Hold at the current step (phase `Paused`) and keep collecting; a later pass resumes.
    #[default]
    Hold,
    /// Roll back.
    Fail,
}

impl Default for Analysis {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            failure_limit: default_failure_limit(),
            metrics: Vec::new(),
            source: MetricSource::default(),
            confidence: default_confidence(),
            min_samples: default_min_samples(),
            inconclusive_limit: default_inconclusive_limit(),
            on_inconclusive: InconclusivePolicy::default(),
            metric_error_limit: default_metric_error_limit(),
        }
    }
}

fn default_confidence() -> f64 {
    0.95
}

fn default_min_samples() -> i32 {
    100
}

fn default_inconclusive_limit() -> i32 {
    10
}

fn default_metric_error_limit() -> i32 {
    3
}

fn default_interval() -> String {
    "1m".to_owned()
}

fn default_failure_limit() -> i32 {
    2
}

/// Where built-in metrics are read.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricSource {
    /// The operator scrapes each runtime pod's `/metrics` itself.
    #[default]
    Pods,
    /// The operator queries its configured Prometheus.
    Prometheus,
}

/// One check of an analysis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(builtin_name_rule()).message(builtin_name_message().as_str()))]
#[x_kube(validation = Rule::new("!has(self.prometheus) || !has(self.maxIncrease)").message("maxIncrease applies to built-in metrics only"))]
// `max` is a number or a string, a value CEL cannot name (the API server's type checker
// only sees typed fields), so "max or maxIncrease" is an OpenAPI `anyOf` of `required`.
#[schemars(extend("anyOf" = [{"required": ["max"]}, {"required": ["maxIncrease"]}]))]
pub struct MetricCheck {
    /// A built-in metric (`errorRate`, `emptyOutputRate`, `latencyP50`/`P95`/`P99`,
    /// `timeToFirstTokenP50`/`P95`/`P99`, `timePerOutputTokenP50`/`P95`/`P99`), or any name for
    /// a custom metric given by `prometheus`.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-zA-Z][a-zA-Z0-9_-]*$"))]
    pub name: String,
    /// Highest acceptable candidate value: a number (`0.01`) or a duration (`500ms`).
    /// Set `max`, `maxIncrease` or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "threshold_schema")]
    pub max: Option<Threshold>,
    /// Highest acceptable increase of the candidate over stable, as a percentage (`20%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(PERCENT_PATTERN))]
    pub max_increase: Option<String>,
    /// A custom metric: a PromQL query returning one number, compared against `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusQuery>,
}

/// `max`: a number, or a string that is a number or a duration.
fn threshold_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = number_or_string(generator);
    schema.insert("pattern".into(), THRESHOLD_PATTERN.into());
    schema.insert("maxLength".into(), MAX_UNIT_STRING.into());
    schema
}

/// Pattern of `max` when written as a string: a plain number (`"0.01"`) or a duration (`"500ms"`).
pub const THRESHOLD_PATTERN: &str =
    concat!(r"^([0-9]{1,15}(\.[0-9]{1,15})?|", duration_body!(), ")$");

/// A PromQL query.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusQuery {
    /// The query; it must return a single number.
    #[schemars(length(min = 1, max = MAX_QUERY))]
    pub query: String,
}

/// A metric ceiling as written: a number or a duration string. The schema cannot
/// constrain a number-or-string field, so any other JSON value is kept as `Other` (the
/// object still deserializes) and refused by [`Threshold::value`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Threshold {
    /// A plain number (a ratio, a count, or seconds).
    Number(f64),
    /// A duration such as `500ms`.
    Text(String),
    /// Anything else; not a valid ceiling.
    Other(serde_json::Value),
}

/// A metric ceiling in typed form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThresholdValue {
    /// A plain number.
    Number(f64),
    /// A duration.
    Duration(Duration),
}

/// Why a metric ceiling is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// A string that is not a duration.
    #[error("max: {0}")]
    Duration(#[from] DurationError),
    /// Neither a number nor a string.
    #[error("max must be a number or a duration, got {0}")]
    NotNumberOrString(String),
}

impl Threshold {
    /// The ceiling in typed form; a string must be a plain number or a duration.
    pub fn value(&self) -> Result<ThresholdValue, ThresholdError> {
        match self {
            Self::Number(number) => Ok(ThresholdValue::Number(*number)),
            Self::Text(text) if is_plain_number(text) => text
                .parse()
                .map(ThresholdValue::Number)
                .map_err(|_| ThresholdError::NotNumberOrString(text.clone())),
            Self::Text(text) => Ok(ThresholdValue::Duration(parse_duration(text)?)),
            Self::Other(value) => Err(ThresholdError::NotNumberOrString(value.to_string())),
        }
    }
}

/// Digits with an optional fraction, as [`THRESHOLD_PATTERN`]'s number branch.
fn is_plain_number(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_reads_numbers_written_as_strings() {
        let text: Threshold = serde_json::from_str("\"0.25\"").unwrap();
        assert_eq!(text.value(), Ok(ThresholdValue::Number(0.25)));
        let whole: Threshold = serde_json::from_str("\"3\"").unwrap();
        assert_eq!(whole.value(), Ok(ThresholdValue::Number(3.0)));
    }

    #[test]
    fn threshold_reads_numbers_and_durations() {
        let number: Threshold = serde_json::from_str("0.01").unwrap();
        assert_eq!(number.value(), Ok(ThresholdValue::Number(0.01)));
        let duration: Threshold = serde_json::from_str("\"500ms\"").unwrap();
        assert_eq!(
            duration.value(),
            Ok(ThresholdValue::Duration(Duration::from_millis(500)))
        );
    }

    #[test]
    fn threshold_refuses_text_that_is_not_a_duration() {
        let text: Threshold = serde_json::from_str("\"fast\"").unwrap();
        assert_eq!(
            text.value(),
            Err(ThresholdError::Duration(DurationError::MissingNumber(
                "fast".into()
            )))
        );
    }

    #[test]
    fn threshold_keeps_other_values_readable_but_unusable() {
        let other: Threshold = serde_json::from_str("{\"a\": 1}").unwrap();
        assert_eq!(
            other.value(),
            Err(ThresholdError::NotNumberOrString("{\"a\":1}".into()))
        );
    }
}
