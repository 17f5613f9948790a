//! Hot reload: polls the config file and local model files, loads new or changed
//! versions beside the serving ones, and swaps the catalog atomically. A failed load
//! keeps the previous instance serving and records why.
//!
//! Polling (rather than inotify) is deliberate: Kubernetes updates ConfigMap mounts by
//! swapping symlinks, which file watches miss or report inconsistently.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use modelplane_api::runtime_config::{ModelConfig, RuntimeConfig, Source, Task, VersionConfig};
use tokio::sync::{oneshot, watch};

use crate::batch::{BatchSettings, Executor, Loader};
use crate::catalog::{Catalog, LoadState, ModelEntry, Version, VersionSlot};
use crate::model::{self, SIGNATURE_FILE, Signature};
use crate::server::{AppState, ConfigSource};
use crate::source::Fetcher;

mod generate;
mod tokenizer;

/// What a version was (or is to be) loaded from; a change triggers a reload.
#[derive(Clone, Debug, PartialEq)]
struct Wanted {
    version: VersionConfig,
    task: Task,
    generation: modelplane_api::runtime_config::Generation,
    format: modelplane_api::runtime_config::ModelFormat,
    inputs: Vec<modelplane_api::runtime_config::TensorSpec>,
    outputs: Vec<modelplane_api::runtime_config::TensorSpec>,
    batching: modelplane_api::runtime_config::Batching,
    tokenizer: Option<modelplane_api::runtime_config::TokenizerConfig>,
    files: Option<FileStamp>,
}

/// Identity of a local model file, its signature and tokenizer files (or of every file in
/// a generate model's folder): a rewrite, a rename over it or a symlink swap all change it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    model: Option<Stamp>,
    signature: Option<Stamp>,
    /// The tokenizer, where the folder's stamps do not cover it.
    tokenizer: Option<Stamp>,
    /// The model-signing bundle, when the version's signature check reads a local one.
    bundle: Option<Stamp>,
    folder: Vec<(PathBuf, Option<Stamp>)>,
}

/// Inode, length and modification time of a file.
type Stamp = (u64, u64, i64, i64);

/// Most files of a model folder watched for changes.
const MAX_FOLDER_FILES: usize = 64;

/// Stamps of the files in a folder, by name (empty for an unreadable folder).
fn folder_stamps(dir: &Path) -> Vec<(PathBuf, Option<Stamp>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .take(MAX_FOLDER_FILES)
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let stamp = stamp(&path);
            (path, stamp)
        })
        .collect()
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec()))
}

impl Wanted {
    fn of(model: &ModelConfig, version: &VersionConfig) -> Self {
        let files = match &version.source {
            Source::Path(path) => {
                let path = Path::new(path);
                let signature = path.parent().map(|dir| dir.join(SIGNATURE_FILE));
                // A generate model is its whole folder (config.json, tokenizer.json, ...).
                let folder = match path.parent() {
                    _ if model.task != Task::Generate => Vec::new(),
                    Some(parent) if !path.is_dir() => folder_stamps(parent),
                    _ => folder_stamps(path),
                };
                Some(FileStamp {
                    model: stamp(path),
                    signature: signature.as_deref().and_then(stamp),
                    tokenizer: tokenizer::watched_file(model, path)
                        .as_deref()
                        .and_then(stamp),
                    bundle: crate::signing::local_bundle(version, path)
                        .as_deref()
                        .and_then(stamp),
                    folder,
                })
            }
            Source::Http(_) | Source::Oci(_) => None,
        };
        Self {
            version: version.clone(),
            task: model.task,
            generation: model.generation.clone(),
            format: model.format,
            inputs: model.inputs.clone(),
            outputs: model.outputs.clone(),
            batching: model.batching.clone(),
            tokenizer: tokenizer::configured(model).cloned(),
            files,
        }
    }
}

type Key = (String, String);

/// The task that keeps the catalog in line with the config and the model files.
pub struct Reloader {
    source: ConfigSource,
    config: RuntimeConfig,
    last_text: Option<String>,
    state: Arc<AppState>,
    fetcher: Fetcher,
    loaded: HashMap<Key, Wanted>,
    failed: HashMap<Key, (Wanted, String)>,
}

impl Reloader {
    /// A reloader starting from an already validated config.
    pub fn new(source: ConfigSource, config: RuntimeConfig, state: Arc<AppState>) -> Self {
        let last_text = match &source {
            ConfigSource::File(path) => std::fs::read_to_string(path).ok(),
            ConfigSource::Inline(_) => None,
        };
        Self {
            source,
            config,
            last_text,
            state,
            fetcher: Fetcher::default(),
            loaded: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// Reconciles now and then every watch interval, until `stop` turns true. After the
    /// first pass, `initial` receives why each model without a serving version failed.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        initial: oneshot::Sender<Vec<String>>,
    ) {
        let mut initial = Some(initial);
        loop {
            self.reread_config();
            self.reconcile().await;
            if let Some(initial) = initial.take() {
                let _ = initial.send(unservable(&self.state.catalog.load()));
            }
            let interval = self.config.server.watch_interval.get();
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    fn reread_config(&mut self) {
        let ConfigSource::File(path) = &self.source else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            tracing::warn!(path = %path.display(), "config file unreadable; keeping the current config");
            return;
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        match RuntimeConfig::from_yaml(&text) {
            Ok(config) => {
                tracing::info!(path = %path.display(), "config changed");
                self.config = config;
            }
            Err(err) => {
                tracing::error!(path = %path.display(), error = %err, "new config refused; keeping the current one");
                self.state.metrics.config_reload_failed();
            }
        }
        self.last_text = Some(text);
    }

    async fn reconcile(&mut self) {
        let current = self.state.catalog.load_full();
        let mut models = HashMap::new();
        let mut changed = !current.initialized;
        for model in &self.config.models.clone() {
            let old = current.models.get(&model.name);
            let mut versions = Vec::with_capacity(model.versions.len());
            for version in &model.versions {
                let old_slot = old.and_then(|entry| entry.slot(&version.version)).cloned();
                let (slot, loaded) = self.reconcile_version(model, version, old_slot).await;
                changed |= loaded;
                versions.push((version.version.clone(), slot));
            }
            if let Some(entry) = old {
                keep_serving_until_replaced(&model.name, &mut versions, entry);
            }
            let config = match old {
                Some(entry) if *entry.config == *model => Arc::clone(&entry.config),
                _ => {
                    changed = true;
                    Arc::new(model.clone())
                }
            };
            models.insert(model.name.clone(), ModelEntry { config, versions });
        }
        changed |= current.models.len() != models.len();
        let keep = |key: &Key| {
            models
                .get(&key.0)
                .is_some_and(|e: &ModelEntry| e.slot(&key.1).is_some())
        };
        self.loaded.retain(|key, _| keep(key));
        self.failed.retain(|key, _| keep(key));
        if changed {
            self.state.catalog.store(Arc::new(Catalog {
                models,
                initialized: true,
            }));
        }
    }

    /// Keeps, loads or reloads one version; returns its slot and whether it changed.
    async fn reconcile_version(
        &mut self,
        model: &ModelConfig,
        version: &VersionConfig,
        old: Option<VersionSlot>,
    ) -> (VersionSlot, bool) {
        let key = (model.name.clone(), version.version.clone());
        let wanted = Wanted::of(model, version);
        if let Some(slot) = &old
            && self.loaded.get(&key) == Some(&wanted)
        {
            return (slot.clone(), false);
        }
        if let Some((failed, reason)) = self.failed.get(&key)
            && *failed == wanted
        {
            let slot = old.unwrap_or(VersionSlot {
                serving: None,
                state: LoadState::Failed(reason.clone()),
            });
            return (slot, false);
        }
        self.state
            .metrics
            .set_state(&model.name, &version.version, "loading");
        let serving = old.and_then(|slot| slot.serving);
        match self.load(model, version).await {
            Ok(instance) => {
                tracing::info!(model = %model.name, version = %version.version, "version ready");
                self.failed.remove(&key);
                self.loaded.insert(key, wanted);
                (
                    VersionSlot {
                        serving: Some(Arc::new(instance)),
                        state: LoadState::Ready,
                    },
                    true,
                )
            }
            Err(reason) => {
                tracing::error!(model = %model.name, version = %version.version, %reason, keeps_serving = serving.is_some(), "load failed");
                self.state
                    .metrics
                    .load_failed(&model.name, &version.version);
                self.state.metrics.set_state(
                    &model.name,
                    &version.version,
                    if serving.is_some() { "ready" } else { "failed" },
                );
                self.failed.insert(key, (wanted, reason.clone()));
                (
                    VersionSlot {
                        serving,
                        state: LoadState::Failed(reason),
                    },
                    true,
                )
            }
        }
    }

    async fn load(&self, model: &ModelConfig, version: &VersionConfig) -> Result<Version, String> {
        let started = Instant::now();
        let cache_dir = PathBuf::from(&self.config.server.cache_dir);
        let artifact = self
            .fetcher
            .fetch(&version.source, &cache_dir)
            .await
            .map_err(|e| e.to_string())?;
        // What loads is what is verified: a generate model is its whole folder (its
        // config.json names the weights), even when the source names a file in it.
        let signed = match model.task {
            Task::Generate => generate::model_folder(&artifact.path)?,
            _ => artifact.path.clone(),
        };
        crate::signing::check(&model.name, version, &signed, &self.state.metrics.signing).await?;
        tokenizer::fetch(&self.fetcher, model, &version.source, &artifact).await?;
        if model.task == Task::Generate {
            return self.load_generate(model, version, artifact, started).await;
        }
        let signature = signature_of(&self.fetcher, model, &version.source, &artifact).await?;
        let codec = tokenizer::embed_codec(model, &artifact.path)?;
        let batching = model.batching.max_batch_size > 1 && signature.batchable();
        let settings = BatchSettings {
            max_batch_size: if batching {
                u64::from(model.batching.max_batch_size)
            } else {
                1
            },
            max_queue_delay: model.batching.max_queue_delay.get(),
            warmup_iterations: version.warmup_iterations,
            intra_op_threads: self.intra_op_threads(),
        };
        let metrics = self.state.metrics.version(&model.name, &version.version);
        let (format, device, path) = (model.format, version.device, artifact.path.clone());
        let loader: Loader = Box::new(move || {
            let backend = model::load(format, &path, device).map_err(|e| e.to_string())?;
            Ok((backend, signature))
        });
        let thread = format!("mp-{}-{}", model.name, version.version);
        let (executor, signature) =
            Executor::start(thread, settings, metrics.clone(), loader).await?;
        self.state.metrics.loaded(
            &model.name,
            &version.version,
            started.elapsed().as_secs_f64(),
        );
        let version = Version::new(
            model.name.clone(),
            version.version.clone(),
            signature,
            batching,
            artifact.digest,
            metrics,
            executor,
        );
        Ok(match codec {
            Some(codec) => version.with_text_codec(Arc::new(codec)),
            None => version,
        })
    }
}

impl Reloader {
    async fn load_generate(
        &self,
        model: &ModelConfig,
        version: &VersionConfig,
        artifact: crate::source::Artifact,
        started: Instant,
    ) -> Result<Version, String> {
        let metrics = &self.state.metrics;
        let start = generate::EngineStart {
            dir: artifact.path,
            threads: self.intra_op_threads(),
            cgroup_root: PathBuf::from(crate::cgroup::CGROUP_ROOT),
            metrics: metrics.generation(&model.name, &version.version),
        };
        let engine = generate::start_engine(model, version, start).await?;
        metrics.loaded(
            &model.name,
            &version.version,
            started.elapsed().as_secs_f64(),
        );
        Ok(Version::generate(
            model.name.clone(),
            version.version.clone(),
            artifact.digest,
            metrics.version(&model.name, &version.version),
            engine,
        ))
    }

    fn intra_op_threads(&self) -> usize {
        crate::cgroup::intra_op_threads(
            self.config.server.intra_op_threads,
            Path::new(crate::cgroup::CGROUP_ROOT),
        )
    }
}

/// A model whose configured versions all failed to load (a new model under Enforce that does
/// not verify, a corrupt file, a missing folder) keeps the versions that served before the
/// config changed, so that replacing a version never takes the model down: they stay until a
/// configured version serves.
fn keep_serving_until_replaced(
    model: &str,
    versions: &mut Vec<(String, VersionSlot)>,
    before: &ModelEntry,
) {
    if versions.iter().any(|(_, slot)| slot.serving.is_some()) {
        return;
    }
    for (label, slot) in &before.versions {
        if slot.serving.is_some() && !versions.iter().any(|(l, _)| l == label) {
            tracing::warn!(
                model,
                version = %label,
                "keeps serving a version that is no longer configured: no configured version serves"
            );
            versions.push((label.clone(), slot.clone()));
        }
    }
}

/// One line per model that has no serving version, with the load failures behind it.
fn unservable(catalog: &Catalog) -> Vec<String> {
    let mut lines: Vec<String> = catalog
        .models
        .values()
        .filter(|entry| entry.default_serving().is_none())
        .flat_map(|entry| {
            entry
                .versions
                .iter()
                .filter_map(|(label, slot)| match &slot.state {
                    LoadState::Failed(reason) => Some(format!(
                        "model {} version {label} failed to load: {reason}",
                        entry.config.name
                    )),
                    _ => None,
                })
        })
        .collect();
    lines.sort();
    lines
}

/// The signature of a model from `source`: as [`signature_for`] says, where an `http`
/// model with no inputs in the config takes the `signature.json` published beside its URL
/// (downloaded once into its cache folder), as a local one does from beside its file.
async fn signature_of(
    fetcher: &Fetcher,
    model: &ModelConfig,
    source: &Source,
    artifact: &crate::source::Artifact,
) -> Result<Signature, String> {
    let unfetched = match source {
        Source::Http(_) if model.inputs.is_empty() => fetcher
            .fetch_beside(source, artifact, SIGNATURE_FILE, None)
            .await
            .err(),
        _ => None,
    };
    signature_for(model, &artifact.path).map_err(|err| match unfetched {
        Some(why) => format!("{err} ({SIGNATURE_FILE} beside the model URL: {why})"),
        None => err,
    })
}

/// The configured signature, else the `signature.json` beside the model file.
fn signature_for(model: &ModelConfig, model_path: &Path) -> Result<Signature, String> {
    if !model.inputs.is_empty() {
        return Signature::from_specs(&model.inputs, &model.outputs);
    }
    let dir = model_path.parent().unwrap_or(Path::new("."));
    Signature::read_beside(dir)?.ok_or_else(|| {
        format!(
            "no inputs in the config and no {SIGNATURE_FILE} beside {}",
            model_path.display()
        )
    })
}
