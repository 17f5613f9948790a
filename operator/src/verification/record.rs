//! The record of the revision last pinned (and verified), kept as an annotation on the
//! owned Deployment: it survives operator restarts, lets a steady reconcile skip the
//! registry entirely, and is what keeps serving while a newer revision is refused.

use k8s_openapi::{api::apps::v1::Deployment, apimachinery::pkg::apis::meta::v1::Time};
use modelplane_api::{
    condition::ConditionStatus,
    model_deployment::{ModelDeploymentSpec, ModelSource},
};
use modelplane_config::SignatureConfig;
use modelplane_verify::Mode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Pins;
use crate::desired::model_digest;

/// Deployment annotation holding the [`PinnedRevision`] as JSON.
pub const PINNED_ANNOTATION: &str = "modelplane.io/pinned-revision";

/// A revision whose references are pinned to digests.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PinnedRevision {
    /// [`inputs_hash`] of the spec it was resolved from.
    pub inputs: String,
    /// The runtime image, `…@sha256:…`.
    pub image: String,
    /// Digest of the runtime image.
    pub image_digest: String,
    /// The model source with an OCI reference pinned (HTTP sources carry their sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_source: Option<ModelSource>,
    /// Digest of the model (OCI manifest digest or the HTTP file's sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// When its signatures were verified; `None` when they were not (Disabled, or Audit failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
    /// For HTTP and PVC models under Enforce or Audit: the mode and trusted keys the runtime
    /// verifies the model files with before loading them (rendered into the runtime config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_signature: Option<SignatureConfig>,
    /// The `Verified` condition the check concluded, repeated by every later reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifiedCondition>,
}

/// `image <digest>[ and model <digest>]`: what a `Verified` message says was pinned.
pub fn pinned_artifacts(image_digest: &str, model_digest: Option<&str>) -> String {
    match model_digest {
        Some(model) => format!("image {image_digest} and model {model}"),
        None => format!("image {image_digest}"),
    }
}

/// The `Verified` condition. Recorded with the pinned revision (so a steady reconcile
/// reproduces it without asking the registry) and with each hold of a refused one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedCondition {
    /// True, False, or Unknown (verification disabled).
    pub status: ConditionStatus,
    /// CamelCase reason (`Verified`, `VerificationDisabled`, or a failure reason).
    pub reason: String,
    /// What was verified, or what failed.
    pub message: String,
}

impl PinnedRevision {
    /// The revision of `spec` (resolved from `inputs`) pinned to `pins`.
    pub fn new(
        inputs: String,
        spec: &ModelDeploymentSpec,
        pins: Pins,
        verified_at: Option<Time>,
    ) -> Self {
        let model_source = spec.model.as_ref().map(|model| {
            let mut source = model.source.clone();
            if source.oci.is_some() {
                source.oci = pins.model_oci.clone();
            }
            source
        });
        let model_digest = pins
            .model_digest
            .or_else(|| model_source.as_ref().and_then(model_digest));
        Self {
            inputs,
            image: pins.image,
            image_digest: pins.image_digest,
            model_source,
            model_digest,
            verified_at,
            model_signature: None,
            verified: None,
        }
    }

    /// The `Verified` condition of this revision under `mode`: the recorded one, or for a
    /// record written before conditions were recorded, what its fields imply.
    pub fn verified_condition(&self, mode: Mode) -> VerifiedCondition {
        if let Some(verified) = &self.verified {
            return verified.clone();
        }
        let what = pinned_artifacts(&self.image_digest, self.model_digest.as_deref());
        match (mode, &self.verified_at) {
            (Mode::Disabled, _) => VerifiedCondition {
                status: ConditionStatus::Unknown,
                reason: "VerificationDisabled".into(),
                message: format!("signature verification is disabled; pinned {what}"),
            },
            (_, Some(_)) => VerifiedCondition {
                status: ConditionStatus::True,
                reason: "Verified".into(),
                message: format!("{what} signed by a trusted key"),
            },
            (_, None) => VerifiedCondition {
                status: ConditionStatus::False,
                reason: "VerificationFailed".into(),
                message: format!("{what} rolled out unverified (audit mode)"),
            },
        }
    }

    /// The record on `deployment`, if it carries a readable one.
    pub fn read(deployment: &Deployment) -> Option<Self> {
        let annotations = deployment.metadata.annotations.as_ref()?;
        serde_json::from_str(annotations.get(PINNED_ANNOTATION)?).ok()
    }

    /// Stores the record on `deployment`.
    pub fn write(&self, deployment: &mut Deployment) -> Result<(), serde_json::Error> {
        let value = serde_json::to_string(self)?;
        deployment
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(PINNED_ANNOTATION.to_owned(), value);
        Ok(())
    }

    /// `spec` with its image and model source replaced by the pinned ones: what to render.
    pub fn pin(&self, spec: &ModelDeploymentSpec) -> ModelDeploymentSpec {
        let mut pinned = spec.clone();
        pinned.runtime.image = Some(self.image.clone());
        if let (Some(model), Some(source)) = (pinned.model.as_mut(), &self.model_source) {
            model.source = source.clone();
        }
        pinned
    }
}

/// Hash of what a rollout is resolved and verified from: the image (after defaulting), the
/// model source, the verification policy and the pull secrets (whose credentials resolve the
/// references). When it is unchanged, nothing is asked again.
pub fn inputs_hash(spec: &ModelDeploymentSpec, default_image: &str) -> String {
    let mut inputs = json!({
        "image": spec.runtime.image.as_deref().unwrap_or(default_image),
        "model": spec.model.as_ref().map(|m| &m.source),
        "verification": &spec.verification,
    });
    // Only when set, so revisions recorded before the field existed keep their hash.
    if !spec.runtime.image_pull_secrets.is_empty() {
        inputs["imagePullSecrets"] = json!(spec.runtime.image_pull_secrets);
    }
    crate::drift::hash_of(&inputs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use modelplane_api::model_deployment::LocalSecretRef;

    use super::*;

    fn spec(source: serde_json::Value) -> ModelDeploymentSpec {
        serde_json::from_value(json!({
            "model": {"name": "m", "task": "classify", "source": source},
            "runtime": {"replicas": 1},
        }))
        .expect("spec")
    }

    fn pins() -> Pins {
        Pins {
            image: format!("r.example/runtime:1@sha256:{}", "b".repeat(64)),
            image_digest: format!("sha256:{}", "b".repeat(64)),
            model_oci: Some(format!("r.example/m:v1@sha256:{}", "c".repeat(64))),
            model_digest: Some(format!("sha256:{}", "c".repeat(64))),
        }
    }

    #[test]
    fn oci_tag_and_image_are_replaced_by_their_pinned_references() {
        let spec = spec(json!({"oci": "r.example/m:v1"}));
        let record = PinnedRevision::new("h".into(), &spec, pins(), None);
        let pinned = record.pin(&spec);
        assert_eq!(pinned.runtime.image, Some(pins().image));
        let model = pinned.model.expect("model");
        assert_eq!(model.source.oci, pins().model_oci);
        assert_eq!(record.model_digest, pins().model_digest);
    }

    #[test]
    fn http_source_keeps_its_url_and_reports_its_sha256() {
        let sha = "d".repeat(64);
        let spec = spec(json!({"http": {"url": "https://m.example/m.pt", "sha256": sha}}));
        let image_only = Pins {
            model_oci: None,
            model_digest: None,
            ..pins()
        };
        let record = PinnedRevision::new("h".into(), &spec, image_only, None);
        let http = record.pin(&spec).model.expect("model").source.http;
        assert_eq!(
            http.map(|h| h.url).as_deref(),
            Some("https://m.example/m.pt")
        );
        assert_eq!(record.model_digest, Some(format!("sha256:{sha}")));
    }

    #[test]
    fn record_round_trips_through_the_deployment_annotation() {
        let spec = spec(json!({"oci": "r.example/m:v1"}));
        let record = PinnedRevision::new(
            "h".into(),
            &spec,
            pins(),
            Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
        );
        let mut deployment = Deployment::default();
        record.write(&mut deployment).expect("json");
        assert_eq!(PinnedRevision::read(&deployment), Some(record));
    }

    #[test]
    fn inputs_change_with_image_model_policy_or_pull_secrets_but_not_with_replicas() {
        let base = spec(json!({"oci": "r.example/m:v1"}));
        let hash = |s: &ModelDeploymentSpec| inputs_hash(s, "r.example/runtime:1");
        let mut scaled = base.clone();
        scaled.runtime.replicas = 5;
        assert_eq!(hash(&base), hash(&scaled));
        let mut image = base.clone();
        image.runtime.image = Some("r.example/runtime:2".into());
        assert_ne!(hash(&base), hash(&image));
        let other_model = spec(json!({"oci": "r.example/m:v2"}));
        assert_ne!(hash(&base), hash(&other_model));
        let mut pull = base.clone();
        pull.runtime.image_pull_secrets = vec![LocalSecretRef {
            name: "pull".into(),
        }];
        assert_ne!(hash(&base), hash(&pull));
    }
}
