//! Desired state: the objects a ModelDeployment should own, as a pure function
//! of the ModelDeployment, its tenant and the operator's defaults.

mod config;
mod deployment;
mod fallback;
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
/// Label on a runtime-image candidate's objects and pods (value [`CANARY_TRACK`]); stable
/// pods have none, so their Deployment's (immutable) selector never had to change.
pub const TRACK_LABEL: &str = "modelplane.io/track";
/// Value of [`TRACK_LABEL`] on a runtime-image candidate.
pub const CANARY_TRACK: &str = "canary";
/// Label the Gateway API inference extension's endpoint picker reads to choose the
/// metric names of a pod's engine (docs/runtime.md, "Behind an InferencePool").
pub const ENGINE_TYPE_LABEL: &str = "inference.networking.k8s.io/engine-type";
/// Value of [`ENGINE_TYPE_LABEL`] on runtime pods.
pub const ENGINE_TYPE: &str = "modelplane";
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
    /// A runtime-image candidate's own pods, behind the same Service.
    pub candidate: Option<CandidateWorkload>,
}

/// The second Deployment a runtime-image candidate runs as, and its runtime config.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateWorkload {
    /// The candidate's runtime config file.
    pub config_map: ConfigMap,
    /// The candidate's pods (`<name>-canary`).
    pub deployment: Deployment,
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
    /// Whether this renders the stable objects or a runtime-image candidate's.
    pub track: Track,
    /// The model name `spec.fallback.modelDeployment` serves, when that one is known.
    pub fallback_model: Option<String>,
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
            track: Track::Stable,
            fallback_model: None,
            owner_reference: md.controller_owner_ref(&())?,
        })
    }

    /// The same owner with the model name its fallback ModelDeployment serves.
    pub fn with_fallback_model(mut self, model: Option<String>) -> Self {
        self.fallback_model = model;
        self
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
            track: self.track,
            fallback_model: self.fallback_model.clone(),
            owner_reference: self.owner_reference.clone(),
        }
    }

    /// The same owner rendering a runtime-image candidate's objects for `spec` (the
    /// candidate's image, model and replica count).
    pub fn candidate<'b>(&self, spec: &'b ModelDeploymentSpec) -> Owner<'b>
    where
        'a: 'b,
    {
        Owner {
            canary: None,
            track: Track::Canary,
            ..self.with_spec(spec)
        }
    }

    /// Name of the Deployment this owner renders: the ModelDeployment's, `-canary` for a
    /// runtime-image candidate.
    pub fn workload_name(&self) -> String {
        match self.track {
            Track::Stable => self.name.clone(),
            Track::Canary => format!("{}-canary", self.name),
        }
    }

    /// Labels on every owned object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
        labels.insert("app.kubernetes.io/component".into(), "model-server".into());
        labels.insert(TENANT_LABEL.into(), self.tenant.to_owned());
        labels.extend(self.track_label());
        labels
    }

    /// Labels of the runtime pods: [`Self::labels`] and [`ENGINE_TYPE_LABEL`].
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels();
        labels.insert(ENGINE_TYPE_LABEL.into(), ENGINE_TYPE.into());
        labels
    }

    /// Labels that select this owner's Deployment's pods: a candidate's add [`TRACK_LABEL`].
    pub fn pod_selector_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.extend(self.track_label());
        labels
    }

    fn track_label(&self) -> Option<(String, String)> {
        (self.track == Track::Canary).then(|| (TRACK_LABEL.to_owned(), CANARY_TRACK.to_owned()))
    }

    /// Labels that select every runtime pod of the ModelDeployment, stable and candidate:
    /// the Service's, the PDB's and the scale subresource's (immutable, so no tenant in them).
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
        format!("{}-runtime-config", self.workload_name())
    }

    /// In-cluster DNS name of the Service.
    pub fn service_host(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }
}

/// Which pods an [`Owner`] renders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Track {
    /// The ModelDeployment's own pods.
    #[default]
    Stable,
    /// A runtime-image candidate's pods.
    Canary,
}

/// A Canary's candidate as it serves. A model candidate is loaded beside the stable model in
/// every runtime pod, `weight` percent of the unmatched requests routed to it exactly. A
/// runtime-image candidate runs as a second Deployment behind the same Service, with as
/// many replicas as bring its share of the pods nearest to `weight` (coarse).
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryTraffic {
    /// The Canary's name.
    pub canary: String,
    /// The candidate's model source, pinned by digest; `None` keeps the stable model.
    pub source: Option<ModelSource>,
    /// The candidate's runtime image, pinned by digest; `Some` splits by replicas.
    pub image: Option<String>,
    /// Percent of the requests no rule matches that go to the candidate.
    pub weight: i32,
    /// Requests that always go to the candidate.
    pub rules: Vec<CanaryMatch>,
    /// The header that keeps a user on one version.
    pub sticky_by: Option<String>,
}

impl CanaryTraffic {
    /// Whether the candidate runs as its own Deployment (it changes the runtime image).
    pub fn by_replicas(&self) -> bool {
        self.image.is_some()
    }
}

/// Whether `pod` is a runtime-image candidate's.
pub fn is_candidate(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.labels().get(TRACK_LABEL).map(String::as_str) == Some(CANARY_TRACK)
}

/// Replicas of a runtime-image candidate beside `stable` replicas at `weight` percent: the
/// count whose share of all pods, `c / (stable + c)`, is nearest `weight`, at least one and
/// at most `stable` (the stable pods keep their count, so capacity never dips). None at
/// weight 0 or when stable is scaled to zero. The Service balances connections, not requests, across the pods: the split is
/// as coarse as the pod count.
pub fn candidate_replicas(stable: i32, weight: i32) -> i32 {
    if weight <= 0 || stable <= 0 {
        return 0;
    }
    if weight >= 50 {
        return stable;
    }
    let exact = f64::from(stable) * f64::from(weight) / f64::from(100 - weight);
    // Bounded by `stable` above, so the cast cannot overflow.
    (exact.round() as i32).clamp(1, stable)
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
    let split = owner
        .canary
        .as_ref()
        .filter(|traffic| !traffic.by_replicas());
    let config = to_yaml(runtime_config(owner, split, defaults, model_signature)?)?;
    let candidate = match owner
        .canary
        .as_ref()
        .filter(|traffic| traffic.by_replicas())
    {
        Some(traffic) => Some(candidate_workload(
            owner,
            traffic,
            defaults,
            model_signature,
        )?),
        None => None,
    };
    Ok(Desired {
        config_map: config::config_map(owner, config),
        deployment: deployment::deployment(owner, defaults),
        service: service::service(owner),
        pod_disruption_budget: service::pod_disruption_budget(owner),
        candidate,
    })
}

/// The runtime config of `owner`'s pods, with `split` (a model candidate) in it.
fn runtime_config(
    owner: &Owner<'_>,
    split: Option<&CanaryTraffic>,
    defaults: &Defaults,
    model_signature: Option<&SignatureConfig>,
) -> Result<RuntimeConfig, Blocker> {
    let mut config = render_with_candidate(
        owner.spec,
        split,
        &defaults.insecure_registries,
        model_signature,
    )?;
    apply_tenancy(&mut config, owner.tenant, owner.budget.as_ref());
    fallback::apply_fallback(&mut config, owner)?;
    Ok(config)
}

/// The config file, once the runtime would take it.
fn to_yaml(config: RuntimeConfig) -> Result<String, Blocker> {
    config.validate().map_err(|error| {
        config::invalid(format!("the runtime would refuse this config: {error}"))
    })?;
    config.to_yaml().map_err(|error| Blocker {
        reason: "InvalidRuntimeConfig",
        message: format!("the runtime config cannot be rendered: {error}"),
    })
}

/// The second Deployment and config of a runtime-image candidate: the target's spec with
/// the candidate's image (and model, if it changes one too), at the replicas its weight gives.
fn candidate_workload(
    owner: &Owner<'_>,
    traffic: &CanaryTraffic,
    defaults: &Defaults,
    model_signature: Option<&SignatureConfig>,
) -> Result<CandidateWorkload, Blocker> {
    let mut spec = owner.spec.clone();
    spec.runtime.image.clone_from(&traffic.image);
    spec.runtime.replicas = candidate_replicas(owner.spec.runtime.replicas, traffic.weight);
    if let (Some(model), Some(source)) = (spec.model.as_mut(), &traffic.source) {
        model.source = source.clone();
    }
    let candidate = owner.candidate(&spec);
    let mut config = runtime_config(&candidate, None, defaults, model_signature)?;
    if let (Some(stable), Some(model)) = (&owner.spec.model, &spec.model) {
        config::label_as_candidate(&mut config, &stable.source, &model.source);
    }
    let config = to_yaml(config)?;
    Ok(CandidateWorkload {
        config_map: config::config_map(&candidate, config),
        deployment: deployment::deployment(&candidate, defaults),
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
