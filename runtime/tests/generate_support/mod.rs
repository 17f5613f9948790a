//! Fixtures of the generate tests: the example model folders, configs serving them,
//! the Python reference loop, and a client of the engine.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use modelplane_generate::engine::{GenerateRequest, StreamEvent};
use modelplane_generate::sampling::SamplingParams;
use modelplane_runtime::Running;
use modelplane_runtime::catalog::Version;

use crate::common::python;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/models")
        .join(name)
}

/// examples/models/tiny-llama: random weights, SmolLM2's architecture and tokenizer.
pub fn tiny_llama() -> PathBuf {
    example("tiny-llama")
}

/// examples/models/smollm2: SmolLM2-135M-Instruct.
pub fn smollm2() -> PathBuf {
    example("smollm2")
}

/// A config serving the model folder `folder` as `tiny`, version `1`.
pub fn tiny_config(dir: &Path, folder: &Path, extra_model_yaml: &str) -> String {
    format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{cache}', intraOpThreads: 1}}
models:
- name: tiny
  task: generate
  {extra_model_yaml}
  versions:
  - version: '1'
    source: {{path: '{folder}'}}
",
        cache = dir.join("cache").display(),
        folder = folder.display()
    )
}

/// Copies a model folder (so a test may change it).
pub fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

/// The instance serving a model's default version.
pub fn serving(running: &Running, model: &str) -> Arc<Version> {
    let catalog = running.state.catalog.load();
    let (_, version) = catalog.resolve(model, None).expect("model serves");
    version
}

/// A greedy request of `max_tokens` over prompt ids.
pub fn greedy_request(prompt: Vec<u32>, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams::default(),
        stop: Vec::new(),
        deadline: None,
        fair: Default::default(),
    }
}

/// Greedy token ids of one request, through the model's engine.
pub async fn generate_ids(
    running: &Running,
    model: &str,
    prompt: &[u32],
    max_tokens: u32,
) -> Vec<u32> {
    let version = serving(running, model);
    let engine = version.engine().expect("a generate model");
    let mut stream = engine
        .submit(greedy_request(prompt.to_vec(), max_tokens))
        .expect("admitted");
    let mut ids = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            StreamEvent::Delta { tokens, .. } => ids.extend(tokens),
            StreamEvent::Finished { .. } => return ids,
            StreamEvent::Failed(err) => panic!("generation failed: {err}"),
        }
    }
    panic!("the stream ended without finishing");
}

const REFERENCE: &str = r#"
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
from step_loop import generate_alone
model = torch.jit.load(sys.argv[2])
config = json.load(open(sys.argv[3]))
out = [generate_alone(model, p, n, config["eos_token_ids"]) for p, n in json.load(sys.stdin)]
print(json.dumps(out))
"#;

/// Greedy tokens of each (prompt, max_tokens) from examples/llm/step_loop.py's
/// `generate_alone`, the contract's reference loop.
pub fn python_reference(folder: &Path, requests: &[(Vec<u32>, u32)]) -> Vec<Vec<u32>> {
    use std::io::Write;
    let llm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/llm");
    let mut child = Command::new(python())
        .arg("-c")
        .arg(REFERENCE)
        .arg(&llm)
        .arg(folder.join("model.pt"))
        .arg(folder.join("config.json"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the venv python (scripts/setup.sh makes it)");
    let input = serde_json::to_vec(requests).expect("json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write prompts");
    let output = child.wait_with_output().expect("python finishes");
    assert!(
        output.status.success(),
        "reference loop failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("token lists")
}
