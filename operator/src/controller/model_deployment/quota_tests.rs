//! The quota gate of the ModelDeployment reconcile, against a scripted API server: what
//! a quota's record lets roll out, and that nothing running is touched otherwise.

use std::sync::Arc;

use modelplane_api::{
    model_deployment::{ModelDeployment, ModelDeploymentStatus},
    tenant_quota::TenantQuota,
};
use serde_json::{Value, json};

use super::reconcile;
use crate::fixtures::{
    Cluster, Expect, Recorded, applied, apply_budget, apply_config_map, apply_deployment,
    apply_service, condition, context, finished, model_deployment, resnet18_spec, status_written,
};

/// The fixture namespace's tenant (its `modelplane.io/tenant` label).
const TENANT: &str = "team-a-tenant";

/// A quota for the fixture tenant over its namespace, with `status`.
fn quota(hard: Value, status: Value) -> TenantQuota {
    serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "TenantQuota",
        "metadata": {"name": "team-a", "uid": "uid-q", "resourceVersion": "5",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"tenant": TENANT, "namespaces": ["team-a"], "hard": hard,
                 "requests": {"perSecond": 20, "burst": 40}, "priority": 5},
        "status": status,
    }))
    .expect("quota")
}

fn admitted(generation: i64, replicas: i32) -> Value {
    json!({"admissions": [{"name": "team-a/resnet18", "uid": "uid-resnet18",
        "generation": generation, "replicas": replicas, "gpu": 0,
        "cpu": (2 * replicas).to_string(), "memory": format!("{}Gi", 4 * replicas)}]})
}

fn refused(mut status: Value, generation: i64) -> Value {
    status["rejected"] = json!([{"name": "team-a/resnet18", "generation": generation,
        "cause": "QuotaExceeded",
        "reason": "replicas: needs 3, 1 over the quota of 2 (0 in use by other ModelDeployments)"}]);
    status
}

async fn reconcile_with(
    cluster: &Cluster,
    md: &ModelDeployment,
    script: Vec<Expect>,
) -> Vec<Recorded> {
    let (ctx, server) = context(cluster, md);
    let server = server.run(script);
    reconcile(Arc::new(md.clone()), ctx)
        .await
        .expect("reconcile succeeds");
    finished(server).await
}

fn with_quota(quota: TenantQuota) -> Cluster {
    let mut cluster = Cluster::new();
    cluster.tenant_quotas = vec![quota];
    cluster
}

fn quota_condition(status: &ModelDeploymentStatus) -> (String, String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "QuotaAdmitted")
        .expect("QuotaAdmitted");
    (
        format!("{:?}", c.status),
        c.reason.clone(),
        c.message.clone(),
    )
}

fn config(recorded: &[Recorded]) -> String {
    applied(recorded, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config")
        .to_owned()
}

fn create_script() -> Vec<Expect> {
    vec![
        apply_config_map(),
        apply_deployment(),
        apply_service(),
        Expect::Event { reason: "Created" },
        Expect::ApplyStatus,
    ]
}

/// An admitted resnet18 at generation 1, converged: the cluster and the ModelDeployment.
async fn running_admitted() -> (Cluster, ModelDeployment) {
    let md = model_deployment(resnet18_spec());
    let cluster = with_quota(quota(json!({"replicas": 2}), admitted(1, 1)));
    let recorded = reconcile_with(&cluster, &md, create_script()).await;
    let mut served = cluster.clone();
    for r in recorded
        .iter()
        .filter(|r| matches!(r.expect, Expect::Apply { .. }))
    {
        served.serve(&r.body);
    }
    let mut md = md;
    md.status = Some(status_written(&recorded));
    let settled = reconcile_with(
        &served,
        &md,
        vec![
            Expect::ApplyStatus,
            Expect::Event { reason: "Ready" },
            Expect::Event {
                reason: "RolloutComplete",
            },
        ],
    )
    .await;
    md.status = Some(status_written(&settled));
    (served, md)
}

#[tokio::test]
async fn without_a_quota_the_deployment_is_admitted_and_says_it_is_not_limited() {
    let md = model_deployment(resnet18_spec());
    let recorded = reconcile_with(&Cluster::new(), &md, create_script()).await;
    let status = status_written(&recorded);
    assert_eq!(
        quota_condition(&status),
        (
            "True".into(),
            "NoTenantQuota".into(),
            format!("no TenantQuota for tenant {TENANT}; not limited")
        )
    );
    let config = config(&recorded);
    assert!(
        config.contains(&format!("anonymousTenant: {TENANT}")),
        "{config}"
    );
    assert!(config.contains(&format!("tenant: {TENANT}")), "{config}");
    assert!(
        !config.contains("tenants:"),
        "no budget without a quota: {config}"
    );
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=resnet18,app.kubernetes.io/name=modelplane-runtime")
    );
}

#[tokio::test]
async fn a_deployment_the_quota_has_not_decided_yet_rolls_out_nothing() {
    let md = model_deployment(resnet18_spec());
    let cluster = with_quota(quota(json!({"replicas": 2}), json!({})));
    // Only the status: no owned object, and no Warning for a routine wait.
    let recorded = reconcile_with(&cluster, &md, vec![Expect::ApplyStatus]).await;
    let status = status_written(&recorded);
    let (state, reason, message) = quota_condition(&status);
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("Unknown", "AdmissionPending")
    );
    assert_eq!(
        message,
        "waiting for TenantQuota team-a to admit generation 1"
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "AdmissionPending".into())
    );
}

#[tokio::test]
async fn a_refused_deployment_rolls_out_nothing_and_names_the_limit() {
    let md = model_deployment(resnet18_spec());
    let cluster = with_quota(quota(json!({"replicas": 2}), refused(json!({}), 1)));
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            Expect::ApplyStatus,
            Expect::Event {
                reason: "QuotaExceeded",
            },
        ],
    )
    .await;
    let status = status_written(&recorded);
    assert_eq!(
        quota_condition(&status),
        (
            "False".into(),
            "QuotaExceeded".into(),
            "TenantQuota team-a refused generation 1: replicas: needs 3, 1 over the quota of 2 (0 in use by other ModelDeployments)".into()
        )
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "QuotaExceeded".into())
    );
}

#[tokio::test]
async fn an_admitted_deployment_rolls_out_with_its_tenants_budget() {
    let md = model_deployment(resnet18_spec());
    let cluster = with_quota(quota(json!({"replicas": 2}), admitted(1, 1)));
    let recorded = reconcile_with(&cluster, &md, create_script()).await;
    let status = status_written(&recorded);
    let (state, reason, message) = quota_condition(&status);
    assert_eq!((state.as_str(), reason.as_str()), ("True", "Admitted"));
    assert_eq!(
        message,
        format!("admitted by TenantQuota team-a for tenant {TENANT}")
    );
    let config = config(&recorded);
    for expected in [
        format!("- name: {TENANT}"),
        "priority: 5".to_owned(),
        "perSecond: 20".to_owned(),
        "burst: 40".to_owned(),
        format!("anonymousTenant: {TENANT}"),
    ] {
        assert!(
            config.contains(&expected),
            "{expected} missing from\n{config}"
        );
    }
}

#[tokio::test]
async fn a_refused_scale_up_keeps_what_runs_and_raising_the_quota_rolls_it_out() {
    let (mut cluster, mut md) = running_admitted().await;
    // `kubectl scale`, an HPA through /scale or an edit: spec.runtime.replicas 1 -> 3.
    md.spec.runtime.replicas = 3;
    md.metadata.generation = Some(2);
    cluster.tenant_quotas = vec![quota(json!({"replicas": 2}), refused(admitted(1, 1), 2))];
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            Expect::ApplyStatus,
            Expect::Event {
                reason: "QuotaExceeded",
            },
        ],
    )
    .await;
    assert!(
        recorded
            .iter()
            .all(|r| !matches!(r.expect, Expect::Apply { .. })),
        "nothing running is touched"
    );
    let status = status_written(&recorded);
    assert_eq!(quota_condition(&status).1, "QuotaExceeded");
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "Available".into())
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.message.ends_with("; what runs stays as it is")),
        "{:?}",
        status.conditions
    );
    md.status = Some(status);

    // The quota is raised; its controller records generation 2: the scale-up rolls out.
    cluster.tenant_quotas = vec![quota(json!({"replicas": 3}), admitted(2, 3))];
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            apply_deployment(),
            apply_budget(),
            Expect::Event { reason: "Created" },
            Expect::Event { reason: "Updated" },
            Expect::ApplyStatus,
            Expect::Event {
                reason: "QuotaAdmitted",
            },
        ],
    )
    .await;
    assert_eq!(applied(&recorded, "Deployment")["spec"]["replicas"], 3);
    assert_eq!(quota_condition(&status_written(&recorded)).1, "Admitted");
}

#[tokio::test]
async fn a_budget_change_rewrites_only_the_config_and_rolls_no_pod() {
    let (mut cluster, md) = running_admitted().await;
    let mut changed = quota(json!({"replicas": 2}), admitted(1, 1));
    changed.spec.priority = 50;
    cluster.tenant_quotas = vec![changed];
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![apply_config_map(), Expect::Event { reason: "Updated" }],
    )
    .await;
    assert!(config(&recorded).contains("priority: 50"));
}

#[tokio::test]
async fn a_held_deployment_still_takes_its_tenants_new_budget() {
    let (mut cluster, mut md) = running_admitted().await;
    md.spec.runtime.replicas = 3;
    md.metadata.generation = Some(2);
    let mut changed = quota(json!({"replicas": 2}), refused(admitted(1, 1), 2));
    changed.spec.priority = 50;
    cluster.tenant_quotas = vec![changed];
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            apply_config_map(),
            Expect::Event { reason: "Updated" },
            Expect::ApplyStatus,
            Expect::Event {
                reason: "QuotaExceeded",
            },
        ],
    )
    .await;
    let config = config(&recorded);
    assert!(config.contains("priority: 50"), "{config}");
    assert!(
        recorded.iter().all(|r| r.body["kind"] != "Deployment"),
        "the Deployment keeps its replicas"
    );
}
