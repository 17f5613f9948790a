//! modelplane-generate: the text generation engine of modelplane-runtime.
//!
//! A generative model is a `step` function over a slotted KV cache
//! (docs/generate-contract.md). The [`engine`] runs it on one dedicated thread with
//! continuous batching: requests join and leave the running batch at every step,
//! long prompts are prefilled in chunks, and admission accounts for KV cache slots.
//! [`text`] turns text into token ids and back (tokenizer, chat template, incremental
//! decoding, stop sequences); [`sampling`] picks the next token from what
//! [`selection`] asked the model to hand back. Nothing here links
//! libtorch: the runtime implements [`engine::StepModel`] over `tch`.

pub mod config;
pub mod engine;
pub mod metrics;
pub mod sampling;
pub mod selection;
pub mod text;
