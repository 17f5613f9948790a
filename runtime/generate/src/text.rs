//! Text in and out of a generative model: tokenizer, chat template, streaming
//! detokenization and stop sequences (docs/generate-contract.md §6).

mod codec;
mod incremental;
mod stop;
mod template;

pub use codec::{PaddedBatch, TextCodec};
pub use incremental::IncrementalDecoder;
pub use stop::{StopMatcher, StopOutcome};

use serde::Deserialize;

/// One chat message, as OpenAI's `messages` carry it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, … (the template decides which it accepts).
    pub role: String,
    /// The message text.
    pub content: String,
}

/// Why text could not be turned into ids, or ids into text.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The tokenizer file or JSON is unreadable or invalid.
    #[error("cannot load tokenizer from {origin}: {message}")]
    LoadTokenizer {
        /// The file (or "tokenizer JSON").
        origin: String,
        /// The tokenizer's error.
        message: String,
    },
    /// The chat template does not compile.
    #[error("invalid chat template: {0}")]
    Template(String),
    /// The chat template refused the conversation (`raise_exception`) or failed
    /// while rendering it: the request's fault.
    #[error("chat template cannot render these messages: {0}")]
    Render(String),
    /// The model has no chat template, so it serves completions only.
    #[error("the model has no chat template")]
    NoChatTemplate,
    /// The tokenizer failed to encode the text.
    #[error("cannot tokenize text: {0}")]
    Encode(String),
    /// The tokenizer failed to decode the ids (e.g. an id outside the vocabulary).
    #[error("cannot decode token ids: {0}")]
    Decode(String),
}
