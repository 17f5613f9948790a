//! Many ModelDeployments converge; prints the time taken and the operator's peak RSS.
//!
//! 300 with zero replicas by default. `MODELPLANE_E2E_SCALE=1000` and
//! `MODELPLANE_E2E_SCALE_REPLICAS=1` reproduce the figure in docs/benchmarks.md (the pods
//! stay Pending on a control plane without nodes, but the operator caches and assesses
//! them); at 1,000 or more the operator's peak RSS must stay under 150 MiB.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use modelplane_api::ModelDeployment;
use modelplane_e2e::{FIELD_MANAGER, Operator, TestNamespace, cluster, eventually, install_crds};
use serde_json::json;

/// Peak RSS the operator may reach at 1,000 ModelDeployments.
const MAX_RSS_MIB_AT_1000: f64 = 150.0;

fn setting(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => Ok(value.parse()?),
        Err(_) => Ok(default),
    }
}

#[tokio::test]
async fn three_hundred_model_deployments_converge() -> anyhow::Result<()> {
    let Some(client) = cluster("three_hundred_model_deployments_converge").await else {
        return Ok(());
    };
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "scale").await?;
    let mut operator = Operator::spawn(&[&ns.name])?;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let count = setting("MODELPLANE_E2E_SCALE", 300)?;
    let replicas = setting("MODELPLANE_E2E_SCALE_REPLICAS", 0)?;

    let started = Instant::now();
    for index in 0..count {
        let name = format!("md-{index:03}");
        // Zero replicas by default: the operator does all its work, the cluster runs no pods.
        let md: ModelDeployment = serde_json::from_value(json!({
            "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {"name": name, "task": "tensor",
                          "source": {"http": {"url": format!("http://models.invalid/{name}.pt"), "sha256": "0".repeat(64)}}},
                "runtime": {"replicas": replicas},
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
                        s.conditions.iter().any(|c| {
                            c.type_ == "Ready" && (replicas > 0 || c.reason == "ScaledToZero")
                        })
                    })
                })
                .count();
            Ok((done == count).then_some(done))
        },
    )
    .await?;
    let elapsed = started.elapsed();
    // With replicas the figure counts the pods: wait until the cluster has made all of
    // them (the operator's watch caches each), then give the operator a moment to digest them.
    let wanted = count * replicas;
    if wanted > 0 {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        eventually(
            "the ModelDeployments' pods",
            Duration::from_secs(600),
            || async {
                let made = pods
                    .list_metadata(&ListParams::default())
                    .await?
                    .items
                    .len();
                Ok((made >= wanted).then_some(made))
            },
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    operator.assert_running()?;
    let peak = operator.peak_rss_kib().map(|kib| kib as f64 / 1024.0);
    let rss = peak.map_or("unknown".to_owned(), |mib| format!("{mib:.1} MiB"));
    println!(
        "scale: {converged} ModelDeployments ({replicas} replicas each) converged in {elapsed:.1?}; {wanted} pods; operator peak RSS {rss}"
    );
    if let (true, Some(mib)) = (count >= 1000, peak) {
        anyhow::ensure!(
            mib < MAX_RSS_MIB_AT_1000,
            "operator peak RSS {mib:.1} MiB at {count} ModelDeployments (target < {MAX_RSS_MIB_AT_1000} MiB)"
        );
    }
    ns.delete().await
}
