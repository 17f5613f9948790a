//! Loading a serialized model and running `forward`: the one seam between the server
//! and a model format.

mod signature;
mod step;
mod torchscript;

use std::path::Path;

use modelplane_config::{Device, ModelFormat};
use modelplane_generate::config::GenerateModelConfig;
use modelplane_generate::engine::StepModel;

pub use signature::{SIGNATURE_FILE, Signature, TEXT_INPUT, TEXT_OUTPUT, TensorSpec};
pub use step::{CacheSize, TorchStepModel};

/// A loaded model that runs `forward` on tensors in signature order.
///
/// Implementations are owned by one executor thread; they are `Send` but never shared.
pub trait Backend: Send {
    /// Runs one forward pass; inputs are already on [`Backend::device`].
    fn forward(&self, inputs: &[tch::Tensor]) -> Result<Vec<tch::Tensor>, String>;

    /// The device the model's weights live on.
    fn device(&self) -> tch::Device;
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `device: cuda` on a machine (or a libtorch build) without CUDA.
    #[error(
        "device cuda requested but CUDA is not available to libtorch (no GPU, no driver, or a CPU-only libtorch)"
    )]
    CudaUnavailable,
    /// libtorch refused the file.
    #[error("cannot load {path}: {reason}")]
    Format {
        /// The model file.
        path: String,
        /// libtorch's message.
        reason: String,
    },
}

/// Resolves a configured device to a libtorch device, failing clearly without CUDA.
pub fn torch_device(device: Device) -> Result<tch::Device, LoadError> {
    match device {
        Device::Cpu => Ok(tch::Device::Cpu),
        Device::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
        Device::Cuda => Err(LoadError::CudaUnavailable),
    }
}

/// Loads a model file of the given format onto a device.
pub fn load(
    format: ModelFormat,
    path: &Path,
    device: Device,
) -> Result<Box<dyn Backend>, LoadError> {
    let device = torch_device(device)?;
    match format {
        ModelFormat::Torchscript => Ok(Box::new(torchscript::TorchScript::load(path, device)?)),
    }
}

/// Loads a generative model folder (`config.json` already read) onto a device, with a
/// KV cache of `size`, warmed up.
pub fn load_step_model(
    format: ModelFormat,
    dir: &Path,
    config: &GenerateModelConfig,
    device: Device,
    size: CacheSize,
) -> Result<Box<dyn StepModel>, LoadError> {
    let device = torch_device(device)?;
    match format {
        ModelFormat::Torchscript => Ok(Box::new(TorchStepModel::load(dir, config, device, size)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_torchscript_fails_with_libtorchs_message_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.pt");
        std::fs::write(&path, b"not a zip archive").expect("write");
        let Err(LoadError::Format { reason, .. }) =
            load(ModelFormat::Torchscript, &path, Device::Cpu)
        else {
            panic!("garbage must not load");
        };
        assert!(
            !reason.is_empty() && !reason.contains("frame #"),
            "{reason}"
        );
    }

    #[test]
    fn cuda_resolves_only_where_libtorch_sees_a_gpu() {
        match torch_device(Device::Cuda) {
            Ok(device) => assert!(tch::Cuda::is_available() && device == tch::Device::Cuda(0)),
            Err(err) => {
                assert!(!tch::Cuda::is_available());
                assert!(err.to_string().contains("CUDA is not available"), "{err}");
            }
        }
        assert_eq!(torch_device(Device::Cpu).expect("cpu"), tch::Device::Cpu);
    }
}
