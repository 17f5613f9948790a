//! Who may call a runtime and what each tenant may use of it: [`IdentityConfig`]
//! (API keys, JWT, a trusted gateway's headers), [`TenantConfig`] (request budgets,
//! fair-queuing weight and band, the tenant's cgroup slice) and [`FairnessConfig`]
//! (how a request's cost is counted in tokens).
//!
//! The operator renders them from the TenantQuotas of the tenants a runtime serves; a
//! hand-written config may carry them too. A runtime with no credentials configured
//! admits anonymous requests (there is nothing they could present); one with API keys
//! or JWT keys refuses them unless `allowAnonymous: true`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Duration;
use crate::units::parse_cpu_max;

/// How a request is mapped to a tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityConfig {
    /// Whether requests without credentials are served; unset: only when neither
    /// `apiKeys` nor `jwt` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// The tenant anonymous requests are charged to; unset: the `anonymous` tenant,
    /// which has no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_tenant: Option<String>,
    /// API keys, read from a mounted Secret file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<ApiKeysConfig>,
    /// Bearer JSON Web Tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// Headers set by a Gateway API inference extension gateway in front of the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayConfig>,
}

impl IdentityConfig {
    /// Whether a request without credentials is served.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous
            .unwrap_or(self.api_keys.is_none() && self.jwt.is_none())
    }

    /// The tenant anonymous requests are charged to.
    pub fn anonymous_tenant(&self) -> &str {
        self.anonymous_tenant.as_deref().unwrap_or(ANONYMOUS_TENANT)
    }
}

/// The tenant of requests without credentials when `identity.anonymousTenant` is unset.
pub const ANONYMOUS_TENANT: &str = "anonymous";

/// API keys, one per line of a file: `<tenant>:<key>` (blank lines and `#` comments
/// are skipped). The file is re-read when it changes (a Secret update).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// Path of the keys file.
    pub file: String,
}

/// Bearer JWTs: signature checked against one of `keys`, `exp`/`nbf` within `leeway`,
/// `iss` and `aud` when configured; the tenant is the `tenantClaim` claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`; unset: any issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted `aud` values; a token must name one of them. Empty: `aud` is not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The claim that names the tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: Duration,
    /// Verification keys; a token's `kid` picks one when it has one.
    pub keys: Vec<JwtKey>,
}

fn default_tenant_claim() -> String {
    "tenant".to_owned()
}

fn default_leeway() -> Duration {
    Duration::from_millis(30_000)
}

/// One JWT verification key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtKey {
    /// The `kid` tokens signed with this key carry; unset: tried for tokens without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The only algorithm this key accepts.
    pub algorithm: JwtAlgorithm,
    /// File with the key: the shared secret (HS256) or a PEM public key (RS256, ES256).
    pub file: String,
}

/// JWT signature algorithms a key may accept (`none` is never one of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    #[serde(rename = "HS256")]
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
}

/// Trust in a Gateway API inference extension gateway's request headers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    /// Read `x-gateway-inference-fairness-id` (the fairness key) and
    /// `x-gateway-inference-objective` (the priority band). Only set this when every
    /// request reaches the runtime through the gateway: clients could forge them.
    #[serde(default)]
    pub trust_headers: bool,
    /// Priority band of each InferenceObjective name; unknown objectives get band 0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub objectives: BTreeMap<String, i32>,
    /// Tenant of requests that present no credentials but come with a fairness id,
    /// when anonymous requests are allowed; unset: the anonymous tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// What one tenant may use of this runtime.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant name (what identity maps requests to).
    pub name: String,
    /// Weight in fair queuing: a tenant of priority 2 gets twice the tokens of one of
    /// priority 1 while both are backlogged.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Priority band; under saturation the lowest band is shed first, and a higher
    /// band is always served first. A trusted gateway objective overrides it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub band: i32,
    /// Request budgets; beyond them requests get 429 with `Retry-After`.
    #[serde(default, skip_serializing_if = "TenantRequests::is_unlimited")]
    pub requests: TenantRequests,
    /// The tenant's cgroup slice for the worker threads of the models it owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<TenantCgroup>,
}

fn default_priority() -> u32 {
    1
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

/// Per-tenant request budgets of one runtime process; unset fields are unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantRequests {
    /// Sustained requests per second (token-bucket refill rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u64>,
    /// Bucket size in requests; unset: `perSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Prompt plus generated tokens per minute (bucket size: one minute's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

impl TenantRequests {
    /// Whether no budget is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }
}

/// A tenant's child cgroup inside a shared runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantCgroup {
    /// `cpu.weight`, 1–10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u32>,
    /// `cpu.max`: `max`, `<n> cores`, or a CPU quantity (`1.5`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<String>,
}

/// How a request's cost is counted for fair queuing (the virtual token counter of
/// Sheng et al., OSDI '24: cost = input weight × prompt tokens + output weight ×
/// generated tokens). Tensor requests cost their rows times the input weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FairnessConfig {
    /// Weight of a prompt token (or a tensor row).
    #[serde(default = "default_input_weight")]
    pub input_token_weight: u32,
    /// Weight of a generated token (decoding costs more than reading, per token).
    #[serde(default = "default_output_weight")]
    pub output_token_weight: u32,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        Self {
            input_token_weight: default_input_weight(),
            output_token_weight: default_output_weight(),
        }
    }
}

impl FairnessConfig {
    /// Whether both weights are the defaults (the config leaves them out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_input_weight() -> u32 {
    1
}

fn default_output_weight() -> u32 {
    2
}

/// Checks tenants and identity: names, uniqueness, ranges.
pub(crate) fn validate(
    identity: &IdentityConfig,
    tenants: &[TenantConfig],
    fairness: &FairnessConfig,
) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for tenant in tenants {
        if !is_tenant_name(&tenant.name) {
            return Err(format!(
                "tenants: {:?} is not a tenant name (1-63 of [a-z0-9-], starting and ending alphanumeric)",
                tenant.name
            ));
        }
        if !names.insert(tenant.name.as_str()) {
            return Err(format!("tenants: {:?} is declared twice", tenant.name));
        }
        let field = |name: &str| format!("tenants[{}].{name}", tenant.name);
        if tenant.priority == 0 || tenant.priority > 1000 {
            return Err(format!("{} must be 1-1000", field("priority")));
        }
        let requests = &tenant.requests;
        if requests.burst.is_some() && requests.per_second.is_none() {
            return Err(format!(
                "{} needs requests.perSecond",
                field("requests.burst")
            ));
        }
        if let (Some(burst), Some(rate)) = (requests.burst, requests.per_second)
            && burst < rate.max(1)
        {
            return Err(format!(
                "{} ({burst}) must be at least requests.perSecond ({rate})",
                field("requests.burst")
            ));
        }
        if let Some(cgroup) = &tenant.cgroup {
            if let Some(weight) = cgroup.cpu_weight
                && !(1..=10_000).contains(&weight)
            {
                return Err(format!("{} must be 1-10000", field("cgroup.cpuWeight")));
            }
            if let Some(max) = &cgroup.cpu_max {
                parse_cpu_max(max)
                    .map_err(|err| format!("{} {max:?}: {err}", field("cgroup.cpuMax")))?;
            }
        }
    }
    if let Some(tenant) = &identity.anonymous_tenant
        && !is_tenant_name(tenant)
    {
        return Err(format!(
            "identity.anonymousTenant: {tenant:?} is not a tenant name"
        ));
    }
    if let Some(jwt) = &identity.jwt {
        if jwt.keys.is_empty() {
            return Err("identity.jwt.keys lists no key".to_owned());
        }
        if jwt.tenant_claim.is_empty() {
            return Err("identity.jwt.tenantClaim is empty".to_owned());
        }
    }
    if fairness.input_token_weight == 0 || fairness.output_token_weight == 0 {
        return Err("fairness: token weights must be greater than zero".to_owned());
    }
    Ok(())
}

/// Whether `name` is a DNS label, as tenant names are in the CRDs.
pub fn is_tenant_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}
