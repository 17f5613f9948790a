//! `Canary.status`, written only by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::model_deployment::ModelSource;

/// Condition types of a Canary.
pub mod condition_types {
    /// The candidate's image and model signatures verified.
    pub const VERIFIED: &str = "Verified";
    /// The rollout is moving (not paused, finished or rolled back).
    pub const PROGRESSING: &str = "Progressing";
    /// The candidate was promoted into the target's status revision.
    pub const PROMOTED: &str = "Promoted";
    /// The latest analysis passed (False: it failed or was inconclusive, with the numbers).
    pub const ANALYSIS_PASSING: &str = "AnalysisPassing";
}

/// Observed progress of a Canary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Verified`, `Progressing` and `Promoted`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Where the rollout stands.
    #[serde(default)]
    pub phase: CanaryPhase,
    /// Index into `spec.steps` of the current step.
    #[serde(default)]
    pub step: i32,
    /// Percent of traffic now on the candidate.
    #[serde(default)]
    pub weight: i32,
    /// When the current step began (its `pause` counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// Consecutive failed analyses so far (rolled back at `spec.analysis.failureLimit`).
    #[serde(default)]
    pub failed_checks: i32,
    /// Consecutive Inconclusive analyses so far (`spec.analysis.onInconclusive` applies at
    /// `spec.analysis.inconclusiveLimit`).
    #[serde(default)]
    pub inconclusive_checks: i32,
    /// Consecutive analyses whose metrics could not be read (rolled back at
    /// `spec.analysis.metricErrorLimit`).
    #[serde(default)]
    pub metric_errors: i32,
    /// When the next analysis runs (every `spec.analysis.interval` while the candidate
    /// gets traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_analysis_at: Option<Time>,
    /// The most recent analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<AnalysisResult>,
    /// The candidate revision as last checked: what it was resolved from and, once
    /// admitted, the digests that will run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<CandidateRevision>,
    /// Set once the candidate is promoted: what now serves, and the spec changes to commit
    /// to Git so that the ModelDeployment's spec says so too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
}

/// A promoted candidate: the target serves it from its status revision until its spec
/// changes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// When the target started serving the candidate as its revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// The target's `metadata.generation` the promotion applies to; a newer spec replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_generation: Option<i64>,
    /// The ModelDeployment spec fields to set (in Git) to the promoted values.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub changes: Vec<SpecChange>,
}

/// One field of the target's spec and the value that now serves.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpecChange {
    /// The field's path, e.g. `spec.model.source.oci`.
    #[schemars(length(max = 128))]
    pub field: String,
    /// The value to write there, as YAML/JSON text.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// The candidate revision: the target's spec with the candidate's overrides, resolved to
/// digests and checked against the target's verification keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateRevision {
    /// Hash of what the revision is resolved from (runtime image, model source, verification
    /// policy, pull secrets); a change means the candidate is checked again.
    #[schemars(length(max = 128))]
    pub inputs: String,
    /// The runtime image pinned by digest (`registry/repo[:tag]@sha256:…`); absent until admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// Digest of the runtime image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub image_digest: Option<String>,
    /// The model source with an OCI reference pinned by digest; absent until admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_source: Option<ModelSource>,
    /// Digest of the model (OCI manifest digest, or the sha256 an HTTP source names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub model_digest: Option<String>,
    /// When the signatures of image and model verified; absent when they did not (Audit) or
    /// verification is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
    /// `sha256:<hex>` fingerprints (of the DER public key) of the keys the candidate was
    /// checked against, in the order the target lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 80)))]
    pub keys: Vec<String>,
}

/// Where a rollout stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum CanaryPhase {
    /// Not started yet: waiting for the target, or verified and waiting for traffic
    /// shifting (see the `Progressing` condition).
    #[default]
    Pending,
    /// Verifying the candidate's signatures.
    Verifying,
    /// Walking through the steps.
    Progressing,
    /// Held by `spec.paused` or outside `spec.window`.
    Paused,
    /// Writing the candidate into the target's status revision.
    Promoting,
    /// Promoted.
    Succeeded,
    /// Rolled back to stable (by analysis or `spec.abort`).
    RolledBack,
    /// Could not proceed: the candidate failed verification under `Enforce`, or it cannot
    /// apply to the target (e.g. a model candidate for a pipeline).
    Failed,
}

/// The outcome of one analysis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResult {
    /// When the analysis ran.
    pub time: Time,
    /// The overall verdict: Fail if any metric failed, else Inconclusive if any was, else Pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// One result per metric of `spec.analysis.metrics`.
    #[serde(default)]
    pub metrics: Vec<MetricResult>,
}

/// The outcome of one metric check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// Value measured on stable (seconds for latencies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    /// Value measured on the candidate (seconds for latencies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<f64>,
    /// Requests (observations, for latencies) of stable in the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_samples: Option<i64>,
    /// Requests (observations, for latencies) of the candidate in the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_samples: Option<i64>,
    /// Whether the check passed.
    pub verdict: Verdict,
    /// Why, with the numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

/// The result of a metric check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Verdict {
    /// Within the threshold.
    Pass,
    /// Worse than allowed, at the analysis' confidence.
    Fail,
    /// Too few samples to judge either way (never a pass).
    Inconclusive,
}
