//! Open Inference Protocol v2 REST bodies: JSON tensors and Triton's binary tensor data
//! extension (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data`,
//! `binary_data_output`).

use bytes::{BufMut, Bytes, BytesMut};
use modelplane_config::Limits;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::json_data::{self, DataView};
use crate::error::InferError;
use crate::model::Signature;
use crate::tensor::{DataType, TensorData};
use crate::validate::{CheckedInput, check_input, check_outputs, order_inputs};

/// The header that splits a body into a JSON part and a binary part.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A parsed, validated REST inference request.
#[derive(Debug)]
pub struct RestRequest {
    /// Client-chosen id, echoed back.
    pub id: Option<String>,
    /// Inputs in signature order.
    pub inputs: Vec<TensorData>,
    /// Rows on dimension 0 (1 when not batched).
    pub rows: u64,
    /// Which outputs to return and how.
    pub outputs: OutputSelection,
}

/// Which outputs a client asked for, and which of them as binary data.
#[derive(Debug, Default, PartialEq)]
pub struct OutputSelection {
    /// Named outputs with their `binary_data` flag; empty means every output.
    pub requested: Vec<(String, bool)>,
    /// `binary_data_output`: the default for outputs not named.
    pub all_binary: bool,
}

#[derive(Deserialize, Default)]
struct Parameters {
    binary_data_size: Option<u64>,
    binary_data: Option<bool>,
    binary_data_output: Option<bool>,
}

#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow)]
    inputs: Vec<WireInput<'a>>,
    #[serde(default)]
    outputs: Vec<WireOutput>,
}

#[derive(Deserialize)]
struct WireInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

/// Parses a request body against the model's signature and limits.
///
/// `header_length` is the `Inference-Header-Content-Length` value, when present: the
/// JSON is that many leading bytes and the rest holds binary tensor data.
pub fn parse_request(
    body: &Bytes,
    header_length: Option<&str>,
    signature: &Signature,
    limits: &Limits,
    batching: bool,
) -> Result<RestRequest, InferError> {
    let json_len = json_length(body, header_length)?;
    let wire: WireRequest<'_> = serde_json::from_slice(&body[..json_len])
        .map_err(|err| InferError::BadRequest(format!("malformed request JSON: {err}")))?;
    let mut binary = BinarySection {
        body,
        offset: json_len,
    };
    let mut decoded = Vec::with_capacity(wire.inputs.len());
    for input in &wire.inputs {
        let checked = check_input(
            signature,
            limits,
            &input.name,
            &input.datatype,
            &input.shape,
        )?;
        let data = input_data(input, checked, &mut binary)?;
        let tensor = TensorData {
            name: input.name.clone(),
            datatype: checked.datatype,
            shape: input.shape.clone(),
            data,
        };
        decoded.push((checked.index, tensor));
    }
    binary.finish()?;
    let (inputs, rows) = order_inputs(signature, decoded, batching)?;
    let outputs = output_selection(wire.parameters, wire.outputs);
    check_outputs(
        signature,
        outputs.requested.iter().map(|(name, _)| name.as_str()),
    )?;
    Ok(RestRequest {
        id: wire.id,
        inputs,
        rows,
        outputs,
    })
}

/// The length of the JSON part: the whole body, or `Inference-Header-Content-Length`.
fn json_length(body: &Bytes, header_length: Option<&str>) -> Result<usize, InferError> {
    let Some(value) = header_length else {
        return Ok(body.len());
    };
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|len| *len <= body.len())
        .ok_or_else(|| {
            InferError::BadRequest(format!(
                "Inference-Header-Content-Length {value:?} is not a length within the {}-byte body",
                body.len()
            ))
        })
}

/// An input's bytes: its share of the binary section, or its decoded JSON `data`.
fn input_data(
    input: &WireInput<'_>,
    checked: CheckedInput,
    binary: &mut BinarySection<'_>,
) -> Result<Bytes, InferError> {
    let binary_size = input.parameters.as_ref().and_then(|p| p.binary_data_size);
    match (binary_size, input.data) {
        (Some(size), _) if size != checked.byte_len() => Err(InferError::BadRequest(format!(
            "input {:?}: binary_data_size {size} does not match shape {:?} of {} ({} bytes)",
            input.name,
            input.shape,
            checked.datatype,
            checked.byte_len()
        ))),
        (Some(size), _) => binary.take(&input.name, size),
        (None, Some(raw)) => json_tensor(&input.name, raw, checked.datatype, checked.elements),
        (None, None) => Err(InferError::BadRequest(format!(
            "input {:?} has neither data nor binary_data_size",
            input.name
        ))),
    }
}

/// Which outputs to return, and which as binary data.
fn output_selection(parameters: Option<Parameters>, outputs: Vec<WireOutput>) -> OutputSelection {
    let all_binary = parameters
        .and_then(|p| p.binary_data_output)
        .unwrap_or(false);
    let requested = outputs
        .into_iter()
        .map(|out| {
            let binary = out
                .parameters
                .and_then(|p| p.binary_data)
                .unwrap_or(all_binary);
            (out.name, binary)
        })
        .collect();
    OutputSelection {
        requested,
        all_binary,
    }
}

fn json_tensor(
    name: &str,
    raw: &RawValue,
    datatype: DataType,
    elements: u64,
) -> Result<Bytes, InferError> {
    let (bytes, count) = json_data::decode(raw.get(), datatype, elements)
        .map_err(|err| InferError::BadRequest(format!("input {name:?}: {err}")))?;
    if count != elements {
        return Err(InferError::BadRequest(format!(
            "input {name:?}: data has {count} elements but the shape needs {elements}"
        )));
    }
    Ok(Bytes::from(bytes))
}

/// The binary part of a body, consumed input by input.
struct BinarySection<'a> {
    body: &'a Bytes,
    offset: usize,
}

impl BinarySection<'_> {
    fn take(&mut self, name: &str, size: u64) -> Result<Bytes, InferError> {
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| self.offset.checked_add(size));
        match end {
            Some(end) if end <= self.body.len() => {
                let chunk = self.body.slice(self.offset..end);
                self.offset = end;
                Ok(chunk)
            }
            _ => Err(InferError::BadRequest(format!(
                "binary data truncated: input {name:?} needs {size} bytes at offset {}, the body has {}",
                self.offset,
                self.body.len()
            ))),
        }
    }

    fn finish(self) -> Result<(), InferError> {
        if self.offset == self.body.len() {
            return Ok(());
        }
        Err(InferError::BadRequest(format!(
            "{} bytes of binary data are not claimed by any input's binary_data_size",
            self.body.len() - self.offset
        )))
    }
}

#[derive(Serialize)]
struct WireResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<WireOutputTensor<'a>>,
}

#[derive(Serialize)]
struct WireOutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataView<'a>>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// An encoded response body, and the JSON length when binary data follows it.
pub struct RestResponse {
    /// The whole body.
    pub body: Bytes,
    /// `Inference-Header-Content-Length`, when the body carries binary outputs.
    pub header_length: Option<usize>,
}

/// Encodes the selected outputs, as JSON data or binary data per the selection.
pub fn encode_response(
    model: &str,
    version: &str,
    id: Option<&str>,
    outputs: &[TensorData],
    selection: &OutputSelection,
) -> Result<RestResponse, InferError> {
    let chosen = choose_outputs(outputs, selection)?;
    let wire = WireResponse {
        model_name: model,
        model_version: version,
        id,
        outputs: chosen
            .iter()
            .map(|&(t, binary)| WireOutputTensor {
                name: &t.name,
                datatype: t.datatype.as_str(),
                shape: &t.shape,
                parameters: binary.then_some(BinaryParameters {
                    binary_data_size: t.data.len(),
                }),
                data: (!binary).then_some(DataView {
                    datatype: t.datatype,
                    bytes: &t.data,
                }),
            })
            .collect(),
    };
    let binary: Vec<&TensorData> = chosen
        .iter()
        .filter(|(_, binary)| *binary)
        .map(|(t, _)| *t)
        .collect();
    let binary_len: usize = binary.iter().map(|t| t.data.len()).sum();
    let mut body = BytesMut::with_capacity(256 + binary_len).writer();
    serde_json::to_writer(&mut body, &wire).map_err(|err| InferError::Internal(err.to_string()))?;
    let mut body = body.into_inner();
    if binary.is_empty() {
        return Ok(RestResponse {
            body: body.freeze(),
            header_length: None,
        });
    }
    let header_length = body.len();
    for tensor in binary {
        body.extend_from_slice(&tensor.data);
    }
    Ok(RestResponse {
        body: body.freeze(),
        header_length: Some(header_length),
    })
}

/// The outputs to return, in response order, each with its binary flag.
fn choose_outputs<'a>(
    outputs: &'a [TensorData],
    selection: &OutputSelection,
) -> Result<Vec<(&'a TensorData, bool)>, InferError> {
    if selection.requested.is_empty() {
        return Ok(outputs.iter().map(|t| (t, selection.all_binary)).collect());
    }
    selection
        .requested
        .iter()
        .map(|(name, binary)| {
            let tensor = outputs.iter().find(|t| &t.name == name);
            tensor.map(|t| (t, *binary)).ok_or_else(|| {
                InferError::Internal(format!("the model did not return output {name:?}"))
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "rest_tests.rs"]
mod tests;
