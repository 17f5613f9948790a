use std::path::Path;

use super::*;
use crate::keys::PublicKey;
use crate::test_keys::TestKey;

const FIXTURE_KEY: &str = include_str!("../tests/fixtures/model-signing/key.pub");
const DIR_BUNDLE: &str = include_str!("../tests/fixtures/model-signing/dir.sig");
const SINGLE_FILE_BUNDLE: &str = include_str!("../tests/fixtures/model-signing/single-file.sig");

fn fixture_keys() -> KeySet {
    KeySet::new(vec![
        PublicKey::from_pem("fixture", FIXTURE_KEY.as_bytes()).unwrap(),
    ])
}

/// The model directory the fixture bundles were made over.
fn fixture_model(root: &Path) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.bin"), "hello\n").unwrap();
    std::fs::write(root.join("sub/b.txt"), "world\n").unwrap();
}

#[test]
fn pae_matches_the_dsse_specification_example() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
}

#[test]
fn bundle_from_the_real_cli_verifies_and_lists_its_files() {
    let signed = verify_bundle(DIR_BUNDLE.as_bytes(), &fixture_keys()).unwrap();
    assert_eq!(signed.name, "model");
    assert_eq!(signed.key, "fixture");
    assert_eq!(
        signed.files.keys().collect::<Vec<_>>(),
        ["a.bin", "sub/b.txt"]
    );
    assert!(signed.ignore_paths.contains(&".git".to_owned()));
}

#[test]
fn model_directory_matching_the_bundle_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("model");
    fixture_model(&root);
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/HEAD"), "ignored by the signer").unwrap();
    std::fs::write(root.join("model.sig"), DIR_BUNDLE).unwrap();
    let signed = verify_model_files(
        &root,
        DIR_BUNDLE.as_bytes(),
        &fixture_keys(),
        &["model.sig".into()],
    );
    assert!(signed.is_ok(), "{signed:?}");
}

#[test]
fn single_file_model_verifies_against_its_bundle() {
    let dir = tempfile::tempdir().unwrap();
    fixture_model(dir.path());
    let keys = fixture_keys();
    let file = dir.path().join("a.bin");
    assert!(verify_model_files(&file, SINGLE_FILE_BUNDLE.as_bytes(), &keys, &[]).is_ok());
    let other = dir.path().join("sub/b.txt");
    assert!(matches!(
        verify_model_files(&other, SINGLE_FILE_BUNDLE.as_bytes(), &keys, &[]),
        Err(ModelSigningFailure::Files(FileMismatch::Changed { .. }))
    ));
}

#[test]
fn changed_extra_or_missing_files_fail_with_the_file_named() {
    let keys = fixture_keys();
    let check = |edit: &dyn Fn(&Path)| {
        let dir = tempfile::tempdir().unwrap();
        fixture_model(dir.path());
        edit(dir.path());
        verify_model_files(dir.path(), DIR_BUNDLE.as_bytes(), &keys, &[]).unwrap_err()
    };
    let changed = check(&|root| std::fs::write(root.join("a.bin"), "HELLO\n").unwrap());
    assert!(
        matches!(changed, ModelSigningFailure::Files(FileMismatch::Changed { name, .. }) if name == "a.bin")
    );
    let extra = check(&|root| std::fs::write(root.join("extra.py"), "x").unwrap());
    assert!(
        matches!(extra, ModelSigningFailure::Files(FileMismatch::Unexpected { name }) if name == "extra.py")
    );
    let missing = check(&|root| std::fs::remove_file(root.join("sub/b.txt")).unwrap());
    assert!(
        matches!(missing, ModelSigningFailure::Files(FileMismatch::Missing { name }) if name == "sub/b.txt")
    );
}

#[test]
fn bundle_checked_with_another_key_is_wrong_key() {
    let other = TestKey::generate("other");
    assert_eq!(
        verify_bundle(DIR_BUNDLE.as_bytes(), &other.set()),
        Err(ModelSigningFailure::WrongKey)
    );
}

#[test]
fn payload_edited_after_signing_is_wrong_key() {
    let mut bundle: serde_json::Value = serde_json::from_str(DIR_BUNDLE).unwrap();
    let payload = bundle["dsseEnvelope"]["payload"].as_str().unwrap();
    let decoded = String::from_utf8(STANDARD.decode(payload).unwrap()).unwrap();
    let edited = decoded.replacen("a.bin", "c.bin", 1);
    bundle["dsseEnvelope"]["payload"] = STANDARD.encode(edited).into();
    assert_eq!(
        verify_bundle(bundle.to_string().as_bytes(), &fixture_keys()),
        Err(ModelSigningFailure::WrongKey)
    );
}

fn signed_bundle(key: &TestKey, statement: &serde_json::Value) -> Vec<u8> {
    let payload = statement.to_string().into_bytes();
    let sig = key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload));
    serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": ""}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": STANDARD.encode(&payload),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": STANDARD.encode(sig), "keyid": ""}]
        }
    })
    .to_string()
    .into_bytes()
}

fn statement(subject_hex: &str, method: &str) -> serde_json::Value {
    serde_json::json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "m", "digest": {"sha256": subject_hex}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {"method": method, "hash_type": "sha256", "allow_symlinks": false, "ignore_paths": []},
            "resources": [{"name": "f", "digest": "11".repeat(32), "algorithm": "sha256"}]
        }
    })
}

#[test]
fn subject_digest_must_match_the_signed_file_list() {
    let key = TestKey::generate("k");
    let root = Digest::of(&[0x11; 32]);
    assert!(
        verify_bundle(
            &signed_bundle(&key, &statement(root.hex(), "files")),
            &key.set()
        )
        .is_ok()
    );
    let inconsistent = signed_bundle(&key, &statement(&"00".repeat(32), "files"));
    assert!(matches!(
        verify_bundle(&inconsistent, &key.set()),
        Err(ModelSigningFailure::InconsistentManifest { .. })
    ));
}

#[test]
fn unsupported_serialization_and_garbage_are_invalid_bundles() {
    let key = TestKey::generate("k");
    let root = Digest::of(&[0x11; 32]);
    let shards = signed_bundle(&key, &statement(root.hex(), "shards"));
    assert!(matches!(
        verify_bundle(&shards, &key.set()),
        Err(ModelSigningFailure::InvalidBundle(_))
    ));
    assert!(matches!(
        verify_bundle(b"{}", &key.set()),
        Err(ModelSigningFailure::InvalidBundle(_))
    ));
}

#[test]
fn envelope_without_signatures_is_no_signature() {
    let mut bundle: serde_json::Value = serde_json::from_str(DIR_BUNDLE).unwrap();
    bundle["dsseEnvelope"]["signatures"] = serde_json::json!([]);
    assert_eq!(
        verify_bundle(bundle.to_string().as_bytes(), &fixture_keys()),
        Err(ModelSigningFailure::NoSignature)
    );
}
