//! OpenSSF model-signing (PyPI `model-signing`, key mode): a sigstore bundle whose DSSE envelope
//! signs an in-toto statement listing the sha256 of every file of the model.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::keys::KeySet;

mod files;

pub use files::{FileMismatch, hash_model_files};

/// Media type prefix of sigstore bundles (model-signing 1.x writes `...bundle.v0.3+json`).
pub const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// DSSE payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of model-signing v1.0 manifests.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    dsse_envelope: Envelope,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    predicate_type: String,
    predicate: Predicate,
}

#[derive(Deserialize)]
struct Subject {
    name: String,
    digest: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Predicate {
    serialization: Serialization,
    resources: Vec<Resource>,
}

#[derive(Deserialize)]
struct Serialization {
    method: String,
    hash_type: String,
    #[serde(default)]
    allow_symlinks: bool,
    #[serde(default)]
    ignore_paths: Vec<String>,
}

#[derive(Deserialize)]
struct Resource {
    name: String,
    digest: String,
    algorithm: String,
}

/// Why a model-signing bundle or the model it covers does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelSigningFailure {
    /// The bundle is not a model-signing bundle this verifier understands.
    #[error("invalid model-signing bundle: {0}")]
    InvalidBundle(String),
    /// The envelope carries no signature.
    #[error("model-signing bundle carries no signature")]
    NoSignature,
    /// No trusted key made the envelope's signature.
    #[error("model signature not made by a trusted key")]
    WrongKey,
    /// The signed subject digest does not match the signed file list.
    #[error("signed manifest is inconsistent: subject {subject}, files hash to {computed}")]
    InconsistentManifest {
        /// The digest the subject names.
        subject: String,
        /// The digest the resources hash to.
        computed: Digest,
    },
    /// The model on disk differs from the signed file list.
    #[error(transparent)]
    Files(#[from] FileMismatch),
}

/// The verified content of a model-signing bundle: which files, with which digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedModel {
    /// The model name the signer recorded (its directory or file name).
    pub name: String,
    /// sha256 over the file digests in name order (the statement's subject digest).
    pub root_digest: Digest,
    /// File digests by path relative to the model root (`.` for a single-file model).
    pub files: BTreeMap<String, Digest>,
    /// Paths (relative to the model root) the signer excluded.
    pub ignore_paths: Vec<String>,
    /// Whether the signer followed symlinks.
    pub allow_symlinks: bool,
    /// Name of the trusted key that signed.
    pub key: String,
}

/// DSSE pre-authentication encoding: `DSSEv1 <len(type)> <type> <len(body)> <body>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Checks the bundle's signature against `keys` and returns the file list it signs.
pub fn verify_bundle(bundle: &[u8], keys: &KeySet) -> Result<SignedModel, ModelSigningFailure> {
    let invalid = |detail: String| ModelSigningFailure::InvalidBundle(detail);
    let bundle: Bundle = serde_json::from_slice(bundle).map_err(|e| invalid(e.to_string()))?;
    if !bundle.media_type.starts_with(BUNDLE_MEDIA_TYPE_PREFIX) {
        return Err(invalid(format!("media type {:?}", bundle.media_type)));
    }
    let envelope = bundle.dsse_envelope;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(invalid(format!("payload type {:?}", envelope.payload_type)));
    }
    let payload = STANDARD
        .decode(envelope.payload.trim())
        .map_err(|e| invalid(format!("payload: {e}")))?;
    if envelope.signatures.is_empty() {
        return Err(ModelSigningFailure::NoSignature);
    }
    let signed = pae(&envelope.payload_type, &payload);
    let key = envelope
        .signatures
        .iter()
        .filter_map(|s| STANDARD.decode(s.sig.trim()).ok())
        .find_map(|sig| keys.signer_of(&signed, &sig))
        .ok_or(ModelSigningFailure::WrongKey)?;
    let statement: Statement =
        serde_json::from_slice(&payload).map_err(|e| invalid(format!("statement: {e}")))?;
    signed_model(statement, key.name())
}

/// Checks the statement's shape and consistency and turns it into a [`SignedModel`].
fn signed_model(statement: Statement, key: &str) -> Result<SignedModel, ModelSigningFailure> {
    let invalid = |detail: String| ModelSigningFailure::InvalidBundle(detail);
    if statement.kind != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return Err(invalid(format!(
            "statement {:?} with predicate {:?}",
            statement.kind, statement.predicate_type
        )));
    }
    let serialization = &statement.predicate.serialization;
    if serialization.method != "files" || serialization.hash_type != "sha256" {
        return Err(invalid(format!(
            "unsupported serialization {:?}/{:?} (only files/sha256)",
            serialization.method, serialization.hash_type
        )));
    }
    let [subject] = statement.subject.as_slice() else {
        return Err(invalid("expected exactly one subject".to_owned()));
    };
    let mut files = BTreeMap::new();
    let mut root = Sha256::new();
    for resource in &statement.predicate.resources {
        let digest = format!("{}:{}", resource.algorithm, resource.digest)
            .parse::<Digest>()
            .map_err(|e| invalid(format!("resource {}: {e}", resource.name)))?;
        let raw = hex::decode(digest.hex()).map_err(|e| invalid(e.to_string()))?;
        root.update(raw);
        files.insert(resource.name.clone(), digest);
    }
    let computed = Digest::from_raw(root.finalize().into());
    let subject_digest = subject.digest.get("sha256").cloned().unwrap_or_default();
    if subject_digest != computed.hex() {
        return Err(ModelSigningFailure::InconsistentManifest {
            subject: subject_digest,
            computed,
        });
    }
    Ok(SignedModel {
        name: subject.name.clone(),
        root_digest: computed,
        files,
        ignore_paths: serialization.ignore_paths.clone(),
        allow_symlinks: serialization.allow_symlinks,
        key: key.to_owned(),
    })
}

/// Verifies `bundle` against `keys`, then that the model at `path` (a file or a directory) is
/// exactly the signed file list. `extra_ignores` are paths relative to the model root to skip
/// as well (e.g. where the bundle itself lives). Reads every file: call off the async runtime.
pub fn verify_model_files(
    path: &Path,
    bundle: &[u8],
    keys: &KeySet,
    extra_ignores: &[String],
) -> Result<SignedModel, ModelSigningFailure> {
    let signed = verify_bundle(bundle, keys)?;
    let mut ignores = signed.ignore_paths.clone();
    ignores.extend_from_slice(extra_ignores);
    let actual = hash_model_files(path, &ignores, signed.allow_symlinks)?;
    files::compare(&signed.files, &actual)?;
    Ok(signed)
}

#[cfg(test)]
#[path = "model_signing_tests.rs"]
mod tests;
