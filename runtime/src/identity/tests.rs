//! The authenticator end to end: JWT edge cases, API keys, anonymous requests, gateway
//! headers, key loading errors and the reload watch. Test keys are the PEM fixtures of
//! runtime/tests/fixtures/identity (test-only, generated with OpenSSL).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use modelplane_config::{
    ApiKeysConfig, Duration, GatewayConfig, IdentityConfig, JwtAlgorithm, JwtConfig, JwtKey,
};
use serde_json::{Value, json};

use super::*;
use crate::serve::{Protocol, RequestContext};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs256-test-secret";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "modelplane";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/identity")
        .join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

/// A temp dir with the HS256 secret and an API keys file.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("secret"), [SECRET, b"\n"].concat()).expect("secret");
        std::fs::write(
            dir.path().join("keys"),
            "team-a:sk-alpha-key\nteam-b:sk-beta-key\n",
        )
        .expect("keys");
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn jwt(&self) -> JwtConfig {
        let key = |id: &str, algorithm, file: String| JwtKey {
            id: Some(id.to_owned()),
            algorithm,
            file,
        };
        JwtConfig {
            issuer: Some(ISSUER.to_owned()),
            audiences: vec![AUDIENCE.to_owned(), "other".to_owned()],
            tenant_claim: "tenant".to_owned(),
            leeway: Duration::from_millis(30_000),
            keys: vec![
                key("hs", JwtAlgorithm::Hs256, self.path("secret")),
                key(
                    "rsa",
                    JwtAlgorithm::Rs256,
                    fixture("rsa-public.pem").display().to_string(),
                ),
                key(
                    "ec",
                    JwtAlgorithm::Es256,
                    fixture("ec-public.pem").display().to_string(),
                ),
            ],
        }
    }

    /// JWT and API keys, no anonymous requests.
    fn config(&self) -> IdentityConfig {
        IdentityConfig {
            api_keys: Some(ApiKeysConfig {
                file: self.path("keys"),
            }),
            jwt: Some(self.jwt()),
            ..IdentityConfig::default()
        }
    }

    fn jwt_only(&self) -> IdentityConfig {
        IdentityConfig {
            jwt: Some(self.jwt()),
            ..IdentityConfig::default()
        }
    }

    fn authenticator(&self) -> Authenticator {
        Authenticator::new(&self.config()).expect("valid identity")
    }
}

fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).expect("now")
}

/// Claims of a valid token of `team-a`.
fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "tenant": "team-a", "sub": "u1"})
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().expect("object").remove(field);
    claims
}

fn sign(algorithm: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("encode")
}

fn hs(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET).expect("key");
    sign(Algorithm::HS256, Some("hs"), claims, &key)
}

fn rs(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&fixture_bytes("rsa-private.pem")).expect("key");
    sign(Algorithm::RS256, Some("rsa"), claims, &key)
}

fn es(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&fixture_bytes("ec-private.pem")).expect("key");
    sign(Algorithm::ES256, Some("ec"), claims, &key)
}

fn b64(json: &str) -> String {
    URL_SAFE_NO_PAD.encode(json)
}

fn headers(pairs: &[(&str, &str)]) -> Attributes {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    Attributes::new(headers)
}

fn bearer(authenticator: &Authenticator, token: &str) -> Result<Identity, AuthError> {
    authenticator.authenticate(&headers(&[("authorization", &format!("Bearer {token}"))]))
}

fn token_error(authenticator: &Authenticator, token: &str) -> TokenError {
    match bearer(authenticator, token) {
        Err(AuthError::Token(err)) => err,
        other => panic!("expected a token error, got {other:?}"),
    }
}

#[test]
fn tokens_of_each_algorithm_map_to_their_tenant() {
    let authenticator = Setup::new().authenticator();
    for token in [hs(&claims()), rs(&claims()), es(&claims())] {
        let identity = bearer(&authenticator, &token).expect("valid token");
        assert_eq!(identity.tenant(), "team-a");
        assert_eq!(identity.credential(), Credential::Jwt);
        assert_eq!(identity.fairness_key(), "team-a");
    }
    // Any configured audience will do, alone or in a list.
    let listed = with(claims(), "aud", json!(["someone", "other"]));
    assert!(bearer(&authenticator, &rs(&listed)).is_ok());
}

#[test]
fn expired_tokens_are_refused_with_their_expiry_past_the_leeway() {
    let authenticator = Setup::new().authenticator();
    let exp = now() - 120;
    let err = token_error(&authenticator, &rs(&with(claims(), "exp", json!(exp))));
    assert_eq!(err, TokenError::Expired(jwt::rfc3339(exp)));
    assert!(err.to_string().starts_with("token expired at 20"), "{err}");
    // Within the 30 s leeway: still valid.
    let recent = with(claims(), "exp", json!(now() - 10));
    assert!(bearer(&authenticator, &rs(&recent)).is_ok());
}

#[test]
fn tokens_not_yet_valid_are_refused_past_the_leeway() {
    let authenticator = Setup::new().authenticator();
    let nbf = now() + 120;
    let err = token_error(&authenticator, &es(&with(claims(), "nbf", json!(nbf))));
    assert_eq!(err, TokenError::NotYetValid(jwt::rfc3339(nbf)));
    let soon = with(claims(), "nbf", json!(now() + 10));
    assert!(bearer(&authenticator, &es(&soon)).is_ok());
}

#[test]
fn audience_and_issuer_are_checked_and_required_when_configured() {
    let authenticator = Setup::new().authenticator();
    let err = token_error(
        &authenticator,
        &hs(&with(claims(), "aud", json!("elsewhere"))),
    );
    assert!(matches!(&err, TokenError::WrongAudience(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "wrong audience \"elsewhere\": not one this runtime accepts"
    );
    let err = token_error(&authenticator, &hs(&without(claims(), "aud")));
    assert_eq!(err, TokenError::MissingClaim("aud".into()));
    let err = token_error(
        &authenticator,
        &hs(&with(claims(), "iss", json!("https://evil"))),
    );
    assert_eq!(err, TokenError::WrongIssuer("\"https://evil\"".into()));
    let err = token_error(&authenticator, &hs(&without(claims(), "iss")));
    assert_eq!(err, TokenError::MissingClaim("iss".into()));
    let err = token_error(&authenticator, &hs(&without(claims(), "exp")));
    assert_eq!(err, TokenError::MissingClaim("exp".into()));
}

#[test]
fn without_configured_audiences_aud_is_not_checked() {
    let setup = Setup::new();
    let mut config = setup.jwt_only();
    let jwt = config.jwt.as_mut().expect("jwt");
    jwt.audiences.clear();
    jwt.issuer = None;
    let authenticator = Authenticator::new(&config).expect("valid");
    let token = hs(&with(without(claims(), "iss"), "aud", json!("anything")));
    assert!(bearer(&authenticator, &token).is_ok());
    assert!(bearer(&authenticator, &hs(&without(claims(), "aud"))).is_ok());
}

#[test]
fn a_token_signed_with_another_key_is_refused() {
    let authenticator = Setup::new().authenticator();
    let other = EncodingKey::from_rsa_pem(&fixture_bytes("other-rsa-private.pem")).expect("key");
    let token = sign(Algorithm::RS256, Some("rsa"), &claims(), &other);
    assert_eq!(
        token_error(&authenticator, &token),
        TokenError::BadSignature
    );
    let wrong_secret = EncodingKey::from_secret(&[7; 40]).expect("key");
    let token = sign(Algorithm::HS256, Some("hs"), &claims(), &wrong_secret);
    assert_eq!(
        token_error(&authenticator, &token),
        TokenError::BadSignature
    );
    // A valid RS256 token presented under the EC key's kid.
    let rsa = EncodingKey::from_rsa_pem(&fixture_bytes("rsa-private.pem")).expect("key");
    let token = sign(Algorithm::RS256, Some("ec"), &claims(), &rsa);
    assert!(matches!(
        token_error(&authenticator, &token),
        TokenError::WrongAlgorithm {
            key: JwtAlgorithm::Es256,
            token: JwtAlgorithm::Rs256
        }
    ));
}

#[test]
fn an_unknown_kid_is_refused_and_a_missing_one_needs_a_key_without_id() {
    let authenticator = Setup::new().authenticator();
    let key = EncodingKey::from_secret(SECRET).expect("key");
    let token = sign(Algorithm::HS256, Some("retired"), &claims(), &key);
    assert_eq!(
        token_error(&authenticator, &token),
        TokenError::UnknownKey("retired".into())
    );
    let token = sign(Algorithm::HS256, None, &claims(), &key);
    assert_eq!(token_error(&authenticator, &token), TokenError::NoKid);
}

#[test]
fn unsigned_tokens_are_refused() {
    let authenticator = Setup::new().authenticator();
    let payload = b64(&claims().to_string());
    for alg in ["none", "None", "NONE"] {
        let header = b64(&format!(r#"{{"alg":"{alg}","kid":"hs"}}"#));
        for signature in ["", "c2ln"] {
            let token = format!("{header}.{payload}.{signature}");
            assert_eq!(
                token_error(&authenticator, &token),
                TokenError::Unsigned,
                "{token}"
            );
        }
    }
    let header = b64(r#"{"alg":"HS512","kid":"hs"}"#);
    let token = format!("{header}.{payload}.c2ln");
    assert_eq!(
        token_error(&authenticator, &token),
        TokenError::UnsupportedAlgorithm("HS512".into())
    );
}

#[test]
fn an_rsa_public_key_used_as_an_hmac_secret_is_refused() {
    let setup = Setup::new();
    let public_pem = fixture_bytes("rsa-public.pem");
    let forged_key = EncodingKey::from_secret(&public_pem).expect("key");
    // With the RSA key's kid...
    let forged = sign(Algorithm::HS256, Some("rsa"), &claims(), &forged_key);
    let err = token_error(&setup.authenticator(), &forged);
    assert_eq!(
        err,
        TokenError::WrongAlgorithm {
            key: JwtAlgorithm::Rs256,
            token: JwtAlgorithm::Hs256
        }
    );
    assert_eq!(
        err.to_string(),
        "the token is signed HS256, but its key accepts only RS256"
    );
    // ...and without a kid, against an RSA key without an id.
    let mut config = setup.jwt_only();
    let jwt = config.jwt.as_mut().expect("jwt");
    jwt.keys = vec![JwtKey {
        id: None,
        algorithm: JwtAlgorithm::Rs256,
        file: fixture("rsa-public.pem").display().to_string(),
    }];
    let authenticator = Authenticator::new(&config).expect("valid");
    let forged = sign(Algorithm::HS256, None, &claims(), &forged_key);
    assert!(matches!(
        token_error(&authenticator, &forged),
        TokenError::WrongAlgorithm { .. }
    ));
    let genuine = EncodingKey::from_rsa_pem(&fixture_bytes("rsa-private.pem")).expect("key");
    let token = sign(Algorithm::RS256, None, &claims(), &genuine);
    assert_eq!(
        bearer(&authenticator, &token).expect("valid").tenant(),
        "team-a"
    );
}

#[test]
fn keys_without_id_are_tried_in_turn() {
    let setup = Setup::new();
    let mut config = setup.jwt_only();
    let jwt = config.jwt.as_mut().expect("jwt");
    for key in &mut jwt.keys {
        key.id = None;
    }
    jwt.keys.insert(
        0,
        JwtKey {
            id: None,
            algorithm: JwtAlgorithm::Rs256,
            file: fixture("other-rsa-public.pem").display().to_string(),
        },
    );
    let authenticator = Authenticator::new(&config).expect("valid");
    let rsa = EncodingKey::from_rsa_pem(&fixture_bytes("rsa-private.pem")).expect("key");
    let token = sign(Algorithm::RS256, None, &claims(), &rsa);
    assert!(
        bearer(&authenticator, &token).is_ok(),
        "the second RS256 key matches"
    );
    let other = EncodingKey::from_rsa_pem(&fixture_bytes("other-rsa-private.pem")).expect("key");
    let expired = with(claims(), "exp", json!(now() - 600));
    let token = sign(Algorithm::RS256, None, &expired, &other);
    assert!(matches!(
        token_error(&authenticator, &token),
        TokenError::Expired(_)
    ));
}

#[test]
fn malformed_tokens_are_refused_as_such() {
    let setup = Setup::new();
    let jwt_only = Authenticator::new(&setup.jwt_only()).expect("valid");
    let payload = b64(&claims().to_string());
    let header = b64(r#"{"alg":"HS256","kid":"hs"}"#);
    let cases = [
        // Two parts: not JWT-shaped, and there are no API keys to try.
        (format!("{header}.{payload}"), "three dot-separated"),
        // Bad base64 (a 1-character group cannot be).
        (format!("e.{payload}.c2ln"), "the header is not base64url"),
        // A header that is not JSON.
        (
            format!("{}.{payload}.c2ln", b64("{not json")),
            "the header is not a JSON object",
        ),
        (
            format!("{}.{payload}.c2ln", b64(r#"{"kid":"hs"}"#)),
            "the header is not a JSON object",
        ),
        (format!("{header}.{payload}.c2ln!"), "three dot-separated"),
    ];
    for (token, message) in cases {
        let err = token_error(&jwt_only, &token);
        assert!(matches!(&err, TokenError::Malformed(_)), "{token}: {err:?}");
        assert!(err.to_string().contains(message), "{token}: {err}");
    }
    // Claims that are not JSON, under a valid signature.
    let bad_payload = b64("not json");
    let message = format!("{header}.{bad_payload}");
    let key = EncodingKey::from_secret(SECRET).expect("key");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
    let err = token_error(&jwt_only, &format!("{message}.{signature}"));
    assert_eq!(
        err,
        TokenError::Malformed("the claims are not a JSON object".into())
    );
    // With API keys configured too, a token that is not JWT-shaped is an API key.
    assert_eq!(
        bearer(&setup.authenticator(), &format!("{header}.{payload}")),
        Err(AuthError::UnknownKey)
    );
}

#[test]
fn a_valid_token_without_a_usable_tenant_is_forbidden() {
    let authenticator = Setup::new().authenticator();
    let cases = [
        (without(claims(), "tenant"), "no \"tenant\" claim"),
        (
            with(claims(), "tenant", json!("Team A")),
            "is not a tenant name",
        ),
        (
            with(claims(), "tenant", json!("-x")),
            "is not a tenant name",
        ),
        (with(claims(), "tenant", json!(7)), "not a string"),
        (with(claims(), "tenant", Value::Null), "no \"tenant\" claim"),
    ];
    for (claims, message) in cases {
        let err = bearer(&authenticator, &rs(&claims)).expect_err("forbidden");
        assert!(
            matches!(&err, AuthError::Forbidden(m) if m.contains(message)),
            "{err:?}"
        );
        assert!(matches!(InferError::from(err), InferError::Forbidden(_)));
    }
}

#[test]
fn a_custom_tenant_claim_is_read() {
    let setup = Setup::new();
    let mut config = setup.jwt_only();
    config.jwt.as_mut().expect("jwt").tenant_claim = "org".into();
    let authenticator = Authenticator::new(&config).expect("valid");
    let token = hs(&with(without(claims(), "tenant"), "org", json!("team-c")));
    assert_eq!(
        bearer(&authenticator, &token).expect("valid").tenant(),
        "team-c"
    );
    assert!(matches!(
        bearer(&authenticator, &hs(&claims())),
        Err(AuthError::Forbidden(_))
    ));
}

#[test]
fn api_keys_come_as_bearer_or_x_api_key() {
    let authenticator = Setup::new().authenticator();
    let identity = bearer(&authenticator, "sk-alpha-key").expect("known key");
    assert_eq!(identity.tenant(), "team-a");
    assert_eq!(identity.credential(), Credential::ApiKey);
    let identity = authenticator
        .authenticate(&headers(&[("x-api-key", "sk-beta-key")]))
        .expect("known key");
    assert_eq!(identity.tenant(), "team-b");
    let lower = authenticator
        .authenticate(&headers(&[("authorization", "bearer sk-alpha-key")]))
        .expect("the scheme is case-insensitive");
    assert_eq!(lower.tenant(), "team-a");
    // Authorization wins over x-api-key.
    let both = headers(&[
        ("authorization", "Bearer sk-alpha-key"),
        ("x-api-key", "sk-beta-key"),
    ]);
    assert_eq!(
        authenticator.authenticate(&both).expect("valid").tenant(),
        "team-a"
    );
}

#[test]
fn bad_credentials_are_401s_that_never_echo_the_key() {
    let authenticator = Setup::new().authenticator();
    let refused = |pairs: &[(&str, &str)]| {
        authenticator
            .authenticate(&headers(pairs))
            .expect_err("refused")
    };
    let unknown = refused(&[("authorization", "Bearer sk-guess")]);
    assert_eq!(unknown, AuthError::UnknownKey);
    assert!(!unknown.to_string().contains("sk-guess"));
    assert_eq!(refused(&[("x-api-key", "sk-guess")]), AuthError::UnknownKey);
    assert_eq!(
        refused(&[("authorization", "Basic dXNlcjpwYXNz")]),
        AuthError::Scheme("Basic".into())
    );
    assert!(matches!(
        refused(&[("authorization", "Bearer ")]),
        AuthError::Malformed(_)
    ));
    assert!(matches!(
        refused(&[("x-api-key", " ")]),
        AuthError::Malformed(_)
    ));
    let mut raw = HeaderMap::new();
    raw.insert(
        "authorization",
        HeaderValue::from_bytes(b"Bearer sk-\xffkey").expect("opaque value"),
    );
    assert!(matches!(
        authenticator.authenticate(&Attributes::new(raw)),
        Err(AuthError::Malformed(_))
    ));
    let missing = refused(&[]);
    assert_eq!(missing, AuthError::Missing);
    assert_eq!(
        missing.to_string(),
        "missing credentials: send Authorization: Bearer <api key or JWT>"
    );
}

#[test]
fn refusals_map_to_401_with_the_right_challenge_or_403() {
    let challenge = |err: AuthError| InferError::from(err).challenge();
    assert_eq!(
        challenge(AuthError::Missing),
        Some(crate::error::BEARER_CHALLENGE)
    );
    assert_eq!(
        challenge(AuthError::Scheme("Basic".into())),
        Some(crate::error::BEARER_CHALLENGE)
    );
    assert_eq!(
        challenge(AuthError::UnknownKey),
        Some(crate::error::INVALID_TOKEN_CHALLENGE)
    );
    assert_eq!(
        challenge(TokenError::BadSignature.into()),
        Some(crate::error::INVALID_TOKEN_CHALLENGE)
    );
    assert_eq!(challenge(AuthError::Forbidden("x".into())), None);
    assert_eq!(AuthError::UnknownKey.reason(), "unknown_api_key");
    assert_eq!(
        AuthError::from(TokenError::Expired(String::new())).reason(),
        "expired"
    );
}

#[test]
fn anonymous_requests_follow_the_config() {
    // Nothing configured: anonymous, and credentials (OpenAI clients always send one)
    // are not checked.
    let open = Authenticator::new(&IdentityConfig::default()).expect("valid");
    for pairs in [vec![], vec![("authorization", "Bearer EMPTY")]] {
        let identity = open.authenticate(&headers(&pairs)).expect("anonymous");
        assert_eq!(identity.tenant(), "anonymous");
        assert_eq!(identity.credential(), Credential::Anonymous);
    }
    let setup = Setup::new();
    // Credentials configured: refused unless allowed.
    let closed = setup.authenticator();
    assert_eq!(closed.authenticate(&headers(&[])), Err(AuthError::Missing));
    let config = IdentityConfig {
        allow_anonymous: Some(true),
        anonymous_tenant: Some("guests".into()),
        ..setup.config()
    };
    let allowed = Authenticator::new(&config).expect("valid");
    let identity = allowed.authenticate(&headers(&[])).expect("anonymous");
    assert_eq!(identity.tenant(), "guests");
    // Presented credentials are still checked.
    assert_eq!(bearer(&allowed, "sk-guess"), Err(AuthError::UnknownKey));
    assert_eq!(
        bearer(&allowed, "sk-alpha-key").expect("key").tenant(),
        "team-a"
    );
    // Nothing configured but anonymous refused: every request is refused.
    let config = IdentityConfig {
        allow_anonymous: Some(false),
        ..IdentityConfig::default()
    };
    let refused = Authenticator::new(&config).expect("valid");
    assert_eq!(refused.authenticate(&headers(&[])), Err(AuthError::Missing));
}

fn gateway(trust_headers: bool) -> GatewayConfig {
    GatewayConfig {
        trust_headers,
        objectives: BTreeMap::from([("critical".to_owned(), 5)]),
        tenant: Some("via-gateway".to_owned()),
    }
}

#[test]
fn trusted_gateway_headers_set_fairness_key_and_band() {
    let setup = Setup::new();
    let config = IdentityConfig {
        allow_anonymous: Some(true),
        gateway: Some(gateway(true)),
        ..setup.config()
    };
    let authenticator = Authenticator::new(&config).expect("valid");
    let gated = [
        (FAIRNESS_ID_HEADER, "flow-9"),
        (OBJECTIVE_HEADER, "critical"),
    ];
    let mut pairs = gated.to_vec();
    pairs.push(("x-api-key", "sk-alpha-key"));
    let identity = authenticator.authenticate(&headers(&pairs)).expect("valid");
    assert_eq!(identity.tenant(), "team-a");
    assert_eq!(identity.fairness_key(), "flow-9");
    assert_eq!(identity.band(), Some(5));
    // No credentials, a fairness id: the gateway's tenant.
    let identity = authenticator
        .authenticate(&headers(&gated))
        .expect("anonymous");
    assert_eq!(identity.tenant(), "via-gateway");
    assert_eq!(identity.fairness_key(), "flow-9");
    // No credentials, no fairness id: the anonymous tenant.
    let objective_only = headers(&[(OBJECTIVE_HEADER, "batch")]);
    let identity = authenticator
        .authenticate(&objective_only)
        .expect("anonymous");
    assert_eq!(identity.tenant(), "anonymous");
    assert_eq!(identity.band(), Some(0), "an unknown objective is band 0");
    // The gateway's headers do not stand in for credentials.
    let closed = IdentityConfig {
        gateway: Some(gateway(true)),
        ..setup.config()
    };
    let closed = Authenticator::new(&closed).expect("valid");
    assert_eq!(
        closed.authenticate(&headers(&gated)),
        Err(AuthError::Missing)
    );
}

#[test]
fn untrusted_gateway_headers_are_ignored() {
    let setup = Setup::new();
    let config = IdentityConfig {
        allow_anonymous: Some(true),
        gateway: Some(gateway(false)),
        ..setup.config()
    };
    let authenticator = Authenticator::new(&config).expect("valid");
    let pairs = [
        (FAIRNESS_ID_HEADER, "flow-9"),
        (OBJECTIVE_HEADER, "critical"),
        ("x-api-key", "sk-alpha-key"),
    ];
    let identity = authenticator.authenticate(&headers(&pairs)).expect("valid");
    assert_eq!(identity.fairness_key(), "team-a");
    assert_eq!(identity.band(), None);
    let identity = authenticator
        .authenticate(&headers(&pairs[..2]))
        .expect("anonymous");
    assert_eq!(identity.tenant(), "anonymous", "not the gateway's tenant");
}

#[test]
fn unusable_keys_and_files_are_errors_naming_the_file() {
    let setup = Setup::new();
    let error = |config: &IdentityConfig| {
        Authenticator::new(config)
            .err()
            .map(|err| err.to_string())
            .expect("refused")
    };
    let with_key = |algorithm, file: String| {
        let mut config = setup.jwt_only();
        config.jwt.as_mut().expect("jwt").keys[0] = JwtKey {
            id: Some("k".into()),
            algorithm,
            file,
        };
        config
    };
    std::fs::write(setup.path("short"), "too-short-secret\n").expect("write");
    let message = error(&with_key(JwtAlgorithm::Hs256, setup.path("short")));
    assert!(message.starts_with("identity.jwt.keys[0] ("), "{message}");
    assert!(
        message.contains("short") && message.contains("at least 32 bytes"),
        "{message}"
    );
    assert!(
        !message.contains("too-short-secret"),
        "the secret leaked: {message}"
    );
    let ec = fixture("ec-public.pem").display().to_string();
    let message = error(&with_key(JwtAlgorithm::Rs256, ec.clone()));
    assert!(
        message.contains("ec-public.pem") && message.contains("RS256"),
        "{message}"
    );
    let rsa = fixture("rsa-public.pem").display().to_string();
    let message = error(&with_key(JwtAlgorithm::Es256, rsa));
    assert!(message.contains("ES256"), "{message}");
    let message = error(&with_key(JwtAlgorithm::Es256, setup.path("secret")));
    assert!(message.contains("not a ES256 key"), "{message}");
    let message = error(&with_key(JwtAlgorithm::Rs256, setup.path("missing.pem")));
    assert!(
        message.starts_with("cannot read JWT key file "),
        "{message}"
    );
    assert!(message.contains("missing.pem"), "{message}");

    let mut twice = setup.jwt_only();
    let keys = &mut twice.jwt.as_mut().expect("jwt").keys;
    keys[1].id = Some("hs".into());
    assert!(error(&twice).contains("the key id \"hs\" is used twice"));

    let mut keys = setup.config();
    keys.api_keys = Some(ApiKeysConfig {
        file: setup.path("nope"),
    });
    assert!(error(&keys).starts_with("cannot read API keys file "));
    std::fs::write(setup.path("bad-keys"), "team-a:k1\nbroken\n").expect("write");
    keys.api_keys = Some(ApiKeysConfig {
        file: setup.path("bad-keys"),
    });
    assert_eq!(
        error(&keys),
        format!("{}:2: expected <tenant>:<key>", setup.path("bad-keys"))
    );

    let mut gateway_tenant = setup.config();
    gateway_tenant.gateway = Some(GatewayConfig {
        tenant: Some("Not A Tenant".into()),
        ..GatewayConfig::default()
    });
    assert!(error(&gateway_tenant).starts_with("identity.gateway.tenant: "));
}

#[test]
fn rfc3339_formats_unix_times() {
    assert_eq!(jwt::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(jwt::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(jwt::rfc3339(1_796_295_705), "2026-12-03T11:01:45Z");
    assert_eq!(jwt::rfc3339(-1), "1969-12-31T23:59:59Z");
}

#[tokio::test]
async fn the_watch_swaps_in_changed_keys_and_keeps_serving_through_a_bad_file() {
    let setup = Setup::new();
    let config = setup.config();
    let state = AppState::new();
    state
        .authenticator
        .store(Arc::new(Authenticator::new(&config).expect("valid")));
    let mut watch = Watch::new(&config, &state.authenticator.load());
    let tenant_of = |key: &str| {
        state
            .authenticator
            .load()
            .authenticate(&headers(&[("x-api-key", key)]))
            .map(|identity| identity.tenant().to_owned())
    };

    let before = state.authenticator.load_full();
    watch.pass(&config, &state).await;
    assert!(
        Arc::ptr_eq(&before, &state.authenticator.load_full()),
        "nothing changed: nothing rebuilt"
    );

    // The Secret is updated the way the kubelet does it: a new file swapped in.
    let replace = |text: &str| {
        let staged = setup.path("keys.new");
        std::fs::write(&staged, text).expect("write");
        std::fs::rename(&staged, setup.path("keys")).expect("swap");
    };
    replace("team-a:sk-alpha-key\nteam-c:sk-gamma-key\n");
    watch.pass(&config, &state).await;
    assert_eq!(tenant_of("sk-gamma-key").as_deref(), Ok("team-c"));
    assert_eq!(
        tenant_of("sk-beta-key"),
        Err(AuthError::UnknownKey),
        "removed"
    );

    replace("team-a sk-alpha-key\n");
    watch.pass(&config, &state).await;
    watch.pass(&config, &state).await;
    assert_eq!(
        tenant_of("sk-gamma-key").as_deref(),
        Ok("team-c"),
        "the old keys serve"
    );
    let text = state.metrics.encode();
    assert!(
        text.contains("modelplane_identity_reload_failures_total 1"),
        "counted once: {text}"
    );

    replace("team-d:sk-delta-key\n");
    watch.pass(&config, &state).await;
    assert_eq!(tenant_of("sk-delta-key").as_deref(), Ok("team-d"));

    // A config change rebuilds too, with the same files.
    let open = IdentityConfig {
        allow_anonymous: Some(true),
        ..config.clone()
    };
    watch.pass(&open, &state).await;
    let anonymous = state.authenticator.load().authenticate(&headers(&[]));
    assert_eq!(anonymous.expect("allowed").tenant(), "anonymous");
}

#[test]
fn a_refused_request_is_counted_by_reason_and_never_routed() {
    let setup = Setup::new();
    let state = AppState::new();
    state.authenticator.store(Arc::new(setup.authenticator()));
    let context = |pairs: &[(&str, &str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        RequestContext::new(
            Protocol::Rest,
            "no-such-model",
            None,
            map,
            std::time::Instant::now(),
        )
        .expect("context")
    };
    let err = authenticate(&state, context(&[])).expect_err("refused");
    assert!(matches!(
        err,
        InferError::Unauthenticated {
            invalid_token: false,
            ..
        }
    ));
    let err = authenticate(&state, context(&[("x-api-key", "sk-guess")])).expect_err("refused");
    assert!(matches!(
        err,
        InferError::Unauthenticated {
            invalid_token: true,
            ..
        }
    ));
    let ctx = authenticate(&state, context(&[("x-api-key", "sk-beta-key")])).expect("valid");
    assert_eq!(ctx.identity.tenant(), "team-b");
    // Through the whole path: 401 before routing, so not a 404 for the unknown model.
    let Err(err) = crate::serve::start(&state, context(&[])) else {
        panic!("refused");
    };
    assert_eq!(err.metric_label(), "unauthenticated");
    let text = state.metrics.encode();
    assert!(
        text.contains(r#"modelplane_auth_failures_total{reason="missing_credentials"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"modelplane_auth_failures_total{reason="unknown_api_key"} 1"#),
        "{text}"
    );
}
