//! A model's tensor signature: the inputs `forward` takes and the outputs it returns.

use std::path::Path;

use modelplane_config as config;
use serde::{Deserialize, Serialize};

use crate::tensor::DataType;

/// Name, datatype and shape of one tensor; `-1` marks a variable dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name on the wire.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions, batch dimension first.
    pub shape: Vec<i64>,
}

/// The inputs a model takes (in `forward` order) and the outputs it returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signature {
    /// Inputs in `forward` argument order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs in return order; empty until probed when not configured.
    pub outputs: Vec<TensorSpec>,
}

/// Input of a `generate` model: the prompt, one BYTES element.
pub const TEXT_INPUT: &str = "text_input";
/// Output of a `generate` model: generated text.
pub const TEXT_OUTPUT: &str = "text_output";

/// The file read beside a local model when the config names no tensors.
pub const SIGNATURE_FILE: &str = "signature.json";

#[derive(Deserialize, Serialize)]
struct SignatureFile {
    inputs: Vec<config::TensorSpec>,
    #[serde(default)]
    outputs: Vec<config::TensorSpec>,
}

impl Signature {
    /// Builds a signature from config tensor specs.
    pub fn from_specs(
        inputs: &[config::TensorSpec],
        outputs: &[config::TensorSpec],
    ) -> Result<Self, String> {
        Ok(Self {
            inputs: convert(inputs)?,
            outputs: convert(outputs)?,
        })
    }

    /// The signature a `generate` model shows in its metadata (Triton's generate
    /// convention): one prompt string in, generated text out.
    pub fn text_generation() -> Self {
        let text = |name: &str, shape: i64| TensorSpec {
            name: name.to_owned(),
            datatype: DataType::Bytes,
            shape: vec![shape],
        };
        Self {
            inputs: vec![text(TEXT_INPUT, 1)],
            outputs: vec![text(TEXT_OUTPUT, -1)],
        }
    }

    /// Reads `signature.json` from `dir`; `Ok(None)` when there is none.
    pub fn read_beside(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join(SIGNATURE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
        };
        let file: SignatureFile = serde_json::from_str(&text)
            .map_err(|err| format!("{} is not a signature: {err}", path.display()))?;
        Self::from_specs(&file.inputs, &file.outputs).map(Some)
    }

    /// Finds an input by name, with its position.
    pub fn input(&self, name: &str) -> Option<(usize, &TensorSpec)> {
        self.inputs
            .iter()
            .enumerate()
            .find(|(_, spec)| spec.name == name)
    }

    /// Whether every input has a variable first dimension, so rows can be batched.
    pub fn batchable(&self) -> bool {
        !self.inputs.is_empty()
            && self
                .inputs
                .iter()
                .all(|spec| spec.shape.first() == Some(&-1))
    }
}

fn convert(specs: &[config::TensorSpec]) -> Result<Vec<TensorSpec>, String> {
    specs
        .iter()
        .map(|spec| {
            let datatype = DataType::parse(&spec.datatype).ok_or_else(|| {
                format!(
                    "tensor {:?} has unknown datatype {:?}",
                    spec.name, spec.datatype
                )
            })?;
            Ok(TensorSpec {
                name: spec.name.clone(),
                datatype,
                shape: spec.shape.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_file_is_read_beside_the_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Signature::read_beside(dir.path()), Ok(None));
        let text = r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}]}"#;
        std::fs::write(dir.path().join(SIGNATURE_FILE), text).expect("write");
        let signature = Signature::read_beside(dir.path())
            .expect("valid")
            .expect("present");
        assert_eq!(signature.inputs[0].datatype, DataType::Fp32);
        assert!(signature.outputs.is_empty());
        assert!(signature.batchable());
    }

    #[test]
    fn unknown_datatypes_are_refused() {
        let spec = config::TensorSpec {
            name: "x".into(),
            datatype: "FLOAT".into(),
            shape: vec![1],
        };
        let err = Signature::from_specs(&[spec], &[]).expect_err("unknown datatype");
        assert!(err.contains("FLOAT"), "{err}");
    }
}
