//! Sends the prepared request over one protocol and classifies the answer;
//! also reads a model's input signature from its metadata.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::Error;
use crate::encode::{self, HEADER_LENGTH};
use crate::load::Probe;
use crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::proto::{ModelInferRequest, ModelMetadataRequest};
use crate::report::Outcome;
use crate::tensor::InputTensor;

/// What the bench calls itself in the `User-Agent` of its HTTP requests.
pub const USER_AGENT: &str = concat!("modelplane-bench/", env!("CARGO_PKG_VERSION"));

/// The wire format a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// `POST /v2/models/{m}/infer` with JSON tensors.
    RestJson,
    /// `POST /v2/models/{m}/infer` with the binary tensor data extension.
    RestBinary,
    /// `inference.GRPCInferenceService/ModelInfer` with raw contents.
    Grpc,
}

impl Protocol {
    /// Kebab-case name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::RestJson => "rest-json",
            Protocol::RestBinary => "rest-binary",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Where requests go and what they ask for.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL: `http://host:port` of the REST or the gRPC listener.
    pub url: String,
    pub model: String,
    /// Empty for the model's default version.
    pub version: String,
    /// Per-request time limit; a request that exceeds it counts as `timeout`.
    pub timeout: Duration,
    /// API key sent as `Authorization: Bearer <key>` (REST, OpenAI) or the
    /// `authorization` metadata entry (gRPC); none when unset.
    pub api_key: Option<String>,
}

impl Target {
    fn model_path(&self) -> String {
        let base = self.url.trim_end_matches('/');
        if self.version.is_empty() {
            format!("{base}/v2/models/{}", self.model)
        } else {
            format!("{base}/v2/models/{}/versions/{}", self.model, self.version)
        }
    }
}

/// A name, datatype and shape from model metadata; `-1` marks a free dimension.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// A ready-to-send request; cloning it is cheap, so each worker owns one.
#[derive(Debug, Clone)]
pub enum Client {
    /// REST, JSON or binary: the body is encoded once and shared.
    Rest {
        http: reqwest::Client,
        infer_url: String,
        content_type: HeaderValue,
        header_len: Option<HeaderValue>,
        body: Bytes,
        timeout: Duration,
    },
    /// gRPC over one HTTP/2 channel shared by all workers.
    Grpc {
        client: GrpcInferenceServiceClient<Channel>,
        request: Box<ModelInferRequest>,
        /// `authorization: Bearer <key>` when the target has a key.
        auth: Option<AsciiMetadataValue>,
        timeout: Duration,
    },
}

impl Client {
    /// Encodes `tensor` for `protocol` and opens the connection pool or channel.
    pub async fn connect(
        protocol: Protocol,
        target: &Target,
        tensor: &InputTensor,
        max_connections: usize,
    ) -> Result<Self, Error> {
        if protocol == Protocol::Grpc {
            let client = grpc_client(&target.url).await?;
            let request = Box::new(encode::grpc_request(&target.model, &target.version, tensor));
            let auth = match &target.api_key {
                Some(key) => Some(
                    MetadataValue::try_from(format!("Bearer {key}")).map_err(|_| Error::ApiKey)?,
                ),
                None => None,
            };
            return Ok(Client::Grpc {
                client,
                request,
                auth,
                timeout: target.timeout,
            });
        }
        let (body, content_type, header_len) = match protocol {
            Protocol::RestBinary => {
                let binary = encode::rest_binary_body(tensor);
                let len = HeaderValue::from(binary.header_len);
                (binary.body, "application/octet-stream", Some(len))
            }
            _ => (encode::rest_json_body(tensor), "application/json", None),
        };
        Ok(Client::Rest {
            http: http_client(max_connections, target.api_key.as_deref())?,
            infer_url: format!("{}/infer", target.model_path()),
            content_type: HeaderValue::from_static(content_type),
            header_len,
            body,
            timeout: target.timeout,
        })
    }

    /// Sends one request and waits for the whole answer.
    pub async fn infer(&mut self) -> Outcome {
        match self {
            Client::Rest {
                http,
                infer_url,
                content_type,
                header_len,
                body,
                timeout,
            } => {
                let mut request = http
                    .post(infer_url.as_str())
                    .header(CONTENT_TYPE, content_type.clone())
                    .timeout(*timeout)
                    .body(body.clone());
                if let Some(len) = header_len {
                    request = request.header(HEADER_LENGTH, len.clone());
                }
                rest_outcome(request.send().await).await
            }
            Client::Grpc {
                client,
                request,
                auth,
                timeout,
            } => {
                let mut message = tonic::Request::new(ModelInferRequest::clone(request));
                if let Some(auth) = auth {
                    message.metadata_mut().insert("authorization", auth.clone());
                }
                let call = client.model_infer(message);
                match tokio::time::timeout(*timeout, call).await {
                    Err(_) => Outcome::Failed("timeout".into()),
                    Ok(Ok(_)) => Outcome::Ok,
                    Ok(Err(status)) => Outcome::Failed(format!("grpc:{:?}", status.code())),
                }
            }
        }
    }
}

impl Probe for Client {
    /// How the request ended and its latency from `issued` to the last byte.
    type Sample = (Outcome, Duration);

    async fn send(&mut self, issued: tokio::time::Instant) -> (Outcome, Duration) {
        let outcome = self.infer().await;
        (outcome, issued.elapsed())
    }
}

async fn rest_outcome(sent: reqwest::Result<reqwest::Response>) -> Outcome {
    let response = match sent {
        Ok(response) => response,
        Err(e) => return Outcome::Failed(transport_label(&e).into()),
    };
    let status = response.status();
    match response.bytes().await {
        Err(e) => Outcome::Failed(transport_label(&e).into()),
        Ok(_) if status.is_success() => Outcome::Ok,
        Ok(_) => Outcome::Failed(status.as_u16().to_string()),
    }
}

fn transport_label(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else {
        "transport"
    }
}

/// An HTTP client for the bench: its user agent, no Nagle, up to
/// `max_connections` idle connections, and `Authorization: Bearer <api_key>`
/// on every request when a key is given.
pub fn http_client(
    max_connections: usize,
    api_key: Option<&str>,
) -> Result<reqwest::Client, Error> {
    let mut headers = HeaderMap::new();
    if let Some(key) = api_key {
        let mut value =
            HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| Error::ApiKey)?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .default_headers(headers)
        .pool_max_idle_per_host(max_connections)
        .tcp_nodelay(true)
        .build()
        .map_err(Error::Http)
}

/// Connects an OIP gRPC client to `url`.
pub async fn grpc_client(url: &str) -> Result<GrpcInferenceServiceClient<Channel>, Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::Connect(url.to_owned(), e.to_string()))?
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Error::Connect(url.to_owned(), e.to_string()))?;
    Ok(GrpcInferenceServiceClient::new(channel))
}

#[derive(Deserialize)]
struct RestMetadata {
    inputs: Vec<TensorSpec>,
}

/// The model's first input, from REST `GET /v2/models/{m}` or gRPC
/// `ModelMetadata` depending on `protocol`.
pub async fn first_input(protocol: Protocol, target: &Target) -> Result<TensorSpec, Error> {
    let inputs = match protocol {
        Protocol::Grpc => {
            let mut client = grpc_client(&target.url).await?;
            let mut request = tonic::Request::new(ModelMetadataRequest {
                name: target.model.clone(),
                version: target.version.clone(),
            });
            if let Some(key) = &target.api_key {
                let value =
                    MetadataValue::try_from(format!("Bearer {key}")).map_err(|_| Error::ApiKey)?;
                request.metadata_mut().insert("authorization", value);
            }
            let metadata = client
                .model_metadata(request)
                .await
                .map_err(|s| Error::Metadata(format!("{:?}: {}", s.code(), s.message())))?;
            metadata
                .into_inner()
                .inputs
                .into_iter()
                .map(|t| TensorSpec {
                    name: t.name,
                    datatype: t.datatype,
                    shape: t.shape,
                })
                .collect()
        }
        Protocol::RestJson | Protocol::RestBinary => {
            let response = http_client(1, target.api_key.as_deref())?
                .get(target.model_path())
                .timeout(target.timeout)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| Error::Metadata(e.to_string()))?;
            let metadata: RestMetadata = response
                .json()
                .await
                .map_err(|e| Error::Metadata(e.to_string()))?;
            metadata.inputs
        }
    };
    inputs
        .into_iter()
        .next()
        .ok_or_else(|| Error::Metadata(format!("model {} lists no inputs", target.model)))
}
