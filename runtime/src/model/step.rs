//! Generative models of the `modelplane.generate/v1` contract (docs/generate-contract.md)
//! over libtorch: a TorchScript module with `config`, `new_cache` and `step`, and the
//! KV cache it writes in place.

use std::path::Path;

use modelplane_generate::config::GenerateModelConfig;
use modelplane_generate::engine::{ModelShape, StepError, StepModel, StepRow};
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
        let mut model = Self {
            module,
            cache,
            device,
            shape: ModelShape {
                vocab_size: config.vocab_size,
                slots: size.slots,
                context: size.context,
                kv_cache_bytes_per_token: config.kv_cache_bytes_per_token,
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
}

impl StepModel for TorchStepModel {
    fn shape(&self) -> ModelShape {
        self.shape
    }

    fn step(&mut self, rows: &[StepRow<'_>]) -> Result<Vec<f32>, StepError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
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
        let flat = logits
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .view([-1]);
        Vec::<f32>::try_from(&flat).map_err(|err| StepError(torch_message(&err)))
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
    if cache.size() != expected || cache.kind() != Kind::Float {
        return Err(format!(
            "new_cache() returned a {:?} tensor of shape {:?}, expected float32 {expected:?}",
            cache.kind(),
            cache.size()
        ));
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GenerateModelConfig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/tiny-llama");
        GenerateModelConfig::load(&dir).expect("tiny-llama config.json")
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
