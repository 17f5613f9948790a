//! Server and model metadata, shared by REST and gRPC.

use crate::catalog::{Catalog, LoadState};
use crate::error::InferError;
use crate::model::TensorSpec;

/// Server name, version and supported protocol extensions.
pub struct ServerMeta {
    /// Server name.
    pub name: &'static str,
    /// Server version.
    pub version: &'static str,
    /// Open Inference Protocol extensions.
    pub extensions: &'static [&'static str],
}

/// This server's metadata.
pub fn server_metadata() -> ServerMeta {
    ServerMeta {
        name: "modelplane-runtime",
        version: env!("CARGO_PKG_VERSION"),
        extensions: &["binary_tensor_data", "model_version_states"],
    }
}

/// One tensor of a model's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMeta {
    /// Tensor name.
    pub name: String,
    /// Wire datatype.
    pub datatype: &'static str,
    /// Dimensions; -1 is variable (the batch dimension when batching).
    pub shape: Vec<i64>,
}

impl From<&TensorSpec> for TensorMeta {
    fn from(spec: &TensorSpec) -> Self {
        Self {
            name: spec.name.clone(),
            datatype: spec.datatype.as_str(),
            shape: spec.shape.clone(),
        }
    }
}

/// Load state of one configured version, with the reason of a failed load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionStatus {
    /// Version label.
    pub version: String,
    /// `loading`, `ready` or `failed`.
    pub state: &'static str,
    /// Whether an instance serves it (possibly an older one after a failed reload).
    pub serving: bool,
    /// Why the last load failed.
    pub reason: Option<String>,
}

/// A model's metadata as the protocol returns it, plus per-version load states.
#[derive(Clone, Debug)]
pub struct ModelMeta {
    /// Model name.
    pub name: String,
    /// Configured version labels.
    pub versions: Vec<String>,
    /// Backend platform name, as Triton spells it.
    pub platform: &'static str,
    /// Inputs of the addressed version; empty while none serves.
    pub inputs: Vec<TensorMeta>,
    /// Outputs of the addressed version; empty while none serves.
    pub outputs: Vec<TensorMeta>,
    /// Load state of every version.
    pub states: Vec<VersionStatus>,
}

impl ModelMeta {
    /// The REST body: the protocol's fields plus `version_states`.
    pub fn to_json(&self) -> serde_json::Value {
        let tensors = |list: &[TensorMeta]| -> Vec<serde_json::Value> {
            list.iter()
                .map(|t| serde_json::json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
                .collect()
        };
        let states: Vec<serde_json::Value> = self
            .states
            .iter()
            .map(|s| {
                let mut value = serde_json::json!({"version": s.version, "state": s.state, "serving": s.serving});
                if let Some(reason) = &s.reason {
                    value["reason"] = serde_json::Value::from(reason.as_str());
                }
                value
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "versions": self.versions,
            "platform": self.platform,
            "inputs": tensors(&self.inputs),
            "outputs": tensors(&self.outputs),
            "version_states": states,
        })
    }
}

/// Metadata of a model (`version: None`: its default version). Unknown models and
/// versions are errors; a model with no serving version still answers, with empty
/// tensors and the reason in its version states.
pub fn model_metadata(
    catalog: &Catalog,
    name: &str,
    version: Option<&str>,
) -> Result<ModelMeta, InferError> {
    let entry = catalog.model(name)?;
    let serving = match entry.resolve(version) {
        Ok(version) => Some(version),
        Err(InferError::NotReady(_)) => None,
        Err(err) => return Err(err),
    };
    let signature = serving.map(|v| &v.signature);
    let states = entry
        .versions
        .iter()
        .map(|(label, slot)| VersionStatus {
            version: label.clone(),
            state: slot.state.as_str(),
            serving: slot.serving.is_some(),
            reason: match &slot.state {
                LoadState::Failed(reason) => Some(reason.clone()),
                _ => None,
            },
        })
        .collect();
    Ok(ModelMeta {
        name: name.to_owned(),
        versions: entry
            .versions
            .iter()
            .map(|(label, _)| label.clone())
            .collect(),
        platform: "pytorch_libtorch",
        inputs: signature
            .map(|s| s.inputs.iter().map(TensorMeta::from).collect())
            .unwrap_or_default(),
        outputs: signature
            .map(|s| s.outputs.iter().map(TensorMeta::from).collect())
            .unwrap_or_default(),
        states,
    })
}
