//! What a ModelDeployment serves because of a Canary: a candidate beside stable (with the
//! weight and rules the Canary's status says), or, once promoted, the candidate as its
//! revision. Pure: read from the Canaries in the watch cache and the object's own status.
//!
//! A promotion never edits the spec. While the spec stays at the generation it was promoted
//! at, the promoted revision serves, even after the Canary is deleted (the status revision
//! keeps it). A newer spec (the user committed the change, or anything else) replaces it.

use std::sync::Arc;

use modelplane_api::{
    canary::{Canary, CanaryPhase},
    model_deployment::{ModelDeployment, ModelDeploymentSpec, ModelSource, Prompt, Revision},
};

use crate::{controller::canary::gets_traffic, desired::CanaryTraffic};

/// A candidate that serves as the ModelDeployment's revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The Canary that promoted it.
    pub canary: String,
    /// The promoted model source (pinned), when the candidate changed the model.
    pub model_source: Option<ModelSource>,
    /// The promoted runtime image (pinned), when the candidate changed it.
    pub image: Option<String>,
    /// The promoted prompts, when the candidate changed them.
    pub prompts: Option<Vec<Prompt>>,
    /// The spec generation it applies to.
    pub generation: Option<i64>,
}

/// What Canaries make a ModelDeployment serve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollout {
    /// A candidate beside stable.
    pub traffic: Option<CanaryTraffic>,
    /// A candidate as the revision.
    pub promotion: Option<Promotion>,
}

/// Reads the rollout of `md` from the Canaries targeting it (the oldest one decides when
/// several do) and from its own status revision.
pub fn rollout(md: &ModelDeployment, canaries: &[Arc<Canary>]) -> Rollout {
    let generation = md.metadata.generation;
    let mut targeting: Vec<&Canary> = canaries
        .iter()
        .map(AsRef::as_ref)
        .filter(|c| {
            c.metadata.namespace == md.metadata.namespace
                && md.metadata.name.as_deref() == Some(c.spec.target_ref.name.as_str())
        })
        .collect();
    targeting.sort_by_key(|c| {
        (
            c.metadata.creation_timestamp.clone().map(|t| t.0),
            c.metadata.name.clone(),
        )
    });
    let promotion = targeting
        .iter()
        .find_map(|c| promoting(c, generation))
        .or_else(|| {
            recorded(
                md.status.as_ref().and_then(|s| s.revision.as_ref()),
                generation,
            )
        });
    let traffic = if promotion.is_some() {
        None
    } else {
        targeting.iter().find_map(|c| traffic(c))
    };
    Rollout { traffic, promotion }
}

/// The promotion a Canary asks for: it is `Promoting`, or it `Succeeded` at this generation.
fn promoting(canary: &Canary, generation: Option<i64>) -> Option<Promotion> {
    let status = canary.status.as_ref()?;
    let applies = match status.phase {
        CanaryPhase::Promoting => true,
        CanaryPhase::Succeeded => status
            .promotion
            .as_ref()
            .is_some_and(|p| p.target_generation == generation),
        _ => false,
    };
    let record = status.candidate.as_ref().filter(|_| applies)?;
    let candidate = &canary.spec.candidate;
    Some(Promotion {
        canary: canary.metadata.name.clone()?,
        model_source: candidate.model.as_ref().and(record.model_source.clone()),
        image: candidate.runtime.as_ref().and(record.image.clone()),
        prompts: candidate.prompts.clone(),
        generation,
    })
}

/// The promotion the status revision records, while the spec is still at its generation.
fn recorded(revision: Option<&Revision>, generation: Option<i64>) -> Option<Promotion> {
    let revision = revision?;
    let canary = revision.promoted_by.clone()?;
    (revision.promoted_generation == generation).then(|| Promotion {
        canary,
        model_source: revision.model_source.clone(),
        image: revision.image.clone(),
        prompts: revision.prompts.clone(),
        generation,
    })
}

/// The candidate a Canary has beside stable: a model or runtime-image candidate, verified
/// and pinned, whose rollout has started and not ended.
fn traffic(canary: &Canary) -> Option<CanaryTraffic> {
    let status = canary.status.as_ref()?;
    if !gets_traffic(status) {
        return None;
    }
    let record = status.candidate.as_ref()?;
    let candidate = &canary.spec.candidate;
    // Pinned values only: a changed field the record does not pin yet gets no traffic.
    let source = match candidate.model {
        Some(_) => Some(record.model_source.clone()?),
        None => None,
    };
    let image = match candidate.runtime {
        Some(_) => Some(record.image.clone()?),
        None => None,
    };
    if source.is_none() && image.is_none() {
        return None;
    }
    Some(CanaryTraffic {
        canary: canary.metadata.name.clone()?,
        source,
        image,
        weight: status.weight,
        rules: canary.spec.match_.clone(),
        sticky_by: canary.spec.sticky_by.clone(),
    })
}

/// The spec that serves: `spec` with a promotion's model source, image and prompts.
pub fn serving_spec(
    spec: &ModelDeploymentSpec,
    promotion: Option<&Promotion>,
) -> ModelDeploymentSpec {
    let mut serving = spec.clone();
    let Some(promotion) = promotion else {
        return serving;
    };
    if let (Some(model), Some(source)) = (serving.model.as_mut(), &promotion.model_source) {
        model.source = source.clone();
    }
    if let Some(image) = &promotion.image {
        serving.runtime.image = Some(image.clone());
    }
    if let Some(prompts) = &promotion.prompts {
        serving.prompts = prompts.clone();
    }
    serving
}

/// `revision` with what says it was promoted: the Canary, the promoted values, the generation.
pub fn mark_promoted(revision: &mut Revision, promotion: Option<&Promotion>) {
    let Some(promotion) = promotion else {
        return;
    };
    revision.promoted_by = Some(promotion.canary.clone());
    revision.promoted_generation = promotion.generation;
    revision.model_source = promotion.model_source.clone();
    revision.image = promotion.image.clone();
    revision.prompts = promotion.prompts.clone();
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const PINNED: &str = "registry.example/models/resnet18:v4@sha256:bbbb";

    fn md(generation: i64, revision: Value) -> ModelDeployment {
        serde_json::from_value(json!({
            "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "resnet18", "namespace": "team-a", "generation": generation},
            "spec": {"model": {"name": "resnet18", "task": "classify",
                               "source": {"oci": "registry.example/models/resnet18:v3@sha256:aaaa"}}},
            "status": {"revision": revision},
        }))
        .expect("md")
    }

    fn canary(name: &str, created: &str, status: Value) -> Arc<Canary> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "Canary",
                "metadata": {"name": name, "namespace": "team-a", "creationTimestamp": created},
                "spec": {"targetRef": {"name": "resnet18"},
                         "candidate": {"model": {"source": {"oci": "registry.example/models/resnet18:v4"}}},
                         "steps": [{"weight": 5}, {"weight": 50}],
                         "match": [{"headers": {"x-canary": "true"}}], "stickyBy": "x-user-id"},
                "status": status,
            }))
            .expect("canary"),
        )
    }

    fn stepping(weight: i32) -> Value {
        json!({"phase": "Progressing", "weight": weight, "stepStartedAt": "2026-12-04T08:00:00Z",
               "candidate": {"inputs": "h", "image": "r@sha256:cc", "modelSource": {"oci": PINNED}}})
    }

    #[test]
    fn a_stepping_canary_puts_its_pinned_candidate_beside_stable() {
        let rollout = rollout(
            &md(1, json!({})),
            &[canary("c", "2026-12-01T00:00:00Z", stepping(5))],
        );
        let traffic = rollout.traffic.expect("traffic");
        assert_eq!(traffic.weight, 5);
        assert_eq!(traffic.source.expect("model").oci.as_deref(), Some(PINNED));
        assert_eq!(
            traffic.image, None,
            "the candidate keeps the target's image"
        );
        assert_eq!(traffic.rules.len(), 1);
        assert_eq!(traffic.sticky_by.as_deref(), Some("x-user-id"));
        assert_eq!(rollout.promotion, None);
    }

    #[test]
    fn no_traffic_before_a_step_starts_or_after_a_rollback() {
        let mut pending = stepping(0);
        pending["phase"] = json!("Pending");
        pending
            .as_object_mut()
            .expect("object")
            .remove("stepStartedAt");
        let mut rolled_back = stepping(0);
        rolled_back["phase"] = json!("RolledBack");
        for status in [pending, rolled_back] {
            let rollout = rollout(
                &md(1, json!({})),
                &[canary("c", "2026-12-01T00:00:00Z", status)],
            );
            assert_eq!(rollout, Rollout::default());
        }
    }

    #[test]
    fn the_oldest_canary_decides_when_several_target_one_deployment() {
        let rollout = rollout(
            &md(1, json!({})),
            &[
                canary("young", "2026-12-03T00:00:00Z", stepping(50)),
                canary("old", "2026-12-01T00:00:00Z", stepping(5)),
            ],
        );
        assert_eq!(rollout.traffic.expect("traffic").canary, "old");
    }

    #[test]
    fn a_promotion_serves_the_candidate_until_the_spec_changes() {
        let mut promoting = stepping(50);
        promoting["phase"] = json!("Promoting");
        let during = rollout(
            &md(3, json!({})),
            &[canary("c", "2026-12-01T00:00:00Z", promoting)],
        );
        let promotion = during.promotion.expect("promoting");
        assert_eq!(during.traffic, None);
        assert_eq!(promotion.generation, Some(3));
        let serving = serving_spec(&md(3, json!({})).spec, Some(&promotion));
        assert_eq!(
            serving.model.expect("model").source.oci.as_deref(),
            Some(PINNED)
        );

        // The Canary is gone; the status revision still says what serves at generation 3.
        let mut revision = Revision::default();
        mark_promoted(&mut revision, Some(&promotion));
        let revision = serde_json::to_value(&revision).expect("revision");
        let kept = rollout(&md(3, revision.clone()), &[]);
        assert_eq!(
            kept.promotion
                .expect("kept")
                .model_source
                .expect("source")
                .oci
                .as_deref(),
            Some(PINNED)
        );
        // A newer spec replaces it.
        assert_eq!(rollout(&md(4, revision), &[]), Rollout::default());
    }
}
