//! A model's resilience: the circuit breaker each of its versions keeps
//! ([`BreakerConfig`]) and the chain of stand-ins a request goes down while the
//! breaker of the version it was routed to is open ([`FallbackHop`]).
//!
//! The breaker counts a version's outcomes over a sliding window: model failures and
//! timeouts are failures; refusals for bad input, budgets or load are neither. It opens
//! when the window's failure share reaches `errorPercent`, or `baselineFactor` times the
//! version's own recent share (and at least `minErrorPercent`): a version that never
//! fails opens on a small rise, one that always fails a little does not open on its
//! usual noise. After `openFor` it lets `probes` requests through; they all succeed and
//! it closes, one fails and it opens again for twice as long (up to `maxOpenFor`).

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Duration, ModelConfig, Task};
use modelplane_wire::{DataType, element_count};

/// Thresholds of the circuit breaker of each of a model's versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerConfig {
    /// The sliding window the failure share is measured over.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Requests the window needs before it may open the breaker.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// Failure share (percent, 1-100) that opens the breaker whatever the baseline.
    #[serde(default = "default_error_percent")]
    pub error_percent: u32,
    /// The breaker also opens at this many times the version's own recent failure
    /// share (its baseline, learned while closed); 0: only `errorPercent` opens it.
    #[serde(default = "default_baseline_factor")]
    pub baseline_factor: u32,
    /// The baseline rule never opens the breaker below this failure share (percent).
    #[serde(default = "default_min_error_percent")]
    pub min_error_percent: u32,
    /// How long the breaker stays open the first time.
    #[serde(default = "default_open_for")]
    pub open_for: Duration,
    /// The longest it stays open after failed probes double its time.
    #[serde(default = "default_max_open_for")]
    pub max_open_for: Duration,
    /// Half-open probes that must all succeed to close it.
    #[serde(default = "default_probes")]
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: default_window(),
            min_requests: default_min_requests(),
            error_percent: default_error_percent(),
            baseline_factor: default_baseline_factor(),
            min_error_percent: default_min_error_percent(),
            open_for: default_open_for(),
            max_open_for: default_max_open_for(),
            probes: default_probes(),
        }
    }
}

fn default_window() -> Duration {
    Duration::from_millis(30_000)
}
fn default_min_requests() -> u32 {
    20
}
fn default_error_percent() -> u32 {
    50
}
fn default_baseline_factor() -> u32 {
    5
}
fn default_min_error_percent() -> u32 {
    10
}
fn default_open_for() -> Duration {
    Duration::from_millis(10_000)
}
fn default_max_open_for() -> Duration {
    Duration::from_millis(300_000)
}
fn default_probes() -> u32 {
    3
}

/// The adaptive in-flight limit of each of a model's versions: a gradient limiter over
/// measured latency (request duration; for a generate model, time to first token and
/// time per output token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdaptiveConcurrency {
    /// The limit never goes below this.
    #[serde(default = "default_min_limit")]
    pub min_limit: u32,
    /// Nor above this; unset: `limits.maxInFlight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_limit: Option<u32>,
    /// Where it starts when the version loads (brought within the bounds).
    #[serde(default = "default_initial_limit")]
    pub initial_limit: u32,
    /// How often it moves.
    #[serde(default = "default_limit_window")]
    pub window: Duration,
    /// Samples a window needs before it moves the limit.
    #[serde(default = "default_min_samples")]
    pub min_samples: u32,
    /// Latency headroom over the minimum before the limit shrinks (percent; 50, the
    /// tolerance of Netflix's Gradient2: a batching model's latency rises with load
    /// before it is congested).
    #[serde(default = "default_buffer_percent")]
    pub buffer_percent: u32,
    /// Most the limit changes in one window (percent).
    #[serde(default = "default_max_change_percent")]
    pub max_change_percent: u32,
    /// Windows the minimum latency is taken over.
    #[serde(default = "default_min_rtt_windows")]
    pub min_rtt_windows: u32,
}

impl Default for AdaptiveConcurrency {
    fn default() -> Self {
        Self {
            min_limit: default_min_limit(),
            max_limit: None,
            initial_limit: default_initial_limit(),
            window: default_limit_window(),
            min_samples: default_min_samples(),
            buffer_percent: default_buffer_percent(),
            max_change_percent: default_max_change_percent(),
            min_rtt_windows: default_min_rtt_windows(),
        }
    }
}

fn default_min_limit() -> u32 {
    1
}
fn default_initial_limit() -> u32 {
    16
}
fn default_limit_window() -> Duration {
    Duration::from_millis(500)
}
fn default_min_samples() -> u32 {
    8
}
fn default_buffer_percent() -> u32 {
    50
}
fn default_max_change_percent() -> u32 {
    25
}
fn default_min_rtt_windows() -> u32 {
    20
}

impl AdaptiveConcurrency {
    /// Checks the bounds against each other and `maxInFlight`.
    pub(crate) fn validate(&self, max_in_flight: u32) -> Result<(), (&'static str, String)> {
        let max = self.max_limit.unwrap_or(max_in_flight);
        if self.max_limit.is_some_and(|m| m > max_in_flight) {
            return Err((
                "maxLimit",
                format!("{max} is above limits.maxInFlight {max_in_flight}"),
            ));
        }
        for (field, value) in [
            ("initialLimit", self.initial_limit),
            ("minLimit", self.min_limit),
            ("minSamples", self.min_samples),
            ("minRttWindows", self.min_rtt_windows),
        ] {
            if value == 0 {
                return Err((field, "must be greater than zero".into()));
            }
        }
        if self.min_limit > max {
            return Err((
                "minLimit",
                format!("{} is above the maximum {max}", self.min_limit),
            ));
        }
        if !(1..=100).contains(&self.max_change_percent) {
            return Err((
                "maxChangePercent",
                format!("{} is not a percentage (1-100)", self.max_change_percent),
            ));
        }
        if self.window == Duration::ZERO {
            return Err(("window", "must be greater than zero".into()));
        }
        Ok(())
    }
}

/// One stand-in of a fallback chain, tried in order while a breaker is open. A hop
/// that cannot serve right now (its own breaker open, not loaded) is passed over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum FallbackHop {
    /// Another model this runtime serves (its default version), with the same task.
    Model(String),
    /// A model another runtime serves, over Open Inference Protocol gRPC (tensor
    /// tasks).
    Grpc(RemoteModel),
    /// A fixed answer: the last resort, always available.
    Response(FixedResponse),
}

impl FallbackHop {
    /// The hop's label in the response header and metrics: `model:<name>`,
    /// `grpc:<model>`, `response`.
    pub fn label(&self) -> String {
        match self {
            Self::Model(name) => format!("model:{name}"),
            Self::Grpc(remote) => format!("grpc:{}", remote.model),
            Self::Response(_) => "response".to_owned(),
        }
    }
}

/// A model served by another runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteModel {
    /// The runtime's gRPC endpoint, `http://host:port`.
    pub address: String,
    /// The model name there.
    pub model: String,
    /// How long one forwarded request may take (the request's own deadline, if
    /// sooner, wins).
    #[serde(default = "default_remote_timeout")]
    pub timeout: Duration,
}

fn default_remote_timeout() -> Duration {
    Duration::from_millis(5_000)
}

/// A fixed answer: output tensors for a tensor model, a text for a generate model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedResponse {
    /// Output tensors of one row: a batched request gets them once per row, stacked
    /// on a new dimension 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<FixedTensor>,
    /// The text a generate model answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One fixed output tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedTensor {
    /// Output name.
    pub name: String,
    /// Open Inference Protocol datatype (`FP32`, `INT64`, `BOOL`, `BYTES`, ...).
    pub datatype: String,
    /// Dimensions of one row's answer.
    pub shape: Vec<i64>,
    /// Elements, row-major: numbers, booleans for `BOOL`, strings for `BYTES`.
    pub data: Vec<FixedValue>,
}

/// One element of a fixed tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FixedValue {
    /// A `BOOL` element.
    Bool(bool),
    /// A numeric element (integers must be whole and in range of the datatype).
    Number(f64),
    /// A `BYTES` element.
    Text(String),
}

impl FixedTensor {
    /// The tensor's little-endian element bytes (a `BYTES` tensor in the protocol's
    /// 4-byte-length-prefixed layout), or why the data does not fit its datatype.
    pub fn to_bytes(&self) -> Result<(DataType, Vec<u8>), String> {
        let datatype = DataType::parse(&self.datatype)
            .ok_or_else(|| format!("datatype {:?} is not an OIP datatype", self.datatype))?;
        let count = element_count(&self.shape)
            .ok_or_else(|| format!("shape {:?} is not a tensor shape", self.shape))?;
        if count != self.data.len() as u64 {
            return Err(format!(
                "shape {:?} holds {count} elements, data has {}",
                self.shape,
                self.data.len()
            ));
        }
        let mut out = Vec::new();
        for (at, value) in self.data.iter().enumerate() {
            encode(datatype, value, &mut out).map_err(|why| format!("data[{at}]: {why}"))?;
        }
        Ok((datatype, out))
    }
}

/// Appends `value` as one `datatype` element.
fn encode(datatype: DataType, value: &FixedValue, out: &mut Vec<u8>) -> Result<(), String> {
    fn whole<T: TryFrom<i128>>(n: f64, datatype: DataType) -> Result<T, String> {
        if n.fract() != 0.0 || !n.is_finite() {
            return Err(format!("{n} is not a whole number for {datatype}"));
        }
        T::try_from(n as i128).map_err(|_| format!("{n} is out of range of {datatype}"))
    }
    match (datatype, value) {
        (DataType::Bool, FixedValue::Bool(b)) => out.push(u8::from(*b)),
        (DataType::Bytes, FixedValue::Text(s)) => {
            let len = u32::try_from(s.len()).map_err(|_| "string too long".to_owned())?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        (_, FixedValue::Number(n)) => {
            let n = *n;
            match datatype {
                DataType::Fp32 => out.extend_from_slice(&(n as f32).to_le_bytes()),
                DataType::Fp64 => out.extend_from_slice(&n.to_le_bytes()),
                DataType::Int8 => out.extend_from_slice(&whole::<i8>(n, datatype)?.to_le_bytes()),
                DataType::Int16 => {
                    out.extend_from_slice(&whole::<i16>(n, datatype)?.to_le_bytes());
                }
                DataType::Int32 => {
                    out.extend_from_slice(&whole::<i32>(n, datatype)?.to_le_bytes());
                }
                DataType::Int64 => {
                    out.extend_from_slice(&whole::<i64>(n, datatype)?.to_le_bytes());
                }
                DataType::Uint8 => out.extend_from_slice(&whole::<u8>(n, datatype)?.to_le_bytes()),
                DataType::Uint16 => {
                    out.extend_from_slice(&whole::<u16>(n, datatype)?.to_le_bytes());
                }
                DataType::Uint32 => {
                    out.extend_from_slice(&whole::<u32>(n, datatype)?.to_le_bytes());
                }
                DataType::Uint64 => {
                    out.extend_from_slice(&whole::<u64>(n, datatype)?.to_le_bytes());
                }
                DataType::Fp16 | DataType::Bf16 | DataType::Bool | DataType::Bytes => {
                    return Err(format!("{datatype} takes no number in a fixed response"));
                }
            }
        }
        (_, other) => return Err(format!("{other:?} is not a {datatype} element")),
    }
    Ok(())
}

impl ModelConfig {
    /// Checks the breaker's thresholds and the fallback chain against the model and
    /// the other models of the config (`models`: every model's name and task).
    pub(crate) fn validate_resilience(&self, models: &[(&str, Task)]) -> Result<(), ConfigError> {
        let invalid = |field: String, reason: String| ConfigError::InvalidResilience {
            model: self.name.clone(),
            field,
            reason,
        };
        if let Some(adaptive) = &self.limits.adaptive {
            adaptive
                .validate(self.limits.max_in_flight)
                .map_err(|(field, reason)| invalid(format!("limits.adaptive.{field}"), reason))?;
        }
        if let Some(breaker) = &self.breaker {
            breaker
                .validate()
                .map_err(|(field, reason)| invalid(format!("breaker.{field}"), reason))?;
        }
        for (at, hop) in self.fallback.iter().enumerate() {
            let field = |name: &str| format!("fallback[{at}].{name}");
            match hop {
                FallbackHop::Model(name) => {
                    if *name == self.name {
                        return Err(invalid(
                            field("model"),
                            "a model cannot fall back to itself".into(),
                        ));
                    }
                    match models.iter().find(|(other, _)| other == name) {
                        None => {
                            return Err(invalid(
                                field("model"),
                                format!("{name:?} is not a model of this runtime"),
                            ));
                        }
                        Some((_, task)) if *task != self.task => {
                            return Err(invalid(
                                field("model"),
                                format!(
                                    "{name:?} serves task {task:?}, this model {:?}",
                                    self.task
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                }
                FallbackHop::Grpc(remote) => {
                    if self.task == Task::Generate {
                        return Err(invalid(
                            field("grpc"),
                            "a generate model falls back to a local model or a fixed text".into(),
                        ));
                    }
                    if !(remote.address.starts_with("http://")
                        || remote.address.starts_with("https://"))
                    {
                        return Err(invalid(
                            field("grpc.address"),
                            format!("{:?} is not http(s)://host:port", remote.address),
                        ));
                    }
                    if remote.model.is_empty() {
                        return Err(invalid(field("grpc.model"), "is empty".into()));
                    }
                    if remote.timeout == Duration::ZERO {
                        return Err(invalid(
                            field("grpc.timeout"),
                            "must be greater than zero".into(),
                        ));
                    }
                }
                FallbackHop::Response(fixed) => {
                    self.validate_fixed(fixed).map_err(|(name, reason)| {
                        invalid(field(&format!("response.{name}")), reason)
                    })?;
                    if at + 1 != self.fallback.len() {
                        return Err(invalid(
                            field("response"),
                            "a fixed response always answers: it must be the last hop".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_fixed(&self, fixed: &FixedResponse) -> Result<(), (String, String)> {
        if self.task == Task::Generate {
            if fixed.text.is_none() || !fixed.outputs.is_empty() {
                return Err((
                    "text".into(),
                    "a generate model's fixed response is a text (and no outputs)".into(),
                ));
            }
            return Ok(());
        }
        if fixed.text.is_some() || fixed.outputs.is_empty() {
            return Err((
                "outputs".into(),
                "a tensor model's fixed response is its output tensors (and no text)".into(),
            ));
        }
        for (at, tensor) in fixed.outputs.iter().enumerate() {
            tensor
                .to_bytes()
                .map_err(|reason| (format!("outputs[{at}]"), reason))?;
            if fixed.outputs[..at].iter().any(|t| t.name == tensor.name) {
                return Err((
                    format!("outputs[{at}].name"),
                    format!("{:?} is named twice", tensor.name),
                ));
            }
            if let Some(declared) = self.outputs.iter().find(|o| o.name == tensor.name)
                && declared.datatype != tensor.datatype
            {
                return Err((
                    format!("outputs[{at}].datatype"),
                    format!(
                        "the model's output {:?} is {}",
                        tensor.name, declared.datatype
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl BreakerConfig {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let percent = |field, value: u32| {
            if (1..=100).contains(&value) {
                Ok(())
            } else {
                Err((field, format!("{value} is not a percentage (1-100)")))
            }
        };
        percent("errorPercent", self.error_percent)?;
        percent("minErrorPercent", self.min_error_percent)?;
        for (field, value) in [("minRequests", self.min_requests), ("probes", self.probes)] {
            if value == 0 {
                return Err((field, "must be greater than zero".into()));
            }
        }
        for (field, value) in [("window", self.window), ("openFor", self.open_for)] {
            if value == Duration::ZERO {
                return Err((field, "must be greater than zero".into()));
            }
        }
        if self.max_open_for < self.open_for {
            return Err((
                "maxOpenFor",
                format!(
                    "{} is shorter than openFor {}",
                    self.max_open_for, self.open_for
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "resilience_tests.rs"]
mod tests;
