//! `Canary.status`, written only by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// Condition types of a Canary.
pub mod condition_types {
    /// The candidate's image and model signatures verified.
    pub const VERIFIED: &str = "Verified";
    /// The rollout is moving (not paused, finished or rolled back).
    pub const PROGRESSING: &str = "Progressing";
    /// The candidate was promoted into the target's status revision.
    pub const PROMOTED: &str = "Promoted";
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
    /// The most recent analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<AnalysisResult>,
}

/// Where a rollout stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum CanaryPhase {
    /// Not started yet.
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
    /// Could not proceed (e.g. the target is missing or the candidate failed verification).
    Failed,
}

/// The outcome of one analysis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResult {
    /// When the analysis ran.
    pub time: Time,
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
    /// Whether the check passed.
    pub verdict: Verdict,
}

/// The result of a metric check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Verdict {
    /// Within the threshold.
    Pass,
    /// Over the threshold.
    Fail,
    /// Not enough data to judge (counts as neither pass nor fail).
    NoData,
}
