//! Two candidates against an in-memory Lease endpoint that enforces `resourceVersion`.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Client, client::Body};

use super::{ElectionConfig, LeaderElector};

/// The single Lease the fake API server stores.
#[derive(Default)]
struct LeaseStore {
    lease: Option<Lease>,
    version: u64,
}

fn status(code: StatusCode, reason: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).expect("json")))
        .expect("response")
}

fn ok(lease: &Lease) -> Response<Body> {
    Response::builder()
        .body(Body::from(serde_json::to_vec(lease).expect("json")))
        .expect("response")
}

async fn handle(store: Arc<Mutex<LeaseStore>>, request: Request<Body>) -> Response<Body> {
    let method = request.method().clone();
    let body = request.into_body().collect_bytes().await.expect("body");
    let mut store = store.lock().expect("lock");
    match method {
        Method::GET => match &store.lease {
            Some(lease) => ok(lease),
            None => status(StatusCode::NOT_FOUND, "NotFound"),
        },
        Method::POST | Method::PUT => {
            let mut lease: Lease = serde_json::from_slice(&body).expect("lease body");
            let stored_version = store
                .lease
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone());
            if method == Method::POST && store.lease.is_some() {
                return status(StatusCode::CONFLICT, "AlreadyExists");
            }
            if method == Method::PUT && lease.metadata.resource_version != stored_version {
                return status(StatusCode::CONFLICT, "Conflict");
            }
            store.version += 1;
            lease.metadata.resource_version = Some(store.version.to_string());
            store.lease = Some(lease.clone());
            ok(&lease)
        }
        other => panic!("unexpected {other} request"),
    }
}

fn candidate(store: &Arc<Mutex<LeaseStore>>, identity: &str) -> LeaderElector {
    let store = store.clone();
    let service = tower::service_fn(move |request: Request<Body>| {
        let store = store.clone();
        async move { Ok::<_, Infallible>(handle(store, request).await) }
    });
    let config = ElectionConfig {
        namespace: "modelplane-system".into(),
        name: "modelplane-operator".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(1),
        retry_period: Duration::from_millis(50),
    };
    LeaderElector::new(Client::new(service, "default"), config)
}

#[tokio::test]
async fn only_one_of_two_replicas_leads() {
    let store = Arc::new(Mutex::new(LeaseStore::default()));
    let (a, b) = (candidate(&store, "a"), candidate(&store, "b"));
    assert!(a.try_acquire_or_renew().await.expect("round a"));
    assert!(!b.try_acquire_or_renew().await.expect("round b"));
    assert!(a.try_acquire_or_renew().await.expect("renewal"));
}

#[tokio::test]
async fn standby_takes_over_within_the_lease_duration() {
    let store = Arc::new(Mutex::new(LeaseStore::default()));
    let (a, b) = (candidate(&store, "a"), candidate(&store, "b"));
    assert!(a.try_acquire_or_renew().await.expect("round a"));
    // `a` stops renewing (crashed); `b` must win within the 1s lease plus one retry.
    let took_over = tokio::time::timeout(Duration::from_millis(1500), b.acquire()).await;
    assert!(took_over.is_ok(), "standby did not take over");
    let holder = store
        .lock()
        .expect("lock")
        .lease
        .clone()
        .and_then(|l| l.spec);
    let holder = holder.expect("spec");
    assert_eq!(holder.holder_identity.as_deref(), Some("b"));
    assert_eq!(holder.lease_transitions, Some(1));
}

#[tokio::test]
async fn released_lease_is_taken_over_at_once() {
    let store = Arc::new(Mutex::new(LeaseStore::default()));
    let (a, b) = (candidate(&store, "a"), candidate(&store, "b"));
    assert!(a.try_acquire_or_renew().await.expect("round a"));
    assert!(
        !b.release().await.expect("release by a standby"),
        "b never held it"
    );
    assert!(a.release().await.expect("release"));
    assert!(b.try_acquire_or_renew().await.expect("round b"));
}

#[tokio::test]
async fn stale_write_loses_the_round() {
    let store = Arc::new(Mutex::new(LeaseStore::default()));
    let a = candidate(&store, "a");
    assert!(a.try_acquire_or_renew().await.expect("round a"));
    let read = store.lock().expect("lock").lease.clone().expect("lease");
    assert!(a.try_acquire_or_renew().await.expect("renewal"));
    // A write based on the older read must be refused by resourceVersion.
    assert!(!a.write(read, Default::default()).await.expect("write"));
}
