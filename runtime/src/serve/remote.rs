//! The `grpc` fallback hop: a tensor request forwarded, as decoded against its own
//! model's signature, to a model another runtime serves over Open Inference Protocol
//! gRPC. One lazily connected channel per address is shared by every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use modelplane_config::RemoteModel;
use tonic::transport::{Channel, Endpoint};

use crate::error::InferError;
use crate::protocol::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::protocol::grpc::pb::model_infer_request::InferInputTensor;
use crate::protocol::grpc::pb::{ModelInferRequest, ModelInferResponse};
use crate::protocol::grpc::typed_contents;
use crate::tensor::{DataType, TensorData};

/// The channels of the `grpc` hops, by address.
#[derive(Default)]
pub struct Remotes {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Remotes {
    /// The channel to `address`, made (not connected) on first use.
    pub fn channel(&self, address: &str) -> Result<Channel, InferError> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(address.to_owned())
            .map_err(|err| {
                InferError::Internal(format!("fallback address {address:?} is unusable: {err}"))
            })?
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// Sends `inputs` to `remote` and reads its outputs, by `deadline` or the hop's own
/// timeout, whichever comes first.
pub async fn infer(
    channel: Channel,
    remote: &RemoteModel,
    inputs: Vec<TensorData>,
    deadline: Instant,
) -> Result<Vec<TensorData>, InferError> {
    let hop = format!("fallback grpc:{} at {}", remote.model, remote.address);
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .min(remote.timeout.get());
    let mut request = ModelInferRequest {
        model_name: remote.model.clone(),
        ..Default::default()
    };
    for tensor in inputs {
        request.inputs.push(InferInputTensor {
            name: tensor.name,
            datatype: tensor.datatype.as_str().to_owned(),
            shape: tensor.shape,
            ..Default::default()
        });
        request.raw_input_contents.push(tensor.data);
    }
    let mut request = tonic::Request::new(request);
    request.set_timeout(timeout);
    let mut client = GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    match client.model_infer(request).await {
        Ok(response) => outputs(response.into_inner()).map_err(|why| {
            InferError::Internal(format!("{hop} answered malformed outputs: {why}"))
        }),
        Err(status) => Err(remote_error(&hop, &status)),
    }
}

/// The outputs of a response: raw contents, or typed ones.
fn outputs(response: ModelInferResponse) -> Result<Vec<TensorData>, String> {
    let raw = response.raw_output_contents;
    if !raw.is_empty() && raw.len() != response.outputs.len() {
        return Err(format!(
            "{} raw contents for {} outputs",
            raw.len(),
            response.outputs.len()
        ));
    }
    let mut raw = raw.into_iter();
    response
        .outputs
        .into_iter()
        .map(|output| {
            let datatype = DataType::parse(&output.datatype).ok_or_else(|| {
                format!("output {:?}: datatype {:?}", output.name, output.datatype)
            })?;
            let data = match (raw.next(), &output.contents) {
                (Some(bytes), _) => bytes,
                (None, Some(contents)) => Bytes::from(
                    typed_contents(contents, datatype)
                        .map_err(|err| format!("output {:?}: {err}", output.name))?,
                ),
                (None, None) => return Err(format!("output {:?} has no contents", output.name)),
            };
            Ok(TensorData {
                name: output.name,
                datatype,
                shape: output.shape,
                data,
            })
        })
        .collect()
}

/// A failed forward, as this runtime's error: the caller's fault stays a 4xx, the
/// rest is the hop failing.
fn remote_error(hop: &str, status: &tonic::Status) -> InferError {
    let message = format!("{hop}: {:?}: {}", status.code(), status.message());
    match status.code() {
        tonic::Code::InvalidArgument => InferError::BadRequest(message),
        tonic::Code::DeadlineExceeded => InferError::DeadlineExceeded(message),
        _ => InferError::Internal(message),
    }
}
