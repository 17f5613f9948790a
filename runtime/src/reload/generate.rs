//! Loading a `generate` version: the model folder, a KV cache sized to the config and
//! checked against the cgroup memory limit, and the engine thread that serves it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use modelplane_config::{Device, Generation, ModelConfig, VersionConfig};
use modelplane_generate::config::GenerateModelConfig;
use modelplane_generate::engine::{Engine, EngineSettings, ModelLoader};
use modelplane_generate::metrics::GenerationMetrics;
use modelplane_generate::text::TextCodec;

use crate::cgroup;
use crate::model::{self, CacheSize};

/// The file that makes a folder a generate model.
const CONFIG_FILE: &str = "config.json";

/// Bytes in a MiB, for messages.
const MIB: u64 = 1 << 20;

/// What one engine start needs besides the configs.
pub(super) struct EngineStart {
    /// The model folder (`config.json`, `model.pt`, its tokenizer).
    pub dir: PathBuf,
    /// libtorch intra-op threads of the engine thread.
    pub threads: usize,
    /// Where cgroup v2 files are read (memory check).
    pub cgroup_root: PathBuf,
    /// The version's generation series.
    pub metrics: GenerationMetrics,
}

/// Reads the folder, checks memory, and starts the engine (load and warm-up run on
/// its thread); resolves once the version can take requests. The files are read on the
/// blocking pool.
pub(super) async fn start_engine(
    model: &ModelConfig,
    version: &VersionConfig,
    start: EngineStart,
) -> Result<Engine, String> {
    let (read_model, device) = (model.clone(), version.device);
    let (source, cgroup_root) = (start.dir, start.cgroup_root);
    let (dir, config, codec, size) =
        super::load::blocking(move || prepare(&read_model, device, &source, &cgroup_root)).await?;
    let settings = engine_settings(&model.generation);
    let (format, threads) = (model.format, start.threads);
    let eos = config.eos_token_ids.clone();
    let loader: ModelLoader = Box::new(move || {
        tch::set_num_threads(i32::try_from(threads).unwrap_or(1));
        model::load_step_model(format, &dir, &config, device, size).map_err(|e| e.to_string())
    });
    let thread = format!("mp-gen-{}-{}", model.name, version.version);
    Engine::start(
        thread,
        loader,
        Arc::new(codec),
        eos,
        settings,
        start.metrics,
    )
    .await
}

/// The folder, its config and tokenizer and the KV cache size, checked against the
/// memory limit on CPU. Reads files: call it on the blocking pool.
fn prepare(
    model: &ModelConfig,
    device: Device,
    source: &Path,
    cgroup_root: &Path,
) -> Result<(PathBuf, GenerateModelConfig, TextCodec, CacheSize), String> {
    let dir = model_folder(source)?;
    let config = GenerateModelConfig::load(&dir).map_err(|e| e.to_string())?;
    let codec = super::tokenizer::generate_codec(model, &dir, &config)?;
    let size = cache_size(&model.generation, &config);
    if device == Device::Cpu {
        let weights = std::fs::metadata(config.model_path(&dir)).map_or(0, |m| m.len());
        let need = kv_cache_bytes(size, &config) + weights;
        check_memory(need, size, cgroup_root)?;
    }
    Ok((dir, config, codec, size))
}

/// The model folder of a source: the folder itself, or the folder of a file that has
/// `config.json` beside it (a `path` to the model file, an OCI artifact's layers).
pub(super) fn model_folder(source: &Path) -> Result<PathBuf, String> {
    if source.is_dir() {
        return Ok(source.to_owned());
    }
    match source.parent() {
        Some(dir) if dir.join(CONFIG_FILE).is_file() => Ok(dir.to_owned()),
        _ => Err(format!(
            "a generate model's source must be a folder with {CONFIG_FILE}, the model and \
             tokenizer.json (or a file beside them); {} is neither",
            source.display()
        )),
    }
}

/// The engine's scheduler settings from the model's `generation` config.
pub(super) fn engine_settings(generation: &Generation) -> EngineSettings {
    EngineSettings {
        max_waiting: generation.max_waiting,
        prefill_chunk: generation.prefill_chunk,
        max_batch_tokens: generation.max_batch_tokens,
        ..EngineSettings::default()
    }
}

/// The configured cache, its context capped at the model's `max_context`.
fn cache_size(generation: &Generation, config: &GenerateModelConfig) -> CacheSize {
    CacheSize {
        slots: generation.slots,
        context: generation.context.min(config.max_context),
    }
}

fn kv_cache_bytes(size: CacheSize, config: &GenerateModelConfig) -> u64 {
    u64::from(size.slots) * u64::from(size.context) * config.kv_cache_bytes_per_token
}

/// Refuses a load that needs more memory than the cgroup has left under `memory.max`.
fn check_memory(need: u64, size: CacheSize, root: &Path) -> Result<(), String> {
    let Some(max) = cgroup::read_bytes(root, "memory.max") else {
        return Ok(());
    };
    let current = cgroup::read_bytes(root, "memory.current").unwrap_or(0);
    memory_fits(need, max, current).map_err(|free| {
        format!(
            "the KV cache ({} slots × {} positions) and weights need {} MiB but the \
             container has {} MiB free of its {} MiB memory limit; lower \
             generation.slots or generation.context, or raise the memory limit",
            size.slots,
            size.context,
            need.div_ceil(MIB),
            free / MIB,
            max / MIB
        )
    })
}

/// `Err(free bytes)` when `need` does not fit under `max` beside `current`.
fn memory_fits(need: u64, max: u64, current: u64) -> Result<(), u64> {
    let free = max.saturating_sub(current);
    if need <= free { Ok(()) } else { Err(free) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_larger_than_the_free_memory_is_refused() {
        assert_eq!(memory_fits(100, 1000, 800), Ok(()));
        assert_eq!(memory_fits(300, 1000, 800), Err(200));
        assert_eq!(memory_fits(1, 1000, 2000), Err(0));
    }

    #[test]
    fn the_memory_message_names_the_settings_to_lower() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("memory.max"), "1073741824\n").expect("write");
        std::fs::write(dir.path().join("memory.current"), "536870912\n").expect("write");
        let size = CacheSize {
            slots: 64,
            context: 8192,
        };
        let err = check_memory(2 << 30, size, dir.path()).expect_err("does not fit");
        assert!(err.contains("2048 MiB"), "{err}");
        assert!(err.contains("512 MiB free of its 1024 MiB"), "{err}");
        assert!(err.contains("generation.slots"), "{err}");
        assert_eq!(check_memory(1 << 20, size, dir.path()), Ok(()));
        std::fs::write(dir.path().join("memory.max"), "max\n").expect("write");
        assert_eq!(check_memory(u64::MAX, size, dir.path()), Ok(()));
    }

    #[test]
    fn the_source_may_name_the_folder_or_a_file_in_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/tiny-llama");
        assert_eq!(model_folder(&dir), Ok(dir.clone()));
        assert_eq!(model_folder(&dir.join("model.pt")), Ok(dir.clone()));
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let lone = elsewhere.path().join("model.pt");
        std::fs::write(&lone, b"x").expect("write");
        let err = model_folder(&lone).expect_err("no config.json beside it");
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn the_context_is_capped_at_the_models() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/tiny-llama");
        let config = GenerateModelConfig::load(&dir).expect("config");
        let generation = Generation {
            context: config.max_context + 100,
            ..Generation::default()
        };
        assert_eq!(cache_size(&generation, &config).context, config.max_context);
        let settings = engine_settings(&generation);
        assert_eq!(settings.prefill_chunk, generation.prefill_chunk);
        assert_eq!(settings.max_waiting, generation.max_waiting);
    }
}
