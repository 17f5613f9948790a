//! What a verification concludes: [`Verified`] or a [`Failure`] with a condition reason.

use std::fmt;

use crate::cosign::CosignFailure;
use crate::digest::Digest;
use crate::keys::KeyError;
use crate::model_signing::ModelSigningFailure;
use crate::reference::Reference;
use crate::registry::RegistryError;

/// A successful verification (or, in `Disabled` mode, a resolution without verification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The digest that will run: the image or artifact manifest digest, or for model files the
    /// model-signing root digest over the file digests.
    pub digest: Digest,
    /// The reference pinned to `digest` (`registry/repo:tag@sha256:...`); `None` for model files.
    pub pinned: Option<Reference>,
    /// Name of the trusted key that signed; `None` when verification is disabled.
    pub signer: Option<String>,
    /// Whether the result came from the cache.
    pub from_cache: bool,
}

/// Why an artifact is not verified; each maps to a `Verified=False` condition reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No signature was found for the digest.
    NoSignature,
    /// Signatures exist, none by a trusted key.
    WrongKey,
    /// A trusted key signed a payload for another digest.
    DigestMismatch,
    /// The reference pins a digest, and its tag now points elsewhere.
    TagMoved,
    /// Content (a layer, a signature payload, a model file) does not match its signed digest.
    TamperedLayer,
    /// The registry (or model storage) could not be reached; retried with backoff.
    RegistryUnreachable,
    /// A configured key (Secret or Secret key) does not exist, or no key is configured.
    KeyMissing,
    /// A configured key is not a supported PEM public key.
    InvalidKey,
    /// A signature document is malformed or of an unsupported kind.
    InvalidSignature,
    /// The artifact itself does not exist in the registry.
    ArtifactNotFound,
    /// The registry refused our credentials.
    RegistryUnauthorized,
    /// The registry answered something this client cannot use.
    RegistryError,
}

impl FailureReason {
    /// The condition reason / metric label (`NoSignature`, `WrongKey`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSignature => "NoSignature",
            Self::WrongKey => "WrongKey",
            Self::DigestMismatch => "DigestMismatch",
            Self::TagMoved => "TagMoved",
            Self::TamperedLayer => "TamperedLayer",
            Self::RegistryUnreachable => "RegistryUnreachable",
            Self::KeyMissing => "KeyMissing",
            Self::InvalidKey => "InvalidKey",
            Self::InvalidSignature => "InvalidSignature",
            Self::ArtifactNotFound => "ArtifactNotFound",
            Self::RegistryUnauthorized => "RegistryUnauthorized",
            Self::RegistryError => "RegistryError",
        }
    }

    /// Whether the same verification may succeed later without any change (retry with backoff).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::RegistryUnreachable)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed verification: the reason and a message for the condition and the Event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Failure {
    /// The condition reason.
    pub reason: FailureReason,
    /// A human-readable message naming what failed.
    pub message: String,
}

impl Failure {
    /// A failure with `reason` and `message`.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.reason.is_retryable()
    }
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        let reason = match &error {
            RegistryError::Unreachable { .. } | RegistryError::Unavailable { .. } => {
                FailureReason::RegistryUnreachable
            }
            RegistryError::NotFound { .. } => FailureReason::ArtifactNotFound,
            RegistryError::Unauthorized { .. } => FailureReason::RegistryUnauthorized,
            RegistryError::DigestMismatch { .. } => FailureReason::TamperedLayer,
            RegistryError::InvalidDocument { .. }
            | RegistryError::UnexpectedStatus { .. }
            | RegistryError::Config(_) => FailureReason::RegistryError,
        };
        Self::new(reason, error.to_string())
    }
}

impl From<CosignFailure> for Failure {
    fn from(failure: CosignFailure) -> Self {
        let reason = match failure {
            CosignFailure::NoSignature => FailureReason::NoSignature,
            CosignFailure::WrongKey { .. } => FailureReason::WrongKey,
            CosignFailure::DigestMismatch { .. } => FailureReason::DigestMismatch,
        };
        Self::new(reason, failure.to_string())
    }
}

impl From<ModelSigningFailure> for Failure {
    fn from(failure: ModelSigningFailure) -> Self {
        let reason = match &failure {
            ModelSigningFailure::InvalidBundle(_) => FailureReason::InvalidSignature,
            ModelSigningFailure::NoSignature => FailureReason::NoSignature,
            ModelSigningFailure::WrongKey => FailureReason::WrongKey,
            ModelSigningFailure::InconsistentManifest { .. } => FailureReason::DigestMismatch,
            ModelSigningFailure::Files(mismatch) if mismatch.is_unreadable() => {
                FailureReason::RegistryUnreachable
            }
            ModelSigningFailure::Files(_) => FailureReason::TamperedLayer,
        };
        Self::new(reason, failure.to_string())
    }
}

impl From<KeyError> for Failure {
    fn from(error: KeyError) -> Self {
        Self::new(FailureReason::InvalidKey, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_signing::FileMismatch;

    #[test]
    fn only_unreachable_storage_is_retryable() {
        let unreadable = ModelSigningFailure::Files(FileMismatch::Unreadable {
            path: "/models/x".into(),
            detail: "EIO".into(),
        });
        assert!(Failure::from(unreadable).is_retryable());
        let changed = ModelSigningFailure::Files(FileMismatch::Missing { name: "x".into() });
        assert_eq!(Failure::from(changed).reason, FailureReason::TamperedLayer);
        assert!(!Failure::from(CosignFailure::NoSignature).is_retryable());
        assert!(!FailureReason::WrongKey.is_retryable());
    }

    #[test]
    fn registry_digest_mismatch_is_a_tampered_layer() {
        let error = RegistryError::DigestMismatch {
            what: "blob".into(),
            expected: Digest::from_raw([1; 32]),
            actual: Digest::from_raw([2; 32]),
        };
        let failure = Failure::from(error);
        assert_eq!(failure.reason, FailureReason::TamperedLayer);
        assert!(failure.to_string().starts_with("TamperedLayer: blob"));
    }
}
