//! 300 ModelDeployments converge; prints the time taken and the operator's peak RSS.

use std::time::{Duration, Instant};

use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use modelplane_api::ModelDeployment;
use modelplane_e2e::{FIELD_MANAGER, Operator, TestNamespace, cluster, eventually, install_crds};
use serde_json::json;

const COUNT: usize = 300;

#[tokio::test]
async fn three_hundred_model_deployments_converge() -> anyhow::Result<()> {
    let Some(client) = cluster("three_hundred_model_deployments_converge").await else {
        return Ok(());
    };
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "scale").await?;
    let mut operator = Operator::spawn(&[&ns.name])?;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);

    let started = Instant::now();
    for index in 0..COUNT {
        let name = format!("md-{index:03}");
        // Zero replicas: the operator does all its work, the cluster runs no pods.
        let md: ModelDeployment = serde_json::from_value(json!({
            "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {"name": name, "task": "tensor",
                          "source": {"http": {"url": format!("http://models.invalid/{name}.pt"), "sha256": "0".repeat(64)}}},
                "runtime": {"replicas": 0},
            },
        }))?;
        mds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&md),
        )
        .await?;
    }
    let converged = eventually(
        "all ModelDeployments to converge",
        Duration::from_secs(600),
        || async {
            let list = mds.list(&ListParams::default()).await?;
            let done = list
                .items
                .iter()
                .filter(|md| {
                    md.status.as_ref().and_then(|s| s.observed_generation) == md.metadata.generation
                })
                .filter(|md| {
                    md.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.reason == "ScaledToZero")
                    })
                })
                .count();
            Ok((done == COUNT).then_some(done))
        },
    )
    .await?;
    let elapsed = started.elapsed();
    operator.assert_running()?;
    let rss = operator.peak_rss_kib().map_or("unknown".to_owned(), |kib| {
        format!("{:.1} MiB", kib as f64 / 1024.0)
    });
    println!(
        "scale: {converged} ModelDeployments converged in {elapsed:.1?}; operator peak RSS {rss}"
    );
    ns.delete().await
}
