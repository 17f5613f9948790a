//! Model files signed by the real `model_signing` CLI with openssl-made keys, checked by
//! the runtime before a version loads: from a local path and over HTTP from a 127.0.0.1
//! server, under Enforce and Audit, for every way a signature can fail.

mod signing_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use modelplane_config::{
    BundleHttp, BundleSource, Device, HttpSource, SignatureConfig, SignatureMode, Source,
    VersionConfig,
};
use modelplane_runtime::signing::{SigningError, SigningMetrics, check};
use modelplane_runtime::source::Fetcher;
use modelplane_verify::FailureReason;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use signing_support::{closed_port_url, openssl_key, parts_available, serve, sign, trusting};

fn version(source: Source, signature: SignatureConfig) -> VersionConfig {
    VersionConfig {
        version: "1".into(),
        source,
        device: Device::Cpu,
        warmup_iterations: 0,
        signature: Some(signature),
    }
}

/// A model folder as a user ships it: weights, tensor signature, tokenizer.
fn model_folder(root: &Path, name: &str, weights: &[u8]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("model dir");
    std::fs::write(dir.join("model.pt"), weights).expect("weights");
    std::fs::write(dir.join("signature.json"), br#"{"inputs":[]}"#).expect("signature.json");
    std::fs::write(dir.join("tokenizer.json"), br#"{"version":"1.0"}"#).expect("tokenizer");
    dir
}

fn exposition(metrics: &SigningMetrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    text
}

/// Checks the path-sourced `model.pt` of `dir` under `signature`.
async fn check_path(
    dir: &Path,
    signature: SignatureConfig,
    metrics: &SigningMetrics,
) -> Result<(), SigningError> {
    let model = dir.join("model.pt");
    let version = version(Source::Path(model.display().to_string()), signature);
    check("resnet18", &version, &model, metrics).await
}

fn reason(result: Result<(), SigningError>) -> FailureReason {
    result.expect_err("refused under Enforce").reason
}

#[tokio::test]
async fn a_signed_folder_verifies_and_each_failure_is_refused_for_its_reason() {
    if !parts_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (private, public) = openssl_key(work.path(), "trusted");
    let (_, other_public) = openssl_key(work.path(), "other");
    let dir = model_folder(work.path(), "resnet18", &[7u8; 50_000]);
    sign(&dir, &private, &dir.join("model.sig"));
    let metrics = SigningMetrics::default();
    let enforce = |pem: &str| trusting(pem, SignatureMode::Enforce);

    // Valid: the bundle beside the files (model.sig) is found by default and left out.
    assert_eq!(check_path(&dir, enforce(&public), &metrics).await, Ok(()));
    let text = exposition(&metrics);
    assert!(text.contains(r#"modelplane_model_signature_verifications_total{model="resnet18",version="1",result="Verified"} 1"#), "{text}");

    // Signed by another key.
    let wrong = check_path(&dir, enforce(&other_public), &metrics).await;
    assert_eq!(reason(wrong), FailureReason::WrongKey);

    // A file changed after signing: refused, naming the file.
    std::fs::write(dir.join("tokenizer.json"), br#"{"version":"2.0"}"#).expect("tamper");
    let tampered = check_path(&dir, enforce(&public), &metrics)
        .await
        .expect_err("tampered");
    assert_eq!(tampered.reason, FailureReason::TamperedLayer);
    assert!(
        tampered.to_string().contains("tokenizer.json"),
        "{tampered}"
    );
    assert!(tampered.to_string().contains("Enforce"), "{tampered}");

    // The bundle of another model, by the trusted key.
    let other = model_folder(work.path(), "other-model", &[9u8; 50_000]);
    sign(&other, &private, &work.path().join("other.sig"));
    let mut foreign = enforce(&public);
    foreign.bundle = Some(BundleSource::Path(
        work.path().join("other.sig").display().to_string(),
    ));
    let fresh = model_folder(work.path(), "resnet18-fresh", &[7u8; 50_000]);
    let foreign_result = check_path(&fresh, foreign, &metrics).await;
    assert_eq!(reason(foreign_result), FailureReason::TamperedLayer);

    let text = exposition(&metrics);
    assert!(text.contains(r#"modelplane_model_signature_failures_total{model="resnet18",version="1",mode="Enforce",reason="WrongKey"} 1"#), "{text}");
    assert!(
        text.contains(r#"mode="Enforce",reason="TamperedLayer"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn an_unsigned_model_is_refused_under_enforce_and_loads_under_audit_with_a_count() {
    if !parts_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (_, public) = openssl_key(work.path(), "trusted");
    let dir = model_folder(work.path(), "resnet18", &[7u8; 1000]);
    let metrics = SigningMetrics::default();

    let enforce = check_path(&dir, trusting(&public, SignatureMode::Enforce), &metrics).await;
    let refused = enforce.expect_err("no bundle");
    assert_eq!(refused.reason, FailureReason::NoSignature);
    assert!(refused.message.contains("model.sig"), "{refused}");

    let audit = check_path(&dir, trusting(&public, SignatureMode::Audit), &metrics).await;
    assert_eq!(audit, Ok(()));
    let text = exposition(&metrics);
    assert!(text.contains(r#"modelplane_model_signature_failures_total{model="resnet18",version="1",mode="Audit",reason="NoSignature"} 1"#), "{text}");
    assert!(text.contains(r#"result="NoSignature"} 2"#), "{text}");
}

#[tokio::test]
async fn a_single_signed_file_verifies_without_its_neighbours() {
    if !parts_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (private, public) = openssl_key(work.path(), "trusted");
    let dir = model_folder(work.path(), "resnet18", &[3u8; 1000]);
    sign(&dir.join("model.pt"), &private, &dir.join("model.sig"));
    std::fs::write(dir.join("notes.txt"), b"not signed, not loaded").expect("extra file");
    let metrics = SigningMetrics::default();
    let signature = trusting(&public, SignatureMode::Enforce);
    assert_eq!(check_path(&dir, signature.clone(), &metrics).await, Ok(()));

    std::fs::write(dir.join("model.pt"), [4u8; 1000]).expect("swap weights");
    let swapped = check_path(&dir, signature, &metrics).await;
    assert_eq!(reason(swapped), FailureReason::TamperedLayer);
}

#[tokio::test]
async fn a_folder_source_finds_its_bundle_inside_and_is_checked_whole() {
    if !parts_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (private, public) = openssl_key(work.path(), "trusted");
    let folder = model_folder(work.path(), "tiny-llama", &[1u8; 5000]);
    sign(&folder, &private, &folder.join("model.sig"));
    let metrics = SigningMetrics::default();
    let check_folder = |mode| {
        let version = version(
            Source::Path(folder.display().to_string()),
            trusting(&public, mode),
        );
        let folder = folder.clone();
        let metrics = metrics.clone();
        async move { check("tiny-llama", &version, &folder, &metrics).await }
    };
    assert_eq!(check_folder(SignatureMode::Enforce).await, Ok(()));

    std::fs::write(folder.join("extra.bin"), b"added after signing").expect("extra");
    let added = check_folder(SignatureMode::Enforce)
        .await
        .expect_err("extra file");
    assert_eq!(added.reason, FailureReason::TamperedLayer);
    assert!(added.message.contains("extra.bin"), "{added}");
}

/// An HTTP source: the model file (signed alone) and its bundle on a 127.0.0.1 server.
struct HttpModel {
    base: String,
    weights: Vec<u8>,
    cache: tempfile::TempDir,
}

impl HttpModel {
    fn source(&self) -> Source {
        Source::Http(HttpSource {
            url: format!("{}/resnet18/v1/model.pt", self.base),
            sha256: hex::encode(Sha256::digest(&self.weights)),
        })
    }

    /// Downloads the model as the reloader does, then checks it.
    async fn check(
        &self,
        signature: SignatureConfig,
        metrics: &SigningMetrics,
    ) -> Result<(), SigningError> {
        let source = self.source();
        let artifact = Fetcher::default()
            .fetch(&source, self.cache.path())
            .await
            .expect("model downloads");
        check(
            "resnet18",
            &version(source, signature),
            &artifact.path,
            metrics,
        )
        .await
    }
}

#[tokio::test]
async fn an_http_model_is_checked_against_the_bundle_beside_its_url() {
    if !parts_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (private, public) = openssl_key(work.path(), "trusted");
    let dir = model_folder(work.path(), "resnet18", &[5u8; 20_000]);
    sign(
        &dir.join("model.pt"),
        &private,
        &work.path().join("model.sig"),
    );
    let weights = std::fs::read(dir.join("model.pt")).expect("weights");
    let bundle = std::fs::read(work.path().join("model.sig")).expect("bundle");
    let files = HashMap::from([
        ("/resnet18/v1/model.pt".to_owned(), weights.clone()),
        ("/resnet18/v1/model.sig".to_owned(), bundle.clone()),
        ("/unsigned/v1/model.pt".to_owned(), weights.clone()),
    ]);
    let model = HttpModel {
        base: serve(files).await,
        weights,
        cache: tempfile::tempdir().expect("cache"),
    };
    let metrics = SigningMetrics::default();
    let enforce = trusting(&public, SignatureMode::Enforce);
    assert_eq!(model.check(enforce.clone(), &metrics).await, Ok(()));

    // Pinned by sha256: the right pin passes, another one is refused.
    let mut pinned = enforce.clone();
    let pin = |sha256: String| {
        Some(BundleSource::Http(BundleHttp {
            url: format!("{}/resnet18/v1/model.sig", model.base),
            sha256: Some(sha256),
        }))
    };
    pinned.bundle = pin(hex::encode(Sha256::digest(&bundle)));
    assert_eq!(model.check(pinned.clone(), &metrics).await, Ok(()));
    pinned.bundle = pin("0".repeat(64));
    assert_eq!(
        reason(model.check(pinned, &metrics).await),
        FailureReason::TamperedLayer
    );

    // No bundle at the URL (404).
    let mut missing = enforce.clone();
    missing.bundle = Some(BundleSource::Http(BundleHttp {
        url: format!("{}/unsigned/v1/model.sig", model.base),
        sha256: None,
    }));
    assert_eq!(
        reason(model.check(missing, &metrics).await),
        FailureReason::NoSignature
    );
}

#[tokio::test]
async fn a_bundle_server_that_is_down_refuses_under_enforce_and_loads_under_audit() {
    if !parts_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (_, public) = openssl_key(work.path(), "trusted");
    let weights = vec![5u8; 1000];
    let files = HashMap::from([("/resnet18/v1/model.pt".to_owned(), weights.clone())]);
    let model = HttpModel {
        base: serve(files).await,
        weights,
        cache: tempfile::tempdir().expect("cache"),
    };
    let down = closed_port_url().await;
    let mut signature = trusting(&public, SignatureMode::Enforce);
    signature.bundle = Some(BundleSource::Http(BundleHttp {
        url: format!("{down}/resnet18/v1/model.sig"),
        sha256: None,
    }));
    let metrics = SigningMetrics::default();
    let refused = model
        .check(signature.clone(), &metrics)
        .await
        .expect_err("bundle unreachable");
    assert_eq!(refused.reason, FailureReason::RegistryUnreachable);
    assert!(refused.message.contains(&down), "{refused}");

    signature.mode = SignatureMode::Audit;
    assert_eq!(model.check(signature, &metrics).await, Ok(()));
    let text = exposition(&metrics);
    assert!(
        text.contains(r#"mode="Audit",reason="RegistryUnreachable"} 1"#),
        "{text}"
    );
}
