//! The Canary controller against a real cluster: a runtime-image candidate waits for its
//! target, is then resolved and pinned and runs as a second Deployment behind the target's
//! Service until `spec.abort` rolls it back and removes it; against a real registry, a
//! signed candidate model is verified, pinned and starts its first step (the target's
//! runtime config splits to it), while unsigned and foreign-key candidates are refused and
//! get no traffic; judged on a stand-in pod's runtime metrics, a healthy candidate steps
//! through and is promoted and an erroring one is rolled back within one interval.
//!
//! The registry test needs, besides `KUBECONFIG`: `docker-registry` (Debian), the venv's
//! `oras`, `openssl`. The analysis tests bind port 8080 on 127.77.0.2 and 127.77.0.3 (see
//! `MetricsPod`).

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
    let spec = json!({"targetRef": {"name": target},
                      "candidate": candidate,
                      "steps": [{"weight": 10}, {"weight": 50}],
                      "abort": abort});
    apply_canary_spec(client, namespace, name, spec).await
}

/// Applies the Canary `name` with `spec`.
async fn apply_canary_spec(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: Value,
) -> anyhow::Result<()> {
    let canary: Canary = serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
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

/// The image of the pods of Deployment `name`, once it exists.
async fn images_of(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Deployment> {
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    eventually(&format!("Deployment {name}"), TIMEOUT, || async {
        Ok(deployments.get_opt(name).await?)
    })
    .await
}

fn pod_images(deployment: &Deployment) -> Vec<String> {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .map(|pod| {
            pod.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn runtime_image_candidate_waits_for_its_target_then_runs_beside_it_until_aborted()
-> anyhow::Result<()> {
    let Some(client) = cluster("runtime_image_candidate_runs_beside_its_target").await else {
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
    let stepping = progressing(&client, &ns.name, "Stepping").await?;
    assert_eq!(format!("{:?}", stepping.phase), "Progressing");
    assert_eq!((stepping.step, stepping.weight), (0, 10));
    assert_eq!(
        reason(&stepping, "Verified").as_deref(),
        Some("VerificationDisabled")
    );
    let digest = format!("sha256:{}", "1".repeat(64));
    let record = stepping.candidate.expect("status.candidate");
    assert_eq!(record.image_digest, Some(digest));

    // The candidate runs as `mlp-canary`: one pod beside stable's two at 10 %, behind the
    // same Service; stable's pods keep their image.
    let candidate = images_of(&client, &ns.name, "mlp-canary").await?;
    assert_eq!(pod_images(&candidate), vec![candidate_image()]);
    let spec = candidate.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let stable = images_of(&client, &ns.name, "mlp").await?;
    assert!(
        pod_images(&stable)
            .iter()
            .all(|image| *image != candidate_image()),
        "the candidate image must not reach the target's pods: {:?}",
        pod_images(&stable)
    );
    let service = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), &ns.name)
        .get("mlp")
        .await?;
    let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
    let labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "the Service {selector:?} must select the candidate's pods {labels:?}"
    );
    let config_maps =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns.name);
    assert!(
        config_maps
            .get_opt("mlp-canary-runtime-config")
            .await?
            .is_some()
    );

    // Abort: rolled back, and the candidate's Deployment and config are gone.
    apply_mlp_canary(&client, &ns.name, true).await?;
    let aborted = progressing(&client, &ns.name, "Aborted").await?;
    assert_eq!(
        (format!("{:?}", aborted.phase), aborted.weight),
        ("RolledBack".into(), 0)
    );
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    eventually("mlp-canary deleted", TIMEOUT, || async {
        let gone = deployments.get_opt("mlp-canary").await?.is_none()
            && config_maps
                .get_opt("mlp-canary-runtime-config")
                .await?
                .is_none();
        Ok(gone.then_some(()))
    })
    .await?;
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

/// The runtime's port: the operator scrapes `http://<pod IP>:8080/metrics`.
const RUNTIME_PORT: u16 = 8080;

/// One version's traffic per scrape: (model, version label, successes, internal errors).
type VersionTraffic = (String, String, u64, u64);

/// A stand-in runtime pod for a cluster without kubelets: a Pod labelled as the target's,
/// marked Ready at `ip` (a loopback address), and an HTTP server on `ip:8080` whose
/// `/metrics` serves the runtime's `modelplane_requests_total` counters (in the runtime's
/// exposition format) growing by the set traffic at every scrape. The operator scrapes it
/// like any runtime pod. Needs `ip:8080` free on this host.
struct MetricsPod {
    traffic: std::sync::Arc<std::sync::Mutex<Vec<VersionTraffic>>>,
    server: tokio::task::JoinHandle<()>,
}

impl MetricsPod {
    async fn start(
        client: &Client,
        namespace: &str,
        target: &str,
        ip: std::net::Ipv4Addr,
    ) -> anyhow::Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind((ip, RUNTIME_PORT))
            .await
            .map_err(|e| {
                anyhow::anyhow!("{ip}:{RUNTIME_PORT} must be free for the stand-in pod: {e}")
            })?;
        let traffic = std::sync::Arc::new(std::sync::Mutex::new(Vec::<VersionTraffic>::new()));
        let shared = traffic.clone();
        let server = tokio::spawn(async move {
            let mut scrapes = 0u64;
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                scrapes += 1;
                let body = exposition(&shared.lock().expect("traffic"), scrapes);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("{target}-stand-in"),
                         "labels": {"app.kubernetes.io/name": "modelplane-runtime",
                                    "app.kubernetes.io/instance": target}},
            // Bound to a node that does not exist: no scheduler or kubelet touches it (on
            // kind too), so the status set below stays as set.
            "spec": {"nodeName": "modelplane-e2e-no-such-node",
                     "containers": [{"name": "runtime", "image": candidate_image()}]},
        }))?;
        let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), namespace);
        pods.create(&PostParams::default(), &pod).await?;
        let status = json!({"status": {
            "phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }});
        pods.patch_status(
            &format!("{target}-stand-in"),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
        Ok(Self { traffic, server })
    }

    fn serve(&self, traffic: Vec<VersionTraffic>) {
        *self.traffic.lock().expect("traffic") = traffic;
    }
}

impl Drop for MetricsPod {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The counters after `scrapes` scrapes of `traffic`.
fn exposition(traffic: &[VersionTraffic], scrapes: u64) -> String {
    let mut text = String::from(
        "# HELP modelplane_requests_total Requests by model, version, tenant and outcome.\n# TYPE modelplane_requests_total counter\n",
    );
    for (model, version, ok, errors) in traffic {
        for (outcome, per_scrape) in [("success", ok), ("internal", errors)] {
            text.push_str(&format!(
                "modelplane_requests_total{{model=\"{model}\",version=\"{version}\",tenant=\"anonymous\",outcome=\"{outcome}\"}} {}\n",
                per_scrape * scrapes
            ));
        }
    }
    text
}

/// The model and the (stable, candidate) version labels in `target`'s runtime config, once
/// it splits to a candidate.
async fn split_labels(
    client: &Client,
    namespace: &str,
    target: &str,
) -> anyhow::Result<(String, String, String)> {
    let config_maps =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), namespace);
    eventually(
        "the split in the target's runtime config",
        TIMEOUT,
        || async {
            let yaml = config_maps
                .get_opt(&format!("{target}-runtime-config"))
                .await?
                .and_then(|c| c.data)
                .and_then(|d| d.get("config.yaml").cloned())
                .unwrap_or_default();
            let Ok(config) = modelplane_config::RuntimeConfig::from_yaml(&yaml) else {
                return Ok(None);
            };
            Ok(config.models.into_iter().find_map(|model| {
                let candidate = model.canary.as_ref()?.candidate.clone();
                let stable = model.default_version()?.to_owned();
                Some((model.name, stable, candidate))
            }))
        },
    )
    .await
}

/// A model Canary on `mlp` scaled to zero (no real pods anywhere), judged every 2 s on the
/// stand-in pod at `ip` serving `ok`/`errors` per scrape for the candidate (stable: 400
/// successes), until its `Progressing` reason is `until`.
async fn judged_canary(
    ip: std::net::Ipv4Addr,
    (ok, errors): (u64, u64),
    until: &str,
) -> anyhow::Result<Judged> {
    let Some(client) = cluster("judged_canary").await else {
        anyhow::bail!("no cluster");
    };
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "canary-judged").await?;
    let mut operator = Operator::spawn(&[&ns.name])?;
    create_models_claim(&client, &ns.name).await?;
    let mut md = example_model_deployment("mlp-tensor.yaml")?;
    md.metadata.namespace = Some(ns.name.clone());
    md.spec.runtime.replicas = 0;
    Api::<ModelDeployment>::namespaced(client.clone(), &ns.name)
        .patch(
            "mlp",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&md),
        )
        .await?;
    let pod = MetricsPod::start(&client, &ns.name, "mlp", ip).await?;
    let spec = json!({
        "targetRef": {"name": "mlp"},
        "candidate": {"model": {"source": {"pvc": {"claimName": "models", "path": "mlp/2/model.pt"}}}},
        "steps": [{"weight": 10}, {"weight": 50}],
        "analysis": {"interval": "2s", "minSamples": 20,
                     "metrics": [{"name": "errorRate", "max": 0.01}]},
    });
    apply_canary_spec(&client, &ns.name, "mlp-v2", spec).await?;
    let (model, stable, candidate) = split_labels(&client, &ns.name, "mlp").await?;
    pod.serve(vec![
        (model.clone(), stable, 400, 0),
        (model, candidate, ok, errors),
    ]);
    let status = progressing_of(&client, &ns.name, "mlp-v2", until).await?;
    operator.assert_running()?;
    let config = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns.name)
        .get("mlp-runtime-config")
        .await?
        .data
        .and_then(|d| d.get("config.yaml").cloned())
        .unwrap_or_default();
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns.name)
        .list(&Default::default())
        .await?;
    let mut notes: Vec<(String, String)> = events
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Canary"))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    notes.sort();
    drop(pod);
    ns.delete().await?;
    Ok(Judged {
        status,
        config,
        events: notes,
    })
}

/// How a judged Canary ended.
struct Judged {
    /// Its status.
    status: CanaryStatus,
    /// The target's runtime config then.
    config: String,
    /// The Canary's Events as (reason, message), sorted.
    events: Vec<(String, String)>,
}

#[tokio::test]
async fn a_healthy_candidate_steps_through_and_is_promoted() -> anyhow::Result<()> {
    if cluster("a_healthy_candidate_is_promoted").await.is_none() {
        return Ok(());
    }
    let Judged {
        status,
        config,
        events,
    } = judged_canary([127, 77, 0, 2].into(), (50, 0), "Promoted").await?;
    assert_eq!(format!("{:?}", status.phase), "Succeeded");
    // Both steps ran, each passing an analysis of its own.
    for step in ["step 1: weight 10%", "step 2: weight 50%"] {
        assert!(
            events
                .iter()
                .any(|(reason, note)| reason == "StepStarted" && note.starts_with(step)),
            "{step}: {events:#?}"
        );
    }
    let passed = events.iter().filter(|(r, _)| r == "AnalysisPassed").count();
    assert!(passed >= 1, "{events:#?}");
    let promotion = status.promotion.expect("status.promotion");
    assert!(
        format!("{:?}", promotion.changes).contains("mlp/2/model.pt"),
        "the spec change to commit names the candidate: {:?}",
        promotion.changes
    );
    // The target serves the candidate as its only version.
    assert!(!config.contains("canary:"), "{config}");
    assert!(config.contains("mlp/2/model.pt"), "{config}");
    Ok(())
}

#[tokio::test]
async fn an_erroring_candidate_is_rolled_back_within_one_interval() -> anyhow::Result<()> {
    if cluster("an_erroring_candidate_is_rolled_back")
        .await
        .is_none()
    {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let Judged { status, config, .. } =
        judged_canary([127, 77, 0, 3].into(), (25, 25), "AnalysisFailed").await?;
    assert_eq!(
        (format!("{:?}", status.phase), status.weight),
        ("RolledBack".into(), 0)
    );
    let analysis = status.last_analysis.expect("status.lastAnalysis");
    let error_rate = &analysis.metrics[0];
    assert_eq!(error_rate.name, "errorRate");
    assert!(
        error_rate.candidate.unwrap_or_default() > 0.4,
        "{error_rate:?}"
    );
    assert!(
        error_rate.candidate_samples.unwrap_or_default() >= 20,
        "{error_rate:?}"
    );
    // Stable alone serves again.
    assert!(!config.contains("canary:"), "{config}");
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn a_runtime_image_candidate_waits_for_quota_room_for_its_own_pods() -> anyhow::Result<()> {
    let Some(client) = cluster("a_runtime_image_candidate_waits_for_quota").await else {
        return Ok(());
    };
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "canary-quota").await?;
    let mut operator = Operator::spawn(&[&ns.name])?;
    let quota_name = format!("{}-quota", ns.name);
    let apply_quota = |cpu: &'static str| {
        let client = client.clone();
        let (quota_name, namespace) = (quota_name.clone(), ns.name.clone());
        async move {
            let quota = json!({
                "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "TenantQuota",
                "metadata": {"name": quota_name},
                "spec": {"namespaces": [namespace], "hard": {"cpu": cpu}},
            });
            Api::<modelplane_api::TenantQuota>::all(client)
                .patch(
                    &quota_name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&quota),
                )
                .await
        }
    };
    // The target's 2 pods of 500m fill the quota; the candidate's pods at its largest step
    // (50 %: as many as stable's) do not fit.
    apply_quota("1").await?;
    create_models_claim(&client, &ns.name).await?;
    apply_example(&client, &ns.name, "mlp-tensor.yaml").await?;
    apply_mlp_canary(&client, &ns.name, false).await?;
    // Held first while the quota has not decided, then with the refusal's numbers.
    let canaries: Api<Canary> = Api::namespaced(client.clone(), &ns.name);
    let held = eventually("the quota's refusal on the Canary", TIMEOUT, || async {
        let status = canaries.get(CANARY).await?.status;
        Ok(status.filter(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == "Progressing"
                    && c.reason == "QuotaNotAdmitted"
                    && c.message.contains("over the quota")
            })
        }))
    })
    .await?;
    assert_eq!(
        (format!("{:?}", held.phase), held.weight),
        ("Pending".into(), 0)
    );
    let message = held
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("cpu: needs 1, 1 over the quota of 1"),
        "{message}"
    );
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    assert!(deployments.get_opt("mlp-canary").await?.is_none());

    // Room for it: the candidate starts and its pod runs.
    apply_quota("2").await?;
    let stepping = progressing(&client, &ns.name, "Stepping").await?;
    assert_eq!(stepping.weight, 10);
    images_of(&client, &ns.name, "mlp-canary").await?;
    operator.assert_running()?;
    let quotas = Api::<modelplane_api::TenantQuota>::all(client.clone());
    quotas.delete(&quota_name, &Default::default()).await?;
    ns.delete().await
}
