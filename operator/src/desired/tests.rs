//! Table tests of the desired objects.

use serde_json::{Value, json};

use super::*;
use crate::fixtures::{defaults, model_deployment, oci, resnet18_spec};

fn render(spec: Value) -> Result<Desired, Blocker> {
    let md = model_deployment(spec);
    let owner = Owner::new(&md, "team-a").expect("owner");
    desired_state(&owner, &defaults(), None)
}

fn json_of<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("json")
}

fn with_runtime(runtime: Value) -> Value {
    let mut spec = resnet18_spec();
    spec["runtime"] = runtime;
    spec
}

fn pod(desired: &Desired) -> Value {
    json_of(&desired.deployment)["spec"]["template"]["spec"].clone()
}

#[test]
fn device_selects_gpu_resources_tolerations_and_rollout_strategy() {
    let cases = [
        (
            "cpu",
            json!({"device": "cpu", "resources": {"cpu": "2", "memory": "4Gi"}}),
            json!({"cpu": "2", "memory": "4Gi"}),
            Value::Null,
            (1, 0),
        ),
        (
            "cuda default gpu",
            json!({"device": "cuda"}),
            json!({"nvidia.com/gpu": "1"}),
            json!("nvidia.com/gpu"),
            (0, 1),
        ),
        (
            "cuda two gpus",
            json!({"device": "cuda", "resources": {"memory": "16Gi", "gpu": 2}}),
            json!({"memory": "16Gi", "nvidia.com/gpu": "2"}),
            json!("nvidia.com/gpu"),
            (0, 1),
        ),
    ];
    for (name, runtime, limits, toleration, (surge, unavailable)) in cases {
        let desired = render(with_runtime(runtime)).expect(name);
        let pod = pod(&desired);
        let resources = &pod["containers"][0]["resources"];
        assert_eq!(resources["limits"], limits, "{name}");
        assert_eq!(
            resources["requests"], limits,
            "{name}: requests equal limits"
        );
        assert_eq!(pod["tolerations"][0]["key"], toleration, "{name}");
        let strategy = &json_of(&desired.deployment)["spec"]["strategy"]["rollingUpdate"];
        assert_eq!(
            (
                strategy["maxSurge"].clone(),
                strategy["maxUnavailable"].clone()
            ),
            (json!(surge), json!(unavailable)),
            "{name}"
        );
    }
}

#[test]
fn disruption_budget_only_with_more_than_one_replica() {
    for (replicas, budget) in [(0, false), (1, false), (3, true)] {
        let desired = render(with_runtime(json!({"replicas": replicas}))).expect("renders");
        assert_eq!(
            json_of(&desired.deployment)["spec"]["replicas"],
            json!(replicas)
        );
        assert_eq!(
            desired.pod_disruption_budget.is_some(),
            budget,
            "replicas {replicas}"
        );
    }
}

#[test]
fn every_model_source_renders_into_the_runtime_config() {
    let sha = "b".repeat(64);
    let cases = [
        (
            json!({"oci": oci('a')}),
            format!("oci:\n        reference: {}", oci('a')),
            Some(format!("sha256:{}", "a".repeat(64))),
            "version: v3",
        ),
        (
            json!({"http": {"url": "https://models.example/r18.pt", "sha256": sha}}),
            "url: https://models.example/r18.pt".to_owned(),
            Some(format!("sha256:{sha}")),
            "version: bbbbbbbbbbbb",
        ),
        (
            json!({"pvc": {"claimName": "models", "path": "r18/model.pt"}}),
            "path: /models/r18/model.pt".to_owned(),
            None,
            "version: ",
        ),
    ];
    for (source, expected, digest, version) in cases {
        let mut spec = resnet18_spec();
        spec["model"]["source"] = source.clone();
        let desired = render(spec.clone()).expect("renders");
        let config = desired.config_map.data.as_ref().expect("data")["config.yaml"].clone();
        assert!(config.contains(&expected), "{source}: {config}");
        assert!(config.contains(version), "{source}: {config}");
        let md = model_deployment(spec);
        assert_eq!(
            model_digest(&md.spec.model.expect("model").source),
            digest,
            "{source}"
        );
    }
}

#[test]
fn defaults_fill_what_the_spec_leaves_out() {
    let spec =
        json!({"model": {"name": "resnet18", "task": "classify", "source": {"oci": oci('a')}}});
    let desired = render(spec).expect("renders");
    let pod = pod(&desired);
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "ghcr.io/modelplane/runtime:0.1.0");
    assert_eq!(
        container["resources"],
        Value::Null,
        "no resources unless asked"
    );
    assert_eq!(json_of(&desired.deployment)["spec"]["replicas"], 1);
    let config = &desired.config_map.data.as_ref().expect("data")["config.yaml"];
    for needle in ["maxBatchSize: 32", "requestTimeout: 30s", "device: cpu"] {
        assert!(config.contains(needle), "{needle:?} not in:\n{config}");
    }
}

#[test]
fn runtime_pod_is_locked_down_and_probed() {
    let pod = pod(&render(resnet18_spec()).expect("renders"));
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(
        container["args"],
        json!(["serve", "--config", "/etc/modelplane/config.yaml"])
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/v2/health/ready"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        "/v2/health/live"
    );
    let ports: Vec<_> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p["containerPort"].clone())
        .collect();
    assert_eq!(ports, [json!(8080), json!(8081)]);
    let mounts: Vec<_> = container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| m["mountPath"].clone())
        .collect();
    assert_eq!(
        mounts,
        [
            json!("/etc/modelplane"),
            json!("/var/cache/modelplane"),
            json!("/tmp")
        ]
    );
    assert!(
        container["volumeMounts"][0].get("subPath").is_none(),
        "config must be a directory mount"
    );
}

#[test]
fn pods_are_annotated_for_prometheus_and_service_exposes_three_ports() {
    let desired = render(resnet18_spec()).expect("renders");
    let annotations = &json_of(&desired.deployment)["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8080");
    let service = json_of(&desired.service);
    let names: Vec<_> = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("http"), json!("grpc"), json!("metrics")]);
}

#[test]
fn runtime_pods_name_their_engine_for_the_inference_gateway_and_nothing_else_does() {
    let desired = render(resnet18_spec()).expect("renders");
    let deployment = json_of(&desired.deployment);
    let pod_labels = labels_of(&deployment["spec"]["template"]["metadata"]["labels"]);
    assert_eq!(
        pod_labels.get(ENGINE_TYPE_LABEL).map(String::as_str),
        Some(ENGINE_TYPE)
    );
    assert_eq!(ENGINE_TYPE_LABEL, "inference.networking.k8s.io/engine-type");
    // Not in the (immutable) selector, nor on the Deployment, Service or ConfigMap.
    assert!(
        !labels_of(&deployment["spec"]["selector"]["matchLabels"]).contains_key(ENGINE_TYPE_LABEL)
    );
    for object in [
        deployment["metadata"]["labels"].clone(),
        json_of(&desired.service)["metadata"]["labels"].clone(),
    ] {
        assert!(!labels_of(&object).contains_key(ENGINE_TYPE_LABEL));
    }
}

#[test]
fn rollout_hash_follows_model_image_device_and_resources_only() {
    let hash = |spec: Value| {
        let md = model_deployment(spec);
        rollout_hash(&Owner::new(&md, "t").expect("owner"), &defaults())
    };
    let base = hash(resnet18_spec());
    let mut changed_model = resnet18_spec();
    changed_model["model"]["source"]["oci"] = json!(oci('c'));
    let mut changed_image = resnet18_spec();
    changed_image["runtime"]["image"] = json!("ghcr.io/modelplane/runtime:0.2.0");
    let mut changed_resources = resnet18_spec();
    changed_resources["runtime"]["resources"]["cpu"] = json!("4");
    for (what, spec) in [
        ("model", changed_model),
        ("image", changed_image),
        ("resources", changed_resources),
    ] {
        assert_ne!(hash(spec), base, "{what} must roll the pods");
    }
    let mut hot = resnet18_spec();
    hot["runtime"]["replicas"] = json!(5);
    hot["runtime"]["limits"] = json!({"maxInFlight": 8, "maxQueue": 16, "requestTimeout": "5s"});
    hot["runtime"]["batching"] = json!({"maxBatchSize": 4, "maxQueueDelay": "1ms"});
    hot["runtime"]["imagePullSecrets"] = json!([{"name": "pull"}]);
    assert_eq!(
        hash(hot),
        base,
        "replicas, limits, batching and pull secrets do not roll the pods"
    );
}

#[test]
fn pod_pulls_with_the_secrets_the_spec_names_in_order() {
    let cases = [
        ("none", Value::Null, Value::Null),
        ("one", json!([{"name": "pull"}]), json!([{"name": "pull"}])),
        (
            "two in order",
            json!([{"name": "b"}, {"name": "a"}]),
            json!([{"name": "b"}, {"name": "a"}]),
        ),
    ];
    for (name, secrets, rendered) in cases {
        let mut spec = resnet18_spec();
        if !secrets.is_null() {
            spec["runtime"]["imagePullSecrets"] = secrets;
        }
        let desired = render(spec).expect(name);
        assert_eq!(pod(&desired)["imagePullSecrets"], rendered, "{name}");
    }
}

#[test]
fn tenant_comes_from_spec_then_namespace_label_then_namespace() {
    let labels = BTreeMap::from([(TENANT_LABEL.to_owned(), "labelled".to_owned())]);
    let mut spec = model_deployment(resnet18_spec()).spec;
    assert_eq!(tenant_of(&spec, "ns", Some(&labels)), "labelled");
    assert_eq!(tenant_of(&spec, "ns", None), "ns");
    spec.tenant = Some("explicit".into());
    assert_eq!(tenant_of(&spec, "ns", Some(&labels)), "explicit");
}

#[test]
fn selector_omits_the_tenant_so_it_can_change() {
    let desired = render(resnet18_spec()).expect("renders");
    let selector = &json_of(&desired.deployment)["spec"]["selector"]["matchLabels"];
    assert_eq!(
        selector,
        &json!({"app.kubernetes.io/name": "modelplane-runtime", "app.kubernetes.io/instance": "resnet18"})
    );
}

#[test]
fn specs_the_runtime_cannot_serve_are_blocked_with_a_reason() {
    let mut unpinned = resnet18_spec();
    unpinned["model"]["source"]["oci"] = json!("registry.example/models/resnet18:v3");
    let mut pipeline = resnet18_spec();
    pipeline.as_object_mut().expect("spec").remove("model");
    pipeline["pipeline"] = json!({"nodes": [{"name": "a", "model": "resnet18"}], "edges": []});
    let mut bad_timeout = resnet18_spec();
    bad_timeout["runtime"]["limits"] = json!({"requestTimeout": "soon"});
    for (spec, reason) in [
        (unpinned, "ModelTagNotPinned"),
        (pipeline, "PipelineNotSupported"),
        (bad_timeout, "InvalidRuntimeConfig"),
    ] {
        assert_eq!(render(spec).err().map(|b| b.reason), Some(reason));
    }
}

#[test]
fn references_list_key_secrets_pull_secrets_and_the_model_claim() {
    let mut spec = resnet18_spec();
    spec["runtime"]["imagePullSecrets"] = json!([{"name": "pull"}]);
    spec["model"]["source"] = json!({"pvc": {"claimName": "models", "path": "m.pt"}});
    spec["verification"] = json!({"keys": [{"secretRef": {"name": "k1", "key": "a"}}, {"secretRef": {"name": "k2", "key": "b"}}]});
    let refs = references(&model_deployment(spec).spec);
    assert_eq!(
        refs,
        vec![
            Reference::Secret {
                name: "k1".into(),
                field: "spec.verification.keys[0].secretRef".into()
            },
            Reference::Secret {
                name: "k2".into(),
                field: "spec.verification.keys[1].secretRef".into()
            },
            Reference::Secret {
                name: "pull".into(),
                field: "spec.runtime.imagePullSecrets[0]".into()
            },
            Reference::PersistentVolumeClaim {
                name: "models".into()
            },
        ]
    );
}

#[test]
fn models_in_insecure_registries_are_pulled_over_plain_http() {
    let config_of = |reference: String| {
        let mut spec = resnet18_spec();
        spec["model"]["source"] = json!({ "oci": reference });
        let desired = render(spec).expect("renders");
        desired.config_map.data.as_ref().expect("data")["config.yaml"].clone()
    };
    let digest = "a".repeat(64);
    let local = config_of(format!("127.0.0.1:5000/models/r18:v1@sha256:{digest}"));
    assert!(local.contains("plainHttp: true"), "{local}");
    let remote = config_of(oci('a'));
    assert!(!remote.contains("plainHttp: true"), "{remote}");
}

fn image_candidate(source: Option<ModelSource>, weight: i32) -> CanaryTraffic {
    CanaryTraffic {
        canary: "resnet18-runtime-2".into(),
        source,
        image: Some(format!(
            "ghcr.io/modelplane/runtime@sha256:{}",
            "1".repeat(64)
        )),
        weight,
        rules: Vec::new(),
        sticky_by: None,
    }
}

fn render_with(spec: Value, traffic: CanaryTraffic) -> Desired {
    let md = model_deployment(spec);
    let owner = Owner::new(&md, "team-a")
        .expect("owner")
        .with_canary(Some(traffic));
    desired_state(&owner, &defaults(), None).expect("renders")
}

fn config_of(config_map: &ConfigMap) -> RuntimeConfig {
    let yaml = &config_map.data.as_ref().expect("data")[CONFIG_FILE];
    RuntimeConfig::from_yaml(yaml).expect("the runtime reads it")
}

fn labels_of(value: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(value.clone()).expect("labels")
}

#[test]
fn a_runtime_image_candidate_runs_as_a_second_deployment_behind_the_same_service() {
    let spec = with_runtime(json!({"replicas": 4, "resources": {"cpu": "2", "memory": "4Gi"}}));
    let traffic = image_candidate(None, 20);
    let image = traffic.image.clone().expect("image");
    let desired = render_with(spec.clone(), traffic);
    let plain = render(spec).expect("renders");
    // Stable's objects are exactly what they are without a canary: nothing of it rolls.
    assert_eq!(desired.deployment, plain.deployment);
    assert_eq!(desired.config_map, plain.config_map);
    assert_eq!(desired.service, plain.service);

    let candidate = desired.candidate.expect("the candidate's workload");
    let deployment = json_of(&candidate.deployment);
    assert_eq!(deployment["metadata"]["name"], "resnet18-canary");
    // 4 stable pods at 20 %: one candidate pod is a fifth of all.
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["spec"]["containers"][0]["image"], json!(image));
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        "resnet18-canary-runtime-config"
    );
    assert_eq!(
        candidate.config_map.metadata.name.as_deref(),
        Some("resnet18-canary-runtime-config")
    );

    // The Service selects both; each Deployment's selector only its own pods.
    let candidate_labels = labels_of(&pod["metadata"]["labels"]);
    let stable_labels =
        labels_of(&json_of(&desired.deployment)["spec"]["template"]["metadata"]["labels"]);
    let selects = |selector: &Value, labels: &BTreeMap<String, String>| {
        labels_of(selector)
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    };
    let service_selector = &json_of(&desired.service)["spec"]["selector"];
    assert!(selects(service_selector, &candidate_labels));
    assert!(selects(service_selector, &stable_labels));
    let candidate_selector = &deployment["spec"]["selector"]["matchLabels"];
    assert!(selects(candidate_selector, &candidate_labels));
    assert!(!selects(candidate_selector, &stable_labels));
    assert_eq!(
        candidate_labels.get(TRACK_LABEL).map(String::as_str),
        Some(CANARY_TRACK)
    );

    // The candidate serves stable's model under its own version label: the analysis tells
    // the two apart by it.
    let stable = config_of(&desired.config_map);
    let served = config_of(&candidate.config_map);
    assert_eq!(served.models[0].versions.len(), 1);
    assert_eq!(
        served.models[0].versions[0].source,
        stable.models[0].versions[0].source
    );
    assert_eq!(
        crate::controller::canary::analyze::replica_split_of(&stable, &served),
        Some(("resnet18".into(), "v3".into(), "v3-canary".into()))
    );
}

#[test]
fn a_runtime_image_and_model_candidate_serves_its_model_in_its_own_pods() {
    let model: ModelSource = serde_json::from_value(json!({"oci": format!(
        "registry.example/models/resnet18:v4@sha256:{}",
        "b".repeat(64)
    )}))
    .expect("source");
    let desired = render_with(resnet18_spec(), image_candidate(Some(model.clone()), 5));
    let stable = config_of(&desired.config_map);
    assert!(
        stable.models[0].canary.is_none(),
        "no split in stable's pods"
    );
    assert_eq!(stable.models[0].versions.len(), 1);
    let candidate = desired.candidate.expect("the candidate's workload");
    let served = config_of(&candidate.config_map);
    assert_eq!(served.models[0].versions[0].version, "v4");
    assert_eq!(
        crate::controller::canary::analyze::replica_split_of(&stable, &served),
        Some(("resnet18".into(), "v3".into(), "v4".into()))
    );
    // One stable replica: the smallest candidate is one pod, half of all (coarse).
    assert_eq!(json_of(&candidate.deployment)["spec"]["replicas"], 1);
}

#[test]
fn candidate_replicas_come_nearest_the_weight_without_taking_stable_pods() {
    #[rustfmt::skip]
    let table = [
        // (stable, weight, candidate)
        (4, 0, 0), (1, 5, 1), (4, 20, 1), (10, 10, 1), (10, 25, 3), (9, 40, 6),
        (10, 50, 10), (10, 90, 10), (3, 100, 3), (0, 10, 0),
    ];
    for (stable, weight, expected) in table {
        assert_eq!(
            candidate_replicas(stable, weight),
            expected,
            "{stable} at {weight}%"
        );
    }
}

fn fallback_config(
    fallback: Value,
    fallback_model: Option<&str>,
) -> Result<RuntimeConfig, Blocker> {
    let mut spec = resnet18_spec();
    spec["fallback"] = fallback;
    let md = model_deployment(spec);
    let owner = Owner::new(&md, "team-a")
        .expect("owner")
        .with_fallback_model(fallback_model.map(str::to_owned));
    desired_state(&owner, &defaults(), None).map(|d| config_of(&d.config_map))
}

#[test]
fn the_fallback_renders_the_breaker_and_the_chain_into_the_runtime_config() {
    let config = fallback_config(
        json!({
            "modelDeployment": "resnet18-small",
            "timeout": "2s",
            "breaker": {"errorPercent": 20, "openFor": "30s"},
            "response": {"outputs": [
                {"name": "scores", "datatype": "FP32", "shape": [2], "data": ["0.5", "-1"]},
                {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["unknown"]},
            ]},
        }),
        Some("resnet18-small-model"),
    )
    .expect("renders");
    let model = &config.models[0];
    let breaker = model.breaker.as_ref().expect("breaker");
    assert_eq!(breaker.error_percent, 20);
    assert_eq!(breaker.open_for.to_string(), "30s");
    assert_eq!(
        breaker.min_requests, 20,
        "unset fields keep the runtime's defaults"
    );
    let rendered = serde_json::to_value(&model.fallback).expect("json");
    assert_eq!(
        rendered,
        json!([
            {"grpc": {"address": format!("http://resnet18-small.{}.svc:8081", crate::fixtures::NAMESPACE),
                      "model": "resnet18-small-model", "timeout": "2s"}},
            {"response": {"outputs": [
                {"name": "scores", "datatype": "FP32", "shape": [2], "data": [0.5, -1.0]},
                {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["unknown"]},
            ]}},
        ])
    );
    // No fallback: no breaker, no chain.
    let plain = fallback_config(Value::Null, None).expect("renders");
    assert_eq!(
        (
            plain.models[0].breaker.as_ref(),
            plain.models[0].fallback.len()
        ),
        (None, 0)
    );
}

#[test]
fn a_fallback_not_there_yet_is_left_out_of_the_chain() {
    let config = fallback_config(
        json!({"modelDeployment": "resnet18-small", "response": {"outputs": [
            {"name": "scores", "datatype": "FP32", "shape": [1], "data": ["0"]}]}}),
        None,
    )
    .expect("renders");
    let labels: Vec<String> = config.models[0]
        .fallback
        .iter()
        .map(|h| h.label())
        .collect();
    assert_eq!(labels, ["response"]);
    let breaker_only = fallback_config(json!({"breaker": {"probes": 5}}), None).expect("renders");
    assert_eq!(
        breaker_only.models[0].breaker.as_ref().map(|b| b.probes),
        Some(5)
    );
    assert!(breaker_only.models[0].fallback.is_empty());
}

#[test]
fn a_fallback_the_runtime_could_not_use_is_refused_with_the_field_named() {
    for (fallback, expected) in [
        (
            json!({"modelDeployment": crate::fixtures::NAME}),
            "spec.fallback.modelDeployment names this ModelDeployment",
        ),
        (
            json!({"response": {"outputs": [{"name": "s", "datatype": "INT32", "shape": [1], "data": ["x"]}]}}),
            "spec.fallback.response.outputs[0].data[0]: \"x\" is not a INT32",
        ),
        (
            json!({"response": {"outputs": [{"name": "s", "datatype": "INT8", "shape": [1], "data": ["300"]}]}}),
            "300 is out of range of INT8",
        ),
        (
            json!({"response": {"outputs": [{"name": "s", "datatype": "FP32", "shape": [2], "data": ["1"]}]}}),
            "shape [2] holds 2 elements, data has 1",
        ),
        (
            json!({"response": {"text": "busy"}}),
            "a tensor model's fixed response is its output tensors",
        ),
        (
            json!({"breaker": {"openFor": "1m", "maxOpenFor": "10s"}}),
            "breaker.maxOpenFor: 10s is shorter than openFor 1m",
        ),
    ] {
        let message = match fallback_config(fallback.clone(), Some("m")) {
            Ok(_) => panic!("accepted: {fallback}"),
            Err(blocker) => blocker.message,
        };
        assert!(message.contains(expected), "{fallback}: {message}");
    }
}

#[test]
fn an_adaptive_limit_renders_into_the_runtime_limits() {
    let desired = render(with_runtime(json!({
        "limits": {"maxInFlight": 128, "adaptive": {"maxLimit": 64, "window": "250ms"}},
    })))
    .expect("renders");
    let config = config_of(&desired.config_map);
    let adaptive = config.models[0].limits.adaptive.as_ref().expect("adaptive");
    assert_eq!(adaptive.max_limit, Some(64));
    assert_eq!(adaptive.window.to_string(), "250ms");
    assert_eq!(adaptive.min_limit, 1, "unset: the runtime's default");
    // Over maxInFlight: the runtime would refuse it, so the operator does.
    let refused = render(with_runtime(json!({
        "limits": {"maxInFlight": 32, "adaptive": {"maxLimit": 64}},
    })));
    let message = match refused {
        Ok(_) => panic!("accepted"),
        Err(blocker) => blocker.message,
    };
    assert!(
        message.contains("limits.adaptive.maxLimit: 64 is above limits.maxInFlight 32"),
        "{message}"
    );
}
