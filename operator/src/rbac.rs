//! The permissions the operator needs, in one place.
//!
//! The chart's `templates/rbac.yaml` carries the same rules; a test fails when
//! the two disagree, so a new API call cannot ship without its permission.

use k8s_openapi::api::rbac::v1::PolicyRule;

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// Rules for the workload namespaces (bound cluster-wide, or per watched namespace).
pub fn workload_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            "serving.modelplane.io",
            &["modeldeployments", "canaries"],
            &["get", "list", "watch"],
        ),
        rule(
            "serving.modelplane.io",
            &["modeldeployments/status", "canaries/status"],
            &["get", "patch"],
        ),
        // Server-side apply creates through PATCH, which needs `create` as well. A
        // runtime-image Canary's own Deployment and ConfigMap are deleted when it ends.
        rule(
            "apps",
            &["deployments"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            "",
            &["configmaps"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            "",
            &["services"],
            &["get", "list", "watch", "create", "patch"],
        ),
        // PDBs are deleted when replicas drop to one; the rest is left to garbage collection.
        rule(
            "policy",
            &["poddisruptionbudgets"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule("", &["pods"], &["get", "list", "watch"]),
        // Existence checks of what a spec references; contents are never read.
        rule("", &["secrets", "persistentvolumeclaims"], &["get"]),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ]
}

/// Rules that are cluster-scoped by nature: the tenant label lives on the Namespace, and
/// TenantQuotas are cluster-scoped (the operator writes only their status: the admission
/// record).
pub fn cluster_rules() -> Vec<PolicyRule> {
    vec![
        rule("", &["namespaces"], &["get", "list", "watch"]),
        rule(
            "serving.modelplane.io",
            &["tenantquotas"],
            &["get", "list", "watch"],
        ),
        rule(
            "serving.modelplane.io",
            &["tenantquotas/status"],
            &["get", "patch"],
        ),
    ]
}

/// Rules for the leader-election Lease, in the operator's own namespace.
pub fn leader_election_rules() -> Vec<PolicyRule> {
    vec![rule(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const CHART_RBAC: &str = include_str!("../../charts/modelplane/templates/rbac.yaml");

    #[derive(Deserialize)]
    struct Rules {
        rules: Vec<PolicyRule>,
    }

    /// The `rules:` block of the chart document whose first line names `role`.
    /// Rules come last in each document and contain no templating, so they parse as YAML.
    fn chart_rules(role: &str) -> Vec<PolicyRule> {
        let document = CHART_RBAC
            .split("\n---")
            .find(|doc| doc.contains(&format!("# role: {role}\n")))
            .unwrap_or_else(|| panic!("chart rbac.yaml has no `# role: {role}` document"));
        let start = document.find("\nrules:").expect("document has rules");
        let rules: Rules = serde_yaml::from_str(&document[start..]).expect("rules parse");
        rules.rules
    }

    fn render(rules: &[PolicyRule]) -> String {
        serde_yaml::to_string(rules).expect("yaml")
    }

    #[test]
    fn chart_rbac_matches_the_rules_the_code_needs() {
        for (role, rules) in [
            ("workload", workload_rules()),
            ("cluster", cluster_rules()),
            ("leader-election", leader_election_rules()),
        ] {
            assert_eq!(
                render(&chart_rules(role)),
                render(&rules),
                "charts/modelplane/templates/rbac.yaml `{role}` rules differ from operator/src/rbac.rs; expected:\n{}",
                render(&rules)
            );
        }
    }

    #[test]
    fn secrets_are_never_listed_or_watched() {
        let secrets = workload_rules()
            .into_iter()
            .filter(|r| r.resources.iter().flatten().any(|res| res == "secrets"))
            .flat_map(|r| r.verbs)
            .collect::<Vec<_>>();
        assert_eq!(secrets, ["get"]);
    }
}
