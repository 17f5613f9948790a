//! `spec.fallback` against a real cluster: the API server admits it, and the operator
//! renders the breaker and the chain (the fallback ModelDeployment's Service, then the
//! fixed answer) into the runtime config.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use modelplane_api::ModelDeployment;
use modelplane_config::{FallbackHop, RuntimeConfig};
use modelplane_e2e::{
    Operator, TestNamespace, cluster, create_models_claim, eventually, example_model_deployment,
    install_crds,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const FIELD_MANAGER: &str = "modelplane-e2e";

async fn apply(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    model: &str,
    fallback: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let mut md = example_model_deployment("mlp-tensor.yaml")?;
    md.metadata.name = Some(name.to_owned());
    md.metadata.namespace = Some(namespace.to_owned());
    if let Some(model_spec) = md.spec.model.as_mut() {
        model_spec.name = model.to_owned();
    }
    md.spec.fallback = fallback.map(serde_json::from_value).transpose()?;
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &md.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&md),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_fallback_chain_reaches_the_runtime_config() -> anyhow::Result<()> {
    let Some(client) = cluster("the_fallback_chain_reaches_the_runtime_config").await else {
        return Ok(());
    };
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "fallback").await?;
    let mut operator = Operator::spawn(&[&ns.name])?;
    create_models_claim(&client, &ns.name).await?;
    apply(&client, &ns.name, "mlp-small", "mlp-small-model", None).await?;
    let fallback = serde_json::json!({
        "modelDeployment": "mlp-small",
        "timeout": "2s",
        "breaker": {"errorPercent": 25, "openFor": "20s"},
        "response": {"outputs": [{"name": "y", "datatype": "FP32", "shape": [2], "data": ["0", "1"]}]},
    });
    apply(&client, &ns.name, "mlp", "mlp", Some(fallback)).await?;

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let config = eventually("the runtime config with the chain", TIMEOUT, || async {
        let Some(config_map) = config_maps.get_opt("mlp-runtime-config").await? else {
            return Ok(None);
        };
        let yaml = config_map
            .data
            .as_ref()
            .and_then(|d| d.get("config.yaml"))
            .cloned()
            .unwrap_or_default();
        let config = RuntimeConfig::from_yaml(&yaml)?;
        Ok((config.models[0].fallback.len() == 2).then_some(config))
    })
    .await?;
    let model = &config.models[0];
    let Some(FallbackHop::Grpc(remote)) = model.fallback.first() else {
        anyhow::bail!(
            "the first hop is not the fallback's Service: {:?}",
            model.fallback
        );
    };
    assert_eq!(
        remote.address,
        format!("http://mlp-small.{}.svc:8081", ns.name)
    );
    assert_eq!(remote.model, "mlp-small-model");
    assert_eq!(remote.timeout.to_string(), "2s");
    assert!(matches!(model.fallback[1], FallbackHop::Response(_)));
    let breaker = model.breaker.as_ref().expect("breaker");
    assert_eq!(
        (breaker.error_percent, breaker.open_for.to_string()),
        (25, "20s".to_owned())
    );
    operator.assert_running()?;
    ns.delete().await
}
