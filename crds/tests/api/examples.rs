//! Every `examples/*.yaml` parses into its Rust type and passes the generated schema.

use std::path::PathBuf;

use modelplane_api::{Canary, ModelDeployment, TenantQuota};
use serde::Deserialize;
use serde_json::Value;

use crate::support::{admit, workspace_root};

/// The use cases the examples must cover, by file name.
const REQUIRED: [&str; 9] = [
    "classifier-cpu.yaml",
    "classifier-gpu.yaml",
    "mlp-tensor.yaml",
    "embedding-minilm.yaml",
    "generate-tiny-lm.yaml",
    "pipeline-rag.yaml",
    "prompt-experiments.yaml",
    "tenantquota-team-a.yaml",
    "canary-classifier.yaml",
];

fn example_files() -> Vec<PathBuf> {
    let dir = workspace_root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|entry| entry.expect("entry readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("example readable");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Deserializes `doc` into the Rust type of its kind.
fn parse_typed(doc: &Value) -> Result<(), String> {
    let result = match doc["kind"].as_str() {
        Some("ModelDeployment") => serde_json::from_value::<ModelDeployment>(doc.clone()).map(drop),
        Some("TenantQuota") => serde_json::from_value::<TenantQuota>(doc.clone()).map(drop),
        Some("Canary") => serde_json::from_value::<Canary>(doc.clone()).map(drop),
        other => return Err(format!("unexpected kind {other:?}")),
    };
    result.map_err(|e| e.to_string())
}

#[test]
fn every_use_case_has_an_example() {
    let names: Vec<String> = example_files()
        .iter()
        .map(|p| {
            p.file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for required in REQUIRED {
        assert!(
            names.iter().any(|n| n == required),
            "examples/{required} is missing"
        );
    }
}

#[test]
fn every_example_parses_and_validates() {
    let mut failures = Vec::new();
    for path in example_files() {
        for doc in documents(&path) {
            let name = format!("{} ({})", path.display(), doc["metadata"]["name"]);
            if doc["apiVersion"] == "v1" && doc["kind"] == "Namespace" {
                continue;
            }
            if doc["apiVersion"] != "serving.modelplane.io/v1alpha1" {
                failures.push(format!("{name}: apiVersion {}", doc["apiVersion"]));
                continue;
            }
            if let Err(error) = parse_typed(&doc) {
                failures.push(format!("{name}: does not parse: {error}"));
            }
            let kind = doc["kind"].as_str().unwrap_or_default();
            let violations = admit(kind, &doc);
            if !violations.is_empty() {
                failures.push(format!("{name}: {violations:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `kubectl apply -f examples/<file>` works on a new cluster: every namespace an example
/// object lives in is created by the same file.
#[test]
fn every_example_ships_the_namespaces_it_uses() {
    let mut missing = Vec::new();
    for path in example_files() {
        let docs = documents(&path);
        let declared: Vec<&Value> = docs
            .iter()
            .filter(|doc| doc["kind"] == "Namespace")
            .map(|doc| &doc["metadata"]["name"])
            .collect();
        for doc in &docs {
            let namespace = &doc["metadata"]["namespace"];
            if !namespace.is_null() && !declared.contains(&namespace) {
                missing.push(format!("{}: namespace {namespace}", path.display()));
            }
        }
        let first_namespace = docs.iter().position(|doc| doc["kind"] == "Namespace");
        let first_namespaced = docs
            .iter()
            .position(|doc| !doc["metadata"]["namespace"].is_null());
        if let (Some(ns), Some(object)) = (first_namespace, first_namespaced) {
            assert!(
                ns < object,
                "{}: the Namespace must come first",
                path.display()
            );
        }
    }
    assert!(
        missing.is_empty(),
        "not created by the example itself: {missing:?}"
    );
}
