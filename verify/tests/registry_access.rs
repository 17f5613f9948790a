//! Private registries: TLS with a custom CA, and Docker/OCI token auth with credentials from a
//! `.dockerconfigjson`, against the real registry (the token server is a small test script).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use modelplane_verify::{
    DockerConfig, FailureReason, Mode, Reference, RegistryClient, RegistryOptions, Verifier,
};
use support::{TestRegistry, free_port, keys, openssl_key, push, python, run, sign};

/// Makes a CA and a server certificate for 127.0.0.1 signed by it; returns the CA PEM path.
fn make_certificates(dir: &Path) -> std::path::PathBuf {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=modelplane test CA",
    ]);
    run(dir, "openssl", &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(dir, "openssl", &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(
        dir,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
    dir.join("ca.pem")
}

async fn verify(
    client: &RegistryClient,
    reference: &Reference,
    key: &modelplane_verify::PublicKey,
) -> Result<modelplane_verify::Verified, modelplane_verify::Failure> {
    Verifier::new(Duration::from_secs(60), None)
        .verify_image(client, reference, &keys(key), Mode::Enforce)
        .await
}

#[tokio::test]
async fn tls_registry_verifies_with_its_ca_bundle_and_not_without() {
    if !support::registry_parts_available(&["oras"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut registry = TestRegistry::start();
    let (private, public) = openssl_key(work.path(), "trusted");
    let digest = push(
        &registry,
        work.path(),
        "apps/runtime",
        "v1",
        &[("bin", b"x")],
    );
    sign(
        &registry,
        work.path(),
        "apps/runtime",
        &digest,
        &private,
        None,
    );

    let ca = make_certificates(work.path());
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        work.path().join("server.pem").display(),
        work.path().join("server.key").display()
    );
    registry.reconfigure(&tls, true);
    let reference: Reference = format!("{}/apps/runtime:v1", registry.addr())
        .parse()
        .unwrap();

    let with_ca = RegistryClient::new(RegistryOptions {
        ca_bundle_pem: Some(std::fs::read(&ca).unwrap()),
        ..RegistryOptions::default()
    })
    .unwrap();
    assert_eq!(
        verify(&with_ca, &reference, &public).await.unwrap().digest,
        digest
    );

    let without_ca = RegistryClient::new(RegistryOptions::default()).unwrap();
    let refused = verify(&without_ca, &reference, &public).await.unwrap_err();
    assert_eq!(
        refused.reason,
        FailureReason::RegistryUnreachable,
        "{refused}"
    );

    let garbage = RegistryClient::new(RegistryOptions {
        ca_bundle_pem: Some(b"not a certificate".to_vec()),
        ..RegistryOptions::default()
    });
    assert!(garbage.is_err());
}

/// The token server process; killed on drop.
struct TokenServer(Child);

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_token_server(dir: &Path, port: u16) -> TokenServer {
    let mut req = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    req.extend([
        "-keyout",
        "token.key",
        "-out",
        "token.pem",
        "-days",
        "1",
        "-subj",
        "/CN=token issuer",
    ]);
    run(dir, "openssl", &req);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/token_server.py");
    let mut child = Command::new(python())
        .arg(script)
        .args([
            &port.to_string(),
            "token.key",
            "token.pem",
            "test-issuer",
            "test-registry",
            "alice",
            "s3cret",
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    TokenServer(child)
}

fn docker_config(registry: &str, user: &str, password: &str) -> DockerConfig {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let json = format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#);
    DockerConfig::from_json(json.as_bytes()).unwrap()
}

#[tokio::test]
async fn token_auth_registry_verifies_with_docker_config_credentials() {
    if !support::registry_parts_available(&["oras", "cryptography"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut registry = TestRegistry::start();
    let (private, public) = openssl_key(work.path(), "trusted");
    let digest = push(
        &registry,
        work.path(),
        "apps/runtime",
        "v1",
        &[("bin", b"x")],
    );
    sign(
        &registry,
        work.path(),
        "apps/runtime",
        &digest,
        &private,
        None,
    );

    let token_port = free_port();
    let _token_server = start_token_server(work.path(), token_port);
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: test-registry\n    \
         issuer: test-issuer\n    rootcertbundle: {}\n",
        work.path().join("token.pem").display()
    );
    registry.reconfigure(&auth, false);
    let reference: Reference = format!("{}/apps/runtime:v1", registry.addr())
        .parse()
        .unwrap();
    let client = |credentials: DockerConfig| {
        RegistryClient::new(RegistryOptions {
            credentials,
            insecure_registries: vec![registry.addr(), format!("127.0.0.1:{token_port}")],
            ..RegistryOptions::default()
        })
        .unwrap()
    };

    let authorized = client(docker_config(&registry.addr(), "alice", "s3cret"));
    assert_eq!(
        verify(&authorized, &reference, &public)
            .await
            .unwrap()
            .digest,
        digest
    );

    for credentials in [
        DockerConfig::default(),
        docker_config(&registry.addr(), "alice", "wrong"),
    ] {
        let refused = verify(&client(credentials), &reference, &public)
            .await
            .unwrap_err();
        assert_eq!(
            refused.reason,
            FailureReason::RegistryUnauthorized,
            "{refused}"
        );
    }
}

#[tokio::test]
async fn basic_auth_registry_verifies_with_docker_config_credentials() {
    if !support::registry_parts_available(&["oras", "bcrypt"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut registry = TestRegistry::start();
    let (private, public) = openssl_key(work.path(), "trusted");
    let digest = push(
        &registry,
        work.path(),
        "apps/runtime",
        "v1",
        &[("bin", b"x")],
    );
    sign(
        &registry,
        work.path(),
        "apps/runtime",
        &digest,
        &private,
        None,
    );

    // distribution's htpasswd backend takes bcrypt hashes only.
    let hash = run(
        work.path(),
        python(),
        &[
            "-c",
            "import bcrypt; print(bcrypt.hashpw(b's3cret', bcrypt.gensalt(rounds=4, prefix=b'2a')).decode())",
        ],
    );
    let htpasswd = work.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
        htpasswd.display()
    );
    registry.reconfigure(&auth, false);
    let reference: Reference = format!("{}/apps/runtime:v1", registry.addr())
        .parse()
        .unwrap();
    let client = |credentials: DockerConfig| {
        RegistryClient::new(RegistryOptions {
            credentials,
            insecure_registries: vec![registry.addr()],
            ..RegistryOptions::default()
        })
        .unwrap()
    };

    let authorized = client(docker_config(&registry.addr(), "alice", "s3cret"));
    assert_eq!(
        verify(&authorized, &reference, &public)
            .await
            .unwrap()
            .digest,
        digest
    );

    for credentials in [
        DockerConfig::default(),
        docker_config(&registry.addr(), "alice", "wrong"),
    ] {
        let refused = verify(&client(credentials), &reference, &public)
            .await
            .unwrap_err();
        assert_eq!(
            refused.reason,
            FailureReason::RegistryUnauthorized,
            "{refused}"
        );
    }
}
