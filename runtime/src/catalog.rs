//! What is served right now: an immutable snapshot of models and their loaded versions,
//! swapped atomically as a whole when anything changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use modelplane_config::{Limits, ModelConfig};
use modelplane_fair::Fairness;
use modelplane_generate::engine::Engine;
use modelplane_generate::text::TextCodec;
use tokio::sync::oneshot;

use crate::batch::{Executor, Job};
use crate::error::InferError;
use crate::metrics::VersionMetrics;
use crate::model::Signature;
use crate::serve::Split;
use crate::tensor::TensorData;

/// What runs a version's requests.
enum Runner {
    /// Tensors in, tensors out: the batching executor thread.
    Tensor(Box<Executor>),
    /// Text generation: the continuous-batching engine thread.
    Generate(Engine),
}

/// A loaded, warmed-up model version that takes requests.
pub struct Version {
    /// Model name.
    pub model: String,
    /// Version label.
    pub label: String,
    /// Inputs and outputs (outputs probed at warm-up when not configured).
    pub signature: Signature,
    /// Whether requests are batched on dimension 0.
    pub batching: bool,
    /// Digest of the artifact it was loaded from, when known.
    pub digest: Option<String>,
    /// Request metrics of this version.
    pub metrics: VersionMetrics,
    runner: Runner,
    text_codec: Option<Arc<TextCodec>>,
    in_flight: AtomicUsize,
    /// The version's circuit breaker (used when its model configures one); a new
    /// version starts closed.
    pub breaker: crate::serve::breaker::Breaker,
    /// The adaptive in-flight limit, made when `limits.adaptive` is first seen.
    limiter: std::sync::OnceLock<crate::serve::limiter::Limiter>,
}

impl Version {
    /// Wraps a started executor; `text_codec` is the tokenizer found beside an
    /// embedding model, if any.
    pub fn new(
        model: String,
        label: String,
        signature: Signature,
        batching: bool,
        digest: Option<String>,
        metrics: VersionMetrics,
        executor: Executor,
    ) -> Self {
        Self {
            model,
            label,
            signature,
            batching,
            digest,
            metrics,
            runner: Runner::Tensor(Box::new(executor)),
            text_codec: None,
            in_flight: AtomicUsize::new(0),
            breaker: crate::serve::breaker::Breaker::default(),
            limiter: std::sync::OnceLock::new(),
        }
    }

    /// Wraps a started generation engine; its signature is [`Signature::text_generation`].
    pub fn generate(
        model: String,
        label: String,
        digest: Option<String>,
        metrics: VersionMetrics,
        engine: Engine,
    ) -> Self {
        Self {
            model,
            label,
            signature: Signature::text_generation(),
            batching: false,
            digest,
            metrics,
            text_codec: Some(Arc::clone(engine.codec())),
            runner: Runner::Generate(engine),
            in_flight: AtomicUsize::new(0),
            breaker: crate::serve::breaker::Breaker::default(),
            limiter: std::sync::OnceLock::new(),
        }
    }

    /// Attaches the tokenizer that turns text into this (embedding) model's inputs.
    #[must_use]
    pub fn with_text_codec(mut self, codec: Arc<TextCodec>) -> Self {
        self.text_codec = Some(codec);
        self
    }

    /// The generation engine of a `generate` model; a 400 for any other model.
    pub fn engine(&self) -> Result<&Engine, InferError> {
        match &self.runner {
            Runner::Generate(engine) => Ok(engine),
            Runner::Tensor(_) => Err(InferError::WrongTask(format!(
                "model {:?} does not generate text (its task is not generate)",
                self.model
            ))),
        }
    }

    /// The tokenizer of this version: a generate or embedding model's configured
    /// `tokenizer`, else the one its folder has (`tokenizer.json`, or what a generate
    /// model's `config.json` names).
    pub fn text_codec(&self) -> Option<&Arc<TextCodec>> {
        self.text_codec.as_ref()
    }

    /// Runs one admitted tensor request on the executor, queued fairly in its tenant's
    /// flow, within the queue limit and the deadline; a request whose future is dropped
    /// leaves the queue unrun.
    pub async fn run(
        &self,
        inputs: Vec<TensorData>,
        rows: u64,
        deadline: Instant,
        limits: &Limits,
        fair: Fairness,
    ) -> Result<Vec<TensorData>, InferError> {
        let Runner::Tensor(executor) = &self.runner else {
            return Err(self.generates_text());
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            enqueued: Instant::now(),
            deadline,
            reply,
            fair,
        };
        executor.submit(job, limits.max_queue as usize)?;
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InferError::Internal("the model executor stopped".into())),
            Err(_) => Err(InferError::DeadlineExceeded(
                "deadline exceeded while waiting for the model".into(),
            )),
        }
    }

    /// Takes a place among the requests in flight, if fewer than `max` hold one; the
    /// admission decision is `serve::admit`'s.
    pub(crate) fn enter(&self, max: usize) -> bool {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.metrics.in_flight.inc();
        true
    }

    /// The in-flight limit under `limits`: the adaptive one when configured (made on
    /// first use, at its initial limit), else `maxInFlight`.
    pub(crate) fn concurrency_limit(&self, limits: &modelplane_config::Limits) -> usize {
        match &limits.adaptive {
            Some(adaptive) => self.limiter(adaptive, limits.max_in_flight).limit(),
            None => limits.max_in_flight as usize,
        }
    }

    /// Feeds the adaptive limit (when `limits` has one) a latency sample.
    pub(crate) fn sample_latency(
        &self,
        limits: &modelplane_config::Limits,
        signal: crate::serve::limiter::Signal,
        latency: std::time::Duration,
    ) {
        let Some(adaptive) = &limits.adaptive else {
            return;
        };
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let limiter = self.limiter(adaptive, limits.max_in_flight);
        if let Some(update) = limiter.sample(
            adaptive,
            limits.max_in_flight,
            signal,
            latency,
            in_flight,
            std::time::Instant::now(),
        ) {
            self.metrics.set_concurrency_limit(update.limit);
            tracing::debug!(
                model = %self.model,
                version = %self.label,
                limit = update.limit,
                gradient = update.gradient,
                "adaptive concurrency limit moved"
            );
        }
    }

    fn limiter(
        &self,
        adaptive: &modelplane_config::AdaptiveConcurrency,
        max_in_flight: u32,
    ) -> &crate::serve::limiter::Limiter {
        self.limiter.get_or_init(|| {
            let limiter = crate::serve::limiter::Limiter::new(adaptive, max_in_flight);
            self.metrics.set_concurrency_limit(limiter.limit());
            limiter
        })
    }

    /// Gives back a place taken by [`Version::enter`].
    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.metrics.in_flight.dec();
    }

    /// The error of a tensor request sent to a generate model.
    pub fn generates_text(&self) -> InferError {
        InferError::WrongTask(format!(
            "model {:?} generates text: use /v1/completions, /v1/chat/completions, \
             or gRPC ModelInfer/ModelStreamInfer with a text_input",
            self.model
        ))
    }

    /// Whether this version generates text (its runner is a generation engine).
    pub fn generates(&self) -> bool {
        matches!(self.runner, Runner::Generate(_))
    }
}

/// Load state of one configured version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadState {
    /// Being fetched, loaded or warmed up.
    Loading,
    /// Serving.
    Ready,
    /// The last load failed; an older instance may still serve.
    Failed(String),
}

impl LoadState {
    /// The state's name in metadata and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Loading => "loading",
            Self::Ready => "ready",
            Self::Failed(_) => "failed",
        }
    }
}

/// One configured version: the instance serving it (if any) and its load state.
#[derive(Clone)]
pub struct VersionSlot {
    /// The instance taking requests; kept while a newer load fails.
    pub serving: Option<Arc<Version>>,
    /// Outcome of the latest load attempt.
    pub state: LoadState,
}

/// A model and its versions, in config order.
#[derive(Clone)]
pub struct ModelEntry {
    /// The model's current config (limits apply without a reload).
    pub config: Arc<ModelConfig>,
    /// Versions by label, in config order.
    pub versions: Vec<(String, VersionSlot)>,
    /// The model's canary split, compiled from `config.canary`.
    pub split: Option<Arc<Split>>,
}

impl ModelEntry {
    /// The entry of `config` with `versions`, replacing `before` (the model's entry in the
    /// catalog it succeeds, if any): the same config keeps `before`'s split, a changed one
    /// compiles a new split that continues `before`'s request counter, so that a weight
    /// change keeps the split exact.
    pub fn new(
        config: Arc<ModelConfig>,
        versions: Vec<(String, VersionSlot)>,
        before: Option<&ModelEntry>,
    ) -> Self {
        let split = match before {
            Some(before) if Arc::ptr_eq(&before.config, &config) => before.split.clone(),
            _ => config.canary.as_ref().map(|canary| {
                let counter = before
                    .and_then(|before| before.split.as_ref())
                    .map(|split| Arc::clone(split.counter()))
                    .unwrap_or_default();
                Arc::new(Split::new(&config.name, canary, counter))
            }),
        };
        Self {
            config,
            versions,
            split,
        }
    }

    /// The canary split and its candidate's instance, when the candidate is loaded and
    /// ready: a candidate that is loading or whose load failed takes no split traffic
    /// (requests that name it still reach an instance that serves it).
    pub fn canary(&self) -> Option<(&Split, &Arc<Version>)> {
        let split = self.split.as_deref()?;
        match self.slot(split.candidate())? {
            VersionSlot {
                serving: Some(candidate),
                state: LoadState::Ready,
            } => Some((split, candidate)),
            _ => None,
        }
    }

    /// The slot of a version label.
    pub fn slot(&self, label: &str) -> Option<&VersionSlot> {
        self.versions
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, slot)| slot)
    }

    /// The instance serving requests that name no version: the default version when
    /// it serves, else the last listed version that does.
    pub fn default_serving(&self) -> Option<&Arc<Version>> {
        let default = self.config.default_version();
        default
            .and_then(|label| self.slot(label))
            .and_then(|slot| slot.serving.as_ref())
            .or_else(|| {
                self.versions
                    .iter()
                    .rev()
                    .find_map(|(_, slot)| slot.serving.as_ref())
            })
    }

    /// Resolves a request's version (`None`: the default).
    pub fn resolve(&self, version: Option<&str>) -> Result<&Arc<Version>, InferError> {
        let name = &self.config.name;
        match version {
            None => self.default_serving().ok_or_else(|| {
                InferError::NotReady(format!(
                    "model {name:?} has no ready version{}",
                    self.reason_suffix(None)
                ))
            }),
            Some(label) => {
                let slot = self.slot(label).ok_or_else(|| {
                    InferError::NotFound(format!("model {name:?} has no version {label:?}"))
                })?;
                slot.serving.as_ref().ok_or_else(|| {
                    InferError::NotReady(format!(
                        "model {name:?} version {label:?} is not ready{}",
                        self.reason_suffix(Some(label))
                    ))
                })
            }
        }
    }

    fn reason_suffix(&self, label: Option<&str>) -> String {
        let failed = self
            .versions
            .iter()
            .filter(|(l, _)| label.is_none_or(|want| want == l));
        let reasons: Vec<String> = failed
            .filter_map(|(l, slot)| match &slot.state {
                LoadState::Failed(reason) => Some(format!("version {l}: {reason}")),
                _ => None,
            })
            .collect();
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join("; "))
        }
    }
}

/// Every model served, as one immutable snapshot.
#[derive(Clone, Default)]
pub struct Catalog {
    /// Models by name.
    pub models: HashMap<String, ModelEntry>,
    /// False until the reloader has made its first pass over the config.
    pub initialized: bool,
}

impl Catalog {
    /// Finds a model.
    pub fn model(&self, name: &str) -> Result<&ModelEntry, InferError> {
        self.models
            .get(name)
            .ok_or_else(|| InferError::NotFound(format!("unknown model {name:?}")))
    }

    /// Resolves a model and version to the instance that serves it.
    pub fn resolve(
        &self,
        model: &str,
        version: Option<&str>,
    ) -> Result<(&ModelEntry, Arc<Version>), InferError> {
        let entry = self.model(model)?;
        let version = entry.resolve(version)?;
        Ok((entry, Arc::clone(version)))
    }

    /// Whether the config was applied and every model has a version serving
    /// unversioned requests.
    pub fn ready(&self) -> bool {
        self.initialized
            && self
                .models
                .values()
                .all(|entry| entry.default_serving().is_some())
    }
}

/// Versions on a stand-in backend, and entries of them, for the tests of what reads
/// the catalog.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::batch::{BatchSettings, Loader};
    use crate::metrics::Metrics;
    use crate::model::{Backend, TensorSpec};
    use crate::tensor::DataType;

    struct Identity;

    impl Backend for Identity {
        fn forward(&self, inputs: &[tch::Tensor]) -> Result<Vec<tch::Tensor>, String> {
            Ok(vec![inputs[0].shallow_clone()])
        }
        fn device(&self) -> tch::Device {
            tch::Device::Cpu
        }
    }

    /// A ready instance of model `m` version `label`, counting into `metrics`.
    pub(crate) async fn version_in(metrics: &Metrics, label: &str) -> Arc<Version> {
        let signature = Signature {
            inputs: vec![TensorSpec {
                name: "x".into(),
                datatype: DataType::Fp32,
                shape: vec![-1],
            }],
            outputs: Vec::new(),
        };
        let settings = BatchSettings {
            max_batch_size: 1,
            max_queue_delay: std::time::Duration::ZERO,
            warmup_iterations: 1,
            intra_op_threads: 1,
        };
        let metrics = metrics.version("m", label);
        let loader: Loader =
            Box::new(move || Ok((Box::new(Identity) as Box<dyn Backend>, signature)));
        let (executor, signature) =
            Executor::start(label.into(), settings, metrics.clone(), loader)
                .await
                .expect("starts");
        Arc::new(Version::new(
            "m".into(),
            label.into(),
            signature,
            false,
            None,
            metrics,
            executor,
        ))
    }

    /// A ready instance of model `m` version `label`.
    pub(crate) async fn version(label: &str) -> Arc<Version> {
        version_in(&Metrics::new(), label).await
    }

    /// Model `m` with versions `1` and `2` (`extra`: more of the model's YAML), showing
    /// `slots`.
    pub(crate) fn entry_of(
        extra: &str,
        slots: Vec<(&str, VersionSlot)>,
        before: Option<&ModelEntry>,
    ) -> ModelEntry {
        let yaml = format!(
            "models: [{{name: m, versions: [{{version: '1', source: {{path: a}}}}, \
             {{version: '2', source: {{path: b}}}}]{extra}}}]"
        );
        let config = modelplane_config::RuntimeConfig::from_yaml(&yaml)
            .expect("config")
            .models
            .remove(0);
        let versions = slots
            .into_iter()
            .map(|(label, slot)| (label.to_owned(), slot))
            .collect();
        ModelEntry::new(Arc::new(config), versions, before)
    }

    /// A slot that `version` serves.
    pub(crate) fn serving(version: &Arc<Version>) -> VersionSlot {
        VersionSlot {
            serving: Some(Arc::clone(version)),
            state: LoadState::Ready,
        }
    }

    /// A slot whose load failed, with nothing serving.
    pub(crate) fn failed(reason: &str) -> VersionSlot {
        VersionSlot {
            serving: None,
            state: LoadState::Failed(reason.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn entry(default: Option<&str>, slots: Vec<(&str, VersionSlot)>) -> ModelEntry {
        let extra = default.map_or(String::new(), |v| format!(", defaultVersion: '{v}'"));
        entry_of(&extra, slots, None)
    }

    #[tokio::test]
    async fn unversioned_requests_go_to_the_default_version() {
        let (one, two) = (version("1").await, version("2").await);
        let entry = entry(Some("1"), vec![("1", serving(&one)), ("2", serving(&two))]);
        assert_eq!(entry.resolve(None).expect("serves").label, "1");
        assert_eq!(entry.resolve(Some("2")).expect("serves").label, "2");
    }

    #[tokio::test]
    async fn a_default_that_never_loaded_falls_back_to_a_serving_version() {
        let one = version("1").await;
        let entry = entry(
            None,
            vec![("1", serving(&one)), ("2", failed("corrupt file"))],
        );
        assert_eq!(entry.resolve(None).expect("falls back").label, "1");
        let Err(InferError::NotReady(message)) = entry.resolve(Some("2")) else {
            panic!("version 2 must be reported not ready");
        };
        assert!(message.contains("corrupt file"), "{message}");
        assert!(matches!(
            entry.resolve(Some("3")),
            Err(InferError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_tensor_version_has_no_engine_and_no_tokenizer() {
        let one = version("1").await;
        let Err(InferError::WrongTask(message)) = one.engine() else {
            panic!("a tensor model must not offer an engine");
        };
        assert!(message.contains("not generate"), "{message}");
        assert!(one.text_codec().is_none());
    }

    #[tokio::test]
    async fn a_catalog_is_ready_only_after_the_first_pass_with_every_model_serving() {
        let one = version("1").await;
        let mut catalog = Catalog::default();
        assert!(!catalog.ready());
        catalog.initialized = true;
        catalog.models.insert(
            "m".into(),
            entry(None, vec![("1", failed("x")), ("2", failed("y"))]),
        );
        assert!(!catalog.ready());
        catalog.models.insert(
            "m".into(),
            entry(None, vec![("1", serving(&one)), ("2", failed("y"))]),
        );
        assert!(catalog.ready());
    }
}
