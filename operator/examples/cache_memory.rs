//! Heap the operator's watch caches hold for N ModelDeployments (one replica each),
//! storing whole objects as served versus what the caches keep of them; and the cost of
//! finding one ModelDeployment's pods by scanning every cached pod versus the index.
//!
//! ```sh
//! cargo run -p modelplane-operator --release --example cache_memory [-- N]
//! ```
//!
//! Objects are built as an API server serves them (`tests/support/served.rs`): the
//! operator's own desired objects, stamped, plus server defaults, status and
//! `managedFields`. Each is fed through the same function the watch applies before its
//! store, into a reflector store, and the bytes the stores hold are counted by the
//! global allocator. Bounded: N objects of each kind, one pass.

#[path = "../tests/support/served.rs"]
#[allow(dead_code)]
mod served;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{
    reflector::{self, Lookup, Store},
    watcher,
};
use modelplane_operator::controller::{
    Cache, INSTANCE_LABEL, PodIndex,
    projection::{project_namespace, project_pod, strip_bookkeeping},
};

/// Counts the bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// A store holding `objects` after `keep`, and the bytes it holds.
fn store_of<K>(objects: &[K], keep: fn(&mut K)) -> (Store<K>, usize)
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let before = allocated();
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        let mut object = object.clone();
        keep(&mut object);
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    drop(writer);
    (reader, allocated() - before)
}

fn whole<K>(_: &mut K) {}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Row {
    kind: &'static str,
    objects: usize,
    whole: usize,
    kept: usize,
}

fn row<K>(kind: &'static str, objects: &[K], keep: fn(&mut K)) -> Row
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, whole_bytes) = store_of(objects, whole);
    drop(store);
    let (store, kept) = store_of(objects, keep);
    drop(store);
    Row {
        kind,
        objects: objects.len(),
        whole: whole_bytes,
        kept,
    }
}

/// The pods of one ModelDeployment the way `Cache::pods_of` found them before: a pass
/// over every cached pod.
fn scan(pods: &Store<Pod>, namespace: &str, name: &str) -> Vec<Pod> {
    pods.state()
        .into_iter()
        .filter(|pod| {
            pod.metadata.namespace.as_deref() == Some(namespace)
                && pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(INSTANCE_LABEL))
                    .map(String::as_str)
                    == Some(name)
        })
        .map(|pod| (*pod).clone())
        .collect()
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let namespace = "scale";
    let model_deployments: Vec<_> = (0..count)
        .map(|i| served::model_deployment(namespace, i, 1))
        .collect();
    let owned: Vec<_> = model_deployments
        .iter()
        .enumerate()
        .map(|(i, md)| served::served(md, i))
        .collect();
    let deployments: Vec<_> = owned.iter().map(|o| o.deployment.clone()).collect();
    let services: Vec<_> = owned.iter().map(|o| o.service.clone()).collect();
    let config_maps: Vec<_> = owned.iter().map(|o| o.config_map.clone()).collect();
    let budgets: Vec<_> = owned.iter().filter_map(|o| o.budget.clone()).collect();
    let pods: Vec<Pod> = owned
        .iter()
        .flat_map(|o| o.pods.iter().map(served::pod))
        .collect();
    let namespaces = vec![served::namespace(namespace)];
    drop(owned);

    let rows = [
        row(
            "ModelDeployment (controller)",
            &model_deployments,
            strip_bookkeeping,
        ),
        row(
            "ModelDeployment (canary targets)",
            &model_deployments,
            strip_bookkeeping,
        ),
        row("Deployment", &deployments, strip_bookkeeping),
        row("Service", &services, strip_bookkeeping),
        row("ConfigMap", &config_maps, strip_bookkeeping),
        row("PodDisruptionBudget", &budgets, strip_bookkeeping),
        row("Pod", &pods, project_pod),
        row("Namespace", &namespaces, project_namespace),
    ];
    let kept_pods: Vec<Pod> = pods
        .iter()
        .map(|pod| {
            let mut pod = pod.clone();
            project_pod(&mut pod);
            pod
        })
        .collect();
    let before = allocated();
    let index = PodIndex::from_pods(&kept_pods);
    let index_bytes = allocated() - before;
    drop(kept_pods);

    println!("{count} ModelDeployments, one replica each (heap held by the caches)\n");
    println!(
        "| cache | objects | whole objects | kept | kept / whole |\n|---|---:|---:|---:|---:|"
    );
    let mut total_whole = 0;
    let mut total_kept = 0;
    for row in &rows {
        total_whole += row.whole;
        total_kept += row.kept;
        let ratio = if row.objects == 0 {
            "–".to_owned()
        } else {
            format!("{:.2}", row.kept as f64 / row.whole as f64)
        };
        println!(
            "| {} | {} | {:.2} MiB | {:.2} MiB | {ratio} |",
            row.kind,
            row.objects,
            mib(row.whole),
            mib(row.kept)
        );
    }
    total_kept += index_bytes;
    println!(
        "| pod index | {} | – | {:.2} MiB | – |",
        pods.len(),
        mib(index_bytes)
    );
    println!(
        "| **total** | | **{:.2} MiB** | **{:.2} MiB** | **{:.2}** |",
        mib(total_whole),
        mib(total_kept),
        total_kept as f64 / total_whole as f64
    );
    println!(
        "\nper ModelDeployment: {:.1} KiB whole, {:.1} KiB kept",
        total_whole as f64 / 1024.0 / count as f64,
        total_kept as f64 / 1024.0 / count as f64
    );

    println!(
        "(a projected Pod still carries the inline size of k8s-openapi's Pod: {} bytes)",
        std::mem::size_of::<Pod>()
    );

    let (pod_store, _) = store_of(&pods, project_pod);
    let cache = cache_with(pod_store.clone(), index);
    let names: Vec<String> = model_deployments
        .iter()
        .filter_map(|md| md.metadata.name.clone())
        .collect();
    let started = Instant::now();
    for name in &names {
        black_box(scan(&pod_store, namespace, name));
    }
    let scanned = started.elapsed();
    let started = Instant::now();
    for name in &names {
        black_box(cache.pods_of(namespace, name));
    }
    let indexed = started.elapsed();
    for name in &names {
        assert_eq!(
            scan(&pod_store, namespace, name),
            cache.pods_of(namespace, name)
        );
    }
    println!(
        "\npods of one ModelDeployment, {count} pods cached: scan {:.1} µs, index {:.2} µs",
        scanned.as_secs_f64() * 1e6 / count as f64,
        indexed.as_secs_f64() * 1e6 / count as f64
    );
}

fn cache_with(pods: Store<Pod>, pod_index: PodIndex) -> Cache {
    fn empty<K: Lookup<DynamicType = ()> + Clone>() -> Store<K> {
        reflector::store().0
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
