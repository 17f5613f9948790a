//! `model.tokenizer`: it names a file other than `tokenizer.json` in the model's folder,
//! pinned by sha256 (for a generate model, over what its `config.json` names); an HTTP
//! model's tokenizer is downloaded beside it; a tokenizer that is missing or fails its pin
//! fails the load, and the version already serving keeps serving.

mod common;
mod generate_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use modelplane_generate::text::TextCodec;
use modelplane_runtime::Running;
use modelplane_runtime::catalog::LoadState;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `embedding = [Σ ids, token count, k]`: what the tokenizer produced, and which model.
const MAKE_EMBED: &str = r#"
import sys, torch
class Embed(torch.nn.Module):
    def __init__(self, k: float):
        super().__init__()
        self.k = k
    def forward(self, input_ids, attention_mask):
        mask = attention_mask.to(torch.float32)
        ids = (input_ids.to(torch.float32) * mask).sum(1)
        return torch.stack([ids, mask.sum(1), torch.full_like(ids, self.k)], dim=1)
for path, k in zip(sys.argv[1::2], sys.argv[2::2]):
    torch.jit.script(Embed(float(k))).save(path)
"#;

const TENSORS: &str = "inputs: [{name: input_ids, datatype: INT64, shape: [-1, -1]}, {name: attention_mask, datatype: INT64, shape: [-1, -1]}]
  outputs: [{name: embedding, datatype: FP32, shape: [-1, 3]}]";

const TEXT: &str = "Hot swaps keep serving.";

fn example(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/models")
        .join(relative)
}

/// The MiniLM example's tokenizer (an embed model's real one).
fn minilm_tokenizer() -> PathBuf {
    example("minilm/1/tokenizer.json")
}

/// Writes the `[Σ ids, count, k]` TorchScript model to each path.
fn make_embed_models(dir: &Path, models: &[(&Path, f32)]) {
    write_models(&dir.join("make_embed.py"), MAKE_EMBED, models);
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sha256_of(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).expect("read"))
}

/// `[Σ ids, count]` of `TEXT` under the tokenizer file at `path`.
fn expected(path: &Path) -> [f32; 2] {
    let codec = TextCodec::from_tokenizer_file(path).expect("tokenizer");
    let ids = codec.encode(TEXT, true).expect("encodes");
    [ids.iter().map(|id| *id as f32).sum(), ids.len() as f32]
}

/// The `signature.json` of the `[Σ ids, count, k]` model.
const SIGNATURE: &str = r#"{"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
{"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]}],
"outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 3]}]}"#;

/// A config serving one embed model `m`, version `1`, from `source` (a YAML flow map),
/// its tensors declared.
fn config(dir: &Path, source: &str, tokenizer: &str) -> String {
    bare_config(dir, source, &format!("{TENSORS}\n  {tokenizer}"))
}

/// A config serving one embed model `m` as the operator renders it: no tensors.
fn bare_config(dir: &Path, source: &str, model_yaml: &str) -> String {
    format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{cache}', intraOpThreads: 1}}
models:
- name: m
  task: embed
  {model_yaml}
  versions:
  - version: '1'
    source: {source}
",
        cache = dir.join("cache").display(),
    )
}

fn write_config(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

/// The embedding of `TEXT`, or the status and body of the refusal.
async fn embed(running: &Running) -> Result<Vec<f32>, (u16, serde_json::Value)> {
    let url = format!("http://{}/v1/embeddings", running.http_addr);
    let (status, body) = post_json(&url, &serde_json::json!({"model": "m", "input": TEXT})).await;
    if status != 200 {
        return Err((status, body));
    }
    Ok(body["data"][0]["embedding"]
        .as_array()
        .expect("embedding")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect())
}

/// The load state of `m` version `1` (`None` before the first reconcile).
fn load_state(running: &Running) -> Option<LoadState> {
    let catalog = running.state.catalog.load();
    let entry = catalog.model("m").ok()?;
    Some(entry.slot("1")?.state.clone())
}

async fn wait_failed_with(running: &Running, needle: &str) -> String {
    wait_until(Duration::from_secs(30), || async {
        matches!(load_state(running), Some(LoadState::Failed(reason)) if reason.contains(needle))
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "no load failure naming {needle}: {e}; {:?}",
            load_state(running)
        )
    });
    match load_state(running) {
        Some(LoadState::Failed(reason)) => reason,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_embed_model_reads_a_pinned_tokenizer_under_another_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("m/1/model.pt");
    make_embed_models(dir.path(), &[(&model, 7.0)]);
    let tokenizer = dir.path().join("m/1/vocab/minilm.json");
    std::fs::create_dir_all(tokenizer.parent().expect("parent")).expect("dir");
    std::fs::copy(minilm_tokenizer(), &tokenizer).expect("copy");
    let yaml = config(
        dir.path(),
        &format!("{{path: '{}'}}", model.display()),
        &format!(
            "tokenizer: {{path: vocab/minilm.json, sha256: {}}}",
            sha256_of(&tokenizer)
        ),
    );
    let running = start_inline(&yaml).await;
    let [sum, count] = expected(&tokenizer);
    assert_eq!(
        embed(&running).await.expect("embeds text"),
        [sum, count, 7.0]
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_tokenizer_that_changes_reloads_and_one_that_fails_keeps_the_old_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("m/1/model.pt");
    make_embed_models(dir.path(), &[(&model, 1.0)]);
    let tokenizer = dir.path().join("m/1/vocab/minilm.json");
    std::fs::create_dir_all(tokenizer.parent().expect("parent")).expect("dir");
    std::fs::copy(minilm_tokenizer(), &tokenizer).expect("copy");
    let source = format!("{{path: '{}'}}", model.display());
    let config_file = dir.path().join("config.yaml");
    write_config(
        &config_file,
        &config(dir.path(), &source, "tokenizer: {path: vocab/minilm.json}"),
    );
    let running = start_file(&config_file).await;
    let minilm = expected(&minilm_tokenizer());
    assert_eq!(embed(&running).await.expect("embeds")[..2], minilm);

    // The named file is watched: a new tokenizer in its place loads a new instance.
    let other = example("tiny-lm/1/tokenizer.json");
    let staged = tokenizer.with_extension("staged");
    std::fs::copy(&other, &staged).expect("stage");
    std::fs::rename(&staged, &tokenizer).expect("swap");
    let tiny = expected(&other);
    assert_ne!(
        tiny, minilm,
        "the two tokenizers must tell themselves apart"
    );
    wait_until(Duration::from_secs(30), || async {
        embed(&running).await.is_ok_and(|e| e[..2] == tiny)
    })
    .await
    .expect("the swapped tokenizer serves");

    let wrong = "0".repeat(64);
    write_config(
        &config_file,
        &config(
            dir.path(),
            &source,
            &format!("tokenizer: {{path: vocab/minilm.json, sha256: {wrong}}}"),
        ),
    );
    let reason = wait_failed_with(&running, &wrong).await;
    assert!(reason.contains("vocab/minilm.json"), "{reason}");
    assert_eq!(embed(&running).await.expect("still serves")[..2], tiny);

    write_config(
        &config_file,
        &config(dir.path(), &source, "tokenizer: {path: vocab/missing.json}"),
    );
    let reason = wait_failed_with(&running, "vocab/missing.json").await;
    assert!(reason.contains("tokenizer"), "{reason}");
    assert_eq!(embed(&running).await.expect("still serves")[..2], tiny);
    running.shutdown().await;
}

/// Serves `files` by URL path on 127.0.0.1 (404 for any other); returns the base URL.
async fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 2048];
            let read = socket.read(&mut request).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&request[..read]).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("");
            let (status, body) = match files.get(path) {
                Some(body) => ("200 OK", body.as_slice()),
                None => ("404 Not Found", &[][..]),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body).await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_http_embed_model_downloads_its_tokenizer_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pinned, unset) = (dir.path().join("a/model.pt"), dir.path().join("b/model.pt"));
    make_embed_models(dir.path(), &[(&pinned, 1.0), (&unset, 2.0)]);
    let tokenizer = std::fs::read(minilm_tokenizer()).expect("tokenizer");
    let model_bytes = |path: &Path| std::fs::read(path).expect("model");
    let base = serve(HashMap::from([
        ("/minilm/1/model.pt".to_owned(), model_bytes(&pinned)),
        ("/minilm/1/vocab/minilm.json".to_owned(), tokenizer.clone()),
        ("/plain/1/model.pt".to_owned(), model_bytes(&unset)),
        ("/plain/1/tokenizer.json".to_owned(), tokenizer.clone()),
        ("/plain/1/signature.json".to_owned(), SIGNATURE.into()),
    ]))
    .await;
    let minilm = expected(&minilm_tokenizer());
    let http = |path: &str, model: &Path| {
        let sha = sha256_hex(&model_bytes(model));
        (
            format!("{{http: {{url: '{base}/{path}', sha256: {sha}}}}}"),
            sha,
        )
    };

    // As examples/embedding-minilm.yaml: the tokenizer named and pinned.
    let (source, model_sha) = http("minilm/1/model.pt", &pinned);
    let yaml = config(
        dir.path(),
        &source,
        &format!(
            "tokenizer: {{path: vocab/minilm.json, sha256: {}}}",
            sha256_hex(&tokenizer)
        ),
    );
    let running = start_inline(&yaml).await;
    assert_eq!(
        embed(&running).await.expect("embeds text"),
        [minilm[0], minilm[1], 1.0]
    );
    let cached = dir.path().join("cache/http").join(&model_sha);
    assert_eq!(
        std::fs::read(cached.join("vocab/minilm.json")).expect("cached beside the model"),
        tokenizer
    );
    running.shutdown().await;

    // Unset, and no tensors in the config: tokenizer.json and signature.json beside the
    // model URL.
    let (source, _) = http("plain/1/model.pt", &unset);
    let running = start_inline(&bare_config(dir.path(), &source, "")).await;
    assert_eq!(
        embed(&running).await.expect("embeds text"),
        [minilm[0], minilm[1], 2.0]
    );
    running.shutdown().await;
}

#[tokio::test]
async fn an_http_tokenizer_that_fails_its_pin_fails_the_load_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("a/model.pt");
    make_embed_models(dir.path(), &[(&model, 1.0)]);
    let model_bytes = std::fs::read(&model).expect("model");
    let base = serve(HashMap::from([
        ("/m/model.pt".to_owned(), model_bytes.clone()),
        (
            "/m/tokenizer.json".to_owned(),
            std::fs::read(minilm_tokenizer()).expect("tokenizer"),
        ),
    ]))
    .await;
    let wrong = "0".repeat(64);
    let yaml = config(
        dir.path(),
        &format!(
            "{{http: {{url: '{base}/m/model.pt', sha256: {}}}}}",
            sha256_hex(&model_bytes)
        ),
        &format!("tokenizer: {{sha256: {wrong}}}"),
    );
    let config = modelplane_config::RuntimeConfig::from_yaml(&yaml).expect("valid");
    let running =
        modelplane_runtime::start(modelplane_runtime::ConfigSource::Inline(Box::new(config)))
            .await
            .expect("the server starts without a serving version");
    let reason = wait_failed_with(&running, &wrong).await;
    assert!(reason.contains("/m/tokenizer.json"), "{reason}");
    let (status, _) = embed(&running).await.expect_err("nothing serves");
    assert_eq!(status, 503);
    running.shutdown().await;
}

#[tokio::test]
async fn a_configured_tokenizer_overrides_the_one_config_json_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("tiny");
    generate_support::copy_folder(&generate_support::tiny_llama(), &folder);
    let named = folder.join("vocab/named.json");
    std::fs::create_dir_all(named.parent().expect("parent")).expect("dir");
    // config.json still says tokenizer.json, which is gone.
    std::fs::rename(folder.join("tokenizer.json"), &named).expect("move");
    let extra = format!(
        "generation: {{slots: 2, context: 128}}\n  tokenizer: {{path: vocab/named.json, sha256: {}}}",
        sha256_of(&named)
    );
    let yaml = generate_support::tiny_config(dir.path(), &folder, &extra);
    let running = start_inline(&yaml).await;
    let version = generate_support::serving(&running, "tiny");
    let codec = version.text_codec().expect("a tokenizer");
    let reference = TextCodec::from_tokenizer_file(&named).expect("tokenizer");
    assert_eq!(
        codec.encode(TEXT, false).expect("encodes"),
        reference.encode(TEXT, false).expect("encodes")
    );
    assert!(
        codec.has_chat_template(),
        "config.json's chat template still applies"
    );
    assert_eq!(
        generate_support::generate_ids(&running, "tiny", &[5, 6, 7], 4)
            .await
            .len(),
        4
    );
    running.shutdown().await;
}

/// The pins of examples/embedding-minilm.yaml, in order: the model's, the tokenizer's.
fn example_pins() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/embedding-minilm.yaml");
    std::fs::read_to_string(path)
        .expect("example")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("sha256: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minilm_example_serves_text_embeddings_over_http() {
    let folder = example("minilm/1");
    let pins = example_pins();
    // The tokenizer is the package's file as shipped, so the example's pin is exact. The
    // TorchScript export is not byte-for-byte reproducible between runs of make_models.py,
    // so the model is served with the pin of the file at hand (as a user pins their upload).
    assert_eq!(
        pins.len(),
        2,
        "examples/embedding-minilm.yaml pins model and tokenizer"
    );
    assert_eq!(
        pins[1],
        sha256_of(&minilm_tokenizer()),
        "examples/embedding-minilm.yaml pins the MiniLM tokenizer"
    );
    let pins = [sha256_of(&folder.join("model.pt")), pins[1].clone()];
    let file = |name: &str| std::fs::read(folder.join(name)).expect("example file");
    let base = serve(HashMap::from([
        ("/minilm/1/model.pt".to_owned(), file("model.pt")),
        (
            "/minilm/1/tokenizer.json".to_owned(),
            file("tokenizer.json"),
        ),
        (
            "/minilm/1/signature.json".to_owned(),
            file("signature.json"),
        ),
    ]))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    // What the operator renders from the example, the URL pointed at the loopback server.
    let yaml = bare_config(
        dir.path(),
        &format!(
            "{{http: {{url: '{base}/minilm/1/model.pt', sha256: {}}}}}",
            pins[0]
        ),
        &format!(
            "batching: {{maxBatchSize: 32, maxQueueDelay: 2ms}}\n  tokenizer: {{path: tokenizer.json, sha256: {}}}",
            pins[1]
        ),
    );
    let running = start_inline(&yaml).await;
    let url = format!("http://{}/v1/embeddings", running.http_addr);
    let body = serde_json::json!({"model": "m", "input": ["A cat sits on the mat.", TEXT]});
    let (status, body) = post_json(&url, &body).await;
    assert_eq!(status, 200, "{body}");
    let vectors: Vec<Vec<f64>> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|item| {
            let values = item["embedding"].as_array().expect("embedding");
            values.iter().map(|v| v.as_f64().expect("number")).collect()
        })
        .collect();
    assert_eq!(vectors.len(), 2);
    for vector in &vectors {
        assert_eq!(vector.len(), 384);
        let norm = vector.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "normalized: {norm}");
    }
    assert_ne!(vectors[0], vectors[1]);
    running.shutdown().await;
}
