//! Signed rollouts against a real cluster and a real registry: `examples/classifier-cpu.yaml`
//! (Enforce, key Secret `cosign-pub`) pointed at artifacts in a loopback registry deploys
//! pinned to the signed digests; the same example with an unsigned model is held with
//! `Verified=False`. An HTTP-sourced model under Enforce rolls out with its verification
//! handed to the runtime: the runtime config carries the trusted key and the bundle beside
//! the model, and `Verified=True` says `VerifiedAtLoad`.
//!
//! Needs, besides `KUBECONFIG`: `docker-registry` (Debian), the venv's `oras`, `openssl`.

use std::time::{Duration, Instant};

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Secret},
    },
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use modelplane_api::{ModelDeployment, model_deployment::HttpSource};
use modelplane_config::{BundleSource, RuntimeConfig, SignatureMode};
use modelplane_e2e::{
    FIELD_MANAGER, Operator, TestNamespace, cluster, eventually, example_model_deployment,
    install_crds, registry::TestRegistry,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Applies `examples/classifier-cpu.yaml` as `name`, with its runtime image and model
/// pointed at `image` and `model`.
async fn apply_classifier(
    client: &Client,
    namespace: &str,
    name: &str,
    (image, model): (String, String),
) -> anyhow::Result<ModelDeployment> {
    let mut md = example_model_deployment("classifier-cpu.yaml")?;
    md.metadata.name = Some(name.to_owned());
    md.metadata.namespace = Some(namespace.to_owned());
    md.spec.runtime.image = Some(image);
    if let Some(spec) = md.spec.model.as_mut() {
        spec.source.oci = Some(model);
    }
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(name, &params, &Patch::Apply(&md)).await?)
}

/// Creates the Secret `cosign-pub` holding `pem` in `namespace`.
async fn key_secret(client: &Client, namespace: &str, pem: &str) -> anyhow::Result<()> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("cosign-pub".into()),
            ..Default::default()
        },
        data: Some([("cosign.pub".to_owned(), ByteString(pem.as_bytes().to_vec()))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// The `Verified` condition once the status reports the current generation.
async fn verified(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), namespace);
    eventually("the Verified condition", TIMEOUT, || async {
        let md = api.get(name).await?;
        let generation = md.metadata.generation;
        Ok(md
            .status
            .filter(|s| s.observed_generation == generation)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Verified"))
            .map(|c| (format!("{:?}", c.status), c.reason)))
    })
    .await
}

#[tokio::test]
async fn signed_example_deploys_pinned_and_unsigned_model_is_held() -> anyhow::Result<()> {
    let Some(client) = cluster("signed_example_deploys_pinned").await else {
        return Ok(());
    };
    let registry = TestRegistry::start()?;
    let key = registry.signing_key()?;
    let image_digest = registry.push("modelplane/runtime", "0.1.0", b"runtime image")?;
    registry.sign("modelplane/runtime", &image_digest, &key)?;
    let model_digest = registry.push("modelplane/classifier", "1", b"signed model")?;
    registry.sign("modelplane/classifier", &model_digest, &key)?;
    registry.push("modelplane/classifier", "unsigned", b"unsigned model")?;

    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "verify").await?;
    key_secret(&client, &ns.name, &key.public_pem).await?;
    let addr = registry.addr().to_owned();
    let mut operator = Operator::spawn_with(&[&ns.name], &[format!("--insecure-registry={addr}")])?;

    let image = format!("{addr}/modelplane/runtime:0.1.0");
    let signed = format!("{addr}/modelplane/classifier:1");
    apply_classifier(&client, &ns.name, "signed", (image.clone(), signed)).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let deployment = eventually("the signed Deployment", TIMEOUT, || async {
        Ok(deployments.get_opt("signed").await?)
    })
    .await?;
    let running = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.into_iter().next())
        .and_then(|c| c.image);
    assert_eq!(running, Some(format!("{image}@{image_digest}")));
    assert_eq!(
        verified(&client, &ns.name, "signed").await?,
        ("True".into(), "Verified".into())
    );
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let revision = mds.get("signed").await?.status.and_then(|s| s.revision);
    let revision = revision.expect("revision");
    assert_eq!(revision.model_digest, Some(model_digest));
    assert!(revision.verified_at.is_some());

    let unsigned = format!("{addr}/modelplane/classifier:unsigned");
    let held = apply_classifier(&client, &ns.name, "unsigned", (image, unsigned)).await?;
    assert_eq!(
        verified(&client, &ns.name, &held.name_any()).await?,
        ("False".into(), "NoSignature".into())
    );
    assert!(deployments.get_opt("unsigned").await?.is_none());

    // The signature appears: the held revision is re-checked with backoff, not at the
    // next periodic resync, and then reads Verified.
    let unsigned_digest = registry.push("modelplane/classifier", "unsigned", b"unsigned model")?;
    registry.sign("modelplane/classifier", &unsigned_digest, &key)?;
    let signed_later = Instant::now();
    eventually("the held Deployment once signed", TIMEOUT, || async {
        Ok(deployments.get_opt("unsigned").await?)
    })
    .await?;
    println!(
        "held revision rolled out {:.1?} after its signature appeared",
        signed_later.elapsed()
    );
    eventually(
        "Verified=True on the formerly held revision",
        TIMEOUT,
        || async {
            let status = mds.get("unsigned").await?.status;
            let condition =
                status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Verified"));
            Ok(condition.filter(|c| format!("{:?}", c.status) == "True" && c.reason == "Verified"))
        },
    )
    .await?;
    operator.assert_running()?;
    ns.delete().await
}

#[tokio::test]
async fn http_model_under_enforce_is_handed_to_the_runtime_with_key_and_bundle()
-> anyhow::Result<()> {
    let Some(client) = cluster("http_model_under_enforce_is_handed_to_the_runtime").await else {
        return Ok(());
    };
    let registry = TestRegistry::start()?;
    let key = registry.signing_key()?;
    let image_digest = registry.push("modelplane/runtime", "0.1.0", b"runtime image")?;
    registry.sign("modelplane/runtime", &image_digest, &key)?;

    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "verify-http").await?;
    key_secret(&client, &ns.name, &key.public_pem).await?;
    let addr = registry.addr().to_owned();
    let mut operator = Operator::spawn_with(&[&ns.name], &[format!("--insecure-registry={addr}")])?;

    let mut md = example_model_deployment("classifier-cpu.yaml")?;
    md.metadata.name = Some("http-model".into());
    md.metadata.namespace = Some(ns.name.clone());
    md.spec.runtime.image = Some(format!("{addr}/modelplane/runtime:0.1.0"));
    if let Some(model) = md.spec.model.as_mut() {
        model.source.oci = None;
        model.source.http = Some(HttpSource {
            url: "https://models.example/resnet18/v3/model.pt".into(),
            sha256: "a".repeat(64),
        });
    }
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch("http-model", &params, &Patch::Apply(&md)).await?;

    assert_eq!(
        verified(&client, &ns.name, "http-model").await?,
        ("True".into(), "VerifiedAtLoad".into())
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let config_map = eventually("the runtime config", TIMEOUT, || async {
        Ok(config_maps.get_opt("http-model-runtime-config").await?)
    })
    .await?;
    let text = config_map
        .data
        .and_then(|d| d.get("config.yaml").cloned())
        .unwrap_or_default();
    let config = RuntimeConfig::from_yaml(&text)?;
    let signature = config.models[0].versions[0]
        .signature
        .clone()
        .expect("a signature block");
    assert_eq!(signature.mode, SignatureMode::Enforce);
    assert_eq!(signature.keys[0].pem, key.public_pem);
    assert!(matches!(
        signature.bundle,
        Some(BundleSource::Http(ref http)) if http.url == "https://models.example/resnet18/v3/model.sig"
    ));
    operator.assert_running()?;
    ns.delete().await
}
