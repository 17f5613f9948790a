//! The modelplane-runtime configuration file.
//!
//! The operator renders a [`RuntimeConfig`] into a ConfigMap; a user can write the same
//! YAML by hand and run the runtime without Kubernetes. The runtime watches the file and
//! applies changes without a restart. Field names are camelCase on the wire.
//!
//! The crate is shared by the operator and the runtime and links no Kubernetes client:
//! besides the file's types it holds [`units`], the string formats (durations,
//! quantities, clock times) that the CRDs and the file both use.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

mod canary;
mod duration;
mod resilience;
mod signature;
mod tenancy;
pub mod units;

pub use canary::{CanaryConfig, MatchRule, is_header_name};
pub use duration::Duration;
pub use resilience::{
    AdaptiveConcurrency, BreakerConfig, FallbackHop, FixedResponse, FixedTensor, FixedValue,
    RemoteModel,
};
pub use signature::{
    BundleHttp, BundleSource, DEFAULT_BUNDLE_FILE, SignatureConfig, SignatureMode, TrustedKey,
    bundle_beside, default_bundle,
};
pub use tenancy::{
    ANONYMOUS_TENANT, ApiKeysConfig, FairnessConfig, GatewayConfig, IdentityConfig, JwtAlgorithm,
    JwtConfig, JwtKey, TenantCgroup, TenantConfig, TenantRequests, is_tenant_name,
};

/// Everything one runtime process serves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Listen addresses and process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// The models served, each with one or more versions.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// How requests are mapped to tenants.
    #[serde(default, skip_serializing_if = "is_default")]
    pub identity: IdentityConfig,
    /// Budgets, fair-queuing weights and cgroup slices of the tenants served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantConfig>,
    /// How request costs are counted for fair queuing across tenants.
    #[serde(default, skip_serializing_if = "FairnessConfig::is_default")]
    pub fairness: FairnessConfig,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Listen addresses and process-wide settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// REST (Open Inference Protocol v2) listen address.
    #[serde(default = "default_http")]
    pub http: String,
    /// gRPC (`inference.GRPCInferenceService`) listen address.
    #[serde(default = "default_grpc")]
    pub grpc: String,
    /// Separate address for `/metrics`; unset serves `/metrics` on the REST port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Where remote model artifacts (HTTP, OCI) are cached, keyed by digest.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: String,
    /// libtorch intra-op threads; unset sizes them from the cgroup CPU quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intra_op_threads: Option<u32>,
    /// How long shutdown waits for in-flight requests before exiting.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Duration,
    /// How often the config file and local model files are checked for changes.
    #[serde(default = "default_watch_interval")]
    pub watch_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: default_http(),
            grpc: default_grpc(),
            metrics: None,
            cache_dir: default_cache_dir(),
            intra_op_threads: None,
            shutdown_grace: default_shutdown_grace(),
            watch_interval: default_watch_interval(),
        }
    }
}

fn default_http() -> String {
    "0.0.0.0:8080".to_owned()
}
fn default_grpc() -> String {
    "0.0.0.0:8081".to_owned()
}
fn default_cache_dir() -> String {
    "/var/cache/modelplane".to_owned()
}
fn default_shutdown_grace() -> Duration {
    Duration::from_millis(30_000)
}
fn default_watch_interval() -> Duration {
    Duration::from_millis(1_000)
}

/// One model as served on the wire, with its versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelConfig {
    /// Name served on the wire (`/v2/models/{name}`).
    pub name: String,
    /// The tenant that owns the model: its worker threads run in that tenant's cgroup
    /// slice. Unset: no slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What the model does; selects endpoints.
    #[serde(default)]
    pub task: Task,
    /// Serialized model format.
    #[serde(default)]
    pub format: ModelFormat,
    /// Version served when a request names none; unset: the last listed version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_version: Option<String>,
    /// Input tensors, in the order `forward` takes them; unset: read from a
    /// `signature.json` beside a local model file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<TensorSpec>,
    /// Output tensors, in the order `forward` returns them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<TensorSpec>,
    /// The Hugging Face tokenizer of an `embed` or `generate` model (ignored by other
    /// tasks); unset: [`DEFAULT_TOKENIZER_FILE`] beside an embed model's file, or the file a
    /// generate folder's `config.json` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerConfig>,
    /// Dynamic batching.
    #[serde(default)]
    pub batching: Batching,
    /// Admission and size limits.
    #[serde(default)]
    pub limits: Limits,
    /// Continuous batching of a `generate` model (ignored by other tasks).
    #[serde(default, skip_serializing_if = "Generation::is_default")]
    pub generation: Generation,
    /// Versions served side by side (`/v2/models/{name}/versions/{version}`).
    pub versions: Vec<VersionConfig>,
    /// A candidate version that takes part of the requests naming no version; the
    /// rest go to the default (stable) version. Changing it reloads no version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryConfig>,
    /// The circuit breaker each version keeps; unset: none, unless `fallback` is set
    /// (then one with the default thresholds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerConfig>,
    /// Where requests go, in order, while the breaker of their version is open; empty:
    /// they are refused with 503 and `Retry-After` until it half-opens.
    /// Each hop is a one-key map (`{model: ...}`, `{grpc: ...}`, `{response: ...}`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "serde_yaml::with::singleton_map_recursive"
    )]
    pub fallback: Vec<FallbackHop>,
}

/// What a model does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Tensors in, tensors out.
    #[default]
    Tensor,
    /// Tensors in, class scores out.
    Classify,
    /// Text or tokens in, an embedding out.
    Embed,
    /// Text generation.
    Generate,
}

/// Serialized model format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// A TorchScript archive written by `torch.jit.save`.
    #[default]
    Torchscript,
}

/// Name, datatype and shape of one tensor; `-1` marks a variable dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TensorSpec {
    /// Tensor name on the wire.
    pub name: String,
    /// Open Inference Protocol datatype (`FP32`, `INT64`, ...).
    pub datatype: String,
    /// Dimensions, the batch dimension included; `-1` is variable.
    pub shape: Vec<i64>,
}

/// File name of the tokenizer read beside an embed model when `tokenizer` is unset.
pub const DEFAULT_TOKENIZER_FILE: &str = "tokenizer.json";

/// A tokenizer file that travels with the model, in every version's folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenizerConfig {
    /// `/`-separated path relative to the model's folder: the folder holding a `path`
    /// source's model file (a generate model: its folder), the OCI artifact, or the model
    /// URL of an `http` source (fetched into the model's cache folder). No `..`.
    #[serde(default = "default_tokenizer_path")]
    pub path: String,
    /// Lowercase hex sha256 of the file, checked at every load when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

fn default_tokenizer_path() -> String {
    DEFAULT_TOKENIZER_FILE.to_owned()
}

impl TokenizerConfig {
    fn validate(&self) -> Result<(), String> {
        let inside = !self.path.is_empty()
            && self
                .path
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !inside {
            return Err(format!(
                "tokenizer.path {:?} must be a relative path inside the model's folder",
                self.path
            ));
        }
        match &self.sha256 {
            Some(sha) if !is_sha256_hex(sha) => Err(format!(
                "tokenizer.sha256 {sha:?} is not 64 lowercase hex digits"
            )),
            _ => Ok(()),
        }
    }
}

/// One loadable version of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionConfig {
    /// Version label (`/versions/{version}`).
    pub version: String,
    /// Where the model file comes from, written as a one-key map (`{path: ...}`).
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub source: Source,
    /// Where the model runs.
    #[serde(default)]
    pub device: Device,
    /// Forwards run before the version reports ready.
    #[serde(default = "default_warmup")]
    pub warmup_iterations: u32,
    /// Verify the model files against an OpenSSF model-signing bundle before loading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureConfig>,
}

fn default_warmup() -> u32 {
    2
}

/// Where a model file comes from; exactly one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Source {
    /// A local file (or a file on a mounted volume); watched for changes.
    Path(String),
    /// A file fetched over HTTP(S), checked against its sha256.
    Http(HttpSource),
    /// An OCI artifact pulled by digest.
    Oci(OciSource),
}

/// A model file fetched over HTTP(S).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSource {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Expected sha256 of the body, 64 lowercase hex digits.
    pub sha256: String,
}

impl HttpSource {
    /// The URL of the file at `relative` (a `/`-separated path) from the model URL's folder.
    pub fn url_beside(&self, relative: &str) -> String {
        let url = self.url.split(['?', '#']).next().unwrap_or(&self.url);
        let path_start = url.find("://").map_or(0, |i| i + 3);
        let base = url[path_start..]
            .rfind('/')
            .map_or(url, |i| &url[..path_start + i]);
        format!("{base}/{relative}")
    }
}

/// An OCI artifact whose single (or first) layer is the model file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OciSource {
    /// `registry/repository@sha256:<digest>` (a tag may precede the digest).
    pub reference: String,
    /// Talk plain HTTP to the registry (loopback registries in tests).
    #[serde(default)]
    pub plain_http: bool,
}

/// Where a version runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// CPU, with intra-op threads sized from the cgroup quota.
    #[default]
    Cpu,
    /// The first CUDA device.
    Cuda,
}

/// Dynamic batching of concurrent requests into one forward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Batching {
    /// Most rows (dim 0) in one forward; 1 disables batching.
    #[serde(default = "default_max_batch")]
    pub max_batch_size: u32,
    /// How long an idle model waits for a partial batch to fill; 0 dispatches at once.
    #[serde(default)]
    pub max_queue_delay: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_batch_size: default_max_batch(),
            max_queue_delay: Duration::ZERO,
        }
    }
}

fn default_max_batch() -> u32 {
    1
}

/// Continuous batching of a `generate` model: its KV cache and its scheduler.
///
/// The KV cache takes `slots × context × kv_cache_bytes_per_token` bytes (the model's
/// `config.json`), allocated once at load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Generation {
    /// KV cache slots: requests generating at once.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Positions per slot (prompt + output tokens of one request), capped at the
    /// model's `max_context`.
    #[serde(default = "default_context")]
    pub context: u32,
    /// Most prompt tokens of one request fed in one step (chunked prefill), so a long
    /// prompt does not stall the running requests.
    #[serde(default = "default_prefill_chunk")]
    pub prefill_chunk: u32,
    /// Requests waiting for a free slot; more get 503.
    #[serde(default = "default_max_waiting")]
    pub max_waiting: u32,
    /// Most tokens (prompt chunks and decodes together) in one step.
    #[serde(default = "default_max_batch_tokens")]
    pub max_batch_tokens: u32,
    /// Reuse the KV cache of a prompt prefix a slot still holds (a shared system prompt),
    /// instead of computing it again. On by default; the output is the same either way.
    #[serde(default = "default_prefix_caching")]
    pub prefix_caching: bool,
}

impl Default for Generation {
    fn default() -> Self {
        Self {
            slots: default_slots(),
            context: default_context(),
            prefill_chunk: default_prefill_chunk(),
            max_waiting: default_max_waiting(),
            max_batch_tokens: default_max_batch_tokens(),
            prefix_caching: default_prefix_caching(),
        }
    }
}

fn default_prefix_caching() -> bool {
    true
}

impl Generation {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_slots() -> u32 {
    8
}
fn default_context() -> u32 {
    2048
}
fn default_prefill_chunk() -> u32 {
    64
}
fn default_max_waiting() -> u32 {
    256
}
fn default_max_batch_tokens() -> u32 {
    512
}

/// Admission and size limits of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Requests admitted at once (queued or running); more get 503.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Requests waiting for a forward; more get 503.
    #[serde(default = "default_max_queue")]
    pub max_queue: u32,
    /// A request not answered by then fails with 503 / DEADLINE_EXCEEDED.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// Largest request body; larger gets 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Most elements in one input tensor; more gets 413.
    #[serde(default = "default_max_elements")]
    pub max_elements: u64,
    /// How long a request admitted to the model may take to arrive (its body read and
    /// decoded); a client slower than that gets 408 and gives its place back. The
    /// request's deadline, if sooner, wins.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Duration,
    /// An in-flight limit that follows measured latency, within `maxInFlight`; unset:
    /// `maxInFlight` is the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveConcurrency>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: default_max_in_flight(),
            max_queue: default_max_queue(),
            request_timeout: default_request_timeout(),
            max_body_bytes: default_max_body(),
            max_elements: default_max_elements(),
            body_timeout: default_body_timeout(),
            adaptive: None,
        }
    }
}

fn default_max_in_flight() -> u32 {
    256
}
fn default_max_queue() -> u32 {
    1024
}
fn default_request_timeout() -> Duration {
    Duration::from_millis(30_000)
}
fn default_max_body() -> u64 {
    64 << 20
}
fn default_body_timeout() -> Duration {
    Duration::from_millis(10_000)
}
fn default_max_elements() -> u64 {
    16 << 20
}

/// Why a runtime config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The YAML does not parse or does not match the schema.
    #[error("config does not parse: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A model or version name cannot be used in a URL path.
    #[error("invalid {what} name {name:?}: use 1-128 characters from [A-Za-z0-9._-]")]
    InvalidName {
        /// `model` or `version`.
        what: &'static str,
        /// The refused name.
        name: String,
    },
    /// Two models share a name.
    #[error("model {0:?} is declared twice")]
    DuplicateModel(String),
    /// Two versions of one model share a label.
    #[error("model {model:?}: version {version:?} is declared twice")]
    DuplicateVersion {
        /// Model name.
        model: String,
        /// Version label.
        version: String,
    },
    /// A model lists no version.
    #[error("model {0:?} has no versions")]
    NoVersions(String),
    /// `defaultVersion` names a version that is not listed.
    #[error("model {model:?}: defaultVersion {version:?} is not one of its versions")]
    UnknownDefaultVersion {
        /// Model name.
        model: String,
        /// The missing label.
        version: String,
    },
    /// An HTTP source's sha256 is not 64 hex digits, or its URL is not http(s).
    #[error("model {model:?} version {version:?}: {reason}")]
    InvalidSource {
        /// Model name.
        model: String,
        /// Version label.
        version: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor spec is malformed, or batching needs a variable first dimension.
    #[error("model {model:?}: {reason}")]
    InvalidTensors {
        /// Model name.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// `tokenizer` names no file inside the model's folder, or its sha256 is malformed.
    #[error("model {model:?}: {reason}")]
    InvalidTokenizer {
        /// Model name.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// Identity, tenants or fairness are malformed.
    #[error("{0}")]
    Tenancy(String),
    /// A model's canary names no other version of it, or its weight, rules or sticky
    /// header are malformed.
    #[error("models[{model}].canary.{field}: {reason}")]
    InvalidCanary {
        /// Model name.
        model: String,
        /// The field below `canary`, camelCase (`candidate`, `match[0].headers`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A model's breaker thresholds or fallback chain are malformed.
    #[error("models[{model}].{field}: {reason}")]
    InvalidResilience {
        /// Model name.
        model: String,
        /// The field, camelCase (`breaker.errorPercent`, `fallback[1].grpc.address`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A limit or batch size is zero.
    #[error("model {model:?}: {field} must be greater than zero")]
    ZeroLimit {
        /// Model name.
        model: String,
        /// The camelCase field name.
        field: &'static str,
    },
}

impl RuntimeConfig {
    /// Parses and validates a config file's text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Renders the config as YAML (what the operator writes into the ConfigMap).
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        Ok(serde_yaml::to_string(self)?)
    }

    /// Checks what the schema cannot: names, uniqueness, sources, limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for model in &self.models {
            check_name("model", &model.name)?;
            if !names.insert(model.name.as_str()) {
                return Err(ConfigError::DuplicateModel(model.name.clone()));
            }
            model.validate()?;
        }
        let tasks: Vec<(&str, Task)> = self
            .models
            .iter()
            .map(|m| (m.name.as_str(), m.task))
            .collect();
        for model in &self.models {
            model.validate_resilience(&tasks)?;
        }
        tenancy::validate(&self.identity, &self.tenants, &self.fairness)
            .map_err(ConfigError::Tenancy)
    }
}

impl ModelConfig {
    /// Checks one model: versions, default version, canary, tokenizer, tensors and limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.versions.is_empty() {
            return Err(ConfigError::NoVersions(self.name.clone()));
        }
        let mut labels = HashSet::new();
        for version in &self.versions {
            check_name("version", &version.version)?;
            if !labels.insert(version.version.as_str()) {
                return Err(ConfigError::DuplicateVersion {
                    model: self.name.clone(),
                    version: version.version.clone(),
                });
            }
            version
                .source
                .validate()
                .map_err(|reason| ConfigError::InvalidSource {
                    model: self.name.clone(),
                    version: version.version.clone(),
                    reason,
                })?;
        }
        if let Some(default) = &self.default_version
            && !labels.contains(default.as_str())
        {
            return Err(ConfigError::UnknownDefaultVersion {
                model: self.name.clone(),
                version: default.clone(),
            });
        }
        if let Some(canary) = &self.canary {
            canary.validate(self)?;
        }
        if let Some(tokenizer) = &self.tokenizer {
            tokenizer
                .validate()
                .map_err(|reason| ConfigError::InvalidTokenizer {
                    model: self.name.clone(),
                    reason,
                })?;
        }
        self.validate_tensors()?;
        self.validate_limits()
    }

    /// The breaker each version keeps: `breaker`, or the default thresholds when only
    /// `fallback` is set; `None`: no breaker.
    pub fn breaker(&self) -> Option<&BreakerConfig> {
        static DEFAULT: std::sync::LazyLock<BreakerConfig> =
            std::sync::LazyLock::new(BreakerConfig::default);
        match &self.breaker {
            Some(breaker) => Some(breaker),
            None if !self.fallback.is_empty() => Some(&DEFAULT),
            None => None,
        }
    }

    /// The label of the version served when a request names none.
    pub fn default_version(&self) -> Option<&str> {
        self.default_version
            .as_deref()
            .or_else(|| self.versions.last().map(|v| v.version.as_str()))
    }

    fn validate_tensors(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidTensors {
            model: self.name.clone(),
            reason,
        };
        for spec in self.inputs.iter().chain(&self.outputs) {
            if spec.name.is_empty() {
                return Err(invalid("a tensor has an empty name".to_owned()));
            }
            if let Some(dim) = spec.shape.iter().find(|d| **d < -1) {
                return Err(invalid(format!(
                    "tensor {:?} has dimension {dim}",
                    spec.name
                )));
            }
        }
        if self.batching.max_batch_size > 1 {
            for spec in &self.inputs {
                if spec.shape.first() != Some(&-1) {
                    return Err(invalid(format!(
                        "batching needs dimension 0 of input {:?} to be -1",
                        spec.name
                    )));
                }
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let zero = |field| ConfigError::ZeroLimit {
            model: self.name.clone(),
            field,
        };
        let limits = &self.limits;
        let checks = [
            (
                u64::from(self.batching.max_batch_size),
                "batching.maxBatchSize",
            ),
            (u64::from(limits.max_in_flight), "limits.maxInFlight"),
            (u64::from(limits.max_queue), "limits.maxQueue"),
            (limits.max_body_bytes, "limits.maxBodyBytes"),
            (limits.max_elements, "limits.maxElements"),
            (u64::from(self.generation.slots), "generation.slots"),
            (u64::from(self.generation.context), "generation.context"),
            (
                u64::from(self.generation.prefill_chunk),
                "generation.prefillChunk",
            ),
            (
                u64::from(self.generation.max_waiting),
                "generation.maxWaiting",
            ),
            (
                u64::from(self.generation.max_batch_tokens),
                "generation.maxBatchTokens",
            ),
            (
                limits.request_timeout.get().as_nanos().min(1) as u64,
                "limits.requestTimeout",
            ),
            (
                limits.body_timeout.get().as_nanos().min(1) as u64,
                "limits.bodyTimeout",
            ),
        ];
        match checks.into_iter().find(|(value, _)| *value == 0) {
            Some((_, field)) => Err(zero(field)),
            None => Ok(()),
        }
    }
}

impl Source {
    fn validate(&self) -> Result<(), String> {
        match self {
            Source::Path(path) if path.is_empty() => Err("source.path is empty".to_owned()),
            Source::Path(_) => Ok(()),
            Source::Http(http) => {
                if !(http.url.starts_with("http://") || http.url.starts_with("https://")) {
                    return Err(format!("source.http.url {:?} is not http(s)", http.url));
                }
                if !is_sha256_hex(&http.sha256) {
                    return Err(format!(
                        "source.http.sha256 {:?} is not 64 lowercase hex digits",
                        http.sha256
                    ));
                }
                Ok(())
            }
            Source::Oci(oci) => match oci.reference.rsplit_once("@sha256:") {
                Some((_, digest)) if is_sha256_hex(digest) => Ok(()),
                _ => Err(format!(
                    "source.oci.reference {:?} must be pinned by digest (…@sha256:<64 hex>)",
                    oci.reference
                )),
            },
        }
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_name(what: &'static str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
