//! Desired state: the objects a ModelDeployment should own, as a pure function
//! of the ModelDeployment, its tenant and the operator's defaults.

mod config;
mod deployment;
mod service;
mod tenancy;

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{Resource, ResourceExt, api::ObjectMeta};
use modelplane_api::{
    canary::CanaryMatch,
    model_deployment::{ModelDeployment, ModelDeploymentSpec, ModelSource},
};
use modelplane_config::{RuntimeConfig, SignatureConfig, TenantConfig};

use crate::health::Blocker;

pub use config::CONFIG_FILE;
pub use config::{model_digest, render_runtime_config, render_with_candidate};
pub use deployment::{ROLLOUT_HASH_ANNOTATION, rollout_hash};
pub use tenancy::{apply_tenancy, tenant_config};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "modelplane-operator";
/// Value of `app.kubernetes.io/managed-by` on owned objects.
pub const MANAGED_BY: &str = "modelplane-operator";
/// Label selecting everything the operator owns (used to filter watches).
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=modelplane-operator";
/// Label naming a ModelDeployment's tenant.
pub const TENANT_LABEL: &str = "modelplane.io/tenant";
/// Name of the runtime container.
pub const RUNTIME_CONTAINER: &str = "runtime";
/// HTTP port of the runtime (Open Inference Protocol, OpenAI, `/metrics`).
pub const HTTP_PORT: i32 = 8080;
/// gRPC port of the runtime.
pub const GRPC_PORT: i32 = 8081;
/// Port under which the Service exposes the runtime's `/metrics`.
pub const METRICS_SERVICE_PORT: i32 = 9090;

/// Operator-wide settings that fill what a spec leaves unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Runtime image when `spec.runtime.image` is unset.
    pub runtime_image: String,
    /// Registries (`host[:port]`) spoken to over plain http, by the operator and the runtime.
    pub insecure_registries: Vec<String>,
}

/// The objects one ModelDeployment owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The runtime config file.
    pub config_map: ConfigMap,
    /// The runtime pods.
    pub deployment: Deployment,
    /// HTTP, gRPC and metrics ports of the pods.
    pub service: Service,
    /// Present when there is more than one replica to keep available.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
}

/// Where the owned objects live and what they carry, taken from the ModelDeployment.
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    /// Name shared by the ModelDeployment and its Deployment, Service and PDB.
    pub name: String,
    /// Namespace of everything.
    pub namespace: String,
    /// Tenant after defaulting.
    pub tenant: &'a str,
    /// The spec.
    pub spec: &'a ModelDeploymentSpec,
    /// The runtime budget of the tenant, from its TenantQuota (none without one).
    pub budget: Option<TenantConfig>,
    /// A Canary's candidate served beside the stable model, with its split.
    pub canary: Option<CanaryTraffic>,
    /// Controller ownerReference pointing at the ModelDeployment.
    owner_reference: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
}

impl<'a> Owner<'a> {
    /// Reads name, namespace and ownerReference off `md`; `None` if the API server
    /// has not assigned them (never the case for watched objects).
    pub fn new(md: &'a ModelDeployment, tenant: &'a str) -> Option<Self> {
        Some(Self {
            name: md.meta().name.clone()?,
            namespace: md.namespace()?,
            tenant,
            spec: &md.spec,
            budget: None,
            canary: None,
            owner_reference: md.controller_owner_ref(&())?,
        })
    }

    /// The same owner with the tenant's runtime budget.
    pub fn with_budget(mut self, budget: Option<TenantConfig>) -> Self {
        self.budget = budget;
        self
    }

    /// The same owner with a Canary's candidate beside the stable model.
    pub fn with_canary(mut self, canary: Option<CanaryTraffic>) -> Self {
        self.canary = canary;
        self
    }

    /// The same owner rendering `spec` instead (e.g. with its references pinned to digests).
    pub fn with_spec<'b>(&self, spec: &'b ModelDeploymentSpec) -> Owner<'b>
    where
        'a: 'b,
    {
        Owner {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            tenant: self.tenant,
            spec,
            budget: self.budget.clone(),
            canary: self.canary.clone(),
            owner_reference: self.owner_reference.clone(),
        }
    }

    /// Labels on every owned object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
        labels.insert("app.kubernetes.io/component".into(), "model-server".into());
        labels.insert(TENANT_LABEL.into(), self.tenant.to_owned());
        labels
    }

    /// Labels that select the runtime pods (immutable, so no tenant in them).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "modelplane-runtime".into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
        ])
    }

    /// The pod selector as `key=value,...` (for the scale subresource).
    pub fn selector(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Metadata of an owned object called `name`.
    fn metadata(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner_reference.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Name of the runtime ConfigMap.
    pub fn config_map_name(&self) -> String {
        format!("{}-runtime-config", self.name)
    }

    /// In-cluster DNS name of the Service.
    pub fn service_host(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }
}

/// A Canary's candidate as the runtime serves it: loaded beside the stable model in every
/// runtime pod, `weight` percent of the unmatched requests routed to it.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryTraffic {
    /// The Canary's name.
    pub canary: String,
    /// The candidate's model source, pinned by digest.
    pub source: ModelSource,
    /// Percent of the requests no rule matches that go to the candidate.
    pub weight: i32,
    /// Requests that always go to the candidate.
    pub rules: Vec<CanaryMatch>,
    /// The header that keeps a user on one version.
    pub sticky_by: Option<String>,
}

/// The tenant of a ModelDeployment: `spec.tenant`, else the namespace's
/// `modelplane.io/tenant` label, else the namespace name.
pub fn tenant_of(
    spec: &ModelDeploymentSpec,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> String {
    spec.tenant
        .clone()
        .or_else(|| {
            namespace_labels
                .and_then(|labels| labels.get(TENANT_LABEL))
                .cloned()
        })
        .unwrap_or_else(|| namespace.to_owned())
}

/// Computes every owned object; a spec the operator cannot serve yields the
/// [`Blocker`] to report instead. `model_signature` is what the runtime verifies HTTP and
/// PVC model files with (from the pinned revision).
pub fn desired_state(
    owner: &Owner<'_>,
    defaults: &Defaults,
    model_signature: Option<&SignatureConfig>,
) -> Result<Desired, Blocker> {
    let mut config = render_with_candidate(
        owner.spec,
        owner.canary.as_ref(),
        &defaults.insecure_registries,
        model_signature,
    )?;
    apply_tenancy(&mut config, owner.tenant, owner.budget.as_ref());
    config.validate().map_err(|error| {
        config::invalid(format!("the runtime would refuse this config: {error}"))
    })?;
    let yaml = config.to_yaml().map_err(|error| Blocker {
        reason: "InvalidRuntimeConfig",
        message: format!("the runtime config cannot be rendered: {error}"),
    })?;
    Ok(Desired {
        config_map: config::config_map(owner, yaml),
        deployment: deployment::deployment(owner, defaults),
        service: service::service(owner),
        pod_disruption_budget: service::pod_disruption_budget(owner),
    })
}

/// The ConfigMap that serves now with the tenancy of `owner` (tenant, budget) in its
/// config, for a ModelDeployment whose spec may not roll out: budgets reach the running
/// pods without anything else of the spec. `None` when there is no such ConfigMap or its
/// config already says so.
pub fn rebudgeted_config_map(owner: &Owner<'_>, serving: &ConfigMap) -> Option<ConfigMap> {
    let yaml = serving.data.as_ref()?.get(CONFIG_FILE)?;
    let mut config = RuntimeConfig::from_yaml(yaml).ok()?;
    let before = config.clone();
    apply_tenancy(&mut config, owner.tenant, owner.budget.as_ref());
    if config == before || config.validate().is_err() {
        return None;
    }
    let yaml = config.to_yaml().ok()?;
    Some(config::config_map(owner, yaml))
}

/// An object in the ModelDeployment's namespace that the spec refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A Secret, with the spec field naming it.
    Secret {
        /// Secret name.
        name: String,
        /// Spec field, e.g. `spec.verification.keys[0].secretRef`.
        field: String,
    },
    /// A PersistentVolumeClaim holding the model.
    PersistentVolumeClaim {
        /// Claim name.
        name: String,
    },
}

impl Reference {
    /// The condition reporting this reference as missing.
    pub fn missing(&self, namespace: &str) -> Blocker {
        match self {
            Reference::Secret { name, field } => Blocker {
                reason: "SecretNotFound",
                message: format!(
                    "Secret {name:?} named by {field} does not exist in namespace {namespace}; create it or fix the reference"
                ),
            },
            Reference::PersistentVolumeClaim { name } => Blocker {
                reason: "PersistentVolumeClaimNotFound",
                message: format!(
                    "PersistentVolumeClaim {name:?} named by spec.model.source.pvc.claimName does not exist in namespace {namespace}"
                ),
            },
        }
    }
}

/// Secrets and PVCs the spec refers to; each must exist before a rollout.
pub fn references(spec: &ModelDeploymentSpec) -> Vec<Reference> {
    let keys = spec.verification.iter().flat_map(|v| v.keys.iter());
    let key_secrets = keys.enumerate().map(|(index, key)| Reference::Secret {
        name: key.secret_ref.name.clone(),
        field: format!("spec.verification.keys[{index}].secretRef"),
    });
    let pull_secrets = spec
        .runtime
        .image_pull_secrets
        .iter()
        .enumerate()
        .map(|(index, secret)| Reference::Secret {
            name: secret.name.clone(),
            field: format!("spec.runtime.imagePullSecrets[{index}]"),
        });
    let secrets = key_secrets.chain(pull_secrets);
    let claims = spec
        .model
        .iter()
        .filter_map(|model| model.source.pvc.as_ref())
        .map(|pvc| Reference::PersistentVolumeClaim {
            name: pvc.claim_name.clone(),
        });
    secrets.chain(claims).collect()
}

#[cfg(test)]
mod tests;
