//! The `modelplane-bench` binary: flags in, printed summary and JSON report out.

mod stub;

use std::process::Command;
use std::sync::atomic::Ordering;

use serde_json::Value;

fn bench(args: Vec<String>) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_modelplane-bench"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_a_summary_and_writes_the_json_report() {
    let stub = stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let args: Vec<String> = [
        "--url",
        &stub.rest_url,
        "--protocol",
        "rest-binary",
        "--model",
        "mlp",
        "--concurrency",
        "2",
        "--requests",
        "25",
        "--duration",
        "20s",
        "--label",
        "cli",
        "--json",
        json.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || bench(args))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("25 requests (25 ok)"), "{stdout}");
    assert!(stdout.contains("p99"), "{stdout}");

    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["ok"], 25);
    assert_eq!(report["scenario"]["label"], "cli");
    assert_eq!(report["scenario"]["protocol"], "rest-binary");
    assert_eq!(report["scenario"]["mode"], "closed");
    assert_eq!(report["scenario"]["concurrency"], 2);
    assert_eq!(report["scenario"]["shape"], serde_json::json!([1, 4]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_drives_grpc_in_open_loop() {
    let stub = stub::start().await;
    let args: Vec<String> = [
        "--url",
        &stub.grpc_url,
        "--protocol",
        "grpc",
        "--model",
        "mlp",
        "--rate",
        "100",
        "--arrivals",
        "uniform",
        "--duration",
        "300ms",
        "--batch",
        "2",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || bench(args))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("30 requests (30 ok)"), "{stdout}");
    assert_eq!(stub.seen.grpc_ok.load(Ordering::Relaxed), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_input_flags_skip_the_metadata() {
    let stub = stub::start().await;
    let args: Vec<String> = [
        "--url",
        &stub.rest_url,
        "--model",
        "mlp",
        "--requests",
        "5",
        "--input-name",
        "input__0",
        "--datatype",
        "fp32",
        "--shape",
        "2,4",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || bench(args))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("input input__0 FP32 [2, 4]"), "{stdout}");
    assert!(stdout.contains("5 requests (5 ok)"), "{stdout}");
}

#[test]
fn a_malformed_shape_is_refused_before_any_request() {
    let args: Vec<String> = [
        "--model",
        "m",
        "--shape",
        "1,x",
        "--url",
        "http://127.0.0.1:9",
    ]
    .map(String::from)
    .to_vec();
    let out = bench(args);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot parse shape"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_fails_clearly_when_the_model_metadata_is_unreachable() {
    let args: Vec<String> = [
        "--url",
        "http://127.0.0.1:9",
        "--model",
        "mlp",
        "--requests",
        "1",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || bench(args))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model metadata"), "{stderr}");
}

#[test]
fn rate_and_concurrency_cannot_be_combined() {
    let args: Vec<String> = ["--model", "m", "--rate", "10", "--concurrency", "2"]
        .map(String::from)
        .to_vec();
    let out = bench(args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
