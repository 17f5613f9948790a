//! `TenantQuota`: "this tenant may use at most this much" (cluster-scoped).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{DNS_LABEL_MAX, DNS_LABEL_PATTERN};
use crate::units::{CPU_MAX_PATTERN, MAX_UNIT_STRING, QUANTITY_PATTERN};

mod status;

pub use status::{Admission, QuotaSummary, QuotaUsage, RejectedDeployment, TenantQuotaStatus};

/// Most namespaces listed in one TenantQuota.
pub const MAX_NAMESPACES: u32 = 64;

/// Condition types of a TenantQuota.
pub mod condition_types {
    /// The quota is in force: its spec was read and its admissions are recorded.
    pub const READY: &str = "Ready";
    /// At least one ModelDeployment of the tenant was refused (it would exceed `hard`, or
    /// it may not be counted here), or what is admitted exceeds a lowered `hard`.
    pub const EXCEEDED: &str = "Exceeded";
}

/// Budgets of one tenant: hardware, requests, and its share of shared runtimes.
// Every printer column repeats `type_ = ...`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "serving.modelplane.io",
    version = "v1alpha1",
    kind = "TenantQuota",
    status = "TenantQuotaStatus",
    shortname = "tq",
    category = "modelplane",
    doc = "Hardware and request budgets of one tenant."
)]
#[kube(printcolumn(
    name = "Tenant",
    type_ = "string",
    json_path = ".status.tenant",
    description = "The tenant this quota limits"
))]
#[kube(printcolumn(
    name = "GPU",
    type_ = "string",
    json_path = ".status.summary.gpu",
    description = "GPUs admitted / hard limit (- = unlimited)"
))]
#[kube(printcolumn(
    name = "CPU",
    type_ = "string",
    json_path = ".status.summary.cpu",
    description = "CPU admitted / hard limit (- = unlimited)"
))]
#[kube(printcolumn(
    name = "Memory",
    type_ = "string",
    json_path = ".status.summary.memory",
    description = "Memory admitted / hard limit (- = unlimited)"
))]
#[kube(printcolumn(
    name = "Replicas",
    type_ = "string",
    json_path = ".status.summary.replicas",
    description = "Runtime pods admitted / hard limit (- = unlimited)"
))]
#[kube(printcolumn(
    name = "MDs",
    type_ = "string",
    json_path = ".status.summary.modelDeployments",
    description = "ModelDeployments admitted / hard limit (- = unlimited)"
))]
#[kube(printcolumn(
    name = "Exceeded",
    type_ = "string",
    json_path = ".status.conditions[?(@.type==\"Exceeded\")].status",
    description = "Whether a ModelDeployment of the tenant was refused"
))]
#[kube(printcolumn(
    name = "Age",
    type_ = "date",
    json_path = ".metadata.creationTimestamp"
))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.namespaces) && size(self.namespaces) > 0) || has(self.namespaceSelector)").message("set spec.namespaces or spec.namespaceSelector"))]
pub struct TenantQuotaSpec {
    /// The tenant this quota applies to; defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DNS_LABEL_MAX), pattern(DNS_LABEL_PATTERN))]
    pub tenant: Option<String>,
    /// Namespaces whose ModelDeployments count against this quota.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_NAMESPACES), inner(length(min = 1, max = DNS_LABEL_MAX), pattern(DNS_LABEL_PATTERN)))]
    pub namespaces: Vec<String>,
    /// Namespaces selected by label whose ModelDeployments count against this quota
    /// (in addition to `namespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Hardware ceilings over all of the tenant's ModelDeployments; unset fields are unlimited.
    #[serde(default)]
    pub hard: HardLimits,
    /// Request budgets enforced by the runtimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestBudget>,
    /// Weight of the tenant in fair queuing when runtimes are shared.
    #[serde(default = "default_priority")]
    #[schemars(range(min = 1, max = 1000))]
    pub priority: i32,
    /// The tenant's slice (a child cgroup) inside shared runtimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_cgroup: Option<RuntimeCgroup>,
}

fn default_priority() -> i32 {
    1
}

/// Ceilings on what a tenant's ModelDeployments may request, summed over all of them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HardLimits {
    /// GPUs (`nvidia.com/gpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub gpu: Option<i64>,
    /// CPU as a Kubernetes quantity (`"32"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(QUANTITY_PATTERN))]
    pub cpu: Option<String>,
    /// Memory as a Kubernetes quantity (`128Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(QUANTITY_PATTERN))]
    pub memory: Option<String>,
    /// Runtime pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// ModelDeployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub model_deployments: Option<i32>,
}

/// Request budgets; beyond them requests get 429 with `Retry-After`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.burst) || !has(self.perSecond) || self.burst >= self.perSecond").message("burst must be at least perSecond"))]
pub struct RequestBudget {
    /// Sustained requests per second (token-bucket refill rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub per_second: Option<i64>,
    /// Requests allowed at once above the sustained rate (token-bucket size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub burst: Option<i64>,
    /// Prompt plus generated tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tokens_per_minute: Option<i64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_concurrent: Option<i64>,
}

/// The tenant's child cgroup inside shared runtimes (where the cgroup subtree is delegated).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeCgroup {
    /// `cpu.weight` of the slice, 1–10000 (cgroup v2 default is 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub cpu_weight: Option<i32>,
    /// `cpu.max` of the slice: `max`, `<n> cores`, or a CPU quantity (`1.5`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(CPU_MAX_PATTERN))]
    pub cpu_max: Option<String>,
}
