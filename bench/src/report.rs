//! What a run measured: outcomes and latencies recorded per worker, merged,
//! then summarised as throughput, percentiles and errors by status.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::Tally;
use crate::schedule::Arrivals;

/// Highest latency the histogram resolves; longer ones are clamped to it.
const MAX_LATENCY_NS: u64 = 600_000_000_000;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A success status and a fully read response.
    Ok,
    /// A failure, labelled by its status: an HTTP code (`"503"`), a gRPC code
    /// (`"grpc:Unavailable"`), `"timeout"`, `"transport"` or `"dropped"`.
    Failed(String),
}

/// Outcomes and latencies of successful requests, one per worker.
#[derive(Debug, Clone)]
pub struct Recorder {
    latencies: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder with nanosecond resolution at three significant digits.
    pub fn new() -> Self {
        let latencies = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
            .expect("constant histogram bounds are valid");
        Self {
            latencies,
            ok: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Counts one request; only successful ones contribute a latency.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok => {
                let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                self.latencies.saturating_record(nanos.max(1));
                self.ok += 1;
            }
            Outcome::Failed(status) => *self.errors.entry(status).or_default() += 1,
        }
    }

    /// Adds another worker's counts to this one.
    pub fn merge(&mut self, other: &Recorder) {
        self.latencies
            .add(&other.latencies)
            .expect("recorders share one bound");
        self.ok += other.ok;
        for (status, count) in &other.errors {
            *self.errors.entry(status.clone()).or_default() += count;
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.ok
    }
}

impl Tally for Recorder {
    type Sample = (Outcome, Duration);

    fn observe(&mut self, (outcome, latency): (Outcome, Duration)) {
        self.record(outcome, latency);
    }

    fn fail(&mut self, status: &str) {
        self.record(Outcome::Failed(status.to_owned()), Duration::ZERO);
    }

    fn absorb(&mut self, other: &Self) {
        self.merge(other);
    }
}

/// How requests were issued.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Mode {
    /// A fixed number of workers, each sending its next request when the last
    /// one is answered.
    Closed { concurrency: usize },
    /// Requests sent on a schedule regardless of answers.
    Open { rate: f64, arrivals: Arrivals },
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed { concurrency } => write!(f, "closed loop, concurrency {concurrency}"),
            Self::Open { rate, arrivals } => {
                write!(f, "open loop, {rate} req/s {arrivals:?} arrivals")
            }
        }
    }
}

/// Writes the first line of a printed report: `[label — ]protocol url mode`.
pub fn write_heading(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    protocol: impl fmt::Display,
    url: &str,
    mode: &Mode,
) -> fmt::Result {
    if !label.is_empty() {
        write!(f, "{label} — ")?;
    }
    writeln!(f, "{protocol} {url} {mode}")
}

/// Writes the last line of a printed report: the failures by status, or `none`.
pub fn write_errors(f: &mut fmt::Formatter<'_>, errors: &BTreeMap<String, u64>) -> fmt::Result {
    if errors.is_empty() {
        return write!(f, "  errors: none");
    }
    let list: Vec<String> = errors
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect();
    write!(f, "  errors: {}", list.join(", "))
}

/// What was measured: enough to rerun it and to label the numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Free text the caller chose, e.g. `mlp rest-binary c=8`.
    pub label: String,
    /// `rest-json`, `rest-binary` or `grpc`.
    pub protocol: String,
    /// The server's base URL.
    pub url: String,
    pub model: String,
    pub model_version: String,
    pub input: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    #[serde(flatten)]
    pub mode: Mode,
}

/// Latency percentiles of successful requests, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The summary a run prints and writes as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    /// Requests counted, successful or not (warm-up excluded).
    pub requests: u64,
    pub ok: u64,
    /// Failed requests by status label.
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Successful requests per second times the rows each one carries.
    pub rows_per_s: f64,
    pub latency_us: Latency,
}

impl Report {
    /// Summarises `recorder` over `elapsed`, each request carrying `rows` rows.
    pub fn new(scenario: Scenario, recorder: &Recorder, elapsed: Duration, rows: u64) -> Self {
        let failed: u64 = recorder.errors.values().sum();
        let elapsed_s = elapsed.as_secs_f64();
        let throughput_rps = if elapsed_s > 0.0 {
            recorder.ok as f64 / elapsed_s
        } else {
            0.0
        };
        Self {
            scenario,
            requests: recorder.ok + failed,
            ok: recorder.ok,
            errors: recorder.errors.clone(),
            elapsed_s,
            throughput_rps,
            rows_per_s: throughput_rps * rows as f64,
            latency_us: latency(&recorder.latencies),
        }
    }
}

fn latency(h: &Histogram<u64>) -> Latency {
    let us = |nanos: u64| nanos as f64 / 1_000.0;
    if h.is_empty() {
        return Latency {
            min: 0.0,
            mean: 0.0,
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            max: 0.0,
        };
    }
    Latency {
        min: us(h.min()),
        mean: h.mean() / 1_000.0,
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        max: us(h.max()),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        write_heading(f, &s.label, &s.protocol, &s.url, &s.mode)?;
        writeln!(
            f,
            "  model {} input {} {} {:?}",
            s.model, s.input, s.datatype, s.shape
        )?;
        writeln!(
            f,
            "  {} requests ({} ok) in {:.2} s: {:.1} req/s, {:.1} rows/s",
            self.requests, self.ok, self.elapsed_s, self.throughput_rps, self.rows_per_s
        )?;
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (mean {:.1}, min {:.1})",
            l.p50, l.p90, l.p99, l.max, l.mean, l.min
        )?;
        write_errors(f, &self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario {
            label: "t".into(),
            protocol: "grpc".into(),
            url: "http://127.0.0.1:1".into(),
            model: "mlp".into(),
            model_version: String::new(),
            input: "input__0".into(),
            datatype: "FP32".into(),
            shape: vec![4, 784],
            mode: Mode::Closed { concurrency: 8 },
        }
    }

    fn micros(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn percentiles_come_from_successful_requests_only() {
        let mut r = Recorder::new();
        for us in 1..=1000 {
            r.record(Outcome::Ok, micros(us));
        }
        r.record(Outcome::Failed("503".into()), Duration::from_secs(50));
        let report = Report::new(scenario(), &r, Duration::from_secs(2), 4);
        let l = &report.latency_us;
        let close = |got: f64, want: f64| (got - want).abs() / want < 0.002;
        assert!(close(l.p50, 500.0), "{l:?}");
        assert!(close(l.p90, 900.0), "{l:?}");
        assert!(close(l.p99, 990.0), "{l:?}");
        assert!(close(l.max, 1000.0), "{l:?}");
        assert!(close(l.min, 1.0), "{l:?}");
        assert!(close(l.mean, 500.5), "{l:?}");
    }

    #[test]
    fn throughput_counts_successes_and_rows() {
        let mut r = Recorder::new();
        for _ in 0..300 {
            r.record(Outcome::Ok, micros(10));
        }
        r.record(Outcome::Failed("timeout".into()), micros(10));
        let report = Report::new(scenario(), &r, Duration::from_secs(3), 4);
        assert_eq!(report.requests, 301);
        assert_eq!(report.ok, 300);
        assert!((report.throughput_rps - 100.0).abs() < 1e-9);
        assert!((report.rows_per_s - 400.0).abs() < 1e-9);
    }

    #[test]
    fn merged_recorders_sum_counts_and_errors() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.record(Outcome::Ok, micros(100));
        a.record(Outcome::Failed("503".into()), micros(1));
        b.record(Outcome::Ok, micros(300));
        b.record(Outcome::Failed("503".into()), micros(1));
        b.record(Outcome::Failed("grpc:Unavailable".into()), micros(1));
        a.merge(&b);
        assert_eq!(a.ok(), 2);
        let report = Report::new(scenario(), &a, Duration::from_secs(1), 1);
        assert_eq!(report.errors["503"], 2);
        assert_eq!(report.errors["grpc:Unavailable"], 1);
        assert!((report.latency_us.max - 300.0).abs() < 0.5);
    }

    #[test]
    fn empty_run_reports_zeroes_instead_of_dividing_by_zero() {
        let report = Report::new(scenario(), &Recorder::new(), Duration::ZERO, 1);
        assert_eq!(report.throughput_rps, 0.0);
        assert_eq!(report.latency_us.max, 0.0);
    }

    #[test]
    fn json_report_flattens_the_mode() {
        let mut s = scenario();
        s.mode = Mode::Open {
            rate: 250.0,
            arrivals: Arrivals::Poisson,
        };
        let report = Report::new(s, &Recorder::new(), Duration::from_secs(1), 1);
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["scenario"]["mode"], "open");
        assert_eq!(v["scenario"]["rate"], 250.0);
        assert_eq!(v["scenario"]["arrivals"], "poisson");
        assert!(v["latency_us"]["p99"].is_number());
    }

    #[test]
    fn printed_report_lists_errors_by_status() {
        let mut r = Recorder::new();
        r.record(Outcome::Failed("429".into()), micros(1));
        r.record(Outcome::Failed("429".into()), micros(1));
        let text = Report::new(scenario(), &r, Duration::from_secs(1), 1).to_string();
        assert!(text.contains("errors: 429: 2"), "{text}");
    }
}
