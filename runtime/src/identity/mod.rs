//! Identity: who sent a request, and which tenant it is charged to.
//!
//! An [`Authenticator`] is built from `identity` of the config ([`IdentityConfig`]) and
//! the files it names; the request path calls [`authenticate`] once, first (before
//! routing, so an unauthenticated request for an unknown model is a 401, not a 404).
//!
//! - Credentials: `Authorization: Bearer <token>` (what OpenAI clients send) or
//!   `x-api-key: <key>`; `Authorization` wins when both are sent. A Bearer token of
//!   JWT shape (three dot-separated base64url parts) is verified as a JWT when `jwt` is
//!   configured ([`jwt`]); any other token, and every `x-api-key`, is looked up among
//!   the API keys ([`api_keys`]).
//! - No credentials: served when `anonymous_allowed()`, charged to the anonymous
//!   tenant (or to `gateway.tenant` when a trusted gateway sent a fairness id).
//!   A runtime with neither API keys nor JWT keys has nothing to check credentials
//!   against: it ignores them and serves the request as anonymous.
//! - A trusted gateway's headers ([`gateway`]) add the fairness key and band.
//!
//! Outcomes: no or refused credentials → 401 with a `WWW-Authenticate: Bearer`
//! challenge; valid credentials without a usable tenant → 403. Refusals are counted
//! in `modelplane_auth_failures_total{reason}` (they have no version to count under).
//! Credentials are never logged or echoed.
//!
//! The files are re-read on every watch pass of the reloader ([`Watch`]); when their
//! content or the identity config changed, a new authenticator replaces the serving
//! one, and a failed rebuild keeps the serving one.

mod api_keys;
mod gateway;
mod jwt;
mod watch;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use modelplane_config::{IdentityConfig, JwtAlgorithm, is_tenant_name};
use sha2::{Digest, Sha256};

pub use gateway::{FAIRNESS_ID_HEADER, MAX_FAIRNESS_ID, OBJECTIVE_HEADER};
pub use jwt::MIN_HS256_SECRET;
pub use watch::Watch;

use crate::error::InferError;
use crate::serve::{Attributes, Credential, Identity, RequestContext};
use crate::server::AppState;
use api_keys::ApiKeys;
use gateway::Gateway;
use jwt::JwtVerifier;

/// The header an API key may come in instead of `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Why an identity config cannot be used: names the file (and line), never a secret.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file the config names cannot be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// Which file it is (`API keys file`, `JWT key file`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the API keys file is malformed.
    #[error("{}:{line}: {message}", path.display())]
    KeysFile {
        /// The keys file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A JWT key cannot be used.
    #[error("identity.jwt.keys[{index}] ({}): {message}", path.display())]
    JwtKey {
        /// The key's position in `identity.jwt.keys`.
        index: usize,
        /// Its file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A field of `identity` is invalid.
    #[error("identity.{field}: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// Why a JWT was refused (a 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a decodable JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg: none`.
    #[error("unsigned tokens (alg \"none\") are refused")]
    Unsigned,
    /// An `alg` no key could accept.
    #[error("token algorithm {0:?} is not accepted (HS256, RS256 or ES256, as its key says)")]
    UnsupportedAlgorithm(String),
    /// A `kid` no configured key has.
    #[error("no key has the token's kid {0:?}")]
    UnknownKey(String),
    /// No `kid`, and every configured key has an id.
    #[error("the token has no kid, and every configured key has an id")]
    NoKid,
    /// The header's `alg` is not the one its key accepts.
    #[error("the token is signed {}, but its key accepts only {}", jwt::algorithm_name(*token), jwt::algorithm_name(*key))]
    WrongAlgorithm {
        /// The key's algorithm.
        key: JwtAlgorithm,
        /// The token's.
        token: JwtAlgorithm,
    },
    /// The signature does not match.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` (plus the leeway) has passed.
    #[error("token expired at {0}")]
    Expired(String),
    /// `nbf` (less the leeway) is still ahead.
    #[error("token not valid before {0}")]
    NotYetValid(String),
    /// `aud` names none of the configured audiences.
    #[error("wrong audience {0}: not one this runtime accepts")]
    WrongAudience(String),
    /// `iss` is not the configured issuer.
    #[error("wrong issuer {0}")]
    WrongIssuer(String),
    /// A required claim (`exp`, and `iss`/`aud` when configured) is missing.
    #[error("the token has no {0:?} claim")]
    MissingClaim(String),
}

impl TokenError {
    /// The `reason` label of the failure counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_token",
            Self::Unsigned => "unsigned_token",
            Self::UnsupportedAlgorithm(_) | Self::WrongAlgorithm { .. } => "wrong_algorithm",
            Self::UnknownKey(_) | Self::NoKid => "unknown_key_id",
            Self::BadSignature => "bad_signature",
            Self::Expired(_) => "expired",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::WrongAudience(_) => "wrong_audience",
            Self::WrongIssuer(_) => "wrong_issuer",
            Self::MissingClaim(_) => "missing_claim",
        }
    }
}

/// Why a request was refused by identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, and anonymous requests are not served (401).
    #[error("missing credentials: send Authorization: Bearer <api key or JWT>")]
    Missing,
    /// `Authorization` with another scheme than Bearer (401).
    #[error("unsupported Authorization scheme {0:?}: send Authorization: Bearer <api key or JWT>")]
    Scheme(String),
    /// Credentials that cannot be read (401).
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    /// An API key that is not in the keys file (401).
    #[error("unknown API key")]
    UnknownKey,
    /// A refused JWT (401).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Valid credentials that name no usable tenant (403).
    #[error("{0}")]
    Forbidden(String),
}

impl AuthError {
    /// The `reason` label of `modelplane_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing_credentials",
            Self::Scheme(_) => "unsupported_scheme",
            Self::Malformed(_) => "malformed_credentials",
            Self::UnknownKey => "unknown_api_key",
            Self::Token(token) => token.reason(),
            Self::Forbidden(_) => "forbidden",
        }
    }
}

impl From<AuthError> for InferError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Forbidden(message) => Self::Forbidden(message),
            // RFC 6750 §3.1: no error code when no (usable) credentials came at all.
            AuthError::Missing | AuthError::Scheme(_) => Self::Unauthenticated {
                message: err.to_string(),
                invalid_token: false,
            },
            AuthError::Malformed(_) | AuthError::UnknownKey | AuthError::Token(_) => {
                Self::Unauthenticated {
                    message: err.to_string(),
                    invalid_token: true,
                }
            }
        }
    }
}

/// A digest of the identity files as read (names and contents): what the watch
/// compares to notice a changed Secret.
pub type Fingerprint = [u8; 32];

/// The files an identity config names, read once, and their [`Fingerprint`].
pub struct Files {
    contents: Vec<(&'static str, PathBuf, std::io::Result<Vec<u8>>)>,
    fingerprint: Fingerprint,
}

impl Files {
    /// Reads the API keys file and the JWT key files of `config` (blocking), in that
    /// order; a file that cannot be read is kept as its error.
    pub fn read(config: &IdentityConfig) -> Self {
        let mut paths: Vec<(&'static str, &str)> = Vec::new();
        if let Some(keys) = &config.api_keys {
            paths.push(("API keys file", &keys.file));
        }
        if let Some(jwt) = &config.jwt {
            paths.extend(
                jwt.keys
                    .iter()
                    .map(|key| ("JWT key file", key.file.as_str())),
            );
        }
        let mut hasher = Sha256::new();
        let contents = paths
            .into_iter()
            .map(|(what, path)| {
                let path = PathBuf::from(path);
                let content = std::fs::read(&path);
                hasher.update(path.as_os_str().as_encoded_bytes());
                match &content {
                    Ok(bytes) => {
                        hasher.update([1]);
                        hasher.update((bytes.len() as u64).to_le_bytes());
                        hasher.update(bytes);
                    }
                    Err(err) => {
                        hasher.update([2]);
                        hasher.update(err.kind().to_string());
                    }
                }
                (what, path, content)
            })
            .collect();
        Self {
            contents,
            fingerprint: hasher.finalize().into(),
        }
    }

    /// The digest of what was read.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    fn take(
        contents: &mut std::vec::IntoIter<(&'static str, PathBuf, std::io::Result<Vec<u8>>)>,
    ) -> Result<(PathBuf, Vec<u8>), IdentityError> {
        let Some((what, path, content)) = contents.next() else {
            return Err(IdentityError::Config {
                field: "keys",
                message: "the files changed while they were read".to_owned(),
            });
        };
        match content {
            Ok(bytes) => Ok((path, bytes)),
            Err(source) => Err(IdentityError::Read { what, path, source }),
        }
    }
}

/// Maps a request's headers to its [`Identity`]; built from one identity config and
/// the files it names, replaced as a whole when either changes.
pub struct Authenticator {
    /// The tenant of anonymous requests; `None`: they are refused.
    anonymous: Option<Arc<str>>,
    /// The tenant of anonymous requests that came with a trusted fairness id.
    gateway_tenant: Option<Arc<str>>,
    api_keys: Option<ApiKeys>,
    jwt: Option<JwtVerifier>,
    /// Present only when the gateway's headers are trusted.
    gateway: Option<Gateway>,
    fingerprint: Fingerprint,
}

impl Default for Authenticator {
    /// No credentials configured: every request is the anonymous tenant's.
    fn default() -> Self {
        Self {
            anonymous: Some(Arc::from(modelplane_config::ANONYMOUS_TENANT)),
            gateway_tenant: None,
            api_keys: None,
            jwt: None,
            gateway: None,
            fingerprint: Files::read(&IdentityConfig::default()).fingerprint,
        }
    }
}

/// What a request presented.
enum Presented<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `x-api-key: <key>`.
    ApiKey(&'a str),
}

impl Authenticator {
    /// Reads the files `config` names (blocking) and builds its authenticator.
    pub fn new(config: &IdentityConfig) -> Result<Self, IdentityError> {
        Self::from_files(config, Files::read(config))
    }

    /// Builds the authenticator of `config` from its files as already read.
    pub fn from_files(config: &IdentityConfig, files: Files) -> Result<Self, IdentityError> {
        let tenant_field = |field: &'static str, tenant: &str| {
            if is_tenant_name(tenant) {
                Ok(Arc::<str>::from(tenant))
            } else {
                Err(IdentityError::Config {
                    field,
                    message: format!("{tenant:?} is not a tenant name"),
                })
            }
        };
        let anonymous_tenant = tenant_field("anonymousTenant", config.anonymous_tenant())?;
        let gateway_tenant = match config.gateway.as_ref().and_then(|g| g.tenant.as_deref()) {
            Some(tenant) => Some(tenant_field("gateway.tenant", tenant)?),
            None => None,
        };
        let fingerprint = files.fingerprint;
        let mut contents = files.contents.into_iter();
        let api_keys = match &config.api_keys {
            Some(_) => {
                let (path, bytes) = Files::take(&mut contents)?;
                Some(ApiKeys::parse(&path, &bytes)?)
            }
            None => None,
        };
        let jwt = match &config.jwt {
            Some(jwt) => {
                let bytes = jwt
                    .keys
                    .iter()
                    .map(|_| Files::take(&mut contents).map(|(_, bytes)| bytes))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(JwtVerifier::new(jwt, &bytes)?)
            }
            None => None,
        };
        Ok(Self {
            anonymous: config.anonymous_allowed().then_some(anonymous_tenant),
            gateway_tenant,
            api_keys,
            jwt,
            gateway: Gateway::new(config.gateway.as_ref()),
            fingerprint,
        })
    }

    /// The digest of the files it was built from.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// A one-line summary for the log (counts, never keys).
    pub fn summary(&self) -> String {
        format!(
            "API keys: {}, JWT keys: {}, anonymous: {}, gateway headers: {}",
            self.api_keys.as_ref().map_or(0, ApiKeys::len),
            self.jwt.as_ref().map_or(0, JwtVerifier::len),
            self.anonymous.as_deref().unwrap_or("refused"),
            if self.gateway.is_some() {
                "trusted"
            } else {
                "ignored"
            },
        )
    }

    /// The identity of a request with `attributes` (its headers).
    pub fn authenticate(&self, attributes: &Attributes) -> Result<Identity, AuthError> {
        let gateway = self
            .gateway
            .as_ref()
            .map(|gateway| gateway.read(attributes))
            .unwrap_or_default();
        let identity = match self.presented(attributes)? {
            Some(presented) => self.verify(presented)?,
            None => {
                let tenant = self.anonymous.as_ref().ok_or(AuthError::Missing)?;
                let tenant = match (&gateway.fairness_id, &self.gateway_tenant) {
                    (Some(_), Some(gateway_tenant)) => gateway_tenant,
                    _ => tenant,
                };
                Identity::anonymous(Arc::clone(tenant))
            }
        };
        Ok(identity.with_gateway(gateway.fairness_id, gateway.band))
    }

    /// The credentials of a request, when there are any to check.
    fn presented<'a>(
        &self,
        attributes: &'a Attributes,
    ) -> Result<Option<Presented<'a>>, AuthError> {
        if self.api_keys.is_none() && self.jwt.is_none() {
            return Ok(None);
        }
        let authorization = axum::http::header::AUTHORIZATION.as_str();
        if attributes.contains(authorization) {
            let value = attributes.get(authorization).ok_or(AuthError::Malformed(
                "the Authorization header is not visible ASCII",
            ))?;
            let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(AuthError::Scheme(scheme.chars().take(16).collect()));
            }
            let token = token.trim();
            if token.is_empty() {
                return Err(AuthError::Malformed("the Bearer token is empty"));
            }
            return Ok(Some(Presented::Bearer(token)));
        }
        if attributes.contains(API_KEY_HEADER) {
            let key = attributes
                .get(API_KEY_HEADER)
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .ok_or(AuthError::Malformed(
                    "the x-api-key header is empty or not visible ASCII",
                ))?;
            return Ok(Some(Presented::ApiKey(key)));
        }
        Ok(None)
    }

    fn verify(&self, presented: Presented<'_>) -> Result<Identity, AuthError> {
        let key = match presented {
            Presented::Bearer(token) => match &self.jwt {
                Some(jwt) if jwt::looks_like_jwt(token) => {
                    return Ok(Identity::new(Credential::Jwt, jwt.verify(token)?));
                }
                Some(_) if self.api_keys.is_none() => {
                    return Err(TokenError::Malformed(
                        "a JWT has three dot-separated base64url parts".to_owned(),
                    )
                    .into());
                }
                _ => token,
            },
            Presented::ApiKey(key) => key,
        };
        let tenant = self
            .api_keys
            .as_ref()
            .and_then(|keys| keys.find(key))
            .ok_or(AuthError::UnknownKey)?;
        Ok(Identity::new(Credential::ApiKey, tenant))
    }
}

/// Authenticates `ctx` with the state's current authenticator: the first step of the
/// request path. A refusal is counted in `modelplane_auth_failures_total{reason}` and
/// becomes a 401 ([`InferError::Unauthenticated`]) or 403 ([`InferError::Forbidden`]).
pub fn authenticate(
    state: &AppState,
    mut ctx: RequestContext,
) -> Result<RequestContext, InferError> {
    let authenticator = state.authenticator.load();
    match authenticator.authenticate(&ctx.attributes) {
        Ok(identity) => {
            ctx.span.record("tenant", identity.tenant());
            ctx.identity = identity;
            Ok(ctx)
        }
        Err(refused) => {
            let reason = refused.reason();
            state.metrics.auth_failed(reason);
            let err = InferError::from(refused);
            ctx.span.record("outcome", err.metric_label());
            tracing::debug!(parent: &ctx.span, reason, message = %err, "refused by identity");
            Err(err)
        }
    }
}

/// Authenticates a request that does not take the request path (model metadata,
/// `/v1/models`): the same decision and the same failure count, so that what a runtime
/// serves is not described to callers it would refuse. Health and readiness stay open
/// for probes.
pub fn require(state: &AppState, headers: &axum::http::HeaderMap) -> Result<Identity, InferError> {
    let attributes = Attributes::new(headers.clone());
    state
        .authenticator
        .load()
        .authenticate(&attributes)
        .map_err(|refused| {
            state.metrics.auth_failed(refused.reason());
            InferError::from(refused)
        })
}
