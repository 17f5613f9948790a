//! cosign verification against a real registry, with artifacts pushed by oras and signatures
//! made by openssl. Each case checks the failure reason and what Enforce and Audit decide.

mod support;

use std::path::Path;
use std::time::Duration;

use modelplane_verify::{
    Decision, Failure, FailureReason, KeySet, Metrics, Mode, Reference, RegistryClient,
    RegistryOptions, Verified, Verifier, decide, load_keys,
};
use support::{TestRegistry, keys, openssl_key, push, sign};

struct Case {
    registry: TestRegistry,
    work: tempfile::TempDir,
    client: RegistryClient,
    verifier: Verifier,
    metrics: prometheus_client::registry::Registry,
}

impl Case {
    fn start() -> Option<Self> {
        if !support::registry_parts_available(&["oras"]) {
            return None;
        }
        let registry = TestRegistry::start();
        let client = RegistryClient::new(RegistryOptions {
            insecure_registries: vec![registry.addr()],
            request_timeout: Duration::from_secs(5),
            ..RegistryOptions::default()
        })
        .unwrap();
        let mut metrics = prometheus_client::registry::Registry::default();
        let verifier = Verifier::new(
            Duration::from_secs(300),
            Some(Metrics::register(&mut metrics)),
        );
        Some(Self {
            registry,
            work: tempfile::tempdir().unwrap(),
            client,
            verifier,
            metrics,
        })
    }

    fn work(&self) -> &Path {
        self.work.path()
    }

    fn reference(&self, rest: &str) -> Reference {
        format!("{}/{rest}", self.registry.addr()).parse().unwrap()
    }

    fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.metrics).unwrap();
        text
    }

    async fn image(&self, rest: &str, keys: &KeySet) -> Result<Verified, Failure> {
        let reference = self.reference(rest);
        self.verifier
            .verify_image(&self.client, &reference, keys, Mode::Enforce)
            .await
    }
}

/// Asserts `outcome` failed with `reason`, that Enforce holds the revision back with a Warning
/// and `Verified=False/<reason>`, and that Audit rolls it out recording the same.
fn assert_refused(outcome: &Result<Verified, Failure>, reason: FailureReason) {
    let failure = outcome.as_ref().expect_err("verification must fail");
    assert_eq!(failure.reason, reason, "{failure}");
    let enforce: Decision = decide(Mode::Enforce, outcome);
    assert!(!enforce.roll_out);
    assert_eq!(enforce.condition.reason, reason.as_str());
    assert!(enforce.event.is_some());
    let audit = decide(Mode::Audit, outcome);
    assert!(audit.roll_out);
    assert_eq!(audit.condition.reason, reason.as_str());
    assert!(audit.event.is_some());
}

#[tokio::test]
async fn signed_image_verifies_pins_its_digest_and_is_cached() {
    let Some(case) = Case::start() else { return };
    let (private, public) = openssl_key(case.work(), "trusted");
    let digest = push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"runtime v1")],
    );
    sign(
        &case.registry,
        case.work(),
        "apps/runtime",
        &digest,
        &private,
        None,
    );

    let verified = case.image("apps/runtime:v1", &keys(&public)).await.unwrap();
    assert_eq!(verified.digest, digest);
    assert_eq!(verified.signer.as_deref(), Some("trusted"));
    assert!(!verified.from_cache);
    let pinned = verified.pinned.as_ref().unwrap().to_string();
    assert_eq!(
        pinned,
        format!("{}/apps/runtime:v1@{digest}", case.registry.addr())
    );
    assert!(decide(Mode::Enforce, &Ok(verified.clone())).roll_out);

    let again = case.image("apps/runtime:v1", &keys(&public)).await.unwrap();
    assert!(again.from_cache);
    assert_eq!(again.digest, digest);
    // Pinned by digest alone it verifies as well.
    let by_digest = case
        .image(&format!("apps/runtime@{digest}"), &keys(&public))
        .await;
    assert_eq!(by_digest.unwrap().digest, digest);

    let metrics = case.metrics_text();
    let verified = r#"modelplane_verifications_total{artifact="image",result="Verified"} 3"#;
    assert!(metrics.contains(verified), "{metrics}");
    let hits = r#"modelplane_verification_cache_hits_total{artifact="image"} 2"#;
    assert!(metrics.contains(hits), "{metrics}");
}

#[tokio::test]
async fn unsigned_image_has_no_signature() {
    let Some(case) = Case::start() else { return };
    let (_, public) = openssl_key(case.work(), "trusted");
    push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"unsigned")],
    );
    let outcome = case.image("apps/runtime:v1", &keys(&public)).await;
    assert_refused(&outcome, FailureReason::NoSignature);
    let metrics = case.metrics_text();
    let refused = r#"modelplane_verifications_total{artifact="image",result="NoSignature"} 1"#;
    assert!(metrics.contains(refused), "{metrics}");
}

#[tokio::test]
async fn image_signed_by_another_key_is_wrong_key() {
    let Some(case) = Case::start() else { return };
    let (_, trusted) = openssl_key(case.work(), "trusted");
    let (other_private, _) = openssl_key(case.work(), "other");
    let digest = push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"x")],
    );
    sign(
        &case.registry,
        case.work(),
        "apps/runtime",
        &digest,
        &other_private,
        None,
    );
    let outcome = case.image("apps/runtime:v1", &keys(&trusted)).await;
    assert_refused(&outcome, FailureReason::WrongKey);
}

#[tokio::test]
async fn signed_payload_for_another_digest_is_digest_mismatch() {
    let Some(case) = Case::start() else { return };
    let (private, public) = openssl_key(case.work(), "trusted");
    let v1 = push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"one")],
    );
    let v2 = push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v2",
        &[("bin", b"two")],
    );
    // A genuine signature for v2, stored where v1's signature would be.
    sign(
        &case.registry,
        case.work(),
        "apps/runtime",
        &v1,
        &private,
        Some(&v2),
    );
    let outcome = case.image("apps/runtime:v1", &keys(&public)).await;
    assert_refused(&outcome, FailureReason::DigestMismatch);
}

#[tokio::test]
async fn tag_moved_after_signing_is_refused() {
    let Some(case) = Case::start() else { return };
    let (private, public) = openssl_key(case.work(), "trusted");
    let signed = push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"signed")],
    );
    sign(
        &case.registry,
        case.work(),
        "apps/runtime",
        &signed,
        &private,
        None,
    );
    push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"moved")],
    );

    let pinned = case
        .image(&format!("apps/runtime:v1@{signed}"), &keys(&public))
        .await;
    assert_refused(&pinned, FailureReason::TagMoved);
    // Following the tag leads to the new, unsigned content.
    let followed = case.image("apps/runtime:v1", &keys(&public)).await;
    assert_refused(&followed, FailureReason::NoSignature);
}

#[tokio::test]
async fn tampered_model_layer_is_detected() {
    let Some(case) = Case::start() else { return };
    let (private, public) = openssl_key(case.work(), "trusted");
    let weights = b"model weights v1".as_slice();
    let digest = push(
        &case.registry,
        case.work(),
        "models/m",
        "v1",
        &[("model.pt", weights)],
    );
    sign(
        &case.registry,
        case.work(),
        "models/m",
        &digest,
        &private,
        None,
    );
    let reference = case.reference("models/m:v1");
    let verifier = Verifier::new(Duration::from_secs(300), None);
    let ok = verifier
        .verify_model_oci(&case.client, &reference, &keys(&public), Mode::Enforce)
        .await;
    assert_eq!(ok.unwrap().digest, digest);

    // Same length, different bytes, written straight into the registry's storage.
    let layer = modelplane_verify::Digest::of(weights);
    std::fs::write(case.registry.blob_file(&layer), b"model weights v2").unwrap();
    let fresh = Verifier::new(Duration::from_secs(300), None);
    let outcome = fresh
        .verify_model_oci(&case.client, &reference, &keys(&public), Mode::Enforce)
        .await;
    assert_refused(&outcome, FailureReason::TamperedLayer);
}

#[tokio::test]
async fn tampered_signature_payload_is_detected() {
    let Some(case) = Case::start() else { return };
    let (private, public) = openssl_key(case.work(), "trusted");
    let digest = push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"x")],
    );
    let signature = sign(
        &case.registry,
        case.work(),
        "apps/runtime",
        &digest,
        &private,
        None,
    );
    let file = case.registry.blob_file(&signature.payload);
    let mut payload = std::fs::read(&file).unwrap();
    payload[0] = b' ';
    std::fs::write(&file, payload).unwrap();
    let outcome = case.image("apps/runtime:v1", &keys(&public)).await;
    assert_refused(&outcome, FailureReason::TamperedLayer);
}

#[tokio::test]
async fn registry_down_is_retryable_and_verifies_once_it_is_back() {
    let Some(mut case) = Case::start() else {
        return;
    };
    let (private, public) = openssl_key(case.work(), "trusted");
    let digest = push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"x")],
    );
    sign(
        &case.registry,
        case.work(),
        "apps/runtime",
        &digest,
        &private,
        None,
    );

    case.registry.down();
    let outcome = case.image("apps/runtime:v1", &keys(&public)).await;
    assert_refused(&outcome, FailureReason::RegistryUnreachable);
    assert!(decide(Mode::Enforce, &outcome).retry);

    case.registry.up();
    let verified = case.image("apps/runtime:v1", &keys(&public)).await.unwrap();
    assert_eq!(verified.digest, digest);
}

#[tokio::test]
async fn missing_key_is_refused_before_any_signature_is_trusted() {
    let Some(case) = Case::start() else { return };
    let (private, public) = openssl_key(case.work(), "trusted");
    let digest = push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"x")],
    );
    sign(
        &case.registry,
        case.work(),
        "apps/runtime",
        &digest,
        &private,
        None,
    );

    let missing =
        load_keys([("secret/cosign-pub/cosign.pub".to_owned(), None)]).map(|_| unreachable!());
    assert_refused(&missing, FailureReason::KeyMissing);
    let outcome = case.image("apps/runtime:v1", &KeySet::default()).await;
    assert_refused(&outcome, FailureReason::KeyMissing);
    // With the key present the same image verifies.
    assert!(case.image("apps/runtime:v1", &keys(&public)).await.is_ok());
}

#[tokio::test]
async fn disabled_mode_resolves_and_pins_without_a_signature() {
    let Some(case) = Case::start() else { return };
    let digest = push(
        &case.registry,
        case.work(),
        "apps/runtime",
        "v1",
        &[("bin", b"x")],
    );
    let reference = case.reference("apps/runtime:v1");
    let outcome = case
        .verifier
        .verify_image(&case.client, &reference, &KeySet::default(), Mode::Disabled)
        .await;
    let verified = outcome.as_ref().unwrap();
    assert_eq!(verified.digest, digest);
    assert_eq!(verified.signer, None);
    assert!(decide(Mode::Disabled, &outcome).roll_out);
}
