//! The tenancy part of the runtime config: which tenant owns the model, the budgets its
//! TenantQuota grants, and whom anonymous requests are charged to.
//!
//! The runtime reloads its config file when it changes, and none of this is in the rollout
//! hash: a budget change rewrites the ConfigMap and never restarts a pod.

use modelplane_api::tenant_quota::TenantQuotaSpec;
use modelplane_config::{RuntimeConfig, TenantCgroup, TenantConfig, TenantRequests};

/// The runtime budget of `tenant` from its TenantQuota: request budgets, fair-queuing
/// weight and cgroup slice.
pub fn tenant_config(tenant: &str, quota: &TenantQuotaSpec) -> TenantConfig {
    let requests = quota.requests.clone().unwrap_or_default();
    let count = |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok());
    let per_second = count(requests.per_second);
    // The runtime wants a burst only beside a rate, and at least the rate (and at least 1).
    let burst =
        count(requests.burst).filter(|burst| per_second.is_some_and(|rate| *burst >= rate.max(1)));
    TenantConfig {
        name: tenant.to_owned(),
        priority: u32::try_from(quota.priority.clamp(1, 1000)).unwrap_or(1),
        band: 0,
        requests: TenantRequests {
            per_second,
            burst,
            tokens_per_minute: count(requests.tokens_per_minute),
            max_concurrent: requests
                .max_concurrent
                .and_then(|v| u32::try_from(v.clamp(0, i64::from(u32::MAX))).ok()),
        },
        cgroup: quota.runtime_cgroup.as_ref().map(|cgroup| TenantCgroup {
            cpu_weight: cgroup.cpu_weight.and_then(|w| u32::try_from(w).ok()),
            cpu_max: cgroup.cpu_max.clone(),
        }),
    }
}

/// Sets the tenancy of `config`: every model is owned by `tenant`, anonymous requests are
/// charged to it, and `budget` (from its TenantQuota) is the only tenant listed.
pub fn apply_tenancy(config: &mut RuntimeConfig, tenant: &str, budget: Option<&TenantConfig>) {
    for model in &mut config.models {
        model.tenant = Some(tenant.to_owned());
    }
    config.identity.anonymous_tenant = Some(tenant.to_owned());
    config.tenants = budget.cloned().into_iter().collect();
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn quota(spec: serde_json::Value) -> TenantQuotaSpec {
        serde_json::from_value(spec).expect("quota spec")
    }

    #[test]
    fn the_example_quota_becomes_the_tenants_runtime_budget() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/tenantquota-team-a.yaml"
        ))
        .expect("example");
        let example: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        let spec: TenantQuotaSpec = serde_yaml::from_value(example["spec"].clone()).expect("spec");
        let budget = tenant_config("team-a", &spec);
        assert_eq!(
            budget,
            TenantConfig {
                name: "team-a".into(),
                priority: 10,
                band: 0,
                requests: TenantRequests {
                    per_second: Some(200),
                    burst: Some(400),
                    tokens_per_minute: Some(500_000),
                    max_concurrent: Some(64),
                },
                cgroup: Some(TenantCgroup {
                    cpu_weight: Some(200),
                    cpu_max: Some("2 cores".into()),
                }),
            }
        );
    }

    #[test]
    fn a_burst_without_a_usable_rate_is_left_to_the_runtime_default() {
        let only_burst = tenant_config("t", &quota(json!({"requests": {"burst": 5}})));
        assert_eq!(only_burst.requests.burst, None);
        let zero = tenant_config(
            "t",
            &quota(json!({"requests": {"perSecond": 0, "burst": 0}})),
        );
        assert_eq!(
            (zero.requests.per_second, zero.requests.burst),
            (Some(0), None)
        );
        let unlimited = tenant_config("t", &quota(json!({})));
        assert!(unlimited.requests.is_unlimited());
        assert_eq!(unlimited.priority, 1);
    }

    #[test]
    fn tenancy_names_the_owner_everywhere_and_lists_only_its_budget() {
        let mut config = RuntimeConfig::from_yaml(
            "models:\n  - name: m\n    versions:\n      - version: '1'\n        source: {path: /m.pt}\n",
        )
        .expect("config");
        let budget = tenant_config("team-a", &quota(json!({"priority": 3})));
        apply_tenancy(&mut config, "team-a", Some(&budget));
        assert_eq!(config.models[0].tenant.as_deref(), Some("team-a"));
        assert_eq!(config.identity.anonymous_tenant(), "team-a");
        assert_eq!(config.tenants, [budget]);
        config.validate().expect("the runtime accepts it");
        apply_tenancy(&mut config, "team-a", None);
        assert!(config.tenants.is_empty());
    }
}
