//! The `prometheus` metric source: instant queries against Prometheus's HTTP API
//! (`GET /api/v1/query`), for custom metrics and for the interval of the built-in ones.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, de::IgnoredAny};

use super::series::{Histogram, Snapshot, VersionSeries};
use super::source::{SourceError, body, describe, url};

/// The answer of `/api/v1/query`.
#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorSample>),
    Scalar(Value),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// Absent for a native histogram sample (which has `histogram` instead).
    value: Option<Value>,
}

/// `[<unix time>, "<value>"]`.
#[derive(Debug, Deserialize)]
struct Value(IgnoredAny, String);

impl Value {
    fn number(&self) -> Result<f64, String> {
        self.1
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("sample value {:?} is not a number", self.1))
    }
}

/// One sample of an instant vector: its labels and value.
type Sample = (BTreeMap<String, String>, f64);

/// Runs `promql` as an instant query and returns its single value: `None` when the
/// result is an empty vector or NaN (no data, e.g. a ratio of two zero rates), the value
/// of a scalar or of a one-sample vector, and an error for more than one sample, another
/// result type, an unreachable Prometheus or Prometheus's own error (its message
/// included).
pub async fn query(
    http: &reqwest::Client,
    base_url: &str,
    promql: &str,
    timeout: Duration,
) -> Result<Option<f64>, SourceError> {
    let fail = |reason: String| SourceError::Prometheus {
        query: promql.to_owned(),
        reason,
    };
    let value = match instant(http, base_url, promql, timeout).await? {
        Data::Scalar(value) => value.number().map_err(fail)?,
        Data::Vector(samples) => match samples.as_slice() {
            [] => return Ok(None),
            [sample] => sample_value(sample).map_err(fail)?,
            more => {
                return Err(fail(format!(
                    "the query returned {} series; it must return one (aggregate it, e.g. with sum)",
                    more.len()
                )));
            }
        },
        Data::Matrix(_) => return Err(fail("the query returned a range vector".into())),
        Data::String(_) => return Err(fail("the query returned a string".into())),
    };
    Ok((!value.is_nan()).then_some(value))
}

fn sample_value(sample: &VectorSample) -> Result<f64, String> {
    sample
        .value
        .as_ref()
        .ok_or_else(|| "a sample has no value (a native histogram?)".to_owned())?
        .number()
}

/// Runs `promql` and returns its instant vector.
async fn vector(
    http: &reqwest::Client,
    base_url: &str,
    promql: &str,
    timeout: Duration,
) -> Result<Vec<Sample>, SourceError> {
    let fail = |reason: String| SourceError::Prometheus {
        query: promql.to_owned(),
        reason,
    };
    match instant(http, base_url, promql, timeout).await? {
        Data::Vector(samples) => samples
            .into_iter()
            .map(|sample| sample_value(&sample).map(|value| (sample.metric, value)))
            .collect::<Result<_, _>>()
            .map_err(fail),
        _ => Err(fail("the query did not return an instant vector".into())),
    }
}

async fn instant(
    http: &reqwest::Client,
    base_url: &str,
    promql: &str,
    timeout: Duration,
) -> Result<Data, SourceError> {
    let fail = |reason: String| SourceError::Prometheus {
        query: promql.to_owned(),
        reason,
    };
    let url = url(base_url, "/api/v1/query");
    let response = http
        .get(&url)
        .query(&[("query", promql)])
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| fail(describe(&error, timeout)))?;
    let status = response.status();
    let bytes = body(response, timeout).await.map_err(fail)?;
    // Prometheus answers errors (400, 422, 503) with the same JSON envelope.
    let answer: Answer = match serde_json::from_slice(&bytes) {
        Ok(answer) => answer,
        Err(error) if status.is_success() => {
            return Err(fail(format!("unreadable answer from {url}: {error}")));
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes);
            let text: String = text.chars().take(200).collect();
            return Err(fail(format!("{url} answered {status}: {}", text.trim())));
        }
    };
    if answer.status != "success" {
        let kind = answer.error_type.unwrap_or_else(|| answer.status.clone());
        let message = answer.error.unwrap_or_else(|| "no error message".into());
        return Err(fail(format!("{kind}: {message} (HTTP {status})")));
    }
    answer
        .data
        .ok_or_else(|| fail("a success answer without data".into()))
}

/// The Prometheus names of the histograms, and where they go in [`VersionSeries`].
/// Where a histogram goes in [`VersionSeries`].
type Field = fn(&mut VersionSeries) -> &mut Histogram;

/// Buckets, sum and count of one version's histogram, as the answers arrive.
type Parts = (Vec<(f64, u64)>, f64, Option<u64>);

const HISTOGRAMS: [(&str, Field); 3] = [
    ("modelplane_request_duration_seconds", |s| &mut s.latency),
    ("gen_ai_server_time_to_first_token_seconds", |s| {
        &mut s.time_to_first_token
    }),
    ("gen_ai_server_time_per_output_token_seconds", |s| {
        &mut s.time_per_output_token
    }),
];

/// A PromQL range duration: `60s`, or `1500ms` when not whole seconds.
fn range(interval: Duration) -> String {
    let millis = interval.as_millis().max(1);
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// An `increase()` count as a whole number (`increase` extrapolates to fractions).
fn whole(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

/// The interval [`Snapshot`] of the last `interval`, from Prometheus: for every series of
/// [`super::series`], `sum by (version, …) (increase(<series>{<selector>}[<interval>]))`.
/// `selector` is the inside of a PromQL label matcher, e.g.
/// `namespace="team-a",model="resnet18"`. `increase()` extrapolates, so its counts are
/// rounded to whole numbers, and its buckets made cumulative again
/// ([`Histogram::from_buckets`]). The queries run concurrently; any failing fails the
/// window.
pub async fn window(
    http: &reqwest::Client,
    base_url: &str,
    selector: &str,
    interval: Duration,
    timeout: Duration,
) -> Result<Snapshot, SourceError> {
    let range = range(interval);
    let increase = |series: &str, by: &str| {
        format!("sum by ({by}) (increase({series}{{{selector}}}[{range}]))")
    };
    let mut queries = vec![
        increase("modelplane_requests_total", "version, outcome"),
        increase("modelplane_generate_requests_total", "version, outcome"),
        increase("modelplane_generate_empty_outputs_total", "version"),
    ];
    for (name, _) in HISTOGRAMS {
        queries.push(increase(&format!("{name}_bucket"), "version, le"));
        queries.push(increase(&format!("{name}_sum"), "version"));
        queries.push(increase(&format!("{name}_count"), "version"));
    }
    let answers = futures::future::try_join_all(
        queries
            .iter()
            .map(|promql| vector(http, base_url, promql, timeout)),
    )
    .await?;
    let mut answers = answers.into_iter();
    let mut next = || answers.next().unwrap_or_default();
    let entry = |labels: &BTreeMap<String, String>| labels.get("version").cloned();
    let mut versions: BTreeMap<String, VersionSeries> = BTreeMap::new();
    // By version and outcome, into the map `field` picks.
    let mut by_outcome =
        |samples: Vec<Sample>, field: fn(&mut VersionSeries) -> &mut BTreeMap<String, u64>| {
            for (labels, value) in samples {
                if let (Some(version), Some(outcome)) = (entry(&labels), labels.get("outcome")) {
                    *field(versions.entry(version).or_default())
                        .entry(outcome.clone())
                        .or_default() += whole(value);
                }
            }
        };
    by_outcome(next(), |s| &mut s.requests);
    by_outcome(next(), |s| &mut s.generations);
    for (labels, value) in next() {
        if let Some(version) = entry(&labels) {
            versions.entry(version).or_default().empty_outputs += whole(value);
        }
    }
    for (_, field) in HISTOGRAMS {
        let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
        for (labels, value) in next() {
            let bound = labels.get("le").and_then(|le| le.parse::<f64>().ok());
            if let (Some(version), Some(bound)) = (entry(&labels), bound) {
                parts
                    .entry(version)
                    .or_default()
                    .0
                    .push((bound, whole(value)));
            }
        }
        for (labels, value) in next() {
            if let Some(version) = entry(&labels) {
                parts.entry(version).or_default().1 += if value.is_nan() { 0.0 } else { value };
            }
        }
        for (labels, value) in next() {
            if let Some(version) = entry(&labels) {
                let count = &mut parts.entry(version).or_default().2;
                *count = Some(count.unwrap_or(0) + whole(value));
            }
        }
        for (version, (buckets, sum, count)) in parts {
            *field(versions.entry(version).or_default()) =
                Histogram::from_buckets(buckets, sum, count);
        }
    }
    Ok(Snapshot { versions })
}

#[cfg(test)]
#[path = "prometheus_tests.rs"]
mod tests;
