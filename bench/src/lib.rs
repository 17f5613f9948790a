//! `modelplane-bench`: a load generator for servers that speak the Open
//! Inference Protocol — REST with JSON tensors, REST with the binary tensor
//! data extension, and gRPC — in closed or open loop, with latency
//! percentiles from an HDR histogram and errors counted by status; and for
//! streaming generation over OpenAI SSE and gRPC `ModelStreamInfer`, with
//! time to first token, inter-token latency, jitter and output tokens/s
//! ([`stream`]).

use std::path::PathBuf;

pub mod client;
pub mod encode;
pub mod load;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod sse;
pub mod stream;
pub mod tenants;
pub mod tensor;

/// Types generated from `runtime/proto/grpc_service.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("inference");
}

pub use plan::{Input, Load, Plan, run};
pub use report::Report;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown datatype {0:?}")]
    UnknownDatatype(String),
    #[error("shape {0:?} has a negative or too large dimension")]
    BadShape(Vec<i64>),
    #[error("cannot parse shape {0:?}: expected comma-separated integers like 1,3,64,64")]
    ShapeSyntax(String),
    #[error("model shape {0:?} has a free dimension other than the first; pass --shape")]
    FreeDimension(Vec<i64>),
    #[error("a {datatype} tensor of shape {shape:?} takes {expected} bytes, got {actual}")]
    InputSize {
        shape: Vec<i64>,
        datatype: tensor::DataType,
        expected: usize,
        actual: usize,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading model metadata: {0}")]
    Metadata(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("reading prompts: {0}")]
    Prompts(String),
    #[error("the API key is not a valid header value (printable ASCII, no newlines)")]
    ApiKey,
    #[error("{0}")]
    Tenants(String),
    #[error("building the HTTP client: {0}")]
    Http(reqwest::Error),
}
