//! The Canary controller against a real cluster: a runtime-image candidate waits for its
//! target, is then resolved and pinned, and is held `Pending` without traffic (only model
//! candidates are split in the runtime), and `spec.abort` rolls it back; against a real
//! registry, a signed candidate model is verified, pinned and starts its first step (the
//! target's runtime config splits to it), while unsigned and foreign-key candidates are
//! refused and get no traffic.
//!
//! The registry test needs, besides `KUBECONFIG`: `docker-registry` (Debian), the venv's
//! `oras`, `openssl`.

use std::time::Duration;

use k8s_openapi::{
    ByteString,
    api::{apps::v1::Deployment, core::v1::Secret},
};
use kube::{
    Api, Client, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use modelplane_api::{Canary, CanaryStatus, ModelDeployment};
use modelplane_e2e::{
    FIELD_MANAGER, Operator, TestNamespace, apply_example, cluster, create_models_claim,
    eventually, example_model_deployment, install_crds, registry::TestRegistry,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
const CANARY: &str = "mlp-runtime-2";

/// A runtime image pinned by digest: verification `Disabled` resolves it without a registry.
fn candidate_image() -> String {
    format!("ghcr.io/modelplane/runtime@sha256:{}", "1".repeat(64))
}

/// Applies the Canary `name` moving `target` to `candidate`.
async fn apply_canary(
    client: &Client,
    namespace: &str,
    (name, target): (&str, &str),
    candidate: Value,
    abort: bool,
) -> anyhow::Result<()> {
    let canary: Canary = serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRef": {"name": target},
                 "candidate": candidate,
                 "steps": [{"weight": 10}, {"weight": 50}],
                 "abort": abort},
    }))?;
    Api::<Canary>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&canary),
        )
        .await?;
    Ok(())
}

/// The mlp Canary: a new runtime image, pinned by digest.
async fn apply_mlp_canary(client: &Client, namespace: &str, abort: bool) -> anyhow::Result<()> {
    let candidate = json!({"runtime": {"image": candidate_image()}});
    apply_canary(client, namespace, (CANARY, "mlp"), candidate, abort).await
}

fn reason(status: &CanaryStatus, type_: &str) -> Option<String> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.clone())
}

/// Waits until the `Progressing` reason of Canary `name` is `wanted`; returns the status.
async fn progressing_of(
    client: &Client,
    namespace: &str,
    name: &str,
    wanted: &str,
) -> anyhow::Result<CanaryStatus> {
    let canaries: Api<Canary> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("{name}: Progressing reason {wanted}"),
        TIMEOUT,
        || async {
            let canary = canaries.get(name).await?;
            let current = canary.metadata.generation;
            Ok(canary.status.filter(|s| {
                s.observed_generation == current
                    && reason(s, "Progressing").as_deref() == Some(wanted)
            }))
        },
    )
    .await
}

/// Waits until the mlp Canary's `Progressing` reason is `wanted`; returns the status.
async fn progressing(
    client: &Client,
    namespace: &str,
    wanted: &str,
) -> anyhow::Result<CanaryStatus> {
    progressing_of(client, namespace, CANARY, wanted).await
}

#[tokio::test]
async fn candidate_waits_for_its_target_is_pinned_and_gets_no_traffic() -> anyhow::Result<()> {
    let Some(client) = cluster("candidate_waits_for_its_target").await else {
        return Ok(());
    };
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "canary").await?;
    let mut operator = Operator::spawn(&[&ns.name])?;

    apply_mlp_canary(&client, &ns.name, false).await?;
    let waiting = progressing(&client, &ns.name, "TargetNotFound").await?;
    assert_eq!(format!("{:?}", waiting.phase), "Pending");

    // The target appears: the ModelDeployment watch re-reconciles the Canary.
    create_models_claim(&client, &ns.name).await?;
    apply_example(&client, &ns.name, "mlp-tensor.yaml").await?;
    let admitted = progressing(&client, &ns.name, "CandidateNotSplittable").await?;
    assert_eq!(format!("{:?}", admitted.phase), "Pending");
    assert_eq!(admitted.weight, 0);
    // No traffic goes to the candidate: the target's pods still run the target's image.
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    let deployment = eventually("the target's Deployment", TIMEOUT, || async {
        Ok(deployments.get_opt("mlp").await?)
    })
    .await?;
    let images: Vec<String> = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .map(|pod| pod.containers.into_iter().filter_map(|c| c.image).collect())
        .unwrap_or_default();
    assert!(!images.is_empty(), "the target's Deployment runs a runtime");
    assert!(
        images.iter().all(|image| *image != candidate_image()),
        "the candidate image must not reach the target's pods: {images:?}"
    );
    assert_eq!(
        reason(&admitted, "Verified").as_deref(),
        Some("VerificationDisabled")
    );
    let candidate = admitted.candidate.expect("status.candidate");
    let digest = format!("sha256:{}", "1".repeat(64));
    assert_eq!(candidate.image_digest, Some(digest));

    apply_mlp_canary(&client, &ns.name, true).await?;
    let aborted = progressing(&client, &ns.name, "Aborted").await?;
    assert_eq!(format!("{:?}", aborted.phase), "RolledBack");
    operator.assert_running()?;
    ns.delete().await
}

/// Creates the Secret `cosign-pub` holding `public_pem`.
async fn create_key_secret(
    client: &Client,
    namespace: &str,
    public_pem: &str,
) -> anyhow::Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("cosign-pub".into()),
            ..ObjectMeta::default()
        },
        data: Some(
            [(
                "cosign.pub".to_owned(),
                ByteString(public_pem.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// Applies `examples/classifier-cpu.yaml` (Enforce, key Secret `cosign-pub`) with its runtime
/// image and model pointed at the test registry.
async fn apply_classifier(
    client: &Client,
    namespace: &str,
    image: &str,
    model: &str,
) -> anyhow::Result<()> {
    let mut md = example_model_deployment("classifier-cpu.yaml")?;
    md.metadata.namespace = Some(namespace.to_owned());
    md.spec.runtime.image = Some(image.to_owned());
    if let Some(spec) = md.spec.model.as_mut() {
        spec.source.oci = Some(model.to_owned());
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<ModelDeployment>::namespaced(client.clone(), namespace)
        .patch(&md.name_any(), &params, &Patch::Apply(&md))
        .await?;
    Ok(())
}

#[tokio::test]
async fn signed_candidate_is_pinned_and_unsigned_or_foreign_candidates_are_refused()
-> anyhow::Result<()> {
    let Some(client) = cluster("signed_candidate_is_pinned").await else {
        return Ok(());
    };
    let registry = TestRegistry::start()?;
    let key = registry.signing_key()?;
    let image_digest = registry.push("modelplane/runtime", "0.1.0", b"runtime image")?;
    registry.sign("modelplane/runtime", &image_digest, &key)?;
    let stable_digest = registry.push("modelplane/classifier", "1", b"stable model")?;
    registry.sign("modelplane/classifier", &stable_digest, &key)?;
    let candidate_digest = registry.push("modelplane/classifier", "2", b"candidate model")?;
    registry.sign("modelplane/classifier", &candidate_digest, &key)?;
    registry.push("modelplane/classifier", "unsigned", b"unsigned model")?;
    // A second key pair (it replaces the first's files; its signatures are already pushed).
    let foreign = registry.signing_key()?;
    let foreign_digest = registry.push("modelplane/classifier", "foreign", b"foreign model")?;
    registry.sign("modelplane/classifier", &foreign_digest, &foreign)?;

    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "canary-verify").await?;
    create_key_secret(&client, &ns.name, &key.public_pem).await?;
    let addr = registry.addr().to_owned();
    let mut operator = Operator::spawn_with(&[&ns.name], &[format!("--insecure-registry={addr}")])?;
    let image = format!("{addr}/modelplane/runtime:0.1.0");
    apply_classifier(
        &client,
        &ns.name,
        &image,
        &format!("{addr}/modelplane/classifier:1"),
    )
    .await?;

    let model = |tag: &str| json!({"model": {"source": {"oci": format!("{addr}/modelplane/classifier:{tag}")}}});
    let target = "classifier";
    apply_canary(&client, &ns.name, ("signed", target), model("2"), false).await?;
    apply_canary(
        &client,
        &ns.name,
        ("unsigned", target),
        model("unsigned"),
        false,
    )
    .await?;
    apply_canary(
        &client,
        &ns.name,
        ("foreign", target),
        model("foreign"),
        false,
    )
    .await?;

    let signed = progressing_of(&client, &ns.name, "signed", "Stepping").await?;
    assert_eq!(reason(&signed, "Verified").as_deref(), Some("Verified"));
    assert_eq!(format!("{:?}", signed.phase), "Progressing");
    assert_eq!((signed.step, signed.weight), (0, 10));
    // The target's runtime config now serves the pinned candidate beside stable at 10 %.
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &ns.name);
    let pinned_candidate = format!("@{candidate_digest}");
    let config = eventually(
        "the split in the target's runtime config",
        TIMEOUT,
        || async {
            let text = config_maps
                .get_opt(&format!("{target}-runtime-config"))
                .await?
                .and_then(|c| c.data)
                .and_then(|d| d.get("config.yaml").cloned())
                .unwrap_or_default();
            Ok((text.contains("canary:") && text.contains(&pinned_candidate)).then_some(text))
        },
    )
    .await?;
    assert!(config.contains("weight: 10"), "{config}");
    let record = signed.candidate.expect("status.candidate");
    assert_eq!(record.model_digest, Some(candidate_digest));
    assert_eq!(record.image_digest, Some(image_digest));
    assert!(record.verified_at.is_some());

    for (name, wanted) in [("unsigned", "NoSignature"), ("foreign", "WrongKey")] {
        let refused = progressing_of(&client, &ns.name, name, "VerificationFailed").await?;
        assert_eq!(format!("{:?}", refused.phase), "Failed", "{name}");
        assert_eq!(
            reason(&refused, "Verified").as_deref(),
            Some(wanted),
            "{name}"
        );
        let pinned = refused.candidate.and_then(|c| c.model_digest);
        assert_eq!(pinned, None, "{name}: nothing pinned");
    }
    operator.assert_running()?;
    ns.delete().await
}
