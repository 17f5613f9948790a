//! The run of a generate model: submit to the version's continuous-batching engine,
//! then hand the edge typed events. The generation records itself when it ends, or as
//! cancelled when the edge drops it (which also takes it out of the batch).

use modelplane_generate::engine::{
    EngineError, FinishReason, GenerateRequest, GenerationStream, StreamEvent, Usage,
};
use modelplane_generate::sampling::SamplingParams;
use std::time::Instant;

use tracing::Instrument;

use super::fallback::Hop;
use super::limiter::Signal;
use super::{Admitted, Call, Record, Target};
use crate::error::InferError;
use modelplane_config::FixedResponse;

/// A prompt ready for the engine, with the request's generation settings.
#[derive(Debug)]
pub struct GenerateInput {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// The request's maximum; `None`: [`crate::limits::DEFAULT_MAX_TOKENS`], capped at
    /// what the context leaves.
    pub max_tokens: Option<u32>,
    /// How to pick tokens.
    pub sampling: SamplingParams,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// The request field that carried the prompt (`prompt`, `messages`, `text_input`),
    /// named when the prompt leaves no room to generate.
    pub prompt_field: &'static str,
}

/// What a generation tells its edge, in order: text, then one end.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// Newly decoded text; never empty.
    Text(String),
    /// The generation finished.
    Finished {
        /// Why it stopped.
        reason: FinishReason,
        /// Tokens in and out.
        usage: Usage,
    },
    /// The generation failed after it was admitted (deadline, a model step).
    Failed(InferError),
}

/// A whole generation, collected.
#[derive(Debug, PartialEq)]
pub struct Completed {
    /// The generated text.
    pub text: String,
    /// Why it stopped.
    pub reason: FinishReason,
    /// Tokens in and out.
    pub usage: Usage,
}

/// A generation admitted by its version's engine, or a fallback's fixed text.
pub struct Generation {
    target: Target,
    events: Source,
    record: Option<Record>,
    /// Held to the end; generated tokens are noted as spent on its tenant permit.
    admitted: Admitted,
    /// When the first text was handed out (for the time per output token).
    first_text: Option<Instant>,
}

impl Call {
    /// Runs a generate request: `prepare` turns the edge's prompt into token ids with
    /// the version's tokenizer (`target.version.engine()?.codec()`), the path caps `max_tokens` and submits it to the engine
    /// with the request's deadline. A refusal is recorded; an admitted generation
    /// records itself.
    pub async fn generate(
        self,
        prepare: impl AsyncFnOnce(&Target) -> Result<GenerateInput, InferError>,
    ) -> Result<Generation, InferError> {
        let Self {
            target,
            hop,
            deadline,
            mut admitted,
            record,
        } = self;
        let submitted = async {
            let input = super::read_in_time(&target, deadline, prepare(&target)).await?;
            if let Hop::Fixed(fixed) = &hop {
                return fixed_text(&target, fixed, input.prompt.len());
            }
            let engine = target.version.engine()?;
            let context = engine.shape().context;
            let max_tokens =
                crate::limits::max_tokens(input.max_tokens, input.prompt.len(), context).map_err(
                    |err| InferError::ContextLength {
                        param: input.prompt_field,
                        message: err.to_string(),
                    },
                )?;
            // The tenant's token budget: the most this request can spend, settled
            // against what it did spend when it ends.
            let prompt = input.prompt.len() as u64;
            admitted
                .tenant
                .reserve(prompt + u64::from(max_tokens), Instant::now())?;
            let events = engine.submit(GenerateRequest {
                prompt: input.prompt,
                max_tokens,
                sampling: input.sampling,
                stop: input.stop,
                deadline: Some(deadline),
                fair: admitted.tenant.fairness().clone(),
            })?;
            admitted.tenant.spent(prompt);
            Ok(Source::Engine(events))
        }
        .instrument(record.span().clone())
        .await;
        match submitted {
            Ok(events) => Ok(Generation {
                target,
                events,
                record: Some(record),
                admitted,
                first_text: None,
            }),
            Err(err) => Err(record.fail(err)),
        }
    }
}

impl Generation {
    /// The version generating, and its model's config.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The next event; `None` after the end. The end is recorded when it is read.
    pub async fn next(&mut self) -> Option<Event> {
        self.record.as_ref()?;
        loop {
            let events = match &mut self.events {
                Source::Engine(events) => events,
                Source::Fixed { text, usage } => {
                    let event = match text.take() {
                        Some(text) if !text.is_empty() => Event::Text(text),
                        _ => Event::Finished {
                            reason: FinishReason::Stop,
                            usage: *usage,
                        },
                    };
                    if matches!(event, Event::Finished { .. })
                        && let Some(record) = self.record.take()
                    {
                        record.finish(&Ok::<_, InferError>(()));
                    }
                    return Some(event);
                }
            };
            let event = match events.next().await {
                Some(StreamEvent::Delta { text, tokens }) => {
                    self.admitted.tenant.spent(tokens.len() as u64);
                    if text.is_empty() {
                        continue;
                    }
                    if self.first_text.is_none() {
                        let now = Instant::now();
                        self.first_text = Some(now);
                        if let Some(record) = &self.record {
                            record.sample(Signal::FirstToken, now - record.started());
                        }
                    }
                    return Some(Event::Text(text));
                }
                Some(StreamEvent::Finished { reason, usage }) => Event::Finished { reason, usage },
                Some(StreamEvent::Failed(err)) => Event::Failed(engine_error(err)),
                None => Event::Failed(InferError::Internal(
                    "the generation engine ended the request without finishing it".into(),
                )),
            };
            if let (Event::Finished { usage, .. }, Some(first), Some(record)) =
                (&event, self.first_text, &self.record)
                && usage.completion_tokens > 1
            {
                let per_token = first.elapsed() / (usage.completion_tokens - 1);
                record.sample(Signal::PerToken, per_token);
            }
            if let Some(record) = self.record.take() {
                match &event {
                    Event::Failed(err) => record.finish(&Err::<(), _>(err.clone())),
                    _ => record.finish(&Ok::<_, InferError>(())),
                }
            }
            return Some(event);
        }
    }

    /// Waits for the whole text (a unary answer).
    pub async fn collect(mut self) -> Result<Completed, InferError> {
        let mut text = String::new();
        while let Some(event) = self.next().await {
            match event {
                Event::Text(chunk) => text.push_str(&chunk),
                Event::Finished { reason, usage } => {
                    return Ok(Completed {
                        text,
                        reason,
                        usage,
                    });
                }
                Event::Failed(err) => return Err(err),
            }
        }
        Err(InferError::Internal("the generation already ended".into()))
    }
}

/// What a generation's events come from.
enum Source {
    /// The version's engine.
    Engine(GenerationStream),
    /// A fallback's fixed text (taken when sent), then its end.
    Fixed { text: Option<String>, usage: Usage },
}

/// The fixed text of a fallback, counted in the primary's tokens.
fn fixed_text(target: &Target, fixed: &FixedResponse, prompt: usize) -> Result<Source, InferError> {
    let text = fixed.text.clone().unwrap_or_default();
    let completion = target
        .version
        .text_codec()
        .and_then(|codec| codec.encode(&text, false).ok())
        .map_or(0, |ids| ids.len());
    Ok(Source::Fixed {
        text: Some(text),
        usage: Usage {
            prompt_tokens: u32::try_from(prompt).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(completion).unwrap_or(u32::MAX),
        },
    })
}

/// An engine failure after admission, the same on every protocol.
fn engine_error(err: EngineError) -> InferError {
    match err {
        EngineError::DeadlineExceeded => {
            InferError::DeadlineExceeded("the deadline passed before generation finished".into())
        }
        EngineError::Step(step) => InferError::Internal(format!("model step failed: {step}")),
        EngineError::Shed(message) => InferError::Overloaded(message),
    }
}
