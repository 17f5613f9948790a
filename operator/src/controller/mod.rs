//! Controllers, one file per kind, and what they share: the [`Context`] with the
//! watch caches the reconcilers read instead of the API server.

pub mod canary;
pub mod model_deployment;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Pod, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Client, Resource,
    runtime::{
        events::Recorder,
        reflector::{ObjectRef, Store},
    },
};

use crate::{desired::Defaults, metrics::Metrics, verification::ArtifactVerifier};

/// In-memory copies of the objects the operator owns (filtered by its
/// managed-by label) and of the namespaces, kept current by watches.
#[derive(Clone)]
pub struct Cache {
    /// Owned Deployments.
    pub deployments: Store<Deployment>,
    /// Owned Services.
    pub services: Store<Service>,
    /// Owned ConfigMaps.
    pub config_maps: Store<ConfigMap>,
    /// Owned PodDisruptionBudgets.
    pub pod_disruption_budgets: Store<PodDisruptionBudget>,
    /// Runtime pods.
    pub pods: Store<Pod>,
    /// Namespaces (for the tenant label).
    pub namespaces: Store<Namespace>,
}

/// Looks up a namespaced object in a store.
pub fn cached<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

impl Cache {
    /// Whether every watch has delivered its initial list; before that, a
    /// missing object may only be not-yet-seen, so reconciles wait.
    pub fn is_synced(&self) -> bool {
        fn ready<K: kube::runtime::reflector::Lookup + Clone + 'static>(store: &Store<K>) -> bool
        where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            futures::FutureExt::now_or_never(store.wait_until_ready()).is_some_and(|r| r.is_ok())
        }
        ready(&self.deployments)
            && ready(&self.services)
            && ready(&self.config_maps)
            && ready(&self.pod_disruption_budgets)
            && ready(&self.pods)
            && ready(&self.namespaces)
    }

    /// The runtime pods of the ModelDeployment `name` in `namespace`.
    pub fn pods_of(&self, namespace: &str, name: &str) -> Vec<Pod> {
        self.pods
            .state()
            .into_iter()
            .filter(|pod| {
                let labels = pod.metadata.labels.as_ref();
                pod.metadata.namespace.as_deref() == Some(namespace)
                    && labels
                        .and_then(|l| l.get("app.kubernetes.io/instance"))
                        .map(String::as_str)
                        == Some(name)
            })
            .map(|pod| (*pod).clone())
            .collect()
    }

    /// Labels of a namespace, if it is known.
    pub fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.clone())
    }
}

/// Per-object retry delays after failed reconciles.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

/// Delay before retry number `failures` (1-based): 5s doubling up to 5 minutes.
pub fn backoff_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(5 * 2u64.pow(exponent)).min(Duration::from_secs(300))
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        backoff_delay(*count)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}

/// What every reconcile gets.
pub struct Context {
    /// API client for writes and existence checks.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Defaults for unset spec fields.
    pub defaults: Defaults,
    /// Watch caches.
    pub cache: Cache,
    /// Retry delays.
    pub backoff: Backoff,
    /// Resolves and verifies images and models before they roll out.
    pub verifier: Arc<dyn ArtifactVerifier>,
    /// Revisions refused recently, not re-checked until their hold ends.
    pub holds: model_deployment::Holds,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn success_resets_the_backoff() {
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("a"), Duration::from_secs(5));
        assert_eq!(backoff.failed("a"), Duration::from_secs(10));
        assert_eq!(backoff.failed("b"), Duration::from_secs(5));
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(5));
    }
}
