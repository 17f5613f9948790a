//! Generative models of the `modelplane.generate/v1` contract (docs/generate-contract.md)
//! over libtorch: a TorchScript module with `config`, `new_cache` and `step`, and the
//! KV cache it writes in place. On an accelerator `step_selected` reduces the logits
//! on the module's device (`step/selection.rs`), so that a greedy or small top-k row
//! copies a few values to the host instead of the whole vocabulary; on any device a
//! row whose logits go unused is not copied.

mod selection;

use std::path::Path;

use modelplane_generate::config::{Dtype, GenerateModelConfig};
use modelplane_generate::engine::{
    ModelShape, RowLogits, Selection, StepError, StepModel, StepRow,
};
use tch::{CModule, IValue, Kind, Tensor};

use super::LoadError;
use super::torchscript::torch_message;

/// Prompt tokens of the warm-up prefill (fewer when the context is shorter).
const WARMUP_PROMPT: u32 = 8;

/// A loaded generative module with its allocated KV cache; lives on the engine thread.
pub struct TorchStepModel {
    module: CModule,
    cache: Tensor,
    device: tch::Device,
    shape: ModelShape,
    pad: i64,
}

/// The cache the engine asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSize {
    /// Slots (requests generating at once).
    pub slots: u32,
    /// Positions per slot; at most the model's `max_context`.
    pub context: u32,
}

impl TorchStepModel {
    /// Loads the module of `dir` onto `device`, checks that its `config()` agrees with
    /// `config.json`, allocates the KV cache and warms up (one prefill and one decode
    /// on slot 0, which the first request then overwrites).
    pub fn load(
        dir: &Path,
        config: &GenerateModelConfig,
        device: tch::Device,
        size: CacheSize,
    ) -> Result<Self, LoadError> {
        let path = config.model_path(dir);
        let format_error = |reason: String| LoadError::Format {
            path: path.display().to_string(),
            reason,
        };
        // With the profiling executor every new input shape can trigger a slow
        // re-optimisation pass: latency spikes while the context grows (contract §4).
        tch::jit::set_graph_executor_optimize(false);
        let mut module = CModule::load_on_device(&path, device)
            .map_err(|err| format_error(torch_message(&err)))?;
        module
            .f_set_eval()
            .map_err(|err| format_error(torch_message(&err)))?;
        check_module_config(&module_config(&module).map_err(format_error)?, config)
            .map_err(format_error)?;
        let cache = new_cache(&module, config, size).map_err(format_error)?;
        if config.element_type() == Dtype::BFloat16 && device == tch::Device::Cpu && !cpu_has_bf16()
        {
            tracing::warn!(
                path = %path.display(),
                "a bfloat16 model on a CPU without AVX-512 BF16: libtorch emulates it, \
                 slower than float32"
            );
        }
        let mut model = Self {
            module,
            cache,
            device,
            shape: ModelShape {
                vocab_size: config.vocab_size,
                slots: size.slots,
                context: size.context,
                kv_cache_bytes_per_token: config.kv_cache_bytes_per_token,
                packed_rows: config.packed_rows,
            },
            pad: i64::from(config.pad_token_id.unwrap_or(0)),
        };
        model
            .warm_up()
            .map_err(|err| format_error(format!("warm-up failed: {}", err.0)))?;
        Ok(model)
    }

    fn warm_up(&mut self) -> Result<(), StepError> {
        let prompt_len = WARMUP_PROMPT
            .min(self.shape.context.saturating_sub(1))
            .max(1);
        let prompt: Vec<u32> = (0..prompt_len).map(|i| i % self.shape.vocab_size).collect();
        self.step(&[StepRow {
            slot: 0,
            start: 0,
            tokens: &prompt,
        }])?;
        if prompt_len < self.shape.context {
            self.step(&[StepRow {
                slot: 0,
                start: prompt_len,
                tokens: &prompt[..1],
            }])?;
        }
        Ok(())
    }

    /// The contract's index tensors for `rows`: `input_ids [B, T]` (padded), `slots`,
    /// `starts`, `lengths`.
    fn index_tensors(&self, rows: &[StepRow<'_>]) -> [Tensor; 4] {
        let width = rows.iter().map(|r| r.tokens.len()).max().unwrap_or(1);
        let mut ids = vec![self.pad; rows.len() * width];
        for (row, chunk) in rows.iter().zip(ids.chunks_exact_mut(width)) {
            for (slot, token) in chunk.iter_mut().zip(row.tokens) {
                *slot = i64::from(*token);
            }
        }
        let column = |f: &dyn Fn(&StepRow<'_>) -> i64| -> Tensor {
            let values: Vec<i64> = rows.iter().map(f).collect();
            Tensor::from_slice(&values).to_device(self.device)
        };
        let shape = [rows.len() as i64, width as i64];
        [
            Tensor::from_slice(&ids).view(shape).to_device(self.device),
            column(&|r| i64::from(r.slot)),
            column(&|r| i64::from(r.start)),
            column(&|r| r.tokens.len() as i64),
        ]
    }

    /// One call of the module's `step`: the `[rows, V]` logits, on the module's device.
    fn forward(&mut self, rows: &[StepRow<'_>]) -> Result<Tensor, StepError> {
        let [ids, slots, starts, lengths] = self.index_tensors(rows);
        let args = [
            IValue::Tensor(ids),
            IValue::Tensor(slots),
            IValue::Tensor(starts),
            IValue::Tensor(lengths),
            IValue::Tensor(self.cache.shallow_clone()),
        ];
        let output = tch::no_grad(|| self.module.method_is("step", &args))
            .map_err(|err| StepError(torch_message(&err)))?;
        let IValue::Tensor(logits) = output else {
            return Err(StepError("step did not return a tensor".to_owned()));
        };
        let expected = [rows.len() as i64, i64::from(self.shape.vocab_size)];
        if logits.size() != expected {
            return Err(StepError(format!(
                "step returned logits of shape {:?}, expected {expected:?}",
                logits.size()
            )));
        }
        Ok(logits)
    }

    /// Copies `[B, V]` logits (any device) to the host in full, row-major: what
    /// [`StepModel::step`] does with the module's output. Public for the benchmark
    /// that compares it with [`Self::copy_selected`] (`examples/step_selection.rs`).
    pub fn copy_full(logits: &Tensor) -> Result<Vec<f32>, StepError> {
        selection::copy_full(logits).map_err(|err| StepError(torch_message(&err)))
    }

    /// Reduces `[B, V]` logits on their device to what each row's `selections` entry
    /// asks for and copies only that: what [`StepModel::step_selected`] does with the
    /// module's output (a row the device cannot answer exactly comes back in full).
    pub fn copy_selected(
        logits: &Tensor,
        selections: &[Selection],
    ) -> Result<Vec<RowLogits>, StepError> {
        selection::copy_selected(logits, selections).map_err(|err| StepError(torch_message(&err)))
    }

    /// What the model reduces on `device` of what the engine asked. On an
    /// accelerator, all of it: the argmax or the top-k is taken there and only that
    /// crosses to the host. On the CPU there is no transfer to save (the "copy" is a
    /// `memcpy`, about 6 µs a row of 49 152 logits) and the host sampler is faster
    /// than libtorch's CPU kernels (argmax 3–6×, top-k 2–4×: docs/benchmarks.md,
    /// "Logits selection per generation step"), so there only rows whose logits go
    /// unused skip the copy.
    pub fn selection_on(device: tch::Device, selection: Selection) -> Selection {
        match (device, selection) {
            (tch::Device::Cpu, Selection::Argmax | Selection::TopK(_)) => Selection::Full,
            _ => selection,
        }
    }
}

impl StepModel for TorchStepModel {
    fn shape(&self) -> ModelShape {
        self.shape
    }

    fn step(&mut self, rows: &[StepRow<'_>]) -> Result<Vec<f32>, StepError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        Self::copy_full(&self.forward(rows)?)
    }

    fn step_selected(
        &mut self,
        rows: &[StepRow<'_>],
        selections: &[Selection],
    ) -> Result<Vec<RowLogits>, StepError> {
        if selections.len() != rows.len() {
            return Err(StepError(format!(
                "{} selections for {} rows",
                selections.len(),
                rows.len()
            )));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let logits = self.forward(rows)?;
        let selections: Vec<Selection> = selections
            .iter()
            .map(|&selection| Self::selection_on(self.device, selection))
            .collect();
        Self::copy_selected(&logits, &selections)
    }

    /// Copies positions `0..len` of slot `from` into slot `to` of every layer's keys and
    /// values, in place on the cache's device (layout `[layer, kv, slot, kv_head,
    /// position, head_dim]`, contract §3): one strided copy instead of `len` tokens of
    /// prefill.
    fn copy_prefix(&mut self, from: u32, to: u32, len: u32) -> Result<bool, StepError> {
        let slots = i64::from(self.shape.slots);
        let (from, to, len) = (i64::from(from), i64::from(to), i64::from(len));
        if from == to || from >= slots || to >= slots || len > i64::from(self.shape.context) {
            return Err(StepError(format!(
                "copy_prefix: slots {from} -> {to} of {slots}, {len} positions"
            )));
        }
        let source = self.cache.narrow(2, from, 1).narrow(4, 0, len);
        let mut target = self.cache.narrow(2, to, 1).narrow(4, 0, len);
        tch::no_grad(|| target.f_copy_(&source)).map_err(|err| StepError(torch_message(&err)))?;
        Ok(true)
    }
}

/// The module's `config()`: shape facts by name.
fn module_config(module: &CModule) -> Result<Vec<(String, i64)>, String> {
    let value = module
        .method_is::<IValue>("config", &[])
        .map_err(|err| format!("config(): {}", torch_message(&err)))?;
    let IValue::GenericDict(entries) = value else {
        return Err("config() must return a Dict[str, int]".to_owned());
    };
    entries
        .into_iter()
        .map(|entry| match entry {
            (IValue::String(key), IValue::Int(value)) => Ok((key, value)),
            (key, value) => Err(format!(
                "config() must return a Dict[str, int], not an entry {key:?}: {value:?}"
            )),
        })
        .collect()
}

/// Refuses a module whose `config()` disagrees with `config.json` on a shape fact.
fn check_module_config(
    module: &[(String, i64)],
    config: &GenerateModelConfig,
) -> Result<(), String> {
    let expected = [
        ("vocab_size", Some(config.vocab_size)),
        ("num_layers", Some(config.num_layers)),
        ("num_kv_heads", Some(config.num_kv_heads)),
        ("head_dim", Some(config.head_dim)),
        ("max_context", Some(config.max_context)),
        ("num_heads", config.num_heads),
        ("hidden_size", config.hidden_size),
    ];
    for (key, want) in expected {
        let found = module.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        match (want, found) {
            (_, None) if want.is_some() && is_required(key) => {
                return Err(format!("the module's config() has no {key:?}"));
            }
            (Some(want), Some(found)) if i64::from(want) != found => {
                return Err(format!(
                    "config.json says {key} = {want} but the module's config() says {found}"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_required(key: &str) -> bool {
    matches!(
        key,
        "vocab_size" | "num_layers" | "num_kv_heads" | "head_dim" | "max_context"
    )
}

/// Whether this CPU has bfloat16 instructions (AVX-512 BF16 on x86-64; AMX, whose
/// detection is not stable Rust yet, comes with it on every CPU that has it; always
/// assumed on other architectures, where libtorch picks its own kernels).
fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

/// `new_cache(slots, context)`, checked against the contract's layout.
fn new_cache(
    module: &CModule,
    config: &GenerateModelConfig,
    size: CacheSize,
) -> Result<Tensor, String> {
    let args = [
        IValue::Int(i64::from(size.slots)),
        IValue::Int(i64::from(size.context)),
    ];
    let value = module
        .method_is::<IValue>("new_cache", &args)
        .map_err(|err| format!("new_cache(): {}", torch_message(&err)))?;
    let IValue::Tensor(cache) = value else {
        return Err("new_cache() did not return a tensor".to_owned());
    };
    let expected = [
        i64::from(config.num_layers),
        2,
        i64::from(size.slots),
        i64::from(config.num_kv_heads),
        i64::from(size.context),
        i64::from(config.head_dim),
    ];
    let kind = match config.element_type() {
        Dtype::Float32 => Kind::Float,
        Dtype::BFloat16 => Kind::BFloat16,
    };
    if cache.size() != expected || cache.kind() != kind {
        return Err(format!(
            "new_cache() returned a {:?} tensor of shape {:?}, expected {} {expected:?} (config.json's dtype)",
            cache.kind(),
            cache.size(),
            config.dtype
        ));
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use modelplane_generate::sampling::{Sampler, SamplingParams};

    use super::*;

    fn config() -> GenerateModelConfig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/tiny-llama");
        GenerateModelConfig::load(&dir).expect("tiny-llama config.json")
    }

    fn load_example(name: &str, size: CacheSize) -> TorchStepModel {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/models")
            .join(name);
        let config = GenerateModelConfig::load(&dir)
            .unwrap_or_else(|err| panic!("{name} (run examples/make_*.py): {err}"));
        TorchStepModel::load(&dir, &config, tch::Device::Cpu, size).expect("loads")
    }

    /// One prefill row a prompt, prompt `i` in slot `i`.
    fn prefill_rows<'a>(prompts: &[&'a [u32]]) -> Vec<StepRow<'a>> {
        prompts
            .iter()
            .zip(0..)
            .map(|(tokens, slot)| StepRow {
                slot,
                start: 0,
                tokens,
            })
            .collect()
    }

    fn sampled(temperature: f32, top_k: Option<u32>, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            repetition_penalty: 1.0,
            seed: Some(seed),
        }
    }

    #[test]
    fn selecting_on_the_device_picks_what_the_full_logits_pick() {
        let mut model = load_example(
            "tiny-llama",
            CacheSize {
                slots: 3,
                context: 32,
            },
        );
        let vocab = model.shape().vocab_size;
        let prompts: [&[u32]; 3] = [&[5, 17, 42, 7], &[1, 2, 3], &[9, 9, 9, 9, 9, 9]];
        let rows = prefill_rows(&prompts);
        let logits = model.forward(&rows).expect("step");
        let full = TorchStepModel::copy_full(&logits).expect("copied");
        for params in [
            SamplingParams::default(),
            sampled(0.8, Some(2), 1.0, 1),
            sampled(1.5, Some(20), 1.0, 2),
            sampled(0.7, Some(40), 0.9, 3),
        ] {
            let selection = Selection::for_params(&params, vocab);
            let answers =
                TorchStepModel::copy_selected(&logits, &[selection; 3]).expect("selected");
            for (row, answer) in full.chunks_exact(vocab as usize).zip(&answers) {
                assert_eq!(answer.check(selection, vocab), Ok(()));
                assert!(
                    !matches!(answer, RowLogits::Full(_)),
                    "{selection:?} fell back"
                );
                let (mut by_full, mut by_answer) = (Sampler::new(&params), Sampler::new(&params));
                for _ in 0..50 {
                    assert_eq!(by_answer.pick(answer, &[]), by_full.sample(row, &[]));
                }
            }
        }
    }

    #[test]
    fn a_bfloat16_export_caches_in_bfloat16_and_picks_what_the_float32_one_picks() {
        let size = CacheSize {
            slots: 2,
            context: 32,
        };
        let mut reference = load_example("tiny-llama", size);
        let mut half = load_example("tiny-llama-bf16", size);
        assert_eq!(half.cache.kind(), Kind::BFloat16);
        assert_eq!(
            half.shape().kv_cache_bytes_per_token * 2,
            reference.shape().kv_cache_bytes_per_token
        );
        let prompts: [&[u32]; 2] = [&[5, 17, 42, 7], &[9, 9, 9, 9, 9, 9]];
        let rows = prefill_rows(&prompts);
        let vocab = reference.shape().vocab_size as usize;
        let (want, got) = (
            reference.step(&rows).expect("float32 step"),
            half.step(&rows).expect("bfloat16 step"),
        );
        let argmax = |row: &[f32]| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(id, _)| id)
        };
        for (want, got) in want.chunks_exact(vocab).zip(got.chunks_exact(vocab)) {
            assert_eq!(argmax(got), argmax(want));
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = want
                .iter()
                .zip(got)
                .fold(0f32, |m, (w, g)| m.max((w - g).abs()));
            // bfloat16 keeps 8 bits of mantissa: a few percent of the largest logit.
            assert!(
                worst <= 0.05 * scale,
                "logits differ by {worst} (largest {scale})"
            );
        }
    }

    /// How a test decode gets its logits.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Via {
        /// `step`: every logit.
        Full,
        /// `step_selected`, as the engine calls it (on the CPU: full rows).
        Model,
        /// The module's `step` and [`TorchStepModel::copy_selected`] as asked, which
        /// is what `step_selected` does on an accelerator.
        Device,
    }

    /// Decodes 6 tokens in `slot` along `path`; returns them and how many steps came
    /// back reduced (not as full rows).
    fn decode(
        model: &mut TorchStepModel,
        slot: u32,
        prompt: &[u32],
        params: &SamplingParams,
        path: Via,
    ) -> (Vec<u32>, usize) {
        let vocab = model.shape().vocab_size;
        let mut sampler = Sampler::new(params);
        let mut tokens = prompt.to_vec();
        let mut reduced = 0;
        let mut start = 0;
        for _ in 0..6 {
            let row = StepRow {
                slot,
                start,
                tokens: &tokens[start as usize..],
            };
            let selection = [sampler.selection(vocab)];
            let answer = match path {
                Via::Full => RowLogits::Full(model.step(&[row]).expect("step")),
                Via::Model => model
                    .step_selected(&[row], &selection)
                    .expect("step")
                    .remove(0),
                Via::Device => {
                    let logits = model.forward(&[row]).expect("step");
                    TorchStepModel::copy_selected(&logits, &selection)
                        .expect("selected")
                        .remove(0)
                }
            };
            reduced += usize::from(!matches!(answer, RowLogits::Full(_)));
            start = tokens.len() as u32;
            tokens.push(sampler.pick(&answer, &tokens));
        }
        (tokens.split_off(prompt.len()), reduced)
    }

    #[test]
    fn smollm2_generates_the_same_tokens_from_selected_and_full_logits() {
        let mut model = load_example(
            "smollm2",
            CacheSize {
                slots: 3,
                context: 64,
            },
        );
        let prompt = [1, 9690, 198, 2683, 359];
        for params in [
            SamplingParams::default(),
            sampled(0.8, Some(40), 0.9, 5),
            sampled(1.5, Some(5), 1.0, 9),
        ] {
            let (full, _) = decode(&mut model, 0, &prompt, &params, Via::Full);
            for (slot, path) in [(1, Via::Model), (2, Via::Device)] {
                let (selected, reduced) = decode(&mut model, slot, &prompt, &params, path);
                assert_eq!(selected, full, "{params:?} by {path:?}");
                // On the CPU the model itself copies full rows (`selection_on`).
                let expected = if path == Via::Model { 0 } else { full.len() };
                assert_eq!(reduced, expected, "{params:?} by {path:?}: steps reduced");
            }
        }
    }

    #[test]
    fn the_cpu_skips_only_unused_rows_and_an_accelerator_reduces_all() {
        let cpu = tch::Device::Cpu;
        let cuda = tch::Device::Cuda(0);
        assert_eq!(
            TorchStepModel::selection_on(cpu, Selection::TopK(40)),
            Selection::Full
        );
        assert_eq!(
            TorchStepModel::selection_on(cpu, Selection::Argmax),
            Selection::Full
        );
        assert_eq!(
            TorchStepModel::selection_on(cpu, Selection::Nothing),
            Selection::Nothing
        );
        for selection in [Selection::Nothing, Selection::Argmax, Selection::TopK(40)] {
            assert_eq!(TorchStepModel::selection_on(cuda, selection), selection);
        }
        assert_eq!(
            TorchStepModel::selection_on(tch::Device::Mps, Selection::Argmax),
            Selection::Argmax
        );
    }

    #[test]
    fn a_module_config_that_disagrees_is_refused() {
        let config = config();
        let mut module = vec![
            ("vocab_size".to_owned(), i64::from(config.vocab_size)),
            ("num_layers".to_owned(), i64::from(config.num_layers)),
            ("num_kv_heads".to_owned(), i64::from(config.num_kv_heads)),
            ("head_dim".to_owned(), i64::from(config.head_dim)),
            ("max_context".to_owned(), i64::from(config.max_context)),
        ];
        assert_eq!(check_module_config(&module, &config), Ok(()));
        module[1].1 += 1;
        let err = check_module_config(&module, &config).expect_err("num_layers differs");
        assert!(err.contains("num_layers"), "{err}");
        module.remove(1);
        let err = check_module_config(&module, &config).expect_err("num_layers missing");
        assert!(err.contains("has no \"num_layers\""), "{err}");
    }

    #[test]
    fn steps_extend_a_slot_like_one_prefill() {
        let config = config();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/tiny-llama");
        let size = CacheSize {
            slots: 2,
            context: 32,
        };
        let mut model = TorchStepModel::load(&dir, &config, tch::Device::Cpu, size).expect("loads");
        let prompt = [5, 17, 42, 7];
        let whole = model
            .step(&[StepRow {
                slot: 1,
                start: 0,
                tokens: &prompt,
            }])
            .expect("prefill");
        model
            .step(&[StepRow {
                slot: 0,
                start: 0,
                tokens: &prompt[..3],
            }])
            .expect("partial prefill");
        let last = model
            .step(&[StepRow {
                slot: 0,
                start: 3,
                tokens: &prompt[3..],
            }])
            .expect("decode");
        assert_eq!(whole.len(), config.vocab_size as usize);
        let diff = whole
            .iter()
            .zip(&last)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "max difference {diff}");
        let err = model
            .step(&[StepRow {
                slot: 0,
                start: 40,
                tokens: &prompt,
            }])
            .expect_err("past the context");
        assert!(err.0.contains("step:"), "{}", err.0);
    }
}
