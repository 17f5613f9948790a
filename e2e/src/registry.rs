//! A real OCI registry for the verification e2e tests: Debian's `docker-registry` on
//! 127.0.0.1 (started by `scripts/registry.sh`), artifacts pushed with the PyPI `oras`
//! client and cosign-format signatures made with openssl (both by
//! `verify/tests/support/oci_tool.py`). The operator runs on the host, so it
//! reaches the registry on loopback; the runtime pods never pull from it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::workspace_root;

/// Runs `program args` in `dir`; returns trimmed stdout, or fails with stderr.
fn run(dir: &Path, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> anyhow::Result<String> {
    let program = program.as_ref();
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {program:?}"))?;
    if !output.status.success() {
        bail!(
            "{program:?} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn python() -> PathBuf {
    std::env::var_os("MODELPLANE_PYTHON")
        .map_or_else(|| workspace_root().join(".venv/bin/python"), PathBuf::from)
}

/// A registry on a free loopback port, stopped on drop.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    addr: String,
}

impl TestRegistry {
    /// Starts the registry (needs `docker-registry` and the venv's `oras`).
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let script = workspace_root().join("scripts/registry.sh");
        let state = dir.path().join("registry");
        let state = state.to_str().context("utf-8 temp path")?;
        let addr = run(dir.path(), script, &["start", state])?;
        Ok(Self { dir, addr })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn oci_tool(&self, files: &[(&str, &[u8])], args: &[&str]) -> anyhow::Result<String> {
        let staging = tempfile::tempdir_in(self.dir.path())?;
        for (name, content) in files {
            std::fs::write(staging.path().join(name), content)?;
        }
        let script = workspace_root().join("verify/tests/support/oci_tool.py");
        let mut all = vec![script.to_str().context("utf-8 path")?];
        all.extend_from_slice(args);
        run(staging.path(), python(), &all)
    }

    /// Pushes `content` as a one-layer artifact `repo:tag`; returns its manifest digest.
    pub fn push(&self, repo: &str, tag: &str, content: &[u8]) -> anyhow::Result<String> {
        self.oci_tool(
            &[("blob.bin", content)],
            &["push", &self.addr, repo, tag, "blob.bin"],
        )
    }

    /// Pushes a cosign-format signature of `digest` made with the openssl key `key`.
    pub fn sign(&self, repo: &str, digest: &str, key: &SigningKey) -> anyhow::Result<()> {
        let key = key.private.to_str().context("utf-8 path")?;
        self.oci_tool(&[], &["sign", &self.addr, repo, digest, key])
            .map(drop)
    }

    /// A new openssl ECDSA P-256 key pair in the registry's temp dir.
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        let private = self.dir.path().join("cosign.key");
        let public = self.dir.path().join("cosign.pub");
        let (private_arg, public_arg) = (
            private.to_str().context("utf-8 path")?,
            public.to_str().context("utf-8 path")?,
        );
        let dir = self.dir.path();
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
        )?;
        run(
            dir,
            "openssl",
            &["ec", "-in", private_arg, "-pubout", "-out", public_arg],
        )?;
        Ok(SigningKey {
            public_pem: std::fs::read_to_string(&public)?,
            private,
        })
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let script = workspace_root().join("scripts/registry.sh");
        if let Some(state) = self.dir.path().join("registry").to_str() {
            let _ = run(self.dir.path(), script, &["stop", state]);
        }
    }
}

/// An openssl key pair: the private key file and the PEM public key to trust.
pub struct SigningKey {
    private: PathBuf,
    /// PEM `PUBLIC KEY`, the content of a `cosign.pub`.
    pub public_pem: String,
}
