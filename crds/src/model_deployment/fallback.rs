//! `spec.fallback`: the circuit breaker of the model's versions and where requests go
//! while it is open: another ModelDeployment's Service over OIP gRPC, then a fixed
//! answer. With neither, an open breaker answers 503 with `Retry-After`.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, SHORT_TEXT_MAX};
use crate::units::{DURATION_PATTERN, MAX_UNIT_STRING};

/// Most output tensors of a fixed response.
pub const MAX_FIXED_OUTPUTS: u32 = 16;
/// Most elements of one fixed output tensor.
pub const MAX_FIXED_ELEMENTS: u32 = 4096;
/// Longest fixed text.
pub const MAX_FIXED_TEXT: u32 = 4096;

/// The breaker of the model and the chain that stands in while it is open.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.modelDeployment) || has(self.response) || has(self.breaker)").message("set modelDeployment, response or breaker"))]
pub struct Fallback {
    /// A ModelDeployment in the same namespace that serves the requests instead, over
    /// OIP gRPC on its Service (tensor tasks: a generate model falls back to a fixed
    /// text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DNS_SUBDOMAIN_MAX), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub model_deployment: Option<String>,
    /// How long a request forwarded to `modelDeployment` may take (a duration; default
    /// `5s`; the request's own deadline, if sooner, wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// The last resort: a fixed answer, also when `modelDeployment` fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<FixedResponse>,
    /// Thresholds of the breaker; unset fields take the runtime's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<Breaker>,
}

/// Thresholds of the circuit breaker each version keeps.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Breaker {
    /// Sliding window the failure share is measured over (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub window: Option<String>,
    /// Requests the window needs before it may open (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub min_requests: Option<i32>,
    /// Failure share, in percent, that opens it whatever the baseline (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub error_percent: Option<i32>,
    /// It also opens at this many times the version's own recent failure share
    /// (default 5; 0: only `errorPercent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub baseline_factor: Option<i32>,
    /// The baseline rule never opens it below this share, in percent (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub min_error_percent: Option<i32>,
    /// How long it stays open the first time (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub open_for: Option<String>,
    /// The longest it stays open as failed probes double its time (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub max_open_for: Option<String>,
    /// Half-open probes that must all succeed to close it (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub probes: Option<i32>,
}

/// A fixed answer: output tensors (tensor tasks) or a text (`generate`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.text) != (has(self.outputs) && size(self.outputs) > 0)").message("set exactly one of outputs or text"))]
pub struct FixedResponse {
    /// Output tensors of one row; a batched request gets them once per row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_FIXED_OUTPUTS))]
    pub outputs: Vec<FixedTensor>,
    /// The text a generate model answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_FIXED_TEXT))]
    pub text: Option<String>,
}

/// One fixed output tensor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FixedTensor {
    /// Output name.
    #[schemars(length(min = 1, max = SHORT_TEXT_MAX))]
    pub name: String,
    /// Open Inference Protocol datatype.
    pub datatype: FixedDatatype,
    /// Dimensions of one row's answer.
    #[schemars(length(max = 8), inner(range(min = 0, max = 1_000_000)))]
    pub shape: Vec<i64>,
    /// Elements, row-major, each written as text: numbers (`0.5`, `-3`), `true` /
    /// `false` for `BOOL`, any string for `BYTES`.
    #[schemars(length(max = MAX_FIXED_ELEMENTS), inner(length(max = SHORT_TEXT_MAX)))]
    pub data: Vec<String>,
}

/// Datatypes a fixed tensor can have (those with a text form).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[allow(missing_docs)]
pub enum FixedDatatype {
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "UINT8")]
    Uint8,
    #[serde(rename = "UINT16")]
    Uint16,
    #[serde(rename = "UINT32")]
    Uint32,
    #[serde(rename = "UINT64")]
    Uint64,
    #[serde(rename = "INT8")]
    Int8,
    #[serde(rename = "INT16")]
    Int16,
    #[serde(rename = "INT32")]
    Int32,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "FP64")]
    Fp64,
    #[serde(rename = "BYTES")]
    Bytes,
}

impl FixedDatatype {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }
}
