//! The runtime config file the operator renders into the ConfigMap.
//!
//! This is the single seam between the ModelDeployment API and the runtime's
//! file format (`modelplane_config`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use modelplane_api::model_deployment::{
    self as md, ModelDeploymentSpec, ModelSource, ModelSpec, RuntimeSpec,
};
use modelplane_config::{
    self as rc, Batching, CanaryConfig, Duration, HttpSource, Limits, MatchRule, ModelConfig,
    OciSource, RuntimeConfig, ServerConfig, SignatureConfig, Source, VersionConfig, bundle_beside,
};

use super::{CanaryTraffic, Owner};
use crate::health::Blocker;

/// Key of the config file in the ConfigMap.
pub const CONFIG_FILE: &str = "config.yaml";
/// Where the ConfigMap is mounted in the runtime container.
pub const CONFIG_DIR: &str = "/etc/modelplane";
/// Where the model cache (an emptyDir) is mounted.
pub const CACHE_DIR: &str = "/var/cache/modelplane";
/// Where a PVC model source is mounted, read-only.
pub const MODEL_DIR: &str = "/models";

pub(super) fn invalid(message: String) -> Blocker {
    Blocker {
        reason: "InvalidRuntimeConfig",
        message,
    }
}

/// Renders the runtime config for a spec; models in `insecure_registries` are pulled over
/// plain http. `model_signature` (HTTP and PVC models under Enforce or Audit) is rendered
/// into each version with its bundle location made explicit: the runtime verifies the
/// model files against it before loading them.
pub fn render_runtime_config(
    spec: &ModelDeploymentSpec,
    insecure_registries: &[String],
    model_signature: Option<&SignatureConfig>,
) -> Result<RuntimeConfig, Blocker> {
    render_with_candidate(spec, None, insecure_registries, model_signature)
}

/// [`render_runtime_config`] with a Canary's candidate served beside the stable version
/// and the split that routes to it.
pub fn render_with_candidate(
    spec: &ModelDeploymentSpec,
    candidate: Option<&CanaryTraffic>,
    insecure_registries: &[String],
    model_signature: Option<&SignatureConfig>,
) -> Result<RuntimeConfig, Blocker> {
    let Some(model) = &spec.model else {
        return Err(Blocker {
            reason: "PipelineNotSupported",
            message: "spec.pipeline is not served by this operator version yet; use spec.model"
                .into(),
        });
    };
    let config = RuntimeConfig {
        server: ServerConfig {
            cache_dir: CACHE_DIR.into(),
            ..ServerConfig::default()
        },
        models: vec![signed(
            with_candidate(
                model_config(model, &spec.runtime, insecure_registries)?,
                candidate,
                insecure_registries,
            )?,
            model_signature,
            model.signature_bundle.as_ref(),
        )],
        ..RuntimeConfig::default()
    };
    config
        .validate()
        .map_err(|error| invalid(format!("the runtime would refuse this spec: {error}")))?;
    Ok(config)
}

fn model_config(
    model: &ModelSpec,
    runtime: &RuntimeSpec,
    insecure_registries: &[String],
) -> Result<ModelConfig, Blocker> {
    let duration = |field: &str, text: &str| {
        text.parse::<Duration>()
            .map_err(|error| invalid(format!("{field}: {error}")))
    };
    let count = |field: &str, value: i32| {
        u32::try_from(value).map_err(|_| invalid(format!("{field} must not be negative")))
    };
    let (batching, limits) = (&runtime.batching, &runtime.limits);
    Ok(ModelConfig {
        name: model.name.clone(),
        tenant: None,
        task: task(model.task),
        format: rc::ModelFormat::Torchscript,
        default_version: None,
        inputs: Vec::new(),
        outputs: Vec::new(),
        tokenizer: model
            .tokenizer
            .as_ref()
            .map(|tokenizer| rc::TokenizerConfig {
                path: tokenizer.path.clone(),
                sha256: tokenizer.sha256.clone(),
            }),
        batching: Batching {
            max_batch_size: count(
                "spec.runtime.batching.maxBatchSize",
                batching.max_batch_size,
            )?,
            max_queue_delay: duration(
                "spec.runtime.batching.maxQueueDelay",
                &batching.max_queue_delay,
            )?,
        },
        limits: Limits {
            max_in_flight: count("spec.runtime.limits.maxInFlight", limits.max_in_flight)?,
            max_queue: count("spec.runtime.limits.maxQueue", limits.max_queue)?,
            request_timeout: duration(
                "spec.runtime.limits.requestTimeout",
                &limits.request_timeout,
            )?,
            adaptive: limits
                .adaptive
                .as_ref()
                .map(|adaptive| adaptive_limit(adaptive, &count, &duration))
                .transpose()?,
            ..Limits::default()
        },
        generation: rc::Generation::default(),
        canary: None,
        breaker: None,
        fallback: Vec::new(),
        versions: vec![VersionConfig {
            version: version_label(&model.source),
            source: source(&model.source, insecure_registries)?,
            device: match runtime.device {
                md::Device::Cpu => rc::Device::Cpu,
                md::Device::Cuda => rc::Device::Cuda,
            },
            warmup_iterations: 2,
            signature: None,
        }],
    })
}

/// `spec.runtime.limits.adaptive` in the runtime's terms; unset fields keep its defaults.
fn adaptive_limit(
    spec: &md::AdaptiveLimit,
    count: &dyn Fn(&str, i32) -> Result<u32, Blocker>,
    duration: &dyn Fn(&str, &str) -> Result<Duration, Blocker>,
) -> Result<rc::AdaptiveConcurrency, Blocker> {
    let d = rc::AdaptiveConcurrency::default();
    let field = |name: &str| format!("spec.runtime.limits.adaptive.{name}");
    let or = |value: Option<i32>, name: &str, default: u32| {
        value.map_or(Ok(default), |v| count(&field(name), v))
    };
    Ok(rc::AdaptiveConcurrency {
        min_limit: or(spec.min_limit, "minLimit", d.min_limit)?,
        max_limit: spec
            .max_limit
            .map(|v| count(&field("maxLimit"), v))
            .transpose()?,
        initial_limit: or(spec.initial_limit, "initialLimit", d.initial_limit)?,
        window: spec
            .window
            .as_deref()
            .map_or(Ok(d.window), |w| duration(&field("window"), w))?,
        buffer_percent: or(spec.buffer_percent, "bufferPercent", d.buffer_percent)?,
        max_change_percent: or(
            spec.max_change_percent,
            "maxChangePercent",
            d.max_change_percent,
        )?,
        ..d
    })
}

/// `model` with the candidate's version beside its stable one and the split to it; the
/// stable version becomes the default.
fn with_candidate(
    mut model: ModelConfig,
    candidate: Option<&CanaryTraffic>,
    insecure_registries: &[String],
) -> Result<ModelConfig, Blocker> {
    // Only a model candidate is split in the runtime.
    let Some((traffic, candidate_source)) =
        candidate.and_then(|traffic| Some((traffic, traffic.source.as_ref()?)))
    else {
        return Ok(model);
    };
    let Some(stable) = model.versions.first().cloned() else {
        return Ok(model);
    };
    let stable_label = stable.version.clone();
    let candidate_label = candidate_label(&stable_label, candidate_source);
    model.versions = vec![
        VersionConfig {
            version: stable_label.clone(),
            ..stable.clone()
        },
        VersionConfig {
            version: candidate_label.clone(),
            source: source(candidate_source, insecure_registries)?,
            ..stable
        },
    ];
    model.default_version = Some(stable_label);
    model.canary = Some(CanaryConfig {
        candidate: candidate_label,
        weight: u32::try_from(traffic.weight.clamp(0, 100)).unwrap_or(0),
        rules: traffic
            .rules
            .iter()
            .map(|rule| MatchRule {
                headers: rule.headers.clone(),
                tenants: rule.tenants.clone(),
            })
            .collect(),
        sticky_by: traffic.sticky_by.clone(),
    });
    Ok(model)
}

/// Labels the versions of a runtime-image candidate's config as [`candidate_label`] does, so
/// that its metrics tell it from stable's even when it serves the same model.
pub(super) fn label_as_candidate(
    config: &mut RuntimeConfig,
    stable: &ModelSource,
    candidate: &ModelSource,
) {
    let label = candidate_label(&version_label(stable), candidate);
    for model in &mut config.models {
        for version in &mut model.versions {
            version.version.clone_from(&label);
        }
        model.default_version = None;
    }
}

/// The candidate's version label in the runtime (and so in its metrics): its source's own
/// label, suffixed when that is the stable version's.
fn candidate_label(stable: &str, candidate: &ModelSource) -> String {
    let mut label = version_label(candidate);
    if label == stable {
        label.push_str("-canary");
    }
    label
}

/// `model` with `signature` on every version, its bundle where `spec.model.signatureBundle`
/// says, else `model.sig` in the model's folder (or beside the model URL).
fn signed(
    mut model: ModelConfig,
    signature: Option<&SignatureConfig>,
    bundle: Option<&md::SignatureBundleRef>,
) -> ModelConfig {
    for version in &mut model.versions {
        let located =
            bundle.and_then(|b| bundle_beside(&version.source, &b.path, b.sha256.clone()));
        version.signature = signature.map(|signature| SignatureConfig {
            bundle: located.or_else(|| signature.bundle_for(&version.source)),
            ..signature.clone()
        });
    }
    model
}

fn task(task: md::Task) -> rc::Task {
    match task {
        md::Task::Tensor => rc::Task::Tensor,
        md::Task::Classify => rc::Task::Classify,
        md::Task::Embed => rc::Task::Embed,
        md::Task::Generate => rc::Task::Generate,
    }
}

fn source(source: &ModelSource, insecure_registries: &[String]) -> Result<Source, Blocker> {
    if let Some(reference) = &source.oci {
        if !reference.contains("@sha256:") {
            return Err(Blocker {
                reason: "ModelTagNotPinned",
                message: format!(
                    "model reference {reference:?} is not pinned by digest; the operator renders only references it resolved to digests"
                ),
            });
        }
        let registry = reference.parse::<modelplane_verify::Reference>().ok();
        return Ok(Source::Oci(OciSource {
            reference: reference.clone(),
            plain_http: registry
                .is_some_and(|r| insecure_registries.iter().any(|h| h == r.registry())),
        }));
    }
    if let Some(http) = &source.http {
        return Ok(Source::Http(HttpSource {
            url: http.url.clone(),
            sha256: http.sha256.clone(),
        }));
    }
    if let Some(pvc) = &source.pvc {
        return Ok(Source::Path(format!("{MODEL_DIR}/{}", pvc.path)));
    }
    Err(invalid(
        "spec.model.source sets none of oci, http or pvc".into(),
    ))
}

/// Version label of a source: the OCI tag, else a short content digest.
fn version_label(source: &ModelSource) -> String {
    let short = |digest: &str| digest.chars().take(12).collect::<String>();
    if let Some(reference) = &source.oci {
        let (name, digest) = reference.split_once("@sha256:").unwrap_or((reference, ""));
        let tag = name
            .rsplit_once('/')
            .and_then(|(_, last)| last.split_once(':'))
            .map(|(_, tag)| tag);
        return tag.map(str::to_owned).unwrap_or_else(|| short(digest));
    }
    if let Some(http) = &source.http {
        return short(&http.sha256);
    }
    if let Some(pvc) = &source.pvc {
        let hash = crate::drift::hash_of(&pvc.path).unwrap_or_default();
        return short(&hash);
    }
    "1".into()
}

/// Digest (`sha256:…`) of the model artifact, when the spec pins one.
pub fn model_digest(source: &ModelSource) -> Option<String> {
    if let Some(reference) = &source.oci {
        return reference
            .split_once('@')
            .map(|(_, digest)| digest.to_owned());
    }
    source
        .http
        .as_ref()
        .map(|http| format!("sha256:{}", http.sha256))
}

/// The ConfigMap holding the rendered config file.
pub fn config_map(owner: &Owner<'_>, yaml: String) -> ConfigMap {
    ConfigMap {
        metadata: owner.metadata(owner.config_map_name()),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_owned(), yaml)])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use modelplane_config::{BundleHttp, BundleSource, SignatureMode, TrustedKey};
    use serde_json::{Value, json};

    use super::*;

    fn spec(source: Value, bundle: Option<Value>) -> ModelDeploymentSpec {
        let mut model = json!({"name": "r18", "task": "classify", "source": source});
        if let Some(bundle) = bundle {
            model["signatureBundle"] = bundle;
        }
        serde_json::from_value(json!({"model": model, "runtime": {"replicas": 1}})).expect("spec")
    }

    fn enforce() -> SignatureConfig {
        SignatureConfig {
            mode: SignatureMode::Enforce,
            keys: vec![TrustedKey {
                name: "model-pub/model.pub".into(),
                pem: "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n".into(),
            }],
            bundle: None,
        }
    }

    #[test]
    fn signature_block_is_rendered_with_its_bundle_beside_the_model() {
        let pvc = json!({"pvc": {"claimName": "models", "path": "r18/v3/model.pt"}});
        let url = "https://m.example/r18/v3/model.pt";
        let http = json!({"http": {"url": url, "sha256": "a".repeat(64)}});
        let http_bundle = |url: &str, sha256: Option<String>| {
            Some(BundleSource::Http(BundleHttp {
                url: url.into(),
                sha256,
            }))
        };
        #[rustfmt::skip]
        let table = [
            (&pvc, None, Some(enforce()), Some(BundleSource::Path("model.sig".into()))),
            (&pvc, Some(json!({"path": "sigs/r18.sig"})), Some(enforce()), Some(BundleSource::Path("sigs/r18.sig".into()))),
            (&http, None, Some(enforce()), http_bundle("https://m.example/r18/v3/model.sig", None)),
            (&http, Some(json!({"path": "model.pt.sig", "sha256": "b".repeat(64)})), Some(enforce()), http_bundle("https://m.example/r18/v3/model.pt.sig", Some("b".repeat(64)))),
        ];
        for (source, bundle, signature, expected) in table {
            let spec = spec(source.clone(), bundle.clone());
            let config = render_runtime_config(&spec, &[], signature.as_ref()).expect("renders");
            let rendered = config.models[0].versions[0]
                .signature
                .clone()
                .expect("block");
            assert_eq!(rendered.bundle, expected, "{source} {bundle:?}");
            assert_eq!(rendered.keys, enforce().keys);
            let yaml = config.to_yaml().expect("yaml");
            assert_eq!(
                RuntimeConfig::from_yaml(&yaml).expect("the runtime reads it"),
                config
            );
        }
    }

    #[test]
    fn a_canary_candidate_is_rendered_beside_stable_with_its_split() {
        let stable = json!({"oci": "r.example/r18:1@sha256:".to_owned() + &"a".repeat(64)});
        let candidate = format!("r.example/r18:2@sha256:{}", "b".repeat(64));
        let traffic = CanaryTraffic {
            canary: "r18-v2".into(),
            source: Some(serde_json::from_value(json!({"oci": candidate})).expect("source")),
            image: None,
            weight: 10,
            rules: vec![
                serde_json::from_value(json!({"headers": {"x-canary": "true"}})).expect("rule"),
            ],
            sticky_by: Some("x-user".into()),
        };
        let config =
            render_with_candidate(&spec(stable, None), Some(&traffic), &[], None).expect("renders");
        let yaml = config.to_yaml().expect("yaml");
        // What the runtime reads back is the same split.
        let read = RuntimeConfig::from_yaml(&yaml).expect("the runtime accepts it");
        let model = &read.models[0];
        assert_eq!(model.versions.len(), 2, "{yaml}");
        let canary = model.canary.as_ref().expect("canary");
        assert_eq!(canary.weight, 10);
        assert_eq!(canary.sticky_by.as_deref(), Some("x-user"));
        assert_eq!(canary.rules[0].headers["x-canary"], "true");
        assert_eq!(
            model.default_version.as_deref(),
            Some(model.versions[0].version.as_str())
        );
        assert_eq!(canary.candidate, model.versions[1].version);
        assert_ne!(model.versions[0].version, model.versions[1].version);
        assert!(
            yaml.contains(&candidate) && yaml.contains("weight: 10"),
            "{yaml}"
        );
    }

    #[test]
    fn compound_request_timeout_reaches_the_runtime_exactly() {
        let pvc = json!({"pvc": {"claimName": "models", "path": "r18/v3/model.pt"}});
        let mut spec = spec(pvc, None);
        spec.runtime.limits.request_timeout = "1m30s".into();
        spec.runtime.batching.max_queue_delay = "1.5ms".into();
        let yaml = render_runtime_config(&spec, &[], None)
            .expect("renders")
            .to_yaml()
            .expect("yaml");
        let read = RuntimeConfig::from_yaml(&yaml).expect("the runtime reads it");
        let model = &read.models[0];
        assert_eq!(
            model.limits.request_timeout.get(),
            std::time::Duration::from_secs(90)
        );
        assert_eq!(
            model.batching.max_queue_delay.get(),
            std::time::Duration::from_micros(1_500)
        );
    }

    #[test]
    fn a_generate_model_without_a_tokenizer_renders_its_folder() {
        // The runtime reads the folder's tokenizer.json (config.json, model.pt, tokenizer.json).
        let model = json!({"name": "lm", "task": "generate",
            "source": {"pvc": {"claimName": "models", "path": "lm/v1"}}});
        let spec: ModelDeploymentSpec =
            serde_json::from_value(json!({"model": model, "runtime": {"replicas": 1}}))
                .expect("spec");
        let config = render_runtime_config(&spec, &[], None).expect("renders");
        assert_eq!(config.models[0].task, rc::Task::Generate);
        assert_eq!(
            config.models[0].versions[0].source,
            Source::Path("/models/lm/v1".into())
        );
    }

    #[test]
    fn the_tokenizer_is_rendered_with_its_path_and_pin_for_every_source() {
        let sha = "c".repeat(64);
        let sources = [
            json!({"pvc": {"claimName": "models", "path": "minilm/1/model.pt"}}),
            json!({"http": {"url": "https://m.example/minilm/1/model.pt", "sha256": "a".repeat(64)}}),
            json!({"oci": format!("r.example/minilm@sha256:{}", "b".repeat(64))}),
        ];
        for source in sources {
            let model = json!({"name": "minilm", "task": "embed", "source": source,
                "tokenizer": {"path": "vocab/minilm.json", "sha256": sha}});
            let spec: ModelDeploymentSpec =
                serde_json::from_value(json!({"model": model, "runtime": {"replicas": 1}}))
                    .expect("spec");
            let config = render_runtime_config(&spec, &[], None).expect("renders");
            assert_eq!(
                config.models[0].tokenizer,
                Some(rc::TokenizerConfig {
                    path: "vocab/minilm.json".into(),
                    sha256: Some(sha.clone()),
                }),
                "{source}"
            );
            let yaml = config.to_yaml().expect("yaml");
            assert_eq!(
                RuntimeConfig::from_yaml(&yaml).expect("the runtime reads it"),
                config
            );
        }
    }

    #[test]
    fn the_minilm_example_renders_its_pinned_tokenizer_beside_its_http_model() {
        use serde::Deserialize;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/embedding-minilm.yaml"
        );
        let text = std::fs::read_to_string(path).expect("example");
        let deployment = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| serde_yaml::Value::deserialize(doc).expect("yaml"))
            .find(|doc| doc["kind"] == "ModelDeployment")
            .expect("a ModelDeployment");
        let spec: ModelDeploymentSpec =
            serde_yaml::from_value(deployment["spec"].clone()).expect("spec");
        let config = render_runtime_config(&spec, &[], None).expect("renders");
        let model = &config.models[0];
        let pin = spec.model.as_ref().and_then(|m| m.tokenizer.clone());
        assert_eq!(
            model.tokenizer,
            pin.map(|t| rc::TokenizerConfig {
                path: t.path,
                sha256: t.sha256,
            })
        );
        assert!(model.tokenizer.as_ref().is_some_and(|t| t.sha256.is_some()));
        assert!(matches!(&model.versions[0].source, Source::Http(_)));
    }

    #[test]
    fn an_unset_tokenizer_renders_none_and_a_bare_one_its_default_path() {
        let pvc = json!({"pvc": {"claimName": "models", "path": "r18/v3/model.pt"}});
        let config = render_runtime_config(&spec(pvc.clone(), None), &[], None).expect("renders");
        assert_eq!(config.models[0].tokenizer, None);
        let model = json!({"name": "lm", "task": "embed", "source": pvc, "tokenizer": {}});
        let spec: ModelDeploymentSpec =
            serde_json::from_value(json!({"model": model, "runtime": {"replicas": 1}}))
                .expect("spec");
        let config = render_runtime_config(&spec, &[], None).expect("renders");
        assert_eq!(
            config.models[0].tokenizer.as_ref().map(|t| t.path.as_str()),
            Some(rc::DEFAULT_TOKENIZER_FILE)
        );
    }

    #[test]
    fn without_a_signature_no_block_is_rendered() {
        let pvc = json!({"pvc": {"claimName": "models", "path": "r18/v3/model.pt"}});
        let spec = spec(pvc, Some(json!({"path": "model.sig"})));
        let config = render_runtime_config(&spec, &[], None).expect("renders");
        assert_eq!(config.models[0].versions[0].signature, None);
    }
}
