//! The operator's real `ArtifactVerifier` against a real registry: Debian's `docker-registry`
//! on 127.0.0.1, artifacts pushed with the PyPI `oras` client and cosign-format signatures
//! made with openssl (both by `verify/tests/support/oci_tool.py`).
//!
//! Without the registry binary or the venv's `oras` the tests print SKIPPED, unless
//! `CI=true`, where they fail.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use modelplane_operator::verification::{ArtifactVerifier, Check, RegistryVerifier};
use modelplane_verify::{
    DockerConfig, FailureReason, KeySet, Mode, PublicKey, RegistryOptions, Verifier,
};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    std::env::var_os("MODELPLANE_PYTHON")
        .map_or_else(|| manifest_dir().join("../.venv/bin/python"), PathBuf::from)
}

fn registry_bin() -> PathBuf {
    std::env::var_os("DOCKER_REGISTRY_BIN")
        .map_or_else(|| "/usr/bin/docker-registry".into(), PathBuf::from)
}

/// Whether the registry and `oras` are here; if not, skip (or fail under `CI=true`).
fn parts_available() -> bool {
    let oras = Command::new(python())
        .args(["-c", "import oras"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if registry_bin().exists() && oras {
        return true;
    }
    let message = format!(
        "missing real test parts: {} (apt-get install docker-registry) or oras in {}",
        registry_bin().display(),
        python().display()
    );
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
        "{message}"
    );
    eprintln!("SKIPPED: {message}");
    false
}

/// A plain-http registry on a free loopback port; killed on drop.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = spawn_registry(dir.path(), port, "");
        // Owned (and killed on drop) before anything can panic.
        let registry = Self { dir, port, child };
        registry.wait_until_up();
        registry
    }

    /// Restarts the registry on the same port and storage, now asking for `user`/`password`
    /// (distribution's htpasswd backend, which takes bcrypt hashes only).
    fn require_login(&mut self, user: &str, password: &str) {
        let output = Command::new(python())
            .args(["-c", "import bcrypt, sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=4, prefix=b'2a')).decode())", password])
            .output()
            .expect("run python bcrypt");
        assert!(
            output.status.success(),
            "bcrypt: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let hash = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let htpasswd = self.dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("htpasswd");
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            htpasswd.display()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_registry(self.dir.path(), self.port, &auth);
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry on port {} did not come up within 10 s", self.port);
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `oci_tool.py args` in a fresh staging directory holding `files`.
    fn oci_tool(&self, files: &[(&str, &[u8])], args: &[&str]) -> String {
        let staging = tempfile::tempdir_in(self.dir.path()).expect("staging");
        for (name, content) in files {
            std::fs::write(staging.path().join(name), content).expect("file");
        }
        let script = manifest_dir().join("../verify/tests/support/oci_tool.py");
        let output = Command::new(python())
            .arg(script)
            .args(args)
            .current_dir(staging.path())
            .output()
            .expect("run oci_tool.py");
        assert!(
            output.status.success(),
            "oci_tool.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Pushes one file as `repo:tag`; returns the manifest digest.
    fn push(&self, repo: &str, tag: &str, content: &[u8]) -> String {
        let addr = self.addr();
        self.oci_tool(
            &[("blob.bin", content)],
            &["push", &addr, repo, tag, "blob.bin"],
        )
    }

    /// Signs `digest` with the openssl key at `key` and pushes the signature.
    fn sign(&self, repo: &str, digest: &str, key: &Path) {
        let addr = self.addr();
        let key = key.to_str().expect("utf-8 path");
        self.oci_tool(&[], &["sign", &addr, repo, digest, key]);
    }
}

/// Starts `docker-registry` on loopback `port`, storing under `dir`, with `extra` config.
fn spawn_registry(dir: &Path, port: u16, extra: &str) -> Child {
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
        dir.join("storage").display()
    );
    std::fs::write(dir.join("config.yml"), config).expect("config");
    Command::new(registry_bin())
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry")
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An openssl P-256 key pair: (private key path, trusted public key).
fn openssl_key(dir: &Path) -> (PathBuf, PublicKey) {
    let private = dir.join("cosign.key");
    let public = dir.join("cosign.pub");
    let openssl = |args: &[&std::ffi::OsStr]| {
        let status = Command::new("openssl").args(args).status();
        assert!(status.expect("run openssl").success(), "openssl {args:?}");
    };
    let (private_arg, public_arg) = (private.as_os_str(), public.as_os_str());
    openssl(&[
        "ecparam".as_ref(),
        "-name".as_ref(),
        "prime256v1".as_ref(),
        "-genkey".as_ref(),
        "-noout".as_ref(),
        "-out".as_ref(),
        private_arg,
    ]);
    openssl(&[
        "ec".as_ref(),
        "-in".as_ref(),
        private_arg,
        "-pubout".as_ref(),
        "-out".as_ref(),
        public_arg,
    ]);
    let pem = std::fs::read(&public).expect("public key");
    (
        private,
        PublicKey::from_pem("cosign-pub/cosign.pub", &pem).expect("pem"),
    )
}

struct Setup {
    registry: Registry,
    verifier: RegistryVerifier,
    keys: KeySet,
    image_digest: String,
    model_digest: String,
}

/// A registry holding a signed runtime "image" and a model, the model signed when `signed`.
fn setup(signed_model: bool) -> Setup {
    let registry = Registry::start();
    let (private, public) = openssl_key(registry.dir.path());
    let image_digest = registry.push("runtime", "0.1.0", b"runtime image");
    registry.sign("runtime", &image_digest, &private);
    let model_digest = registry.push("models/resnet18", "v3", b"model weights");
    if signed_model {
        registry.sign("models/resnet18", &model_digest, &private);
    }
    let options = RegistryOptions {
        insecure_registries: vec![registry.addr()],
        request_timeout: Duration::from_secs(5),
        ..RegistryOptions::default()
    };
    let verifier = RegistryVerifier::new(options, Verifier::new(Duration::from_secs(300), None))
        .expect("client");
    Setup {
        registry,
        verifier,
        keys: KeySet::new(vec![public]),
        image_digest,
        model_digest,
    }
}

impl Setup {
    fn check(&self, mode: Mode) -> Check {
        let addr = self.registry.addr();
        Check {
            image: format!("{addr}/runtime:0.1.0"),
            model_oci: Some(format!("{addr}/models/resnet18:v3")),
            keys: self.keys.clone(),
            mode,
            credentials: None,
        }
    }
}

#[tokio::test]
async fn signed_tags_resolve_to_pinned_verified_digests_then_come_from_the_cache() {
    if !parts_available() {
        return;
    }
    let setup = setup(true);
    let check = setup.check(Mode::Enforce);
    let checked = setup.verifier.check(&check).await;
    let signed = checked.result.expect("verified");
    assert_eq!(signed.signer.as_deref(), Some("cosign-pub/cosign.pub"));
    assert!(!signed.from_cache);
    let pins = checked.pins.expect("pins");
    let addr = setup.registry.addr();
    assert_eq!(
        pins.image,
        format!("{addr}/runtime:0.1.0@{}", setup.image_digest)
    );
    assert_eq!(pins.image_digest, setup.image_digest);
    assert_eq!(
        pins.model_oci,
        Some(format!("{addr}/models/resnet18:v3@{}", setup.model_digest))
    );
    let again = setup.verifier.check(&check).await;
    assert!(again.result.expect("verified").from_cache);
}

#[tokio::test]
async fn unsigned_model_fails_enforce_without_pins_and_audit_with_them() {
    if !parts_available() {
        return;
    }
    let setup = setup(false);
    let enforce = setup.verifier.check(&setup.check(Mode::Enforce)).await;
    let failure = enforce.result.expect_err("unsigned");
    assert_eq!(failure.reason, FailureReason::NoSignature);
    assert!(enforce.pins.is_none());

    let audit = setup.verifier.check(&setup.check(Mode::Audit)).await;
    assert_eq!(
        audit.result.expect_err("unsigned").reason,
        FailureReason::NoSignature
    );
    let pins = audit.pins.expect("audit pins what it rolls out");
    assert_eq!(pins.model_digest, Some(setup.model_digest.clone()));
}

#[tokio::test]
async fn unreachable_registry_is_a_retryable_failure() {
    if !parts_available() {
        return;
    }
    let mut setup = setup(true);
    let _ = setup.registry.child.kill();
    let _ = setup.registry.child.wait();
    let checked = setup.verifier.check(&setup.check(Mode::Disabled)).await;
    let failure = checked.result.expect_err("registry down");
    assert_eq!(failure.reason, FailureReason::RegistryUnreachable);
    assert!(failure.is_retryable());
    assert!(checked.pins.is_none());
}

#[tokio::test]
async fn pull_secret_credentials_serve_only_the_check_that_names_them() {
    if !parts_available() {
        return;
    }
    let mut setup = setup(true);
    setup.registry.require_login("alice", "s3cret");
    let addr = setup.registry.addr();
    let config = serde_json::json!({"auths": {addr: {"username": "alice", "password": "s3cret"}}});
    let mut with_secret = setup.check(Mode::Enforce);
    with_secret.credentials =
        Some(DockerConfig::from_json(config.to_string().as_bytes()).expect("docker config"));
    let checked = setup.verifier.check(&with_secret).await;
    assert!(checked.result.is_ok(), "{:?}", checked.result);
    let pins = checked.pins.expect("pins");
    assert_eq!(pins.image_digest, setup.image_digest);

    // Same verifier, cache now warm: a check without the credentials still has to resolve
    // with its own, and is refused.
    let refused = setup.verifier.check(&setup.check(Mode::Enforce)).await;
    let failure = refused.result.expect_err("no credentials");
    assert_eq!(failure.reason, FailureReason::RegistryUnauthorized);
    assert!(refused.pins.is_none());
}
