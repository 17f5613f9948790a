//! Model files signed by the real `model_signing` CLI (PyPI model-signing, key mode), verified
//! by our verifier; each tampering fails for its own reason.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use modelplane_verify::{FailureReason, KeySet, Mode, Verifier, decide};
use support::{keys, openssl_key, python, run};

/// Signs `model` with the CLI in the venv; returns the bundle bytes.
fn cli_sign(work: &Path, model: &Path, private_key: &Path, signature: &Path) -> Vec<u8> {
    let cli = python().with_file_name("model_signing");
    let model = model.to_str().unwrap();
    run(
        work,
        &cli,
        &[
            "sign",
            "key",
            model,
            "--private_key",
            private_key.to_str().unwrap(),
            "--signature",
            signature.to_str().unwrap(),
        ],
    );
    std::fs::read(signature).unwrap()
}

/// A small model directory: weights, a tokenizer and a nested config.
fn model_dir(root: &Path) -> PathBuf {
    let model = root.join("tiny-lm");
    std::fs::create_dir_all(model.join("config")).unwrap();
    std::fs::write(model.join("model.pt"), vec![7u8; 100_000]).unwrap();
    std::fs::write(model.join("tokenizer.json"), br#"{"version":"1.0"}"#).unwrap();
    std::fs::write(
        model.join("config/generation.json"),
        br#"{"max_new_tokens":16}"#,
    )
    .unwrap();
    model
}

async fn verify(
    model: &Path,
    bundle: &[u8],
    keys: &KeySet,
) -> Result<modelplane_verify::Verified, modelplane_verify::Failure> {
    Verifier::new(Duration::from_secs(60), None)
        .verify_model_files(
            model.to_owned(),
            bundle.to_vec(),
            keys,
            vec!["model.sig".into()],
        )
        .await
}

#[tokio::test]
async fn cli_signed_model_directory_verifies_and_tampering_fails_for_its_reason() {
    if !support::python_parts_available(&["model_signing"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(work.path(), "trusted");
    let (_, other) = openssl_key(work.path(), "other");
    let model = model_dir(work.path());
    let bundle = cli_sign(
        work.path(),
        &model,
        &private,
        &work.path().join("model.sig"),
    );

    let verified = verify(&model, &bundle, &keys(&public)).await.unwrap();
    assert_eq!(verified.signer.as_deref(), Some("trusted"));
    assert!(decide(Mode::Enforce, &Ok(verified)).roll_out);

    let wrong_key = verify(&model, &bundle, &keys(&other)).await;
    assert_eq!(wrong_key.unwrap_err().reason, FailureReason::WrongKey);

    let no_keys = verify(&model, &bundle, &KeySet::default()).await;
    assert_eq!(no_keys.unwrap_err().reason, FailureReason::KeyMissing);

    // The bundle itself beside the files is ignored (the operator's PVC layout).
    std::fs::write(model.join("model.sig"), &bundle).unwrap();
    assert!(verify(&model, &bundle, &keys(&public)).await.is_ok());

    std::fs::write(model.join("tokenizer.json"), br#"{"version":"2.0"}"#).unwrap();
    let tampered = verify(&model, &bundle, &keys(&public)).await.unwrap_err();
    assert_eq!(tampered.reason, FailureReason::TamperedLayer);
    assert!(tampered.message.contains("tokenizer.json"), "{tampered}");
    let enforce = decide(Mode::Enforce, &Err(tampered.clone()));
    assert!(!enforce.roll_out);
    assert!(decide(Mode::Audit, &Err(tampered)).roll_out);
}

#[tokio::test]
async fn cli_signed_single_file_model_verifies_and_a_swapped_file_does_not() {
    if !support::python_parts_available(&["model_signing"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(work.path(), "trusted");
    let model = model_dir(work.path());
    let weights = model.join("model.pt");
    let bundle = cli_sign(
        work.path(),
        &weights,
        &private,
        &work.path().join("weights.sig"),
    );

    let verified = verify(&weights, &bundle, &keys(&public)).await.unwrap();
    assert_eq!(verified.signer.as_deref(), Some("trusted"));

    let swapped = verify(&model.join("tokenizer.json"), &bundle, &keys(&public)).await;
    assert_eq!(swapped.unwrap_err().reason, FailureReason::TamperedLayer);
}
