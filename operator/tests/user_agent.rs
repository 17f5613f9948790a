//! The operator names itself in the `User-Agent` of the requests it makes, so that audit
//! and registry logs attribute them: checked on the wire against loopback servers.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header::USER_AGENT},
    response::{IntoResponse, Response},
};
use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use modelplane_operator::{cli::Args, run};
use modelplane_verify::{Digest, Reference, RegistryClient};
use serde_json::json;

const EXPECTED: &str = concat!("modelplane-operator/", env!("CARGO_PKG_VERSION"));

/// The `User-Agent` headers a loopback server received.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// Serves `answer` on a loopback port, recording each request's `User-Agent`.
async fn recording_server(answer: fn() -> Response) -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .fallback(
            move |State(seen): State<Seen>, headers: HeaderMap| async move {
                let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
                seen.lock().expect("lock").push(agent.map(str::to_owned));
                answer()
            },
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.to_string(), seen)
}

#[tokio::test]
async fn kube_client_requests_carry_the_operator_user_agent() {
    let (addr, seen) = recording_server(|| {
        let list = json!({"apiVersion": "v1", "kind": "NamespaceList",
                          "metadata": {"resourceVersion": "1"}, "items": []});
        axum::Json(list).into_response()
    })
    .await;
    let config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
    let client = run::client(config).expect("client");
    kube::Api::<Namespace>::all(client)
        .list(&Default::default())
        .await
        .expect("list");
    assert_eq!(*seen.lock().expect("lock"), [Some(EXPECTED.to_owned())]);
}

#[tokio::test]
async fn registry_client_of_the_operator_carries_its_user_agent() {
    let digest = format!("sha256:{}", "c".repeat(64));
    let (addr, seen) = recording_server(|| {
        let digest = format!("sha256:{}", "c".repeat(64));
        (StatusCode::OK, [("docker-content-digest", digest)]).into_response()
    })
    .await;
    let args = Args::try_parse_from([
        "modelplane-operator",
        &format!("--insecure-registry={addr}"),
    ])
    .expect("args");
    let registry =
        RegistryClient::new(run::registry_options(&args).expect("options")).expect("client");
    let reference: Reference = format!("{addr}/models/resnet18:v1").parse().expect("ref");
    let resolved = registry.resolve(&reference).await.expect("resolve");
    assert_eq!(resolved, digest.parse::<Digest>().expect("digest"));
    assert_eq!(*seen.lock().expect("lock"), [Some(EXPECTED.to_owned())]);
}
