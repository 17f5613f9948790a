//! Reconcile against a scripted API server: which requests each situation causes.

use serde_json::{Value, json};

use super::reconcile;
use crate::fixtures::{
    Cluster, Expect, NAME, RUNTIME_DIGEST, Recorded, applied, apply_budget, apply_config_map,
    apply_deployment, apply_service, condition, context, finished, model_deployment, oci, path,
    resnet18_spec, status_written,
};
use modelplane_api::{
    condition::Condition,
    model_deployment::{ModelDeployment, ModelDeploymentStatus},
};

/// Runs one reconcile of `md` over `cluster` against `script`; returns the bodies received.
async fn reconcile_with(
    cluster: &Cluster,
    md: &ModelDeployment,
    script: Vec<Expect>,
) -> Vec<Recorded> {
    let (ctx, server) = context(cluster, md);
    let server = server.run(script);
    reconcile(std::sync::Arc::new(md.clone()), ctx)
        .await
        .expect("reconcile succeeds");
    finished(server).await
}

fn rollout_hash(deployment: &Value) -> String {
    deployment["spec"]["template"]["metadata"]["annotations"]["modelplane.io/rollout-hash"]
        .as_str()
        .expect("rollout hash")
        .to_owned()
}

/// Creates `md` from scratch and returns the cluster as the API server would then show it,
/// with `md` carrying the status that was written.
async fn converged(md: &ModelDeployment, script: Vec<Expect>) -> (Cluster, ModelDeployment) {
    let recorded = reconcile_with(&Cluster::new(), md, script).await;
    let mut cluster = Cluster::new();
    for r in recorded
        .iter()
        .filter(|r| matches!(r.expect, Expect::Apply { .. }))
    {
        cluster.serve(&r.body);
    }
    // The Deployment now reports its pods ready: settle the status on that.
    let mut md = md.clone();
    md.status = Some(status_written(&recorded));
    let settled = reconcile_with(
        &cluster,
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
    (cluster, md)
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

#[tokio::test]
async fn new_model_deployment_gets_owned_objects_and_a_creating_status() {
    let md = model_deployment(resnet18_spec());
    let recorded = reconcile_with(&Cluster::new(), &md, create_script()).await;

    for kind in ["ConfigMap", "Deployment", "Service"] {
        let object = applied(&recorded, kind);
        let owner = &object["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], "uid-resnet18", "{kind}");
        assert_eq!(owner["controller"], true, "{kind}");
        assert_eq!(
            object["metadata"]["labels"]["modelplane.io/tenant"], "team-a-tenant",
            "{kind}"
        );
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "modelplane-operator"
        );
    }
    let config = applied(&recorded, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config");
    assert!(config.contains(&oci('a')), "{config}");

    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "Creating".into())
    );
    assert_eq!(
        condition(&status, "Progressing"),
        ("True".into(), "Creating".into())
    );
    assert_eq!(status.observed_generation, Some(1));
    let endpoints = status.endpoints.expect("endpoints");
    assert_eq!(
        endpoints.http.as_deref(),
        Some("http://resnet18.team-a.svc:8080")
    );
    assert_eq!(endpoints.grpc.as_deref(), Some("resnet18.team-a.svc:8081"));
    let revision = status.revision.expect("revision");
    assert_eq!(
        revision.model_digest,
        Some(format!("sha256:{}", "a".repeat(64)))
    );
    assert_eq!(
        revision.id,
        Some(rollout_hash(applied(&recorded, "Deployment")))
    );
}

#[tokio::test]
async fn converged_model_deployment_reconciles_without_any_request() {
    let md = model_deployment(resnet18_spec());
    let (cluster, md) = converged(&md, create_script()).await;
    assert_eq!(md.status.as_ref().map(|s| s.ready_replicas), Some(1));
    let recorded = reconcile_with(&cluster, &md, vec![]).await;
    assert!(recorded.is_empty());
}

#[tokio::test]
async fn model_change_rolls_the_pods() {
    let (cluster, mut md) = converged(&model_deployment(resnet18_spec()), create_script()).await;
    let before = rollout_hash(&serde_json::to_value(&cluster.deployments[0]).expect("json"));
    md.spec.model.as_mut().expect("model").source.oci = Some(oci('b'));
    md.metadata.generation = Some(2);
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            apply_config_map(),
            apply_deployment(),
            Expect::Event {
                reason: "RolloutStarted",
            },
            Expect::ApplyStatus,
        ],
    )
    .await;
    assert_ne!(rollout_hash(applied(&recorded, "Deployment")), before);
}

#[tokio::test]
async fn hot_reloadable_change_updates_the_config_without_rolling_pods() {
    // Batching and limits (and canary weights, later) live in the runtime config,
    // which the runtime reloads: only the ConfigMap is written.
    let (cluster, mut md) = converged(&model_deployment(resnet18_spec()), create_script()).await;
    md.spec.runtime.limits.max_in_flight = 64;
    md.spec.runtime.batching.max_queue_delay = "5ms".into();
    md.metadata.generation = Some(2);
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            apply_config_map(),
            Expect::Event { reason: "Updated" },
            Expect::ApplyStatus,
        ],
    )
    .await;
    let config = applied(&recorded, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config");
    assert!(config.contains("maxInFlight: 64"), "{config}");
}

#[tokio::test]
async fn hand_edited_deployment_is_reverted_and_reported() {
    let (mut cluster, md) = converged(&model_deployment(resnet18_spec()), create_script()).await;
    let spec = cluster.deployments[0].spec.as_mut().expect("spec");
    spec.template.spec.as_mut().expect("pod").containers[0].image =
        Some("evil/image:latest".into());
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            apply_deployment(),
            Expect::Event {
                reason: "DriftReverted",
            },
        ],
    )
    .await;
    let image =
        &applied(&recorded, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(
        image.as_str(),
        Some(format!("ghcr.io/modelplane/runtime:0.1.0@{RUNTIME_DIGEST}").as_str())
    );
    let note = recorded[1].body["note"].as_str().expect("note");
    assert!(
        note.contains("spec.template.spec.containers[runtime].image"),
        "{note}"
    );
}

#[tokio::test]
async fn deleted_owned_object_is_recreated() {
    let (mut cluster, md) = converged(&model_deployment(resnet18_spec()), create_script()).await;
    cluster.services.clear();
    reconcile_with(
        &cluster,
        &md,
        vec![apply_service(), Expect::Event { reason: "Created" }],
    )
    .await;
}

#[tokio::test]
async fn scaling_up_adds_a_disruption_budget_and_scaling_down_removes_it() {
    let (cluster, mut md) = converged(&model_deployment(resnet18_spec()), create_script()).await;
    md.spec.runtime.replicas = 3;
    md.metadata.generation = Some(2);
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            apply_deployment(),
            apply_budget(),
            Expect::Event { reason: "Created" },
            Expect::Event { reason: "Updated" },
            Expect::ApplyStatus,
        ],
    )
    .await;
    assert_eq!(
        applied(&recorded, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );

    let mut scaled = cluster.clone();
    scaled.serve(applied(&recorded, "PodDisruptionBudget"));
    md.spec.runtime.replicas = 1;
    md.metadata.generation = Some(3);
    reconcile_with(
        &scaled,
        &md,
        vec![
            Expect::Delete {
                path: path("policy/v1", "poddisruptionbudgets", NAME),
            },
            Expect::Event { reason: "Updated" },
            Expect::ApplyStatus,
        ],
    )
    .await;
}

#[tokio::test]
async fn model_deployment_being_deleted_is_left_to_garbage_collection() {
    let (cluster, mut md) = converged(&model_deployment(resnet18_spec()), create_script()).await;
    md.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    md.metadata.finalizers = Some(vec!["foregroundDeletion".into()]);
    assert!(reconcile_with(&cluster, &md, vec![]).await.is_empty());
}

#[tokio::test]
async fn missing_secret_blocks_the_rollout_with_a_condition() {
    let mut spec = resnet18_spec();
    spec["verification"] = json!({"mode": "Enforce", "keys": [{"secretRef": {"name": "cosign-pub", "key": "cosign.pub"}}]});
    let md = model_deployment(spec);
    let recorded = reconcile_with(
        &Cluster::new(),
        &md,
        vec![
            Expect::Get {
                path: path("v1", "secrets", "cosign-pub"),
                found: false,
            },
            Expect::ApplyStatus,
            Expect::Event {
                reason: "SecretNotFound",
            },
        ],
    )
    .await;
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "SecretNotFound".into())
    );
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "SecretNotFound".into())
    );
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("ready")
        .message;
    assert!(
        message.contains("spec.verification.keys[0].secretRef"),
        "{message}"
    );
}

#[tokio::test]
async fn missing_pvc_blocks_the_rollout_and_leaves_the_running_revision_alone() {
    let (cluster, mut md) = converged(&model_deployment(resnet18_spec()), create_script()).await;
    md.spec.model.as_mut().expect("model").source = serde_json::from_value(
        json!({"pvc": {"claimName": "models", "path": "resnet18/v4/model.pt"}}),
    )
    .expect("source");
    md.metadata.generation = Some(2);
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            Expect::Get {
                path: path("v1", "persistentvolumeclaims", "models"),
                found: false,
            },
            Expect::ApplyStatus,
            Expect::Event {
                reason: "PersistentVolumeClaimNotFound",
            },
        ],
    )
    .await;
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "Available".into())
    );
    assert_eq!(
        condition(&status, "Progressing"),
        ("False".into(), "PersistentVolumeClaimNotFound".into())
    );
    assert_eq!(
        status.revision,
        md.status.as_ref().and_then(|s| s.revision.clone()),
        "previous revision kept"
    );
}

#[tokio::test]
async fn existing_pvc_is_mounted_read_only() {
    let spec = json!({
        "model": {"name": "resnet18", "task": "classify", "source": {"pvc": {"claimName": "models", "path": "resnet18/model.pt"}}},
    });
    let md = model_deployment(spec);
    let mut script = vec![Expect::Get {
        path: path("v1", "persistentvolumeclaims", "models"),
        found: true,
    }];
    script.extend(create_script());
    let recorded = reconcile_with(&Cluster::new(), &md, script).await;
    let pod = &applied(&recorded, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][3]["persistentVolumeClaim"],
        json!({"claimName": "models", "readOnly": true})
    );
    let config = applied(&recorded, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config");
    assert!(
        config.contains("path: /models/resnet18/model.pt"),
        "{config}"
    );
}

fn failing_pod(status: Value) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "resnet18-5d9f-x2", "namespace": "team-a",
                     "labels": {"app.kubernetes.io/instance": NAME, "app.kubernetes.io/name": "modelplane-runtime"}},
        "status": status,
    }))
    .expect("pod")
}

#[tokio::test]
async fn image_pull_backoff_on_the_pods_is_reported() {
    let (mut cluster, md) = converged(&model_deployment(resnet18_spec()), create_script()).await;
    cluster.pods.push(failing_pod(json!({"containerStatuses": [{
        "name": "runtime", "image": "ghcr.io/modelplane/runtime:0.1.0", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "manifest unknown"}}}]})));
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            Expect::ApplyStatus,
            Expect::Event {
                reason: "ImagePullBackOff",
            },
        ],
    )
    .await;
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "ImagePullBackOff".into())
    );
}

#[tokio::test]
async fn unschedulable_gpu_pods_are_reported() {
    let mut spec = resnet18_spec();
    spec["runtime"] = json!({"replicas": 1, "device": "cuda", "resources": {"gpu": 2}});
    let (mut cluster, md) = converged(&model_deployment(spec), create_script()).await;
    let gpus = &cluster.deployments[0]
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod")
        .containers[0]
        .resources
        .as_ref()
        .expect("resources")
        .limits
        .as_ref()
        .expect("limits")["nvidia.com/gpu"];
    assert_eq!(gpus.0, "2");
    cluster.pods.push(failing_pod(json!({"conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]})));
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            Expect::ApplyStatus,
            Expect::Event {
                reason: "InsufficientGPU",
            },
        ],
    )
    .await;
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "InsufficientGPU".into())
    );
}

#[tokio::test]
async fn a_refused_apply_is_reported_in_the_status_and_cleared_when_it_heals() {
    let md = model_deployment(resnet18_spec());
    let (ctx, server) = context(&Cluster::new(), &md);
    let refused = server.run(vec![
        apply_config_map(),
        apply_deployment(),
        Expect::ApplyRefused {
            path: path("v1", "services", NAME),
            code: 500,
            message: "failed to allocate a serviceIP: range is full",
        },
        Expect::ApplyStatus,
        Expect::Event {
            reason: "ApplyFailed",
        },
    ]);
    let error = reconcile(std::sync::Arc::new(md.clone()), ctx)
        .await
        .expect_err("the refusal is retried with backoff");
    assert_eq!(error.condition_reason(), "ApplyFailed");
    let recorded = finished(refused).await;
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "ApplyFailed".into())
    );
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "ApplyFailed".into())
    );
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let message = &ready.expect("Ready").message;
    assert!(
        message.contains("Service") && message.contains("range is full"),
        "{message}"
    );

    // The next reconcile gets through: the conditions say so.
    let mut cluster = Cluster::new();
    for r in recorded
        .iter()
        .filter(|r| matches!(r.expect, Expect::Apply { .. }))
    {
        cluster.serve(&r.body);
    }
    let mut retried = md.clone();
    retried.status = Some(status);
    let healed = reconcile_with(
        &cluster,
        &retried,
        vec![
            apply_service(),
            Expect::Event { reason: "Created" },
            Expect::ApplyStatus,
            Expect::Event { reason: "Ready" },
            Expect::Event {
                reason: "RolloutComplete",
            },
        ],
    )
    .await;
    let status = status_written(&healed);
    assert_ne!(condition(&status, "Ready").1, "ApplyFailed");
    assert_eq!(condition(&status, "Degraded").0, "False");
}

#[tokio::test]
async fn a_failure_the_status_cannot_record_is_still_published_as_an_event() {
    let md = model_deployment(resnet18_spec());
    let (ctx, server) = context(&Cluster::new(), &md);
    let status_path = format!(
        "/apis/serving.modelplane.io/v1alpha1/namespaces/{}/modeldeployments/{NAME}/status",
        crate::fixtures::NAMESPACE
    );
    let refused = server.run(vec![
        Expect::ApplyRefused {
            path: path("v1", "configmaps", &format!("{NAME}-runtime-config")),
            code: 403,
            message: "configmaps is forbidden: User cannot patch resource",
        },
        Expect::ApplyRefused {
            path: status_path,
            code: 403,
            message: "modeldeployments/status is forbidden",
        },
        Expect::Event {
            reason: "Forbidden",
        },
    ]);
    let error = reconcile(std::sync::Arc::new(md), ctx)
        .await
        .expect_err("forbidden is retried");
    assert_eq!(error.condition_reason(), "Forbidden");
    let recorded = finished(refused).await;
    let note = recorded[2].body["note"].as_str().expect("note");
    assert!(note.contains("forbidden"), "{note}");
}

fn fields_ignored(status: &ModelDeploymentStatus) -> Option<&Condition> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "FieldsIgnored")
}

#[tokio::test]
async fn a_field_not_acted_on_is_reported_once_and_cleared_when_removed() {
    let mut spec = resnet18_spec();
    spec["redaction"] = json!({"enabled": true, "detectors": ["email"]});
    let mut script = create_script();
    script.push(Expect::Event {
        reason: "UnsupportedFields",
    });
    let created = reconcile_with(
        &Cluster::new(),
        &model_deployment(spec.clone()),
        script.clone(),
    )
    .await;
    let status = status_written(&created);
    assert_eq!(
        condition(&status, "FieldsIgnored"),
        ("True".into(), "UnsupportedFields".into())
    );
    let message = &fields_ignored(&status).expect("FieldsIgnored").message;
    assert!(
        message.contains("spec.redaction") && message.contains("responses are not redacted"),
        "{message}"
    );
    let note = created.last().expect("event").body["note"].as_str();
    assert_eq!(note, Some(message.as_str()));
    // Redaction is not rendered: the runtime config is what it would be without it.
    let config = applied(&created, "ConfigMap")["data"]["config.yaml"].clone();
    let plain = reconcile_with(
        &Cluster::new(),
        &model_deployment(resnet18_spec()),
        create_script(),
    )
    .await;
    assert_eq!(config, applied(&plain, "ConfigMap")["data"]["config.yaml"]);

    // Converged, the condition costs nothing: no status write, no repeated Event.
    let (cluster, mut md) = converged(&model_deployment(spec), script).await;
    assert!(reconcile_with(&cluster, &md, vec![]).await.is_empty());

    md.spec.redaction = None;
    md.metadata.generation = Some(2);
    let cleared = reconcile_with(&cluster, &md, vec![Expect::ApplyStatus]).await;
    let status = status_written(&cleared);
    assert!(fields_ignored(&status).is_none(), "{:?}", status.conditions);
    md.status = Some(status);
    assert!(reconcile_with(&cluster, &md, vec![]).await.is_empty());
}

#[tokio::test]
async fn another_field_not_acted_on_renews_the_warning() {
    let mut spec = resnet18_spec();
    spec["redaction"] = json!({});
    let mut script = create_script();
    script.push(Expect::Event {
        reason: "UnsupportedFields",
    });
    let (cluster, mut md) = converged(&model_deployment(spec), script).await;
    md.spec.prompts = serde_json::from_value(
        json!([{"name": "p", "variants": {"v1": {"system": "s"}}, "default": "v1"}]),
    )
    .expect("prompts");
    md.metadata.generation = Some(2);
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            Expect::ApplyStatus,
            Expect::Event {
                reason: "UnsupportedFields",
            },
        ],
    )
    .await;
    let note = recorded[1].body["note"].as_str().expect("note");
    assert!(
        note.contains("spec.prompts") && note.contains("spec.redaction"),
        "{note}"
    );
    assert_eq!(recorded[1].body["type"], "Warning", "{}", recorded[1].body);
}

#[tokio::test]
async fn a_pipeline_is_not_rolled_out_and_says_so() {
    let spec = json!({
        "pipeline": {"nodes": [{"name": "embed", "model": "minilm"}]},
        "runtime": {"replicas": 1},
    });
    let mut md = model_deployment(spec);
    let recorded = reconcile_with(
        &Cluster::new(),
        &md,
        vec![
            Expect::ApplyStatus,
            Expect::Event {
                reason: "PipelineNotSupported",
            },
            Expect::Event {
                reason: "UnsupportedFields",
            },
        ],
    )
    .await;
    let status = status_written(&recorded);
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "PipelineNotSupported".into())
    );
    let message = &fields_ignored(&status).expect("FieldsIgnored").message;
    assert!(
        message.contains("spec.pipeline") && message.contains("nothing is rolled out"),
        "{message}"
    );
    assert!(
        !recorded
            .iter()
            .any(|r| matches!(r.expect, Expect::Apply { .. }))
    );
    md.status = Some(status);
    assert!(
        reconcile_with(&Cluster::new(), &md, vec![])
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_failed_reconcile_still_reports_the_fields_not_acted_on() {
    let mut spec = resnet18_spec();
    spec["redaction"] = json!({});
    let md = model_deployment(spec);
    let (ctx, server) = context(&Cluster::new(), &md);
    let refused = server.run(vec![
        Expect::ApplyRefused {
            path: path("v1", "configmaps", &format!("{NAME}-runtime-config")),
            code: 500,
            message: "etcd timeout",
        },
        Expect::ApplyStatus,
        Expect::Event {
            reason: "ApplyFailed",
        },
        Expect::Event {
            reason: "UnsupportedFields",
        },
    ]);
    reconcile(std::sync::Arc::new(md), ctx)
        .await
        .expect_err("the refusal is retried");
    let status = status_written(&finished(refused).await);
    assert_eq!(
        condition(&status, "FieldsIgnored"),
        ("True".into(), "UnsupportedFields".into())
    );
}

/// A Canary moving the ModelDeployment to a new runtime image, in `phase` at `weight`.
fn image_canary(phase: &str, weight: i32) -> modelplane_api::canary::Canary {
    let image = format!("ghcr.io/modelplane/runtime@sha256:{}", "2".repeat(64));
    serde_json::from_value(json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "Canary",
        "metadata": {"name": "resnet18-runtime-2", "namespace": crate::fixtures::NAMESPACE,
                     "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {"targetRef": {"name": NAME},
                 "candidate": {"runtime": {"image": "ghcr.io/modelplane/runtime:0.2.0"}},
                 "steps": [{"weight": 10}, {"weight": 50}]},
        "status": {"phase": phase, "weight": weight, "stepStartedAt": "2026-12-04T08:00:00Z",
                   "candidate": {"inputs": "h", "image": image, "imageDigest": format!("sha256:{}", "2".repeat(64))}},
    }))
    .expect("canary")
}

#[tokio::test]
async fn a_runtime_image_canary_runs_its_own_deployment_until_it_rolls_back() {
    let (mut cluster, md) = converged(&model_deployment(resnet18_spec()), create_script()).await;
    cluster.canaries.push(image_canary("Progressing", 10));
    let recorded = reconcile_with(
        &cluster,
        &md,
        vec![
            Expect::Apply {
                path: path("v1", "configmaps", "resnet18-canary-runtime-config"),
            },
            Expect::Apply {
                path: path("apps/v1", "deployments", "resnet18-canary"),
            },
            Expect::Event { reason: "Created" },
        ],
    )
    .await;
    // Stable's own objects were not touched: only the candidate's were applied.
    let deployment = applied(&recorded, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "resnet18-canary");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("ghcr.io/modelplane/runtime@sha256:{}", "2".repeat(64))
    );
    assert_eq!(deployment["spec"]["replicas"], 1);

    // Rolled back: the candidate's pods and config go at once.
    let mut running = cluster.clone();
    running.canaries = vec![image_canary("RolledBack", 0)];
    running.serve(applied(&recorded, "ConfigMap"));
    running.serve(deployment);
    reconcile_with(
        &running,
        &md,
        vec![
            Expect::Delete {
                path: path("apps/v1", "deployments", "resnet18-canary"),
            },
            Expect::Delete {
                path: path("v1", "configmaps", "resnet18-canary-runtime-config"),
            },
            Expect::Event { reason: "Updated" },
        ],
    )
    .await;
}
