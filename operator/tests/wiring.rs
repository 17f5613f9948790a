//! The whole operator process against an in-memory API server over HTTP: cache sync,
//! leader election, the first reconcile's writes, `/metrics`, graceful shutdown.
//!
//! The fake server answers lists from its store, holds watches open without events,
//! stores creates, replaces and server-side applies, and never answers requests for the
//! kinds it is told to hang on.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header::USER_AGENT},
    response::Response,
};
use clap::Parser;
use modelplane_operator::cli::Args;
use modelplane_operator::run::{self, SHUTDOWN_GRACE, run};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct FakeApi {
    objects: Mutex<BTreeMap<String, Value>>,
    writes: Mutex<Vec<(Method, String)>>,
    /// Path suffixes (a kind's collection, e.g. `/canaries`) whose requests never get an answer.
    hang: Vec<&'static str>,
    /// Requests held forever because of `hang`.
    hung: Mutex<Vec<String>>,
    /// Every request: method, path and `User-Agent`.
    requests: Mutex<Vec<Seen>>,
}

/// One request the fake server received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    user_agent: Option<String>,
}

fn reply(code: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn status(code: StatusCode, reason: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "reason": reason, "code": code.as_u16(), "message": reason});
    reply(code, &body)
}

impl FakeApi {
    fn put(&self, path: &str, mut object: Value) -> Value {
        let mut objects = self.objects.lock().expect("lock");
        object["metadata"]["resourceVersion"] = json!((objects.len() + 100).to_string());
        objects.insert(path.to_owned(), object.clone());
        object
    }

    fn get(&self, path: &str) -> Response {
        let objects = self.objects.lock().expect("lock");
        if let Some(object) = objects.get(path) {
            return reply(StatusCode::OK, object);
        }
        let prefix = format!("{path}/");
        let items: Vec<&Value> = objects
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.contains('/'))
            })
            .map(|(_, object)| object)
            .collect();
        if items.is_empty() && is_object_path(path) {
            return status(StatusCode::NOT_FOUND, "NotFound");
        }
        reply(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
        )
    }

    fn write(&self, method: &Method, path: &str, body: Value) -> Response {
        self.writes
            .lock()
            .expect("lock")
            .push((method.clone(), path.to_owned()));
        match *method {
            Method::POST => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or("generated")
                    .to_owned();
                let key = format!("{path}/{name}");
                if path.ends_with("/leases")
                    && self.objects.lock().expect("lock").contains_key(&key)
                {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                reply(StatusCode::CREATED, &self.put(&key, body))
            }
            Method::PATCH if path.ends_with("/status") => {
                let key = path.trim_end_matches("/status");
                let mut object = self
                    .objects
                    .lock()
                    .expect("lock")
                    .get(key)
                    .cloned()
                    .unwrap_or(Value::Null);
                object["status"] = body["status"].clone();
                reply(StatusCode::OK, &self.put(key, object))
            }
            _ => reply(StatusCode::OK, &self.put(path, body)),
        }
    }
}

/// Whether `path` names one object of a kind the operator reads by name.
fn is_object_path(path: &str) -> bool {
    let kind = path.rsplit('/').nth(1).unwrap_or_default();
    ["secrets", "persistentvolumeclaims", "leases"].contains(&kind)
}

async fn handle(
    State(api): State<Arc<FakeApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api.requests.lock().expect("lock").push(Seen {
        method: method.clone(),
        path: uri.path().to_owned(),
        user_agent: headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    if api.hang.iter().any(|kind| uri.path().ends_with(kind)) {
        api.hung.lock().expect("lock").push(uri.to_string());
        return std::future::pending().await;
    }
    let query = uri.query().unwrap_or_default();
    if query.contains("watch=true") || query.contains("watch=1") {
        let never = futures::stream::pending::<Result<Bytes, Infallible>>();
        return Response::builder()
            .body(Body::from_stream(never))
            .expect("watch");
    }
    let path = uri.path().to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match method {
        Method::GET => api.get(&path),
        Method::DELETE => reply(
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        ),
        _ => api.write(&method, &path, body),
    }
}

fn seed(api: &FakeApi) {
    api.put(
        "/api/v1/namespaces/team-a",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
    );
    api.put(
        "/apis/serving.modelplane.io/v1alpha1/namespaces/team-a/modeldeployments/resnet18",
        json!({
            "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "resnet18", "namespace": "team-a", "uid": "uid-1", "generation": 1},
            "spec": {"model": {"name": "resnet18", "task": "classify",
                               "source": {"http": {"url": "https://models.example/r.pt", "sha256": "a".repeat(64)}}}},
        }),
    );
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/team-a/leases/modelplane-operator";

/// The holder the stored Lease names (`Null` once released), `None` without a Lease.
fn holder(api: &FakeApi) -> Option<Value> {
    api.objects
        .lock()
        .expect("lock")
        .get(LEASE_PATH)
        .map(|l| l["spec"]["holderIdentity"].clone())
}

/// A running operator: stop it with `stop`, and see how it ended in `exited`.
struct Operator {
    stop: tokio::sync::oneshot::Sender<()>,
    exited: tokio::task::JoinHandle<anyhow::Result<()>>,
    metrics_addr: SocketAddr,
}

impl Operator {
    /// Serves `api` on loopback and starts the operator as replica `replica-a` against it.
    async fn start(api: &Arc<FakeApi>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let api_addr = listener.local_addr().expect("addr");
        let app = Router::new().fallback(handle).with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let metrics_addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("addr")
        };
        let args = Args::try_parse_from([
            "modelplane-operator",
            "--namespaces=team-a",
            "--lease-namespace=team-a",
            "--identity=replica-a",
            "--lease-retry=100ms",
            // Pinned by digest: with verification disabled, nothing asks a registry.
            &format!(
                "--runtime-image=ghcr.io/modelplane/runtime@sha256:{}",
                "e".repeat(64)
            ),
            &format!("--metrics-addr={metrics_addr}"),
        ])
        .expect("args");
        let config = kube::Config::new(format!("http://{api_addr}").parse().expect("url"));
        let client = run::client(config).expect("client");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let exited = tokio::spawn(run(args, client, async {
            let _ = stopped.await;
        }));
        Self {
            stop,
            exited,
            metrics_addr,
        }
    }

    /// Requests shutdown and waits at most `within` for the operator to end.
    async fn shut_down(
        self,
        within: Duration,
    ) -> Result<Result<anyhow::Result<()>, tokio::task::JoinError>, tokio::time::error::Elapsed>
    {
        self.stop.send(()).expect("operator running");
        tokio::time::timeout(within, self.exited).await
    }
}

#[tokio::test]
async fn operator_elects_itself_reconciles_and_shuts_down_gracefully() {
    let api = Arc::new(FakeApi::default());
    seed(&api);
    let operator = Operator::start(&api).await;

    let written = |suffix: &str| {
        let suffix = suffix.to_owned();
        let api = api.clone();
        move || {
            api.writes
                .lock()
                .expect("lock")
                .iter()
                .any(|(m, p)| m == Method::PATCH && p.ends_with(&suffix))
        }
    };
    for suffix in [
        "configmaps/resnet18-runtime-config",
        "deployments/resnet18",
        "services/resnet18",
        "modeldeployments/resnet18/status",
    ] {
        wait_until(suffix, written(suffix)).await;
    }
    assert_eq!(holder(&api), Some(json!("replica-a")));
    let status = api.objects.lock().expect("lock")
        ["/apis/serving.modelplane.io/v1alpha1/namespaces/team-a/modeldeployments/resnet18"]["status"].clone();
    assert_eq!(status["observedGeneration"], 1);

    let metrics = http_get(operator.metrics_addr, "/metrics").await;
    assert!(
        metrics.contains("modelplane_operator_leader 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"modelplane_operator_reconciles_total{kind="ModelDeployment",outcome="success"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"modelplane_verifications_total{artifact="image",result="Disabled"} 1"#),
        "{metrics}"
    );
    assert!(
        http_get(operator.metrics_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );

    let stopped = operator.shut_down(Duration::from_secs(10)).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "graceful shutdown: {stopped:?}"
    );
    assert_eq!(
        holder(&api),
        Some(Value::Null),
        "the lease is released on shutdown"
    );
}

#[tokio::test]
async fn every_api_request_names_the_operator_in_its_user_agent() {
    let api = Arc::new(FakeApi::default());
    seed(&api);
    let operator = Operator::start(&api).await;
    wait_until("the first status write", || {
        api.writes
            .lock()
            .expect("lock")
            .iter()
            .any(|(_, path)| path.ends_with("/status"))
    })
    .await;
    let stopped = operator.shut_down(Duration::from_secs(10)).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");

    let expected = format!("modelplane-operator/{}", env!("CARGO_PKG_VERSION"));
    let requests = api.requests.lock().expect("lock").clone();
    assert!(requests.len() > 10, "only {} requests", requests.len());
    let anonymous: Vec<&Seen> = requests
        .iter()
        .filter(|seen| seen.user_agent.as_deref() != Some(&*expected))
        .collect();
    assert!(anonymous.is_empty(), "{anonymous:?}");
}

/// The race of issue 11: SIGTERM while a controller's first list is still in flight. A
/// kube-runtime controller shut down gracefully before its store is ready never ends, so
/// only the grace period stops it; the Lease must be released all the same.
#[tokio::test]
async fn shutdown_right_after_election_ends_in_bounded_time_while_the_canary_list_hangs() {
    let api = Arc::new(FakeApi {
        hang: vec!["/canaries"],
        ..FakeApi::default()
    });
    seed(&api);
    let operator = Operator::start(&api).await;
    wait_until("leadership", || holder(&api) == Some(json!("replica-a"))).await;
    wait_until("the Canary list", || {
        !api.hung.lock().expect("lock").is_empty()
    })
    .await;

    let bound = SHUTDOWN_GRACE + Duration::from_secs(3);
    let stopped = operator.shut_down(bound).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "no graceful end within {bound:?}: {stopped:?}"
    );
    assert_eq!(
        holder(&api),
        Some(Value::Null),
        "the lease is released on shutdown"
    );
}

#[tokio::test]
async fn shutdown_while_another_replica_leads_ends_at_once_and_leaves_its_lease() {
    let api = Arc::new(FakeApi::default());
    seed(&api);
    let renewed = k8s_openapi::jiff::Timestamp::now().to_string();
    api.put(
        LEASE_PATH,
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "modelplane-operator", "namespace": "team-a"},
            "spec": {"holderIdentity": "replica-b", "leaseDurationSeconds": 3600,
                     "renewTime": renewed, "acquireTime": renewed},
        }),
    );
    let operator = Operator::start(&api).await;
    wait_until("an election round", || {
        api.requests
            .lock()
            .expect("lock")
            .iter()
            .any(|seen| seen.method == Method::GET && seen.path == LEASE_PATH)
    })
    .await;

    let stopped = operator.shut_down(Duration::from_secs(2)).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    assert_eq!(holder(&api), Some(json!("replica-b")));
    assert!(
        api.writes.lock().expect("lock").is_empty(),
        "a follower writes nothing"
    );
}
