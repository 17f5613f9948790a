//! The per-version `signature` block: verify the model files against an OpenSSF
//! model-signing bundle (PyPI `model-signing`, key mode) before the version loads.
//!
//! Written for a user who signs with `model_signing sign key` and ships the model with its
//! bundle: by default the bundle is `model.sig` in the model's folder (a path source: the
//! source folder itself, or the folder holding the model file) or beside the model URL (an
//! HTTP source), which is where `model_signing sign key <dir> --signature <dir>/model.sig`
//! puts it.
//!
//! ```yaml
//! versions:
//!   - version: v3
//!     source: {path: /models/resnet18/v3/model.pt}
//!     signature:
//!       mode: Enforce                  # Enforce | Audit | Disabled
//!       keys:
//!         - name: model-pub
//!           pem: |
//!             -----BEGIN PUBLIC KEY-----
//!             ...
//!             -----END PUBLIC KEY-----
//!       bundle: {path: model.sig}      # optional, this is the default
//! ```

use serde::{Deserialize, Serialize};

use super::Source;

/// File name of the bundle looked for beside the model when `bundle` is unset (the
/// `model_signing` CLI's own default).
pub const DEFAULT_BUNDLE_FILE: &str = "model.sig";

const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";

/// Verification of one version's model files before it loads. Read through
/// `RawSignature` (same fields, unknown ones refused) and checked on the way in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawSignature")]
pub struct SignatureConfig {
    /// What a model that does not verify means for the load.
    pub mode: SignatureMode,
    /// Trusted public keys; a bundle signed by any of them verifies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<TrustedKey>,
    /// Where the bundle is; unset: [`DEFAULT_BUNDLE_FILE`] in the model's folder or beside
    /// the model URL.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "serde_yaml::with::singleton_map"
    )]
    pub bundle: Option<BundleSource>,
}

/// What a verification failure means for the load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureMode {
    /// A model that does not verify is not loaded; a version already serving keeps serving.
    #[default]
    Enforce,
    /// A model that does not verify loads anyway; the failure is logged and counted.
    Audit,
    /// Nothing is verified.
    Disabled,
}

impl SignatureMode {
    /// The spelling used in config files (and the `mode` metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "Enforce",
            Self::Audit => "Audit",
            Self::Disabled => "Disabled",
        }
    }
}

/// One trusted public key. Public keys are not secret: they live in the config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedKey {
    /// Where the key came from (e.g. `model-pub/model.pub`); names the signer in logs.
    pub name: String,
    /// PEM `PUBLIC KEY` (PKIX): `openssl ec -pubout` output or a `cosign.pub`.
    pub pem: String,
}

/// Where a model-signing bundle is; exactly one, written as a one-key map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum BundleSource {
    /// A local file; a relative path is relative to the model's folder (the source folder
    /// itself, or the folder holding the model file).
    Path(String),
    /// A bundle fetched over HTTP(S).
    Http(BundleHttp),
}

/// A bundle fetched over HTTP(S).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleHttp {
    /// `http://` or `https://` URL of the bundle.
    pub url: String,
    /// Lowercase hex sha256 of the bundle, checked when set (pins one signing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl SignatureConfig {
    /// The bundle location in effect for a model from `source`: the configured one, else
    /// [`DEFAULT_BUNDLE_FILE`] in the model's folder or beside the URL; `None` for an OCI source
    /// without a configured bundle (OCI models are verified by the operator's cosign check).
    pub fn bundle_for(&self, source: &Source) -> Option<BundleSource> {
        if let Some(bundle) = &self.bundle {
            return Some(bundle.clone());
        }
        default_bundle(source)
    }
}

/// [`DEFAULT_BUNDLE_FILE`] in the model's folder (path source) or beside the model URL
/// (HTTP source).
pub fn default_bundle(source: &Source) -> Option<BundleSource> {
    bundle_beside(source, DEFAULT_BUNDLE_FILE, None)
}

/// The bundle at `relative` (a `/`-separated path) from the model's folder (path source:
/// kept relative) or from the model URL (HTTP source, pinned to `sha256` when given);
/// `None` for an OCI source.
pub fn bundle_beside(
    source: &Source,
    relative: &str,
    sha256: Option<String>,
) -> Option<BundleSource> {
    match source {
        // Relative: the runtime resolves it against the model's folder, which only it can
        // tell (the source folder itself, or the folder holding the model file).
        Source::Path(_) => Some(BundleSource::Path(relative.to_owned())),
        Source::Http(http) => Some(BundleSource::Http(BundleHttp {
            url: http.url_beside(relative),
            sha256,
        })),
        Source::Oci(_) => None,
    }
}

/// The block as written, checked into a [`SignatureConfig`] by `TryFrom`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSignature {
    #[serde(default)]
    mode: SignatureMode,
    #[serde(default)]
    keys: Vec<TrustedKey>,
    #[serde(default, with = "serde_yaml::with::singleton_map")]
    bundle: Option<BundleSource>,
}

impl TryFrom<RawSignature> for SignatureConfig {
    type Error = String;

    fn try_from(raw: RawSignature) -> Result<Self, Self::Error> {
        let config = Self {
            mode: raw.mode,
            keys: raw.keys,
            bundle: raw.bundle,
        };
        config.check()?;
        Ok(config)
    }
}

impl SignatureConfig {
    /// What the schema cannot say: keys present and PEM-shaped, bundle location usable.
    fn check(&self) -> Result<(), String> {
        if self.mode != SignatureMode::Disabled && self.keys.is_empty() {
            return Err(format!(
                "signature.keys must list at least one key when mode is {}",
                self.mode.as_str()
            ));
        }
        for key in &self.keys {
            if key.name.is_empty() {
                return Err("signature.keys[].name is empty".to_owned());
            }
            if !key.pem.contains(PEM_BEGIN) {
                return Err(format!(
                    "signature key {:?} is not a PEM public key ({PEM_BEGIN} ...)",
                    key.name
                ));
            }
        }
        match &self.bundle {
            Some(BundleSource::Path(path)) if path.is_empty() => {
                Err("signature.bundle.path is empty".to_owned())
            }
            Some(BundleSource::Http(http))
                if !(http.url.starts_with("http://") || http.url.starts_with("https://")) =>
            {
                Err(format!(
                    "signature.bundle.http.url {:?} is not http(s)",
                    http.url
                ))
            }
            Some(BundleSource::Http(BundleHttp {
                sha256: Some(sha), ..
            })) if !super::is_sha256_hex(sha) => Err(format!(
                "signature.bundle.http.sha256 {sha:?} is not 64 lowercase hex digits"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{HttpSource, RuntimeConfig};
    use super::*;

    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";

    fn config_with(signature: &str) -> Result<RuntimeConfig, String> {
        let text = format!(
            "models:\n- name: m\n  versions:\n  - version: '1'\n    source: {{path: /models/m/model.pt}}\n    signature: {signature}\n"
        );
        RuntimeConfig::from_yaml(&text).map_err(|e| e.to_string())
    }

    fn key_yaml() -> String {
        format!("[{{name: model-pub, pem: {PEM:?}}}]")
    }

    #[test]
    fn a_signature_block_parses_with_enforce_by_default_and_round_trips() {
        let config = config_with(&format!("{{keys: {}}}", key_yaml())).expect("parses");
        let signature = config.models[0].versions[0]
            .signature
            .clone()
            .expect("block");
        assert_eq!(signature.mode, SignatureMode::Enforce);
        assert_eq!(signature.keys[0].name, "model-pub");
        let text = config.to_yaml().expect("renders");
        assert_eq!(
            RuntimeConfig::from_yaml(&text).expect("parses back"),
            config
        );
    }

    #[test]
    fn bundle_is_written_as_a_one_key_map() {
        let config = config_with(&format!(
            "{{mode: Audit, keys: {}, bundle: {{http: {{url: 'https://m.example/v1/model.sig', sha256: {}}}}}}}",
            key_yaml(),
            "a".repeat(64)
        ))
        .expect("parses");
        let signature = config.models[0].versions[0].signature.as_ref().unwrap();
        assert_eq!(signature.mode, SignatureMode::Audit);
        assert_eq!(
            signature.bundle,
            Some(BundleSource::Http(BundleHttp {
                url: "https://m.example/v1/model.sig".into(),
                sha256: Some("a".repeat(64)),
            }))
        );
        let text = config.to_yaml().expect("renders");
        assert!(text.contains("http:"), "{text}");
    }

    #[test]
    fn enforce_and_audit_need_keys_but_disabled_does_not() {
        let err = config_with("{mode: Audit}").expect_err("no keys");
        assert!(err.contains("signature.keys"), "{err}");
        assert!(config_with("{mode: Disabled}").is_ok());
    }

    #[test]
    fn malformed_keys_and_bundle_locations_are_refused_naming_the_field() {
        let cases = [
            ("{keys: [{name: k, pem: 'not a key'}]}".to_owned(), "PEM"),
            (
                format!("{{keys: {}, bundle: {{path: ''}}}}", key_yaml()),
                "bundle.path",
            ),
            (
                format!(
                    "{{keys: {}, bundle: {{http: {{url: 'ftp://x'}}}}}}",
                    key_yaml()
                ),
                "bundle.http.url",
            ),
            (
                format!(
                    "{{keys: {}, bundle: {{http: {{url: 'http://x/s', sha256: ABC}}}}}}",
                    key_yaml()
                ),
                "bundle.http.sha256",
            ),
            (format!("{{keys: {}, extra: 1}}", key_yaml()), "extra"),
        ];
        for (block, field) in cases {
            let err = config_with(&block).expect_err(&block);
            assert!(err.contains(field), "{block}: {err}");
        }
    }

    #[test]
    fn default_bundle_is_model_sig_in_the_model_folder_or_beside_the_url() {
        let beside = |source: Source| default_bundle(&source);
        assert_eq!(
            beside(Source::Path("/models/m/v3/model.pt".into())),
            Some(BundleSource::Path("model.sig".into()))
        );
        let http = Source::Http(HttpSource {
            url: "https://m.example/r18/v3/model.pt?x=1".into(),
            sha256: "a".repeat(64),
        });
        assert_eq!(
            beside(http),
            Some(BundleSource::Http(BundleHttp {
                url: "https://m.example/r18/v3/model.sig".into(),
                sha256: None,
            }))
        );
    }

    #[test]
    fn a_bundle_beside_an_http_model_keeps_its_pin_and_subfolder() {
        let http = Source::Http(HttpSource {
            url: "https://m.example/r18/v3/model.pt".into(),
            sha256: "a".repeat(64),
        });
        assert_eq!(
            bundle_beside(&http, "sigs/model.pt.sig", Some("b".repeat(64))),
            Some(BundleSource::Http(BundleHttp {
                url: "https://m.example/r18/v3/sigs/model.pt.sig".into(),
                sha256: Some("b".repeat(64)),
            }))
        );
        let bare = Source::Http(HttpSource {
            url: "https://m.example".into(),
            sha256: "a".repeat(64),
        });
        assert_eq!(
            default_bundle(&bare),
            Some(BundleSource::Http(BundleHttp {
                url: "https://m.example/model.sig".into(),
                sha256: None,
            }))
        );
    }

    #[test]
    fn a_configured_bundle_wins_over_the_default() {
        let signature = SignatureConfig {
            mode: SignatureMode::Enforce,
            keys: Vec::new(),
            bundle: Some(BundleSource::Path("/sigs/m.sig".into())),
        };
        let source = Source::Path("/models/m/model.pt".into());
        assert_eq!(
            signature.bundle_for(&source),
            Some(BundleSource::Path("/sigs/m.sig".into()))
        );
        let oci = Source::Oci(super::super::OciSource {
            reference: "r/m@sha256:x".into(),
            plain_http: false,
        });
        let unset = SignatureConfig {
            bundle: None,
            ..signature
        };
        assert_eq!(unset.bundle_for(&oci), None);
    }
}
