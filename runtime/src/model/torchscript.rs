//! TorchScript archives (`torch.jit.save`) through libtorch's JIT.

use std::path::Path;

use tch::{CModule, IValue};

use super::{Backend, LoadError};

/// A TorchScript module in eval mode.
pub struct TorchScript {
    module: CModule,
    device: tch::Device,
}

impl TorchScript {
    /// Loads the archive at `path` directly onto `device`.
    pub fn load(path: &Path, device: tch::Device) -> Result<Self, LoadError> {
        let format_error = |err: tch::TchError| LoadError::Format {
            path: path.display().to_string(),
            reason: torch_message(&err),
        };
        let mut module = CModule::load_on_device(path, device).map_err(format_error)?;
        module.f_set_eval().map_err(format_error)?;
        Ok(Self { module, device })
    }
}

impl Backend for TorchScript {
    fn forward(&self, inputs: &[tch::Tensor]) -> Result<Vec<tch::Tensor>, String> {
        let inputs: Vec<IValue> = inputs
            .iter()
            .map(|t| IValue::Tensor(t.shallow_clone()))
            .collect();
        let output = self
            .module
            .forward_is(&inputs)
            .map_err(|err| torch_message(&err))?;
        flatten(output)
    }

    fn device(&self) -> tch::Device {
        self.device
    }
}

/// libtorch's message without the C++ backtrace it appends.
pub(super) fn torch_message(err: &tch::TchError) -> String {
    let text = err.to_string();
    let message = text
        .split("\nException raised from")
        .next()
        .unwrap_or(&text);
    message.trim().to_owned()
}

/// Turns `forward`'s return value into outputs: a tensor, or a tuple/list of tensors.
fn flatten(value: IValue) -> Result<Vec<tch::Tensor>, String> {
    match value {
        IValue::Tensor(tensor) => Ok(vec![tensor]),
        IValue::TensorList(tensors) => Ok(tensors),
        IValue::Tuple(values) | IValue::GenericList(values) => values
            .into_iter()
            .map(|value| match value {
                IValue::Tensor(tensor) => Ok(tensor),
                other => Err(format!("forward returned a non-tensor element: {other:?}")),
            })
            .collect(),
        other => Err(format!(
            "forward must return a tensor or a tuple/list of tensors, not {}",
            short_kind(&other)
        )),
    }
}

fn short_kind(value: &IValue) -> &'static str {
    match value {
        IValue::None => "None",
        IValue::GenericDict(_) => "a dict",
        IValue::String(_) | IValue::StringList(_) => "strings",
        IValue::Object(_) => "an object",
        _ => "a scalar",
    }
}
