//! Streaming detokenization: text per token without ever splitting a character.
//!
//! A token may end in the middle of a UTF-8 character (byte-level BPE) or change
//! how the previous token decodes (decoders that join word pieces). So the
//! decoder keeps a short window of ids: it decodes the window with and without the
//! new ids and emits the difference once it no longer ends in an incomplete
//! character (U+FFFD). The emitted pieces concatenate to the decode of the whole
//! sequence.

use super::TextCodec;

/// The replacement character a lossy decode ends with while a character is incomplete.
const REPLACEMENT: char = '\u{FFFD}';

/// Turns generated ids into text pieces as they arrive (one decoder per request).
#[derive(Clone, Debug, Default)]
pub struct IncrementalDecoder {
    /// Ids from the start of the context window on; older ids are dropped.
    ids: Vec<u32>,
    /// `ids[..read]` have been emitted; `ids[..read]` also gives the new text's context.
    read: usize,
}

impl IncrementalDecoder {
    /// A decoder at the start of a sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id`; returns the text it completes ("" while a character or merge is
    /// incomplete).
    pub fn push(&mut self, codec: &TextCodec, id: u32) -> String {
        self.ids.push(id);
        let (context, text) = self.decode_window(codec);
        match text.strip_prefix(context.as_str()) {
            Some(new) if !new.is_empty() && !new.ends_with(REPLACEMENT) => {
                let new = new.to_owned();
                self.ids.drain(..self.read);
                self.read = self.ids.len();
                new
            }
            _ => String::new(),
        }
    }

    /// Emits what is still held back (an incomplete character comes out as U+FFFD,
    /// as in a full decode) and resets the decoder.
    pub fn finish(&mut self, codec: &TextCodec) -> String {
        let (context, text) = self.decode_window(codec);
        let rest = text
            .strip_prefix(context.as_str())
            .map(str::to_owned)
            .unwrap_or_default();
        *self = Self::default();
        rest
    }

    /// The decode of the emitted context and of the whole window.
    fn decode_window(&self, codec: &TextCodec) -> (String, String) {
        // A decoder error yields no text rather than failing the stream (ids
        // outside the vocabulary are already skipped by the tokenizer).
        let context = codec.decode(&self.ids[..self.read]).unwrap_or_default();
        let text = codec.decode(&self.ids).unwrap_or_default();
        (context, text)
    }
}
