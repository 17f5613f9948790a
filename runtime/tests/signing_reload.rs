//! Signature checks on the serving path: a version signed with the real `model_signing`
//! CLI serves; a hot reload to a model that no longer matches its bundle is refused under
//! Enforce while the verified instance keeps answering every request; an unsigned model
//! serves under Audit and is counted.

mod common;
mod signing_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use signing_support::{openssl_key, parts_available, sign};

/// Replaces `target` atomically, as deployment tools do.
fn swap_file(source: &Path, target: &Path) {
    let staged = target.with_extension("staged");
    std::fs::create_dir_all(target.parent().expect("parent")).expect("dir");
    std::fs::copy(source, &staged).expect("stage");
    std::fs::rename(&staged, target).expect("rename");
}

/// A watched config serving `model` as `affine` version `1` under a signature block.
fn config(dir: &Path, model: &Path, mode: &str, pem: &str) -> String {
    let pem = serde_json::to_string(pem).expect("quoted pem");
    format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{cache}'}}
models:
- name: affine
  versions:
  - version: '1'
    source: {{path: '{model}'}}
    signature:
      mode: {mode}
      keys: [{{name: model-pub, pem: {pem}}}]
",
        cache = dir.join("cache").display(),
        model = model.display(),
    )
}

#[derive(Default)]
struct Load {
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
        let response = client.post(&url).json(&json_body(&[[1.0; 4]])).send().await;
        match response {
            Ok(response) if response.status() == 200 => {
                let body: serde_json::Value = response.json().await.expect("json");
                let k = output_f32(&body, "y")[0] - 1.0;
                load.last_k.store(k as u64, Ordering::SeqCst);
            }
            _ => {
                load.failures.fetch_add(1, Ordering::SeqCst);
            }
        }
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
async fn a_reload_to_a_model_that_does_not_verify_keeps_the_verified_one_serving() {
    if !parts_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let staging = dir.path().join("staging");
    let (k2, k3) = (staging.join("k2/model.pt"), staging.join("k3/model.pt"));
    make_affine_models(&[(&k2, 2.0), (&k3, 3.0)]);
    let (private, public) = openssl_key(dir.path(), "trusted");
    let version_dir = dir.path().join("affine/1");
    let model = version_dir.join("model.pt");
    swap_file(
        &staging.join("k2/signature.json"),
        &version_dir.join("signature.json"),
    );
    swap_file(&k2, &model);
    sign(&version_dir, &private, &version_dir.join("model.sig"));
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(dir.path(), &model, "Enforce", &public)).expect("config");
    let running = start_file(&config_path).await;

    let load = Arc::new(Load::default());
    let url = format!("http://{}/v2/models/affine/infer", running.http_addr);
    let loops: Vec<_> = (0..2)
        .map(|_| tokio::spawn(load_loop(url.clone(), Arc::clone(&load))))
        .collect();
    wait_for_k(&load, 2).await;

    // The model file changes, the bundle does not: refused, k = 2 keeps answering.
    swap_file(&k3, &model);
    let refused = r#"modelplane_model_signature_failures_total{model="affine",version="1",mode="Enforce",reason="TamperedLayer"}"#;
    wait_until(Duration::from_secs(30), || async {
        metric(&running, refused).await == Some(1.0)
    })
    .await
    .expect("the refused load is counted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        load.last_k.load(Ordering::SeqCst),
        2,
        "the verified model keeps serving"
    );

    // Signed again, model file untouched: the reloader sees the new bundle, k = 3 loads.
    sign(&version_dir, &private, &version_dir.join("model.sig"));
    wait_for_k(&load, 3).await;
    load.stop.store(true, Ordering::SeqCst);
    for task in loops {
        task.await.expect("load loop");
    }
    assert_eq!(load.failures.load(Ordering::SeqCst), 0, "no request failed");
    let verified = r#"modelplane_model_signature_verifications_total{model="affine",version="1",result="Verified"}"#;
    assert_eq!(metric(&running, verified).await, Some(2.0));
    running.shutdown().await;
}

#[tokio::test]
async fn an_unsigned_model_serves_under_audit_and_is_counted() {
    if !parts_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&model, 2.0)]);
    let (_, public) = openssl_key(dir.path(), "trusted");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(dir.path(), &model, "Audit", &public)).expect("config");
    let running = start_file(&config_path).await;

    let url = format!("http://{}/v2/models/affine/infer", running.http_addr);
    let (status, body) = post_json(&url, &json_body(&[[1.0; 4]])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(output_f32(&body, "y"), affine(&[[1.0; 4]], 2.0));
    let counted = r#"modelplane_model_signature_failures_total{model="affine",version="1",mode="Audit",reason="NoSignature"}"#;
    assert_eq!(metric(&running, counted).await, Some(1.0));
    running.shutdown().await;
}

#[tokio::test]
async fn a_generate_model_is_verified_as_its_whole_folder_even_when_the_source_names_a_file() {
    if !parts_available() {
        return;
    }
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/tiny-llama");
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("tiny");
    std::fs::create_dir_all(&folder).expect("folder");
    for file in ["config.json", "model.pt", "tokenizer.json"] {
        std::fs::copy(tiny.join(file), folder.join(file))
            .expect("copy tiny-llama (examples/make_chat_model.py)");
    }
    let (private, public) = openssl_key(dir.path(), "trusted");
    // Only model.pt is signed; config.json (which names the weights) and the tokenizer are not.
    sign(
        &folder.join("model.pt"),
        &private,
        &folder.join("model.sig"),
    );
    let pem = serde_json::to_string(&public).expect("quoted pem");
    let yaml = format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', cacheDir: '{cache}'}}
models:
- name: tiny
  task: generate
  generation: {{slots: 2, context: 64}}
  versions:
  - version: '1'
    source: {{path: '{model}'}}
    signature:
      mode: Enforce
      keys: [{{name: model-pub, pem: {pem}}}]
",
        cache = dir.path().join("cache").display(),
        model = folder.join("model.pt").display(),
    );
    let config = modelplane_config::RuntimeConfig::from_yaml(&yaml).expect("config");
    let source = modelplane_runtime::ConfigSource::Inline(Box::new(config));
    let mut running = modelplane_runtime::start(source).await.expect("starts");
    let failures = running.initial_load().await;
    assert_eq!(
        failures.len(),
        1,
        "the single-file bundle does not cover the folder: {failures:?}"
    );
    assert!(failures[0].contains("model tiny version 1"), "{failures:?}");
    running.shutdown().await;
}
