//! The quota gate of a ModelDeployment's reconcile: its tenant, the quotas that govern
//! it and their verdict, read from the watch caches. Only the TenantQuota controller
//! decides and records admissions; this side reads the record and never writes it.

use std::sync::Arc;

use modelplane_api::{
    condition::find_condition,
    model_deployment::{ModelDeployment, condition_types::QUOTA_ADMITTED},
    tenant_quota::TenantQuota,
};
use modelplane_config::TenantConfig;

use crate::{
    controller::Cache,
    desired::tenant_config,
    quota::{Governor, Governs, QuotaScope, Subject, Verdict, governing, resolve_tenant, verdict},
};

/// What the quotas say about one ModelDeployment.
pub struct QuotaView {
    /// Its tenant.
    pub tenant: String,
    /// Whether its generation may roll out.
    pub verdict: Verdict,
    /// The runtime budget of the tenant, from the oldest quota of that tenant.
    pub budget: Option<TenantConfig>,
}

/// The quotas in the cache with their scopes, oldest first.
pub fn quotas(cache: &Cache) -> Vec<(QuotaScope, Arc<TenantQuota>)> {
    let mut quotas: Vec<_> = cache
        .tenant_quotas
        .state()
        .into_iter()
        .filter_map(|quota| QuotaScope::of(&quota).map(|scope| (scope, quota)))
        .collect();
    quotas.sort_by(|a, b| (a.0.created, &a.0.name).cmp(&(b.0.created, &b.0.name)));
    quotas
}

/// Reads the quota gate of `md` in `namespace` from the cache.
pub fn quota_view(cache: &Cache, md: &ModelDeployment, namespace: &str, key: &str) -> QuotaView {
    let labels = cache.namespace_labels(namespace);
    let quotas = quotas(cache);
    let scopes: Vec<QuotaScope> = quotas.iter().map(|(s, _)| s.clone()).collect();
    let (tenant, source) = resolve_tenant(&md.spec, namespace, labels.as_ref(), &scopes);
    let found = governing(&scopes, namespace, labels.as_ref(), (&tenant, source));
    let governors: Vec<Governor<'_>> = found
        .iter()
        .filter_map(|(scope, governs)| {
            let quota = quotas.iter().find(|(s, _)| s.name == scope.name)?;
            Some(Governor {
                name: &scope.name,
                status: quota.1.status.as_ref(),
                refuses: match governs {
                    Governs::TenantNotAllowed(message) => Some(message.as_str()),
                    Governs::Counted => None,
                },
            })
        })
        .collect();
    let status = md.status.as_ref();
    let subject = Subject {
        key,
        uid: md.metadata.uid.as_deref().unwrap_or_default(),
        generation: md.metadata.generation.unwrap_or_default(),
        tenant: &tenant,
        current: status.and_then(|s| find_condition(&s.conditions, QUOTA_ADMITTED)),
    };
    let verdict = verdict(&subject, &governors);
    let budget = quotas
        .iter()
        .find(|(scope, _)| scope.tenant == tenant)
        .map(|(_, quota)| tenant_config(&tenant, &quota.spec));
    QuotaView {
        tenant,
        verdict,
        budget,
    }
}
