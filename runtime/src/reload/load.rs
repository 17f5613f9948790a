//! Loading one version: fetch, verify, read its signature and tokenizer, check that it
//! fits under the cgroup's memory limit, start and warm up its executor or engine (whose
//! thread first joins the slice of the model's tenant, where there is one). Each load
//! runs as its own task, a bounded number at a time; file reads, tokenizer parsing and
//! cgroup reads run on the blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use modelplane_config::{ModelConfig, Source, Task, TenantConfig, VersionConfig};
use tokio::sync::{OwnedMutexGuard, Semaphore};

use super::{generate, tokenizer};
use crate::batch::{BatchSettings, Executor, Loader};
use crate::catalog::Version;
use crate::cgroup::PodCgroup;
use crate::cgroup::memory::{self, MemoryNeed};
use crate::cgroup::slices::{self, SliceJoin, Slices};
use crate::model::{self, SIGNATURE_FILE, Signature};
use crate::server::AppState;
use crate::source::{Artifact, Fetcher};

/// Most versions loading at once: enough that one slow pull never holds up every other
/// model, few enough that loads do not fight over memory and cores.
pub(super) const MAX_CONCURRENT_LOADS: usize = 2;

/// What every load shares.
pub(super) struct Loads {
    fetcher: Fetcher,
    state: Arc<AppState>,
    permits: Semaphore,
    /// One fetch at a time into each cache folder (downloads share its partial file).
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The pod's cgroup: CPU quota, memory check.
    pod: PodCgroup,
    /// The tenants' cgroup slices.
    slices: Arc<Slices>,
}

/// One version to load, with the server settings it loads under.
pub(super) struct Job {
    /// The model's config.
    pub model: ModelConfig,
    /// The version's config.
    pub version: VersionConfig,
    /// Where remote sources are cached.
    pub cache_dir: PathBuf,
    /// The configured libtorch intra-op threads (`None`: from the cgroup CPU quota).
    pub intra_op_threads: Option<u32>,
}

/// A finished load: the started version and how long it took after its turn came.
pub(super) type Outcome = Result<(Version, f64), String>;

impl Loads {
    pub(super) fn new(state: Arc<AppState>, max_concurrent: usize) -> Self {
        let pod = PodCgroup::current();
        let slices = Arc::new(Slices::new(pod.clone(), state.metrics.cgroup.slices()));
        Self {
            fetcher: Fetcher::default(),
            state,
            permits: Semaphore::new(max_concurrent.max(1)),
            fetching: Mutex::new(HashMap::new()),
            pod,
            slices,
        }
    }

    /// Takes the tenants of a (new) config: their slices are made, updated or removed
    /// on the blocking pool when what they ask for changed. Call it before the loads of
    /// the same config start (a load makes its tenant's slice itself if need be).
    pub(super) fn configure_tenants(&self, tenants: &[TenantConfig]) {
        if self.slices.configure(tenants) {
            let slices = Arc::clone(&self.slices);
            tokio::task::spawn_blocking(move || slices.apply());
        }
    }

    /// Waits for a turn, then loads the job's version.
    pub(super) async fn run(&self, job: &Job) -> Outcome {
        let _turn = self
            .permits
            .acquire()
            .await
            .map_err(|_| "the reloader stopped".to_owned())?;
        let started = Instant::now();
        let version = self.load(job).await?;
        Ok((version, started.elapsed().as_secs_f64()))
    }

    async fn load(&self, job: &Job) -> Result<Version, String> {
        let (model, version) = (&job.model, &job.version);
        let fetching = self.fetch_turn(&version.source).await;
        let artifact = self
            .fetcher
            .fetch(&version.source, &job.cache_dir)
            .await
            .map_err(|e| e.to_string())?;
        // What loads is what is verified: a generate model is its whole folder (its
        // config.json names the weights), even when the source names a file in it.
        let signed = match model.task {
            Task::Generate => {
                let path = artifact.path.clone();
                blocking(move || generate::model_folder(&path)).await?
            }
            _ => artifact.path.clone(),
        };
        let signing = &self.state.metrics.signing;
        crate::signing::check(&model.name, version, &signed, signing).await?;
        tokenizer::fetch(&self.fetcher, model, &version.source, &artifact).await?;
        let signature = match model.task {
            Task::Generate => None,
            _ => Some(signature_of(&self.fetcher, model, &version.source, &artifact).await?),
        };
        drop(fetching);
        let (threads, pod) = (job.intra_op_threads, self.pod.clone());
        let threads = blocking(move || Ok(pod.intra_op_threads(threads))).await?;
        let join = slices::for_tenant(&self.slices, model.tenant.as_deref());
        match signature {
            None => self.load_generate(job, artifact, threads, join).await,
            Some(signature) => {
                self.check_memory(job, &artifact).await?;
                self.load_tensor(job, artifact, signature, threads, join)
                    .await
            }
        }
    }

    /// Refuses a tensor version whose weights would not fit under `memory.max` beside
    /// what the pod uses now (the version it replaces included).
    async fn check_memory(&self, job: &Job, artifact: &Artifact) -> Result<(), String> {
        let (pod, path, device) = (self.pod.clone(), artifact.path.clone(), job.version.device);
        let (model, version) = (job.model.name.clone(), job.version.version.clone());
        blocking(move || {
            let need = MemoryNeed::of_artifact(memory::artifact_bytes(&path), device);
            memory::admit(&pod.memory(), need, (&model, &version), "")
                .map_err(|refused| refused.to_string())
        })
        .await
    }

    async fn load_tensor(
        &self,
        job: &Job,
        artifact: Artifact,
        signature: Signature,
        threads: usize,
        join: Option<SliceJoin>,
    ) -> Result<Version, String> {
        let (model, version) = (&job.model, &job.version);
        let (codec_model, model_path) = (model.clone(), artifact.path.clone());
        let codec = blocking(move || tokenizer::embed_codec(&codec_model, &model_path)).await?;
        let batching = model.batching.max_batch_size > 1 && signature.batchable();
        let settings = BatchSettings {
            max_batch_size: if batching {
                u64::from(model.batching.max_batch_size)
            } else {
                1
            },
            max_queue_delay: model.batching.max_queue_delay.get(),
            warmup_iterations: version.warmup_iterations,
            intra_op_threads: threads,
        };
        let metrics = self.state.metrics.version(&model.name, &version.version);
        let (format, device, path) = (model.format, version.device, artifact.path);
        let loader: Loader = Box::new(move || {
            // On the executor thread, before its first forward starts OpenMP threads
            // from it (they inherit its cgroup).
            if let Some(join) = &join {
                join.join_current_thread();
            }
            let backend = model::load(format, &path, device).map_err(|e| e.to_string())?;
            Ok((backend, signature))
        });
        let thread = format!("mp-{}-{}", model.name, version.version);
        let (executor, signature) =
            Executor::start(thread, settings, metrics.clone(), loader).await?;
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

    async fn load_generate(
        &self,
        job: &Job,
        artifact: Artifact,
        threads: usize,
        join: Option<SliceJoin>,
    ) -> Result<Version, String> {
        let (model, version) = (&job.model, &job.version);
        let metrics = &self.state.metrics;
        let start = generate::EngineStart {
            dir: artifact.path,
            threads,
            pod: self.pod.clone(),
            join,
            metrics: metrics.generation(&model.name, &version.version),
        };
        let engine = generate::start_engine(model, version, start).await?;
        Ok(Version::generate(
            model.name.clone(),
            version.version.clone(),
            artifact.digest,
            metrics.version(&model.name, &version.version),
            engine,
        ))
    }

    /// The turn to fetch into the cache folder of `source` (`None`: a local file).
    async fn fetch_turn(&self, source: &Source) -> Option<OwnedMutexGuard<()>> {
        let folder = cache_folder(source)?;
        let lock = {
            let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            fetching.retain(|_, lock| Arc::strong_count(lock) > 1);
            Arc::clone(fetching.entry(folder).or_default())
        };
        Some(lock.lock_owned().await)
    }
}

/// The cache folder a remote source is fetched into, by its digest.
fn cache_folder(source: &Source) -> Option<String> {
    match source {
        Source::Path(_) => None,
        Source::Http(http) => Some(format!("http/{}", http.sha256)),
        Source::Oci(oci) => Some(format!(
            "oci/{}",
            oci.reference.rsplit('@').next().unwrap_or(&oci.reference)
        )),
    }
}

/// Runs file reads and parsing on the blocking pool.
pub(super) async fn blocking<T, F>(work: F) -> Result<T, String>
where
    F: FnOnce() -> Result<T, String> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| format!("the load task did not finish: {err}"))?
}

/// The signature of a model from `source`: as [`signature_for`] says, where an `http`
/// model with no inputs in the config takes the `signature.json` published beside its URL
/// (downloaded once into its cache folder), as a local one does from beside its file.
async fn signature_of(
    fetcher: &Fetcher,
    model: &ModelConfig,
    source: &Source,
    artifact: &Artifact,
) -> Result<Signature, String> {
    let unfetched = match source {
        Source::Http(_) if model.inputs.is_empty() => fetcher
            .fetch_beside(source, artifact, SIGNATURE_FILE, None)
            .await
            .err(),
        _ => None,
    };
    let (model, path) = (model.clone(), artifact.path.clone());
    blocking(move || signature_for(&model, &path))
        .await
        .map_err(|err| match unfetched {
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

#[cfg(test)]
mod tests {
    use modelplane_config::{HttpSource, OciSource};

    use super::*;

    #[test]
    fn remote_sources_with_one_digest_share_a_cache_folder() {
        let http = |url: &str| {
            Source::Http(HttpSource {
                url: url.into(),
                sha256: "ab".repeat(32),
            })
        };
        assert_eq!(cache_folder(&Source::Path("/m/model.pt".into())), None);
        assert_eq!(
            cache_folder(&http("http://a/m.pt")),
            cache_folder(&http("http://b/m.pt"))
        );
        let oci = |reference: &str| {
            Source::Oci(OciSource {
                reference: reference.into(),
                plain_http: false,
            })
        };
        let digest = format!("sha256:{}", "cd".repeat(32));
        assert_eq!(
            cache_folder(&oci(&format!("r.io/a@{digest}"))),
            Some(format!("oci/{digest}"))
        );
    }
}
