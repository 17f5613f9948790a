use super::*;
use crate::manifest::Descriptor;
use crate::test_keys::TestKey;

fn digest(byte: u8) -> Digest {
    Digest::from_raw([byte; 32])
}

fn signed(key: &TestKey, payload: Vec<u8>) -> SignatureLayer {
    SignatureLayer {
        signature: key.sign(&payload),
        payload,
    }
}

#[test]
fn trusted_signature_over_the_expected_digest_verifies() {
    let key = TestKey::generate("trusted");
    let layer = signed(&key, simple_signing_payload("r.io/app", &digest(1)));
    let verified = verify_layers(&[layer], &key.set(), &digest(1)).unwrap();
    assert_eq!(verified.key, "trusted");
    assert_eq!(verified.docker_reference, "r.io/app");
}

#[test]
fn no_layers_is_no_signature() {
    let key = TestKey::generate("k");
    assert_eq!(
        verify_layers(&[], &key.set(), &digest(1)),
        Err(CosignFailure::NoSignature)
    );
}

#[test]
fn signature_by_an_untrusted_key_is_wrong_key() {
    let trusted = TestKey::generate("trusted");
    let other = TestKey::generate("other");
    let layer = signed(&other, simple_signing_payload("r.io/app", &digest(1)));
    assert_eq!(
        verify_layers(&[layer], &trusted.set(), &digest(1)),
        Err(CosignFailure::WrongKey { count: 1 })
    );
}

#[test]
fn trusted_signature_over_another_digest_is_digest_mismatch() {
    let key = TestKey::generate("k");
    let layer = signed(&key, simple_signing_payload("r.io/app", &digest(2)));
    assert_eq!(
        verify_layers(&[layer], &key.set(), &digest(1)),
        Err(CosignFailure::DigestMismatch {
            expected: digest(1),
            signed: digest(2).to_string()
        })
    );
}

#[test]
fn payload_changed_after_signing_does_not_verify() {
    let key = TestKey::generate("k");
    let mut layer = signed(&key, simple_signing_payload("r.io/app", &digest(2)));
    layer.payload = simple_signing_payload("r.io/app", &digest(1));
    assert_eq!(
        verify_layers(&[layer], &key.set(), &digest(1)),
        Err(CosignFailure::WrongKey { count: 1 })
    );
}

#[test]
fn one_good_signature_among_bad_ones_is_enough() {
    let key = TestKey::generate("k");
    let other = TestKey::generate("other");
    let layers = [
        signed(&other, simple_signing_payload("r.io/app", &digest(1))),
        signed(&key, simple_signing_payload("r.io/app", &digest(9))),
        signed(&key, simple_signing_payload("r.io/app", &digest(1))),
    ];
    assert!(verify_layers(&layers, &key.set(), &digest(1)).is_ok());
}

#[test]
fn trusted_signature_over_a_non_container_payload_is_refused() {
    let key = TestKey::generate("k");
    let payload = serde_json::json!({"critical": {"image": {"docker-manifest-digest": digest(1).to_string()}, "type": "something else"}});
    let layer = signed(&key, payload.to_string().into_bytes());
    assert!(matches!(
        verify_layers(&[layer], &key.set(), &digest(1)),
        Err(CosignFailure::DigestMismatch { .. })
    ));
}

#[test]
fn signature_layers_keeps_only_annotated_simple_signing_layers() {
    let layer = |media_type: &str, annotation: Option<&str>| Descriptor {
        media_type: media_type.to_owned(),
        raw_digest: digest(3).to_string(),
        size: 1,
        annotations: annotation
            .map(|a| [(SIGNATURE_ANNOTATION.to_owned(), a.to_owned())].into())
            .unwrap_or_default(),
    };
    let manifest = Manifest {
        media_type: None,
        config: None,
        layers: vec![
            layer(SIMPLE_SIGNING_MEDIA_TYPE, Some("AQID")),
            layer(SIMPLE_SIGNING_MEDIA_TYPE, None),
            layer(SIMPLE_SIGNING_MEDIA_TYPE, Some("not base64!")),
            layer("application/octet-stream", Some("AQID")),
        ],
        manifests: vec![],
    };
    assert_eq!(
        signature_layers(&manifest),
        vec![PendingLayer {
            payload_digest: digest(3),
            signature: vec![1, 2, 3]
        }]
    );
}
