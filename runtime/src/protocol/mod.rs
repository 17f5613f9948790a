//! Wire formats of the Open Inference Protocol v2.

pub mod grpc;
pub mod json_data;
pub mod rest;
