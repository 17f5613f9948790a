//! Which TenantQuotas govern a ModelDeployment, and its tenant once quotas are known.
//!
//! A quota governs the ModelDeployments in the namespaces it covers (`spec.namespaces`,
//! `spec.namespaceSelector`) and every ModelDeployment whose tenant is the quota's tenant,
//! wherever it runs. A covered namespace belongs to the quota's tenant: a ModelDeployment
//! there whose tenant is another one (from `spec.tenant` or the namespace label) is not
//! counted elsewhere; the covering quota refuses it, so naming another tenant is no way
//! out of a quota.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::core::{Selector, SelectorExt};
use modelplane_api::{model_deployment::ModelDeploymentSpec, tenant_quota::TenantQuota};

use crate::desired::TENANT_LABEL;

/// What scoping reads of one TenantQuota.
#[derive(Debug, Clone)]
pub struct QuotaScope {
    /// `metadata.name`.
    pub name: String,
    /// `spec.tenant`, else `metadata.name`.
    pub tenant: String,
    /// When it was created (older quotas name the tenant of a namespace first).
    pub created: Option<Timestamp>,
    namespaces: Vec<String>,
    /// `None`: no selector; `Some(None)`: a selector that does not parse (matches nothing).
    selector: Option<Option<Selector>>,
}

impl QuotaScope {
    /// Reads the scope of `quota`; `None` for an object without a name.
    pub fn of(quota: &TenantQuota) -> Option<Self> {
        let name = quota.metadata.name.clone()?;
        Some(Self {
            tenant: quota.spec.tenant.clone().unwrap_or_else(|| name.clone()),
            name,
            created: quota.metadata.creation_timestamp.as_ref().map(|t| t.0),
            namespaces: quota.spec.namespaces.clone(),
            selector: quota
                .spec
                .namespace_selector
                .clone()
                .map(|s| Selector::try_from(s).ok()),
        })
    }

    /// Whether the namespace `name` with `labels` is one of this quota's.
    pub fn covers(&self, name: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.namespaces.iter().any(|n| n == name) {
            return true;
        }
        match &self.selector {
            Some(Some(selector)) => selector.matches(labels.unwrap_or(&BTreeMap::new())),
            _ => false,
        }
    }
}

/// Where a ModelDeployment's tenant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantSource {
    /// `spec.tenant`.
    Spec,
    /// The namespace label `modelplane.io/tenant`.
    NamespaceLabel,
    /// A TenantQuota covering the namespace.
    Quota,
    /// The namespace name.
    NamespaceName,
}

impl TenantSource {
    fn describe(self) -> &'static str {
        match self {
            TenantSource::Spec => "spec.tenant",
            TenantSource::NamespaceLabel => "the namespace label modelplane.io/tenant",
            TenantSource::Quota => "the TenantQuota covering the namespace",
            TenantSource::NamespaceName => "the namespace name",
        }
    }
}

/// The tenant of a ModelDeployment in `namespace`: `spec.tenant`, else the namespace label
/// `modelplane.io/tenant`, else the tenant of the oldest quota covering the namespace, else
/// the namespace name.
pub fn resolve_tenant(
    spec: &ModelDeploymentSpec,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    quotas: &[QuotaScope],
) -> (String, TenantSource) {
    if let Some(tenant) = &spec.tenant {
        return (tenant.clone(), TenantSource::Spec);
    }
    if let Some(tenant) = labels.and_then(|l| l.get(TENANT_LABEL)) {
        return (tenant.clone(), TenantSource::NamespaceLabel);
    }
    let covering = quotas
        .iter()
        .filter(|q| q.covers(namespace, labels))
        .min_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    match covering {
        Some(quota) => (quota.tenant.clone(), TenantSource::Quota),
        None => (namespace.to_owned(), TenantSource::NamespaceName),
    }
}

/// How a quota treats a ModelDeployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Governs {
    /// Counted against the quota.
    Counted,
    /// In a namespace the quota covers, but of another tenant: refused, with the message.
    TenantNotAllowed(String),
}

/// The quotas governing a ModelDeployment of `tenant` (from `source`) in `namespace`, and
/// how. When a quota covering the namespace refuses it for naming another tenant, only the
/// refusing quotas are returned: it is not counted anywhere while it cannot run.
pub fn governing<'q>(
    quotas: &'q [QuotaScope],
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    (tenant, source): (&str, TenantSource),
) -> Vec<(&'q QuotaScope, Governs)> {
    let mut found: Vec<(&QuotaScope, Governs)> = quotas
        .iter()
        .filter_map(|quota| {
            let covers = quota.covers(namespace, labels);
            if covers && quota.tenant != tenant {
                let message = format!(
                    "namespace {namespace} is covered by TenantQuota {} for tenant {}, but this ModelDeployment's tenant is {tenant} (from {}); only tenant {} may run here: remove spec.tenant or set it to {}",
                    quota.name,
                    quota.tenant,
                    source.describe(),
                    quota.tenant,
                    quota.tenant
                );
                Some((quota, Governs::TenantNotAllowed(message)))
            } else if covers || quota.tenant == tenant {
                Some((quota, Governs::Counted))
            } else {
                None
            }
        })
        .collect();
    if found
        .iter()
        .any(|(_, g)| matches!(g, Governs::TenantNotAllowed(_)))
    {
        found.retain(|(_, g)| matches!(g, Governs::TenantNotAllowed(_)));
    }
    found.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    found
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn quota(name: &str, spec: Value, created: &str) -> QuotaScope {
        let quota: TenantQuota = serde_json::from_value(json!({
            "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "TenantQuota",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": spec,
        }))
        .expect("quota");
        QuotaScope::of(&quota).expect("named")
    }

    fn spec(tenant: Option<&str>) -> ModelDeploymentSpec {
        serde_json::from_value(json!({"tenant": tenant})).expect("spec")
    }

    fn labels(tenant: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(TENANT_LABEL.to_owned(), tenant.to_owned())])
    }

    fn quotas() -> Vec<QuotaScope> {
        vec![
            quota(
                "team-a",
                json!({"namespaces": ["team-a", "team-a-dev"]}),
                "2026-01-01T00:00:00Z",
            ),
            quota(
                "b-quota",
                json!({"tenant": "team-b", "namespaceSelector": {"matchLabels": {"org": "b"}}}),
                "2026-01-02T00:00:00Z",
            ),
        ]
    }

    /// spec.tenant, namespace, its labels, the tenant and where it came from.
    type Case<'a> = (
        Option<&'a str>,
        &'a str,
        Option<BTreeMap<String, String>>,
        (&'a str, TenantSource),
    );

    #[test]
    fn the_tenant_comes_from_spec_label_covering_quota_then_namespace() {
        let quotas = quotas();
        #[rustfmt::skip]
        let table: [Case<'_>; 5] = [
            (Some("explicit"), "team-a", Some(labels("labelled")), ("explicit", TenantSource::Spec)),
            (None, "team-a", Some(labels("labelled")), ("labelled", TenantSource::NamespaceLabel)),
            (None, "team-a-dev", None, ("team-a", TenantSource::Quota)),
            (None, "b-ns", Some(BTreeMap::from([("org".into(), "b".into())])), ("team-b", TenantSource::Quota)),
            (None, "other", None, ("other", TenantSource::NamespaceName)),
        ];
        for (tenant, namespace, labels, (want, source)) in table {
            let got = resolve_tenant(&spec(tenant), namespace, labels.as_ref(), &quotas);
            assert_eq!(got, (want.to_owned(), source), "{tenant:?} in {namespace}");
        }
    }

    fn names(found: &[(&QuotaScope, Governs)]) -> Vec<(String, bool)> {
        found
            .iter()
            .map(|(q, g)| (q.name.clone(), *g == Governs::Counted))
            .collect()
    }

    #[test]
    fn a_covered_namespace_cannot_be_left_by_naming_another_tenant() {
        let quotas = quotas();
        // team-a's namespace, tenant team-b in spec.tenant: team-a refuses it and team-b does
        // not count it (it cannot run).
        let found = governing(&quotas, "team-a", None, ("team-b", TenantSource::Spec));
        assert_eq!(names(&found), [("team-a".to_owned(), false)]);
        let Governs::TenantNotAllowed(message) = &found[0].1 else {
            panic!("refused")
        };
        assert_eq!(
            message,
            "namespace team-a is covered by TenantQuota team-a for tenant team-a, but this ModelDeployment's tenant is team-b (from spec.tenant); only tenant team-a may run here: remove spec.tenant or set it to team-a"
        );
        // Its own tenant in its own namespace: counted.
        let found = governing(&quotas, "team-a-dev", None, ("team-a", TenantSource::Quota));
        assert_eq!(names(&found), [("team-a".to_owned(), true)]);
        // Tenant team-b from an uncovered namespace: counted against team-b's quota.
        let found = governing(&quotas, "elsewhere", None, ("team-b", TenantSource::Spec));
        assert_eq!(names(&found), [("b-quota".to_owned(), true)]);
        // No quota for the tenant or the namespace.
        assert!(
            governing(
                &quotas,
                "elsewhere",
                None,
                ("x", TenantSource::NamespaceName)
            )
            .is_empty()
        );
    }

    #[test]
    fn a_selector_that_matches_nothing_covers_nothing() {
        let broken = quota(
            "q",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "Bogus"}]}}),
            "2026-01-01T00:00:00Z",
        );
        assert!(!broken.covers("any", Some(&labels("q"))));
        let all = quota(
            "all",
            json!({"namespaceSelector": {}}),
            "2026-01-01T00:00:00Z",
        );
        assert!(
            all.covers("any", None),
            "an empty selector selects every namespace"
        );
    }
}
