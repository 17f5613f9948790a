//! The canary split under load: two versions of one model side by side, the config's
//! canary weight rewritten 10 → 50 → 0 while requests run. Every request succeeds, the
//! split follows each weight exactly, `/metrics` accounts for every request per version,
//! and no weight change reloads either version.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use modelplane_runtime::Running;

/// Requests at once.
const WORKERS: u64 = 8;
/// Requests of the first phase, all at weight 10.
const FIRST: u64 = 500;
/// Requests routed at weight 50 that the second phase waits for.
const AT_FIFTY: u64 = 400;
/// Requests after weight 0 applied that the load waits for.
const AFTER_ZERO: u64 = 200;
/// Most requests the test sends, whatever happens.
const MOST: u64 = 6_000;

fn config(dir: &Path, weight: u32) -> String {
    let version = |v: &str| {
        format!(
            "  - version: '{v}'\n    source: {{path: '{}'}}\n",
            dir.join(format!("affine/{v}/model.pt")).display()
        )
    };
    format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{}'}}
models:
- name: affine
  defaultVersion: '1'
  canary: {{candidate: '2', weight: {weight}}}
  versions:
{}{}",
        dir.join("cache").display(),
        version("1"),
        version("2"),
    )
}

/// Rewrites the config file as a ConfigMap update does: a whole new file in place.
fn write_config(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).expect("stage config");
    std::fs::rename(&staged, path).expect("swap config");
}

/// The canary weight the runtime serves with right now.
fn served_weight(running: &Running) -> Option<u32> {
    let catalog = running.state.catalog.load();
    Some(catalog.models.get("affine")?.config.canary.as_ref()?.weight)
}

async fn wait_weight(running: &Running, weight: u32) {
    wait_until(Duration::from_secs(20), || async {
        served_weight(running) == Some(weight)
    })
    .await
    .unwrap_or_else(|e| panic!("weight {weight} never applied: {e}"));
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// Requests started (the next request's index).
    started: AtomicU64,
    /// Answers by version (k = 1 is version 1, k = 2 version 2).
    v1: AtomicU64,
    v2: AtomicU64,
    failures: AtomicU64,
    /// Set while every request started is routed at weight 50 (and is counted below).
    at_fifty: AtomicBool,
    fifty: AtomicU64,
    fifty_v2: AtomicU64,
    /// Set once weight 0 is served: no request started after may reach version 2.
    at_zero: AtomicBool,
    zero: AtomicU64,
    zero_v2: AtomicU64,
    /// Ends the load.
    stop: AtomicBool,
}

impl Tally {
    fn answered(&self) -> u64 {
        self.v1.load(Ordering::SeqCst) + self.v2.load(Ordering::SeqCst)
    }
}

/// Sends requests one at a time until `limit` have started or the load is stopped.
async fn worker(url: String, client: reqwest::Client, tally: Arc<Tally>, limit: u64) {
    let body = json_body(&[[1.0; 4]]);
    while !tally.stop.load(Ordering::SeqCst) {
        if tally.started.fetch_add(1, Ordering::SeqCst) >= limit {
            tally.started.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let (fifty, zero) = (
            tally.at_fifty.load(Ordering::SeqCst),
            tally.at_zero.load(Ordering::SeqCst),
        );
        let k = match client.post(&url).json(&body).send().await {
            Ok(response) if response.status() == 200 => match response.json().await {
                // y = x * k + 1 with x = 1.
                Ok(body) => (output_f32(&body, "y")[0] - 1.0).round() as u32,
                Err(_) => 0,
            },
            _ => 0,
        };
        let candidate = match k {
            1 => false,
            2 => true,
            _ => {
                tally.failures.fetch_add(1, Ordering::SeqCst);
                continue;
            }
        };
        // Counted only when the window was still open at the answer: routed inside it.
        if fifty && tally.at_fifty.load(Ordering::SeqCst) {
            tally.fifty.fetch_add(1, Ordering::SeqCst);
            tally
                .fifty_v2
                .fetch_add(u64::from(candidate), Ordering::SeqCst);
        }
        if zero {
            tally.zero.fetch_add(1, Ordering::SeqCst);
            tally
                .zero_v2
                .fetch_add(u64::from(candidate), Ordering::SeqCst);
        }
        let counter = if candidate { &tally.v2 } else { &tally.v1 };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// Starts the workers of a load of at most `limit` requests (counting those before).
fn run_load(running: &Running, tally: &Arc<Tally>, limit: u64) -> Vec<tokio::task::JoinHandle<()>> {
    let url = format!("http://{}/v2/models/affine/infer", running.http_addr);
    let client = reqwest::Client::new();
    (0..WORKERS)
        .map(|_| {
            let (url, client, tally) = (url.clone(), client.clone(), Arc::clone(tally));
            tokio::spawn(worker(url, client, tally, limit))
        })
        .collect()
}

async fn join(workers: Vec<tokio::task::JoinHandle<()>>) {
    for worker in workers {
        worker.await.expect("worker");
    }
}

/// Polls until `done` or the load ended, bounded.
async fn wait_for(what: &str, tally: &Tally, done: impl Fn(&Tally) -> bool) {
    wait_until(Duration::from_secs(60), || async {
        done(tally) || tally.started.load(Ordering::SeqCst) >= MOST
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        done(tally),
        "the load ran out ({MOST} requests) before {what}"
    );
}

/// The sum of the `/metrics` samples named `name` whose labels contain every one of `labels`.
async fn sum_of(running: &Running, name: &str, labels: &[&str]) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", running.http_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (set, value) = rest.split_once("} ")?;
            let matches = labels
                .iter()
                .all(|label| set.split(',').any(|l| l == *label));
            if matches {
                value.trim().parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// `modelplane_model_load_seconds` of a version of the model: set by every load.
async fn load_seconds(running: &Running, version: &str) -> f64 {
    let label = format!("version=\"{version}\"");
    sum_of(
        running,
        "modelplane_model_load_seconds",
        &["model=\"affine\"", &label],
    )
    .await
}

/// The instances serving versions 1 and 2 now.
fn instances(running: &Running) -> Vec<Arc<modelplane_runtime::catalog::Version>> {
    let catalog = running.state.catalog.load();
    catalog.models["affine"]
        .versions
        .iter()
        .map(|(label, slot)| {
            let instance = slot.serving.as_ref();
            Arc::clone(instance.unwrap_or_else(|| panic!("version {label} serves")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_changes_under_load_lose_no_request_and_reload_no_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = (
        dir.path().join("affine/1/model.pt"),
        dir.path().join("affine/2/model.pt"),
    );
    make_affine_models(&[(&one, 1.0), (&two, 2.0)]);
    let config_path = dir.path().join("config.yaml");
    write_config(&config_path, &config(dir.path(), 10));
    let running = start_file(&config_path).await;
    wait_until(Duration::from_secs(60), || async {
        running.state.catalog.load().models["affine"]
            .canary()
            .is_some()
    })
    .await
    .expect("the candidate is ready");
    let before = instances(&running);
    let loaded = (
        load_seconds(&running, "1").await,
        load_seconds(&running, "2").await,
    );

    // Weight 10, nothing changing: exactly 50 of 500 to the candidate.
    let tally = Arc::new(Tally::default());
    join(run_load(&running, &tally, FIRST)).await;
    assert_eq!(tally.failures.load(Ordering::SeqCst), 0);
    assert_eq!(
        (
            tally.v1.load(Ordering::SeqCst),
            tally.v2.load(Ordering::SeqCst)
        ),
        (450, 50),
        "weight 10 over {FIRST} requests"
    );

    // Then 10 → 50 → 0 while the load runs.
    let load = tokio::time::timeout(Duration::from_secs(120), async {
        let workers = run_load(&running, &tally, MOST);
        wait_for("some requests at weight 10", &tally, |t| {
            t.answered() >= FIRST + 100
        })
        .await;
        write_config(&config_path, &config(dir.path(), 50));
        wait_weight(&running, 50).await;
        tally.at_fifty.store(true, Ordering::SeqCst);
        wait_for("requests at weight 50", &tally, |t| {
            t.fifty.load(Ordering::SeqCst) >= AT_FIFTY
        })
        .await;
        tally.at_fifty.store(false, Ordering::SeqCst);
        write_config(&config_path, &config(dir.path(), 0));
        wait_weight(&running, 0).await;
        tally.at_zero.store(true, Ordering::SeqCst);
        wait_for("requests at weight 0", &tally, |t| {
            t.zero.load(Ordering::SeqCst) >= AFTER_ZERO
        })
        .await;
        tally.stop.store(true, Ordering::SeqCst);
        join(workers).await;
    });
    load.await.expect("the load finishes in time");

    let sent = tally.started.load(Ordering::SeqCst);
    let (v1, v2) = (
        tally.v1.load(Ordering::SeqCst),
        tally.v2.load(Ordering::SeqCst),
    );
    eprintln!("{sent} requests: version 1 {v1}, version 2 {v2}");
    assert_eq!(
        tally.failures.load(Ordering::SeqCst),
        0,
        "no request failed"
    );
    assert_eq!(v1 + v2, sent, "every request was answered");

    // At 50 %: half, up to the requests in flight at either edge of the window.
    let (fifty, fifty_v2) = (
        tally.fifty.load(Ordering::SeqCst),
        tally.fifty_v2.load(Ordering::SeqCst),
    );
    let off = (2 * fifty_v2).abs_diff(fifty);
    assert!(
        off <= 2 * (2 * WORKERS + 1),
        "weight 50: {fifty_v2} of {fifty} to the candidate"
    );
    // At 0 %: none.
    assert_eq!(
        tally.zero_v2.load(Ordering::SeqCst),
        0,
        "weight 0 sends none"
    );

    // /metrics accounts for every request, per version, in the route and request series.
    for (version, answered) in [("1", v1), ("2", v2)] {
        let label = format!("version=\"{version}\"");
        let model = "model=\"affine\"";
        let routed = sum_of(
            &running,
            "modelplane_route_decisions_total",
            &[model, &label],
        )
        .await;
        assert_eq!(routed, answered as f64, "routed to version {version}");
        let succeeded = sum_of(
            &running,
            "modelplane_requests_total",
            &[model, &label, "outcome=\"success\""],
        )
        .await;
        assert_eq!(succeeded, answered as f64, "succeeded on version {version}");
        let weighted = sum_of(
            &running,
            "modelplane_route_decisions_total",
            &[model, &label, "reason=\"weight\""],
        )
        .await;
        assert_eq!(weighted, answered as f64, "every decision was the weight's");
    }

    // No weight change reloaded a version: the same instances serve, loaded once.
    let after = instances(&running);
    for (old, new) in before.iter().zip(&after) {
        assert!(Arc::ptr_eq(old, new), "version {} was reloaded", old.label);
    }
    let reloaded = (
        load_seconds(&running, "1").await,
        load_seconds(&running, "2").await,
    );
    assert_eq!(reloaded, loaded, "modelplane_model_load_seconds unchanged");
    let failures = sum_of(&running, "modelplane_model_load_failures_total", &[]).await;
    assert_eq!(failures, 0.0);
    running.shutdown().await;
}
