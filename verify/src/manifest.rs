//! The parts of OCI / Docker v2 manifests that verification reads.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker v2 manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `Accept` header for manifest requests: every manifest kind a tag may point at.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// A content descriptor: what a manifest says about one blob or child manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// The blob's digest, as a string (parsed by [`Descriptor::digest`]).
    #[serde(rename = "digest")]
    pub raw_digest: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// Annotations (cosign keeps the signature here).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The descriptor's digest, if it is a well-formed sha256 digest.
    pub fn digest(&self) -> Result<Digest, crate::digest::DigestError> {
        self.raw_digest.parse()
    }
}

/// An image manifest or an index, whichever the registry returned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The manifest's own media type, when it states one.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The config blob of an image manifest.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// The layers of an image manifest.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The child manifests of an index.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl Manifest {
    /// Parses manifest JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Whether this is an index (multi-platform image) rather than an image manifest.
    pub fn is_index(&self) -> bool {
        matches!(
            self.media_type.as_deref(),
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST)
        ) || (!self.manifests.is_empty() && self.layers.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_signature_manifest_parses_with_its_annotation() {
        let json = br#"{
          "schemaVersion": 2,
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
          "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "size": 0,
            "annotations": {"dev.cosignproject.cosign/signature": "MEUC"}
          }]
        }"#;
        let manifest = Manifest::from_json(json).unwrap();
        assert!(!manifest.is_index());
        let layer = &manifest.layers[0];
        assert_eq!(
            layer.annotations["dev.cosignproject.cosign/signature"],
            "MEUC"
        );
        assert!(layer.digest().is_ok());
    }

    #[test]
    fn index_is_recognized_by_media_type_or_shape() {
        let typed = format!(r#"{{"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(Manifest::from_json(typed.as_bytes()).unwrap().is_index());
        let untyped = br#"{"manifests":[{"mediaType":"x","digest":"sha256:00","size":1}]}"#;
        assert!(Manifest::from_json(untyped).unwrap().is_index());
    }
}
