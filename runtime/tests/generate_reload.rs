//! Hot reload of a generate model: a changed folder loads a new engine beside the old
//! one; a load that fails (bad config.json, a module that contradicts it) keeps the old
//! version serving and reports why.

mod common;
mod generate_support;

use std::path::Path;
use std::time::Duration;

use common::*;
use generate_support::*;
use modelplane_runtime::Running;
use modelplane_runtime::catalog::LoadState;

fn load_state(running: &Running) -> LoadState {
    let catalog = running.state.catalog.load();
    let entry = catalog.model("tiny").expect("model");
    entry.slot("1").expect("version").state.clone()
}

async fn wait_failed(running: &Running) -> String {
    wait_until(Duration::from_secs(30), || async {
        matches!(load_state(running), LoadState::Failed(_))
    })
    .await
    .expect("the reload fails");
    match load_state(running) {
        LoadState::Failed(reason) => reason,
        other => panic!("{other:?}"),
    }
}

fn edit_config(folder: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = folder.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    edit(&mut config);
    let staged = folder.join("config.json.staged");
    std::fs::write(&staged, serde_json::to_vec_pretty(&config).expect("json")).expect("write");
    std::fs::rename(&staged, &path).expect("rename");
}

#[tokio::test]
async fn a_failed_reload_keeps_the_old_engine_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("tiny");
    copy_folder(&tiny_llama(), &folder);
    // The source names the model file; config.json beside it is watched too.
    let yaml = tiny_config(
        dir.path(),
        &folder.join("model.pt"),
        "generation: {slots: 2, context: 128}",
    );
    let running = start_inline(&yaml).await;
    let before = generate_ids(&running, "tiny", &[5, 6, 7], 6).await;

    edit_config(&folder, |c| c["contract"] = "modelplane.generate/v9".into());
    let reason = wait_failed(&running).await;
    assert!(reason.contains("modelplane.generate/v9"), "{reason}");
    assert_eq!(generate_ids(&running, "tiny", &[5, 6, 7], 6).await, before);

    edit_config(&folder, |c| {
        c["contract"] = "modelplane.generate/v1".into();
        c["num_layers"] = 3.into();
    });
    wait_until(Duration::from_secs(30), || async {
        matches!(&load_state(&running), LoadState::Failed(r) if r.contains("num_layers"))
    })
    .await
    .expect("a module that contradicts config.json is refused");
    assert_eq!(generate_ids(&running, "tiny", &[5, 6, 7], 6).await, before);
    running.shutdown().await;
}

#[tokio::test]
async fn a_new_engine_takes_over_while_the_old_one_finishes_its_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("tiny");
    copy_folder(&tiny_llama(), &folder);
    let yaml = tiny_config(dir.path(), &folder, "generation: {slots: 2, context: 256}");
    let running = start_inline(&yaml).await;
    let old = serving(&running, "tiny");
    let mut stream = old
        .engine()
        .expect("engine")
        .submit(greedy_request(vec![5, 6, 7], 200))
        .expect("admitted");

    // A new folder identity (same weights): the version reloads.
    edit_config(&folder, |c| c["name"] = "tiny-llama-2".into());
    wait_until(Duration::from_secs(30), || async {
        !std::sync::Arc::ptr_eq(&serving(&running, "tiny"), &old)
    })
    .await
    .expect("the new engine serves");
    drop(old);

    let mut tokens = 0;
    let mut finished = false;
    while let Some(event) = stream.next().await {
        match event {
            modelplane_generate::engine::StreamEvent::Delta { tokens: t, .. } => tokens += t.len(),
            modelplane_generate::engine::StreamEvent::Finished { .. } => finished = true,
            modelplane_generate::engine::StreamEvent::Failed(err) => panic!("{err}"),
        }
    }
    assert!(finished && tokens > 0, "the old engine finished its stream");
    assert_eq!(generate_ids(&running, "tiny", &[5, 6, 7], 4).await.len(), 4);
    running.shutdown().await;
}

#[tokio::test]
async fn a_generate_config_with_zero_slots_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = tiny_config(dir.path(), &tiny_llama(), "generation: {slots: 0}");
    let err = modelplane_config::RuntimeConfig::from_yaml(&yaml).expect_err("zero slots");
    assert!(err.to_string().contains("generation.slots"), "{err}");
}

#[tokio::test]
async fn device_cuda_loads_only_where_libtorch_sees_a_gpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = tiny_config(
        dir.path(),
        &tiny_llama(),
        "generation: {slots: 1, context: 64}",
    )
    .replace("    source:", "    device: cuda\n    source:");
    let config = modelplane_config::RuntimeConfig::from_yaml(&yaml).expect("config");
    let source = modelplane_runtime::ConfigSource::Inline(Box::new(config));
    let mut running = modelplane_runtime::start(source).await.expect("starts");
    let failures = running.initial_load().await;
    if tch::Cuda::is_available() {
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(generate_ids(&running, "tiny", &[5, 6, 7], 3).await.len(), 3);
    } else {
        let [failure] = failures.as_slice() else {
            panic!("one model fails: {failures:?}");
        };
        assert!(failure.contains("CUDA is not available"), "{failure}");
    }
    running.shutdown().await;
}

#[tokio::test]
async fn an_embedding_model_offers_the_tokenizer_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let minilm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/models/minilm/1/model.pt");
    let yaml = format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', cacheDir: '{}'}}\nmodels:\n- name: minilm\n  task: embed\n  versions:\n  - version: '1'\n    source: {{path: '{}'}}\n",
        dir.path().display(),
        minilm.display()
    );
    let running = start_inline(&yaml).await;
    let version = serving(&running, "minilm");
    let codec = version
        .text_codec()
        .expect("tokenizer.json beside model.pt");
    let ids = codec.encode("hello world", true).expect("encodes");
    assert!(ids.len() >= 2, "{ids:?}");
    assert!(version.engine().is_err());
    running.shutdown().await;
}

#[tokio::test]
async fn a_generate_model_named_by_its_file_reads_the_tokenizer_json_of_its_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The config names no tokenizer (the runtime config has no such field): the folder's
    // tokenizer.json is the one, as for a ModelDeployment that sets no spec.model.tokenizer.
    let model_file = tiny_llama().join("model.pt");
    let running = start_inline(&tiny_config(dir.path(), &model_file, "")).await;
    let served = serving(&running, "tiny");
    let codec = served
        .text_codec()
        .expect("a generate model has a tokenizer");
    let beside = modelplane_generate::text::TextCodec::from_tokenizer_file(
        &tiny_llama().join("tokenizer.json"),
    )
    .expect("tokenizer.json");
    let text = "Hello, tokenizer defaults!";
    assert_eq!(
        codec.encode(text, true).expect("encodes"),
        beside.encode(text, true).expect("encodes")
    );
    running.shutdown().await;
}
