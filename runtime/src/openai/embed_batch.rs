//! The pure side of `/v1/embeddings`: checking the inputs, padding token ids into
//! one batch shaped for the model's signature, and reading the vectors back out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use modelplane_generate::text::PaddedBatch;
use serde::Serialize;

use super::ApiError;
use super::wire::EmbeddingInput;
use crate::error::InferError;
use crate::model::Signature;
use crate::tensor::{DataType, TensorData};

/// Most texts in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// How vectors are written in the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    Float,
    /// Base64 of the little-endian float32 bytes.
    Base64,
}

impl EncodingFormat {
    /// Parses `encoding_format` (absent: `float`).
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("float") => Ok(Self::Float),
            Some("base64") => Ok(Self::Base64),
            Some(other) => Err(ApiError::bad_field(
                "encoding_format",
                format!("encoding_format must be \"float\" or \"base64\", got {other:?}"),
            )),
        }
    }
}

/// The texts to embed: one or more, none empty, at most [`MAX_INPUTS`].
pub fn texts(input: EmbeddingInput) -> Result<Vec<String>, ApiError> {
    let texts = match input {
        EmbeddingInput::Text(text) => vec![text],
        EmbeddingInput::Texts(texts) => texts,
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenLists(_) => {
            return Err(ApiError::bad_field(
                "input",
                "token-id input is not supported; send text",
            ));
        }
    };
    if texts.is_empty() {
        return Err(ApiError::bad_field("input", "input must not be empty"));
    }
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::bad_field(
            "input",
            format!(
                "at most {MAX_INPUTS} inputs per request, got {}",
                texts.len()
            ),
        ));
    }
    if let Some(index) = texts.iter().position(|t| t.is_empty()) {
        return Err(ApiError::bad_field(
            "input",
            format!("input[{index}] is empty"),
        ));
    }
    Ok(texts)
}

/// Real (unpadded) tokens in a batch: the usage count.
pub fn real_tokens(batch: &PaddedBatch) -> usize {
    batch.attention_mask.iter().filter(|m| **m != 0).count()
}

/// The model's inputs in signature order: `input_ids`, `attention_mask` and, when the
/// model takes it, `token_type_ids` (zeros). Any other input is an error.
pub fn tensors(batch: &PaddedBatch, signature: &Signature) -> Result<Vec<TensorData>, InferError> {
    let shape = vec![batch.rows as i64, batch.width as i64];
    signature
        .inputs
        .iter()
        .map(|spec| {
            let values: &[u32] = match spec.name.as_str() {
                "input_ids" => &batch.ids,
                "attention_mask" => &batch.attention_mask,
                "token_type_ids" => &[],
                other => {
                    return Err(InferError::BadRequest(format!(
                        "the model takes input {other:?}; an embedding model must take \
                         input_ids and attention_mask"
                    )));
                }
            };
            Ok(TensorData {
                name: spec.name.clone(),
                datatype: DataType::Int64,
                shape: shape.clone(),
                data: int64_bytes(values, batch.ids.len()),
            })
        })
        .collect()
}

/// `values` as little-endian INT64, zero-filled up to `len` elements.
fn int64_bytes(values: &[u32], len: usize) -> Bytes {
    let mut bytes = Vec::with_capacity(len * 8);
    for value in values {
        bytes.extend_from_slice(&i64::from(*value).to_le_bytes());
    }
    bytes.resize(len * 8, 0);
    Bytes::from(bytes)
}

/// The embedding width the signature declares, when it is fixed.
pub fn declared_width(signature: &Signature) -> Option<usize> {
    let output = signature.outputs.first()?;
    match output.shape.as_slice() {
        [_, width] => usize::try_from(*width).ok(),
        _ => None,
    }
}

/// Splits the model's first output, FP32 `[rows, width]`, into one vector per text.
pub fn vectors(outputs: &[TensorData], rows: usize) -> Result<Vec<Vec<f32>>, InferError> {
    let output = outputs
        .first()
        .ok_or_else(|| InferError::Internal("the embedding model returned no output".into()))?;
    let width = match output.shape.as_slice() {
        [r, w] if output.datatype == DataType::Fp32 && *r == rows as i64 => *w as usize,
        _ => {
            return Err(InferError::Internal(format!(
                "the embedding model returned {} {:?}; expected FP32 [{rows}, width]",
                output.datatype, output.shape
            )));
        }
    };
    let floats: Vec<f32> = output
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if width == 0 || floats.len() != rows * width {
        return Err(InferError::Internal(
            "the embedding model's output size does not match its shape".into(),
        ));
    }
    Ok(floats.chunks_exact(width).map(<[f32]>::to_vec).collect())
}

/// One vector as written in the response.
#[derive(Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Vector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

impl Vector {
    /// Encodes one vector.
    pub fn encode(values: Vec<f32>, format: EncodingFormat) -> Self {
        match format {
            EncodingFormat::Float => Self::Float(values),
            EncodingFormat::Base64 => {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                Self::Base64(BASE64.encode(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorSpec;

    #[test]
    fn inputs_are_one_text_or_many_never_empty() {
        assert_eq!(texts(EmbeddingInput::Text("a".into())).expect("one"), ["a"]);
        for bad in [
            EmbeddingInput::Texts(Vec::new()),
            EmbeddingInput::Texts(vec!["a".into(), String::new()]),
            EmbeddingInput::Tokens(vec![1]),
            EmbeddingInput::Texts(vec!["a".into(); MAX_INPUTS + 1]),
        ] {
            let err = texts(bad).expect_err("refused");
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
            assert_eq!(err.param.as_deref(), Some("input"));
        }
    }

    fn batch(ids: Vec<u32>, attention_mask: Vec<u32>, rows: usize) -> PaddedBatch {
        let width = ids.len() / rows;
        PaddedBatch {
            ids,
            attention_mask,
            rows,
            width,
        }
    }

    #[test]
    fn usage_counts_only_real_tokens() {
        let padded = batch(vec![101, 7, 102, 101, 102, 0], vec![1, 1, 1, 1, 1, 0], 2);
        assert_eq!(real_tokens(&padded), 5);
    }

    #[test]
    fn tensors_follow_the_signature_order() {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            datatype: DataType::Int64,
            shape: vec![-1, -1],
        };
        let signature = Signature {
            inputs: vec![
                spec("attention_mask"),
                spec("input_ids"),
                spec("token_type_ids"),
            ],
            outputs: Vec::new(),
        };
        let padded = batch(vec![5, 6], vec![1, 1], 1);
        let tensors = tensors(&padded, &signature).expect("known inputs");
        let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["attention_mask", "input_ids", "token_type_ids"]);
        assert_eq!(tensors[1].shape, [1, 2]);
        assert_eq!(&tensors[1].data[..8], 5i64.to_le_bytes());
        assert_eq!(tensors[2].data.len(), 16);
        assert!(tensors[2].data.iter().all(|b| *b == 0));
        let odd = Signature {
            inputs: vec![spec("pixels")],
            outputs: Vec::new(),
        };
        assert!(super::tensors(&padded, &odd).is_err());
    }

    #[test]
    fn vectors_are_split_by_row_and_checked() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let output = TensorData {
            name: "embedding".into(),
            datatype: DataType::Fp32,
            shape: vec![2, 2],
            data: Bytes::from(data),
        };
        assert_eq!(
            vectors(std::slice::from_ref(&output), 2).expect("fits"),
            [vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        assert!(vectors(std::slice::from_ref(&output), 3).is_err());
        assert!(vectors(&[], 2).is_err());
    }

    #[test]
    fn base64_is_the_little_endian_float32_bytes() {
        assert_eq!(
            Vector::encode(vec![1.0], EncodingFormat::Base64),
            Vector::Base64("AACAPw==".into())
        );
    }

    #[test]
    fn encoding_format_is_float_or_base64() {
        assert_eq!(
            EncodingFormat::parse(None).expect("default"),
            EncodingFormat::Float
        );
        assert_eq!(
            EncodingFormat::parse(Some("base64")).expect("ok"),
            EncodingFormat::Base64
        );
        assert!(EncodingFormat::parse(Some("int8")).is_err());
    }
}
