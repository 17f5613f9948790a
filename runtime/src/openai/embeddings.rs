//! `POST /v1/embeddings`: texts to one padded token batch, one pass through the embed
//! model's executor (the same path as `/v2` infer), one vector per text.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use modelplane_config::Task;
use modelplane_generate::text::{PaddedBatch, TextCodec};
use serde::Serialize;

use super::embed_batch::{self, EncodingFormat, Vector};
use super::wire::{self, EmbeddingRequest};
use super::{ApiError, off_runtime, require, served_id};
use crate::error::InferError;
use crate::serve::{Target, TensorRequest};
use crate::server::AppState;

/// The padding id: any id works, the attention mask hides padded positions.
const PAD_ID: u32 = 0;

/// The response body.
#[derive(Debug, Serialize)]
pub struct EmbeddingList {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: EmbeddingUsage,
}

#[derive(Debug, Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Debug, Serialize)]
struct EmbeddingUsage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EmbeddingList>, ApiError> {
    let started = Instant::now();
    let request: EmbeddingRequest = wire::parse(&body?)?;
    let format = EncodingFormat::parse(request.encoding_format.as_deref())?;
    let texts = embed_batch::texts(request.input)?;
    let call = super::start(&state, &request.model, headers, started)?
        .check(|target| require(target, Task::Embed, &request.model, "/v1/embeddings"))?;
    let model = request.model;
    let list = call
        .tensor(
            async |target| {
                let version = &target.version;
                let codec = Arc::clone(embedding_codec(target, &model)?);
                check_dimensions(
                    request.dimensions,
                    embed_batch::declared_width(&version.signature),
                )?;
                let batch = off_runtime(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    codec
                        .encode_batch_padded(&refs, PAD_ID)
                        .map_err(|err| InferError::BadField {
                            param: "input",
                            message: err.to_string(),
                        })
                })
                .await?;
                check_batch_size(&batch, target.config.limits.max_elements)?;
                let inputs = embed_batch::tensors(&batch, &version.signature)?;
                let rows = batch.rows as u64;
                Ok((TensorRequest { inputs, rows }, batch))
            },
            |target, batch, outputs| {
                let vectors = embed_batch::vectors(&outputs, batch.rows)?;
                let tokens = embed_batch::real_tokens(&batch);
                Ok(EmbeddingList {
                    object: "list",
                    data: vectors
                        .into_iter()
                        .enumerate()
                        .map(|(index, values)| EmbeddingItem {
                            object: "embedding",
                            index,
                            embedding: Vector::encode(values, format),
                        })
                        .collect(),
                    model: served_id(target),
                    usage: EmbeddingUsage {
                        prompt_tokens: tokens,
                        total_tokens: tokens,
                    },
                })
            },
        )
        .await?;
    Ok(Json(list))
}

/// The tokenizer of an embed model (its `tokenizer`, else the `tokenizer.json` beside its
/// model file, read at load).
fn embedding_codec<'a>(target: &'a Target, model: &str) -> Result<&'a Arc<TextCodec>, InferError> {
    target
        .version
        .text_codec()
        .ok_or_else(|| InferError::BadField {
            param: "model",
            message: format!(
                "model {model:?} has no tokenizer: no tokenizer.json beside its model file \
             and none configured (model.tokenizer)"
            ),
        })
}

/// A batch is one tensor per input: its `rows × width` must stay within `maxElements`.
fn check_batch_size(batch: &PaddedBatch, max_elements: u64) -> Result<(), InferError> {
    let elements = (batch.rows as u64).saturating_mul(batch.width as u64);
    if elements <= max_elements {
        return Ok(());
    }
    Err(InferError::TooLarge(format!(
        "the input batch has {elements} tokens ({} texts × {}), more than the model's limit of \
         {max_elements}",
        batch.rows, batch.width
    )))
}

/// `dimensions`, when set, must be the model's embedding width (no truncation).
fn check_dimensions(requested: Option<i64>, width: Option<usize>) -> Result<(), InferError> {
    match (requested, width) {
        (None, _) => Ok(()),
        (Some(d), Some(w)) if usize::try_from(d).is_ok_and(|d| d == w) => Ok(()),
        (Some(d), width) => Err(InferError::InvalidParameter {
            param: "dimensions".to_owned(),
            message: match width {
                Some(w) => format!("this model's embeddings have {w} dimensions, got {d}"),
                None => "dimensions is not supported for this model".to_owned(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_must_match_the_model() {
        assert!(check_dimensions(None, Some(384)).is_ok());
        assert!(check_dimensions(Some(384), Some(384)).is_ok());
        let err =
            ApiError::from(check_dimensions(Some(128), Some(384)).expect_err("no truncation"));
        assert_eq!(err.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(check_dimensions(Some(384), None).is_err());
    }

    #[test]
    fn a_batch_over_max_elements_is_413() {
        let batch = PaddedBatch {
            ids: vec![0; 6],
            attention_mask: vec![1; 6],
            rows: 2,
            width: 3,
        };
        assert!(check_batch_size(&batch, 6).is_ok());
        let err = ApiError::from(check_batch_size(&batch, 5).expect_err("too many tokens"));
        assert_eq!(err.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }
}
