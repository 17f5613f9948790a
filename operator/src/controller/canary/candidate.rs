//! The candidate revision: the target's spec with the candidate's overrides applied. It is
//! what gets resolved and verified, with the target's keys, mode and pull secrets.

use modelplane_api::{
    canary::Candidate,
    model_deployment::{ModelDeploymentSpec, Task},
};

/// Why a candidate cannot apply to its target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotApplicable {
    /// A model candidate for a target that serves a pipeline.
    #[error("spec.candidate.model cannot apply: the target serves spec.pipeline, not spec.model")]
    PipelineTarget,
    /// Prompts for a target that does not generate text.
    #[error("spec.candidate.prompts needs a target whose spec.model.task is generate")]
    PromptsWithoutGenerate,
}

/// `target` with the candidate's model source, format, tokenizer, runtime image and prompts.
pub fn candidate_spec(
    target: &ModelDeploymentSpec,
    candidate: &Candidate,
) -> Result<ModelDeploymentSpec, NotApplicable> {
    let mut spec = target.clone();
    if let Some(wanted) = &candidate.model {
        let model = spec.model.as_mut().ok_or(NotApplicable::PipelineTarget)?;
        model.source = wanted.source.clone();
        if let Some(format) = wanted.format {
            model.format = format;
        }
        if let Some(tokenizer) = &wanted.tokenizer {
            model.tokenizer = Some(tokenizer.clone());
        }
    }
    if let Some(runtime) = &candidate.runtime {
        spec.runtime.image = Some(runtime.image.clone());
    }
    if let Some(prompts) = &candidate.prompts {
        let generates = spec
            .model
            .as_ref()
            .is_some_and(|m| m.task == Task::Generate);
        if !prompts.is_empty() && !generates {
            return Err(NotApplicable::PromptsWithoutGenerate);
        }
        spec.prompts = prompts.clone();
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn target(model: Value) -> ModelDeploymentSpec {
        serde_json::from_value(json!({
            "model": model,
            "runtime": {"replicas": 2, "image": "r.example/runtime:1", "imagePullSecrets": [{"name": "pull"}]},
            "verification": {"mode": "Enforce", "keys": [{"secretRef": {"name": "cosign-pub"}}]},
        }))
        .expect("target spec")
    }

    fn classifier() -> ModelDeploymentSpec {
        target(json!({"name": "m", "task": "classify", "source": {"oci": "r.example/m:v1"}}))
    }

    fn candidate(value: Value) -> Candidate {
        serde_json::from_value(value).expect("candidate")
    }

    #[test]
    fn model_candidate_replaces_the_source_and_keeps_policy_and_pull_secrets() {
        let spec = candidate_spec(
            &classifier(),
            &candidate(json!({"model": {"source": {"oci": "r.example/m:v2"}}})),
        )
        .expect("applies");
        let model = spec.model.as_ref().expect("model");
        assert_eq!(model.source.oci.as_deref(), Some("r.example/m:v2"));
        assert_eq!(model.name, "m");
        assert_eq!(spec.runtime.image.as_deref(), Some("r.example/runtime:1"));
        assert_eq!(spec.verification, classifier().verification);
        assert_eq!(
            spec.runtime.image_pull_secrets,
            classifier().runtime.image_pull_secrets
        );
    }

    #[test]
    fn runtime_candidate_replaces_only_the_image() {
        let spec = candidate_spec(
            &classifier(),
            &candidate(json!({"runtime": {"image": "r.example/runtime:2"}})),
        )
        .expect("applies");
        assert_eq!(spec.runtime.image.as_deref(), Some("r.example/runtime:2"));
        assert_eq!(spec.model, classifier().model);
    }

    #[test]
    fn model_candidate_for_a_pipeline_target_does_not_apply() {
        let mut pipeline = classifier();
        pipeline.model = None;
        let result = candidate_spec(
            &pipeline,
            &candidate(json!({"model": {"source": {"oci": "r.example/m:v2"}}})),
        );
        assert_eq!(result, Err(NotApplicable::PipelineTarget));
    }

    #[test]
    fn prompt_candidate_needs_a_generate_target() {
        let prompts = candidate(
            json!({"prompts": [{"name": "p", "variants": {"v1": {"system": "s"}}, "default": "v1"}]}),
        );
        assert_eq!(
            candidate_spec(&classifier(), &prompts),
            Err(NotApplicable::PromptsWithoutGenerate)
        );
        let generate = target(json!({"name": "lm", "task": "generate",
            "source": {"oci": "r.example/lm:v1"}, "tokenizer": {"path": "tokenizer.json"}}));
        let spec = candidate_spec(&generate, &prompts).expect("applies");
        assert_eq!(spec.prompts.len(), 1);
    }
}
