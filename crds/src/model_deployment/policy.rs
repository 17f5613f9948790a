//! Serving policies of a ModelDeployment: signature verification and PII redaction.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, SHORT_TEXT_MAX};

/// Cosign signature verification of the runtime image and the model artifact.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.mode) || self.mode == 'Disabled' || (has(self.keys) && size(self.keys) > 0)").message("keys are required when mode is Enforce or Audit"))]
pub struct Verification {
    /// `Enforce`: nothing unverified is rolled out; `Audit`: failures are reported but
    /// rolled out; `Disabled`: no verification. Unset means `Enforce` when `keys` are given, else `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<VerificationMode>,
    /// Cosign public keys; a signature by any of them verifies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub keys: Vec<VerificationKey>,
}

impl Verification {
    /// The mode in force: the explicit `mode`, else `Enforce` when keys exist, else `Disabled`.
    pub fn effective_mode(&self) -> VerificationMode {
        match (self.mode, self.keys.is_empty()) {
            (Some(mode), _) => mode,
            (None, false) => VerificationMode::Enforce,
            (None, true) => VerificationMode::Disabled,
        }
    }
}

/// What happens when a signature does not verify.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum VerificationMode {
    /// Refuse the rollout; the previous revision keeps serving.
    Enforce,
    /// Roll out anyway, report `Verified=False` and a Warning event.
    Audit,
    /// Do not verify.
    Disabled,
}

/// One cosign public key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationKey {
    /// The Secret (in the ModelDeployment's namespace) holding the PEM public key.
    pub secret_ref: SecretKeyRef,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(max = DNS_SUBDOMAIN_MAX), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key within the Secret's data.
    #[serde(default = "default_key")]
    #[schemars(length(min = 1, max = SHORT_TEXT_MAX), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_key() -> String {
    "cosign.pub".to_owned()
}

/// Redaction of personal data in responses (and optionally requests); streaming-safe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redaction {
    /// Whether redaction runs.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Kinds of personal data replaced by a placeholder.
    #[serde(default = "all_detectors")]
    #[schemars(length(max = 5))]
    pub detectors: Vec<Detector>,
    /// Also redact request text before it reaches the model.
    #[serde(default)]
    pub requests: bool,
}

fn default_true() -> bool {
    true
}

fn all_detectors() -> Vec<Detector> {
    vec![
        Detector::Email,
        Detector::Phone,
        Detector::CreditCard,
        Detector::IpAddress,
        Detector::CnResidentId,
    ]
}

/// A kind of personal data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Detector {
    /// E-mail addresses.
    Email,
    /// Phone numbers.
    Phone,
    /// Payment card numbers (Luhn-checked).
    CreditCard,
    /// IPv4 and IPv6 addresses.
    IpAddress,
    /// Chinese resident identity card numbers (checksum-checked).
    CnResidentId,
}
