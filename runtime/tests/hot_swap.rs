//! Hot swap under load: model file and config change while a bounded load runs; no
//! request fails, and a corrupt new file leaves the previous instance serving.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

/// Replaces `target` atomically, as deployment tools do.
fn swap_file(source: &Path, target: &Path) {
    let staged = target.with_extension("staged");
    std::fs::create_dir_all(target.parent().expect("parent")).expect("dir");
    std::fs::copy(source, &staged).expect("stage");
    std::fs::rename(&staged, target).expect("rename");
}

fn config(dir: &Path, with_v1: bool) -> String {
    let v1 = format!(
        "  - version: '1'\n    source: {{path: '{}'}}\n",
        dir.join("affine/1/model.pt").display()
    );
    let v2 = format!(
        "  - version: '2'\n    source: {{path: '{}'}}\n",
        dir.join("affine/2/model.pt").display()
    );
    format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms}}\nmodels:\n- name: affine\n  defaultVersion: '2'\n  batching: {{maxBatchSize: 4}}\n  versions:\n{}{v2}",
        if with_v1 { v1 } else { String::new() }
    )
}

/// What the load loop saw: requests, failures, and the last `k` answered.
#[derive(Default)]
struct Load {
    requests: AtomicU64,
    failures: AtomicU64,
    last_k: AtomicU64,
    stop: AtomicBool,
}

async fn load_loop(url: String, load: Arc<Load>) {
    let client = reqwest::Client::new();
    for _ in 0..20_000 {
        if load.stop.load(Ordering::SeqCst) {
            return;
        }
        let body = json_body(&[[1.0; 4]]);
        let response = client.post(&url).json(&body).send().await;
        load.requests.fetch_add(1, Ordering::SeqCst);
        let Ok(response) = response else {
            load.failures.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        if response.status() != 200 {
            load.failures.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let body: serde_json::Value = response.json().await.expect("json");
        // y = x * k + 1 with x = 1
        let k = output_f32(&body, "y")[0] - 1.0;
        load.last_k.store(k as u64, Ordering::SeqCst);
    }
}

async fn wait_for_k(load: &Load, k: u64) {
    wait_until(Duration::from_secs(60), || async {
        load.last_k.load(Ordering::SeqCst) == k
    })
    .await
    .unwrap_or_else(|e| panic!("traffic never moved to k={k}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_and_config_changes_under_load_fail_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staging = dir.path().join("staging");
    let (k1, k2, k3) = (
        staging.join("k1/model.pt"),
        staging.join("k2/model.pt"),
        staging.join("k3/model.pt"),
    );
    make_affine_models(&[(&k1, 1.0), (&k2, 2.0), (&k3, 3.0)]);
    let signature = staging.join("k1/signature.json");
    for version in ["1", "2"] {
        swap_file(
            &signature,
            &dir.path().join(format!("affine/{version}/signature.json")),
        );
    }
    swap_file(&k1, &dir.path().join("affine/2/model.pt"));
    swap_file(&k1, &dir.path().join("affine/1/model.pt"));
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(dir.path(), true)).expect("config");
    let running = start_file(&config_path).await;

    let load = Arc::new(Load::default());
    let url = format!("http://{}/v2/models/affine/infer", running.http_addr);
    let loops: Vec<_> = (0..4)
        .map(|_| tokio::spawn(load_loop(url.clone(), Arc::clone(&load))))
        .collect();
    wait_for_k(&load, 1).await;

    // 1. The default version's file is replaced: k 1 → 2.
    swap_file(&k2, &dir.path().join("affine/2/model.pt"));
    wait_for_k(&load, 2).await;
    // 2. The config drops version 1 (and its file changes meanwhile): still k = 2.
    std::fs::write(&config_path, config(dir.path(), false)).expect("config");
    swap_file(&k3, &dir.path().join("affine/1/model.pt"));
    // 3. A corrupt file for version 2 fails to load; the previous instance keeps serving.
    let model_url = format!("http://{}/v2/models/affine", running.http_addr);
    wait_until(Duration::from_secs(30), || async {
        let meta: serde_json::Value = reqwest::get(&model_url)
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        meta["versions"] == serde_json::json!(["2"])
    })
    .await
    .expect("config change applied");
    std::fs::write(staging.join("corrupt.pt"), b"not a torchscript archive").expect("corrupt");
    swap_file(
        &staging.join("corrupt.pt"),
        &dir.path().join("affine/2/model.pt"),
    );
    let failures = r#"modelplane_model_load_failures_total{model="affine",version="2"}"#;
    wait_until(Duration::from_secs(30), || async {
        metric(&running, failures).await == Some(1.0)
    })
    .await
    .expect("the corrupt load is counted");
    let meta: serde_json::Value = reqwest::get(&model_url)
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let state = &meta["version_states"][0];
    assert_eq!(
        (state["state"].as_str(), state["serving"].as_bool()),
        (Some("failed"), Some(true)),
        "{meta}"
    );
    assert!(
        state["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot load")),
        "{meta}"
    );
    // 4. Fixing the file recovers: k = 3.
    swap_file(&k3, &dir.path().join("affine/2/model.pt"));
    wait_for_k(&load, 3).await;

    load.stop.store(true, Ordering::SeqCst);
    for handle in loops {
        handle.await.expect("load loop");
    }
    let (requests, failed) = (
        load.requests.load(Ordering::SeqCst),
        load.failures.load(Ordering::SeqCst),
    );
    assert_eq!(
        failed, 0,
        "{failed} of {requests} requests failed during the swaps"
    );
    assert!(requests > 50, "only {requests} requests ran");
    running.shutdown().await;
}

#[tokio::test]
async fn a_version_that_never_loaded_reports_why_and_is_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&path, 1.0)]);
    std::fs::write(&path, b"garbage").expect("corrupt");
    let yaml = affine_config(&path, "");
    let config = modelplane_config::RuntimeConfig::from_yaml(&yaml).expect("config");
    let source = modelplane_runtime::ConfigSource::Inline(Box::new(config));
    let mut running = modelplane_runtime::start(source).await.expect("starts");
    let failures = running.initial_load().await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("model affine version 1 failed to load: cannot load"),
        "{failures:?}"
    );
    let base = format!("http://{}", running.http_addr);
    assert_eq!(
        reqwest::get(format!("{base}/v2/health/ready"))
            .await
            .expect("get")
            .status(),
        503
    );
    let (status, body) = post_json(
        &format!("{base}/v2/models/affine/infer"),
        &json_body(&[[0.0; 4]]),
    )
    .await;
    assert_eq!(status, 503);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot load")),
        "{body}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn replacing_a_version_with_one_that_fails_keeps_the_old_one_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (v1, v2) = (
        dir.path().join("affine/1/model.pt"),
        dir.path().join("affine/2/model.pt"),
    );
    make_affine_models(&[(&v1, 1.0), (&v2, 2.0)]);
    std::fs::write(&v2, b"garbage").expect("corrupt v2");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, affine_config(&v1, "")).expect("config v1");
    let running = start_file(&config_path).await;
    let base = format!("http://{}", running.http_addr);
    let infer = format!("{base}/v2/models/affine/infer");

    // The operator replaces version 1 by version 2 (a new source); version 2 cannot load.
    let replaced = affine_config(&v1, "").replace(
        &format!("version: '1'\n    source: {{path: '{}'}}", v1.display()),
        &format!("version: '2'\n    source: {{path: '{}'}}", v2.display()),
    );
    assert!(replaced.contains("version: '2'"), "{replaced}");
    std::fs::write(&config_path, replaced).expect("config v2");
    wait_until(Duration::from_secs(30), || async {
        let meta: serde_json::Value = reqwest::get(format!("{base}/v2/models/affine"))
            .await
            .expect("metadata")
            .json()
            .await
            .expect("json");
        meta["version_states"].as_array().is_some_and(|states| {
            states
                .iter()
                .any(|s| s["version"] == "2" && s["state"] == "failed")
        })
    })
    .await
    .expect("version 2 is tried and fails");

    let (status, body) = post_json(&infer, &json_body(&[[1.0; 4]])).await;
    assert_eq!(status, 200, "version 1 keeps serving: {body}");
    assert_eq!(output_f32(&body, "y"), affine(&[[1.0; 4]], 1.0));
    let ready = reqwest::get(format!("{base}/v2/health/ready"))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200, "the model still has a serving version");
    running.shutdown().await;
}
