//! The TenantQuota controller against an in-memory API server that enforces
//! resourceVersion preconditions: which requests each situation causes, including none.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Client, client::Body, runtime::events::Recorder};
use modelplane_api::{
    canary::Canary,
    model_deployment::ModelDeployment,
    tenant_quota::{TenantQuota, TenantQuotaStatus},
};
use serde_json::{Value, json};

use super::{Context, reconcile};
use crate::{controller::Backoff, fixtures::store, metrics::Metrics};

/// What the fake API server holds and saw.
#[derive(Default)]
pub struct State {
    /// TenantQuotas by name, with their resourceVersion.
    pub quotas: BTreeMap<String, TenantQuota>,
    /// ModelDeployments that exist, `namespace/name` → uid.
    pub model_deployments: BTreeMap<String, String>,
    /// Every request: `METHOD path`.
    pub requests: Vec<String>,
    /// Status writes refused for a stale resourceVersion.
    pub conflicts: usize,
    /// Every accepted record, in order.
    pub accepted: Vec<TenantQuotaStatus>,
}

/// An API server for TenantQuota status writes (server-side apply with a resourceVersion
/// precondition, 409 when it is stale), ModelDeployment metadata reads and Events.
#[derive(Clone, Default)]
pub struct FakeApi(pub Arc<Mutex<State>>);

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn failure(code: StatusCode, reason: &str) -> Response<Body> {
    respond(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": reason, "code": code.as_u16(), "message": reason}),
    )
}

impl FakeApi {
    /// A server holding `quotas` (each at resourceVersion 1) and `model_deployments`.
    pub fn new(quotas: &[TenantQuota], model_deployments: &[ModelDeployment]) -> Self {
        let api = Self::default();
        {
            let mut state = api.state();
            for quota in quotas {
                let mut quota = quota.clone();
                quota.metadata.resource_version = Some("1".into());
                let name = quota.metadata.name.clone().expect("name");
                state.quotas.insert(name, quota);
            }
            for md in model_deployments {
                let key = format!(
                    "{}/{}",
                    md.metadata.namespace.as_deref().expect("namespace"),
                    md.metadata.name.as_deref().expect("name")
                );
                state
                    .model_deployments
                    .insert(key, md.metadata.uid.clone().expect("uid"));
            }
        }
        api
    }

    /// The server's state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The TenantQuota `name` as the server now holds it.
    pub fn quota(&self, name: &str) -> TenantQuota {
        self.state().quotas.get(name).cloned().expect("quota")
    }

    /// A client talking to this server.
    pub fn client(&self) -> Client {
        let api = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(request).await) }
        });
        Client::new(service, "default")
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut state = self.state();
        state.requests.push(format!("{method} {path}"));
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (
                Method::PATCH,
                [
                    "apis",
                    "serving.modelplane.io",
                    "v1alpha1",
                    "tenantquotas",
                    name,
                    "status",
                ],
            ) => apply_status(&mut state, name, &body),
            (
                Method::GET,
                [
                    "apis",
                    "serving.modelplane.io",
                    "v1alpha1",
                    "namespaces",
                    ns,
                    "modeldeployments",
                    name,
                ],
            ) => match state.model_deployments.get(&format!("{ns}/{name}")) {
                Some(uid) => respond(
                    StatusCode::OK,
                    &json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                            "metadata": {"name": name, "namespace": ns, "uid": uid}}),
                ),
                None => failure(StatusCode::NOT_FOUND, "NotFound"),
            },
            (Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", _, "events"])
            | (Method::PATCH, ["apis", "events.k8s.io", "v1", "namespaces", _, "events", _]) => {
                respond(StatusCode::OK, &body)
            }
            (method, _) => panic!("unexpected request {method} {path}"),
        }
    }
}

/// Server-side apply of the status with the body's resourceVersion as a precondition, as
/// kube-apiserver does it.
fn apply_status(state: &mut State, name: &str, body: &Value) -> Response<Body> {
    let Some(quota) = state.quotas.get_mut(name) else {
        return failure(StatusCode::NOT_FOUND, "NotFound");
    };
    let current = quota.metadata.resource_version.clone().unwrap_or_default();
    let wanted = body["metadata"]["resourceVersion"].as_str();
    if wanted.is_some_and(|w| w != current) {
        state.conflicts += 1;
        return failure(StatusCode::CONFLICT, "Conflict");
    }
    let status: TenantQuotaStatus =
        serde_json::from_value(body["status"].clone()).expect("status deserializes");
    quota.status = Some(status.clone());
    let next: u64 = current.parse().unwrap_or(0) + 1;
    quota.metadata.resource_version = Some(next.to_string());
    let served = serde_json::to_value(&*quota).expect("json");
    state.accepted.push(status);
    respond(StatusCode::OK, &served)
}

/// A TenantQuota `team-a` covering namespace `team-a`, created at second 0.
pub fn quota(hard: Value) -> TenantQuota {
    serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "TenantQuota",
        "metadata": {"name": "team-a", "uid": "uid-team-a", "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"namespaces": ["team-a"], "hard": hard},
    }))
    .expect("quota")
}

/// A ModelDeployment `team-a/<name>` with `replicas` pods of 1 CPU, created at `second`.
pub fn model_deployment(name: &str, second: u32, replicas: i32) -> ModelDeployment {
    serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}"),
                     "generation": 1,
                     "creationTimestamp": format!("2026-01-01T00:{:02}:{:02}Z", second / 60, second % 60)},
        "spec": {"runtime": {"replicas": replicas, "resources": {"cpu": "1", "memory": "1Gi"}}},
    }))
    .expect("model deployment")
}

/// One operator's view: its caches and its client.
pub fn context(api: &FakeApi, quotas: &[TenantQuota], mds: &[ModelDeployment]) -> Arc<Context> {
    context_with(api, quotas, mds, &[])
}

/// [`context`] with Canaries in the caches.
pub fn context_with(
    api: &FakeApi,
    quotas: &[TenantQuota],
    mds: &[ModelDeployment],
    canaries: &[Canary],
) -> Arc<Context> {
    let client = api.client();
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team-a"}})).expect("namespace");
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), "modelplane-operator-test".into()),
        client,
        metrics: Arc::new(Metrics::default()),
        quotas: store(quotas),
        model_deployments: vec![store(mds)],
        canaries: vec![store(canaries)],
        namespaces: store(&[namespace]),
        backoff: Backoff::default(),
    })
}

/// Reconciles `quota` as the view `(quotas, mds)` shows it.
pub async fn reconcile_view(api: &FakeApi, quota: &TenantQuota, mds: &[ModelDeployment]) {
    let ctx = context(api, std::slice::from_ref(quota), mds);
    reconcile(Arc::new(quota.clone()), ctx)
        .await
        .expect("reconcile succeeds");
}

fn admitted(status: &TenantQuotaStatus) -> Vec<&str> {
    status.admitted.iter().map(String::as_str).collect()
}

fn refused(status: &TenantQuotaStatus) -> Vec<&str> {
    status.rejected.iter().map(|r| r.name.as_str()).collect()
}

fn writes(api: &FakeApi) -> Vec<String> {
    api.state()
        .requests
        .iter()
        .filter(|r| r.starts_with("PATCH") && r.contains("/tenantquotas/"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_quota_admits_oldest_first_records_it_and_then_costs_nothing() {
    let mds = [
        model_deployment("young", 30, 2),
        model_deployment("old", 10, 3),
        model_deployment("middle", 20, 2),
    ];
    let api = FakeApi::new(&[quota(json!({"cpu": "5", "replicas": 10}))], &mds);
    reconcile_view(&api, &api.quota("team-a"), &mds).await;

    let written = api.quota("team-a");
    let status = written.status.clone().expect("status");
    assert_eq!(admitted(&status), ["team-a/middle", "team-a/old"]);
    assert_eq!(refused(&status), ["team-a/young"]);
    assert_eq!(
        status.rejected[0].reason,
        "cpu: needs 2, 2 over the quota of 5 (5 in use by other ModelDeployments)"
    );
    assert_eq!(status.used.cpu.as_deref(), Some("5"));
    assert_eq!(status.used.replicas, 5);
    assert_eq!(status.summary.cpu, "5/5");
    assert_eq!(status.summary.gpu, "0/-");
    assert_eq!(status.summary.memory, "5Gi/-");
    assert_eq!(status.tenant.as_deref(), Some("team-a"));
    let exceeded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Exceeded")
        .expect("Exceeded");
    assert_eq!(
        (format!("{:?}", exceeded.status), exceeded.reason.as_str()),
        ("True".into(), "Refused")
    );
    let events: Vec<String> = api
        .state()
        .requests
        .iter()
        .filter(|r| r.contains("/events"))
        .cloned()
        .collect();
    assert_eq!(
        events.len(),
        3,
        "two admissions and one refusal: {events:?}"
    );

    // Converged: the next reconcile reads the caches and writes nothing.
    let before = api.state().requests.len();
    reconcile_view(&api, &written, &mds).await;
    assert_eq!(
        api.state().requests.len(),
        before,
        "a steady quota costs no request"
    );
}

#[tokio::test]
async fn raising_the_quota_admits_the_waiting_deployment_without_other_action() {
    let mds = [model_deployment("a", 1, 2), model_deployment("b", 2, 2)];
    let api = FakeApi::new(&[quota(json!({"replicas": 3}))], &mds);
    reconcile_view(&api, &api.quota("team-a"), &mds).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(admitted(&status), ["team-a/a"]);
    assert_eq!(refused(&status), ["team-a/b"]);

    let mut raised = api.quota("team-a");
    raised.spec.hard.replicas = Some(4);
    raised.metadata.generation = Some(2);
    api.state().quotas.insert("team-a".into(), raised.clone());
    reconcile_view(&api, &raised, &mds).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(admitted(&status), ["team-a/a", "team-a/b"]);
    assert!(status.rejected.is_empty());
    assert_eq!(status.summary.replicas, "4/4");
}

#[tokio::test]
async fn a_deleted_deployment_is_released_once_the_server_confirms_it_is_gone() {
    let mds = [model_deployment("a", 1, 2), model_deployment("b", 2, 2)];
    let api = FakeApi::new(&[quota(json!({"replicas": 3}))], &mds);
    reconcile_view(&api, &api.quota("team-a"), &mds).await;
    // `a` is deleted: gone from the cache and from the server.
    api.state().model_deployments.remove("team-a/a");
    reconcile_view(&api, &api.quota("team-a"), &mds[1..]).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(admitted(&status), ["team-a/b"]);
    assert!(
        api.state().requests.contains(
            &"GET /apis/serving.modelplane.io/v1alpha1/namespaces/team-a/modeldeployments/a".into()
        ),
        "the release was confirmed with the API server"
    );
}

#[tokio::test]
async fn a_cache_that_lags_behind_the_server_releases_nothing() {
    let mds = [model_deployment("a", 1, 2), model_deployment("b", 2, 2)];
    let api = FakeApi::new(&[quota(json!({"replicas": 3}))], &mds);
    reconcile_view(&api, &api.quota("team-a"), &mds[..1]).await;
    // A second view that has not seen `a` yet (it exists on the server) and sees only `b`.
    reconcile_view(&api, &api.quota("team-a"), &mds[1..]).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(admitted(&status), ["team-a/a"]);
    assert_eq!(refused(&status), ["team-a/b"]);
}

#[tokio::test]
async fn a_stale_record_loses_with_409_and_publishes_nothing() {
    let mds = [model_deployment("a", 1, 1)];
    let api = FakeApi::new(&[quota(json!({"replicas": 3}))], &mds);
    let stale = api.quota("team-a");
    reconcile_view(&api, &stale, &mds).await;
    let requests = api.state().requests.len();
    // The same (now stale) resourceVersion, another decision: refused by the server.
    let more = [model_deployment("a", 1, 1), model_deployment("b", 2, 1)];
    reconcile_view(&api, &stale, &more).await;
    let state = api.state();
    assert_eq!(state.conflicts, 1);
    assert_eq!(
        state.requests[requests..],
        ["PATCH /apis/serving.modelplane.io/v1alpha1/tenantquotas/team-a/status"],
        "one refused write, no Event"
    );
    drop(state);
    assert_eq!(writes(&api).len(), 2);
}

#[tokio::test]
async fn another_tenant_in_a_covered_namespace_is_refused_not_counted() {
    let mut escaping = model_deployment("escape", 1, 8);
    escaping.spec.tenant = Some("team-b".into());
    let mds = [escaping, model_deployment("own", 2, 1)];
    let api = FakeApi::new(&[quota(json!({"replicas": 2}))], &mds);
    reconcile_view(&api, &api.quota("team-a"), &mds).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(admitted(&status), ["team-a/own"]);
    assert_eq!(refused(&status), ["team-a/escape"]);
    assert_eq!(
        status.rejected[0].cause.as_deref(),
        Some("TenantNotAllowed")
    );
    assert_eq!(status.used.replicas, 1);
}

/// A runtime-image Canary `team-a/<name>` on `target` stepping through `weights`, in `phase`.
fn image_canary(name: &str, target: &str, weights: &[i32], phase: &str) -> Canary {
    let steps: Vec<Value> = weights.iter().map(|w| json!({"weight": w})).collect();
    serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "Canary",
        "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}"),
                     "generation": 1, "creationTimestamp": "2026-01-01T01:00:00Z"},
        "spec": {"targetRef": {"name": target},
                 "candidate": {"runtime": {"image": "r.example/runtime:2"}},
                 "steps": steps},
        "status": {"phase": phase},
    }))
    .expect("canary")
}

async fn reconcile_canaries(api: &FakeApi, mds: &[ModelDeployment], canaries: &[Canary]) {
    let quota = api.quota("team-a");
    let ctx = context_with(api, std::slice::from_ref(&quota), mds, canaries);
    reconcile(Arc::new(quota), ctx)
        .await
        .expect("reconcile succeeds");
}

#[tokio::test]
async fn a_runtime_image_canarys_pods_are_admitted_only_with_room_and_released_when_it_ends() {
    // 4 pods of 1 CPU run; the Canary's largest step below 100 (50 %) needs 4 more.
    let mds = [model_deployment("m", 1, 4)];
    let api = FakeApi::new(&[quota(json!({"cpu": "6"}))], &mds);
    let canary = image_canary("m-runtime-2", "m", &[10, 50, 100], "Pending");
    reconcile_canaries(&api, &mds, std::slice::from_ref(&canary)).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(admitted(&status), ["team-a/m"]);
    assert_eq!(refused(&status), ["team-a/m-runtime-2 (Canary)"]);
    assert_eq!(
        status.rejected[0].reason,
        "cpu: needs 4, 2 over the quota of 6 (4 in use by other ModelDeployments)"
    );

    // Steps that stay small fit: 10 % of 4 pods is one more pod.
    let small = image_canary("m-runtime-2", "m", &[10, 20], "Pending");
    reconcile_canaries(&api, &mds, std::slice::from_ref(&small)).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(
        admitted(&status),
        ["team-a/m", "team-a/m-runtime-2 (Canary)"]
    );
    assert_eq!(status.used.cpu.as_deref(), Some("5"));
    assert_eq!(
        status.used.model_deployments, 1,
        "a Canary is no ModelDeployment"
    );

    // Rolled back: its pods are gone, and so is its entry.
    let ended = image_canary("m-runtime-2", "m", &[10, 20], "RolledBack");
    reconcile_canaries(&api, &mds, std::slice::from_ref(&ended)).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(admitted(&status), ["team-a/m"]);
    assert_eq!(status.used.cpu.as_deref(), Some("4"));
}

#[tokio::test]
async fn the_quotas_use_and_limits_are_exported_as_gauges() {
    let mds = [model_deployment("a", 1, 2), model_deployment("b", 2, 3)];
    let api = FakeApi::new(&[quota(json!({"cpu": "4", "memory": "8Gi"}))], &mds);
    let quota = api.quota("team-a");
    let ctx = context(&api, std::slice::from_ref(&quota), &mds);
    reconcile(Arc::new(quota), ctx.clone())
        .await
        .expect("reconcile succeeds");
    let text = ctx.metrics.render();
    let sample = |name: &str, resource: &str| {
        let prefix = format!(
            "modelplane_operator_{name}{{quota=\"team-a\",tenant=\"team-a\",resource=\"{resource}\"}} "
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|value| value.parse::<f64>().expect("a number"))
    };
    // `a` (2 pods of 1 CPU, 1Gi) fits; `b` (3 more) does not.
    assert_eq!(sample("quota_used", "cpu"), Some(2.0), "{text}");
    assert_eq!(
        sample("quota_used", "memory"),
        Some(2.0 * 1024.0 * 1024.0 * 1024.0)
    );
    assert_eq!(sample("quota_used", "modelDeployments"), Some(1.0));
    assert_eq!(sample("quota_hard", "cpu"), Some(4.0));
    assert_eq!(
        sample("quota_hard", "replicas"),
        None,
        "not limited: no series"
    );
}
