//! A minimal OCI distribution client: resolve tags, fetch manifests and blobs by digest.
//!
//! Everything fetched by digest is hashed and compared before it is returned, so a registry
//! (or anything between it and us) cannot substitute content.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::auth::{Challenge, DockerConfig};
use crate::digest::Digest;
use crate::manifest::{MANIFEST_ACCEPT, Manifest};
use crate::reference::Reference;

/// Largest manifest or signature payload read into memory (distribution's own manifest limit).
const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Credentials by registry (from imagePullSecrets / a named Secret).
    pub credentials: DockerConfig,
    /// Extra trusted CA certificates, PEM, for private registries.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Registries (`host:port`) spoken to over plain http. Meant for loopback test registries.
    pub insecure_registries: Vec<String>,
    /// Timeout of connecting, and of each read while a response streams in.
    pub request_timeout: Duration,
    /// `User-Agent` of every request, so that registry logs name the caller.
    pub user_agent: String,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            credentials: DockerConfig::default(),
            ca_bundle_pem: None,
            insecure_registries: Vec::new(),
            request_timeout: Duration::from_secs(30),
            user_agent: concat!("modelplane-verify/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached (connect, TLS, timeout): worth retrying.
    #[error("registry {registry} unreachable: {source}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered 429 or 5xx: worth retrying.
    #[error("registry {registry} answered {status} for {url}")]
    Unavailable {
        /// The registry host.
        registry: String,
        /// The URL requested.
        url: String,
        /// The status it answered.
        status: StatusCode,
    },
    /// The manifest or blob does not exist.
    #[error("{what} not found in {registry}")]
    NotFound {
        /// The registry host.
        registry: String,
        /// What was asked for.
        what: String,
    },
    /// The registry refused our credentials (or we had none).
    #[error("registry {registry} refused access: {detail}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// What went wrong.
        detail: String,
    },
    /// Content fetched by digest does not hash to that digest.
    #[error("{what}: content hashes to {actual}, expected {expected}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// A manifest is not valid JSON of the expected shape, or too large.
    #[error("invalid manifest or document {what}: {detail}")]
    InvalidDocument {
        /// What was fetched.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Any other unexpected status.
    #[error("registry {registry} answered {status} for {url}")]
    UnexpectedStatus {
        /// The registry host.
        registry: String,
        /// The URL requested.
        url: String,
        /// The status it answered.
        status: StatusCode,
    },
    /// The HTTP client could not be built (e.g. a CA bundle that is not PEM).
    #[error("cannot configure the registry client: {0}")]
    Config(String),
}

impl RegistryError {
    /// Whether trying again later may succeed (the registry was down or overloaded).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Unavailable { .. })
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// A client for the registries named by references; holds connections and bearer tokens.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    credentials: DockerConfig,
    insecure: HashSet<String>,
    /// `Authorization` header values by (registry, repository).
    auth_headers: Mutex<HashMap<(String, String), String>>,
}

impl RegistryClient {
    /// A client configured by `options`.
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryError> {
        // No total timeout: a multi-gigabyte model layer may stream for minutes; a stalled
        // connection is caught by the per-read timeout instead.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.request_timeout)
            .read_timeout(options.request_timeout)
            .user_agent(options.user_agent.as_str());
        if let Some(pem) = &options.ca_bundle_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RegistryError::Config(format!("CA bundle: {e}")))?;
            if certificates.is_empty() {
                return Err(RegistryError::Config(
                    "CA bundle holds no certificate".into(),
                ));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Config(e.to_string()))?;
        Ok(Self {
            http,
            credentials: options.credentials,
            insecure: options.insecure_registries.into_iter().collect(),
            auth_headers: Mutex::new(HashMap::new()),
        })
    }

    /// The digest of the manifest `reference` names now (its tag, or its digest if pinned).
    pub async fn resolve(&self, reference: &Reference) -> Result<Digest, RegistryError> {
        let what = reference.manifest_reference();
        let path = format!("manifests/{what}");
        let response = self
            .send(reference, Method::HEAD, &path, MANIFEST_ACCEPT)
            .await?;
        if let Some(digest) = content_digest(response.headers()) {
            return Ok(digest);
        }
        // Some registries omit Docker-Content-Digest on HEAD: hash the manifest itself.
        let response = self
            .send(reference, Method::GET, &path, MANIFEST_ACCEPT)
            .await?;
        let body = read_bounded(response, reference, &what).await?;
        Ok(Digest::of(&body))
    }

    /// The manifest with `digest` in `reference`'s repository, checked against the digest.
    pub async fn manifest(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Manifest, RegistryError> {
        let what = format!("manifest {digest}");
        let path = format!("manifests/{digest}");
        let response = self
            .send(reference, Method::GET, &path, MANIFEST_ACCEPT)
            .await?;
        let body = read_bounded(response, reference, &what).await?;
        check_digest(&what, digest, Digest::of(&body))?;
        parse_manifest(&what, &body)
    }

    /// The manifest at `tag` in `reference`'s repository and its digest, or `None` if no such tag.
    pub async fn manifest_at_tag(
        &self,
        reference: &Reference,
        tag: &str,
    ) -> Result<Option<(Digest, Manifest)>, RegistryError> {
        let what = format!("{}:{tag}", reference.repository());
        let path = format!("manifests/{tag}");
        let response = match self
            .send(reference, Method::GET, &path, MANIFEST_ACCEPT)
            .await
        {
            Ok(response) => response,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let announced = content_digest(response.headers());
        let body = read_bounded(response, reference, &what).await?;
        let actual = Digest::of(&body);
        if let Some(announced) = announced {
            check_digest(&what, &announced, actual.clone())?;
        }
        Ok(Some((actual, parse_manifest(&what, &body)?)))
    }

    /// A small blob (a signature payload), read whole and checked against its digest.
    pub async fn small_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest}");
        let path = format!("blobs/{digest}");
        let response = self.send(reference, Method::GET, &path, "*/*").await?;
        let body = read_bounded(response, reference, &what).await?;
        check_digest(&what, digest, Digest::of(&body))?;
        Ok(body)
    }

    /// Streams a blob of any size through sha256 without keeping it, and checks its digest.
    /// Returns the number of bytes read.
    pub async fn check_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<u64, RegistryError> {
        let what = format!("blob {digest}");
        let path = format!("blobs/{digest}");
        let mut response = self.send(reference, Method::GET, &path, "*/*").await?;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| unreachable(reference, source))?
        {
            total += chunk.len() as u64;
            hasher.update(&chunk);
        }
        check_digest(&what, digest, Digest::from_raw(hasher.finalize().into()))?;
        Ok(total)
    }

    /// Sends a request for `/v2/<repository>/<path>`, answering one auth challenge if needed.
    async fn send(
        &self,
        reference: &Reference,
        method: Method,
        path: &str,
        accept: &str,
    ) -> Result<Response, RegistryError> {
        let url = format!(
            "{}://{}/v2/{}/{path}",
            self.scheme(reference.registry()),
            reference.api_host(),
            reference.repository()
        );
        let key = (
            reference.registry().to_owned(),
            reference.repository().to_owned(),
        );
        let cached = self.cached_auth(&key);
        let response = self
            .request(reference, &method, &url, accept, cached.as_deref())
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return check_status(response, reference, &url);
        }
        let header = self.answer_challenge(reference, response.headers()).await?;
        let response = self
            .request(reference, &method, &url, accept, Some(&header))
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                registry: reference.registry().to_owned(),
                detail: "credentials refused".to_owned(),
            });
        }
        if let Ok(mut headers) = self.auth_headers.lock() {
            headers.insert(key, header);
        }
        check_status(response, reference, &url)
    }

    async fn request(
        &self,
        reference: &Reference,
        method: &Method,
        url: &str,
        accept: &str,
        authorization: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(ACCEPT, accept);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        tracing::debug!(%method, url, "registry request");
        request
            .send()
            .await
            .map_err(|source| unreachable(reference, source))
    }

    fn cached_auth(&self, key: &(String, String)) -> Option<String> {
        self.auth_headers.lock().ok()?.get(key).cloned()
    }

    fn scheme(&self, registry: &str) -> &'static str {
        if self.insecure.contains(registry) {
            "http"
        } else {
            "https"
        }
    }

    /// The `Authorization` header that answers a 401's `WWW-Authenticate` challenge.
    async fn answer_challenge(
        &self,
        reference: &Reference,
        headers: &HeaderMap,
    ) -> Result<String, RegistryError> {
        let unauthorized = |detail: String| RegistryError::Unauthorized {
            registry: reference.registry().to_owned(),
            detail,
        };
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
            .ok_or_else(|| unauthorized("401 without a usable WWW-Authenticate".to_owned()))?;
        let credentials = self.credentials.credentials_for(reference.registry());
        match challenge {
            Challenge::Basic => credentials
                .map(|c| c.basic_header())
                .ok_or_else(|| unauthorized("basic auth required and no credentials".to_owned())),
            Challenge::Bearer { realm, service, .. } => {
                let scope = format!("repository:{}:pull", reference.repository());
                let token = self
                    .fetch_token(reference, &realm, service.as_deref(), &scope)
                    .await?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// Docker/OCI token auth: GET `realm?service=..&scope=..`, with basic credentials if we have them.
    async fn fetch_token(
        &self,
        reference: &Reference,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let unauthorized = |detail: String| RegistryError::Unauthorized {
            registry: reference.registry().to_owned(),
            detail,
        };
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| unauthorized(format!("token realm {realm:?}: {e}")))?;
        let realm_host = url.host_str().unwrap_or_default().to_owned();
        let realm_authority = match url.port() {
            Some(port) => format!("{realm_host}:{port}"),
            None => realm_host,
        };
        if url.scheme() != "https" && !self.insecure.contains(&realm_authority) {
            return Err(unauthorized(format!(
                "refusing plain-http token realm {realm}"
            )));
        }
        url.query_pairs_mut().append_pair("scope", scope);
        if let Some(service) = service {
            url.query_pairs_mut().append_pair("service", service);
        }
        let mut request = self.http.get(url.clone());
        if let Some(credentials) = self.credentials.credentials_for(reference.registry()) {
            request = request.header(AUTHORIZATION, credentials.basic_header());
        }
        let response = request
            .send()
            .await
            .map_err(|source| unreachable(reference, source))?;
        let response = check_status(response, reference, url.as_str()).map_err(|e| match e {
            RegistryError::NotFound { .. } => {
                unauthorized(format!("token realm {realm} not found"))
            }
            other => other,
        })?;
        let body = read_bounded(response, reference, "token").await?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| unauthorized(format!("token response: {e}")))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("token response holds no token".to_owned()))
    }
}

fn unreachable(reference: &Reference, source: reqwest::Error) -> RegistryError {
    RegistryError::Unreachable {
        registry: reference.registry().to_owned(),
        source,
    }
}

fn check_status(
    response: Response,
    reference: &Reference,
    url: &str,
) -> Result<Response, RegistryError> {
    let status = response.status();
    let registry = reference.registry().to_owned();
    match status {
        s if s.is_success() => Ok(response),
        StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
            registry,
            what: url.rsplit_once("/v2/").map_or(url, |(_, p)| p).to_owned(),
        }),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RegistryError::Unauthorized {
            registry,
            detail: format!("{status} for {url}"),
        }),
        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
            Err(RegistryError::Unavailable {
                registry,
                url: url.to_owned(),
                status,
            })
        }
        _ => Err(RegistryError::UnexpectedStatus {
            registry,
            url: url.to_owned(),
            status,
        }),
    }
}

fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn check_digest(what: &str, expected: &Digest, actual: Digest) -> Result<(), RegistryError> {
    if *expected == actual {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch {
            what: what.to_owned(),
            expected: expected.clone(),
            actual,
        })
    }
}

fn parse_manifest(what: &str, body: &[u8]) -> Result<Manifest, RegistryError> {
    Manifest::from_json(body).map_err(|e| RegistryError::InvalidDocument {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

/// Reads a response body of at most [`MAX_DOCUMENT_BYTES`].
async fn read_bounded(
    mut response: Response,
    reference: &Reference,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| unreachable(reference, source))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(RegistryError::InvalidDocument {
                what: what.to_owned(),
                detail: format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
