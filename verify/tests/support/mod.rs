//! Real parts for the integration tests: a CNCF distribution registry on 127.0.0.1 (Debian's
//! `docker-registry`), the `oras` client and `openssl` for independent cosign-format signatures.
//!
//! When the registry binary or the Python venv is missing the tests skip with a message,
//! unless `CI=true`, where a missing part fails the test.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use modelplane_verify::{Digest, KeySet, PublicKey};

/// The registry binary the tests start (override with `DOCKER_REGISTRY_BIN`).
fn registry_bin() -> PathBuf {
    std::env::var_os("DOCKER_REGISTRY_BIN")
        .map_or_else(|| "/usr/bin/docker-registry".into(), PathBuf::from)
}

/// The workspace's Python venv (override with `MODELPLANE_PYTHON`).
pub fn python() -> PathBuf {
    std::env::var_os("MODELPLANE_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
        PathBuf::from,
    )
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the registry binary and the Python `modules` (e.g. `["oras"]`) are present; if not,
/// skip (outside CI) or fail (in CI).
pub fn registry_parts_available(modules: &[&str]) -> bool {
    parts_available(true, modules)
}

/// Whether the Python `modules` are present in the venv; if not, skip (outside CI) or fail (in CI).
pub fn python_parts_available(modules: &[&str]) -> bool {
    parts_available(false, modules)
}

fn parts_available(registry: bool, modules: &[&str]) -> bool {
    let mut missing = Vec::new();
    if registry && !registry_bin().exists() {
        missing.push(format!(
            "{} (apt-get install docker-registry)",
            registry_bin().display()
        ));
    }
    let module = modules.join(", ");
    let imports = Command::new(python())
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status();
    if !imports.is_ok_and(|s| s.success()) {
        missing.push(format!("python modules {module} in {}", python().display()));
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("missing real test parts: {}", missing.join("; "));
    assert!(!in_ci(), "{message}");
    eprintln!("SKIPPED: {message}");
    false
}

/// A registry process on a free loopback port, storage in a temp dir; killed on drop.
pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    tls: bool,
    child: Option<Child>,
}

impl TestRegistry {
    /// Starts a plain-http registry without auth.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut registry = Self {
            dir,
            port,
            tls: false,
            child: None,
        };
        registry.write_config("");
        registry.up();
        registry
    }

    /// Restarts on the same port and storage with `extra` appended to the config (a `tls:` block
    /// under `http:` when `tls` is set, or an `auth:` block).
    pub fn reconfigure(&mut self, extra: &str, tls: bool) {
        self.down();
        self.tls = tls;
        self.write_config(extra);
        self.up();
    }

    fn write_config(&self, extra: &str) {
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{}\n{extra}",
            self.dir.path().join("storage").display(),
            self.port
        );
        std::fs::write(self.dir.path().join("config.yml"), config).unwrap();
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, same port and storage) and waits until it accepts connections.
    pub fn up(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new(registry_bin())
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        for _ in 0..200 {
            if self.answers() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        panic!(
            "registry on {} did not come up within 10 s:\n{log}",
            self.addr()
        );
    }

    /// Kills the process; the port stops answering.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn answers(&self) -> bool {
        if self.tls {
            return TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
    }

    /// The file holding blob `digest` in the registry's filesystem storage.
    pub fn blob_file(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.down();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `program args` in `dir`, panicking with its stderr on failure; returns trimmed stdout.
pub fn run(dir: &Path, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let output = Command::new(&program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", program.as_ref()));
    assert!(
        output.status.success(),
        "{:?} {args:?} failed:\n{}",
        program.as_ref(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// An ECDSA P-256 key pair made by openssl: (private key path, trusted public key).
pub fn openssl_key(dir: &Path, name: &str) -> (PathBuf, PublicKey) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    let private_arg = private.to_str().unwrap();
    run(
        dir,
        "openssl",
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
        dir,
        "openssl",
        &[
            "ec",
            "-in",
            private_arg,
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    );
    let pem = std::fs::read(&public).unwrap();
    (private, PublicKey::from_pem(name, &pem).unwrap())
}

/// A key set holding one key.
pub fn keys(key: &PublicKey) -> KeySet {
    KeySet::new(vec![key.clone()])
}

fn oci_tool(dir: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oci_tool.py");
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    run(dir, python(), &all)
}

/// Pushes `files` (name, content) as `repo:tag` with oras; returns the manifest digest.
pub fn push(
    registry: &TestRegistry,
    work: &Path,
    repo: &str,
    tag: &str,
    files: &[(&str, &[u8])],
) -> Digest {
    let staging = tempfile::tempdir_in(work).unwrap();
    for (name, content) in files {
        std::fs::write(staging.path().join(name), content).unwrap();
    }
    let addr = registry.addr();
    let mut args = vec!["push", addr.as_str(), repo, tag];
    args.extend(files.iter().map(|(name, _)| *name));
    oci_tool(staging.path(), &args).parse().unwrap()
}

/// Digests of a pushed signature: (signature manifest, payload blob).
pub struct PushedSignature {
    pub manifest: Digest,
    pub payload: Digest,
}

/// Signs `digest` (or a payload naming `payload_digest`) with openssl and pushes it with oras
/// at `repo:sha256-<hex>.sig`.
pub fn sign(
    registry: &TestRegistry,
    work: &Path,
    repo: &str,
    digest: &Digest,
    private_key: &Path,
    payload_digest: Option<&Digest>,
) -> PushedSignature {
    let staging = tempfile::tempdir_in(work).unwrap();
    let addr = registry.addr();
    let digest = digest.to_string();
    let mut args = vec!["sign", &addr, repo, &digest, private_key.to_str().unwrap()];
    let other = payload_digest.map(ToString::to_string);
    if let Some(other) = &other {
        args.extend(["--payload-digest", other]);
    }
    let out: serde_json::Value = serde_json::from_str(&oci_tool(staging.path(), &args)).unwrap();
    PushedSignature {
        manifest: out["manifest"].as_str().unwrap().parse().unwrap(),
        payload: out["payload"].as_str().unwrap().parse().unwrap(),
    }
}
