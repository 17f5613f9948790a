//! cosign signatures by convention: the `sha256-<hex>.sig` tag, simple-signing payloads, and the
//! decision over a set of signature layers (pure; fetching them is the verifier's job).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::digest::Digest;
use crate::keys::KeySet;
use crate::manifest::Manifest;

/// Media type of a cosign signature layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` every cosign container signature payload carries.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// A signature layer: the payload blob and the signature from its annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The simple-signing payload, exactly as stored (the signed bytes).
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// The cosign layers of a signature manifest whose payload blob still has to be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLayer {
    /// The payload blob's digest.
    pub payload_digest: Digest,
    /// The decoded signature from the annotation.
    pub signature: Vec<u8>,
}

/// Picks the simple-signing layers with a decodable signature annotation from a signature manifest.
pub fn signature_layers(manifest: &Manifest) -> Vec<PendingLayer> {
    manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .filter_map(|layer| {
            let signature = STANDARD
                .decode(layer.annotations.get(SIGNATURE_ANNOTATION)?.trim())
                .ok()?;
            Some(PendingLayer {
                payload_digest: layer.digest().ok()?,
                signature,
            })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Debug, Deserialize)]
struct Critical {
    #[serde(default)]
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Default, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference", default)]
    docker_reference: String,
}

#[derive(Debug, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// A signature that verified for the expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignSignature {
    /// Name of the trusted key that made it.
    pub key: String,
    /// The `critical.identity.docker-reference` the signer recorded.
    pub docker_reference: String,
}

/// Why no signature layer verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignFailure {
    /// No signature layers at all.
    #[error("no cosign signature")]
    NoSignature,
    /// Signatures exist, none by a trusted key.
    #[error("{count} signature(s), none made by a trusted key")]
    WrongKey {
        /// How many signatures were checked.
        count: usize,
    },
    /// A trusted key signed a payload naming another digest (or a payload that is not
    /// a cosign container image signature).
    #[error("signed payload is for {signed}, not {expected}")]
    DigestMismatch {
        /// The digest that will run.
        expected: Digest,
        /// What the payload names.
        signed: String,
    },
}

/// Decides whether any layer is a trusted signature over `expected`: a signature by a trusted
/// key whose payload is a cosign container image signature naming exactly `expected`.
pub fn verify_layers(
    layers: &[SignatureLayer],
    keys: &KeySet,
    expected: &Digest,
) -> Result<CosignSignature, CosignFailure> {
    if layers.is_empty() {
        return Err(CosignFailure::NoSignature);
    }
    let mut mismatch = None;
    for layer in layers {
        let Some(key) = keys.signer_of(&layer.payload, &layer.signature) else {
            continue;
        };
        match check_payload(&layer.payload, expected) {
            Ok(docker_reference) => {
                return Ok(CosignSignature {
                    key: key.name().to_owned(),
                    docker_reference,
                });
            }
            Err(failure) => mismatch = Some(failure),
        }
    }
    Err(mismatch.unwrap_or(CosignFailure::WrongKey {
        count: layers.len(),
    }))
}

/// The payload's docker-reference if it is a container signature for `expected`.
fn check_payload(payload: &[u8], expected: &Digest) -> Result<String, CosignFailure> {
    let mismatch = |signed: String| CosignFailure::DigestMismatch {
        expected: expected.clone(),
        signed,
    };
    let parsed: Payload = serde_json::from_slice(payload)
        .map_err(|e| mismatch(format!("unreadable payload ({e})")))?;
    if parsed.critical.kind != SIMPLE_SIGNING_TYPE {
        return Err(mismatch(format!(
            "payload of type {:?}",
            parsed.critical.kind
        )));
    }
    let signed = parsed.critical.image.docker_manifest_digest;
    if signed != expected.to_string() {
        return Err(mismatch(signed));
    }
    Ok(parsed.critical.identity.docker_reference)
}

/// The simple-signing payload cosign writes for `digest` of `docker_reference` (used by tests
/// and documentation; verification never trusts a payload it built itself).
pub fn simple_signing_payload(docker_reference: &str, digest: &Digest) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
#[path = "cosign_tests.rs"]
mod tests;
