//! The runtime config file the operator renders into the ConfigMap.
//!
//! This is the single seam between the ModelDeployment API and the runtime's
//! file format (`modelplane_api::runtime_config`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use modelplane_api::{
    model_deployment::{self as md, ModelDeploymentSpec, ModelSource, ModelSpec, RuntimeSpec},
    runtime_config::{
        self as rc, Batching, Duration, HttpSource, Limits, ModelConfig, OciSource, RuntimeConfig,
        ServerConfig, Source, VersionConfig,
    },
};

use super::Owner;
use crate::health::Blocker;

/// Key of the config file in the ConfigMap.
pub const CONFIG_FILE: &str = "config.yaml";
/// Where the ConfigMap is mounted in the runtime container.
pub const CONFIG_DIR: &str = "/etc/modelplane";
/// Where the model cache (an emptyDir) is mounted.
pub const CACHE_DIR: &str = "/var/cache/modelplane";
/// Where a PVC model source is mounted, read-only.
pub const MODEL_DIR: &str = "/models";

fn invalid(message: String) -> Blocker {
    Blocker {
        reason: "InvalidRuntimeConfig",
        message,
    }
}

/// Renders the runtime config for a spec; models in `insecure_registries` are pulled over
/// plain http.
pub fn render_runtime_config(
    spec: &ModelDeploymentSpec,
    insecure_registries: &[String],
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
        models: vec![model_config(model, &spec.runtime, insecure_registries)?],
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
        task: task(model.task),
        format: rc::ModelFormat::Torchscript,
        default_version: None,
        inputs: Vec::new(),
        outputs: Vec::new(),
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
            ..Limits::default()
        },
        versions: vec![VersionConfig {
            version: version_label(&model.source),
            source: source(&model.source, insecure_registries)?,
            device: match runtime.device {
                md::Device::Cpu => rc::Device::Cpu,
                md::Device::Cuda => rc::Device::Cuda,
            },
            warmup_iterations: 2,
        }],
    })
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
