//! Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService`. Tensor
//! models answer each request once; `generate` models stream text ([`generate`]).

pub mod generate;
mod status;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderMap;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::InferError;
use crate::serve::{self, Call, Protocol, RequestContext, TensorRequest};
use crate::server::AppState;
use crate::tensor::{DataType, TensorData};
use crate::validate::{check_input, check_outputs, order_inputs};

pub use status::grpc_code;

/// Code generated from `proto/grpc_service.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::GrpcInferenceService;
use pb::model_infer_response::InferOutputTensor;
use pb::{InferTensorContents, ModelInferRequest, ModelInferResponse};

/// The gRPC service over the shared server state.
#[derive(Clone)]
pub struct GrpcService {
    state: Arc<AppState>,
}

impl GrpcService {
    /// Serves the models in `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// Starts a request on the one path: its context (the call's metadata, the model
    /// and version it names), routed and admitted.
    fn start(
        &self,
        headers: HeaderMap,
        request: &ModelInferRequest,
        started: Instant,
    ) -> Result<Call, InferError> {
        let ctx = RequestContext::new(
            Protocol::Grpc,
            request.model_name.clone(),
            Some(request.model_version.clone()),
            headers,
            started,
        )?;
        serve::start(&self.state, ctx)
    }

    /// Answers one `ModelInfer`: a tensor inference, or a whole generated text.
    async fn infer(
        &self,
        headers: HeaderMap,
        request: ModelInferRequest,
    ) -> Result<ModelInferResponse, InferError> {
        let call = self.start(headers, &request, Instant::now())?;
        if call.target().version.generates() {
            return generate::submit(call, &request).await?.collect().await;
        }
        tensor(call, &request).await
    }
}

/// Runs a tensor `ModelInfer` on the path: decode against the version, run, encode.
async fn tensor(call: Call, request: &ModelInferRequest) -> Result<ModelInferResponse, InferError> {
    call.tensor(
        async |target| {
            let (version, limits) = (&target.version, &target.config.limits);
            let (inputs, rows) =
                decode_inputs(request, &version.signature, limits, version.batching)?;
            let requested: Vec<&str> = request.outputs.iter().map(|o| o.name.as_str()).collect();
            check_outputs(&version.signature, requested.iter().copied())?;
            Ok((TensorRequest { inputs, rows }, requested))
        },
        |target, requested, outputs| {
            let version = &target.version;
            Ok(encode_outputs(
                request,
                &version.model,
                &version.label,
                outputs,
                &requested,
            ))
        },
    )
    .await
}

fn decode_inputs(
    request: &ModelInferRequest,
    signature: &crate::model::Signature,
    limits: &modelplane_config::Limits,
    batching: bool,
) -> Result<(Vec<TensorData>, u64), InferError> {
    let raw = &request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(InferError::BadRequest(format!(
            "raw_input_contents has {} entries for {} inputs",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut decoded = Vec::with_capacity(request.inputs.len());
    for (position, input) in request.inputs.iter().enumerate() {
        let checked = check_input(
            signature,
            limits,
            &input.name,
            &input.datatype,
            &input.shape,
        )?;
        let data = match (raw.get(position), &input.contents) {
            (Some(bytes), _) => bytes.clone(),
            (None, Some(contents)) => {
                Bytes::from(typed_contents(contents, checked.datatype).map_err(|err| {
                    InferError::BadRequest(format!("input {:?}: {err}", input.name))
                })?)
            }
            (None, None) => {
                return Err(InferError::BadRequest(format!(
                    "input {:?} has no contents",
                    input.name
                )));
            }
        };
        if data.len() as u64 != checked.byte_len() {
            return Err(InferError::BadRequest(format!(
                "input {:?}: {} bytes of data for shape {:?} of {} ({} bytes)",
                input.name,
                data.len(),
                input.shape,
                checked.datatype,
                checked.byte_len()
            )));
        }
        let tensor = TensorData {
            name: input.name.clone(),
            datatype: checked.datatype,
            shape: input.shape.clone(),
            data,
        };
        decoded.push((checked.index, tensor));
    }
    order_inputs(signature, decoded, batching)
}

/// Converts typed `InferTensorContents` to little-endian bytes, in one pass into one
/// buffer of the exact size (no allocation per element); values out of range of a
/// narrower datatype (`INT8` from the `int32` field, say) are refused by name.
pub(crate) fn typed_contents(
    contents: &InferTensorContents,
    datatype: DataType,
) -> Result<Vec<u8>, String> {
    /// Every value of `values` as `T`, written as its `N` little-endian bytes.
    fn le_bytes<S, T, const N: usize>(
        values: &[S],
        to_bytes: fn(T) -> [u8; N],
        datatype: DataType,
    ) -> Result<Vec<u8>, String>
    where
        S: Copy + std::fmt::Display,
        T: TryFrom<S>,
    {
        let mut out = Vec::with_capacity(values.len() * N);
        for &value in values {
            let value =
                T::try_from(value).map_err(|_| format!("{value} is not a valid {datatype}"))?;
            out.extend_from_slice(&to_bytes(value));
        }
        Ok(out)
    }
    let c = contents;
    match datatype {
        DataType::Bool => le_bytes(&c.bool_contents, |b: bool| [u8::from(b)], datatype),
        DataType::Int8 => le_bytes(&c.int_contents, i8::to_le_bytes, datatype),
        DataType::Int16 => le_bytes(&c.int_contents, i16::to_le_bytes, datatype),
        DataType::Int32 => le_bytes(&c.int_contents, i32::to_le_bytes, datatype),
        DataType::Int64 => le_bytes(&c.int64_contents, i64::to_le_bytes, datatype),
        DataType::Uint8 => le_bytes(&c.uint_contents, u8::to_le_bytes, datatype),
        DataType::Uint16 => le_bytes(&c.uint_contents, u16::to_le_bytes, datatype),
        DataType::Uint32 => le_bytes(&c.uint_contents, u32::to_le_bytes, datatype),
        DataType::Uint64 => le_bytes(&c.uint64_contents, u64::to_le_bytes, datatype),
        DataType::Fp32 => le_bytes(&c.fp32_contents, f32::to_le_bytes, datatype),
        DataType::Fp64 => le_bytes(&c.fp64_contents, f64::to_le_bytes, datatype),
        DataType::Fp16 | DataType::Bf16 | DataType::Bytes => Err(format!(
            "{datatype} has no typed contents field; send it in raw_input_contents"
        )),
    }
}

/// Builds the response with every (or every requested) output as raw contents.
fn encode_outputs(
    request: &ModelInferRequest,
    model: &str,
    version: &str,
    outputs: Vec<TensorData>,
    requested: &[&str],
) -> ModelInferResponse {
    let chosen: Vec<TensorData> = if requested.is_empty() {
        outputs
    } else {
        requested
            .iter()
            .filter_map(|name| outputs.iter().find(|t| t.name == *name).cloned())
            .collect()
    };
    let mut response = ModelInferResponse {
        model_name: model.to_owned(),
        model_version: version.to_owned(),
        id: request.id.clone(),
        ..Default::default()
    };
    for tensor in chosen {
        response.outputs.push(InferOutputTensor {
            name: tensor.name,
            datatype: tensor.datatype.as_str().to_owned(),
            shape: tensor.shape,
            ..Default::default()
        });
        response.raw_output_contents.push(tensor.data);
    }
    response
}

/// The responses of one request of a `ModelStreamInfer` call.
type Responses = BoxStream<'static, Result<pb::ModelStreamInferResponse, Status>>;

impl GrpcService {
    /// One request of a stream: a generation streams its chunks; a tensor inference
    /// answers once. A failure is one response with `error_message` set (and, for a
    /// generate model, Triton's final-response marker).
    async fn stream_one(&self, headers: HeaderMap, request: ModelInferRequest) -> Responses {
        let id = request.id.clone();
        let call = match self.start(headers, &request, Instant::now()) {
            Ok(call) => call,
            Err(err) => return once(failed(&id, &err)),
        };
        if call.target().version.generates() {
            return match generate::submit(call, &request).await {
                Ok(generation) => generation.into_responses().map(Ok).boxed(),
                Err(err) => once(generate::final_error(&id, &err)),
            };
        }
        once(match tensor(call, &request).await {
            Ok(response) => pb::ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(response),
            },
            Err(err) => failed(&id, &err),
        })
    }
}

fn once(response: pb::ModelStreamInferResponse) -> Responses {
    stream::once(async { Ok(response) }).boxed()
}

/// The stream response of a tensor request that failed.
fn failed(id: &str, err: &InferError) -> pb::ModelStreamInferResponse {
    pb::ModelStreamInferResponse {
        error_message: err.to_string(),
        infer_response: Some(ModelInferResponse {
            id: id.to_owned(),
            ..Default::default()
        }),
    }
}

type InferStream =
    Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send + 'static>>;

/// Requests of one stream run concurrently up to this many; responses keep request order.
const STREAM_CONCURRENCY: usize = 64;

#[tonic::async_trait]
impl GrpcInferenceService for GrpcService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.state.catalog.load().ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let catalog = self.state.catalog.load();
        let entry = catalog.model(&request.name)?;
        let wanted = Some(request.version.as_str()).filter(|v| !v.is_empty());
        let ready = match entry.resolve(wanted) {
            Ok(_) => true,
            Err(InferError::NotReady(_)) => false,
            Err(err) => return Err(err.into()),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        let meta = crate::server::server_metadata();
        Ok(Response::new(pb::ServerMetadataResponse {
            name: meta.name.to_owned(),
            version: meta.version.to_owned(),
            extensions: meta.extensions.iter().map(|e| (*e).to_owned()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        crate::identity::require(&self.state, &request.metadata().clone().into_headers())?;
        let request = request.into_inner();
        let catalog = self.state.catalog.load();
        let wanted = Some(request.version.as_str()).filter(|v| !v.is_empty());
        let meta = crate::server::model_metadata(&catalog, &request.name, wanted)?;
        let tensor =
            |spec: crate::server::TensorMeta| pb::model_metadata_response::TensorMetadata {
                name: spec.name,
                datatype: spec.datatype.to_owned(),
                shape: spec.shape,
            };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: meta.name,
            versions: meta.versions,
            platform: meta.platform.to_owned(),
            inputs: meta.inputs.into_iter().map(tensor).collect(),
            outputs: meta.outputs.into_iter().map(tensor).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        Ok(Response::new(
            self.infer(metadata.into_headers(), request).await?,
        ))
    }

    type ModelStreamInferStream = InferStream;

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let (metadata, _, messages) = request.into_parts();
        let headers = metadata.into_headers();
        let service = self.clone();
        // Requests are admitted concurrently; their responses keep request order (a
        // generation's chunks all come before the next request's responses).
        let responses = messages
            .map(move |message| {
                let service = service.clone();
                let headers = headers.clone();
                async move {
                    match message {
                        Ok(request) => service.stream_one(headers, request).await,
                        Err(status) => stream::once(async { Err(status) }).boxed(),
                    }
                }
            })
            .buffered(STREAM_CONCURRENCY)
            .flatten();
        Ok(Response::new(Box::pin(responses)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_contents_are_packed_little_endian() {
        let contents = InferTensorContents {
            int_contents: vec![1, -2],
            ..Default::default()
        };
        assert_eq!(
            typed_contents(&contents, DataType::Int16).expect("fits"),
            [1, 0, 0xfe, 0xff]
        );
        let too_big = InferTensorContents {
            int_contents: vec![300],
            ..Default::default()
        };
        assert!(typed_contents(&too_big, DataType::Int8).is_err());
        let floats = InferTensorContents {
            fp32_contents: vec![1.5],
            ..Default::default()
        };
        assert_eq!(
            typed_contents(&floats, DataType::Fp32).expect("fp32"),
            1.5f32.to_le_bytes()
        );
        assert!(typed_contents(&InferTensorContents::default(), DataType::Fp16).is_err());
    }

    #[test]
    fn narrow_typed_contents_take_every_value_in_range_and_name_the_first_outside() {
        let all_i8: Vec<i32> = (i32::from(i8::MIN)..=i32::from(i8::MAX)).collect();
        let bytes = typed_contents(
            &InferTensorContents {
                int_contents: all_i8.clone(),
                ..Default::default()
            },
            DataType::Int8,
        )
        .expect("every i8 fits");
        let back: Vec<i32> = bytes.iter().map(|&b| i32::from(b as i8)).collect();
        assert_eq!(back, all_i8);

        let uints = InferTensorContents {
            uint_contents: vec![0, 255, 65_535],
            ..Default::default()
        };
        assert_eq!(
            typed_contents(&uints, DataType::Uint16).expect("fits u16"),
            [0, 0, 255, 0, 255, 255]
        );
        assert_eq!(
            typed_contents(&uints, DataType::Uint8).expect_err("65535 is no u8"),
            "65535 is not a valid UINT8"
        );
        let negative = InferTensorContents {
            int_contents: vec![-32_769],
            ..Default::default()
        };
        assert_eq!(
            typed_contents(&negative, DataType::Int16).expect_err("below i16"),
            "-32769 is not a valid INT16"
        );
        let bools = InferTensorContents {
            bool_contents: vec![true, false],
            ..Default::default()
        };
        assert_eq!(
            typed_contents(&bools, DataType::Bool).expect("bool"),
            [1, 0]
        );
    }
}
