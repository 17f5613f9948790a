//! Parser of the Prometheus text exposition format as the runtime's `/metrics` serves it
//! (prometheus-client's OpenMetrics-flavoured text), reduced to the series a Canary
//! analysis reads (see [`super::series`]) of one model.
//!
//! Every line is checked: comments (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) and blank
//! lines are skipped, samples of other series or other models are parsed and dropped,
//! and a line that is not a comment nor a well-formed sample is refused with an
//! [`ExpositionError`] naming it. Label values may hold escaped quotes, backslashes and
//! newlines; values may be `NaN`, `+Inf` or `-Inf`, and may be followed by a timestamp
//! and an exemplar.

use std::collections::BTreeMap;

use super::series::{Histogram, Snapshot, VersionSeries};

/// A line of the exposition that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("metrics line {line}: {reason}: {text:?}")]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
    /// The line, clipped to 120 characters.
    pub text: String,
}

/// The histograms the analysis reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Which {
    Latency,
    TimeToFirstToken,
    TimePerOutputToken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Bucket,
    Sum,
    Count,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Series {
    Requests,
    Generations,
    EmptyOutputs,
    Histogram(Which, Part),
}

/// Family names (as emitted, with prometheus-client's suffixes) of the histograms.
const HISTOGRAMS: [(&str, Which); 3] = [
    ("modelplane_request_duration_seconds", Which::Latency),
    (
        "gen_ai_server_time_to_first_token_seconds",
        Which::TimeToFirstToken,
    ),
    (
        "gen_ai_server_time_per_output_token_seconds",
        Which::TimePerOutputToken,
    ),
];

fn series(name: &str) -> Option<Series> {
    match name {
        "modelplane_requests_total" => return Some(Series::Requests),
        "modelplane_generate_requests_total" => return Some(Series::Generations),
        "modelplane_generate_empty_outputs_total" => return Some(Series::EmptyOutputs),
        _ => {}
    }
    let (family, suffix) = name.rsplit_once('_')?;
    let part = match suffix {
        "bucket" => Part::Bucket,
        "sum" => Part::Sum,
        "count" => Part::Count,
        _ => return None,
    };
    HISTOGRAMS
        .iter()
        .find(|(known, _)| *known == family)
        .map(|(_, which)| Series::Histogram(*which, part))
}

/// One parsed sample line.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl Sample<'_> {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct HistogramParts {
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: Option<u64>,
}

/// Reads the series of `model` from a `/metrics` text: per version, summed over tenants.
pub fn parse(text: &str, model: &str) -> Result<Snapshot, ExpositionError> {
    let mut versions: BTreeMap<String, VersionSeries> = BTreeMap::new();
    let mut histograms: BTreeMap<(String, Which), HistogramParts> = BTreeMap::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let fail = |reason: String| ExpositionError {
            line: index + 1,
            reason,
            text: clip(line),
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let sample = sample(trimmed).map_err(|reason| fail(reason.to_owned()))?;
        let Some(kind) = series(sample.name) else {
            continue;
        };
        if sample.label("model") != Some(model) {
            continue;
        }
        let version = sample
            .label("version")
            .ok_or_else(|| fail("no version label".into()))?
            .to_owned();
        let entry = versions.entry(version.clone()).or_default();
        match kind {
            Series::Requests | Series::Generations => {
                let outcome = sample
                    .label("outcome")
                    .ok_or_else(|| fail("no outcome label".into()))?;
                let n = count(sample.value).map_err(fail)?;
                let counts = if kind == Series::Requests {
                    &mut entry.requests
                } else {
                    &mut entry.generations
                };
                let slot = counts.entry(outcome.to_owned()).or_default();
                *slot = slot.saturating_add(n);
            }
            Series::EmptyOutputs => {
                let n = count(sample.value).map_err(fail)?;
                entry.empty_outputs = entry.empty_outputs.saturating_add(n);
            }
            Series::Histogram(which, part) => {
                let parts = histograms.entry((version, which)).or_default();
                match part {
                    Part::Bucket => {
                        let le = sample
                            .label("le")
                            .ok_or_else(|| fail("histogram bucket without le label".into()))?;
                        let bound = le
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|b| !b.is_nan())
                            .ok_or_else(|| fail(format!("le {le:?} is not a number")))?;
                        let n = count(sample.value).map_err(fail)?;
                        parts.buckets.push((bound, n));
                    }
                    Part::Sum => parts.sum += sample.value,
                    Part::Count => {
                        let n = count(sample.value).map_err(fail)?;
                        parts.count = Some(parts.count.unwrap_or(0).saturating_add(n));
                    }
                }
            }
        }
    }
    for ((version, which), parts) in histograms {
        let histogram = Histogram::from_buckets(parts.buckets, parts.sum, parts.count);
        let entry = versions.entry(version).or_default();
        match which {
            Which::Latency => entry.latency = histogram,
            Which::TimeToFirstToken => entry.time_to_first_token = histogram,
            Which::TimePerOutputToken => entry.time_per_output_token = histogram,
        }
    }
    Ok(Snapshot { versions })
}

/// A counter or bucket value as a whole count.
fn count(value: f64) -> Result<u64, String> {
    if value.is_finite() && value >= 0.0 {
        // Counts are whole numbers; a float counter is rounded (saturating above u64).
        Ok(value.round() as u64)
    } else {
        Err(format!("count {value} is not a non-negative finite number"))
    }
}

fn clip(line: &str) -> String {
    match line.char_indices().nth(120) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Splits off the longest prefix of name characters.
fn take_name(rest: &str, metric: bool) -> Option<(&str, &str)> {
    let first = rest.chars().next()?;
    if !(is_name_start(first) && (metric || first != ':')) {
        return None;
    }
    let end = rest
        .char_indices()
        .find(|(_, c)| !(is_name_char(*c) && (metric || *c != ':')))
        .map_or(rest.len(), |(i, _)| i);
    Some(rest.split_at(end))
}

/// Parses one sample line: `name[{labels}] value [timestamp] [# exemplar]`.
fn sample(line: &str) -> Result<Sample<'_>, &'static str> {
    let (name, mut rest) = take_name(line, true).ok_or("not a metric name")?;
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = label_set(after, &mut labels)?;
    }
    let rest = rest
        .strip_prefix([' ', '\t'])
        .ok_or("no space before the value")?
        .trim_start();
    let (value, rest) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let value = value.parse::<f64>().map_err(|_| "value is not a number")?;
    let rest = rest.trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        let (timestamp, after) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        timestamp
            .parse::<f64>()
            .map_err(|_| "unexpected text after the value")?;
        let after = after.trim_start();
        if !after.is_empty() && !after.starts_with('#') {
            return Err("unexpected text after the timestamp");
        }
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `name="value",...}` (after the `{`) into `labels`; returns what follows `}`.
fn label_set<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(&'a str, String)>,
) -> Result<&'a str, &'static str> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (name, after) = take_name(rest, false).ok_or("bad label name")?;
        let after = after
            .trim_start()
            .strip_prefix('=')
            .ok_or("no = after a label name")?
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value is not quoted")?;
        let (value, after) = label_value(after)?;
        labels.push((name, value));
        rest = after.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("no , or } after a label");
        }
    }
}

/// Reads an escaped label value up to its closing quote; returns it and what follows.
fn label_value(rest: &str) -> Result<(String, &str), &'static str> {
    let mut value = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &rest[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, other)) => {
                    // Unknown escapes are kept as written, as Prometheus does.
                    value.push('\\');
                    value.push(other);
                }
                None => return Err("unterminated label value"),
            },
            other => value.push(other),
        }
    }
    Err("unterminated label value")
}

#[cfg(test)]
#[path = "exposition_tests.rs"]
mod tests;
