//! TenantQuota against a real API server: admission oldest first, a scale-up through the
//! scale subresource refused without touching what runs, and raising the quota admitting
//! what waited — with the record written under resourceVersion preconditions.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
};
use modelplane_api::{ModelDeployment, TenantQuota};
use modelplane_e2e::{FIELD_MANAGER, Operator, TestNamespace, cluster, eventually, install_crds};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn apply_md(api: &Api<ModelDeployment>, name: &str, replicas: i32) -> anyhow::Result<()> {
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": name, "task": "tensor",
                      "source": {"http": {"url": format!("http://models.invalid/{name}.pt"), "sha256": "0".repeat(64)}}},
            "runtime": {"replicas": replicas},
        },
    }))?;
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&md),
    )
    .await?;
    Ok(())
}

async fn apply_quota(
    quotas: &Api<TenantQuota>,
    name: &str,
    namespace: &str,
    replicas: i32,
) -> anyhow::Result<()> {
    let quota = json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "TenantQuota",
        "metadata": {"name": name},
        "spec": {"namespaces": [namespace], "hard": {"replicas": replicas, "modelDeployments": 3},
                 "requests": {"perSecond": 10, "burst": 20}, "priority": 3},
    });
    quotas
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&quota),
        )
        .await?;
    Ok(())
}

/// Waits until the quota's record says `admitted` and `rejected` (as `namespace/name`).
async fn record_says(
    quotas: &Api<TenantQuota>,
    name: &str,
    admitted: &[String],
    rejected: &[String],
) -> anyhow::Result<()> {
    eventually(
        &format!("TenantQuota {name} to admit {admitted:?} and refuse {rejected:?}"),
        TIMEOUT,
        || async {
            let status = quotas.get(name).await?.status.unwrap_or_default();
            let refused: Vec<String> = status.rejected.iter().map(|r| r.name.clone()).collect();
            Ok((status.admitted == admitted && refused == rejected).then_some(()))
        },
    )
    .await
}

async fn quota_reason(api: &Api<ModelDeployment>, name: &str, reason: &str) -> anyhow::Result<()> {
    eventually(
        &format!("{name} QuotaAdmitted reason {reason}"),
        TIMEOUT,
        || async {
            let md = api.get(name).await?;
            let status = md.status.unwrap_or_default();
            let found = status.conditions.iter().any(|c| {
                c.type_ == "QuotaAdmitted"
                    && c.reason == reason
                    && c.observed_generation == md.metadata.generation
            });
            Ok(found.then_some(()))
        },
    )
    .await
}

async fn deployment_replicas(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Option<i32>> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    Ok(deployments
        .get_opt(name)
        .await?
        .and_then(|d| d.spec.and_then(|s| s.replicas)))
}

async fn wait_replicas(
    client: &Client,
    namespace: &str,
    name: &str,
    want: i32,
) -> anyhow::Result<()> {
    eventually(
        &format!("Deployment {name} at {want} replicas"),
        TIMEOUT,
        || async {
            let replicas = deployment_replicas(client, namespace, name).await?;
            Ok((replicas == Some(want)).then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn the_quota_admits_refuses_scale_ups_and_admits_when_raised() -> anyhow::Result<()> {
    let Some(client) = cluster("the_quota_admits_refuses_scale_ups_and_admits_when_raised").await
    else {
        return Ok(());
    };
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "quota").await?;
    let mut operator = Operator::spawn(&[&ns.name])?;
    let quotas: Api<TenantQuota> = Api::all(client.clone());
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let quota = ns.name.clone();
    let key = |name: &str| format!("{}/{name}", ns.name);

    apply_quota(&quotas, &quota, &ns.name, 2).await?;
    apply_md(&mds, "first", 1).await?;
    // One creation second later: the older one is decided first.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply_md(&mds, "second", 2).await?;
    record_says(&quotas, &quota, &[key("first")], &[key("second")]).await?;
    quota_reason(&mds, "second", "QuotaExceeded").await?;
    quota_reason(&mds, "first", "Admitted").await?;
    wait_replicas(&client, &ns.name, "first", 1).await?;
    assert_eq!(
        deployment_replicas(&client, &ns.name, "second").await?,
        None,
        "a refused deployment is not rolled out"
    );
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &ns.name);
    let config = config_maps.get("first-runtime-config").await?;
    let yaml = config
        .data
        .and_then(|d| d.get("config.yaml").cloned())
        .unwrap_or_default();
    anyhow::ensure!(
        yaml.contains("perSecond: 10"),
        "budget in the config:\n{yaml}"
    );

    // What an HPA does: the scale subresource. 2 fits, 3 does not.
    let scale = |replicas: i32| Patch::Merge(json!({"spec": {"replicas": replicas}}));
    mds.patch_scale("first", &PatchParams::default(), &scale(2))
        .await?;
    wait_replicas(&client, &ns.name, "first", 2).await?;
    mds.patch_scale("first", &PatchParams::default(), &scale(3))
        .await?;
    quota_reason(&mds, "first", "QuotaExceeded").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        deployment_replicas(&client, &ns.name, "first").await?,
        Some(2),
        "a refused scale-up keeps what runs"
    );

    // Raising the quota admits both, with no other action.
    apply_quota(&quotas, &quota, &ns.name, 5).await?;
    record_says(&quotas, &quota, &[key("first"), key("second")], &[]).await?;
    wait_replicas(&client, &ns.name, "first", 3).await?;
    wait_replicas(&client, &ns.name, "second", 2).await?;
    let status = quotas.get(&quota).await?.status.unwrap_or_default();
    assert_eq!(status.summary.replicas, "5/5");
    assert_eq!(status.summary.model_deployments, "2/3");

    operator.assert_running()?;
    quotas.delete(&quota, &DeleteParams::default()).await?;
    ns.delete().await
}
