//! One admitted request: its tokens, its cache slot, how far the cache holds them,
//! and the per-request sampling and text state that turn logits into stream events.

use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use modelplane_fair::FlowKey;

use super::scheduler::SequenceView;
use super::{
    EngineError, FinishReason, RowLogits, Selection, StepRow, StreamEvent, Submission, Usage,
};
use crate::metrics::{GenerationMetrics, Outcome, Timings};
use crate::sampling::Sampler;
use crate::text::{IncrementalDecoder, StopMatcher, TextCodec};

/// Facts every sequence of an engine shares.
pub(super) struct Vocabulary<'a> {
    pub codec: &'a TextCodec,
    pub eos_token_ids: &'a [u32],
    pub metrics: &'a GenerationMetrics,
}

/// A request holding a KV cache slot.
pub(super) struct Sequence {
    /// Prompt followed by the generated tokens.
    tokens: Vec<u32>,
    prompt_len: u32,
    /// Tokens written to the slot; `tokens[fed..]` is what the next row feeds.
    fed: u32,
    max_tokens: u32,
    slot: u32,
    sampler: Sampler,
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    events: UnboundedSender<StreamEvent>,
    deadline: Option<Instant>,
    arrived: Instant,
    first_token: Option<Instant>,
    /// Set once the last event was sent; the worker then frees the slot.
    ended: Option<Outcome>,
    /// The flow its tokens are charged to in the engine's fair queue.
    flow: FlowKey,
    output_weight: u32,
    /// Generated tokens already charged to the flow.
    charged: u32,
    /// Some text sent so far is not whitespace (else a normal finish is an empty output).
    visible: bool,
}

impl Sequence {
    /// Starts a request in `slot`.
    pub fn admit(submission: Submission, slot: u32) -> Self {
        let Submission {
            request,
            events,
            arrived,
        } = submission;
        let prompt_len = u32::try_from(request.prompt.len()).unwrap_or(u32::MAX);
        let fair = request.fair;
        let mut tokens = request.prompt;
        tokens.reserve_exact(usize::try_from(request.max_tokens).unwrap_or(0));
        Self {
            tokens,
            prompt_len,
            fed: 0,
            max_tokens: request.max_tokens,
            slot,
            sampler: Sampler::new(&request.sampling),
            decoder: IncrementalDecoder::new(),
            stop: StopMatcher::new(request.stop),
            events,
            deadline: request.deadline,
            arrived,
            first_token: None,
            ended: None,
            flow: fair.flow.key,
            output_weight: fair.output_weight,
            charged: 0,
            visible: false,
        }
    }

    /// The flow to charge, and the weighted cost of the tokens generated since the
    /// last call (each generated token is charged once, when it exists).
    pub fn uncharged(&mut self) -> (&FlowKey, u64) {
        let generated = u32::try_from(self.tokens.len())
            .unwrap_or(u32::MAX)
            .saturating_sub(self.prompt_len);
        let new = generated.saturating_sub(self.charged);
        self.charged = generated;
        (
            &self.flow,
            u64::from(new).saturating_mul(u64::from(self.output_weight)),
        )
    }

    /// Starts feeding the prompt at `cached`: its slot already holds the keys and values
    /// of the prompt's first `cached` tokens (prefix caching; less than the prompt).
    pub fn reuse_prefix(&mut self, cached: u32) {
        self.fed = cached.min(self.prompt_len.saturating_sub(1));
    }

    /// The tokens whose keys and values the slot holds, positions `0..fed`.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.tokens[..self.fed as usize]
    }

    /// The tokens the slot holds once the sequence has ended: none after a failed step
    /// (what it wrote is not trusted), else [`Self::cached_tokens`].
    pub fn into_cached_tokens(mut self) -> Vec<u32> {
        if matches!(self.ended, Some(Outcome::Error)) {
            return Vec::new();
        }
        self.tokens.truncate(self.fed as usize);
        self.tokens
    }

    /// What the scheduler needs.
    pub fn view(&self) -> SequenceView {
        SequenceView {
            fed: self.fed,
            prompt_len: self.prompt_len,
        }
    }

    /// The row feeding `len` tokens from `start` (which the scheduler took from `fed`).
    pub fn row(&self, start: u32, len: u32) -> StepRow<'_> {
        let from = start as usize;
        StepRow {
            slot: self.slot,
            start,
            tokens: &self.tokens[from..from + len as usize],
        }
    }

    /// The cache slot.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Prompt tokens.
    pub fn prompt_len(&self) -> u32 {
        self.prompt_len
    }

    /// How the request ended, once it has.
    pub fn ended(&self) -> Option<Outcome> {
        self.ended
    }

    /// The client dropped its stream.
    pub fn is_cancelled(&self) -> bool {
        self.events.is_closed()
    }

    /// The deadline passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// What a call feeding `len` tokens from `start` needs back of the row's logits:
    /// nothing unless the row reaches the sequence's end, else what the sampler needs.
    pub fn selection(&self, start: u32, len: u32, vocab_size: u32) -> Selection {
        if u64::from(start) + u64::from(len) == self.tokens.len() as u64 {
            self.sampler.selection(vocab_size)
        } else {
            Selection::Nothing
        }
    }

    /// Records that a call wrote `len` more tokens to the slot; true when the
    /// call's logits are those of the next token (the row reached the sequence's end).
    pub fn advance(&mut self, len: u32) -> bool {
        self.fed += len;
        self.fed as usize == self.tokens.len()
    }

    /// Samples the next token from what the model answered for the row (checked
    /// against [`Self::selection`]), streams its text, and ends the request on eos,
    /// a stop sequence or `max_tokens`.
    pub fn accept(&mut self, logits: &RowLogits, vocab: &Vocabulary<'_>, now: Instant) {
        let token = self.sampler.pick(logits, &self.tokens);
        self.tokens.push(token);
        vocab.metrics.token();
        if self.first_token.is_none() {
            self.first_token = Some(now);
            vocab.metrics.first_token(now - self.arrived);
        }
        let (text, reason) = if vocab.eos_token_ids.contains(&token) {
            let (text, _) = self.finish_text(vocab.codec, String::new());
            (text, Some(FinishReason::Stop))
        } else {
            let piece = self.decoder.push(vocab.codec, token);
            let outcome = self.stop.push(&piece);
            if outcome.stopped {
                (outcome.emit, Some(FinishReason::Stop))
            } else if self.completion_tokens() >= self.max_tokens {
                let (text, stopped) = self.finish_text(vocab.codec, outcome.emit);
                let reason = if stopped {
                    FinishReason::Stop
                } else {
                    FinishReason::Length
                };
                (text, Some(reason))
            } else {
                (outcome.emit, None)
            }
        };
        // Checked only until the first visible character: no cost per token after it.
        self.visible = self.visible || has_visible(&text);
        let _ = self.events.send(StreamEvent::Delta {
            text,
            tokens: vec![token],
        });
        if let Some(reason) = reason {
            self.end(reason, vocab.metrics, now);
        }
    }

    /// `emitted` plus what the decoder and the stop matcher still hold; true when
    /// that rest completed a stop sequence.
    fn finish_text(&mut self, codec: &TextCodec, mut emitted: String) -> (String, bool) {
        let rest = self.decoder.finish(codec);
        let outcome = self.stop.push(&rest);
        emitted.push_str(&outcome.emit);
        if !outcome.stopped {
            emitted.push_str(&self.stop.flush());
        }
        (emitted, outcome.stopped)
    }

    fn end(&mut self, reason: FinishReason, metrics: &GenerationMetrics, now: Instant) {
        let usage = Usage {
            prompt_tokens: self.prompt_len,
            completion_tokens: self.completion_tokens(),
        };
        let _ = self.events.send(StreamEvent::Finished { reason, usage });
        let outcome = match reason {
            FinishReason::Stop => Outcome::Stop,
            FinishReason::Length => Outcome::Length,
        };
        metrics.finished(outcome, self.timings(now));
        if !self.visible {
            metrics.empty_output();
        }
        self.ended = Some(outcome);
    }

    /// Ends the request with an error event.
    pub fn fail(&mut self, error: EngineError, metrics: &GenerationMetrics) {
        let outcome = match error {
            EngineError::DeadlineExceeded => Outcome::DeadlineExceeded,
            EngineError::Step(_) => Outcome::Error,
            EngineError::Shed(_) => Outcome::Shed,
        };
        let _ = self.events.send(StreamEvent::Failed(error));
        metrics.finished(outcome, None);
        self.ended = Some(outcome);
    }

    /// Ends a request whose client went away (no event: nobody listens).
    pub fn cancel(&mut self, metrics: &GenerationMetrics) {
        metrics.finished(Outcome::Cancelled, None);
        self.ended = Some(Outcome::Cancelled);
    }

    fn completion_tokens(&self) -> u32 {
        u32::try_from(self.tokens.len()).unwrap_or(u32::MAX) - self.prompt_len
    }

    fn timings(&self, now: Instant) -> Option<Timings> {
        self.first_token.map(|first| Timings {
            first_token: first - self.arrived,
            total: now - self.arrived,
            completion_tokens: self.completion_tokens(),
        })
    }
}

/// Whether `text` has a character a reader would see (not whitespace).
fn has_visible(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::has_visible;

    #[test]
    fn only_non_whitespace_text_is_visible() {
        for blank in ["", " ", "\n\t ", "\u{3000}", "\u{a0}\r\n"] {
            assert!(!has_visible(blank), "{blank:?}");
        }
        for text in ["a", " .", "\n\n}"] {
            assert!(has_visible(text), "{text:?}");
        }
    }
}
