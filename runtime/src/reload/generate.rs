//! Loading a `generate` version: the model folder, a KV cache sized to the config and
//! checked with the weights against the cgroup memory limit, and the engine thread that
//! serves it (which first joins the slice of the model's tenant, where there is one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use modelplane_config::{Device, Generation, ModelConfig, VersionConfig};
use modelplane_generate::config::GenerateModelConfig;
use modelplane_generate::engine::{Engine, EngineSettings, ModelLoader};
use modelplane_generate::metrics::GenerationMetrics;
use modelplane_generate::text::TextCodec;

use crate::cgroup::PodCgroup;
use crate::cgroup::memory::{self, MemoryNeed};
use crate::cgroup::slices::SliceJoin;
use crate::model::{self, CacheSize};

/// The file that makes a folder a generate model.
const CONFIG_FILE: &str = "config.json";

/// What one engine start needs besides the configs.
pub(super) struct EngineStart {
    /// The model folder (`config.json`, `model.pt`, its tokenizer).
    pub dir: PathBuf,
    /// libtorch intra-op threads of the engine thread.
    pub threads: usize,
    /// The pod's cgroup (memory check).
    pub pod: PodCgroup,
    /// The way into the slice of the model's tenant.
    pub join: Option<SliceJoin>,
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
    let (read_model, read_version) = (model.clone(), version.clone());
    let (source, pod) = (start.dir, start.pod);
    let (dir, config, codec, size) =
        super::load::blocking(move || prepare(&read_model, &read_version, &source, &pod)).await?;
    let settings = engine_settings(&model.generation);
    let (format, threads, device, join) = (model.format, start.threads, version.device, start.join);
    let eos = config.eos_token_ids.clone();
    let loader: ModelLoader = Box::new(move || {
        // On the engine thread, before its first forward starts OpenMP threads
        // from it (they inherit its cgroup).
        if let Some(join) = &join {
            join.join_current_thread();
        }
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
/// memory limit. Reads files: call it on the blocking pool.
fn prepare(
    model: &ModelConfig,
    version: &VersionConfig,
    source: &Path,
    pod: &PodCgroup,
) -> Result<(PathBuf, GenerateModelConfig, TextCodec, CacheSize), String> {
    let dir = model_folder(source)?;
    let config = GenerateModelConfig::load(&dir).map_err(|e| e.to_string())?;
    let codec = super::tokenizer::generate_codec(model, &dir, &config)?;
    let size = cache_size(&model.generation, &config);
    let weights = memory::artifact_bytes(&config.model_path(&dir));
    let need = memory_need(weights, size, &config, version.device);
    check_memory(need, size, (&model.name, &version.version), pod)?;
    Ok((dir, config, codec, size))
}

/// What a generate version needs in the pod's memory: its weights (see
/// [`MemoryNeed::of_artifact`]) and, on CPU, its KV cache.
fn memory_need(
    weights: u64,
    size: CacheSize,
    config: &GenerateModelConfig,
    device: Device,
) -> MemoryNeed {
    let need = MemoryNeed::of_artifact(weights, device);
    match device {
        Device::Cpu => need.plus(kv_cache_bytes(size, config)),
        Device::Cuda => need,
    }
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
        prefix_caching: generation.prefix_caching,
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

/// Refuses a load that needs more memory than the cgroup has left under `memory.max`,
/// naming the settings that size the KV cache.
fn check_memory(
    need: MemoryNeed,
    size: CacheSize,
    names: (&str, &str),
    pod: &PodCgroup,
) -> Result<(), String> {
    let hint = format!(
        " (weights and a KV cache of {} slots × {} positions); lower generation.slots \
         or generation.context, or raise the memory limit",
        size.slots, size.context
    );
    memory::admit(&pod.memory(), need, names, &hint).map_err(|refused| refused.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_message_names_the_settings_to_lower() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("memory.max"), "1073741824\n").expect("write");
        std::fs::write(dir.path().join("memory.current"), "536870912\n").expect("write");
        let pod = PodCgroup::at(dir.path().to_owned());
        let size = CacheSize {
            slots: 64,
            context: 8192,
        };
        let need = MemoryNeed { bytes: 2 << 30 };
        let err = check_memory(need, size, ("llm", "3"), &pod).expect_err("does not fit");
        assert!(
            err.starts_with(
                "model llm version 3 needs ~2 GiB but only 512 MiB are free under the \
                 cgroup's memory.max of 1 GiB (weights and a KV cache of 64 slots × 8192"
            ),
            "{err}"
        );
        assert!(err.contains("generation.slots"), "{err}");
        assert_eq!(
            check_memory(MemoryNeed { bytes: 1 << 20 }, size, ("llm", "3"), &pod),
            Ok(())
        );
        std::fs::write(dir.path().join("memory.max"), "max\n").expect("write");
        let huge = MemoryNeed { bytes: u64::MAX };
        assert_eq!(check_memory(huge, size, ("llm", "3"), &pod), Ok(()));
    }

    #[test]
    fn the_kv_cache_counts_on_cpu_only() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/tiny-llama");
        let config = GenerateModelConfig::load(&dir).expect("config");
        let size = CacheSize {
            slots: 2,
            context: 16,
        };
        let cache = kv_cache_bytes(size, &config);
        assert!(cache > 0);
        assert_eq!(
            memory_need(1000, size, &config, Device::Cpu).bytes,
            1100 + cache
        );
        assert_eq!(memory_need(1000, size, &config, Device::Cuda).bytes, 250);
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
