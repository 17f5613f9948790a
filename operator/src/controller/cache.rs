//! The watch caches the reconcilers read instead of the API server, and the
//! index that finds a ModelDeployment's pods without scanning every cached pod.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, RwLock},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Pod, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Resource,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use modelplane_api::{ModelDeployment, canary::Canary, tenant_quota::TenantQuota};

/// Label naming the ModelDeployment a runtime pod belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// In-memory copies of the objects the operator owns (filtered by its
/// managed-by label) and of the namespaces, kept current by watches.
///
/// What each store keeps of an object is decided in [`super::projection`].
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
    /// Runtime pods (projected: only what the health decisions read).
    pub pods: Store<Pod>,
    /// Which cached pods belong to which ModelDeployment.
    pub pod_index: PodIndex,
    /// Namespaces (for the tenant label).
    pub namespaces: Store<Namespace>,
    /// TenantQuotas (cluster-scoped): their admission records gate rollouts.
    pub tenant_quotas: Store<TenantQuota>,
    /// Canaries: their status says which candidate runs beside stable, at which weight.
    pub canaries: Store<Canary>,
    /// ModelDeployments (the controller's own store): what model a fallback serves.
    pub model_deployments: Store<ModelDeployment>,
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
            && ready(&self.tenant_quotas)
            && ready(&self.canaries)
    }

    /// The runtime pods of the ModelDeployment `name` in `namespace`; costs a
    /// lookup per pod of that ModelDeployment, not a pass over every cached pod.
    pub fn pods_of(&self, namespace: &str, name: &str) -> Vec<Pod> {
        self.pod_index
            .pods_of(namespace, name)
            .iter()
            .filter_map(|pod| cached(&self.pods, namespace, pod))
            // The index follows the store by one event; a pod relabelled in between is not ours.
            .filter(|pod| instance_of(pod) == Some(name))
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

/// The ModelDeployment a pod belongs to, by its instance label.
pub fn instance_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(INSTANCE_LABEL)
        .map(String::as_str)
}

/// Names of the cached runtime pods by ModelDeployment, kept current from the
/// same pod watch events that feed the pod store.
///
/// Cloning shares the index.
#[derive(Clone, Default)]
pub struct PodIndex {
    inner: Arc<RwLock<IndexState>>,
}

#[derive(Default)]
struct IndexState {
    live: Owners,
    /// Built while a (re-)list is delivered, swapped in when it is complete,
    /// like the reflector's store.
    relisting: Option<Owners>,
}

/// Namespace and name.
type Key = (String, String);

#[derive(Default)]
struct Owners {
    /// (namespace, ModelDeployment) → names of its pods.
    pods: HashMap<Key, BTreeSet<String>>,
    /// (namespace, pod) → its ModelDeployment, to unindex a pod whose label changed.
    owner: HashMap<Key, String>,
}

impl Owners {
    fn insert(&mut self, pod: &Pod) {
        let Some((namespace, name)) = pod_key(pod) else {
            return;
        };
        self.remove(&namespace, &name);
        if let Some(instance) = instance_of(pod) {
            self.pods
                .entry((namespace.clone(), instance.to_owned()))
                .or_default()
                .insert(name.clone());
            self.owner.insert((namespace, name), instance.to_owned());
        }
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let Some(instance) = self.owner.remove(&key) else {
            return;
        };
        let owner = (key.0, instance);
        if let Some(names) = self.pods.get_mut(&owner) {
            names.remove(name);
            if names.is_empty() {
                self.pods.remove(&owner);
            }
        }
    }
}

fn pod_key(pod: &Pod) -> Option<Key> {
    Some((pod.metadata.namespace.clone()?, pod.metadata.name.clone()?))
}

impl PodIndex {
    /// An index of a fixed set of pods (tests, measurements).
    pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Self {
        let index = Self::default();
        {
            let mut state = index.write();
            for pod in pods {
                state.live.insert(pod);
            }
        }
        index
    }

    /// Applies one pod watch event.
    pub fn apply(&self, event: &watcher::Event<Pod>) {
        let mut state = self.write();
        match event {
            watcher::Event::Apply(pod) => state.live.insert(pod),
            watcher::Event::Delete(pod) => {
                if let Some((namespace, name)) = pod_key(pod) {
                    state.live.remove(&namespace, &name);
                }
            }
            watcher::Event::Init => state.relisting = Some(Owners::default()),
            watcher::Event::InitApply(pod) => state.relisting.get_or_insert_default().insert(pod),
            watcher::Event::InitDone => state.live = state.relisting.take().unwrap_or_default(),
        }
    }

    /// Names of the pods of the ModelDeployment `name` in `namespace`.
    pub fn pods_of(&self, namespace: &str, name: &str) -> Vec<String> {
        let state = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .live
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use kube::{api::ObjectMeta, runtime::reflector};

    use super::*;

    fn pod(namespace: &str, name: &str, instance: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                labels: instance
                    .map(|i| BTreeMap::from([(INSTANCE_LABEL.to_owned(), i.to_owned())])),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn names(index: &PodIndex, namespace: &str, md: &str) -> Vec<String> {
        index.pods_of(namespace, md)
    }

    #[test]
    fn the_index_follows_adds_updates_and_deletes() {
        let index = PodIndex::default();
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(pod("a", "m1-x", Some("m1"))));
        index.apply(&watcher::Event::InitApply(pod("a", "m2-x", Some("m2"))));
        index.apply(&watcher::Event::InitApply(pod("b", "m1-y", Some("m1"))));
        index.apply(&watcher::Event::InitApply(pod("a", "stray", None)));
        assert!(
            names(&index, "a", "m1").is_empty(),
            "a list is not seen before it is complete"
        );
        index.apply(&watcher::Event::InitDone);
        assert_eq!(names(&index, "a", "m1"), ["m1-x"]);
        assert_eq!(names(&index, "b", "m1"), ["m1-y"]);

        index.apply(&watcher::Event::Apply(pod("a", "m1-z", Some("m1"))));
        assert_eq!(names(&index, "a", "m1"), ["m1-x", "m1-z"]);
        // A pod relabelled to another ModelDeployment moves.
        index.apply(&watcher::Event::Apply(pod("a", "m1-x", Some("m2"))));
        assert_eq!(names(&index, "a", "m1"), ["m1-z"]);
        assert_eq!(names(&index, "a", "m2"), ["m1-x", "m2-x"]);
        // Losing the label unindexes it.
        index.apply(&watcher::Event::Apply(pod("a", "m2-x", None)));
        assert_eq!(names(&index, "a", "m2"), ["m1-x"]);

        index.apply(&watcher::Event::Delete(pod("a", "m1-z", Some("m1"))));
        assert!(names(&index, "a", "m1").is_empty());
        index.apply(&watcher::Event::Delete(pod("a", "never-seen", Some("m1"))));
        assert_eq!(names(&index, "b", "m1"), ["m1-y"]);
    }

    #[test]
    fn a_relist_replaces_the_index_when_it_completes() {
        let index = PodIndex::default();
        index.apply(&watcher::Event::Apply(pod("a", "old", Some("m1"))));
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(pod("a", "new", Some("m1"))));
        assert_eq!(names(&index, "a", "m1"), ["old"]);
        index.apply(&watcher::Event::InitDone);
        assert_eq!(names(&index, "a", "m1"), ["new"]);
    }

    fn cache_over(events: &[watcher::Event<Pod>]) -> Cache {
        fn empty<K: kube::runtime::reflector::Lookup<DynamicType = ()> + Clone>() -> Store<K> {
            let (reader, mut writer) = reflector::store();
            writer.apply_watcher_event(&watcher::Event::InitDone);
            reader
        }
        let (pods, mut writer) = reflector::store();
        let pod_index = PodIndex::default();
        for event in events {
            writer.apply_watcher_event(event);
            pod_index.apply(event);
        }
        Cache {
            deployments: empty(),
            services: empty(),
            config_maps: empty(),
            pod_disruption_budgets: empty(),
            pods,
            pod_index,
            namespaces: empty(),
            tenant_quotas: empty(),
            canaries: empty(),
            model_deployments: empty(),
        }
    }

    fn pod_names(pods: Vec<Pod>) -> Vec<String> {
        pods.into_iter().filter_map(|p| p.metadata.name).collect()
    }

    #[test]
    fn pods_of_returns_exactly_the_pods_of_one_model_deployment() {
        let mut events = vec![watcher::Event::Init];
        events.extend((0..50).map(|i| {
            watcher::Event::InitApply(pod("a", &format!("m{i}-p"), Some(&format!("m{i}"))))
        }));
        events.extend([
            watcher::Event::InitApply(pod("b", "m7-other-ns", Some("m7"))),
            watcher::Event::InitDone,
            watcher::Event::Apply(pod("a", "m7-q", Some("m7"))),
            watcher::Event::Apply(pod("a", "m8-p", Some("m7"))),
            watcher::Event::Delete(pod("a", "m7-p", Some("m7"))),
        ]);
        let cache = cache_over(&events);
        assert_eq!(pod_names(cache.pods_of("a", "m7")), ["m7-q", "m8-p"]);
        assert!(pod_names(cache.pods_of("a", "m8")).is_empty());
        assert_eq!(pod_names(cache.pods_of("b", "m7")), ["m7-other-ns"]);
        assert_eq!(pod_names(cache.pods_of("a", "m9")), ["m9-p"]);
        assert!(cache.pods_of("c", "m9").is_empty());
    }
}
