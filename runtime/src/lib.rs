//! modelplane-runtime: serves PyTorch models over the Open Inference Protocol v2 (REST
//! and gRPC) on libtorch, with dynamic batching and hot reload.
//!
//! A request flows `server` (REST/gRPC) → `protocol` (decode) → `validate` (check
//! against the model's signature and limits) → `catalog` (pick the serving version) →
//! `batch` (queue on the version's executor thread, run `model::Backend::forward`) and
//! back. `reload` keeps the `catalog` in line with the config file and model `source`s.

pub mod batch;
pub mod catalog;
pub mod cgroup;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod openai;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod signing;
pub mod source;
pub mod tensor;
pub mod validate;

pub use error::InferError;
pub use server::{ConfigSource, Running, StartError, start};
