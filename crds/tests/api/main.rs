//! Tests of the generated CRDs: drift against the checked-in YAML, structural schema
//! rules, offline evaluation of every validation (OpenAPI and CEL), and the examples.

mod cel_typing;
mod drift;
mod examples;
mod formats;
mod server;
mod structural;
mod support;
mod validation;
