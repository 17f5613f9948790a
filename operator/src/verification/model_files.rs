//! Models from HTTP or PVC sources: the operator cannot read their files (it does not mount
//! the claim, and downloads nothing), so it hands their verification to the runtime. The
//! pinned revision carries a `signature` block — the mode and the trusted keys as PEM — and
//! the runtime checks the files against their OpenSSF model-signing bundle before loading.

use modelplane_api::model_deployment::{ModelDeploymentSpec, ModelSource};
use modelplane_config::{SignatureConfig, SignatureMode, TrustedKey};
use modelplane_verify::Mode;

/// What the runtime verifies for `source`, in words (`pvc models:resnet18/v3/model.pt`,
/// `http https://…`); `None` for an OCI model, which the operator verifies itself.
pub fn delegated_model_source(source: &ModelSource) -> Option<String> {
    if source.oci.is_some() {
        return None;
    }
    if let Some(http) = &source.http {
        return Some(format!("http {}", http.url));
    }
    source
        .pvc
        .as_ref()
        .map(|pvc| format!("pvc {}:{}", pvc.claim_name, pvc.path))
}

/// The `signature` block to pin for `spec` under `mode` with the trusted `keys`: present for
/// HTTP and PVC models under `Enforce` or `Audit` when keys were loaded, else `None`. The
/// bundle location is left to the renderer (`model.sig` beside the model).
pub fn model_signature(
    mode: Mode,
    spec: &ModelDeploymentSpec,
    keys: Vec<TrustedKey>,
) -> Option<SignatureConfig> {
    let mode = match mode {
        Mode::Enforce => SignatureMode::Enforce,
        Mode::Audit => SignatureMode::Audit,
        Mode::Disabled => return None,
    };
    let model = spec.model.as_ref()?;
    delegated_model_source(&model.source)?;
    (!keys.is_empty()).then_some(SignatureConfig {
        mode,
        keys,
        bundle: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(source: serde_json::Value) -> ModelDeploymentSpec {
        serde_json::from_value(json!({
            "model": {"name": "m", "task": "classify", "source": source},
            "runtime": {"replicas": 1},
        }))
        .expect("spec")
    }

    fn key() -> TrustedKey {
        TrustedKey {
            name: "model-pub/model.pub".into(),
            pem: "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n".into(),
        }
    }

    #[test]
    fn signature_block_by_source_and_mode() {
        let pvc = spec(json!({"pvc": {"claimName": "models", "path": "m/v1/model.pt"}}));
        let http =
            spec(json!({"http": {"url": "https://m.example/m.pt", "sha256": "a".repeat(64)}}));
        let oci = spec(json!({"oci": "r.example/m:v1"}));
        #[rustfmt::skip]
        let table = [
            (Mode::Enforce, &pvc, vec![key()], Some(SignatureMode::Enforce)),
            (Mode::Audit, &pvc, vec![key()], Some(SignatureMode::Audit)),
            (Mode::Enforce, &http, vec![key()], Some(SignatureMode::Enforce)),
            (Mode::Audit, &http, vec![key()], Some(SignatureMode::Audit)),
            (Mode::Disabled, &pvc, vec![key()], None),
            (Mode::Enforce, &oci, vec![key()], None),
            (Mode::Audit, &pvc, vec![], None),
        ];
        for (mode, spec, keys, expected) in table {
            let block = model_signature(mode, spec, keys);
            assert_eq!(
                block.as_ref().map(|b| b.mode),
                expected,
                "{mode:?} {spec:?}"
            );
            if let Some(block) = block {
                assert_eq!(block.keys, vec![key()]);
                assert_eq!(block.bundle, None);
            }
        }
    }

    #[test]
    fn delegated_source_names_the_claim_path_or_url() {
        let pvc = spec(json!({"pvc": {"claimName": "models", "path": "m/v1/model.pt"}}));
        let source = &pvc.model.expect("model").source;
        assert_eq!(
            delegated_model_source(source).as_deref(),
            Some("pvc models:m/v1/model.pt")
        );
        let oci = spec(json!({"oci": "r.example/m:v1"}));
        assert_eq!(
            delegated_model_source(&oci.model.expect("model").source),
            None
        );
    }
}
