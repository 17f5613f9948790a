//! Reconcile with the verification gate: pinning, Enforce, Audit, outages — against the
//! scripted API server and the in-memory registry.

use std::{sync::Arc, time::Duration};

use kube::runtime::controller::Action;
use modelplane_api::model_deployment::{ModelDeployment, ModelDeploymentStatus};
use modelplane_config::{BundleHttp, BundleSource, RuntimeConfig, SignatureConfig, SignatureMode};
use modelplane_verify::FailureReason;
use serde_json::{Value, json};

use super::{HELD_RETRY, gate::VERIFIED_AT_LOAD, held_retry, reconcile};
use crate::{
    controller::Context,
    fixtures::{
        ApiServer, Cluster, Expect, NAMESPACE, RUNTIME_DIGEST, Recorded, applied, apply_config_map,
        apply_deployment, apply_service, condition, context_with, defaults, model_deployment, oci,
        path, registry, resnet18_spec, status_written,
    },
    verification::{PINNED_ANNOTATION, fake::FakeRegistry},
};

/// A P-256 public key, as `cosign generate-key-pair` writes it.
const COSIGN_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMRhUn5QOvIZhAVIL8DfiQifpXbiZ
1uVczVaMCsBRFmGf0aDnivWF5LxJlFxCogpkiLyPlG9YmwHNt3skg9MwOA==
-----END PUBLIC KEY-----
";

fn digest(digit: char) -> String {
    format!("sha256:{}", digit.to_string().repeat(64))
}

/// resnet18 from `oci(model)` under `spec.verification.mode = mode`, key Secret `cosign-pub`.
fn verified_spec(mode: &str, model: char) -> Value {
    let mut spec = resnet18_spec();
    spec["model"]["source"] = json!({"oci": oci(model)});
    spec["verification"] = json!({"mode": mode, "keys": [{"secretRef": {"name": "cosign-pub"}}]});
    spec
}

/// The key Secret: existence check, then the read of its data.
fn key_secret() -> Vec<Expect> {
    let secret = path("v1", "secrets", "cosign-pub");
    let pem = base64_encode(COSIGN_PUB.as_bytes());
    vec![
        Expect::Get {
            path: secret.clone(),
            found: true,
        },
        Expect::Read {
            path: secret,
            body: json!({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "cosign-pub", "namespace": NAMESPACE},
                         "data": {"cosign.pub": pem}}),
        },
    ]
}

fn base64_encode(bytes: &[u8]) -> String {
    let value = serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).expect("base64");
    value.as_str().expect("string").to_owned()
}

fn creates() -> Vec<Expect> {
    vec![
        apply_config_map(),
        apply_deployment(),
        apply_service(),
        Expect::Event { reason: "Created" },
    ]
}

/// One context (so holds and backoff carry over) and its scripted API server.
struct Harness {
    ctx: Arc<Context>,
    server: Option<ApiServer>,
}

impl Harness {
    fn new(cluster: &Cluster, md: &ModelDeployment, registry: Arc<FakeRegistry>) -> Self {
        let (ctx, server) = context_with(cluster, md, registry);
        Self {
            ctx,
            server: Some(server),
        }
    }

    /// Reconciles `md`, expecting exactly `script`; returns the action and what was sent.
    async fn reconcile(
        &mut self,
        md: &ModelDeployment,
        script: Vec<Expect>,
    ) -> (Action, Vec<Recorded>) {
        let server = self.server.take().expect("server").serve(script);
        let action = tokio::time::timeout(
            Duration::from_secs(2),
            reconcile(Arc::new(md.clone()), self.ctx.clone()),
        )
        .await
        .expect("reconcile made a request the script does not expect")
        .expect("reconcile succeeds");
        let (recorded, server) = tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the reconcile did not make every expected request")
            .expect("the API server script failed");
        self.server = Some(server);
        (action, recorded)
    }
}

fn image(recorded: &[Recorded]) -> String {
    applied(recorded, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("image")
        .to_owned()
}

/// Creates `md` (verified against `registry`), settles it ready, and returns the cluster
/// and the ModelDeployment with its status.
async fn running(md: &ModelDeployment, registry: Arc<FakeRegistry>) -> (Cluster, ModelDeployment) {
    let mut harness = Harness::new(&Cluster::new(), md, registry.clone());
    let mut script = key_secret();
    script.extend(creates());
    script.extend([Expect::Event { reason: "Verified" }, Expect::ApplyStatus]);
    let (_, recorded) = harness.reconcile(md, script).await;
    let mut cluster = Cluster::new();
    for r in recorded
        .iter()
        .filter(|r| matches!(r.expect, Expect::Apply { .. }))
    {
        cluster.serve(&r.body);
    }
    let mut md = md.clone();
    md.status = Some(status_written(&recorded));
    let mut harness = Harness::new(&cluster, &md, registry);
    let settle = vec![
        key_secret().remove(0),
        Expect::ApplyStatus,
        Expect::Event { reason: "Ready" },
        Expect::Event {
            reason: "RolloutComplete",
        },
    ];
    let (_, settled) = harness.reconcile(&md, settle).await;
    md.status = Some(status_written(&settled));
    (cluster, md)
}

fn signed_registry(digests: &[char]) -> Arc<FakeRegistry> {
    let registry = registry();
    registry.sign(RUNTIME_DIGEST);
    for d in digests {
        registry.sign(&digest(*d));
    }
    registry
}

#[tokio::test]
async fn tags_are_resolved_and_pinned_on_create() {
    let registry = registry();
    registry.tag("registry.example/models/resnet18:v3", &digest('c'));
    let mut spec = resnet18_spec();
    spec["model"]["source"] = json!({"oci": "registry.example/models/resnet18:v3"});
    let md = model_deployment(spec);
    let mut script = creates();
    script.push(Expect::ApplyStatus);
    let (_, recorded) = Harness::new(&Cluster::new(), &md, registry)
        .reconcile(&md, script)
        .await;

    let runtime = &defaults().runtime_image;
    assert_eq!(image(&recorded), format!("{runtime}@{RUNTIME_DIGEST}"));
    let config = applied(&recorded, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config");
    let pinned_model = format!("registry.example/models/resnet18:v3@{}", digest('c'));
    assert!(config.contains(&pinned_model), "{config}");
    let record = &applied(&recorded, "Deployment")["metadata"]["annotations"][PINNED_ANNOTATION];
    assert!(record.as_str().is_some_and(|r| r.contains(&pinned_model)));
    let status = status_written(&recorded);
    let revision = status.revision.clone().expect("revision");
    assert_eq!(revision.model_digest, Some(digest('c')));
    assert_eq!(revision.image_digest.as_deref(), Some(RUNTIME_DIGEST));
    assert_eq!(revision.verified_at, None);
    assert_eq!(
        condition(&status, "Verified"),
        ("Unknown".into(), "VerificationDisabled".into())
    );
}

#[tokio::test]
async fn enforce_rolls_out_nothing_unsigned() {
    let md = model_deployment(verified_spec("Enforce", 'a'));
    let mut script = key_secret();
    script.extend([
        Expect::ApplyStatus,
        Expect::Event {
            reason: "NoSignature",
        },
    ]);
    let (action, recorded) = Harness::new(&Cluster::new(), &md, registry())
        .reconcile(&md, script)
        .await;

    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Verified"),
        ("False".into(), "NoSignature".into())
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "NoSignature".into())
    );
    assert_eq!(status.revision, None);
    // Re-checked within seconds: a signature pushed now is seen at the next check.
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
}

#[tokio::test]
async fn enforce_keeps_the_verified_revision_serving_when_the_new_model_is_unsigned() {
    let registry = signed_registry(&['a']);
    let md = model_deployment(verified_spec("Enforce", 'a'));
    let (cluster, running) = running(&md, registry.clone()).await;
    let revision = running.status.as_ref().and_then(|s| s.revision.clone());
    let verified = revision.as_ref().expect("revision");
    assert_eq!(verified.model_digest, Some(digest('a')));
    assert!(verified.verified_at.is_some());

    let mut changed = model_deployment(verified_spec("Enforce", 'b'));
    changed.metadata.generation = Some(2);
    changed.status = running.status.clone();
    let mut harness = Harness::new(&cluster, &changed, registry.clone());
    let mut script = key_secret();
    script.extend([
        Expect::Event {
            reason: "NoSignature",
        },
        Expect::ApplyStatus,
    ]);
    // No apply: the pinned, verified revision is rendered again and matches what runs.
    let (_, recorded) = harness.reconcile(&changed, script).await;
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Verified"),
        ("False".into(), "NoSignature".into())
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "Available".into())
    );
    assert_eq!(status.revision, revision);

    // Held: the next reconcile asks neither the registry nor the API server for more.
    let checks = registry.checks();
    changed.status = Some(status);
    let (_, recorded) = harness
        .reconcile(&changed, key_secret()[..1].to_vec())
        .await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(registry.checks(), checks);
}

#[tokio::test]
async fn verified_revision_reconciles_without_registry_calls_or_writes() {
    let registry = signed_registry(&['a']);
    let md = model_deployment(verified_spec("Enforce", 'a'));
    let (cluster, running) = running(&md, registry.clone()).await;
    let checks = registry.checks();
    let (_, recorded) = Harness::new(&cluster, &running, registry.clone())
        .reconcile(&running, key_secret()[..1].to_vec())
        .await;
    assert_eq!(recorded.len(), 1, "only the key Secret's existence is read");
    assert_eq!(registry.checks(), checks);
}

#[tokio::test]
async fn audit_rolls_out_an_unsigned_revision_and_records_the_failure() {
    let md = model_deployment(verified_spec("Audit", 'a'));
    let mut script = key_secret();
    script.extend(creates());
    script.extend([
        Expect::Event {
            reason: "NoSignature",
        },
        Expect::ApplyStatus,
    ]);
    let (_, recorded) = Harness::new(&Cluster::new(), &md, registry())
        .reconcile(&md, script)
        .await;

    assert_eq!(
        image(&recorded),
        format!("{}@{RUNTIME_DIGEST}", defaults().runtime_image)
    );
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Verified"),
        ("False".into(), "NoSignature".into())
    );
    let revision = status.revision.expect("revision");
    assert_eq!(revision.model_digest, Some(digest('a')));
    assert_eq!(revision.verified_at, None);
}

#[tokio::test]
async fn unreachable_registry_is_retried_with_backoff_and_changes_nothing() {
    let registry = signed_registry(&['a']);
    let md = model_deployment(verified_spec("Enforce", 'a'));
    let (cluster, running) = running(&md, registry.clone()).await;

    registry.set_unreachable(true);
    let mut changed = running.clone();
    changed.spec.runtime.image = Some("ghcr.io/modelplane/runtime:0.2.0".into());
    changed.metadata.generation = Some(2);
    let mut harness = Harness::new(&cluster, &changed, registry.clone());
    let mut script = key_secret();
    script.extend([
        Expect::Event {
            reason: "RegistryUnreachable",
        },
        Expect::ApplyStatus,
    ]);
    let (action, recorded) = harness.reconcile(&changed, script).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Verified"),
        ("False".into(), "RegistryUnreachable".into())
    );
    assert_eq!(
        status.revision,
        running.status.as_ref().and_then(|s| s.revision.clone())
    );
    assert!(
        !recorded
            .iter()
            .any(|r| matches!(r.expect, Expect::Apply { .. }))
    );
}

/// resnet18 from a tag in the private `registry.example`, pulled with Secret `pull`.
fn private_spec(pull_secrets: bool) -> Value {
    let mut spec = resnet18_spec();
    spec["model"]["source"] = json!({"oci": "registry.example/models/resnet18:v3"});
    if pull_secrets {
        spec["runtime"]["imagePullSecrets"] = json!([{"name": "pull"}]);
    }
    spec
}

fn private_registry() -> Arc<FakeRegistry> {
    let registry = registry();
    registry
        .tag("registry.example/models/resnet18:v3", &digest('c'))
        .private("registry.example");
    registry
}

/// The pull Secret: existence check, then the read of `data`.
fn pull_secret(data: Value) -> Vec<Expect> {
    let secret = path("v1", "secrets", "pull");
    vec![
        Expect::Get {
            path: secret.clone(),
            found: true,
        },
        Expect::Read {
            path: secret,
            body: json!({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "pull", "namespace": NAMESPACE},
                         "type": "kubernetes.io/dockerconfigjson",
                         "data": data}),
        },
    ]
}

fn docker_config(host: &str) -> String {
    let config = json!({"auths": {host: {"username": "u", "password": "p"}}});
    base64_encode(config.to_string().as_bytes())
}

fn ready_message(status: &ModelDeploymentStatus) -> &str {
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    &ready.expect("ready").message
}

#[tokio::test]
async fn pull_secrets_resolve_private_references_and_are_set_on_the_pods() {
    let registry = private_registry();
    let md = model_deployment(private_spec(true));
    let mut script = pull_secret(json!({".dockerconfigjson": docker_config("registry.example")}));
    script.extend(creates());
    script.push(Expect::ApplyStatus);
    let (_, recorded) = Harness::new(&Cluster::new(), &md, registry.clone())
        .reconcile(&md, script)
        .await;

    let pod = &applied(&recorded, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "pull"}]));
    let config = applied(&recorded, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config");
    assert!(config.contains(&digest('c')), "model pinned: {config}");
    assert_eq!(registry.checks(), 1);
}

#[tokio::test]
async fn private_references_without_pull_secrets_roll_out_nothing() {
    let registry = private_registry();
    let md = model_deployment(private_spec(false));
    let script = vec![
        Expect::ApplyStatus,
        Expect::Event {
            reason: "RegistryUnauthorized",
        },
    ];
    let (_, recorded) = Harness::new(&Cluster::new(), &md, registry)
        .reconcile(&md, script)
        .await;
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "RegistryUnauthorized".into())
    );
}

#[tokio::test]
async fn missing_pull_secret_blocks_with_a_condition_and_asks_no_registry() {
    let registry = private_registry();
    let md = model_deployment(private_spec(true));
    let script = vec![
        Expect::Get {
            path: path("v1", "secrets", "pull"),
            found: false,
        },
        Expect::ApplyStatus,
        Expect::Event {
            reason: "SecretNotFound",
        },
    ];
    let (action, recorded) = Harness::new(&Cluster::new(), &md, registry.clone())
        .reconcile(&md, script)
        .await;

    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "SecretNotFound".into())
    );
    let message = ready_message(&status);
    assert!(
        message.contains("spec.runtime.imagePullSecrets[0]"),
        "{message}"
    );
    assert_eq!(registry.checks(), 0);
    assert_eq!(action, Action::requeue(super::BLOCKED_RESYNC));
}

#[tokio::test]
async fn pull_secret_without_a_docker_config_blocks_with_a_condition() {
    let registry = private_registry();
    let md = model_deployment(private_spec(true));
    let mut script = pull_secret(json!({".dockercfg": docker_config("registry.example")}));
    script.extend([
        Expect::ApplyStatus,
        Expect::Event {
            reason: "InvalidPullSecret",
        },
    ]);
    let (action, recorded) = Harness::new(&Cluster::new(), &md, registry.clone())
        .reconcile(&md, script)
        .await;

    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "InvalidPullSecret".into())
    );
    let message = ready_message(&status);
    assert!(message.contains(".dockerconfigjson"), "{message}");
    assert_eq!(registry.checks(), 0);
    assert_eq!(action, Action::requeue(super::BLOCKED_RESYNC));
}

/// resnet18 from `source` (HTTP or PVC) under `mode`, key Secret `cosign-pub`.
fn file_model_spec(mode: &str, source: Value) -> Value {
    let mut spec = verified_spec(mode, 'a');
    spec["model"]["source"] = source;
    spec
}

fn pvc_source() -> Value {
    json!({"pvc": {"claimName": "models", "path": "resnet18/v4/model.pt"}})
}

fn pvc_exists() -> Expect {
    Expect::Get {
        path: path("v1", "persistentvolumeclaims", "models"),
        found: true,
    }
}

/// The `signature` block of the rendered runtime config's only version.
fn rendered_signature(recorded: &[Recorded]) -> Option<SignatureConfig> {
    let config = applied(recorded, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config")
        .to_owned();
    let config = RuntimeConfig::from_yaml(&config).expect("the runtime accepts the config");
    config.models[0].versions[0].signature.clone()
}

#[tokio::test]
async fn enforce_hands_a_pvc_model_to_the_runtime_with_the_keys_and_its_bundle() {
    let md = model_deployment(file_model_spec("Enforce", pvc_source()));
    let mut script = key_secret();
    script.insert(1, pvc_exists());
    script.extend(creates());
    script.extend([Expect::Event { reason: "Verified" }, Expect::ApplyStatus]);
    let (_, recorded) = Harness::new(&Cluster::new(), &md, signed_registry(&[]))
        .reconcile(&md, script)
        .await;

    let signature = rendered_signature(&recorded).expect("signature block");
    assert_eq!(signature.mode, SignatureMode::Enforce);
    assert_eq!(signature.keys.len(), 1);
    assert_eq!(signature.keys[0].name, "cosign-pub/cosign.pub");
    assert_eq!(signature.keys[0].pem, COSIGN_PUB);
    assert_eq!(
        signature.bundle,
        Some(BundleSource::Path("model.sig".into()))
    );
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Verified"),
        ("True".into(), VERIFIED_AT_LOAD.into())
    );
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Verified")
        .expect("Verified")
        .message;
    assert!(
        message.contains("pvc models:resnet18/v4/model.pt") && message.contains(RUNTIME_DIGEST),
        "{message}"
    );
    let revision = status.revision.expect("revision");
    assert_eq!(revision.image_digest.as_deref(), Some(RUNTIME_DIGEST));
    assert!(revision.verified_at.is_some());
}

#[tokio::test]
async fn audit_hands_an_http_model_to_the_runtime_in_audit_mode() {
    let sha = "d".repeat(64);
    let source =
        json!({"http": {"url": "https://models.example/resnet18/v4/model.pt", "sha256": sha}});
    let md = model_deployment(file_model_spec("Audit", source));
    let mut script = key_secret();
    script.extend(creates());
    script.extend([Expect::Event { reason: "Verified" }, Expect::ApplyStatus]);
    let (_, recorded) = Harness::new(&Cluster::new(), &md, signed_registry(&[]))
        .reconcile(&md, script)
        .await;

    let signature = rendered_signature(&recorded).expect("signature block");
    assert_eq!(signature.mode, SignatureMode::Audit);
    assert_eq!(
        signature.bundle,
        Some(BundleSource::Http(BundleHttp {
            url: "https://models.example/resnet18/v4/model.sig".into(),
            sha256: None,
        }))
    );
    let record = &applied(&recorded, "Deployment")["metadata"]["annotations"][PINNED_ANNOTATION];
    assert!(
        record
            .as_str()
            .is_some_and(|r| r.contains("modelSignature")),
        "the pinned revision carries the block: {record}"
    );
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Verified"),
        ("True".into(), VERIFIED_AT_LOAD.into())
    );
    assert_eq!(
        status.revision.expect("revision").model_digest,
        Some(format!("sha256:{}", "d".repeat(64)))
    );
}

#[tokio::test]
async fn enforce_still_refuses_a_pvc_model_when_the_image_is_unsigned() {
    let md = model_deployment(file_model_spec("Enforce", pvc_source()));
    let mut script = key_secret();
    script.insert(1, pvc_exists());
    script.extend([
        Expect::ApplyStatus,
        Expect::Event {
            reason: "NoSignature",
        },
    ]);
    let (_, recorded) = Harness::new(&Cluster::new(), &md, registry())
        .reconcile(&md, script)
        .await;
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Verified"),
        ("False".into(), "NoSignature".into())
    );
    assert_eq!(status.revision, None);
}

#[tokio::test]
async fn disabled_renders_a_pvc_model_without_a_signature_block() {
    let mut spec = resnet18_spec();
    spec["model"]["source"] = pvc_source();
    let md = model_deployment(spec);
    let mut script = vec![pvc_exists()];
    script.extend(creates());
    script.push(Expect::ApplyStatus);
    let (_, recorded) = Harness::new(&Cluster::new(), &md, registry())
        .reconcile(&md, script)
        .await;
    assert_eq!(rendered_signature(&recorded), None);
    assert_eq!(
        condition(&status_written(&recorded), "Verified"),
        ("Unknown".into(), "VerificationDisabled".into())
    );
}

#[tokio::test]
async fn audit_rolls_out_a_pvc_model_under_a_wrongly_signed_image_and_still_hands_it_over() {
    let registry = signed_registry(&[]);
    registry.refuse(RUNTIME_DIGEST, FailureReason::WrongKey);
    let md = model_deployment(file_model_spec("Audit", pvc_source()));
    let mut script = key_secret();
    script.insert(1, pvc_exists());
    script.extend(creates());
    script.extend([Expect::Event { reason: "WrongKey" }, Expect::ApplyStatus]);
    let (_, recorded) = Harness::new(&Cluster::new(), &md, registry)
        .reconcile(&md, script)
        .await;

    let signature = rendered_signature(&recorded).expect("signature block");
    assert_eq!(signature.mode, SignatureMode::Audit);
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Verified"),
        ("False".into(), "WrongKey".into())
    );
    assert_eq!(status.revision.expect("revision").verified_at, None);
}

#[test]
fn refused_revisions_are_rechecked_with_a_backoff_of_seconds_to_minutes() {
    let backoff = crate::controller::Backoff::default();
    let delays: Vec<u64> = (0..8)
        .map(|_| held_retry(backoff.failed("md")).as_secs())
        .collect();
    assert_eq!(delays, [5, 10, 20, 40, 80, 120, 120, 120]);
    assert_eq!(HELD_RETRY, Duration::from_secs(120));
}

/// The running resnet18 (model 'a', signed) switched to the unsigned model 'b': held.
async fn held_on_unsigned(registry: &Arc<FakeRegistry>) -> (Harness, ModelDeployment) {
    let md = model_deployment(verified_spec("Enforce", 'a'));
    let (cluster, running) = running(&md, registry.clone()).await;
    let mut changed = model_deployment(verified_spec("Enforce", 'b'));
    changed.metadata.generation = Some(2);
    changed.status = running.status.clone();
    let mut harness = Harness::new(&cluster, &changed, registry.clone());
    let mut script = key_secret();
    script.extend([
        Expect::Event {
            reason: "NoSignature",
        },
        Expect::ApplyStatus,
    ]);
    let (action, recorded) = harness.reconcile(&changed, script).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let held = status_written(&recorded);
    assert_eq!(
        condition(&held, "Verified"),
        ("False".into(), "NoSignature".into())
    );
    changed.status = Some(held);
    (harness, changed)
}

/// The reconcile that rolls model 'b' out once it verifies, from `first` (the key Secret's
/// existence check).
fn rollout_of_b(first: Expect) -> Vec<Expect> {
    let mut script = vec![first, key_secret().remove(1)];
    script.extend([
        apply_config_map(),
        apply_deployment(),
        Expect::Event {
            reason: "RolloutStarted",
        },
        Expect::Event { reason: "Verified" },
        Expect::ApplyStatus,
    ]);
    script
}

fn assert_verified_b(recorded: &[Recorded]) {
    let status = status_written(recorded);
    assert_eq!(
        condition(&status, "Verified"),
        ("True".into(), "Verified".into())
    );
    let revision = status.revision.expect("revision");
    assert_eq!(revision.model_digest, Some(digest('b')));
    assert!(revision.verified_at.is_some());
}

#[tokio::test]
async fn a_held_revision_rolls_out_once_signed_and_verified_turns_true() {
    let registry = signed_registry(&['a']);
    let (mut harness, changed) = held_on_unsigned(&registry).await;
    registry.sign(&digest('b'));
    harness.ctx.holds.expire();
    let (_, recorded) = harness
        .reconcile(&changed, rollout_of_b(key_secret().remove(0)))
        .await;
    assert_verified_b(&recorded);
}

#[tokio::test]
async fn a_changed_key_secret_ends_the_hold_at_once() {
    let registry = signed_registry(&['a']);
    let (mut harness, changed) = held_on_unsigned(&registry).await;
    registry.sign(&digest('b'));
    // The hold has not run out, but the key Secret is a new version: checked again now.
    let rotated = Expect::Read {
        path: path("v1", "secrets", "cosign-pub"),
        body: json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                     "metadata": {"name": "cosign-pub", "namespace": NAMESPACE,
                                  "resourceVersion": "2"}}),
    };
    let (_, recorded) = harness.reconcile(&changed, rollout_of_b(rotated)).await;
    assert_verified_b(&recorded);
}

#[tokio::test]
async fn verified_is_rewritten_from_the_record_when_the_object_is_stale() {
    let registry = signed_registry(&['a']);
    let md = model_deployment(verified_spec("Enforce", 'a'));
    let (cluster, running) = running(&md, registry.clone()).await;
    let current = running.status.clone().expect("status");
    let verified = current
        .conditions
        .iter()
        .find(|c| c.type_ == "Verified")
        .expect("Verified")
        .clone();
    assert_eq!(verified.reason, "Verified");

    // An object from before the Verified condition was written, and one still showing an
    // older refusal: both get the recorded condition back, with no registry call.
    let mut without = current.clone();
    without.conditions.retain(|c| c.type_ != "Verified");
    let mut stale_false = current.clone();
    for c in &mut stale_false.conditions {
        if c.type_ == "Verified" {
            c.status = modelplane_api::condition::ConditionStatus::False;
            c.reason = "NoSignature".into();
        }
    }
    let checks = registry.checks();
    for stale in [without, stale_false] {
        let mut md = running.clone();
        md.status = Some(stale);
        let (_, recorded) = Harness::new(&cluster, &md, registry.clone())
            .reconcile(&md, vec![key_secret().remove(0), Expect::ApplyStatus])
            .await;
        let written = status_written(&recorded);
        let again = written
            .conditions
            .iter()
            .find(|c| c.type_ == "Verified")
            .expect("Verified is always written");
        assert_eq!(
            (&again.status, &again.reason, &again.message),
            (&verified.status, &verified.reason, &verified.message)
        );
    }
    assert_eq!(registry.checks(), checks);
}
