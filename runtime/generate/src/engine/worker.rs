//! The engine thread: owns the model, the waiting queue, the running sequences and
//! the free slots, and runs iterations until every [`super::Engine`] is gone and the
//! work they queued is done.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use super::StreamEvent;
use super::prefix::FreeSlots;
use super::scheduler::{self, Call, SequenceView};
use super::sequence::{Sequence, Vocabulary};
use super::{EngineError, EngineSettings, ModelShape, RowLogits, Selection, Shared, StepError};
use super::{StepModel, StepRow};
use crate::metrics::{GenerationMetrics, Outcome};
use crate::text::TextCodec;

/// Calls `step_selected`, turning a panic into an error of this call: the contract
/// has the model fail before it writes anything, so the other slots stay valid and
/// the thread (which every request of the version depends on) keeps serving.
fn guarded_step(
    model: &mut dyn StepModel,
    rows: &[StepRow<'_>],
    selections: &[Selection],
) -> Result<Vec<RowLogits>, StepError> {
    panic::catch_unwind(AssertUnwindSafe(|| model.step_selected(rows, selections))).unwrap_or_else(
        |payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Err(StepError(format!("the model panicked: {message}")))
        },
    )
}

/// Refuses an answer that does not give every row what it asked for.
fn checked_answer(
    answer: Vec<RowLogits>,
    selections: &[Selection],
    vocab_size: u32,
) -> Result<Vec<RowLogits>, StepError> {
    if answer.len() != selections.len() {
        return Err(StepError(format!(
            "the model answered {} rows of {}",
            answer.len(),
            selections.len()
        )));
    }
    for (index, (row, &selection)) in answer.iter().zip(selections).enumerate() {
        row.check(selection, vocab_size)
            .map_err(|mismatch| StepError(format!("row {index}: {mismatch}")))?;
    }
    Ok(answer)
}

/// The state of the engine thread.
pub(super) struct Worker {
    /// One message per request queued in `shared.queue`.
    wake: Receiver<()>,
    /// In admission order, which is the order prompts are prefilled in.
    running: Vec<Sequence>,
    /// Free slots, least recently freed first, with the prefixes they still hold.
    free_slots: FreeSlots,
    shared: Arc<Shared>,
    codec: Arc<TextCodec>,
    eos_token_ids: Vec<u32>,
    settings: EngineSettings,
    metrics: GenerationMetrics,
    shape: ModelShape,
    /// Reused every iteration.
    views: Vec<SequenceView>,
}

impl Worker {
    pub fn new(
        wake: Receiver<()>,
        shared: Arc<Shared>,
        codec: Arc<TextCodec>,
        eos_token_ids: Vec<u32>,
        settings: EngineSettings,
        metrics: GenerationMetrics,
        shape: ModelShape,
    ) -> Self {
        Self {
            wake,
            running: Vec::new(),
            free_slots: FreeSlots::new(shape.slots, settings.prefix_caching),
            shared,
            codec,
            eos_token_ids,
            settings: settings.for_model(&shape),
            metrics,
            shape,
            views: Vec::new(),
        }
    }

    /// Serves until the queue is closed and empty.
    pub fn run(mut self, mut model: Box<dyn StepModel>) {
        self.publish();
        while self.receive() {
            self.reap(Instant::now());
            self.admit(model.as_mut());
            self.iterate(model.as_mut());
            self.charge_generated();
            self.retire();
        }
        self.metrics.withdraw();
        tracing::debug!("generation engine stopped");
    }

    /// Waits while there is nothing to do; false once every handle is gone and
    /// nothing is left.
    fn receive(&mut self) -> bool {
        if self.running.is_empty() && self.shared.queue().is_empty() {
            // Every submit sends one wake-up after queueing, so a request queued
            // between the check and here is already waiting on the channel.
            if self.wake.recv().is_err() {
                return false;
            }
        }
        while self.wake.try_recv().is_ok() {}
        true
    }

    /// Ends requests whose client went away or whose deadline passed, waiting or running.
    fn reap(&mut self, now: Instant) {
        let metrics = &self.metrics;
        for sequence in &mut self.running {
            if sequence.is_cancelled() {
                sequence.cancel(metrics);
            } else if sequence.is_expired(now) {
                sequence.fail(EngineError::DeadlineExceeded, metrics);
            }
        }
        let removed = {
            let mut queue = self.shared.queue();
            let removed = queue.drain_where(|submission| {
                submission.events.is_closed()
                    || submission
                        .request
                        .deadline
                        .is_some_and(|deadline| now >= deadline)
            });
            self.shared.set_waiting(&queue);
            removed
        };
        for submission in removed {
            if submission.events.is_closed() {
                metrics.finished(Outcome::Cancelled, None);
            } else {
                let _ = submission
                    .events
                    .send(StreamEvent::Failed(EngineError::DeadlineExceeded));
                metrics.finished(Outcome::DeadlineExceeded, None);
            }
        }
        self.retire();
    }

    /// Moves waiting requests into free slots in fair order, charging each its prompt;
    /// each takes the slot that holds its longest cached prefix (`prefix.rs`).
    fn admit(&mut self, model: &mut dyn StepModel) {
        let mut queue = self.shared.queue();
        while !queue.is_empty() && !self.free_slots.is_empty() {
            let Some((flow, submission)) = queue.pop() else {
                break;
            };
            let fair = &submission.request.fair;
            let prompt = submission.request.prompt.len() as u64;
            queue.charge(&flow, fair.input_cost(prompt));
            let running = self
                .running
                .iter()
                .map(|sequence| (sequence.slot(), sequence.cached_tokens()));
            let Some(placement) = self.free_slots.place(&submission.request.prompt, running) else {
                // Not reached: the loop runs only while a slot is free.
                let _ = submission
                    .events
                    .send(StreamEvent::Failed(EngineError::Shed(
                        "no free KV cache slot".into(),
                    )));
                break;
            };
            let cached = match placement.copy_from {
                Some(from) => match model.copy_prefix(from, placement.slot, placement.cached) {
                    Ok(true) => placement.cached,
                    Ok(false) => 0,
                    Err(error) => {
                        tracing::warn!(%error, from, to = placement.slot, "prefix copy failed; prefilling");
                        0
                    }
                },
                None => placement.cached,
            };
            let mut sequence = Sequence::admit(submission, placement.slot);
            sequence.reuse_prefix(cached);
            tracing::debug!(
                slot = placement.slot,
                prompt_tokens = sequence.prompt_len(),
                cached,
                "request admitted"
            );
            self.metrics.admitted(sequence.prompt_len() as usize);
            self.metrics.prefix_lookup(sequence.prompt_len(), cached);
            self.running.push(sequence);
        }
        // Running before waiting goes down: `Engine::submit` admits up to the free
        // slots plus `max_waiting`, and must never see both counts low at once.
        let running = u32::try_from(self.running.len()).unwrap_or(u32::MAX);
        self.shared.running.store(running, Ordering::Release);
        self.shared.set_waiting(&queue);
        drop(queue);
        // Before the first token of an admitted request is sent, so that a client
        // that saw a token sees its slot counted.
        self.publish();
    }

    /// Charges the tokens generated this iteration to their flows.
    fn charge_generated(&mut self) {
        let mut queue = self.shared.queue();
        for sequence in &mut self.running {
            let (flow, cost) = sequence.uncharged();
            if cost > 0 {
                queue.charge(flow, cost);
            }
        }
    }

    /// Runs the calls the scheduler plans for this iteration.
    fn iterate(&mut self, model: &mut dyn StepModel) {
        self.views.clear();
        self.views.extend(self.running.iter().map(Sequence::view));
        for call in scheduler::plan(&self.views, &self.settings) {
            self.execute(model, &call);
        }
    }

    /// One `step` call: samples the rows that reached their sequence's end, or fails
    /// the call's requests (and only them) when the model errs.
    fn execute(&mut self, model: &mut dyn StepModel, call: &Call) {
        let rows: Vec<StepRow<'_>> = call
            .iter()
            .map(|row| self.running[row.sequence].row(row.start, row.len))
            .collect();
        let vocab_size = self.shape.vocab_size;
        let selections: Vec<Selection> = call
            .iter()
            .map(|row| self.running[row.sequence].selection(row.start, row.len, vocab_size))
            .collect();
        let result = guarded_step(model, &rows, &selections)
            .and_then(|answer| checked_answer(answer, &selections, vocab_size));
        drop(rows);
        let now = Instant::now();
        let vocab = Vocabulary {
            codec: &self.codec,
            eos_token_ids: &self.eos_token_ids,
            metrics: &self.metrics,
        };
        match result {
            Ok(answer) => {
                for (row, row_logits) in call.iter().zip(&answer) {
                    let sequence = &mut self.running[row.sequence];
                    if sequence.advance(row.len) {
                        sequence.accept(row_logits, &vocab, now);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, rows = call.len(), "model step failed");
                for row in call {
                    self.running[row.sequence]
                        .fail(EngineError::Step(error.clone()), vocab.metrics);
                }
            }
        }
    }

    /// Frees the slots of the sequences that ended; each keeps what it cached.
    fn retire(&mut self) {
        let before = self.running.len();
        let (ended, running): (Vec<Sequence>, Vec<Sequence>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|sequence| sequence.ended().is_some());
        self.running = running;
        for sequence in ended {
            let slot = sequence.slot();
            tracing::debug!(
                slot,
                outcome = sequence.ended().map(|o| o.label()),
                "request left"
            );
            self.free_slots.release(slot, sequence.into_cached_tokens());
        }
        if self.running.len() != before {
            self.publish();
        }
    }

    /// Updates the shared counters and the gauges.
    fn publish(&self) {
        let shape = self.shape;
        let running = u32::try_from(self.running.len()).unwrap_or(u32::MAX);
        self.shared.running.store(running, Ordering::Release);
        let waiting = self.shared.waiting.load(Ordering::Acquire);
        self.metrics.set_queue(running, waiting);
        let slot_bytes = u64::from(shape.context) * shape.kv_cache_bytes_per_token;
        self.metrics.set_kv_cache(
            running,
            shape.slots,
            u64::from(running) * slot_bytes,
            u64::from(shape.slots) * slot_bytes,
        );
    }
}
