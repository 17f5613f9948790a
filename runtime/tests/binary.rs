//! The built `modelplane-runtime` binary: how it links libtorch, and how it starts and
//! stops as a process.

mod common;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BINARY: &str = env!("CARGO_BIN_EXE_modelplane-runtime");

/// Runs the binary with no `LD_LIBRARY_PATH`: it must find libtorch by itself.
fn runtime() -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

fn serve_model(model: &Path, extra: &[&str]) -> (Child, u16) {
    let (http, grpc) = (free_port(), free_port());
    let child = runtime()
        .args(["serve", "--model"])
        .arg(model)
        .args([
            "--http",
            &format!("127.0.0.1:{http}"),
            "--grpc",
            &format!("127.0.0.1:{grpc}"),
        ])
        .args(extra)
        .spawn()
        .expect("spawn the runtime");
    (child, http)
}

#[test]
fn dynamic_section_keeps_libtorch_cuda() {
    let output = Command::new("readelf")
        .args(["-d", BINARY])
        .output()
        .expect("readelf (binutils) runs");
    let dynamic = String::from_utf8_lossy(&output.stdout);
    assert!(
        dynamic.contains("Shared library: [libtorch_cuda.so]"),
        "libtorch_cuda.so is not NEEDED:\n{dynamic}"
    );
    assert!(
        dynamic.contains("torch/lib]"),
        "no rpath/runpath to the torch wheel's lib dir:\n{dynamic}"
    );
}

#[test]
fn binary_runs_without_ld_library_path() {
    let output = runtime().arg("--version").output().expect("spawn");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("modelplane-runtime"));
}

#[test]
fn sigterm_finishes_gracefully_with_status_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&model, 1.0)]);
    let (mut child, http) = serve_model(&model, &[]);
    let ready = format!("http://127.0.0.1:{http}/v2/health/ready");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let became_ready = runtime.block_on(wait_until(Duration::from_secs(60), || async {
        reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success())
    }));
    if became_ready.is_err() {
        let _ = child.kill();
        panic!("runtime never became ready: {:?}", child.wait_with_output());
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_model_that_cannot_load_at_startup_exits_with_status_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("broken/1/model.pt");
    std::fs::create_dir_all(model.parent().expect("parent")).expect("dir");
    std::fs::write(&model, b"not a model").expect("write");
    std::fs::write(
        model.with_file_name("signature.json"),
        r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}]}"#,
    )
    .expect("signature");
    let (mut child, _) = serve_model(&model, &[]);
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("exits");
    let output = child.wait_with_output().expect("output");
    assert_eq!(
        status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("model broken version 1 failed to load")
    );
}

#[test]
fn cuda_device_works_on_a_gpu_and_fails_clearly_without_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&model, 1.0)]);
    let (mut child, _) = serve_model(&model, &["--device", "cuda"]);
    if tch::Cuda::is_available() {
        assert_eq!(
            wait_exit(&mut child, Duration::from_secs(20)),
            None,
            "the runtime should keep serving on a GPU"
        );
        return;
    }
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("exits");
    let output = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&output.stdout);
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("CUDA is not available"), "{log}");
}
