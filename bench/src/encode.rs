//! Turns an input tensor into the bytes of one inference request, once per
//! run: REST JSON, REST with the binary tensor data extension, or gRPC.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

use crate::proto::ModelInferRequest;
use crate::proto::model_infer_request::InferInputTensor;
use crate::tensor::{DataType, InputTensor};

/// Header that gives the length of the JSON part of a binary-extension body.
pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

/// A REST body with the binary tensor data extension.
#[derive(Debug, Clone)]
pub struct BinaryBody {
    /// JSON header followed by the raw tensor bytes.
    pub body: Bytes,
    /// Length of the JSON header, sent as [`HEADER_LENGTH`].
    pub header_len: usize,
}

/// `{"inputs":[{"name","shape","datatype","data":[...]}]}` with the elements
/// written flat in row-major order.
pub fn rest_json_body(tensor: &InputTensor) -> Bytes {
    let body = json!({
        "inputs": [{
            "name": tensor.name,
            "shape": tensor.shape,
            "datatype": tensor.datatype.as_str(),
            "data": json_elements(tensor),
        }]
    });
    Bytes::from(body.to_string())
}

/// A JSON header naming `binary_data_size`, then the raw bytes; every output is
/// asked for as binary too (`binary_data_output`), as Triton's clients do.
pub fn rest_binary_body(tensor: &InputTensor) -> BinaryBody {
    let header = json!({
        "inputs": [{
            "name": tensor.name,
            "shape": tensor.shape,
            "datatype": tensor.datatype.as_str(),
            "parameters": {"binary_data_size": tensor.data.len()},
        }],
        "parameters": {"binary_data_output": true},
    })
    .to_string();
    let mut body = BytesMut::with_capacity(header.len() + tensor.data.len());
    body.put_slice(header.as_bytes());
    body.put_slice(&tensor.data);
    BinaryBody {
        body: body.freeze(),
        header_len: header.len(),
    }
}

/// A `ModelInferRequest` carrying the tensor in `raw_input_contents`.
pub fn grpc_request(model: &str, version: &str, tensor: &InputTensor) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.to_owned(),
        model_version: version.to_owned(),
        inputs: vec![InferInputTensor {
            name: tensor.name.clone(),
            datatype: tensor.datatype.as_str().to_owned(),
            shape: tensor.shape.clone(),
            ..Default::default()
        }],
        raw_input_contents: vec![tensor.data.clone()],
        ..Default::default()
    }
}

fn json_elements(tensor: &InputTensor) -> Vec<Value> {
    // An `InputTensor` is never BYTES, so every datatype here has a fixed size.
    let Some(size) = tensor.datatype.size() else {
        return Vec::new();
    };
    tensor
        .data
        .chunks_exact(size)
        .map(|bytes| json_element(tensor.datatype, bytes))
        .collect()
}

fn json_element(datatype: DataType, b: &[u8]) -> Value {
    match datatype {
        DataType::Bool => Value::Bool(b[0] != 0),
        DataType::Uint8 => json!(b[0]),
        DataType::Int8 => json!(i8::from_le_bytes([b[0]])),
        DataType::Uint16 => json!(u16::from_le_bytes([b[0], b[1]])),
        DataType::Int16 => json!(i16::from_le_bytes([b[0], b[1]])),
        DataType::Fp16 => json!(half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        DataType::Bf16 => json!(half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        DataType::Uint32 => json!(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        DataType::Int32 => json!(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        DataType::Fp32 => json!(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        DataType::Uint64 => json!(u64::from_le_bytes(eight(b))),
        DataType::Int64 => json!(i64::from_le_bytes(eight(b))),
        DataType::Fp64 => json!(f64::from_le_bytes(eight(b))),
        DataType::Bytes => Value::Null,
    }
}

fn eight(b: &[u8]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(datatype: DataType, shape: Vec<i64>, data: Vec<u8>) -> InputTensor {
        InputTensor::from_bytes("input__0".into(), datatype, shape, data.into()).unwrap()
    }

    #[test]
    fn json_body_lists_elements_flat_with_their_types() {
        let data: Vec<u8> = [1.5f32, -2.0, 0.25, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let body = rest_json_body(&tensor(DataType::Fp32, vec![2, 2], data));
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            json!({"inputs": [{
                "name": "input__0", "shape": [2, 2], "datatype": "FP32",
                "data": [1.5, -2.0, 0.25, 4.0],
            }]})
        );
    }

    #[test]
    fn json_body_writes_bools_and_signed_integers() {
        let b = rest_json_body(&tensor(DataType::Bool, vec![3], vec![1, 0, 1]));
        let parsed: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(parsed["inputs"][0]["data"], json!([true, false, true]));

        let data: Vec<u8> = [-3i64, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = rest_json_body(&tensor(DataType::Int64, vec![1, 2], data));
        let parsed: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(parsed["inputs"][0]["data"], json!([-3, 9]));
    }

    #[test]
    fn json_body_widens_half_floats() {
        let data: Vec<u8> = [half::f16::from_f32(0.5), half::f16::from_f32(-1.0)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b = rest_json_body(&tensor(DataType::Fp16, vec![2], data));
        let parsed: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(parsed["inputs"][0]["data"], json!([0.5, -1.0]));
    }

    #[test]
    fn binary_body_is_header_then_raw_bytes() {
        let raw: Vec<u8> = (0u8..8).collect();
        let t = tensor(DataType::Int32, vec![1, 2], raw.clone());
        let BinaryBody { body, header_len } = rest_binary_body(&t);
        let header: Value = serde_json::from_slice(&body[..header_len]).unwrap();
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(header["inputs"][0]["shape"], json!([1, 2]));
        assert_eq!(header["inputs"][0].get("data"), None);
        assert_eq!(header["parameters"]["binary_data_output"], true);
        assert_eq!(&body[header_len..], raw.as_slice());
    }

    #[test]
    fn grpc_request_carries_raw_contents_and_no_typed_contents() {
        let t = tensor(DataType::Uint8, vec![4], vec![1, 2, 3, 4]);
        let req = grpc_request("mlp", "2", &t);
        assert_eq!(req.model_name, "mlp");
        assert_eq!(req.model_version, "2");
        assert_eq!(req.inputs.len(), 1);
        assert_eq!(req.inputs[0].datatype, "UINT8");
        assert_eq!(req.inputs[0].shape, vec![4]);
        assert!(req.inputs[0].contents.is_none());
        assert_eq!(
            req.raw_input_contents,
            vec![Bytes::from_static(&[1, 2, 3, 4])]
        );
    }
}
