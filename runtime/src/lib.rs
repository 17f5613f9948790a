//! modelplane-runtime: serves PyTorch models over the Open Inference Protocol v2 (REST
//! and gRPC) on libtorch, with dynamic batching and hot reload.
//!
//! Every edge (`server` for OIP REST, `protocol::grpc`, `openai`) parses its request,
//! builds a `serve::RequestContext` and hands it to the one request path, `serve`:
//! authenticate (`identity`: who sent it, which tenant) → route (pick the version from
//! the `catalog`) → admit → run (`batch`: the version's executor thread runs
//! `model::Backend::forward`; or the generation engine) → record.
//! Inputs are decoded by `protocol` and checked by `validate` once the version is known.
//! `reload` keeps the `catalog` in line with the config file and model `source`s.

pub mod batch;
pub mod catalog;
pub mod cgroup;
pub mod error;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod openai;
pub mod protocol;
pub mod reload;
pub mod serve;
pub mod server;
pub mod signing;
pub mod source;
pub mod tenancy;
pub mod tensor;
pub mod validate;

pub use error::InferError;
pub use server::{ConfigSource, Running, StartError, start};
