//! Every check of an inference request against the model's signature and limits, in
//! one place for REST and gRPC alike.

use modelplane_config::Limits;

use crate::error::InferError;
use crate::model::Signature;
use crate::tensor::{DataType, TensorData, element_count};

/// An input header that passed the checks, before its data is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedInput {
    /// Position in the signature (the `forward` argument).
    pub index: usize,
    /// Element type.
    pub datatype: DataType,
    /// Number of elements.
    pub elements: u64,
}

impl CheckedInput {
    /// Bytes the tensor's data must have.
    pub fn byte_len(&self) -> u64 {
        self.elements * self.datatype.size().unwrap_or(0) as u64
    }
}

/// Checks an input's name, datatype, shape and size against the signature and limits.
pub fn check_input(
    signature: &Signature,
    limits: &Limits,
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<CheckedInput, InferError> {
    let bad = |msg: String| Err(InferError::BadRequest(msg));
    let Some((index, spec)) = signature.input(name) else {
        let known: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
        return bad(format!("unknown input {name:?}; the model takes {known:?}"));
    };
    let Some(parsed) = DataType::parse(datatype) else {
        return bad(format!("input {name:?}: unknown datatype {datatype:?}"));
    };
    if parsed == DataType::Bytes {
        return bad(format!(
            "input {name:?}: BYTES tensors are not supported by tensor models"
        ));
    }
    if parsed != spec.datatype {
        return bad(format!(
            "input {name:?}: datatype {parsed} does not match the model's {}",
            spec.datatype
        ));
    }
    let fits = shape.len() == spec.shape.len()
        && shape
            .iter()
            .zip(&spec.shape)
            .all(|(&got, &want)| got >= 0 && (want == -1 || got == want));
    if !fits {
        return bad(format!(
            "input {name:?}: shape {shape:?} does not match the model's {:?}",
            spec.shape
        ));
    }
    let elements = element_count(shape).ok_or_else(|| {
        InferError::BadRequest(format!("input {name:?}: shape {shape:?} overflows"))
    })?;
    if elements > limits.max_elements {
        return Err(InferError::TooLarge(format!(
            "input {name:?} has {elements} elements; the limit is {}",
            limits.max_elements
        )));
    }
    Ok(CheckedInput {
        index,
        datatype: parsed,
        elements,
    })
}

/// Puts decoded inputs in signature order, refusing missing and repeated inputs, and
/// returns them with the request's row count (dimension 0 when batching, else 1).
pub fn order_inputs(
    signature: &Signature,
    decoded: Vec<(usize, TensorData)>,
    batching: bool,
) -> Result<(Vec<TensorData>, u64), InferError> {
    let mut slots: Vec<Option<TensorData>> = signature.inputs.iter().map(|_| None).collect();
    for (index, tensor) in decoded {
        let slot = slots
            .get_mut(index)
            .ok_or_else(|| InferError::Internal("input index out of range".into()))?;
        if slot.is_some() {
            return Err(InferError::BadRequest(format!(
                "input {:?} is given twice",
                tensor.name
            )));
        }
        *slot = Some(tensor);
    }
    let inputs = slots
        .into_iter()
        .zip(&signature.inputs)
        .map(|(slot, spec)| {
            slot.ok_or_else(|| InferError::BadRequest(format!("missing input {:?}", spec.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = if batching { batch_rows(&inputs)? } else { 1 };
    Ok((inputs, rows))
}

fn batch_rows(inputs: &[TensorData]) -> Result<u64, InferError> {
    let first = inputs
        .first()
        .and_then(|t| t.shape.first())
        .copied()
        .unwrap_or(1);
    if let Some(other) = inputs.iter().find(|t| t.shape.first() != Some(&first)) {
        return Err(InferError::BadRequest(format!(
            "input {:?} has {:?} rows on dimension 0 but the first input has {first}; batched inputs must agree",
            other.name,
            other.shape.first()
        )));
    }
    match u64::try_from(first) {
        Ok(rows) if rows > 0 => Ok(rows),
        _ => Err(InferError::BadRequest(
            "dimension 0 (the batch) must be at least 1".into(),
        )),
    }
}

/// Checks that every requested output exists.
pub fn check_outputs<'a>(
    signature: &Signature,
    requested: impl IntoIterator<Item = &'a str>,
) -> Result<(), InferError> {
    for name in requested {
        if !signature.outputs.iter().any(|spec| spec.name == name) {
            let known: Vec<&str> = signature.outputs.iter().map(|s| s.name.as_str()).collect();
            return Err(InferError::BadRequest(format!(
                "unknown output {name:?}; the model returns {known:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::model::TensorSpec;

    fn signature() -> Signature {
        let spec = |name: &str, shape: Vec<i64>| TensorSpec {
            name: name.into(),
            datatype: DataType::Fp32,
            shape,
        };
        Signature {
            inputs: vec![spec("a", vec![-1, 4]), spec("b", vec![-1, 2])],
            outputs: vec![spec("y", vec![-1, 3])],
        }
    }

    fn tensor(name: &str, shape: Vec<i64>) -> TensorData {
        TensorData {
            name: name.into(),
            datatype: DataType::Fp32,
            shape,
            data: Bytes::new(),
        }
    }

    fn limits() -> Limits {
        Limits {
            max_elements: 100,
            ..Limits::default()
        }
    }

    #[test]
    fn matching_input_is_accepted_with_its_size() {
        let checked = check_input(&signature(), &limits(), "b", "FP32", &[3, 2]).expect("valid");
        assert_eq!(
            checked,
            CheckedInput {
                index: 1,
                datatype: DataType::Fp32,
                elements: 6
            }
        );
        assert_eq!(checked.byte_len(), 24);
    }

    #[test]
    fn wrong_shape_dtype_and_name_are_bad_requests() {
        let sig = signature();
        let cases = [
            ("a", "FP32", vec![1, 5], "shape"),
            ("a", "FP32", vec![4], "shape"),
            ("a", "FP32", vec![-1, 4], "shape"),
            ("a", "INT64", vec![1, 4], "datatype INT64"),
            ("a", "FLOAT", vec![1, 4], "unknown datatype"),
            ("a", "BYTES", vec![1, 4], "BYTES"),
            ("c", "FP32", vec![1, 4], "unknown input"),
        ];
        for (name, datatype, shape, expected) in cases {
            match check_input(&sig, &limits(), name, datatype, &shape) {
                Err(InferError::BadRequest(msg)) => assert!(msg.contains(expected), "{msg}"),
                other => panic!("{name} {datatype} {shape:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn too_many_elements_is_too_large() {
        let err = check_input(&signature(), &limits(), "a", "FP32", &[26, 4]).expect_err("too big");
        assert!(matches!(err, InferError::TooLarge(_)), "{err:?}");
    }

    #[test]
    fn inputs_are_put_in_signature_order() {
        let decoded = vec![(1, tensor("b", vec![2, 2])), (0, tensor("a", vec![2, 4]))];
        let (inputs, rows) = order_inputs(&signature(), decoded, true).expect("valid");
        assert_eq!(
            inputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(rows, 2);
    }

    #[test]
    fn missing_and_repeated_inputs_are_refused() {
        let missing = order_inputs(&signature(), vec![(0, tensor("a", vec![1, 4]))], true);
        assert!(
            matches!(missing, Err(InferError::BadRequest(m)) if m.contains("missing input \"b\""))
        );
        let twice = vec![(0, tensor("a", vec![1, 4])), (0, tensor("a", vec![1, 4]))];
        assert!(
            matches!(order_inputs(&signature(), twice, true), Err(InferError::BadRequest(m)) if m.contains("twice"))
        );
    }

    #[test]
    fn batched_inputs_must_agree_on_rows() {
        let decoded = vec![(0, tensor("a", vec![2, 4])), (1, tensor("b", vec![3, 2]))];
        assert!(matches!(
            order_inputs(&signature(), decoded, true),
            Err(InferError::BadRequest(_))
        ));
        let empty = vec![(0, tensor("a", vec![0, 4])), (1, tensor("b", vec![0, 2]))];
        assert!(matches!(
            order_inputs(&signature(), empty.clone(), true),
            Err(InferError::BadRequest(_))
        ));
        assert_eq!(
            order_inputs(&signature(), empty, false)
                .expect("unbatched")
                .1,
            1
        );
    }

    #[test]
    fn unknown_outputs_are_refused() {
        check_outputs(&signature(), ["y"]).expect("known");
        assert!(matches!(
            check_outputs(&signature(), ["z"]),
            Err(InferError::BadRequest(_))
        ));
    }
}
