//! The operator against a real cluster: examples become owned objects with a
//! status, drift is reverted, and deleting a ModelDeployment removes everything.

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use modelplane_api::ModelDeployment;
use modelplane_e2e::{
    Operator, TestNamespace, apply_example, cluster, create_models_claim, eventually, install_crds,
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

fn owned_by(object: &impl Resource, md: &ModelDeployment) -> bool {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && Some(&owner.uid) == md.meta().uid.as_ref())
}

async fn get_opt<K>(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Option<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?)
}

/// Scales the Deployment by hand (another field manager) and waits for the operator to revert it.
async fn assert_hand_edit_is_reverted(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    deployments
        .patch(
            name,
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name}, "spec": {"replicas": 7},
            })),
        )
        .await?;
    eventually("the replicas edit to be reverted", TIMEOUT, || async {
        let replicas = deployments.get(name).await?.spec.and_then(|s| s.replicas);
        Ok((replicas == Some(2)).then_some(()))
    })
    .await?;

    Ok(())
}

#[tokio::test]
async fn example_becomes_owned_objects_with_status_and_is_garbage_collected() -> anyhow::Result<()>
{
    let Some(client) = cluster("example_becomes_owned_objects").await else {
        return Ok(());
    };
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "example").await?;
    let mut operator = Operator::spawn(&[&ns.name])?;
    create_models_claim(&client, &ns.name).await?;
    let md = apply_example(&client, &ns.name, "mlp-tensor.yaml").await?;
    let name = md.name_any();

    let deployment: Deployment = eventually("the Deployment", TIMEOUT, || {
        get_opt(&client, &ns.name, &name)
    })
    .await?;
    assert!(
        owned_by(&deployment, &md),
        "Deployment has a controller ownerReference"
    );
    let service: Service =
        eventually("the Service", TIMEOUT, || get_opt(&client, &ns.name, &name)).await?;
    assert!(owned_by(&service, &md));
    let config_name = format!("{name}-runtime-config");
    let config: ConfigMap = eventually("the ConfigMap", TIMEOUT, || {
        get_opt(&client, &ns.name, &config_name)
    })
    .await?;
    assert!(owned_by(&config, &md));
    let budget: PodDisruptionBudget =
        eventually("the PDB", TIMEOUT, || get_opt(&client, &ns.name, &name)).await?;
    assert!(
        owned_by(&budget, &md),
        "two replicas get a PodDisruptionBudget"
    );

    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let status = eventually("the status", TIMEOUT, || async {
        let md = mds.get(&name).await?;
        Ok(md.status.filter(|s| {
            s.observed_generation == md.metadata.generation && !s.conditions.is_empty()
        }))
    })
    .await?;
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert!(
        types.contains(&"Ready") && types.contains(&"Progressing") && types.contains(&"Degraded"),
        "{types:?}"
    );
    let http = status.endpoints.and_then(|e| e.http);
    assert_eq!(http, Some(format!("http://{name}.{}.svc:8080", ns.name)));

    assert_hand_edit_is_reverted(&client, &ns.name, &name).await?;

    // Garbage collection: deleting the ModelDeployment removes what it owned.
    mds.delete(&name, &DeleteParams::foreground()).await?;
    eventually("garbage collection of the Deployment", TIMEOUT, || async {
        Ok(get_opt::<Deployment>(&client, &ns.name, &name)
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    operator.assert_running()?;
    ns.delete().await
}

#[tokio::test]
async fn missing_secret_is_reported_and_nothing_is_deployed() -> anyhow::Result<()> {
    let Some(client) = cluster("missing_secret_is_reported").await else {
        return Ok(());
    };
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "secret").await?;
    let _operator = Operator::spawn(&[&ns.name])?;
    // classifier-cpu.yaml verifies with the Secret cosign-pub, which does not exist here.
    let md = apply_example(&client, &ns.name, "classifier-cpu.yaml").await?;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let reason = eventually("a Degraded condition", TIMEOUT, || async {
        let md = mds.get(&md.name_any()).await?;
        let degraded = md
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Degraded"));
        Ok(degraded.map(|c| c.reason))
    })
    .await?;
    assert_eq!(reason, "SecretNotFound");
    assert!(
        get_opt::<Deployment>(&client, &ns.name, &md.name_any())
            .await?
            .is_none()
    );
    ns.delete().await
}
