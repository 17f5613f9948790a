//! `TenantQuota.status`, written only by the operator.
//!
//! `admissions` is the admission record: which ModelDeployment (by uid and generation) may
//! run how much. The operator changes it only with a write that names the resourceVersion
//! it read, so two writers can never both extend it from the same state; every other field
//! is derived from it and from the ModelDeployments the operator sees.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::units::QUANTITY_PATTERN;

/// Most ModelDeployments one TenantQuota lists in `admitted`, `admissions` and `rejected`.
pub const MAX_LISTED: u32 = 4096;

/// Observed use of a TenantQuota.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantQuotaStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Exceeded`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The tenant this quota limits (`spec.tenant`, else `metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What the admitted ModelDeployments use.
    #[serde(default)]
    pub used: QuotaUsage,
    /// `used/hard` per resource as text for `kubectl get` (`2/4`; `-` when unlimited).
    #[serde(default)]
    pub summary: QuotaSummary,
    /// Admitted ModelDeployments as `namespace/name`.
    #[serde(default)]
    #[schemars(length(max = MAX_LISTED))]
    pub admitted: Vec<String>,
    /// ModelDeployments refused, with the limit they would exceed; oldest first.
    #[serde(default)]
    #[schemars(length(max = MAX_LISTED))]
    pub rejected: Vec<RejectedDeployment>,
    /// The admission record: what each admitted ModelDeployment may run, at which
    /// generation. Sorted by `name`.
    #[serde(default)]
    #[schemars(length(max = MAX_LISTED))]
    pub admissions: Vec<Admission>,
}

/// Resources in use, in the units of `spec.hard`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaUsage {
    /// GPUs.
    #[serde(default)]
    pub gpu: i64,
    /// CPU as a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory as a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Runtime pods.
    #[serde(default)]
    pub replicas: i32,
    /// ModelDeployments.
    #[serde(default)]
    pub model_deployments: i32,
}

/// `used/hard` of each resource as text (`28/32`, `64Gi/128Gi`, `3/-` when unlimited).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSummary {
    /// GPUs.
    #[serde(default)]
    pub gpu: String,
    /// CPU.
    #[serde(default)]
    pub cpu: String,
    /// Memory.
    #[serde(default)]
    pub memory: String,
    /// Runtime pods.
    #[serde(default)]
    pub replicas: String,
    /// ModelDeployments.
    #[serde(default)]
    pub model_deployments: String,
}

/// A ModelDeployment the quota refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedDeployment {
    /// The ModelDeployment as `namespace/name` (a runtime-image Canary's own pods as
    /// `namespace/name (Canary)`).
    pub name: String,
    /// Which limit it would exceed, and by how much.
    pub reason: String,
    /// The `metadata.generation` of the ModelDeployment that was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Why, in CamelCase: `QuotaExceeded`, `TenantNotAllowed` or `ResourcesUnset` (the
    /// reason of the ModelDeployment's `QuotaAdmitted=False`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// One entry of the admission record: the ModelDeployment `name` (with `uid`) may run this
/// much at `generation`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Admission {
    /// The ModelDeployment as `namespace/name` (a runtime-image Canary's own pods as
    /// `namespace/name (Canary)`).
    pub name: String,
    /// Its `metadata.uid` (a deleted and recreated one is admitted afresh).
    pub uid: String,
    /// Its `metadata.generation` the admission is for.
    pub generation: i64,
    /// Runtime pods.
    pub replicas: i32,
    /// GPUs over all its pods.
    #[serde(default)]
    pub gpu: i64,
    /// CPU over all its pods, as a quantity.
    #[serde(default = "zero")]
    #[schemars(pattern(QUANTITY_PATTERN))]
    pub cpu: String,
    /// Memory over all its pods, as a quantity.
    #[serde(default = "zero")]
    #[schemars(pattern(QUANTITY_PATTERN))]
    pub memory: String,
}

fn zero() -> String {
    "0".to_owned()
}
