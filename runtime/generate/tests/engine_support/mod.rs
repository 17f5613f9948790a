//! A deterministic toy language model behind `StepModel`, a matching in-memory
//! tokenizer, and helpers to run requests through an engine.
//!
//! The toy model keeps, per slot, the tokens the engine has written there (its "KV
//! cache") and picks the next token from a hash of that whole history, so any
//! scheduling mistake (a wrong start, a wrong slot, a token fed twice or never)
//! changes the output. It also checks every call against the contract and records
//! violations, and logs the rows of every call.

#![allow(dead_code)] // each test binary uses a different part of the support

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelplane_generate::engine::{
    Engine, EngineSettings, GenerateRequest, GenerationStream, ModelShape, RowLogits, Selection,
    StepError, StepModel, StepRow, StreamEvent,
};
use modelplane_generate::metrics::{GenerationFamilies, GenerationMetrics};
use modelplane_generate::sampling::SamplingParams;
use modelplane_generate::text::TextCodec;
use prometheus_client::registry::Registry;

/// Logits per row: 62 letters and digits, eos, and a poison id.
pub const VOCAB: u32 = 64;
/// The end-of-sequence id (the tokenizer's special `</s>`).
pub const EOS: u32 = 62;
/// A prompt containing this id makes the model fail the call; starting with it,
/// panic.
pub const POISON: u32 = 63;
/// KV bytes per cached token the toy model reports.
pub const BYTES_PER_TOKEN: u64 = 1000;

/// The token the toy model predicts after `history`.
pub fn next_token(history: &[u32]) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &token in history {
        hash = (hash ^ u64::from(token + 1)).wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 29;
    if hash.is_multiple_of(50) {
        EOS
    } else {
        u32::try_from(hash % 62).expect("below 62")
    }
}

/// Greedy generation of the toy model for one request, as a plain loop.
pub fn reference(prompt: &[u32], max_tokens: u32) -> Vec<u32> {
    let mut history = prompt.to_vec();
    let mut out = Vec::new();
    while out.len() < max_tokens as usize {
        let token = next_token(&history);
        history.push(token);
        out.push(token);
        if token == EOS {
            break;
        }
    }
    out
}

/// One logged row: `(slot, start, len)`.
pub type Row = (u32, u32, u32);

/// What the toy model saw, shared with the test.
#[derive(Debug, Default)]
pub struct Log {
    /// The rows of every call, in order.
    pub calls: Vec<Vec<Row>>,
    /// Contract violations (should stay empty).
    pub violations: Vec<String>,
    /// What the engine asked of each row, per call.
    pub selections: Vec<Vec<Selection>>,
    /// Prefix copies: `(from, to, len)`.
    pub copies: Vec<(u32, u32, u32)>,
}

/// The toy model.
pub struct ToyModel {
    shape: ModelShape,
    cache: Vec<Vec<u32>>,
    delay: Duration,
    /// Answer each row with what the engine selected (as a device would), not in full.
    select: bool,
    log: Arc<Mutex<Log>>,
    dropped: Arc<AtomicBool>,
    /// Whether `copy_prefix` copies.
    copies: bool,
}

impl ToyModel {
    fn check(&self, rows: &[StepRow<'_>]) -> Result<(), String> {
        let mut seen = Vec::new();
        for row in rows {
            if row.slot >= self.shape.slots || seen.contains(&row.slot) {
                return Err(format!("slot {} repeated or out of range", row.slot));
            }
            seen.push(row.slot);
            // A row continues its slot, or reuses a prefix the slot holds (prefix
            // caching): it may not start past what the slot holds.
            let held = self.cache[row.slot as usize].len();
            if row.start as usize > held {
                return Err(format!(
                    "slot {} holds {held} tokens but the row starts at {}",
                    row.slot, row.start
                ));
            }
            if row.tokens.is_empty()
                || row.start as usize + row.tokens.len() > self.shape.context as usize
            {
                return Err(format!(
                    "row of {} tokens at {} past the context",
                    row.tokens.len(),
                    row.start
                ));
            }
        }
        Ok(())
    }
}

impl StepModel for ToyModel {
    fn shape(&self) -> ModelShape {
        self.shape
    }

    fn step(&mut self, rows: &[StepRow<'_>]) -> Result<Vec<f32>, StepError> {
        std::thread::sleep(self.delay);
        if rows
            .iter()
            .any(|row| row.start == 0 && row.tokens[0] == POISON)
        {
            panic!("toy model: poisoned first token");
        }
        let mut log = self.log.lock().expect("log");
        log.calls.push(
            rows.iter()
                .map(|r| (r.slot, r.start, r.tokens.len() as u32))
                .collect(),
        );
        if let Err(violation) = self.check(rows) {
            log.violations.push(violation.clone());
            return Err(StepError(violation));
        }
        if rows.iter().any(|row| row.tokens.contains(&POISON)) {
            return Err(StepError("step: poisoned input".to_owned()));
        }
        let mut logits = vec![0.0; rows.len() * VOCAB as usize];
        for (row, out) in rows.iter().zip(logits.chunks_exact_mut(VOCAB as usize)) {
            let history = &mut self.cache[row.slot as usize];
            history.truncate(row.start as usize);
            history.extend_from_slice(row.tokens);
            for (id, logit) in out.iter_mut().enumerate() {
                *logit = (id % 7) as f32 * 0.01;
            }
            out[next_token(history) as usize] = 1.0;
        }
        Ok(logits)
    }

    fn copy_prefix(&mut self, from: u32, to: u32, len: u32) -> Result<bool, StepError> {
        if !self.copies {
            return Ok(false);
        }
        let mut log = self.log.lock().expect("log");
        let source = &self.cache[from as usize];
        if len as usize > source.len() || from == to {
            let violation = format!(
                "copy of {len} tokens from slot {from} (holds {}) to {to}",
                source.len()
            );
            log.violations.push(violation.clone());
            return Err(StepError(violation));
        }
        let prefix = source[..len as usize].to_vec();
        log.copies.push((from, to, len));
        self.cache[to as usize] = prefix;
        Ok(true)
    }

    fn step_selected(
        &mut self,
        rows: &[StepRow<'_>],
        selections: &[Selection],
    ) -> Result<Vec<RowLogits>, StepError> {
        self.log
            .lock()
            .expect("log")
            .selections
            .push(selections.to_vec());
        let logits = self.step(rows)?;
        let vocab = VOCAB as usize;
        Ok(logits
            .chunks_exact(vocab)
            .zip(selections)
            .map(|(row, &selection)| {
                if self.select {
                    selection.apply(row)
                } else {
                    RowLogits::Full(row.to_vec())
                }
            })
            .collect())
    }
}

impl Drop for ToyModel {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// A tokenizer whose ids 0..62 are single letters and digits and 62 is `</s>`.
pub fn codec() -> Arc<TextCodec> {
    let symbols = ('a'..='z').chain('A'..='Z').chain('0'..='9');
    let mut vocab: serde_json::Map<String, serde_json::Value> = symbols
        .enumerate()
        .map(|(id, symbol)| (symbol.to_string(), id.into()))
        .collect();
    vocab.insert("</s>".to_owned(), EOS.into());
    vocab.insert("<poison>".to_owned(), POISON.into());
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{
            "id": EOS, "content": "</s>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<poison>"}
    });
    Arc::new(TextCodec::from_tokenizer_json(json.to_string().as_bytes()).expect("tokenizer"))
}

/// The text of generated ids, eos excluded.
pub fn text_of(tokens: &[u32]) -> String {
    codec().decode(tokens).expect("decode")
}

/// An engine over a toy model, with what the test inspects.
pub struct Harness {
    pub engine: Engine,
    pub log: Arc<Mutex<Log>>,
    pub dropped: Arc<AtomicBool>,
    pub registry: Registry,
}

/// How to build a harness.
pub struct Setup {
    pub slots: u32,
    pub context: u32,
    pub delay: Duration,
    pub settings: EngineSettings,
    /// The model answers only what each row needs (argmax, top-k) instead of full rows.
    pub select: bool,
    /// The model copies prefixes between slots when the engine asks.
    pub copies: bool,
    /// The model declares a padding-free step (`packed_rows`).
    pub packed_rows: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            slots: 4,
            context: 256,
            delay: Duration::ZERO,
            settings: EngineSettings::default(),
            select: false,
            copies: true,
            packed_rows: false,
        }
    }
}

impl Harness {
    pub async fn start(setup: Setup) -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let dropped = Arc::new(AtomicBool::new(false));
        let model = ToyModel {
            shape: ModelShape {
                vocab_size: VOCAB,
                slots: setup.slots,
                context: setup.context,
                kv_cache_bytes_per_token: BYTES_PER_TOKEN,
                packed_rows: setup.packed_rows,
            },
            cache: vec![Vec::new(); setup.slots as usize],
            delay: setup.delay,
            select: setup.select,
            log: Arc::clone(&log),
            dropped: Arc::clone(&dropped),
            copies: setup.copies,
        };
        let mut registry = Registry::default();
        let metrics: GenerationMetrics =
            GenerationFamilies::register(&mut registry).for_version("toy", "1");
        let engine = Engine::start(
            "toy-engine".to_owned(),
            Box::new(move || Ok(Box::new(model) as Box<dyn StepModel>)),
            codec(),
            vec![EOS],
            setup.settings,
            metrics,
        )
        .await
        .expect("engine starts");
        Self {
            engine,
            log,
            dropped,
            registry,
        }
    }

    /// The rows of every call so far.
    pub fn calls(&self) -> Vec<Vec<Row>> {
        self.log.lock().expect("log").calls.clone()
    }

    /// The prefix copies so far: `(from, to, len)`.
    pub fn copies(&self) -> Vec<(u32, u32, u32)> {
        self.log.lock().expect("log").copies.clone()
    }

    /// What the engine asked of the rows of every call so far.
    pub fn selections(&self) -> Vec<Vec<Selection>> {
        self.log.lock().expect("log").selections.clone()
    }

    /// Fails the test on any contract violation the model saw.
    pub fn assert_no_violations(&self) {
        let log = self.log.lock().expect("log");
        assert!(log.violations.is_empty(), "{:?}", log.violations);
    }

    /// The Prometheus exposition of the engine's metrics.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }
}

/// A greedy request.
pub fn greedy(prompt: Vec<u32>, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams::default(),
        stop: Vec::new(),
        deadline: None,
        fair: Default::default(),
    }
}

/// A prompt of `len` ids derived from `seed` (never eos or poison).
pub fn prompt(seed: u32, len: u32) -> Vec<u32> {
    (0..len)
        .map(|i| {
            let mixed = (u64::from(seed) << 32 | u64::from(i)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            u32::try_from((mixed >> 40) % 62).expect("below 62")
        })
        .collect()
}

/// Everything a stream said.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub tokens: Vec<u32>,
    pub text: String,
    pub last: Option<StreamEvent>,
}

/// Reads a stream to its end.
pub async fn collect(mut stream: GenerationStream) -> Outcome {
    let mut outcome = Outcome::default();
    while let Some(event) = stream.next().await {
        match event {
            StreamEvent::Delta { text, tokens } => {
                outcome.text.push_str(&text);
                outcome.tokens.extend(tokens);
            }
            last => outcome.last = Some(last),
        }
    }
    outcome
}

/// The generated tokens of each stream, read to their ends in order.
pub async fn collect_tokens(streams: Vec<GenerationStream>) -> Vec<Vec<u32>> {
    let mut tokens = Vec::with_capacity(streams.len());
    for stream in streams {
        tokens.push(collect(stream).await.tokens);
    }
    tokens
}

/// Reads until `n` tokens arrived or the stream ended, keeping the stream open.
pub async fn take_tokens(stream: &mut GenerationStream, n: usize) -> Outcome {
    let mut outcome = Outcome::default();
    while outcome.tokens.len() < n && outcome.last.is_none() {
        match stream.next().await {
            Some(StreamEvent::Delta { text, tokens }) => {
                outcome.text.push_str(&text);
                outcome.tokens.extend(tokens);
            }
            Some(last) => outcome.last = Some(last),
            None => break,
        }
    }
    outcome
}

/// Reads the rest of a stream after `head`.
pub async fn finish(mut head: Outcome, stream: GenerationStream) -> Outcome {
    if head.last.is_none() {
        let rest = collect(stream).await;
        head.tokens.extend(rest.tokens);
        head.text.push_str(&rest.text);
        head.last = rest.last;
    }
    head
}

/// A prompt of `len` ids whose greedy continuation has no eos in `max_tokens`.
pub fn long_running_prompt(len: u32, max_tokens: u32) -> Vec<u32> {
    (0..10_000)
        .map(|seed| prompt(seed, len))
        .find(|p| reference(p, max_tokens).len() == max_tokens as usize)
        .expect("a prompt without early eos")
}

/// Polls `condition` every millisecond for up to five seconds.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..5000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}
