//! Identity over every protocol, against a real runtime on loopback: with API keys and
//! JWT configured, a request without credentials is a 401 (before routing: an unknown
//! model too), one with a key or a token is served, and a valid token without a
//! tenant is a 403, on OIP REST, OIP gRPC and the OpenAI API alike; a runtime without
//! credentials configured serves anonymous requests; an updated keys file is picked up
//! without a restart. The PEM keys are the test-only fixtures of tests/fixtures/identity.

mod common;
mod generate_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use modelplane_runtime::Running;
use modelplane_runtime::protocol::grpc::pb;
use pb::model_infer_request::InferInputTensor;
use serde_json::{Value, json};

const KEY_A: &str = "sk-team-a-0123456789";
const SECRET: &str = "integration-test-hs256-secret-0123456789";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/identity")
        .join(name)
}

/// A runtime serving the affine model (`affine`) and the tiny LM (`tiny`), with
/// `identity_yaml` as its `identity` (empty: none).
async fn server(dir: &Path, identity_yaml: &str) -> Running {
    let affine = dir.join("affine/1/model.pt");
    make_affine_models(&[(&affine, 3.0)]);
    let tiny = generate_support::tiny_llama();
    let yaml = format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{cache}', intraOpThreads: 1}}
{identity_yaml}
models:
- name: affine
  versions: [{{version: '1', source: {{path: '{affine}'}}}}]
- name: tiny
  task: generate
  versions: [{{version: '1', source: {{path: '{tiny}'}}}}]
",
        cache = dir.join("cache").display(),
        affine = affine.display(),
        tiny = tiny.display(),
    );
    start_inline(&yaml).await
}

/// API keys (`team-a` has [`KEY_A`]) and JWT (HS256 `hs`, RS256 `rsa`).
fn secured(dir: &Path) -> String {
    std::fs::write(dir.join("keys"), format!("# test keys\nteam-a:{KEY_A}\n")).expect("keys");
    std::fs::write(dir.join("secret"), SECRET).expect("secret");
    format!(
        "identity:
  apiKeys: {{file: '{keys}'}}
  jwt:
    audiences: [modelplane]
    keys:
    - {{id: hs, algorithm: HS256, file: '{secret}'}}
    - {{id: rsa, algorithm: RS256, file: '{rsa}'}}",
        keys = dir.join("keys").display(),
        secret = dir.join("secret").display(),
        rsa = fixture("rsa-public.pem").display(),
    )
}

fn exp() -> u64 {
    jsonwebtoken::get_current_timestamp() + 600
}

/// An RS256 token of `team-b`.
fn rs256_token() -> String {
    let pem = std::fs::read(fixture("rsa-private.pem")).expect("fixture");
    let key = EncodingKey::from_rsa_pem(&pem).expect("key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa".into());
    let claims = json!({"aud": "modelplane", "exp": exp(), "tenant": "team-b"});
    jsonwebtoken::encode(&header, &claims, &key).expect("token")
}

/// A valid HS256 token that names no tenant.
fn tenantless_token() -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    let claims = json!({"aud": "modelplane", "exp": exp(), "sub": "someone"});
    jsonwebtoken::encode(&header, &claims, &key).expect("token")
}

/// What a client saw: status, `WWW-Authenticate`, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

async fn post(url: String, body: Value, credential: Option<(&str, &str)>) -> Answer {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some((name, value)) = credential {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        challenge,
        body,
    }
}

async fn rest(running: &Running, model: &str, credential: Option<(&str, &str)>) -> Answer {
    let url = format!("http://{}/v2/models/{model}/infer", running.http_addr);
    post(url, json_body(&[[1.0, 2.0, 3.0, 4.0]]), credential).await
}

async fn openai(running: &Running, credential: Option<(&str, &str)>) -> Answer {
    let url = format!("http://{}/v1/completions", running.http_addr);
    let body = json!({"model": "tiny", "prompt": "Once upon", "max_tokens": 2});
    post(url, body, credential).await
}

async fn grpc(
    running: &Running,
    credential: Option<(&'static str, &str)>,
) -> Result<(), tonic::Status> {
    let mut client = grpc_client(running).await;
    let raw: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut request = tonic::Request::new(pb::ModelInferRequest {
        model_name: "affine".into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            ..Default::default()
        }],
        raw_input_contents: vec![raw.into()],
        ..Default::default()
    });
    if let Some((name, value)) = credential {
        request
            .metadata_mut()
            .insert(name, value.parse().expect("metadata value"));
    }
    client.model_infer(request).await.map(|_| ())
}

fn bearer(token: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {token}")))
}

fn as_ref<'a>(credential: &'a Option<(&'static str, String)>) -> Option<(&'static str, &'a str)> {
    credential
        .as_ref()
        .map(|(name, value)| (*name, value.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_when_configured_on_every_protocol() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server(dir.path(), &secured(dir.path())).await;
    let key = bearer(KEY_A);
    let jwt = bearer(&rs256_token());
    let tenantless = bearer(&tenantless_token());

    // OIP REST.
    let missing = rest(&running, "affine", None).await;
    assert_eq!(missing.status, 401, "{missing:?}");
    assert_eq!(
        missing.challenge.as_deref(),
        Some("Bearer realm=\"modelplane\"")
    );
    assert_eq!(
        missing.body,
        json!({"error": "missing credentials: send Authorization: Bearer <api key or JWT>"})
    );
    let unknown_model = rest(&running, "no-such-model", None).await;
    assert_eq!(unknown_model.status, 401, "identity comes before routing");
    let wrong = rest(
        &running,
        "affine",
        Some(("authorization", "Bearer sk-guess")),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.challenge.as_deref(),
        Some("Bearer realm=\"modelplane\", error=\"invalid_token\"")
    );
    assert_eq!(wrong.body, json!({"error": "unknown API key"}));
    for credential in [&key, &jwt, &Some(("x-api-key", KEY_A.to_owned()))] {
        let served = rest(&running, "affine", as_ref(credential)).await;
        assert_eq!(served.status, 200, "{served:?}");
        assert_eq!(
            output_f32(&served.body, "y"),
            affine(&[[1.0, 2.0, 3.0, 4.0]], 3.0)
        );
    }
    let forbidden = rest(&running, "affine", as_ref(&tenantless)).await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(
        forbidden.body,
        json!({"error": "the token has no \"tenant\" claim naming its tenant"})
    );

    // OIP gRPC.
    let status = grpc(&running, None).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().starts_with("missing credentials"),
        "{status:?}"
    );
    grpc(&running, as_ref(&key)).await.expect("API key");
    grpc(&running, Some(("x-api-key", KEY_A)))
        .await
        .expect("x-api-key");
    grpc(&running, as_ref(&jwt)).await.expect("JWT");
    let status = grpc(&running, as_ref(&tenantless))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // The OpenAI API: OpenAI's error objects.
    let missing = openai(&running, None).await;
    assert_eq!(missing.status, 401, "{missing:?}");
    assert_eq!(
        missing.challenge.as_deref(),
        Some("Bearer realm=\"modelplane\"")
    );
    assert_eq!(missing.body["error"]["type"], "authentication_error");
    assert_eq!(missing.body["error"]["code"], "invalid_api_key");
    let served = openai(&running, as_ref(&key)).await;
    assert_eq!(served.status, 200, "{served:?}");
    assert_eq!(served.body["object"], "text_completion");
    assert_eq!(openai(&running, as_ref(&jwt)).await.status, 200);
    let forbidden = openai(&running, as_ref(&tenantless)).await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(forbidden.body["error"]["type"], "permission_error");

    // Refusals are counted by reason, under no model version.
    let missing = "modelplane_auth_failures_total{reason=\"missing_credentials\"}";
    assert_eq!(metric(&running, missing).await, Some(4.0));
    let forbidden = "modelplane_auth_failures_total{reason=\"forbidden\"}";
    assert_eq!(metric(&running, forbidden).await, Some(3.0));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updated_keys_file_is_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server(dir.path(), &secured(dir.path())).await;
    let new_key = "sk-team-c-rotated-key";
    assert_eq!(
        rest(&running, "affine", Some(("x-api-key", new_key)))
            .await
            .status,
        401
    );
    // The kubelet's way: the new content appears under the same name at once.
    let staged = dir.path().join("keys.new");
    std::fs::write(&staged, format!("team-c:{new_key}\n")).expect("write");
    std::fs::rename(&staged, dir.path().join("keys")).expect("swap");
    let picked_up = wait_until(Duration::from_secs(10), || async {
        rest(&running, "affine", Some(("x-api-key", new_key)))
            .await
            .status
            == 200
    })
    .await;
    assert!(picked_up.is_ok(), "the new key was not accepted");
    assert_eq!(
        rest(&running, "affine", Some(("x-api-key", KEY_A)))
            .await
            .status,
        401,
        "the removed key is refused"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_configured_requests_are_anonymous_on_every_protocol() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server(dir.path(), "").await;
    assert_eq!(rest(&running, "affine", None).await.status, 200);
    assert_eq!(rest(&running, "no-such-model", None).await.status, 404);
    grpc(&running, None).await.expect("anonymous gRPC");
    // OpenAI clients always send a key; with none configured it is not checked.
    let served = openai(&running, Some(("authorization", "Bearer EMPTY"))).await;
    assert_eq!(served.status, 200, "{served:?}");
    assert_eq!(openai(&running, None).await.status, 200);
    running.shutdown().await;
}

#[tokio::test]
async fn model_metadata_is_refused_without_credentials_and_health_stays_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server(dir.path(), &secured(dir.path())).await;
    let base = format!("http://{}", running.http_addr);
    let client = reqwest::Client::new();
    for path in [
        "/v2/models/affine",
        "/v2/models/affine/versions/1",
        "/v1/models",
        "/v1/models/tiny",
    ] {
        let refused = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(refused.status(), 401, "{path}");
        let served = client
            .get(format!("{base}{path}"))
            .bearer_auth(KEY_A)
            .send()
            .await
            .expect("request");
        assert_eq!(served.status(), 200, "{path} with a key");
    }
    for path in [
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/affine/ready",
    ] {
        let open = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(open.status(), 200, "{path} is for probes");
    }
    let mut grpc = grpc_client(&running).await;
    let status = grpc
        .model_metadata(pb::ModelMetadataRequest {
            name: "affine".into(),
            version: String::new(),
        })
        .await
        .expect_err("no credentials");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    running.shutdown().await;
}
