//! Prometheus metrics of verification: counts by artifact and result, and durations.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What was verified, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Artifact {
    /// A runtime container image.
    Image,
    /// A model OCI artifact.
    ModelOci,
    /// Model files signed with model-signing.
    ModelFiles,
}

impl Artifact {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::ModelOci => "model_oci",
            Self::ModelFiles => "model_files",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    artifact: String,
    result: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ArtifactLabels {
    artifact: String,
}

/// The verification metrics; cheap to clone (handles share the same series).
#[derive(Debug, Clone)]
pub struct Metrics {
    verifications: Family<ResultLabels, Counter>,
    cache_hits: Family<ArtifactLabels, Counter>,
    duration: Family<ArtifactLabels, Histogram>,
}

impl Metrics {
    /// Creates the metrics and registers them into `registry` as `modelplane_verifications_total`,
    /// `modelplane_verification_cache_hits_total` and `modelplane_verification_duration_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            verifications: Family::default(),
            cache_hits: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
        };
        registry.register(
            "modelplane_verifications",
            "Signature verifications by artifact and result (Verified, Disabled, or the failure reason)",
            metrics.verifications.clone(),
        );
        registry.register(
            "modelplane_verification_cache_hits",
            "Verifications answered from the result cache",
            metrics.cache_hits.clone(),
        );
        registry.register(
            "modelplane_verification_duration_seconds",
            "Time to verify one artifact, cache hits included",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Records one verification of `artifact` ending in `result` after `elapsed`.
    pub fn record(&self, artifact: Artifact, result: &str, from_cache: bool, elapsed: Duration) {
        let artifact = artifact.as_str().to_owned();
        self.verifications
            .get_or_create(&ResultLabels {
                artifact: artifact.clone(),
                result: result.to_owned(),
            })
            .inc();
        let labels = ArtifactLabels { artifact };
        if from_cache {
            self.cache_hits.get_or_create(&labels).inc();
        }
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_verifications_appear_in_the_text_exposition() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.record(
            Artifact::Image,
            "Verified",
            false,
            Duration::from_millis(20),
        );
        metrics.record(Artifact::Image, "Verified", true, Duration::from_millis(1));
        metrics.record(
            Artifact::ModelOci,
            "WrongKey",
            false,
            Duration::from_millis(3),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                r#"modelplane_verifications_total{artifact="image",result="Verified"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"modelplane_verifications_total{artifact="model_oci",result="WrongKey"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"modelplane_verification_cache_hits_total{artifact="image"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modelplane_verification_duration_seconds_count{artifact="image"} 2"#),
            "{text}"
        );
    }
}
