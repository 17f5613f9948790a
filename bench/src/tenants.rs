//! Several tenants on one server at once (`modelplane-bench tenants`): client
//! groups, each with its own API key, load (a closed loop or an open-loop
//! rate), prompts and bounds, run side by side on one async runtime.
//!
//! Per group it reports the outcomes — 429s (over the tenant's budget) above
//! all — and the latency that matters: end to end for tensor protocols, time
//! to first token for streamed generation. For generation it also rebuilds
//! the service each group received over time, in weighted tokens (prompt
//! tokens × the input weight when the first token arrives, each streamed
//! token × the output weight when it arrives), and reports the largest gap
//! between two groups' cumulative curves while both issue requests, next to
//! the virtual token counter's bound `2 · (w_in · L_in + w_out · M)` (Sheng et
//! al., OSDI '24: L_in the longest prompt, M the largest `max_tokens`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::client::{Client, Protocol, Target};
use crate::load::{self, Limits, Measured, Probe, Tally};
use crate::plan::{Input, Load};
use crate::report::{Recorder, Report, Scenario};
use crate::schedule::{Arrivals, Schedule};
use crate::stream::prompts::Prompts;
use crate::stream::trace::Completed;
use crate::stream::{
    Generation, StreamClient, StreamPlan, StreamProtocol, StreamRecorder, StreamReport,
    StreamSample, StreamScenario,
};
use crate::tensor::{DataType, parse_datatype, parse_shape};
use modelplane_config::units::parse_duration;

/// Status label of a request refused for its tenant's budget.
pub const RATE_LIMITED: &str = "429";

/// Most requests a group sends when its spec sets no `requests=`.
pub const DEFAULT_REQUESTS: u64 = 1_000_000;

/// One client group: a tenant's key and how it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    /// Name in the report (usually the tenant's).
    pub name: String,
    /// Sent as `Authorization: Bearer <key>`; anonymous when unset.
    pub api_key: Option<String>,
    pub load: Load,
    /// Most requests sent; [`DEFAULT_REQUESTS`] when unset.
    pub requests: Option<u64>,
    /// How long it sends for; the run's `--duration` when unset.
    pub duration: Option<Duration>,
    /// Generation: this group's prompts; the run's (or the built-in set) when unset.
    pub prompts: Option<PathBuf>,
    /// Generation: `max_tokens` of this group's requests; the run's when unset.
    pub max_tokens: Option<u32>,
    /// Seed of Poisson arrivals; the run's when unset.
    pub seed: Option<u64>,
}

impl FromStr for GroupSpec {
    type Err = String;

    /// `name=a,key=KEY,rate=500[,arrivals=uniform|poisson][,max-in-flight=N]` or
    /// `name=b,key=KEY,concurrency=8`, plus optional `requests=N`,
    /// `duration=10s`, `prompts=PATH`, `max-tokens=N`, `seed=N`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut fields = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("group {text:?}: {part:?} is not key=value"))?;
            let key = key.trim().replace('_', "-");
            if fields
                .insert(key.clone(), value.trim().to_owned())
                .is_some()
            {
                return Err(format!("group {text:?}: {key} given twice"));
            }
        }
        let take = |fields: &mut BTreeMap<String, String>, key: &str| fields.remove(key);
        let number = |key: &str, value: Option<String>| -> Result<Option<u64>, String> {
            value
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| format!("group {text:?}: {key}={v:?} is not a whole number"))
                })
                .transpose()
        };
        let name = take(&mut fields, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("group {text:?}: name= is required"))?;
        let api_key = take(&mut fields, "key").filter(|k| !k.is_empty());
        let rate = take(&mut fields, "rate");
        let concurrency = number("concurrency", take(&mut fields, "concurrency"))?;
        let arrivals = take(&mut fields, "arrivals");
        let max_in_flight = number("max-in-flight", take(&mut fields, "max-in-flight"))?;
        let load = match (rate, concurrency) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "group {text:?}: rate= and concurrency= exclude each other"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "group {text:?}: give rate= (open loop) or concurrency= (closed loop)"
                ));
            }
            (None, Some(c)) => {
                if arrivals.is_some() || max_in_flight.is_some() {
                    return Err(format!(
                        "group {text:?}: arrivals= and max-in-flight= need rate="
                    ));
                }
                Load::Closed {
                    concurrency: usize::try_from(c).unwrap_or(usize::MAX).max(1),
                }
            }
            (Some(rate), None) => {
                let rate: f64 = rate
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite() && *r > 0.0)
                    .ok_or_else(|| {
                        format!("group {text:?}: rate={rate:?} is not a positive number")
                    })?;
                let arrivals = match arrivals.as_deref() {
                    None | Some("uniform") => Arrivals::Uniform,
                    Some("poisson") => Arrivals::Poisson,
                    Some(other) => {
                        return Err(format!(
                            "group {text:?}: arrivals={other:?}: uniform or poisson"
                        ));
                    }
                };
                Load::Open {
                    rate,
                    arrivals,
                    max_in_flight: max_in_flight
                        .map_or(1024, |n| usize::try_from(n).unwrap_or(usize::MAX))
                        .max(1),
                }
            }
        };
        let requests = number("requests", take(&mut fields, "requests"))?;
        let duration = take(&mut fields, "duration")
            .map(|d| parse_duration(&d).map_err(|e| format!("group {text:?}: duration={d:?}: {e}")))
            .transpose()?;
        let prompts = take(&mut fields, "prompts").map(PathBuf::from);
        let max_tokens = number("max-tokens", take(&mut fields, "max-tokens"))?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX).max(1));
        let seed = number("seed", take(&mut fields, "seed"))?;
        if let Some(unknown) = fields.keys().next() {
            return Err(format!(
                "group {text:?}: unknown field {unknown:?} (name, key, rate, arrivals, \
                 max-in-flight, concurrency, requests, duration, prompts, max-tokens, seed)"
            ));
        }
        Ok(Self {
            name,
            api_key,
            load,
            requests,
            duration,
            prompts,
            max_tokens,
            seed,
        })
    }
}

/// The wire formats a tenants run can drive (each with an API key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TenantsProtocol {
    RestJson,
    RestBinary,
    Grpc,
    OpenaiCompletions,
    OpenaiChat,
}

impl TenantsProtocol {
    fn split(self) -> Result<Protocol, StreamProtocol> {
        match self {
            Self::RestJson => Ok(Protocol::RestJson),
            Self::RestBinary => Ok(Protocol::RestBinary),
            Self::Grpc => Ok(Protocol::Grpc),
            Self::OpenaiCompletions => Err(StreamProtocol::OpenAiCompletions),
            Self::OpenaiChat => Err(StreamProtocol::OpenAiChat),
        }
    }

    fn as_str(self) -> &'static str {
        match self.split() {
            Ok(p) => p.as_str(),
            Err(p) => p.as_str(),
        }
    }
}

/// `modelplane-bench tenants`: client groups of several tenants against one
/// server at once.
///
/// Each `--group` is one tenant's clients, e.g.
/// `--group name=a,key=KEY_A,rate=1000` (open loop, evenly spaced) and
/// `--group name=b,key=KEY_B,rate=100`, or `concurrency=8` for a closed
/// loop. Every group stops at its `requests=` or `duration=` (default
/// `--duration`), whichever comes first.
#[derive(Debug, clap::Parser)]
#[command(name = "modelplane-bench tenants")]
pub struct TenantsArgs {
    /// Base URL of the HTTP listener, or of the gRPC listener with `--protocol grpc`.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    #[arg(long, value_enum, default_value = "rest-binary")]
    pub protocol: TenantsProtocol,
    /// Model name.
    #[arg(long)]
    pub model: String,
    /// Model version; empty selects the default version.
    #[arg(long, default_value = "")]
    pub model_version: String,
    /// A client group: `name=N,key=K,rate=R|concurrency=C[,arrivals=uniform|poisson]
    /// [,max-in-flight=N][,requests=N][,duration=D][,prompts=PATH][,max-tokens=N][,seed=N]`.
    #[arg(long = "group", required = true)]
    pub groups: Vec<GroupSpec>,
    /// How long each group sends for, unless its spec says.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Generation: prompts of groups whose spec names none; the built-in set when unset.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Generation: `max_tokens` of groups whose spec sets none.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Generation: sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Tensor protocols: input name; read from the model metadata when unset.
    #[arg(long)]
    pub input_name: Option<String>,
    /// Input datatype, e.g. FP32; read from the model metadata when unset.
    #[arg(long, value_parser = |s: &str| parse_datatype(s).map_err(|e| e.to_string()))]
    pub datatype: Option<DataType>,
    /// Input shape, e.g. 1,784; read from the model metadata when unset.
    #[arg(long)]
    pub shape: Option<String>,
    /// Rows per request when the metadata's first dimension is free (-1).
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Time limit of one request (a whole stream); 10s for tensor protocols
    /// and 300s for streaming ones when unset.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Fairness: weight of a prompt token in the service curves.
    #[arg(long, default_value_t = 1)]
    pub input_weight: u32,
    /// Fairness: weight of a generated token in the service curves.
    #[arg(long, default_value_t = 2)]
    pub output_weight: u32,
    /// Service gap: the steady-state window starts this long after the start.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub gap_skip: Duration,
    /// Seed of random input values and Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads of the load generator's async runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Label copied into the report.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Also write the report here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Everything a tenants run needs.
#[derive(Debug, Clone)]
pub struct TenantsPlan {
    pub label: String,
    pub protocol: TenantsProtocol,
    pub url: String,
    pub model: String,
    pub version: String,
    pub timeout: Duration,
    pub groups: Vec<GroupSpec>,
    pub duration: Duration,
    pub prompts: Option<PathBuf>,
    pub max_tokens: u32,
    pub temperature: f32,
    pub input: Input,
    pub weights: Weights,
    pub gap_skip: Duration,
    pub seed: u64,
}

/// How service is weighed: the runtime's `fairness` weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Weights {
    pub input: u32,
    pub output: u32,
}

impl TenantsArgs {
    /// The run the flags ask for.
    pub fn plan(&self) -> Result<TenantsPlan, String> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!(
                "--temperature must be ≥ 0, got {}",
                self.temperature
            ));
        }
        let mut names = std::collections::HashSet::new();
        for group in &self.groups {
            if !names.insert(group.name.as_str()) {
                return Err(format!("--group name={} is given twice", group.name));
            }
        }
        let shape = match &self.shape {
            Some(text) => Some(parse_shape(text).map_err(|e| e.to_string())?),
            None => None,
        };
        let streaming = self.protocol.split().is_err();
        let default_timeout = if streaming { 300 } else { 10 };
        Ok(TenantsPlan {
            label: self.label.clone(),
            protocol: self.protocol,
            url: self.url.clone(),
            model: self.model.clone(),
            version: self.model_version.clone(),
            timeout: self.timeout.unwrap_or(Duration::from_secs(default_timeout)),
            groups: self.groups.clone(),
            duration: self.duration,
            prompts: self.prompts.clone(),
            max_tokens: self.max_tokens.max(1),
            temperature: self.temperature,
            input: Input {
                name: self.input_name.clone(),
                datatype: self.datatype,
                shape,
                batch: self.batch,
                file: None,
                seed: self.seed,
            },
            weights: Weights {
                input: self.input_weight,
                output: self.output_weight,
            },
            gap_skip: self.gap_skip,
            seed: self.seed,
        })
    }
}

impl TenantsPlan {
    fn target(&self, group: &GroupSpec) -> Target {
        Target {
            url: self.url.clone(),
            model: self.model.clone(),
            version: self.version.clone(),
            timeout: self.timeout,
            api_key: group.api_key.clone(),
        }
    }

    fn limits(&self, group: &GroupSpec) -> Limits {
        Limits {
            requests: group.requests.unwrap_or(DEFAULT_REQUESTS),
            duration: group.duration.unwrap_or(self.duration),
        }
    }
}

/// One credit of service a group received: `input` prompt tokens and `output`
/// generated tokens, `at` after the run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    pub at: Duration,
    pub input: u64,
    pub output: u64,
}

impl Credit {
    /// Its cost in weighted tokens.
    pub fn cost(&self, weights: Weights) -> u64 {
        self.input * u64::from(weights.input) + self.output * u64::from(weights.output)
    }
}

/// The credits of one streamed request issued `issued` after the start: its
/// prompt when its first token came (the prompt was read by then), each
/// streamed piece with text as one generated token when it came, and what the
/// server's usage counts beyond the pieces at the end of the stream. Without
/// usage, only the pieces count.
pub fn credits(issued: Duration, done: &Completed) -> Vec<Credit> {
    let (prompt, completion) = done
        .usage
        .map_or((0, done.chunks), |u| (u.prompt_tokens, u.completion_tokens));
    let end = issued + done.e2e;
    let mut out = Vec::with_capacity(done.gaps.len() + 2);
    let Some(ttft) = done.ttft else {
        out.push(Credit {
            at: end,
            input: prompt,
            output: completion,
        });
        return out;
    };
    let mut at = issued + ttft;
    let streamed = done.chunks.min(completion);
    out.push(Credit {
        at,
        input: prompt,
        output: u64::from(streamed > 0),
    });
    for gap in done.gaps.iter().take(streamed.saturating_sub(1) as usize) {
        at += *gap;
        out.push(Credit {
            at,
            input: 0,
            output: 1,
        });
    }
    if completion > streamed {
        out.push(Credit {
            at: end,
            input: 0,
            output: completion - streamed,
        });
    }
    out
}

/// The largest difference between two groups' cumulative service up to `until`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapStats {
    /// Largest |service(a) − service(b)| in weighted tokens.
    pub max_gap_tokens: u64,
    /// When it was reached, seconds after the start.
    pub at_s: f64,
    /// The group ahead then (empty when the gap is 0).
    pub ahead: String,
    /// Each group's weighted tokens in the window.
    pub a_tokens: u64,
    pub b_tokens: u64,
    /// Largest |service(a) − service(b)| over any interval inside the window.
    pub any_interval_gap_tokens: u64,
}

/// Walks both groups' credits in time order within `from..=until` (credits at
/// one instant settle together) and keeps the largest difference of the sums
/// counted from `from`, and the largest over any interval inside the window
/// (the highest minus the lowest difference).
pub fn max_gap(
    a: (&str, &[Credit]),
    b: (&str, &[Credit]),
    weights: Weights,
    from: Duration,
    until: Duration,
) -> GapStats {
    let mut events: Vec<(Duration, i128, u64, u64)> = Vec::new();
    for (credits, sign) in [(a.1, 1i128), (b.1, -1i128)] {
        for c in credits.iter().filter(|c| c.at >= from && c.at <= until) {
            let cost = c.cost(weights);
            let (ca, cb) = if sign > 0 { (cost, 0) } else { (0, cost) };
            events.push((c.at, sign * i128::from(cost), ca, cb));
        }
    }
    events.sort_by_key(|e| e.0);
    let (mut diff, mut best, mut best_at, mut sum_a, mut sum_b) = (0i128, 0i128, 0.0, 0u64, 0u64);
    let (mut high, mut low) = (0i128, 0i128);
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        while i < events.len() && events[i].0 == at {
            diff += events[i].1;
            sum_a += events[i].2;
            sum_b += events[i].3;
            i += 1;
        }
        if diff.abs() > best.abs() {
            best = diff;
            best_at = at.as_secs_f64();
        }
        high = high.max(diff);
        low = low.min(diff);
    }
    let ahead = match best.signum() {
        1 => a.0.to_owned(),
        -1 => b.0.to_owned(),
        _ => String::new(),
    };
    GapStats {
        max_gap_tokens: u64::try_from(best.unsigned_abs()).unwrap_or(u64::MAX),
        at_s: best_at,
        ahead,
        a_tokens: sum_a,
        b_tokens: sum_b,
        any_interval_gap_tokens: u64::try_from(high - low).unwrap_or(u64::MAX),
    }
}

/// The virtual token counter's bound on the service gap between two
/// backlogged flows: `2 · (w_in · longest prompt + w_out · max_tokens)`.
pub fn vtc_bound(weights: Weights, longest_prompt: u64, max_tokens: u64) -> u64 {
    2 * (u64::from(weights.input) * longest_prompt + u64::from(weights.output) * max_tokens)
}

/// The service gap of one pair of generation groups, against the bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairGap {
    pub a: String,
    pub b: String,
    /// The window compared: from the start to when the first of the two stops
    /// sending (closed loops, so both keep requests outstanding throughout).
    pub window_s: f64,
    /// Counted from the start.
    #[serde(flatten)]
    pub gap: GapStats,
    /// Where `steady` starts: `--gap-skip` after the start, past the moment
    /// the first requests of whichever group came first took the free slots.
    pub steady_from_s: f64,
    /// Counted from `steady_from_s`.
    pub steady: GapStats,
    /// Longest prompt of a successful request of either group, in tokens (usage).
    pub longest_prompt: u64,
    pub max_tokens: u64,
    pub bound_tokens: u64,
    /// `max_gap_tokens / bound_tokens`.
    pub gap_over_bound: f64,
}

/// The latency a group is judged by, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Judged {
    /// `e2e` (tensor requests) or `ttft` (streamed generation).
    pub measure: &'static str,
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What one group measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupReport {
    pub name: String,
    /// Requests counted, successful or not.
    pub requests: u64,
    pub ok: u64,
    /// Refused with 429 (over the tenant's budget).
    pub rate_limited: u64,
    /// `ok / requests`, in percent (100 when nothing was sent).
    pub success_pct: f64,
    /// `rate_limited / requests`, in percent.
    pub rate_limited_pct: f64,
    pub errors: BTreeMap<String, u64>,
    pub latency: Judged,
    /// The full tensor report (tensor protocols).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor: Option<Report>,
    /// The full streaming report (generation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamReport>,
}

impl GroupReport {
    /// Counts from `errors`, `ok` and the judged latency.
    pub fn new(name: &str, ok: u64, errors: &BTreeMap<String, u64>, latency: Judged) -> Self {
        let failed: u64 = errors.values().sum();
        let requests = ok + failed;
        let rate_limited = errors.get(RATE_LIMITED).copied().unwrap_or(0);
        let pct = |n: u64| {
            if requests == 0 {
                0.0
            } else {
                100.0 * n as f64 / requests as f64
            }
        };
        Self {
            name: name.to_owned(),
            requests,
            ok,
            rate_limited,
            success_pct: if requests == 0 { 100.0 } else { pct(ok) },
            rate_limited_pct: pct(rate_limited),
            errors: errors.clone(),
            latency,
            tensor: None,
            stream: None,
        }
    }
}

/// The summary of a tenants run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantsReport {
    pub label: String,
    pub protocol: String,
    pub url: String,
    pub model: String,
    pub weights: Weights,
    pub elapsed_s: f64,
    pub groups: Vec<GroupReport>,
    /// Generation: the service gap of every pair of groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<PairGap>,
}

impl fmt::Display for TenantsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.label.is_empty() {
            write!(f, "{} — ", self.label)?;
        }
        writeln!(
            f,
            "{} {} model {}, {} groups, {:.2} s",
            self.protocol,
            self.url,
            self.model,
            self.groups.len(),
            self.elapsed_s
        )?;
        for g in &self.groups {
            let errors: Vec<String> = g
                .errors
                .iter()
                .map(|(status, n)| format!("{status}: {n}"))
                .collect();
            writeln!(
                f,
                "  {}: {} requests, {} ok ({:.2} %), 429 {} ({:.2} %); {} p50 {:.2} ms p99 {:.2} ms max {:.2} ms (n {}); errors: {}",
                g.name,
                g.requests,
                g.ok,
                g.success_pct,
                g.rate_limited,
                g.rate_limited_pct,
                g.latency.measure,
                g.latency.p50_ms,
                g.latency.p99_ms,
                g.latency.max_ms,
                g.latency.count,
                if errors.is_empty() {
                    "none".to_owned()
                } else {
                    errors.join(", ")
                }
            )?;
        }
        for p in &self.service {
            writeln!(
                f,
                "  service {} vs {} over {:.1} s: {} vs {} weighted tokens; max gap {} tokens at {:.2} s ({} ahead); from {:.1} s on: {} (any interval {}); VTC bound 2·({}·{} + {}·{}) = {} ({:.2} of it)",
                p.a,
                p.b,
                p.window_s,
                p.gap.a_tokens,
                p.gap.b_tokens,
                p.gap.max_gap_tokens,
                p.gap.at_s,
                if p.gap.ahead.is_empty() {
                    "neither"
                } else {
                    &p.gap.ahead
                },
                p.steady_from_s,
                p.steady.max_gap_tokens,
                p.steady.any_interval_gap_tokens,
                self.weights.input,
                p.longest_prompt,
                self.weights.output,
                p.max_tokens,
                p.bound_tokens,
                p.gap_over_bound
            )?;
        }
        Ok(())
    }
}

/// A streaming probe that also says when, after the run's start, the request was issued.
#[derive(Debug, Clone)]
struct Timed {
    client: StreamClient,
    start: Instant,
}

impl Probe for Timed {
    type Sample = (Duration, StreamSample);

    async fn send(&mut self, issued: Instant) -> (Duration, StreamSample) {
        let at = issued.saturating_duration_since(self.start);
        (at, self.client.send(issued).await)
    }
}

/// A streaming group's latencies and its service credits.
#[derive(Debug, Default)]
struct ServiceTally {
    recorder: StreamRecorder,
    credits: Vec<Credit>,
    longest_prompt: u64,
}

impl Tally for ServiceTally {
    type Sample = (Duration, StreamSample);

    fn observe(&mut self, (issued, sample): (Duration, StreamSample)) {
        if let Ok(done) = &sample {
            self.credits.extend(credits(issued, done));
            if let Some(usage) = done.usage {
                self.longest_prompt = self.longest_prompt.max(usage.prompt_tokens);
            }
        }
        self.recorder.observe(sample);
    }

    fn fail(&mut self, status: &str) {
        self.recorder.fail(status);
    }

    fn absorb(&mut self, other: &Self) {
        self.recorder.absorb(&other.recorder);
        self.credits.extend_from_slice(&other.credits);
        self.longest_prompt = self.longest_prompt.max(other.longest_prompt);
    }
}

enum Finished {
    Tensor(Box<Report>),
    Stream {
        report: Box<StreamReport>,
        credits: Vec<Credit>,
        longest_prompt: u64,
    },
}

/// Runs every group at once and summarises them.
pub async fn run(plan: &TenantsPlan) -> Result<TenantsReport, Error> {
    let start = Instant::now();
    let mut tasks: JoinSet<(usize, Result<Finished, Error>)> = JoinSet::new();
    match plan.protocol.split() {
        Ok(protocol) => {
            // One input tensor for every group, from the first group's view of the metadata.
            let first = plan
                .groups
                .first()
                .ok_or_else(|| Error::Tenants("no groups".into()))?;
            let probe = crate::Plan {
                label: String::new(),
                protocol,
                target: plan.target(first),
                input: plan.input.clone(),
                load: first.load,
                limits: plan.limits(first),
                warmup_requests: 0,
            };
            let tensor = crate::plan::input_tensor(&probe).await?;
            for (i, group) in plan.groups.iter().enumerate() {
                let connections = connections(group.load);
                let client =
                    Client::connect(protocol, &plan.target(group), &tensor, connections).await?;
                let scenario = Scenario {
                    label: group.name.clone(),
                    protocol: protocol.as_str().to_owned(),
                    url: plan.url.clone(),
                    model: plan.model.clone(),
                    model_version: plan.version.clone(),
                    input: tensor.name.clone(),
                    datatype: tensor.datatype.as_str().to_owned(),
                    shape: tensor.shape.clone(),
                    mode: group.load.mode(),
                };
                let (load, limits, seed) = (group.load, plan.limits(group), seed(plan, group));
                let rows = tensor.rows();
                tasks.spawn(async move {
                    let measured: Measured<Recorder> = drive(&client, load, limits, seed).await;
                    let report = Report::new(scenario, &measured.tally, measured.elapsed, rows);
                    (i, Ok(Finished::Tensor(Box::new(report))))
                });
            }
        }
        Err(protocol) => {
            for (i, group) in plan.groups.iter().enumerate() {
                let prompts = match group.prompts.as_ref().or(plan.prompts.as_ref()) {
                    Some(path) => Prompts::from_file(path)?,
                    None => Prompts::builtin(),
                };
                let stream_plan = StreamPlan {
                    label: group.name.clone(),
                    protocol,
                    target: plan.target(group),
                    generation: Generation {
                        prompts,
                        max_tokens: group.max_tokens.unwrap_or(plan.max_tokens),
                        temperature: plan.temperature,
                    },
                    load: group.load,
                    limits: plan.limits(group),
                    warmup_requests: 0,
                    seed: seed(plan, group),
                };
                let client = StreamClient::connect(&stream_plan, connections(group.load)).await?;
                let probe = Timed { client, start };
                tasks.spawn(async move {
                    let p = &stream_plan;
                    let measured: Measured<ServiceTally> =
                        drive(&probe, p.load, p.limits, p.seed).await;
                    let scenario = StreamScenario {
                        label: p.label.clone(),
                        protocol: p.protocol.as_str().to_owned(),
                        url: p.target.url.clone(),
                        model: p.target.model.clone(),
                        max_tokens: p.generation.max_tokens,
                        temperature: p.generation.temperature,
                        prompts: p.generation.prompts.all().len(),
                        mode: p.load.mode(),
                    };
                    let report =
                        StreamReport::new(scenario, &measured.tally.recorder, measured.elapsed);
                    (
                        i,
                        Ok(Finished::Stream {
                            report: Box::new(report),
                            credits: measured.tally.credits,
                            longest_prompt: measured.tally.longest_prompt,
                        }),
                    )
                });
            }
        }
    }
    let mut finished: Vec<Option<Finished>> = plan.groups.iter().map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.map_err(|e| Error::Tenants(format!("a group failed: {e}")))?;
        finished[i] = Some(result?);
    }
    let elapsed = start.elapsed();
    let mut groups = Vec::new();
    let mut curves: Vec<(String, Vec<Credit>, u64, u64, Duration)> = Vec::new();
    for (group, done) in plan.groups.iter().zip(finished) {
        let Some(done) = done else {
            return Err(Error::Tenants(format!(
                "group {} did not finish",
                group.name
            )));
        };
        match done {
            Finished::Tensor(report) => {
                let l = &report.latency_us;
                let latency = Judged {
                    measure: "e2e",
                    count: report.ok,
                    p50_ms: l.p50 / 1e3,
                    p90_ms: l.p90 / 1e3,
                    p99_ms: l.p99 / 1e3,
                    max_ms: l.max / 1e3,
                };
                let mut g = GroupReport::new(&group.name, report.ok, &report.errors, latency);
                g.tensor = Some(*report);
                groups.push(g);
            }
            Finished::Stream {
                report,
                credits,
                longest_prompt,
            } => {
                let t = &report.ttft_ms;
                let latency = Judged {
                    measure: "ttft",
                    count: t.count,
                    p50_ms: t.p50,
                    p90_ms: t.p90,
                    p99_ms: t.p99,
                    max_ms: t.max,
                };
                let mut g = GroupReport::new(&group.name, report.ok, &report.errors, latency);
                // Only a closed loop keeps its group backlogged; an open loop's
                // service follows its rate, not the scheduler.
                if matches!(group.load, Load::Closed { .. }) {
                    curves.push((
                        group.name.clone(),
                        credits,
                        longest_prompt,
                        u64::from(report.scenario.max_tokens),
                        plan.limits(group).duration,
                    ));
                }
                g.stream = Some(*report);
                groups.push(g);
            }
        }
    }
    let mut service = Vec::new();
    for (i, a) in curves.iter().enumerate() {
        for b in &curves[i + 1..] {
            let until = a.4.min(b.4);
            let gap = max_gap(
                (&a.0, &a.1),
                (&b.0, &b.1),
                plan.weights,
                Duration::ZERO,
                until,
            );
            let from = plan.gap_skip.min(until);
            let steady = max_gap((&a.0, &a.1), (&b.0, &b.1), plan.weights, from, until);
            let longest_prompt = a.2.max(b.2);
            let max_tokens = a.3.max(b.3);
            let bound = vtc_bound(plan.weights, longest_prompt, max_tokens);
            service.push(PairGap {
                a: a.0.clone(),
                b: b.0.clone(),
                window_s: until.as_secs_f64(),
                gap_over_bound: if bound == 0 {
                    0.0
                } else {
                    gap.max_gap_tokens as f64 / bound as f64
                },
                gap,
                steady_from_s: from.as_secs_f64(),
                steady,
                longest_prompt,
                max_tokens,
                bound_tokens: bound,
            });
        }
    }
    Ok(TenantsReport {
        label: plan.label.clone(),
        protocol: plan.protocol.as_str().to_owned(),
        url: plan.url.clone(),
        model: plan.model.clone(),
        weights: plan.weights,
        elapsed_s: elapsed.as_secs_f64(),
        groups,
        service,
    })
}

fn seed(plan: &TenantsPlan, group: &GroupSpec) -> u64 {
    group.seed.unwrap_or(plan.seed)
}

fn connections(load: Load) -> usize {
    match load {
        Load::Closed { concurrency } => concurrency,
        Load::Open { max_in_flight, .. } => max_in_flight.min(256),
    }
}

async fn drive<P, T>(probe: &P, load: Load, limits: Limits, seed: u64) -> Measured<T>
where
    P: Probe,
    T: Tally<Sample = P::Sample>,
{
    match load {
        Load::Closed { concurrency } => load::closed_loop(probe, concurrency, limits).await,
        Load::Open {
            rate,
            arrivals,
            max_in_flight,
        } => {
            let schedule = Schedule::new(arrivals, rate, seed);
            load::open_loop(probe, schedule, max_in_flight, limits).await
        }
    }
}
