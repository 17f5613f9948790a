//! The continuous-batching engine: one dedicated thread per model version owns the
//! model and its KV cache slots, and runs iterations of the contract's `step`
//! (docs/generate-contract.md) over every request holding a slot.
//!
//! Each iteration it drops requests whose client went away or whose deadline passed,
//! admits waiting requests into free slots in fair order across tenants (virtual token
//! counters, `modelplane-fair`: prompt tokens are charged on admission, each generated
//! token as it is made; a higher band first; FIFO with one tenant), and
//! feeds one decode token per running request plus prompt chunks (the policy is in
//! `engine/scheduler.rs`). Each call asks the model, per row, only for what the
//! request's sampler needs ([`Selection`]). The sampled tokens go back to each request's
//! [`GenerationStream`] as text deltas. The async side ([`Engine`]) validates and
//! places requests in the fair queue (refusing, or shedding another tenant's newest,
//! when it is full), then wakes the thread.

mod prefix;
mod scheduler;
mod sequence;
mod worker;

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use modelplane_fair::{FairQueue, Fairness, Pushed};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use crate::metrics::GenerationMetrics;
use crate::sampling::{InvalidParam, SamplingParams};
pub use crate::selection::{RowLogits, Selection};
use crate::text::TextCodec;

/// The shape of a loaded model and of the KV cache allocated for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelShape {
    /// Logits per row (`V`).
    pub vocab_size: u32,
    /// Cache slots (`S`): the most requests that run at once.
    pub slots: u32,
    /// Positions per slot (`C`): the most prompt + output tokens of one request.
    pub context: u32,
    /// Memory one cached token takes (`config.json`'s `kv_cache_bytes_per_token`).
    pub kv_cache_bytes_per_token: u64,
    /// `step` computes only each row's own tokens (`config.json`'s `packed_rows`), so a
    /// padded position costs nothing and any rows may share a call.
    pub packed_rows: bool,
}

/// One row of a `step` call: extend the sequence in `slot` by `tokens` at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepRow<'a> {
    /// Cache slot; distinct within a call.
    pub slot: u32,
    /// Tokens already in the slot, the position of `tokens[0]`.
    pub start: u32,
    /// The new tokens (at least one).
    pub tokens: &'a [u32],
}

/// A failed `step` call; the message is the model's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

/// A generative model behind the contract's `step` function over a slotted KV cache.
pub trait StepModel: Send {
    /// The shape of the model and of its allocated cache.
    fn shape(&self) -> ModelShape;

    /// One call of the contract's `step`; returns the logits of each row's last
    /// token, row-major `[rows.len() * vocab_size]`.
    fn step(&mut self, rows: &[StepRow<'_>]) -> Result<Vec<f32>, StepError>;

    /// One call of `step` that hands back, per row, only what `selections[i]` asks
    /// for (or the full row, always allowed); `selections` has one entry per row.
    /// The engine calls this one. A model whose logits live on an accelerator
    /// overrides it to pick the argmax or the top-k there and copy only that; the
    /// default copies every row in full.
    fn step_selected(
        &mut self,
        rows: &[StepRow<'_>],
        selections: &[Selection],
    ) -> Result<Vec<RowLogits>, StepError> {
        let _ = selections;
        let vocab_size = self.shape().vocab_size;
        let logits = self.step(rows)?;
        if logits.len() != rows.len() * vocab_size as usize {
            return Err(StepError(format!(
                "the model returned {} logits for {} rows of {vocab_size}",
                logits.len(),
                rows.len()
            )));
        }
        Ok(RowLogits::full_rows(&logits, vocab_size))
    }

    /// Copies the cached keys and values of positions `0..len` of slot `from` into the
    /// same positions of slot `to` (prefix caching), leaving every other slot and position
    /// as it is. `Ok(false)`: this model cannot, and the engine prefills the prefix instead.
    fn copy_prefix(&mut self, from: u32, to: u32, len: u32) -> Result<bool, StepError> {
        let _ = (from, to, len);
        Ok(false)
    }
}

/// How the engine queues and batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// Requests that may wait for a slot; more are refused (503).
    pub max_waiting: u32,
    /// Most prompt tokens of one request fed in one iteration.
    pub prefill_chunk: u32,
    /// Token budget of an iteration: decode rows first, then prompt chunks (the
    /// oldest prompt always advances by one chunk).
    pub max_batch_tokens: u32,
    /// Prompt chunks join the decode call when padding the decode rows to the
    /// chunk's length costs at most this many tokens; otherwise they run in a call
    /// of their own (contract §4). A padded position costs as much as a real token,
    /// a second call one more pass over the weights; SmolLM2 on one CPU core
    /// (measured on a busy machine): ~3–10 ms per token, ~50–100 ms per call.
    pub mix_padding_tokens: u32,
    /// Reuse the keys and values of a prompt prefix that a slot still holds (or copy them
    /// from another slot) instead of prefilling it again; see `engine/prefix.rs`.
    pub prefix_caching: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_waiting: 64,
            prefill_chunk: 64,
            max_batch_tokens: 512,
            mix_padding_tokens: 16,
            prefix_caching: true,
        }
    }
}

impl EngineSettings {
    /// The settings the engine runs `shape`'s model with: a model whose `step` is
    /// padding-free (`packed_rows`) takes every prompt chunk into the decode call,
    /// since padding the decode rows costs it nothing and a second call is one more
    /// pass over the weights.
    #[must_use]
    pub fn for_model(self, shape: &ModelShape) -> Self {
        if shape.packed_rows {
            Self {
                mix_padding_tokens: u32::MAX,
                ..self
            }
        } else {
            self
        }
    }

    /// Refuses settings the engine cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if self.prefill_chunk == 0 {
            return Err("prefill_chunk must be at least 1".to_owned());
        }
        if self.max_batch_tokens == 0 {
            return Err("max_batch_tokens must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// A generation request, validated by [`Engine::submit`].
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// Prompt token ids (at least one).
    pub prompt: Vec<u32>,
    /// Most tokens to generate (at least one).
    pub max_tokens: u32,
    /// How to pick each token.
    pub sampling: SamplingParams,
    /// Stop sequences: generation ends before the first one in the text.
    pub stop: Vec<String>,
    /// After this the request fails with [`EngineError::DeadlineExceeded`].
    pub deadline: Option<Instant>,
    /// Its tenant's flow in the fair queue, and how its tokens are charged.
    pub fair: Fairness,
}

/// Why [`Engine::submit`] refused a request.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AdmissionError {
    /// No prompt tokens (400).
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// Prompt plus `max_tokens` do not fit a cache slot (400).
    #[error(
        "the prompt ({prompt} tokens) plus max_tokens ({max_tokens}) exceeds the model's context of {context} tokens"
    )]
    TooLong {
        /// Prompt tokens.
        prompt: u32,
        /// Requested completion tokens.
        max_tokens: u32,
        /// Positions of a cache slot.
        context: u32,
    },
    /// An invalid generation parameter (422).
    #[error(transparent)]
    Invalid(#[from] InvalidParam),
    /// Too many requests already wait for a slot (503).
    #[error("{0}")]
    QueueFull(String),
    /// The engine thread has stopped (503).
    #[error("the generation engine has stopped")]
    Stopped,
}

/// Why an admitted request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Its deadline passed before it finished.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// A model `step` call that fed it failed.
    #[error("model step failed: {0}")]
    Step(StepError),
    /// It waited for a slot when the queue was full and gave its place to a request
    /// of a higher band or of a tenant holding fewer places (503).
    #[error("{0}")]
    Shed(String),
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An eos token or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    /// OpenAI's `finish_reason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// Token counts of a finished request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens, an eos token included.
    pub completion_tokens: u32,
}

/// What a [`GenerationStream`] yields.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// Newly generated tokens (each generated id exactly once, in order, an eos id
    /// included) and the text they completed; `text` may be empty (an incomplete
    /// UTF-8 character, a possible stop sequence held back, an eos token).
    Delta {
        /// Text safe to show now.
        text: String,
        /// The generated ids.
        tokens: Vec<u32>,
    },
    /// The last event of a successful request.
    Finished {
        /// Why it ended.
        reason: FinishReason,
        /// Token counts.
        usage: Usage,
    },
    /// The last event of a failed request.
    Failed(EngineError),
}

/// A snapshot of the engine's load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Requests holding a slot.
    pub running: u32,
    /// Requests queued for a slot.
    pub waiting: u32,
    /// Cache slots allocated.
    pub slots_total: u32,
    /// Cache slots held (one per running request).
    pub slots_used: u32,
    /// KV memory of the slots held (`slots_used · context · bytes per token`).
    pub kv_cache_bytes_used: u64,
    /// KV memory allocated (`slots_total · context · bytes per token`).
    pub kv_cache_bytes_total: u64,
}

/// The events of one request. Dropping it cancels the request: it leaves the batch
/// within one iteration and its slot is freed.
#[derive(Debug)]
pub struct GenerationStream {
    events: tokio_mpsc::UnboundedReceiver<StreamEvent>,
}

impl GenerationStream {
    /// The next event; `None` after the last one.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        self.events.recv().await
    }
}

impl futures_core::Stream for GenerationStream {
    type Item = StreamEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        self.get_mut().events.poll_recv(cx)
    }
}

/// A request handed to the engine thread.
struct Submission {
    request: GenerateRequest,
    events: tokio_mpsc::UnboundedSender<StreamEvent>,
    arrived: Instant,
}

/// What both sides of the engine share: the counters, and the fair queue of requests
/// waiting for a slot.
struct Shared {
    running: AtomicU32,
    waiting: AtomicU32,
    queue: Mutex<FairQueue<Submission>>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            running: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            queue: Mutex::new(FairQueue::new(1)),
        }
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, FairQueue<Submission>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the queue's length after a change made under its lock.
    fn set_waiting(&self, queue: &FairQueue<Submission>) {
        let waiting = u32::try_from(queue.len()).unwrap_or(u32::MAX);
        self.waiting.store(waiting, Ordering::Release);
    }
}

/// Handle to a running engine; clones share it. The thread finishes what is queued
/// and exits when the last handle is dropped.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// Wakes the engine thread after a request was queued.
    wake: mpsc::Sender<()>,
    shared: Arc<Shared>,
    codec: Arc<TextCodec>,
    shape: ModelShape,
    settings: EngineSettings,
    metrics: GenerationMetrics,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shape", &self.inner.shape)
            .field("settings", &self.inner.settings)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Loads the model on the engine thread.
pub type ModelLoader = Box<dyn FnOnce() -> Result<Box<dyn StepModel>, String> + Send>;

impl Engine {
    /// Runs `load` on a new dedicated thread (tch objects are created and used
    /// there), then serves; resolves once the model is loaded.
    pub async fn start(
        thread_name: String,
        load: ModelLoader,
        codec: Arc<TextCodec>,
        eos_token_ids: Vec<u32>,
        settings: EngineSettings,
        metrics: GenerationMetrics,
    ) -> Result<Engine, String> {
        settings.validate()?;
        let (wake, receiver) = mpsc::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let worker_shared = Arc::clone(&shared);
        let worker_codec = Arc::clone(&codec);
        let worker_settings = settings.clone();
        let worker_metrics = metrics.clone();
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let loaded = load().and_then(|model| Ok((checked(model.shape())?, model)));
                let (shape, model) = match loaded {
                    Ok(loaded) => loaded,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                if ready_tx.send(Ok(shape)).is_ok() {
                    let worker = worker::Worker::new(
                        receiver,
                        worker_shared,
                        worker_codec,
                        eos_token_ids,
                        worker_settings,
                        worker_metrics,
                        shape,
                    );
                    worker.run(model);
                }
            })
            .map_err(|err| format!("cannot start the engine thread: {err}"))?;
        let shape = ready_rx
            .await
            .map_err(|_| "the engine thread died while loading".to_owned())??;
        Ok(Engine {
            inner: Arc::new(Inner {
                wake,
                shared,
                codec,
                shape,
                settings,
                metrics,
            }),
        })
    }

    /// Validates and queues a request; its events arrive on the returned stream.
    /// The fair queue holds `max_waiting` requests beyond the free slots; when it is
    /// full the request is refused, unless it ranks above what waits (a higher band,
    /// or a tenant holding at least two fewer places than the longest), in which case
    /// the other's newest is shed (its stream fails with [`EngineError::Shed`]).
    pub fn submit(&self, request: GenerateRequest) -> Result<GenerationStream, AdmissionError> {
        let inner = &*self.inner;
        check_request(&request, inner.shape.context)?;
        let max_waiting = inner.settings.max_waiting;
        let (events, receiver) = tokio_mpsc::unbounded_channel();
        let flow = request.fair.flow.clone();
        let submission = Submission {
            request,
            events,
            arrived: Instant::now(),
        };
        {
            let mut queue = inner.shared.queue();
            let running = inner.shared.running.load(Ordering::Acquire);
            let free_slots = inner.shape.slots.saturating_sub(running);
            let capacity = max_waiting.saturating_add(free_slots);
            queue.set_capacity(usize::try_from(capacity).unwrap_or(usize::MAX));
            let pushed = queue.push(&flow, submission);
            inner.shared.set_waiting(&queue);
            match pushed {
                Pushed::Queued => {}
                Pushed::Shed(shed) => {
                    let _ = shed
                        .events
                        .send(StreamEvent::Failed(EngineError::Shed(format!(
                            "shed while waiting for a KV cache slot: the queue was full \
                         ({max_waiting} waiting) and a request of a higher band or of a \
                         tenant holding fewer places took this one's place; retry later"
                        ))));
                    inner.metrics.shed();
                }
                Pushed::Refused(_) => {
                    return Err(AdmissionError::QueueFull(format!(
                        "{max_waiting} requests already wait for a KV cache slot; retry later"
                    )));
                }
            }
            inner
                .metrics
                .set_waiting(inner.shared.waiting.load(Ordering::Acquire));
        }
        if inner.wake.send(()).is_err() {
            return Err(AdmissionError::Stopped);
        }
        Ok(GenerationStream { events: receiver })
    }

    /// The engine's current load.
    pub fn stats(&self) -> EngineStats {
        let shape = self.inner.shape;
        let running = self.inner.shared.running.load(Ordering::Acquire);
        let slot_bytes = u64::from(shape.context) * shape.kv_cache_bytes_per_token;
        EngineStats {
            running,
            waiting: self.inner.shared.waiting.load(Ordering::Acquire),
            slots_total: shape.slots,
            slots_used: running,
            kv_cache_bytes_used: u64::from(running) * slot_bytes,
            kv_cache_bytes_total: u64::from(shape.slots) * slot_bytes,
        }
    }

    /// The model's tokenizer and chat template.
    pub fn codec(&self) -> &Arc<TextCodec> {
        &self.inner.codec
    }

    /// The model's shape.
    pub fn shape(&self) -> ModelShape {
        self.inner.shape
    }
}

/// Refuses a shape the engine cannot serve.
fn checked(shape: ModelShape) -> Result<ModelShape, String> {
    if shape.vocab_size == 0 || shape.slots == 0 || shape.context == 0 {
        return Err(format!(
            "the model reports an empty shape ({shape:?}); vocab_size, slots and context must be at least 1"
        ));
    }
    Ok(shape)
}

/// Refuses a request that can never run, before it is queued.
/// Most stop sequences one request may give (the OpenAI API allows 4; gRPC 1).
pub const MAX_STOP_SEQUENCES: usize = 16;
/// Longest stop sequence, in bytes: the engine thread matches every stop sequence against
/// the text it holds back, so an unbounded one would cost every other request.
pub const MAX_STOP_BYTES: usize = 1024;

fn check_stops(stops: &[String]) -> Result<(), InvalidParam> {
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(InvalidParam {
            param: "stop",
            message: format!(
                "at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {}",
                stops.len()
            ),
        });
    }
    match stops.iter().find(|stop| stop.len() > MAX_STOP_BYTES) {
        Some(long) => Err(InvalidParam {
            param: "stop",
            message: format!(
                "a stop sequence may be at most {MAX_STOP_BYTES} bytes, got one of {}",
                long.len()
            ),
        }),
        None => Ok(()),
    }
}

fn check_request(request: &GenerateRequest, context: u32) -> Result<(), AdmissionError> {
    if request.prompt.is_empty() {
        return Err(AdmissionError::EmptyPrompt);
    }
    if request.max_tokens == 0 {
        return Err(InvalidParam {
            param: "max_tokens",
            message: "max_tokens must be at least 1".to_owned(),
        }
        .into());
    }
    request.sampling.validate()?;
    check_stops(&request.stop)?;
    let prompt = u32::try_from(request.prompt.len()).unwrap_or(u32::MAX);
    if u64::from(prompt) + u64::from(request.max_tokens) > u64::from(context) {
        return Err(AdmissionError::TooLong {
            prompt,
            max_tokens: request.max_tokens,
            context,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_are_bounded_in_number_and_length() {
        assert_eq!(
            check_stops(&vec!["\n".to_owned(); MAX_STOP_SEQUENCES]),
            Ok(())
        );
        assert_eq!(check_stops(&["x".repeat(MAX_STOP_BYTES)]), Ok(()));
        let many = check_stops(&vec!["\n".to_owned(); MAX_STOP_SEQUENCES + 1]).unwrap_err();
        assert_eq!(many.param, "stop");
        assert!(many.message.contains("at most 16"), "{}", many.message);
        let long = check_stops(&["x".repeat(MAX_STOP_BYTES + 1)]).unwrap_err();
        assert!(long.message.contains("1025"), "{}", long.message);
    }

    #[test]
    fn settings_without_a_chunk_or_a_budget_are_refused() {
        assert_eq!(EngineSettings::default().validate(), Ok(()));
        for settings in [
            EngineSettings {
                prefill_chunk: 0,
                ..EngineSettings::default()
            },
            EngineSettings {
                max_batch_tokens: 0,
                ..EngineSettings::default()
            },
        ] {
            assert!(settings.validate().is_err(), "{settings:?}");
        }
    }

    #[test]
    fn an_empty_model_shape_is_refused() {
        let shape = ModelShape {
            vocab_size: 8,
            slots: 0,
            context: 16,
            kv_cache_bytes_per_token: 1,
            packed_rows: false,
        };
        assert!(checked(shape).is_err());
        assert_eq!(
            checked(ModelShape { slots: 1, ..shape }),
            Ok(ModelShape { slots: 1, ..shape })
        );
    }
}
