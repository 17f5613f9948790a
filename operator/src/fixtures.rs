//! Test data and a scripted API server.
//!
//! A reconcile runs against `kube::Client` over a `tower-test` mock; the test
//! lists the exact requests it expects, in order. Requests beyond the script
//! fail (the mock is closed), and a request the script expects but the
//! reconcile never makes times the test out — so a test states precisely which
//! writes a reconcile makes, including none.

use std::{sync::Arc, time::Duration};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Pod, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Client, Resource,
    api::ObjectMeta,
    client::Body,
    runtime::{
        events::Recorder,
        reflector::{self, Lookup, Store},
        watcher,
    },
};
use modelplane_api::{
    model_deployment::{ModelDeployment, ModelDeploymentStatus},
    tenant_quota::TenantQuota,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{
    controller::{Backoff, Cache, Context},
    desired::Defaults,
    metrics::Metrics,
    verification::fake::FakeRegistry,
};

/// Namespace of every test object.
pub const NAMESPACE: &str = "team-a";
/// Name of the test ModelDeployment.
pub const NAME: &str = "resnet18";

/// A pinned OCI reference whose digest is `digit` repeated.
pub fn oci(digit: char) -> String {
    format!(
        "registry.example/models/resnet18:v3@sha256:{}",
        digit.to_string().repeat(64)
    )
}

/// The operator defaults used in tests.
pub fn defaults() -> Defaults {
    Defaults {
        runtime_image: "ghcr.io/modelplane/runtime:0.1.0".into(),
        insecure_registries: vec!["127.0.0.1:5000".into()],
    }
}

/// A ModelDeployment `resnet18` in `team-a`, generation 1, with the given spec.
pub fn model_deployment(spec: Value) -> ModelDeployment {
    let mut md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": "uid-resnet18", "generation": 1},
        "spec": spec,
    }))
    .expect("test spec deserializes");
    md.meta_mut().resource_version = Some("1".into());
    md
}

/// A CPU classifier served from a pinned OCI artifact, one replica.
pub fn resnet18_spec() -> Value {
    json!({
        "model": {"name": "resnet18", "task": "classify", "source": {"oci": oci('a')}},
        "runtime": {"replicas": 1, "device": "cpu", "resources": {"cpu": "2", "memory": "4Gi"}},
    })
}

/// The namespace `team-a`, labelled with tenant `team-a-tenant`.
pub fn namespace() -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            labels: Some(
                [(
                    "modelplane.io/tenant".to_owned(),
                    "team-a-tenant".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Objects in the fake cluster's watch caches.
#[derive(Default, Clone)]
pub struct Cluster {
    /// Deployments.
    pub deployments: Vec<Deployment>,
    /// Services.
    pub services: Vec<Service>,
    /// ConfigMaps.
    pub config_maps: Vec<ConfigMap>,
    /// PodDisruptionBudgets.
    pub budgets: Vec<PodDisruptionBudget>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// TenantQuotas.
    pub tenant_quotas: Vec<TenantQuota>,
    /// Canaries.
    pub canaries: Vec<modelplane_api::canary::Canary>,
    /// Other ModelDeployments (a fallback one, say).
    pub model_deployments: Vec<modelplane_api::ModelDeployment>,
}

/// A synced store holding `objects`.
pub fn store<K>(objects: &[K]) -> Store<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

impl Cluster {
    /// An empty cluster with the test namespace.
    pub fn new() -> Self {
        Self {
            namespaces: vec![namespace()],
            ..Self::default()
        }
    }

    /// Adds an object as the API server would return it, from the JSON we applied.
    pub fn serve(&mut self, applied: &Value) {
        let kind = applied["kind"].as_str().unwrap_or_default().to_owned();
        let served = as_served(applied.clone());
        match kind.as_str() {
            "Deployment" => self.deployments.push(from(served)),
            "Service" => self.services.push(from(served)),
            "ConfigMap" => self.config_maps.push(from(served)),
            "PodDisruptionBudget" => self.budgets.push(from(served)),
            other => panic!("unexpected applied kind {other}"),
        }
    }

    /// The watch caches over these objects.
    pub fn cache(&self) -> Cache {
        Cache {
            deployments: store(&self.deployments),
            services: store(&self.services),
            config_maps: store(&self.config_maps),
            pod_disruption_budgets: store(&self.budgets),
            pods: store(&self.pods),
            pod_index: crate::controller::PodIndex::from_pods(&self.pods),
            namespaces: store(&self.namespaces),
            tenant_quotas: store(&self.tenant_quotas),
            canaries: store(&self.canaries),
            model_deployments: store(&self.model_deployments),
        }
    }
}

fn from<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("served object deserializes")
}

/// Adds what the API server adds: identity, defaults and, for Deployments, a
/// finished rollout in the status.
fn as_served(mut object: Value) -> Value {
    object["metadata"]["uid"] = json!("uid-owned");
    object["metadata"]["resourceVersion"] = json!("7");
    object["metadata"]["generation"] = json!(1);
    object["metadata"]["managedFields"] =
        json!([{"manager": "modelplane-operator", "operation": "Apply"}]);
    match object["kind"].as_str() {
        Some("Deployment") => {
            let replicas = object["spec"]["replicas"].clone();
            object["spec"]["revisionHistoryLimit"] = json!(10);
            object["spec"]["progressDeadlineSeconds"] = json!(600);
            let pod = &mut object["spec"]["template"]["spec"];
            pod["restartPolicy"] = json!("Always");
            pod["dnsPolicy"] = json!("ClusterFirst");
            pod["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
            pod["containers"][0]["terminationMessagePath"] = json!("/dev/termination-log");
            pod["containers"][0]["readinessProbe"]["timeoutSeconds"] = json!(1);
            object["status"] = json!({
                "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": replicas, "availableReplicas": replicas,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
            });
        }
        Some("Service") => {
            object["spec"]["clusterIP"] = json!("10.96.0.12");
            object["spec"]["sessionAffinity"] = json!("None");
        }
        _ => {}
    }
    object
}

/// One request the reconcile is expected to make next.
#[derive(Debug, Clone)]
pub enum Expect {
    /// A metadata GET of a Secret or PVC; answered 200 if `found`, else 404.
    Get {
        /// Request path.
        path: String,
        /// Whether the object exists.
        found: bool,
    },
    /// A server-side apply (field manager `modelplane-operator`, forced).
    Apply {
        /// Request path.
        path: String,
    },
    /// A full GET answered with `body` (e.g. a Secret with its data).
    Read {
        /// Request path.
        path: String,
        /// The object returned.
        body: Value,
    },
    /// A server-side apply the API server refuses with `code` and `message`.
    ApplyRefused {
        /// Request path.
        path: String,
        /// HTTP status code of the refusal.
        code: u16,
        /// The API server's message.
        message: &'static str,
    },
    /// A server-side apply of the status subresource.
    ApplyStatus,
    /// A DELETE.
    Delete {
        /// Request path.
        path: String,
    },
    /// An Event with this reason.
    Event {
        /// Event reason.
        reason: &'static str,
    },
}

/// Request path of a namespaced object, e.g. `path("apps/v1", "deployments", NAME)`.
pub fn path(group_version: &str, plural: &str, name: &str) -> String {
    let root = if group_version == "v1" {
        "/api"
    } else {
        "/apis"
    };
    format!("{root}/{group_version}/namespaces/{NAMESPACE}/{plural}/{name}")
}

/// The applies of each owned kind, in the order reconcile makes them.
pub fn apply_config_map() -> Expect {
    Expect::Apply {
        path: path("v1", "configmaps", &format!("{NAME}-runtime-config")),
    }
}

/// Apply of the Deployment.
pub fn apply_deployment() -> Expect {
    Expect::Apply {
        path: path("apps/v1", "deployments", NAME),
    }
}

/// Apply of the Service.
pub fn apply_service() -> Expect {
    Expect::Apply {
        path: path("v1", "services", NAME),
    }
}

/// Apply of the PodDisruptionBudget.
pub fn apply_budget() -> Expect {
    Expect::Apply {
        path: path("policy/v1", "poddisruptionbudgets", NAME),
    }
}

/// A request the mock received, with its JSON body.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Which expectation it matched.
    pub expect: Expect,
    /// Request body (`Null` when empty).
    pub body: Value,
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "reason": "NotFound", "code": 404, "message": "not found"})
}

/// Plays the API server for one scripted reconcile.
pub struct ApiServer {
    handle: Handle,
    model_deployment: ModelDeployment,
}

impl ApiServer {
    /// Answers the scripted requests in order, then closes; returns what it received.
    pub fn run(self, script: Vec<Expect>) -> tokio::task::JoinHandle<Vec<Recorded>> {
        let serving = self.serve(script);
        tokio::spawn(async move { serving.await.expect("the API server script failed").0 })
    }

    /// Like [`ApiServer::run`], but hands the server back for the next reconcile's script
    /// (requests beyond the script then wait instead of failing).
    pub fn serve(mut self, script: Vec<Expect>) -> tokio::task::JoinHandle<(Vec<Recorded>, Self)> {
        tokio::spawn(async move {
            let mut recorded = Vec::new();
            for expect in script {
                let (request, send) = self
                    .handle
                    .next_request()
                    .await
                    .unwrap_or_else(|| panic!("reconcile ended before {expect:?}"));
                let body = self.answer(&expect, request, send).await;
                recorded.push(Recorded { expect, body });
            }
            (recorded, self)
        })
    }

    async fn answer(
        &self,
        expect: &Expect,
        request: Request<Body>,
        send: tower_test::mock::SendResponse<Response<Body>>,
    ) -> Value {
        let seen = Seen::read(request).await;
        let response = self.response(expect, &seen);
        send.send_response(response);
        seen.body
    }

    /// Checks `seen` against `expect` and builds the API server's answer.
    fn response(&self, expect: &Expect, seen: &Seen) -> Response<Body> {
        let got = format!("{} {}", seen.method, seen.uri);
        let path = seen.uri.path();
        match expect {
            Expect::Get { path: want, found } => {
                assert!(
                    seen.method == Method::GET && path == want,
                    "expected GET {want}, got {got}"
                );
                if !*found {
                    return respond(StatusCode::NOT_FOUND, &not_found());
                }
                let name = want.rsplit('/').next();
                let meta = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                                  "metadata": {"name": name, "namespace": NAMESPACE}});
                respond(StatusCode::OK, &meta)
            }
            Expect::Read { path: want, body } => {
                assert!(
                    seen.method == Method::GET && path == want,
                    "expected GET {want}, got {got}"
                );
                respond(StatusCode::OK, body)
            }
            Expect::Apply { path: want } => {
                assert!(
                    seen.is_apply() && path == want,
                    "expected apply of {want}, got {got}"
                );
                respond(StatusCode::OK, &seen.body)
            }
            Expect::ApplyRefused {
                path: want,
                code,
                message,
            } => {
                assert!(
                    seen.is_apply() && path == want,
                    "expected apply of {want}, got {got}"
                );
                let refusal = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": "InternalError", "code": code, "message": message});
                let code = StatusCode::from_u16(*code).expect("status code");
                respond(code, &refusal)
            }
            Expect::ApplyStatus => {
                let want = format!(
                    "/apis/serving.modelplane.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments/{NAME}/status"
                );
                assert!(
                    seen.is_apply() && path == want,
                    "expected status apply, got {got}"
                );
                let mut md = serde_json::to_value(&self.model_deployment).expect("json");
                md["status"] = seen.body["status"].clone();
                respond(StatusCode::OK, &md)
            }
            Expect::Delete { path: want } => {
                assert!(
                    seen.method == Method::DELETE && path == want,
                    "expected DELETE {want}, got {got}"
                );
                let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
                respond(StatusCode::OK, &success)
            }
            Expect::Event { reason } => {
                let want = format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events");
                assert!(
                    seen.method == Method::POST && path == want,
                    "expected event {reason}, got {got}"
                );
                assert_eq!(seen.body["reason"], json!(reason), "event: {}", seen.body);
                respond(StatusCode::OK, &seen.body)
            }
        }
    }
}

/// A request as the mock received it.
struct Seen {
    method: Method,
    uri: http::Uri,
    content_type: Option<String>,
    body: Value,
}

impl Seen {
    async fn read(request: Request<Body>) -> Self {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        Self {
            method,
            uri,
            content_type,
            body,
        }
    }

    /// A forced server-side apply by the operator's field manager.
    fn is_apply(&self) -> bool {
        let query = self.uri.query().unwrap_or_default();
        self.method == Method::PATCH
            && self.content_type.as_deref() == Some("application/apply-patch+yaml")
            && query.contains("fieldManager=modelplane-operator")
            && query.contains("force=true")
    }
}

/// Digest the test registry resolves the default runtime image to.
pub const RUNTIME_DIGEST: &str =
    "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

/// A registry that knows the default runtime image's tag and nothing else.
pub fn registry() -> Arc<FakeRegistry> {
    let registry = FakeRegistry::default();
    registry.tag(&defaults().runtime_image, RUNTIME_DIGEST);
    Arc::new(registry)
}

/// A reconcile context over `cluster` with the [`registry`], and the API server to script.
pub fn context(cluster: &Cluster, md: &ModelDeployment) -> (Arc<Context>, ApiServer) {
    context_with(cluster, md, registry())
}

/// A reconcile context over `cluster` verifying against `registry`.
pub fn context_with(
    cluster: &Cluster,
    md: &ModelDeployment,
    registry: Arc<FakeRegistry>,
) -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let context = Context {
        recorder: Recorder::new(client.clone(), "modelplane-operator-test".into()),
        client,
        metrics: Arc::new(Metrics::default()),
        defaults: defaults(),
        cache: cluster.cache(),
        backoff: Backoff::default(),
        verifier: registry,
        holds: crate::controller::model_deployment::Holds::default(),
    };
    (
        Arc::new(context),
        ApiServer {
            handle,
            model_deployment: md.clone(),
        },
    )
}

/// Waits for the scripted API server to have answered everything.
pub async fn finished(server: tokio::task::JoinHandle<Vec<Recorded>>) -> Vec<Recorded> {
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("the reconcile did not make every expected request")
        .expect("the API server script failed")
}

/// The body of the first server-side apply of a `kind` the reconcile made.
pub fn applied<'a>(recorded: &'a [Recorded], kind: &str) -> &'a Value {
    recorded
        .iter()
        .find(|r| matches!(r.expect, Expect::Apply { .. }) && r.body["kind"] == kind)
        .map(|r| &r.body)
        .unwrap_or_else(|| panic!("no {kind} applied"))
}

/// The status the reconcile applied to the status subresource.
pub fn status_written(recorded: &[Recorded]) -> ModelDeploymentStatus {
    let body = recorded
        .iter()
        .find(|r| matches!(r.expect, Expect::ApplyStatus))
        .map(|r| r.body["status"].clone())
        .expect("status written");
    serde_json::from_value(body).expect("status deserializes")
}

/// The (status, reason) of condition `type_`.
pub fn condition(status: &ModelDeploymentStatus, type_: &str) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (format!("{:?}", c.status), c.reason.clone())
}
