//! Hot reload: polls the config file and local model files, loads new or changed
//! versions beside the serving ones, and publishes each version's result on its own. A
//! failed load keeps the previous instance serving and records why.
//!
//! The reloader task owns the catalog; nothing else writes it. Every watch interval it
//! re-reads the config, stamps the local files (on the blocking pool) and decides per
//! version what to do ([`plan::step`]). Each load runs as its own task, a few at a time,
//! and reports back; the reloader then swaps in a copy of the snapshot with just that
//! version changed, so a slow pull or a failing model never holds up another model's
//! swap. Versions that leave the config are dropped in the pass that sees it. Each load
//! carries an id: a load superseded by a newer config is stopped, and a result that is not
//! its version's latest load is dropped, never published over a newer one.
//!
//! Polling (rather than inotify) is deliberate: Kubernetes updates ConfigMap mounts by
//! swapping symlinks, which file watches miss or report inconsistently.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use modelplane_config::{ModelConfig, RuntimeConfig, VersionConfig};
use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};

use crate::catalog::{LoadState, VersionSlot};
use crate::server::{AppState, ConfigSource};
use load::{Job, Loads, Outcome};
use plan::{Key, Known, Step, Wanted};

mod generate;
mod load;
mod plan;
mod publish;
mod tokenizer;

/// The task that keeps the catalog in line with the config and the model files.
pub struct Reloader {
    source: ConfigSource,
    config: Arc<RuntimeConfig>,
    last_text: Option<String>,
    state: Arc<AppState>,
    loads: Arc<Loads>,
    versions: HashMap<Key, Tracked>,
    /// The id of the latest load started.
    last_load: u64,
    /// Every load of the first pass has finished.
    initialized: bool,
    /// What the serving authenticator was built from (identity config, key files).
    identity: crate::identity::Watch,
}

/// The reloader's record of one version.
struct Tracked {
    /// What the catalog shows for it.
    slot: VersionSlot,
    /// What the serving instance was loaded from.
    serving: Option<Wanted>,
    /// What the latest failed load was for, and why it failed.
    failed: Option<(Wanted, String)>,
    /// The load under way.
    loading: Option<Loading>,
}

/// A load under way.
struct Loading {
    id: u64,
    wanted: Wanted,
    task: AbortHandle,
}

/// What wakes the reloader.
enum Event {
    /// The watch interval passed.
    Pass,
    /// A load finished.
    Finished(Box<Finished>),
    /// A superseded load was stopped.
    Stopped,
}

/// What a load task reports.
struct Finished {
    key: Key,
    id: u64,
    outcome: Outcome,
}

impl Reloader {
    /// A reloader starting from an already validated config.
    pub fn new(source: ConfigSource, config: RuntimeConfig, state: Arc<AppState>) -> Self {
        let loads = Arc::new(Loads::new(Arc::clone(&state), load::MAX_CONCURRENT_LOADS));
        let identity = crate::identity::Watch::new(&config.identity, &state.authenticator.load());
        Self {
            source,
            config: Arc::new(config),
            last_text: None,
            state,
            loads,
            versions: HashMap::new(),
            last_load: 0,
            initialized: false,
            identity,
        }
    }

    /// Reconciles now and then every watch interval, publishing each load as it finishes,
    /// until `stop` turns true. Once every load of the first pass has finished, `initial`
    /// receives why each model without a serving version failed.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        initial: oneshot::Sender<Vec<String>>,
    ) {
        let mut initial = Some(initial);
        let mut running = JoinSet::new();
        let mut next_pass = tokio::time::Instant::now();
        let mut passed = false;
        loop {
            let event = tokio::select! {
                () = tokio::time::sleep_until(next_pass) => Event::Pass,
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    joined.map_or(Event::Stopped, |finished| Event::Finished(Box::new(finished)))
                }
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match event {
                Event::Pass => {
                    self.reread_config().await;
                    self.identity.pass(&self.config.identity, &self.state).await;
                    self.reconcile(&mut running).await;
                    passed = true;
                    let interval = self.config.server.watch_interval.get();
                    next_pass = tokio::time::Instant::now() + interval;
                }
                Event::Finished(finished) => self.finish(*finished),
                Event::Stopped => {}
            }
            if passed && !self.initialized && self.versions.values().all(|v| v.loading.is_none()) {
                self.initialized = true;
                self.publish();
                if let Some(initial) = initial.take() {
                    let _ = initial.send(publish::unservable(&self.state.catalog.load()));
                }
            }
        }
    }

    async fn reread_config(&mut self) {
        let ConfigSource::File(path) = &self.source else {
            return;
        };
        let read = path.clone();
        let text = match tokio::task::spawn_blocking(move || std::fs::read_to_string(read)).await {
            Ok(Ok(text)) => text,
            _ => {
                tracing::warn!(path = %path.display(), "config file unreadable; keeping the current config");
                return;
            }
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        match RuntimeConfig::from_yaml(&text) {
            // The text the server started from (read before the first pass).
            Ok(config) if config == *self.config => {}
            Ok(config) => {
                tracing::info!(path = %path.display(), "config changed");
                self.state.tenancy.update(
                    &config.tenants,
                    &config.fairness,
                    config.identity.anonymous_tenant(),
                    std::time::Instant::now(),
                );
                self.config = Arc::new(config);
            }
            Err(err) => {
                tracing::error!(path = %path.display(), error = %err, "new config refused; keeping the current one");
                self.state.metrics.config_reload_failed();
            }
        }
        self.last_text = Some(text);
    }

    /// One pass: stamps the files, starts the loads the config and files call for, and
    /// publishes what changed at once (removals, config, loads started).
    async fn reconcile(&mut self, running: &mut JoinSet<Finished>) {
        let config = Arc::clone(&self.config);
        // Tenant cgroup slices follow the config (no I/O unless they changed).
        self.loads.configure_tenants(&config.tenants);
        let models = Arc::clone(&config);
        let Ok(mut wanted) =
            tokio::task::spawn_blocking(move || plan::wanted_all(&models.models)).await
        else {
            tracing::error!("stamping the model files did not finish; trying again next pass");
            return;
        };
        for model in &config.models {
            for version in &model.versions {
                let key = (model.name.clone(), version.version.clone());
                if let Some(wanted) = wanted.remove(&key) {
                    self.reconcile_version(model, version, key, wanted, running);
                }
            }
        }
        self.publish();
    }

    /// Keeps a version as it is, or starts its (re)load.
    fn reconcile_version(
        &mut self,
        model: &ModelConfig,
        version: &VersionConfig,
        key: Key,
        wanted: Wanted,
        running: &mut JoinSet<Finished>,
    ) {
        let tracked = self.versions.entry(key.clone()).or_insert_with(|| Tracked {
            slot: publish::loading(),
            serving: None,
            failed: None,
            loading: None,
        });
        let known = Known {
            serving: tracked.slot.serving.as_ref().and(tracked.serving.as_ref()),
            failed: tracked.failed.as_ref().map(|(wanted, _)| wanted),
            loading: tracked.loading.as_ref().map(|loading| &loading.wanted),
        };
        let step = plan::step(&wanted, known);
        if step != Step::Wait
            && let Some(superseded) = tracked.loading.take()
        {
            tracing::info!(model = %model.name, version = %version.version, "a newer config supersedes the load under way");
            superseded.task.abort();
        }
        let state = match step {
            Step::Wait => return,
            Step::Serve => {
                tracked.failed = None;
                LoadState::Ready
            }
            Step::KeepFailed => {
                let reason = tracked.failed.as_ref().map(|(_, reason)| reason.clone());
                LoadState::Failed(reason.unwrap_or_default())
            }
            Step::Load => {
                self.last_load += 1;
                let id = self.last_load;
                let job = Job {
                    model: model.clone(),
                    version: version.clone(),
                    cache_dir: self.config.server.cache_dir.clone().into(),
                    intra_op_threads: self.config.server.intra_op_threads,
                };
                let loads = Arc::clone(&self.loads);
                let reported = key.clone();
                let task = running.spawn(async move {
                    let outcome = AssertUnwindSafe(loads.run(&job))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err("the load panicked".to_owned()));
                    Finished {
                        key: reported,
                        id,
                        outcome,
                    }
                });
                tracked.loading = Some(Loading { id, wanted, task });
                LoadState::Loading
            }
        };
        if step == Step::Load || tracked.slot.state != state {
            tracked.slot.state = state;
            record_state(&self.state, &key, &tracked.slot);
        }
    }

    /// Publishes a finished load, unless a newer load or config superseded it.
    fn finish(&mut self, finished: Finished) {
        let Finished { key, id, outcome } = finished;
        let (model, label) = (&key.0, &key.1);
        let Some(tracked) = self
            .versions
            .get_mut(&key)
            .filter(|tracked| tracked.loading.as_ref().is_some_and(|l| l.id == id))
        else {
            // Dropping the outcome stops its executor: it never served.
            tracing::info!(model = %model, version = %label, "a superseded load finished; dropped");
            return;
        };
        let Some(Loading { wanted, .. }) = tracked.loading.take() else {
            return;
        };
        match outcome {
            Ok((instance, seconds)) => {
                tracing::info!(model = %model, version = %label, seconds, "version ready");
                self.state.metrics.loaded(model, label, seconds);
                tracked.slot = VersionSlot {
                    serving: Some(Arc::new(instance)),
                    state: LoadState::Ready,
                };
                tracked.serving = Some(wanted);
                tracked.failed = None;
            }
            Err(reason) => {
                let keeps_serving = tracked.slot.serving.is_some();
                tracing::error!(model = %model, version = %label, %reason, keeps_serving, "load failed");
                self.state.metrics.load_failed(model, label);
                tracked.slot.state = LoadState::Failed(reason.clone());
                tracked.failed = Some((wanted, reason));
                record_state(&self.state, &key, &tracked.slot);
            }
        }
        self.publish();
    }

    /// Swaps in the catalog the config and the versions call for, when it differs from
    /// the one serving; forgets the versions it no longer holds.
    fn publish(&mut self) {
        let configured: HashSet<(&str, &str)> = self
            .config
            .models
            .iter()
            .flat_map(|m| {
                m.versions
                    .iter()
                    .map(|v| (m.name.as_str(), v.version.as_str()))
            })
            .collect();
        let is_configured =
            |(model, label): &Key| configured.contains(&(model.as_str(), label.as_str()));
        for (key, tracked) in &mut self.versions {
            // No longer configured: its load has no purpose (it may keep serving in place
            // of configured versions that do not, as it was).
            if !is_configured(key)
                && let Some(loading) = tracked.loading.take()
            {
                loading.task.abort();
                tracked.slot.state = match &tracked.failed {
                    Some((_, reason)) => LoadState::Failed(reason.clone()),
                    None => LoadState::Ready,
                };
            }
        }
        let before = self.state.catalog.load_full();
        let slot_of = |key: &Key| self.versions.get(key).map(|t| t.slot.clone());
        let next = publish::catalog_of(&self.config, slot_of, &before, self.initialized);
        self.versions.retain(|key, _| {
            is_configured(key)
                || next
                    .models
                    .get(&key.0)
                    .is_some_and(|entry| entry.slot(&key.1).is_some())
        });
        if !publish::same_catalog(&before, &next) {
            self.state.catalog.store(Arc::new(next));
        }
    }
}

/// Records a version's state in `modelplane_model_state`: a failed reload whose previous
/// instance serves counts as ready.
fn record_state(state: &AppState, (model, label): &Key, slot: &VersionSlot) {
    let shown = match &slot.state {
        LoadState::Failed(_) if slot.serving.is_some() => &LoadState::Ready,
        other => other,
    };
    state.metrics.set_state(model, label, shown.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reloader() -> Reloader {
        let yaml = "models: [{name: m, versions: [{version: '1', source: {path: /nowhere/m.pt}}]}]";
        let config = RuntimeConfig::from_yaml(yaml).expect("config");
        let state = Arc::new(AppState::new());
        Reloader::new(
            ConfigSource::Inline(Box::new(config.clone())),
            config,
            state,
        )
    }

    fn shown(reloader: &Reloader) -> Option<LoadState> {
        let catalog = reloader.state.catalog.load();
        Some(catalog.models.get("m")?.slot("1")?.state.clone())
    }

    #[tokio::test]
    async fn a_load_that_is_no_longer_its_versions_latest_is_dropped() {
        let mut reloader = reloader();
        let mut running = JoinSet::new();
        reloader.reconcile(&mut running).await;
        assert_eq!(shown(&reloader), Some(LoadState::Loading));
        // A newer load of the version started meanwhile.
        let key = ("m".to_owned(), "1".to_owned());
        let newer = reloader.last_load + 1;
        let tracked = reloader.versions.get_mut(&key).expect("tracked");
        tracked.loading.as_mut().expect("loading").id = newer;

        let finished = running.join_next().await.expect("a load").expect("ran");
        assert!(
            finished.outcome.is_err(),
            "no signature.json beside the file"
        );
        reloader.finish(finished);
        assert_eq!(shown(&reloader), Some(LoadState::Loading), "dropped");

        let outcome = Err("newer".to_owned());
        reloader.finish(Finished {
            key,
            id: newer,
            outcome,
        });
        assert_eq!(shown(&reloader), Some(LoadState::Failed("newer".into())));
        let state = r#"modelplane_model_state{model="m",version="1",state="failed"} 1"#;
        assert!(reloader.state.metrics.encode().contains(state));
    }
}
