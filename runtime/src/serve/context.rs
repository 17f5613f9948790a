//! What arrives with a request, built once at its edge: the [`RequestContext`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::AsHeaderName;
use modelplane_config::ANONYMOUS_TENANT;
use modelplane_config::units::parse_duration;

use crate::error::InferError;

/// The header a REST or OpenAI client sets to shorten its request's deadline
/// (`250ms`, `2s`, `1m`); gRPC clients send `grpc-timeout`. Either is capped by the
/// model's `limits.requestTimeout`.
pub const REQUEST_TIMEOUT_HEADER: &str = "x-request-timeout";

/// The edge a request came in on: a label on its span, never a branch on the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Open Inference Protocol v2 over REST (JSON or binary tensor data).
    Rest,
    /// Open Inference Protocol v2 over gRPC.
    Grpc,
    /// The OpenAI-compatible API.
    OpenAi,
}

impl Protocol {
    /// The protocol's name in logs and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::Grpc => "grpc",
            Self::OpenAi => "openai",
        }
    }
}

/// How a request proved who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// No credentials: served because the config allows anonymous requests.
    Anonymous,
    /// An API key from the keys file (`Authorization: Bearer` or `x-api-key`).
    ApiKey,
    /// A verified JSON Web Token.
    Jwt,
}

impl Credential {
    /// The credential's name in logs and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
        }
    }
}

/// Who sent a request: the tenant it is charged to, how it proved it, and what a
/// trusted gateway said about it. A context starts as the anonymous tenant's and is
/// authenticated once, at the start of the request path (`crate::identity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    tenant: Arc<str>,
    credential: Credential,
    fairness_id: Option<String>,
    band: Option<i32>,
}

impl Default for Identity {
    /// The anonymous tenant ([`ANONYMOUS_TENANT`]), before authentication.
    fn default() -> Self {
        Self::anonymous(Arc::from(ANONYMOUS_TENANT))
    }
}

impl Identity {
    /// A request without credentials, charged to `tenant`.
    pub fn anonymous(tenant: Arc<str>) -> Self {
        Self::new(Credential::Anonymous, tenant)
    }

    /// A request that proved with `credential` that it acts for `tenant`.
    pub fn new(credential: Credential, tenant: Arc<str>) -> Self {
        Self {
            tenant,
            credential,
            fairness_id: None,
            band: None,
        }
    }

    /// The same identity with what a trusted gateway's headers said: its fairness id
    /// and the band of its objective.
    #[must_use]
    pub fn with_gateway(mut self, fairness_id: Option<String>, band: Option<i32>) -> Self {
        self.fairness_id = fairness_id;
        self.band = band;
        self
    }

    /// The tenant the request is charged to (anonymous requests: the anonymous tenant).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The key fair queuing groups the request under: a trusted gateway's
    /// `x-gateway-inference-fairness-id`, else the tenant.
    pub fn fairness_key(&self) -> &str {
        self.fairness_id.as_deref().unwrap_or(&self.tenant)
    }

    /// The priority band of a trusted gateway's `x-gateway-inference-objective`
    /// (an objective the config does not name: band 0); `None`: the tenant's band.
    pub fn band(&self) -> Option<i32> {
        self.band
    }

    /// How the request proved who sent it.
    pub fn credential(&self) -> Credential {
        self.credential
    }
}

/// The request's headers (gRPC metadata included), which routing rules may match on
/// (a canary's header match, say).
#[derive(Clone, Debug, Default)]
pub struct Attributes(HeaderMap);

impl Attributes {
    /// The headers of a request.
    pub fn new(headers: HeaderMap) -> Self {
        Self(headers)
    }

    /// The value of a header (a `&str` name or a parsed `HeaderName`), when present and
    /// visible ASCII.
    pub fn get(&self, name: impl AsHeaderName) -> Option<&str> {
        self.0.get(name).and_then(|value| value.to_str().ok())
    }

    /// The raw bytes of a header's value, when present.
    pub fn bytes(&self, name: impl AsHeaderName) -> Option<&[u8]> {
        self.0.get(name).map(|value| value.as_bytes())
    }

    /// Whether the request has the header, readable or not.
    pub fn contains(&self, name: impl AsHeaderName) -> bool {
        self.0.contains_key(name)
    }
}

/// Everything the one request path needs to know about a request, built once at the
/// edge that parsed it and handed to [`super::start`].
///
/// Cancellation is the request's own future: when the client goes away the edge's
/// server drops it, and with it the path's guards, which release its admission,
/// record it as `cancelled` and take its work out of the queue or the batch.
#[derive(Debug)]
pub struct RequestContext {
    /// Where it came in.
    pub protocol: Protocol,
    /// The model it names.
    pub model: String,
    /// The version it names; `None`: whichever the route picks.
    pub version: Option<String>,
    /// Who sent it: the anonymous tenant until the path authenticates it.
    pub identity: Identity,
    /// What routing may match on.
    pub attributes: Attributes,
    /// When it arrived; its deadline and duration count from here.
    pub started: Instant,
    /// The client's own timeout, when it sent one.
    pub timeout: Option<Duration>,
    /// The request's span: the path records its version, why the route picked it
    /// (`route`) and its outcome on it.
    pub span: tracing::Span,
}

impl RequestContext {
    /// The context of a request that arrived at `started` on `protocol`, naming
    /// `model` (and `version`), with its headers; a malformed timeout header is a 400.
    pub fn new(
        protocol: Protocol,
        model: impl Into<String>,
        version: Option<String>,
        headers: HeaderMap,
        started: Instant,
    ) -> Result<Self, InferError> {
        let model = model.into();
        let timeout = client_timeout(protocol, &headers)?;
        let span = tracing::info_span!(
            "request",
            protocol = protocol.as_str(),
            model = %model,
            version = tracing::field::Empty,
            route = tracing::field::Empty,
            fallback = tracing::field::Empty,
            tenant = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        Ok(Self {
            protocol,
            model,
            version: version.filter(|v| !v.is_empty()),
            identity: Identity::default(),
            attributes: Attributes::new(headers),
            started,
            timeout,
            span,
        })
    }
}

/// The client's timeout: `grpc-timeout` on gRPC, [`REQUEST_TIMEOUT_HEADER`] elsewhere.
fn client_timeout(protocol: Protocol, headers: &HeaderMap) -> Result<Option<Duration>, InferError> {
    let (name, parse): (&str, fn(&str) -> Option<Duration>) = match protocol {
        Protocol::Grpc => ("grpc-timeout", parse_grpc_timeout),
        Protocol::Rest | Protocol::OpenAi => {
            (REQUEST_TIMEOUT_HEADER, |text| parse_duration(text).ok())
        }
    };
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(parse)
        .map(Some)
        .ok_or_else(|| {
            InferError::BadRequest(format!(
                "header {name}: {value:?} is not a timeout (e.g. {})",
                match protocol {
                    Protocol::Grpc => "250m or 5S",
                    Protocol::Rest | Protocol::OpenAi => "250ms or 5s",
                }
            ))
        })
}

/// Parses a `grpc-timeout` header value (`<up to 8 digits><H|M|S|m|u|n>`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    match unit {
        "H" => Some(Duration::from_secs(amount * 3600)),
        "M" => Some(Duration::from_secs(amount * 60)),
        "S" => Some(Duration::from_secs(amount)),
        "m" => Some(Duration::from_millis(amount)),
        "u" => Some(Duration::from_micros(amount)),
        "n" => Some(Duration::from_nanos(amount)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn grpc_timeout_units_are_understood() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("100u"), Some(Duration::from_micros(100)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    fn context(protocol: Protocol, headers: HeaderMap) -> Result<RequestContext, InferError> {
        RequestContext::new(protocol, "m", None, headers, Instant::now())
    }

    #[test]
    fn each_protocol_reads_its_own_timeout_header() {
        let rest = context(Protocol::Rest, headers(REQUEST_TIMEOUT_HEADER, "250ms"));
        assert_eq!(
            rest.expect("valid").timeout,
            Some(Duration::from_millis(250))
        );
        let grpc = context(Protocol::Grpc, headers("grpc-timeout", "3S"));
        assert_eq!(grpc.expect("valid").timeout, Some(Duration::from_secs(3)));
        let other = context(Protocol::OpenAi, headers("grpc-timeout", "3S"));
        assert_eq!(other.expect("ignored").timeout, None);
    }

    #[test]
    fn a_malformed_timeout_is_a_bad_request_naming_the_header() {
        let err = context(Protocol::Rest, headers(REQUEST_TIMEOUT_HEADER, "soon"))
            .expect_err("not a duration");
        assert!(matches!(&err, InferError::BadRequest(m) if m.contains(REQUEST_TIMEOUT_HEADER)));
        let err = context(Protocol::Grpc, headers("grpc-timeout", "5s")).expect_err("unit");
        assert!(matches!(&err, InferError::BadRequest(m) if m.contains("grpc-timeout")));
    }

    #[test]
    fn an_empty_version_names_none_and_the_tenant_is_anonymous() {
        let ctx = RequestContext::new(
            Protocol::Grpc,
            "m",
            Some(String::new()),
            HeaderMap::new(),
            Instant::now(),
        )
        .expect("valid");
        assert_eq!(ctx.version, None);
        assert_eq!(ctx.identity.tenant(), ANONYMOUS_TENANT);
        assert_eq!(ctx.identity.fairness_key(), ANONYMOUS_TENANT);
        assert_eq!(ctx.identity.band(), None);
        assert_eq!(ctx.identity.credential(), Credential::Anonymous);
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn a_trusted_fairness_id_is_the_fairness_key_else_the_tenant() {
        let plain = Identity::new(Credential::ApiKey, Arc::from("team-a"));
        assert_eq!(plain.tenant(), "team-a");
        assert_eq!(plain.fairness_key(), "team-a");
        let gated = plain.with_gateway(Some("user-7".into()), Some(3));
        assert_eq!(gated.tenant(), "team-a");
        assert_eq!(gated.fairness_key(), "user-7");
        assert_eq!(gated.band(), Some(3));
        assert_eq!(gated.credential(), Credential::ApiKey);
    }
}
