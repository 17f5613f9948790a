//! `spec.model`: which model is served, for which task, and where its files come from.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{
    DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, HTTP_URL_PATTERN, MODEL_NAME_PATTERN,
    OCI_REFERENCE_MAX, OCI_REFERENCE_PATTERN, PATH_MAX, RELATIVE_PATH_PATTERN, SHA256_PATTERN,
    URL_MAX,
};

/// The model a ModelDeployment serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.signatureBundle) || !has(self.signatureBundle.sha256) || has(self.source.http)").message("signatureBundle.sha256 pins a bundle fetched over HTTP: only an http source can use it"))]
pub struct ModelSpec {
    /// Name the model is served under on the wire (`/v2/models/{name}`, OpenAI `model`).
    #[schemars(length(min = 1, max = 63), pattern(MODEL_NAME_PATTERN))]
    pub name: String,
    /// What the model does; selects the endpoints the runtime exposes:
    /// `tensor` (Open Inference Protocol only), `classify` (tensors in, class scores out),
    /// `embed` (adds `/v1/embeddings`), `generate` (adds `/v1/completions` and `/v1/chat/completions`).
    pub task: Task,
    /// File format of the model.
    #[serde(default)]
    pub format: ModelFormat,
    /// Where the model file comes from: exactly one of `oci`, `http` or `pvc`.
    pub source: ModelSource,
    /// The Hugging Face tokenizer of a `generate` or `embed` model; unset: `tokenizer.json` in the model's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerRef>,
    /// Where the OpenSSF model-signing bundle of an `http` or `pvc` model is (the runtime
    /// verifies the files against it under `spec.verification` Enforce or Audit); unset:
    /// `model.sig` in the model's folder. Not used for `oci` models (cosign-verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_bundle: Option<SignatureBundleRef>,
}

/// What a model does, which selects the endpoints the runtime exposes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Task {
    /// Plain tensors in, tensors out (Open Inference Protocol).
    Tensor,
    /// Image or feature classification: tensors in, class scores out.
    Classify,
    /// Text in, embedding vectors out (`/v1/embeddings`).
    Embed,
    /// Text generation (`/v1/completions`, `/v1/chat/completions`).
    Generate,
}

/// File format of a model; one seam so that more formats (e.g. AOTInductor `.pt2`) can be added.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ModelFormat {
    /// A TorchScript module saved with `torch.jit.save`.
    #[default]
    Torchscript,
}

/// Where a model file comes from; exactly one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.oci) ? 1 : 0) + (has(self.http) ? 1 : 0) + (has(self.pvc) ? 1 : 0) == 1").message("exactly one of oci, http or pvc must be set"))]
pub struct ModelSource {
    /// An OCI artifact reference (`registry.example/models/resnet18:v3`); the operator
    /// resolves tags to digests and the runtime pulls by digest, checking sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = OCI_REFERENCE_MAX), pattern(OCI_REFERENCE_PATTERN))]
    pub oci: Option<String>,
    /// A file downloaded over HTTP(S) and checked against its sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSource>,
    /// A file on a PersistentVolumeClaim in the ModelDeployment's namespace, mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcSource>,
}

/// A model file downloaded over HTTP(S).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSource {
    /// `http://` or `https://` URL of the model file.
    #[schemars(length(max = URL_MAX), pattern(HTTP_URL_PATTERN))]
    pub url: String,
    /// Lowercase hex SHA-256 of the file; the download is refused when it differs.
    #[schemars(length(max = 64), pattern(SHA256_PATTERN))]
    pub sha256: String,
}

/// A model file on a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSource {
    /// Name of the PersistentVolumeClaim, in the same namespace.
    #[schemars(length(max = DNS_SUBDOMAIN_MAX), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub claim_name: String,
    /// Path of the model file inside the volume (relative, no `..`).
    #[schemars(length(max = PATH_MAX), pattern(RELATIVE_PATH_PATTERN))]
    pub path: String,
}

/// A Hugging Face `tokenizer.json` stored next to the model file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenizerRef {
    /// File name relative to the model: a file of the OCI artifact, a path next to the
    /// model file on the PVC, or a URL relative to the HTTP model URL.
    #[serde(default = "default_tokenizer_path")]
    #[schemars(length(max = PATH_MAX), pattern(RELATIVE_PATH_PATTERN))]
    pub path: String,
    /// Lowercase hex SHA-256 of the tokenizer file (checked when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(SHA256_PATTERN))]
    pub sha256: Option<String>,
}

/// An OpenSSF model-signing bundle (`model_signing sign key ... --signature model.sig`)
/// stored next to the model file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureBundleRef {
    /// Path relative to the model's folder on the PVC (the folder `pvc.path` names, or the
    /// one holding the model file), or a URL relative to the HTTP model URL.
    #[serde(default = "default_bundle_path")]
    #[schemars(length(max = PATH_MAX), pattern(RELATIVE_PATH_PATTERN))]
    pub path: String,
    /// Lowercase hex SHA-256 of the bundle, checked when set (HTTP models only: pins one signing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(SHA256_PATTERN))]
    pub sha256: Option<String>,
}

fn default_bundle_path() -> String {
    modelplane_config::DEFAULT_BUNDLE_FILE.to_owned()
}

fn default_tokenizer_path() -> String {
    "tokenizer.json".to_owned()
}
