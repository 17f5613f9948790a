//! The quota gate of a ModelDeployment's reconcile: its tenant, the quotas that govern
//! it and their verdict, read from the watch caches. Only the TenantQuota controller
//! decides and records admissions; this side reads the record and never writes it.

use std::{collections::BTreeMap, sync::Arc};

use modelplane_api::{
    condition::{Condition, find_condition},
    model_deployment::{ModelDeployment, ModelDeploymentSpec, condition_types::QUOTA_ADMITTED},
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
    scoped(cache.tenant_quotas.state())
}

/// `quotas` with their scopes, oldest first.
pub fn scoped(quotas: Vec<Arc<TenantQuota>>) -> Vec<(QuotaScope, Arc<TenantQuota>)> {
    let mut quotas: Vec<_> = quotas
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
    let status = md.status.as_ref();
    let subject = Admittee {
        key,
        uid: md.metadata.uid.as_deref().unwrap_or_default(),
        generation: md.metadata.generation.unwrap_or_default(),
        current: status.and_then(|s| find_condition(&s.conditions, QUOTA_ADMITTED)),
    };
    let (tenant, verdict) = gate(&quotas, &md.spec, namespace, labels.as_ref(), &subject);
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

/// What a quota admits: a ModelDeployment, or a Canary's candidate pods.
pub struct Admittee<'a> {
    /// Its name in the record (`namespace/name`, a Canary's suffixed).
    pub key: &'a str,
    /// `metadata.uid`.
    pub uid: &'a str,
    /// `metadata.generation`.
    pub generation: i64,
    /// Its current `QuotaAdmitted` condition, if it has one.
    pub current: Option<&'a Condition>,
}

/// The tenant of `spec` in `namespace` (with `labels`) and the verdict of the quotas
/// (`quotas`, scoped) that govern it on `subject`: pure.
pub fn gate(
    quotas: &[(QuotaScope, Arc<TenantQuota>)],
    spec: &ModelDeploymentSpec,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    subject: &Admittee<'_>,
) -> (String, Verdict) {
    let scopes: Vec<QuotaScope> = quotas.iter().map(|(s, _)| s.clone()).collect();
    let (tenant, source) = resolve_tenant(spec, namespace, labels, &scopes);
    let found = governing(&scopes, namespace, labels, (&tenant, source));
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
    let verdict = verdict(
        &Subject {
            key: subject.key,
            uid: subject.uid,
            generation: subject.generation,
            tenant: &tenant,
            current: subject.current,
        },
        &governors,
    );
    (tenant, verdict)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::quota::canary_entry_name;

    fn quota(status: serde_json::Value) -> Arc<TenantQuota> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "TenantQuota",
                "metadata": {"name": "team-a", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"namespaces": ["team-a"], "hard": {"cpu": "6"}},
                "status": status,
            }))
            .expect("quota"),
        )
    }

    fn spec() -> ModelDeploymentSpec {
        serde_json::from_value(json!({"runtime": {"replicas": 4}})).expect("spec")
    }

    #[test]
    fn a_canarys_own_pods_are_gated_by_the_record_under_its_own_name() {
        let key = canary_entry_name("team-a", "m-runtime-2");
        let subject = Admittee {
            key: &key,
            uid: "uid-c",
            generation: 1,
            current: None,
        };
        let verdict_of = |status| {
            gate(
                &scoped(vec![quota(status)]),
                &spec(),
                "team-a",
                None,
                &subject,
            )
            .1
        };
        let refused = verdict_of(json!({"rejected": [{"name": key, "generation": 1,
            "reason": "cpu: needs 4, 2 over the quota of 6", "cause": "QuotaExceeded"}]}));
        assert!(
            matches!(&refused, Verdict::Refused { message, .. } if message.contains("2 over the quota of 6")),
            "{refused:?}"
        );
        let admitted = verdict_of(json!({"admissions": [{"name": key, "uid": "uid-c",
            "generation": 1, "replicas": 1, "cpu": "1", "memory": "0"}]}));
        assert!(matches!(admitted, Verdict::Admitted { .. }), "{admitted:?}");
        // Not decided yet: it waits, never runs on an old answer.
        assert!(matches!(verdict_of(json!({})), Verdict::Pending { .. }));
        // No quota for the tenant: not limited.
        let (_, free) = gate(&[], &spec(), "team-a", None, &subject);
        assert!(matches!(free, Verdict::NotLimited { .. }));
    }
}
