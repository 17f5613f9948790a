//! Each version loads and swaps on its own: a model whose download hangs, or whose new
//! file fails to load, never holds up another model's swap, and a load that a newer
//! config superseded never replaces what the newer one loaded.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Longest a held download waits for the test to release it.
const HOLD_LIMIT: Duration = Duration::from_secs(40);

/// A loopback HTTP server for model files, where a held path answers only once released.
struct Files {
    base: String,
    asked: Arc<Mutex<Vec<String>>>,
    release: watch::Sender<bool>,
}

impl Files {
    async fn serve(files: HashMap<String, Vec<u8>>, held: HashSet<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = watch::channel(false);
        let (files, held, seen) = (Arc::new(files), Arc::new(held), Arc::clone(&asked));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (files, held, seen) =
                    (Arc::clone(&files), Arc::clone(&held), Arc::clone(&seen));
                let mut released = released.clone();
                // Each connection on its own task: a held one holds up no other.
                tokio::spawn(async move {
                    let mut request = [0u8; 2048];
                    let read = socket.read(&mut request).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&request[..read]).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    seen.lock().expect("lock").push(path.clone());
                    if held.contains(&path) {
                        let _ = tokio::time::timeout(HOLD_LIMIT, released.wait_for(|r| *r)).await;
                    }
                    let (status, body) = match files.get(&path) {
                        Some(body) => ("200 OK", body.as_slice()),
                        None => ("404 Not Found", &[][..]),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(body).await;
                });
            }
        });
        Self {
            base: format!("http://{addr}"),
            asked,
            release,
        }
    }

    fn was_asked(&self, path: &str) -> bool {
        self.asked.lock().expect("lock").iter().any(|p| p == path)
    }

    async fn wait_asked(&self, path: &str) {
        wait_until(Duration::from_secs(20), || async { self.was_asked(path) })
            .await
            .unwrap_or_else(|e| panic!("{path} never requested: {e}"));
    }
}

/// Affine models `k1`..`k4` (`y = x * k + 1`) in `dir/staging`, by k.
fn make_models(dir: &Path) -> HashMap<u32, PathBuf> {
    let paths: HashMap<u32, PathBuf> = (1..=4)
        .map(|k| (k, dir.join(format!("staging/k{k}/model.pt"))))
        .collect();
    let models: Vec<(&Path, f32)> = paths
        .iter()
        .map(|(k, p)| (p.as_path(), *k as f32))
        .collect();
    make_affine_models(&models);
    paths
}

/// Replaces `target` atomically, as deployment tools do.
fn swap_file(source: &Path, target: &Path) {
    let staged = target.with_extension("staged");
    std::fs::create_dir_all(target.parent().expect("parent")).expect("dir");
    std::fs::copy(source, &staged).expect("stage");
    std::fs::rename(&staged, target).expect("rename");
}

/// A local model `name` at `dir/name/1/model.pt` (with the signature beside it), as `k`.
fn local(dir: &Path, models: &HashMap<u32, PathBuf>, name: &str, k: u32) -> PathBuf {
    let path = dir.join(format!("{name}/1/model.pt"));
    let signature = models[&k].parent().expect("parent").join("signature.json");
    swap_file(&signature, &path.with_file_name("signature.json"));
    swap_file(&models[&k], &path);
    path
}

fn server_yaml(dir: &Path) -> String {
    format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{}'}}\nmodels:\n",
        dir.join("cache").display()
    )
}

fn model_yaml(name: &str, source: &str) -> String {
    format!("- name: {name}\n  versions:\n  - version: '1'\n    source: {source}\n")
}

fn path_source(path: &Path) -> String {
    format!("{{path: '{}'}}", path.display())
}

fn http_source(files: &Files, path: &str, bytes: &[u8]) -> String {
    let sha = hex::encode(Sha256::digest(bytes));
    format!("{{http: {{url: '{}{path}', sha256: {sha}}}}}", files.base)
}

/// The `k` a model answers with, `None` when it does not answer 200.
async fn k_of(base: &str, model: &str) -> Option<u32> {
    let (status, body) = post_json(
        &format!("{base}/v2/models/{model}/infer"),
        &json_body(&[[1.0; 4]]),
    )
    .await;
    (status == 200).then(|| (output_f32(&body, "y")[0] - 1.0).round() as u32)
}

async fn wait_k(base: &str, model: &str, k: u32, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    wait_until(limit, || async { k_of(base, model).await == Some(k) })
        .await
        .map(|()| started.elapsed())
        .map_err(|e| format!("{model} never served k={k}: {e}"))
}

/// The files for an HTTP model `slow`: `/slow/{k}/model.pt` and its signature beside it.
fn slow_files(models: &HashMap<u32, PathBuf>) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    for (k, path) in models {
        let signature = std::fs::read(path.with_file_name("signature.json")).expect("signature");
        files.insert(
            format!("/slow/{k}/model.pt"),
            std::fs::read(path).expect("model"),
        );
        files.insert(format!("/slow/{k}/signature.json"), signature);
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_model_does_not_delay_another_models_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = make_models(dir.path());
    let files = slow_files(&models);
    let bytes = |k: u32| files[&format!("/slow/{k}/model.pt")].clone();
    let held = HashSet::from(["/slow/3/model.pt".to_owned()]);
    let server = Files::serve(files.clone(), held).await;
    let fast = local(dir.path(), &models, "fast", 1);
    let config = |slow: u32| {
        let slow_path = format!("/slow/{slow}/model.pt");
        let slow_source = http_source(&server, &slow_path, &bytes(slow));
        server_yaml(dir.path())
            + &model_yaml("fast", &path_source(&fast))
            + &model_yaml("slow", &slow_source)
    };
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(1)).expect("config");
    let running = start_file(&config_path).await;
    let base = format!("http://{}", running.http_addr);
    assert_eq!(
        (k_of(&base, "fast").await, k_of(&base, "slow").await),
        (Some(1), Some(1))
    );

    // The slow model moves to a download that hangs; then the fast model's file changes.
    std::fs::write(&config_path, config(3)).expect("config");
    server.wait_asked("/slow/3/model.pt").await;
    swap_file(&models[&2], &fast);
    let took = wait_k(&base, "fast", 2, Duration::from_secs(10))
        .await
        .expect("the fast model swaps while the slow one downloads");
    eprintln!("fast model swapped {took:?} after its file changed, slow download held");
    assert_eq!(
        k_of(&base, "slow").await,
        Some(1),
        "the old slow version serves meanwhile"
    );
    let meta: serde_json::Value = reqwest::get(format!("{base}/v2/models/slow"))
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    let state = &meta["version_states"][0];
    assert_eq!(
        (state["state"].as_str(), state["serving"].as_bool()),
        (Some("loading"), Some(true)),
        "{meta}"
    );

    // Released, the slow download finishes and its version swaps in too.
    let _ = server.release.send(true);
    let took = wait_k(&base, "slow", 3, Duration::from_secs(30))
        .await
        .expect("the slow model swaps once its download ends");
    eprintln!("slow model swapped {took:?} after its download was released");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_model_does_not_block_another_models_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = make_models(dir.path());
    let fast = local(dir.path(), &models, "fast", 1);
    let broken = local(dir.path(), &models, "broken", 1);
    let config_path = dir.path().join("config.yaml");
    let yaml = server_yaml(dir.path())
        + &model_yaml("broken", &path_source(&broken))
        + &model_yaml("fast", &path_source(&fast));
    std::fs::write(&config_path, yaml).expect("config");
    let running = start_file(&config_path).await;
    let base = format!("http://{}", running.http_addr);

    let corrupt = dir.path().join("staging/corrupt.pt");
    std::fs::write(&corrupt, b"not a torchscript archive").expect("corrupt");
    swap_file(&corrupt, &broken);
    swap_file(&models[&2], &fast);
    wait_k(&base, "fast", 2, Duration::from_secs(20))
        .await
        .expect("the fast model swaps");
    let failures = r#"modelplane_model_load_failures_total{model="broken",version="1"}"#;
    wait_until(Duration::from_secs(20), || async {
        metric(&running, failures).await == Some(1.0)
    })
    .await
    .expect("the broken load is counted");
    assert_eq!(
        k_of(&base, "broken").await,
        Some(1),
        "the old instance serves"
    );
    let meta: serde_json::Value = reqwest::get(format!("{base}/v2/models/broken"))
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    let state = &meta["version_states"][0];
    assert_eq!(
        (state["state"].as_str(), state["serving"].as_bool()),
        (Some("failed"), Some(true)),
        "{meta}"
    );
    let ready = r#"modelplane_model_state{model="broken",version="1",state="ready"}"#;
    assert_eq!(
        metric(&running, ready).await,
        Some(1.0),
        "still serving counts as ready"
    );
    let ready = r#"modelplane_model_state{model="fast",version="1",state="ready"}"#;
    assert_eq!(metric(&running, ready).await, Some(1.0));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_reload_never_replaces_the_newer_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = make_models(dir.path());
    let files = slow_files(&models);
    let bytes = |k: u32| files[&format!("/slow/{k}/model.pt")].clone();
    let held = HashSet::from(["/slow/3/model.pt".to_owned()]);
    let server = Files::serve(files.clone(), held).await;
    let config = |k: u32| {
        let source = http_source(&server, &format!("/slow/{k}/model.pt"), &bytes(k));
        server_yaml(dir.path()) + &model_yaml("slow", &source)
    };
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(1)).expect("config");
    let running = start_file(&config_path).await;
    let base = format!("http://{}", running.http_addr);

    // k3 hangs in its download when the config moves on to k2.
    std::fs::write(&config_path, config(3)).expect("config");
    server.wait_asked("/slow/3/model.pt").await;
    std::fs::write(&config_path, config(2)).expect("config");
    wait_k(&base, "slow", 2, Duration::from_secs(20))
        .await
        .expect("the newer config's version serves");

    // The superseded download ends: what it loads (if anything) never serves.
    let _ = server.release.send(true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(k_of(&base, "slow").await, Some(2));
    let meta: serde_json::Value = reqwest::get(format!("{base}/v2/models/slow"))
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["version_states"][0]["state"], "ready", "{meta}");
    running.shutdown().await;
}
