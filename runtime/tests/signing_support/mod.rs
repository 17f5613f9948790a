//! Real parts for the model-signing tests: keys made with `openssl`, bundles made by the
//! real `model_signing` CLI (PyPI model-signing, in the project venv), and a tiny HTTP
//! file server on 127.0.0.1.
//!
//! Without the CLI the tests print `SKIPPED` — unless `CI=true`, where they fail.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use modelplane_config::{SignatureConfig, SignatureMode, TrustedKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The `model_signing` CLI of the project venv.
pub fn cli() -> PathBuf {
    let venv = std::env::var_os("MODELPLANE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    venv.join("bin/model_signing")
}

/// Whether the CLI and openssl are there; if not, skip (outside CI) or fail (in CI).
pub fn parts_available() -> bool {
    let openssl = Command::new("openssl").arg("version").output();
    if cli().exists() && openssl.is_ok_and(|o| o.status.success()) {
        return true;
    }
    let message = format!(
        "missing real test parts: {} (pip install model-signing) or openssl",
        cli().display()
    );
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "{message}");
    eprintln!("SKIPPED: {message}");
    false
}

fn run(program: &Path, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A P-256 key pair made by openssl in `dir`: (private key file, public key PEM).
pub fn openssl_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let openssl = Path::new("openssl");
    let private_arg = private.to_str().expect("utf-8 path");
    run(
        openssl,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            private_arg,
        ],
    );
    run(
        openssl,
        &[
            "ec",
            "-in",
            private_arg,
            "-pubout",
            "-out",
            public.to_str().expect("utf-8 path"),
        ],
    );
    let pem = std::fs::read_to_string(&public).expect("public key");
    (private, pem)
}

/// Signs `model` (a file or a folder) with the CLI, writing the bundle to `bundle`.
pub fn sign(model: &Path, private_key: &Path, bundle: &Path) {
    run(
        &cli(),
        &[
            "sign",
            "key",
            model.to_str().expect("utf-8 path"),
            "--private_key",
            private_key.to_str().expect("utf-8 path"),
            "--signature",
            bundle.to_str().expect("utf-8 path"),
        ],
    );
}

/// A signature block trusting `pem` under `mode`, bundle at its default place.
pub fn trusting(pem: &str, mode: SignatureMode) -> SignatureConfig {
    SignatureConfig {
        mode,
        keys: vec![TrustedKey {
            name: "model-pub".into(),
            pem: pem.to_owned(),
        }],
        bundle: None,
    }
}

/// Serves the files in `files` (URL path → body) on 127.0.0.1, 404 for anything else;
/// returns the base URL (`http://127.0.0.1:<port>`).
pub async fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let files = Arc::new(files);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let files = files.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let read = socket.read(&mut request).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&request[..read]);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body) = match files.get(&path) {
                    Some(body) => ("200 OK", body.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A loopback URL where nothing listens.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}
