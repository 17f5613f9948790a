//! [`TextCodec`]: text to token ids and back, plus the model's chat template.

use std::path::Path;

use tokenizers::Tokenizer;

use super::template::ChatTemplate;
use super::{ChatMessage, TextError};
use crate::config::GenerateModelConfig;

/// The tokenizer of a model folder and, for chat models, its chat template.
///
/// Cheap to share behind an `Arc`: every method takes `&self`.
#[derive(Debug)]
pub struct TextCodec {
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
}

/// Token ids of several texts, padded on the right to the longest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaddedBatch {
    /// `rows × width` ids, row-major; padding positions hold the pad id.
    pub ids: Vec<u32>,
    /// `rows × width`, 1 for a real token, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Number of texts.
    pub rows: usize,
    /// Tokens per row after padding (the longest row).
    pub width: usize,
}

impl TextCodec {
    /// Loads the tokenizer and chat template of the generative model in `dir`.
    pub fn load(dir: &Path, config: &GenerateModelConfig) -> Result<Self, TextError> {
        let codec = Self::from_tokenizer_file(&config.tokenizer_path(dir))?;
        match &config.chat_template {
            Some(source) => {
                codec.with_chat_template(source, config.bos_token.clone(), config.eos_token.clone())
            }
            None => Ok(codec),
        }
    }

    /// Loads a Hugging Face `tokenizer.json`, without a chat template.
    pub fn from_tokenizer_file(path: &Path) -> Result<Self, TextError> {
        let tokenizer = Tokenizer::from_file(path).map_err(|err| TextError::LoadTokenizer {
            origin: path.display().to_string(),
            message: err.to_string(),
        })?;
        Ok(Self::from_tokenizer(tokenizer))
    }

    /// Parses the bytes of a `tokenizer.json`, without a chat template.
    pub fn from_tokenizer_json(bytes: &[u8]) -> Result<Self, TextError> {
        let tokenizer = Tokenizer::from_bytes(bytes).map_err(|err| TextError::LoadTokenizer {
            origin: "tokenizer JSON".to_owned(),
            message: err.to_string(),
        })?;
        Ok(Self::from_tokenizer(tokenizer))
    }

    /// Wraps a tokenizer built in code, without a chat template.
    pub fn from_tokenizer(tokenizer: Tokenizer) -> Self {
        Self {
            tokenizer,
            template: None,
        }
    }

    /// Adds a chat template (Jinja source) and the special tokens it may refer to.
    pub fn with_chat_template(
        mut self,
        source: &str,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self, TextError> {
        self.template = Some(ChatTemplate::compile(source, bos_token, eos_token)?);
        Ok(self)
    }

    /// The token ids of `text`; `add_special_tokens` applies the tokenizer's
    /// post-processor (and the truncation the tokenizer file configures).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TextError> {
        let encoding = self
            .tokenizer
            .encode_fast(text, add_special_tokens)
            .map_err(|err| TextError::Encode(err.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes `texts` with special tokens and pads them on the right with `pad_id`
    /// to the longest, with the attention mask an embedding model takes.
    pub fn encode_batch_padded(
        &self,
        texts: &[&str],
        pad_id: u32,
    ) -> Result<PaddedBatch, TextError> {
        let rows = texts
            .iter()
            .map(|text| self.encode(text, true))
            .collect::<Result<Vec<_>, _>>()?;
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut batch = PaddedBatch {
            ids: Vec::with_capacity(rows.len() * width),
            attention_mask: Vec::with_capacity(rows.len() * width),
            rows: rows.len(),
            width,
        };
        for row in &rows {
            let padding = width - row.len();
            batch.ids.extend_from_slice(row);
            batch.ids.extend(std::iter::repeat_n(pad_id, padding));
            batch
                .attention_mask
                .extend(std::iter::repeat_n(1, row.len()));
            batch.attention_mask.extend(std::iter::repeat_n(0, padding));
        }
        Ok(batch)
    }

    /// The text of `ids`, special tokens skipped.
    ///
    /// Bytes that are not complete UTF-8 come out as U+FFFD and ids outside the
    /// vocabulary are skipped, as in Python.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|err| TextError::Decode(err.to_string()))
    }

    /// Renders `messages` into the prompt text with the model's chat template.
    ///
    /// Encode the result with `add_special_tokens = false`: the template already
    /// wrote them.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        self.template
            .as_ref()
            .ok_or(TextError::NoChatTemplate)?
            .render(messages, add_generation_prompt)
    }

    /// Whether the model has a chat template (chat completions need one).
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The id of a token given as text (e.g. a special token), if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TextCodec>();
    }
}
