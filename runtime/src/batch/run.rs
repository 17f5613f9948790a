//! Tensors in and out of libtorch: concatenating a batch, splitting the outputs back,
//! and warm-up forwards that also reveal the outputs' signature.

use bytes::Bytes;
use tch::{Device, Tensor};

use crate::model::{Backend, Signature, TensorSpec};
use crate::tensor::{DataType, TensorData, TorchKind};

/// Builds input `index` of a batch: the jobs' tensors concatenated on dimension 0,
/// copied once into one libtorch tensor on `device`.
pub fn batch_input(parts: &[&TensorData], device: Device) -> Result<Tensor, String> {
    let first = parts.first().ok_or("empty batch")?;
    let kind = first
        .datatype
        .kind()
        .ok_or_else(|| format!("datatype {} is not supported by libtorch", first.datatype))?;
    let tensor = if let [only] = parts {
        Tensor::f_from_data_size(&only.data, &only.shape, kind).map_err(|e| e.to_string())?
    } else {
        let rows: i64 = parts
            .iter()
            .map(|p| p.shape.first().copied().unwrap_or(1))
            .sum();
        let mut shape = first.shape.clone();
        shape[0] = rows;
        let bytes: usize = parts.iter().map(|p| p.data.len()).sum();
        let tensor = Tensor::f_empty(&shape, (kind, Device::Cpu)).map_err(|e| e.to_string())?;
        if tensor.numel() * kind.elt_size_in_bytes() != bytes {
            return Err(format!(
                "batch of {bytes} bytes does not fill shape {shape:?}"
            ));
        }
        // SAFETY: `tensor` was just allocated on the CPU, contiguous, with exactly
        // `bytes` bytes of storage (checked above), and nothing else references it.
        let storage =
            unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr().cast::<u8>(), bytes) };
        let mut offset = 0;
        for part in parts {
            storage[offset..offset + part.data.len()].copy_from_slice(&part.data);
            offset += part.data.len();
        }
        tensor
    };
    if device == Device::Cpu {
        Ok(tensor)
    } else {
        tensor.f_to_device(device).map_err(|e| e.to_string())
    }
}

/// Copies an output tensor back to host bytes under its wire name.
pub fn output_data(name: String, tensor: &Tensor) -> Result<TensorData, String> {
    let kind = tensor.f_kind().map_err(|e| e.to_string())?;
    let datatype = DataType::from_kind(kind)
        .ok_or_else(|| format!("output {name:?} has type {kind:?}, which has no wire datatype"))?;
    let host = tensor
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_contiguous())
        .map_err(|e| e.to_string())?;
    let shape = host.size();
    let numel = host.numel();
    let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
    host.f_copy_data_u8(&mut data, numel)
        .map_err(|e| e.to_string())?;
    Ok(TensorData {
        name,
        datatype,
        shape,
        data: Bytes::from(data),
    })
}

/// Splits batched outputs back into one set per job, by the jobs' row counts.
pub fn split_outputs(
    outputs: Vec<TensorData>,
    rows: &[u64],
) -> Result<Vec<Vec<TensorData>>, String> {
    if rows.len() == 1 {
        return Ok(vec![outputs]);
    }
    let total: u64 = rows.iter().sum();
    let mut per_job: Vec<Vec<TensorData>> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for output in outputs {
        let batch_dim = output.shape.first().copied().unwrap_or(0);
        if u64::try_from(batch_dim).ok() != Some(total) {
            return Err(format!(
                "output {:?} has {batch_dim} rows for a batch of {total}: the model does not keep dimension 0 as the batch",
                output.name
            ));
        }
        let row_bytes = output.data.len() / total as usize;
        let mut start = 0;
        for (job, &job_rows) in per_job.iter_mut().zip(rows) {
            let end = start + row_bytes * job_rows as usize;
            let mut shape = output.shape.clone();
            shape[0] = job_rows as i64;
            job.push(TensorData {
                name: output.name.clone(),
                datatype: output.datatype,
                shape,
                data: output.data.slice(start..end),
            });
            start = end;
        }
    }
    Ok(per_job)
}

/// The wire name of output `index`.
pub fn output_name(signature: &Signature, index: usize) -> String {
    signature
        .outputs
        .get(index)
        .map_or_else(|| format!("output__{index}"), |spec| spec.name.clone())
}

/// Runs `iterations` forwards on zero inputs shaped by the signature (variable
/// dimensions as 1) and returns the signature completed with the observed outputs.
pub fn warm_up(
    backend: &dyn Backend,
    signature: &Signature,
    iterations: u32,
) -> Result<Signature, String> {
    let inputs = signature
        .inputs
        .iter()
        .map(|spec| {
            let kind = spec.datatype.kind().ok_or_else(|| {
                format!(
                    "input {:?}: datatype {} is not supported by libtorch",
                    spec.name, spec.datatype
                )
            })?;
            let shape: Vec<i64> = spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d })
                .collect();
            Tensor::f_zeros(&shape, (kind, backend.device())).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut outputs = backend
        .forward(&inputs)
        .map_err(|err| format!("warm-up forward failed: {err}"))?;
    for _ in 1..iterations {
        outputs = backend
            .forward(&inputs)
            .map_err(|err| format!("warm-up forward failed: {err}"))?;
    }
    complete_outputs(signature, &outputs)
}

fn complete_outputs(signature: &Signature, outputs: &[Tensor]) -> Result<Signature, String> {
    if !signature.outputs.is_empty() && signature.outputs.len() != outputs.len() {
        return Err(format!(
            "the signature lists {} outputs but forward returned {}",
            signature.outputs.len(),
            outputs.len()
        ));
    }
    let mut completed = signature.clone();
    let mut observed = Vec::with_capacity(outputs.len());
    for (index, tensor) in outputs.iter().enumerate() {
        let kind = tensor.f_kind().map_err(|e| e.to_string())?;
        let datatype = DataType::from_kind(kind).ok_or_else(|| {
            format!("output {index} has type {kind:?}, which has no wire datatype")
        })?;
        let mut shape = tensor.size();
        if signature.batchable() && !shape.is_empty() {
            shape[0] = -1;
        }
        if let Some(declared) = signature.outputs.get(index)
            && declared.datatype != datatype
        {
            return Err(format!(
                "output {:?} is declared {} but forward returned {datatype}",
                declared.name, declared.datatype
            ));
        }
        observed.push(TensorSpec {
            name: output_name(signature, index),
            datatype,
            shape,
        });
    }
    if signature.outputs.is_empty() {
        completed.outputs = observed;
    }
    Ok(completed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp32(name: &str, shape: Vec<i64>, values: &[f32]) -> TensorData {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorData {
            name: name.into(),
            datatype: DataType::Fp32,
            shape,
            data: Bytes::from(data),
        }
    }

    #[test]
    fn batched_inputs_are_concatenated_on_dimension_zero() {
        let a = fp32("x", vec![1, 2], &[1.0, 2.0]);
        let b = fp32("x", vec![2, 2], &[3.0, 4.0, 5.0, 6.0]);
        let tensor = batch_input(&[&a, &b], Device::Cpu).expect("batch");
        assert_eq!(tensor.size(), [3, 2]);
        let back = output_data("x".into(), &tensor).expect("copy back");
        assert_eq!(back, fp32("x", vec![3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    }

    #[test]
    fn outputs_split_back_by_rows() {
        let out = fp32("y", vec![3, 1], &[7.0, 8.0, 9.0]);
        let split = split_outputs(vec![out], &[1, 2]).expect("split");
        assert_eq!(split[0], vec![fp32("y", vec![1, 1], &[7.0])]);
        assert_eq!(split[1], vec![fp32("y", vec![2, 1], &[8.0, 9.0])]);
    }

    #[test]
    fn outputs_without_the_batch_dimension_cannot_be_split() {
        let out = fp32("y", vec![1], &[7.0]);
        let err = split_outputs(vec![out], &[1, 1]).expect_err("no batch dim");
        assert!(err.contains("dimension 0"), "{err}");
    }

    #[test]
    fn a_single_job_keeps_its_outputs_whatever_their_shape() {
        let out = fp32("y", vec![1], &[7.0]);
        assert_eq!(
            split_outputs(vec![out.clone()], &[4]).expect("single"),
            vec![vec![out]]
        );
    }
}
