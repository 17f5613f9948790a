//! Canary reconciles against a scripted API server and the in-memory registry: each test
//! states exactly which requests a reconcile makes, including none once converged.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use kube::{
    Client,
    client::Body,
    runtime::{
        controller::Action,
        events::Recorder,
        reflector::{self, Store},
        watcher,
    },
};
use modelplane_api::{
    canary::{Canary, CanaryPhase, CanaryStatus},
    model_deployment::ModelDeployment,
};
use modelplane_verify::{Failure, FailureReason, Mode};
use serde_json::{Value, json};

use super::{Context, Holds, RESYNC, SECRET_RETRY, progress::HOLD_WAIT, reconcile};
use crate::{
    controller::Backoff,
    fixtures::{
        NAMESPACE, RUNTIME_DIGEST, defaults, model_deployment, oci, registry, resnet18_spec,
    },
    metrics::Metrics,
    verification::{ArtifactVerifier, Check, Checked, fake::FakeRegistry},
};

/// A P-256 public key, as `cosign generate-key-pair` writes it.
const COSIGN_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMRhUn5QOvIZhAVIL8DfiQifpXbiZ
1uVczVaMCsBRFmGf0aDnivWF5LxJlFxCogpkiLyPlG9YmwHNt3skg9MwOA==
-----END PUBLIC KEY-----
";
const CANARY: &str = "resnet18-v2";
const CANDIDATE_TAG: &str = "registry.example/models/resnet18:v4";

fn digest(digit: char) -> String {
    format!("sha256:{}", digit.to_string().repeat(64))
}

/// The target: resnet18 (pinned model `oci('a')`) under `mode`, key Secret `cosign-pub`.
fn target(mode: &str) -> ModelDeployment {
    let mut spec = resnet18_spec();
    spec["verification"] = json!({"mode": mode, "keys": [{"secretRef": {"name": "cosign-pub"}}]});
    model_deployment(spec)
}

/// A Canary moving resnet18 to the model `source`, generation 1.
fn canary(source: &str) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "Canary",
        "metadata": {"name": CANARY, "namespace": NAMESPACE, "uid": "uid-canary", "generation": 1},
        "spec": {"targetRef": {"name": "resnet18"},
                 "candidate": {"model": {"source": {"oci": source}}},
                 "steps": [{"weight": 5}, {"weight": 50}],
                 // Verification is what these tests are about: the rollout holds.
                 "paused": true},
    }))
    .expect("canary")
}

/// A registry where the runtime image is signed and the candidate tag points at `digest('b')`.
fn candidate_registry(signed: bool) -> Arc<FakeRegistry> {
    let registry = registry();
    registry
        .tag(CANDIDATE_TAG, &digest('b'))
        .sign(RUNTIME_DIGEST)
        .sign(&digest('a'));
    if signed {
        registry.sign(&digest('b'));
    }
    registry
}

/// Answers checks like `inner`, but refuses the digests listed (e.g. signed by another key).
struct Refusing {
    inner: Arc<FakeRegistry>,
    refused: HashMap<String, FailureReason>,
}

impl ArtifactVerifier for Refusing {
    fn check<'a>(&'a self, check: &'a Check) -> BoxFuture<'a, Checked> {
        Box::pin(async move {
            let mut checked = self.inner.check(check).await;
            let refusal = checked.pins.as_ref().and_then(|pins| {
                [Some(&pins.image_digest), pins.model_digest.as_ref()]
                    .into_iter()
                    .flatten()
                    .find_map(|d| self.refused.get(d).map(|reason| (d.clone(), *reason)))
            });
            if let Some((digest, reason)) = refusal
                && check.mode != Mode::Disabled
            {
                checked.result = Err(Failure::new(reason, format!("{reason} for {digest}")));
                checked.pins = checked.pins.filter(|_| check.mode == Mode::Audit);
            }
            checked
        })
    }
}

/// One request the reconcile is expected to make next.
#[derive(Debug, Clone)]
enum Step {
    /// GET of a Secret: answered with the key Secret when `found`, else 404.
    KeySecret { found: bool },
    /// Server-side apply of the Canary's status.
    Status,
    /// An Event with this reason.
    Event(&'static str),
    /// A list of the target's runtime pods (the metrics baseline): answered with none.
    Pods,
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn key_secret() -> Value {
    let pem = serde_json::to_value(k8s_openapi::ByteString(COSIGN_PUB.as_bytes().to_vec()))
        .expect("base64");
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "cosign-pub", "namespace": NAMESPACE},
           "data": {"cosign.pub": pem}})
}

/// Checks one request against `step`; returns the answer and the request body.
async fn answer(step: &Step, request: Request<Body>, canary: &Canary) -> (Response<Body>, Value) {
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let query = uri.query().unwrap_or_default().to_owned();
    let bytes = request.into_body().collect_bytes().await.expect("body");
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let got = format!("{method} {uri}");
    let path = uri.path();
    let response = match step {
        Step::KeySecret { found } => {
            let want = format!("/api/v1/namespaces/{NAMESPACE}/secrets/cosign-pub");
            assert!(
                method == Method::GET && path == want,
                "expected GET {want}, got {got}"
            );
            if *found {
                respond(StatusCode::OK, &key_secret())
            } else {
                let missing = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
                respond(StatusCode::NOT_FOUND, &missing)
            }
        }
        Step::Status => {
            let want = format!(
                "/apis/serving.modelplane.io/v1alpha1/namespaces/{NAMESPACE}/canaries/{CANARY}/status"
            );
            assert!(
                method == Method::PATCH
                    && path == want
                    && query.contains("fieldManager=modelplane-operator")
                    && query.contains("force=true"),
                "expected a status apply, got {got}"
            );
            let mut object = serde_json::to_value(canary).expect("json");
            object["status"] = body["status"].clone();
            respond(StatusCode::OK, &object)
        }
        Step::Pods => {
            let want = format!("/api/v1/namespaces/{NAMESPACE}/pods");
            assert!(
                method == Method::GET && path == want && query.contains("labelSelector"),
                "expected a list of the target's pods, got {got}"
            );
            respond(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
            )
        }
        Step::Event(reason) => {
            let want = format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events");
            // The recorder publishes a repeated (reason, action) as a PATCH of its series.
            let repeated = method == Method::PATCH && path.starts_with(&format!("{want}/"));
            assert!(
                (method == Method::POST && path == want) || repeated,
                "expected event {reason}, got {got}"
            );
            if repeated {
                let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                    "metadata": {"name": path.rsplit('/').next(), "namespace": NAMESPACE},
                    "eventTime": "2026-01-01T00:00:00.000000Z", "reason": reason});
                return (respond(StatusCode::OK, &event), body);
            }
            assert_eq!(body["reason"], json!(reason), "event: {body}");
            respond(StatusCode::OK, &body)
        }
    };
    (response, body)
}

fn store(targets: &[ModelDeployment]) -> Store<ModelDeployment> {
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for target in targets {
        writer.apply_watcher_event(&watcher::Event::InitApply(target.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

/// One context (holds and backoff carry over between reconciles) and its scripted API server.
struct Harness {
    ctx: Arc<Context>,
    handle: Handle,
}

impl Harness {
    fn new(targets: &[ModelDeployment], verifier: Arc<dyn ArtifactVerifier>) -> Self {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let ctx = Context {
            recorder: Recorder::new(client.clone(), "modelplane-operator-test".into()),
            client,
            metrics: Arc::new(Metrics::default()),
            default_image: defaults().runtime_image,
            verifier,
            targets: store(targets),
            quotas: crate::fixtures::store(&[]),
            backoff: Backoff::default(),
            holds: Holds::default(),
            analyzer: Arc::new(super::analyze::Analyzer::new(None)),
        };
        Self {
            ctx: Arc::new(ctx),
            handle,
        }
    }

    /// Reconciles `canary` expecting exactly `script`; returns the action and the statuses
    /// written, the last one also set on `canary`.
    async fn reconcile(
        &mut self,
        canary: &mut Canary,
        script: Vec<Step>,
    ) -> (Action, Vec<CanaryStatus>) {
        let run = reconcile(Arc::new(canary.clone()), self.ctx.clone());
        let handle = &mut self.handle;
        let served = async {
            let mut statuses: Vec<CanaryStatus> = Vec::new();
            for step in script {
                let (request, send) = handle
                    .next_request()
                    .await
                    .unwrap_or_else(|| panic!("reconcile ended before {step:?}"));
                let (response, body) = answer(&step, request, canary).await;
                send.send_response(response);
                if matches!(step, Step::Status) {
                    statuses.push(serde_json::from_value(body["status"].clone()).expect("status"));
                }
            }
            statuses
        };
        let (action, statuses) =
            tokio::time::timeout(Duration::from_secs(2), async { tokio::join!(run, served) })
                .await
                .expect("the reconcile made a request the script does not expect, or missed one");
        if let Some(last) = statuses.last() {
            canary.status = Some(last.clone());
        }
        (action.expect("reconcile succeeds"), statuses)
    }
}

fn verifying_then(outcome: &[Step]) -> Vec<Step> {
    let mut script = vec![Step::Status, Step::KeySecret { found: true }, Step::Status];
    script.extend_from_slice(outcome);
    script
}

fn verified(status: &CanaryStatus) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Verified")
        .expect("Verified");
    (format!("{:?}", c.status), c.reason.clone())
}

fn status(canary: &Canary) -> &CanaryStatus {
    canary.status.as_ref().expect("status")
}

#[tokio::test]
async fn a_signed_candidate_is_verified_pinned_and_held_before_traffic() {
    let registry = candidate_registry(true);
    let mut harness = Harness::new(&[target("Enforce")], registry.clone());
    let mut canary = canary(CANDIDATE_TAG);
    let script = verifying_then(&[Step::Event("Verified"), Step::Event("PausedBySpec")]);
    let (action, statuses) = harness.reconcile(&mut canary, script).await;

    assert_eq!(statuses[0].phase, CanaryPhase::Verifying);
    let status = status(&canary);
    assert_eq!(status.phase, CanaryPhase::Paused);
    assert_eq!(verified(status), ("True".into(), "Verified".into()));
    let record = status.candidate.as_ref().expect("candidate");
    assert_eq!(record.image_digest.as_deref(), Some(RUNTIME_DIGEST));
    assert_eq!(record.model_digest, Some(digest('b')));
    let pinned = record.model_source.as_ref().and_then(|s| s.oci.clone());
    assert_eq!(pinned, Some(format!("{CANDIDATE_TAG}@{}", digest('b'))));
    assert!(record.verified_at.is_some());
    assert_eq!(record.keys.len(), 1);
    assert!(record.keys[0].starts_with("sha256:"), "{:?}", record.keys);
    assert_eq!(action, Action::requeue(HOLD_WAIT));
}

#[tokio::test]
async fn a_converged_canary_makes_no_request_and_asks_no_registry() {
    let registry = candidate_registry(true);
    let mut harness = Harness::new(&[target("Enforce")], registry.clone());
    let mut canary = canary(CANDIDATE_TAG);
    let script = verifying_then(&[Step::Event("Verified"), Step::Event("PausedBySpec")]);
    harness.reconcile(&mut canary, script).await;
    let checks = registry.checks();

    let (action, statuses) = harness.reconcile(&mut canary, Vec::new()).await;
    assert!(statuses.is_empty());
    assert_eq!(registry.checks(), checks);
    assert_eq!(action, Action::requeue(HOLD_WAIT));
    // A fresh operator (no memory) trusts the status record as well.
    let mut restarted = Harness::new(&[target("Enforce")], registry.clone());
    restarted.reconcile(&mut canary, Vec::new()).await;
    assert_eq!(registry.checks(), checks);
}

#[tokio::test]
async fn enforce_refuses_an_unsigned_candidate_and_does_not_ask_again_while_held() {
    let registry = candidate_registry(false);
    let mut harness = Harness::new(&[target("Enforce")], registry.clone());
    let mut canary = canary(CANDIDATE_TAG);
    let (action, _) = harness
        .reconcile(&mut canary, verifying_then(&[Step::Event("NoSignature")]))
        .await;

    let status = status(&canary);
    assert_eq!(status.phase, CanaryPhase::Failed);
    assert_eq!(verified(status), ("False".into(), "NoSignature".into()));
    assert_eq!(
        status.candidate.as_ref().and_then(|c| c.image.clone()),
        None
    );
    // Re-checked within seconds, backing off: a signature pushed now is seen soon.
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));

    let checks = registry.checks();
    let (action, statuses) = harness.reconcile(&mut canary, Vec::new()).await;
    assert!(statuses.is_empty());
    assert_eq!(registry.checks(), checks);
    assert_ne!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_candidate_signed_by_another_key_is_refused() {
    let refusing = Refusing {
        inner: candidate_registry(true),
        refused: HashMap::from([(digest('b'), FailureReason::WrongKey)]),
    };
    let mut harness = Harness::new(&[target("Enforce")], Arc::new(refusing));
    let mut canary = canary(CANDIDATE_TAG);
    harness
        .reconcile(&mut canary, verifying_then(&[Step::Event("WrongKey")]))
        .await;
    assert_eq!(status(&canary).phase, CanaryPhase::Failed);
    assert_eq!(
        verified(status(&canary)),
        ("False".into(), "WrongKey".into())
    );
}

#[tokio::test]
async fn a_signature_for_another_digest_is_refused() {
    let refusing = Refusing {
        inner: candidate_registry(true),
        refused: HashMap::from([(digest('b'), FailureReason::DigestMismatch)]),
    };
    let mut harness = Harness::new(&[target("Enforce")], Arc::new(refusing));
    let mut canary = canary(CANDIDATE_TAG);
    harness
        .reconcile(
            &mut canary,
            verifying_then(&[Step::Event("DigestMismatch")]),
        )
        .await;
    assert_eq!(
        verified(status(&canary)),
        ("False".into(), "DigestMismatch".into())
    );
}

#[tokio::test]
async fn a_tag_moved_after_verification_keeps_the_verified_digest_pinned() {
    let registry = candidate_registry(true);
    let mut harness = Harness::new(&[target("Enforce")], registry.clone());
    let mut canary = canary(CANDIDATE_TAG);
    let script = verifying_then(&[Step::Event("Verified"), Step::Event("PausedBySpec")]);
    harness.reconcile(&mut canary, script).await;

    registry.tag(CANDIDATE_TAG, &digest('c'));
    let checks = registry.checks();
    harness.reconcile(&mut canary, Vec::new()).await;
    let record = status(&canary).candidate.as_ref().expect("candidate");
    assert_eq!(record.model_digest, Some(digest('b')));
    assert_eq!(registry.checks(), checks);
}

#[tokio::test]
async fn an_unreachable_registry_is_retried_with_backoff_until_it_answers() {
    let registry = candidate_registry(true);
    registry.set_unreachable(true);
    let mut harness = Harness::new(&[target("Enforce")], registry.clone());
    let mut canary = canary(CANDIDATE_TAG);
    let (action, _) = harness
        .reconcile(
            &mut canary,
            verifying_then(&[Step::Event("RegistryUnreachable")]),
        )
        .await;
    assert_eq!(status(&canary).phase, CanaryPhase::Verifying);
    assert_eq!(
        verified(status(&canary)),
        ("False".into(), "RegistryUnreachable".into())
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));

    // Within the backoff nothing is asked; once it ends, the check runs again (no new
    // Verifying phase: it is already there) and the answer admits the candidate.
    harness.reconcile(&mut canary, Vec::new()).await;
    registry.set_unreachable(false);
    harness.ctx.holds.release(&format!("{NAMESPACE}/{CANARY}"));
    let script = vec![
        Step::KeySecret { found: true },
        Step::Status,
        Step::Event("Verified"),
        Step::Event("PausedBySpec"),
    ];
    harness.reconcile(&mut canary, script).await;
    assert_eq!(status(&canary).phase, CanaryPhase::Paused);
    assert_eq!(
        verified(status(&canary)),
        ("True".into(), "Verified".into())
    );
}

#[tokio::test]
async fn a_missing_key_secret_refuses_under_enforce_and_admits_unverified_under_audit() {
    for (mode, phase, events) in [
        (
            "Enforce",
            CanaryPhase::Failed,
            vec![Step::Event("KeyMissing")],
        ),
        (
            "Audit",
            CanaryPhase::Paused,
            vec![Step::Event("KeyMissing"), Step::Event("PausedBySpec")],
        ),
    ] {
        let mut harness = Harness::new(&[target(mode)], candidate_registry(true));
        let mut canary = canary(CANDIDATE_TAG);
        let mut script = vec![Step::Status, Step::KeySecret { found: false }, Step::Status];
        script.extend(events);
        let (action, _) = harness.reconcile(&mut canary, script).await;
        assert_eq!(status(&canary).phase, phase, "{mode}");
        assert_eq!(
            verified(status(&canary)),
            ("False".into(), "KeyMissing".into()),
            "{mode}"
        );
        if mode == "Enforce" {
            assert_eq!(action, Action::requeue(SECRET_RETRY));
        }
    }
}

#[tokio::test]
async fn audit_admits_an_unsigned_candidate_pinned_but_unverified() {
    let mut harness = Harness::new(&[target("Audit")], candidate_registry(false));
    let mut canary = canary(CANDIDATE_TAG);
    let script = verifying_then(&[Step::Event("NoSignature"), Step::Event("PausedBySpec")]);
    harness.reconcile(&mut canary, script).await;
    let status = status(&canary);
    assert_eq!(status.phase, CanaryPhase::Paused);
    assert_eq!(verified(status), ("False".into(), "NoSignature".into()));
    let record = status.candidate.as_ref().expect("candidate");
    assert_eq!(record.model_digest, Some(digest('b')));
    assert_eq!(record.verified_at, None);
}

#[tokio::test]
async fn a_missing_target_is_reported_and_nothing_is_checked() {
    let registry = candidate_registry(true);
    let mut harness = Harness::new(&[], registry.clone());
    let mut canary = canary(CANDIDATE_TAG);
    let script = vec![Step::Status, Step::Event("TargetNotFound")];
    let (action, _) = harness.reconcile(&mut canary, script).await;
    let status = status(&canary);
    assert_eq!(status.phase, CanaryPhase::Pending);
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("Progressing");
    assert_eq!(progressing.reason, "TargetNotFound");
    assert!(
        progressing.message.contains("resnet18"),
        "{}",
        progressing.message
    );
    assert_eq!(registry.checks(), 0);
    assert_eq!(action, Action::requeue(RESYNC));
    // Converged while the target stays missing.
    harness.reconcile(&mut canary, Vec::new()).await;
}

#[tokio::test]
async fn a_changed_candidate_is_verified_again() {
    let registry = candidate_registry(true);
    registry
        .tag("registry.example/models/resnet18:v5", &digest('d'))
        .sign(&digest('d'));
    let mut harness = Harness::new(&[target("Enforce")], registry.clone());
    let mut canary = canary(CANDIDATE_TAG);
    let script = verifying_then(&[Step::Event("Verified"), Step::Event("PausedBySpec")]);
    harness.reconcile(&mut canary, script).await;

    let status_before = canary.status.clone();
    let mut changed = self::canary("registry.example/models/resnet18:v5");
    changed.metadata.generation = Some(2);
    changed.status = status_before;
    let script = verifying_then(&[Step::Event("Verified"), Step::Event("PausedBySpec")]);
    harness.reconcile(&mut changed, script).await;
    let status = status(&changed);
    assert_eq!(status.observed_generation, Some(2));
    let record = status.candidate.as_ref().expect("candidate");
    assert_eq!(record.model_digest, Some(digest('d')));
}

#[tokio::test]
async fn abort_rolls_back_without_asking_any_registry() {
    let registry = candidate_registry(true);
    let mut harness = Harness::new(&[target("Enforce")], registry.clone());
    let mut canary = canary(CANDIDATE_TAG);
    canary.spec.abort = true;
    harness
        .reconcile(&mut canary, vec![Step::Status, Step::Event("Aborted")])
        .await;
    assert_eq!(status(&canary).phase, CanaryPhase::RolledBack);
    assert_eq!(registry.checks(), 0);
}

#[tokio::test]
async fn the_target_keeps_its_own_pinned_model_while_the_candidate_is_checked() {
    // The candidate is checked with the target's keys, but the target's model (oci('a'))
    // is not what gets verified: the candidate's source replaces it.
    let registry = candidate_registry(true);
    let mut harness = Harness::new(&[target("Enforce")], registry.clone());
    let mut canary = canary(&oci('b'));
    let script = verifying_then(&[Step::Event("Verified"), Step::Event("PausedBySpec")]);
    harness.reconcile(&mut canary, script).await;
    let record = status(&canary).candidate.as_ref().expect("candidate");
    assert_eq!(record.model_digest, Some(digest('b')));
}

#[tokio::test]
async fn an_admitted_candidate_starts_its_first_step() {
    let mut harness = Harness::new(&[target("Enforce")], candidate_registry(true));
    let mut canary = canary(CANDIDATE_TAG);
    canary.spec.paused = false;
    let script = vec![
        Step::Status,
        Step::KeySecret { found: true },
        Step::Pods,
        Step::Status,
        Step::Event("Verified"),
        Step::Event("Stepping"),
        Step::Event("StepStarted"),
    ];
    let (action, _) = harness.reconcile(&mut canary, script).await;
    let status = status(&canary);
    assert_eq!(
        (status.phase, status.step, status.weight),
        (CanaryPhase::Progressing, 0, 5)
    );
    assert!(status.step_started_at.is_some() && status.next_analysis_at.is_some());
    // The next look is at the first analysis, one interval (1m) on.
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    // Pausing it holds the weight, within one reconcile.
    canary.spec.paused = true;
    let script = vec![Step::Status, Step::Event("PausedBySpec")];
    harness.reconcile(&mut canary, script).await;
    let paused = status_of_canary(&canary);
    assert_eq!((paused.phase, paused.weight), (CanaryPhase::Paused, 5));
    // Aborting it sends every request to stable, within one reconcile.
    canary.spec.abort = true;
    let script = vec![Step::Status, Step::Event("Aborted")];
    harness.reconcile(&mut canary, script).await;
    let aborted = status_of_canary(&canary);
    assert_eq!(
        (aborted.phase, aborted.weight),
        (CanaryPhase::RolledBack, 0)
    );
}

fn status_of_canary(canary: &Canary) -> CanaryStatus {
    status(canary).clone()
}
