//! Objects as an API server returns them for one ModelDeployment: the operator's own
//! desired objects (from `desired/`), stamped and applied, plus what the server and the
//! other controllers add — defaults, identity, status and `managedFields`.
//!
//! Shared by `tests/cache_projection.rs` and `examples/cache_memory.rs`.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Pod, Service},
    policy::v1::PodDisruptionBudget,
};
use modelplane_api::model_deployment::ModelDeployment;
use modelplane_operator::{
    controller::projection::LAST_APPLIED_ANNOTATION,
    desired::{Defaults, Desired, Owner, desired_state, tenant_of},
    drift::stamp,
    verification::PINNED_ANNOTATION,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

/// When everything was created.
pub const CREATED: &str = "2026-12-01T08:00:00Z";
/// When the pods started.
pub const STARTED: &str = "2026-12-01T08:00:41Z";

/// The operator's defaults.
pub fn defaults() -> Defaults {
    Defaults {
        runtime_image: "ghcr.io/modelplane/runtime:0.1.0".into(),
        insecure_registries: Vec::new(),
    }
}

/// `n` lowercase hex digits derived from `seed` (uids, digests, container IDs).
pub fn hex(seed: usize, n: usize) -> String {
    let mut state = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from_digit((state % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

fn uid(seed: usize) -> String {
    let h = hex(seed, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn from<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("served object deserializes")
}

/// The `fieldsV1` tree of the fields `value` sets, as the API server records it
/// (`f:` per field, `k:{"name":…}` per named list item, `.` for the node itself).
pub fn fields_v1(value: &Value) -> Value {
    let Value::Object(map) = value else {
        return json!({});
    };
    let fields = map
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "apiVersion" | "kind" | "name" | "namespace"))
        .map(|(key, value)| (format!("f:{key}"), field_node(value)))
        .collect();
    Value::Object(fields)
}

fn field_node(value: &Value) -> Value {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut node = Map::from_iter([(".".to_owned(), json!({}))]);
            node.extend(
                map.iter()
                    .map(|(key, value)| (format!("f:{key}"), field_node(value))),
            );
            Value::Object(node)
        }
        Value::Array(items) if items.iter().all(|item| item.get("name").is_some()) => {
            let mut node = Map::from_iter([(".".to_owned(), json!({}))]);
            for item in items {
                let key = format!("k:{{\"name\":{}}}", item["name"]);
                node.insert(key, field_node(item));
            }
            Value::Object(node)
        }
        _ => json!({}),
    }
}

fn managed_field(manager: &str, operation: &str, subresource: Option<&str>, of: &Value) -> Value {
    let mut entry = json!({
        "manager": manager, "operation": operation, "apiVersion": of["apiVersion"],
        "time": CREATED, "fieldsType": "FieldsV1", "fieldsV1": fields_v1(of),
    });
    if let Some(subresource) = subresource {
        entry["subresource"] = json!(subresource);
    }
    entry
}

/// The `index`th ModelDeployment in `namespace`, applied client-side by `kubectl`
/// (so with its last-applied copy) and given its status by the operator.
pub fn model_deployment(namespace: &str, index: usize, replicas: i32) -> ModelDeployment {
    let name = format!("md-{index:04}");
    let manifest = json!({
        "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": name, "task": "classify",
                      "source": {"oci": format!("registry.example/models/{name}:v1@sha256:{}", hex(index, 64))}},
            "runtime": {"replicas": replicas, "device": "cpu", "resources": {"cpu": "1", "memory": "2Gi"}},
        },
    });
    let mut md = manifest.clone();
    md["metadata"]["uid"] = json!(uid(index));
    md["metadata"]["resourceVersion"] = json!(format!("{}", 100_000 + index));
    md["metadata"]["generation"] = json!(1);
    md["metadata"]["creationTimestamp"] = json!(CREATED);
    md["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: format!("{}\n", manifest)});
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": STARTED, "observedGeneration": 1})
    };
    let status = json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Verified", "True", "Verified", "image and model digests verified"),
            condition("Ready", "True", "Available", &format!("{replicas} of {replicas} replicas ready")),
            condition("Progressing", "False", "RolloutComplete", "all replicas run the current revision"),
            condition("Degraded", "False", "AsExpected", ""),
        ],
        "tenant": namespace, "replicas": replicas, "readyReplicas": replicas,
        "endpoints": {"http": format!("http://{name}.{namespace}.svc:8080"),
                      "grpc": format!("{name}.{namespace}.svc:8081")},
        "revision": {"id": hex(index + 1, 16), "modelDigest": format!("sha256:{}", hex(index, 64)),
                     "imageDigest": format!("sha256:{}", hex(7, 64)), "verifiedAt": STARTED},
    });
    md["metadata"]["managedFields"] = json!([
        managed_field("kubectl-client-side-apply", "Update", None, &{
            let mut applied = manifest.clone();
            applied["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: ""});
            applied
        }),
        managed_field(
            "modelplane-operator",
            "Apply",
            Some("status"),
            &json!({
                "apiVersion": "serving.modelplane.io/v1alpha1", "status": status,
            })
        ),
    ]);
    md["status"] = status;
    from(md)
}

/// A namespace as `kubectl create namespace` leaves it.
pub fn namespace(name: &str) -> Namespace {
    from(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "uid": uid(999_999), "resourceVersion": "12",
                     "creationTimestamp": CREATED,
                     "labels": {"kubernetes.io/metadata.name": name},
                     "managedFields": [{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                                        "time": CREATED, "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {}}}}}]},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }))
}

/// What the operator applies: the desired object, stamped.
pub fn applied<K: Serialize>(object: &K) -> Value {
    let mut value = serde_json::to_value(object).expect("desired object serializes");
    stamp(&mut value).expect("stamp");
    value
}

/// Everything a ModelDeployment's reconcile reads, as served.
pub struct Served {
    /// The desired objects.
    pub desired: Desired,
    /// The Deployment, with the Deployment controller's status.
    pub deployment: Deployment,
    /// The Service, with its cluster IP.
    pub service: Service,
    /// The runtime config.
    pub config_map: ConfigMap,
    /// Present with more than one replica.
    pub budget: Option<PodDisruptionBudget>,
    /// Running, ready pods (JSON, to derive other states from).
    pub pods: Vec<Value>,
}

/// The owned objects and pods of `md`, all converged and running.
pub fn served(md: &ModelDeployment, index: usize) -> Served {
    let namespace = md.metadata.namespace.clone().expect("namespace");
    let tenant = tenant_of(&md.spec, &namespace, None);
    let owner = Owner::new(md, &tenant).expect("owner");
    let mut desired = desired_state(&owner, &defaults(), None).expect("desired state");
    // What the gate records on every Deployment it lets through.
    let pinned = json!({
        "inputs": hex(index + 2, 16),
        "image": format!("{}@sha256:{}", defaults().runtime_image, hex(7, 64)),
        "imageDigest": format!("sha256:{}", hex(7, 64)),
        "modelDigest": format!("sha256:{}", hex(index, 64)),
        "verifiedAt": STARTED,
        "verified": {"status": "True", "reason": "Verified", "message": "image and model digests verified"},
    });
    desired
        .deployment
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(PINNED_ANNOTATION.to_owned(), pinned.to_string());
    let replicas = md.spec.runtime.replicas;
    let deployment = served_deployment(applied(&desired.deployment), index, replicas);
    let pods = (0..replicas.max(0) as usize)
        .map(|replica| served_pod(&deployment, index, replica))
        .collect();
    Served {
        deployment: from(deployment),
        service: from(served_service(applied(&desired.service), index)),
        config_map: from(identity(applied(&desired.config_map), index * 10 + 1)),
        budget: desired
            .pod_disruption_budget
            .as_ref()
            .map(|budget| from(identity(applied(budget), index * 10 + 2))),
        pods,
        desired,
    }
}

/// Identity and the operator's `managedFields` entry on an applied object.
fn identity(mut object: Value, seed: usize) -> Value {
    let entry = managed_field("modelplane-operator", "Apply", None, &object);
    let metadata = &mut object["metadata"];
    metadata["uid"] = json!(uid(seed));
    metadata["resourceVersion"] = json!(format!("{}", 200_000 + seed));
    metadata["creationTimestamp"] = json!(CREATED);
    metadata["managedFields"] = json!([entry]);
    object
}

fn served_deployment(applied: Value, index: usize, replicas: i32) -> Value {
    let mut object = identity(applied, index * 10 + 3);
    object["metadata"]["generation"] = json!(1);
    object["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("1");
    let spec = &mut object["spec"];
    spec["revisionHistoryLimit"] = json!(10);
    spec["progressDeadlineSeconds"] = json!(600);
    let template = &mut spec["template"]["spec"];
    pod_spec_defaults(template);
    let status = json!({
        "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
        "readyReplicas": replicas, "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.",
             "lastUpdateTime": STARTED, "lastTransitionTime": STARTED},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": format!("ReplicaSet \"{}-{}\" has successfully progressed.",
                                object["metadata"]["name"].as_str().unwrap_or_default(), hex(index, 10)),
             "lastUpdateTime": STARTED, "lastTransitionTime": CREATED},
        ],
    });
    let controller = managed_field(
        "kube-controller-manager",
        "Update",
        Some("status"),
        &json!({
            "apiVersion": "apps/v1", "status": status,
        }),
    );
    let revision = managed_field(
        "kube-controller-manager",
        "Update",
        None,
        &json!({
            "apiVersion": "apps/v1",
            "metadata": {"annotations": {"deployment.kubernetes.io/revision": "1"}},
        }),
    );
    if let Some(fields) = object["metadata"]["managedFields"].as_array_mut() {
        fields.extend([revision, controller]);
    }
    object["status"] = status;
    object
}

/// What the API server defaults in a pod spec.
fn pod_spec_defaults(spec: &mut Value) {
    spec["restartPolicy"] = json!("Always");
    spec["dnsPolicy"] = json!("ClusterFirst");
    spec["schedulerName"] = json!("default-scheduler");
    if let Some(containers) = spec["containers"].as_array_mut() {
        for container in containers {
            container["imagePullPolicy"] = json!("IfNotPresent");
            container["terminationMessagePath"] = json!("/dev/termination-log");
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                if container[probe].is_object() {
                    container[probe]["timeoutSeconds"] = json!(1);
                    container[probe]["successThreshold"] = json!(1);
                    container[probe]["httpGet"]["scheme"] = json!("HTTP");
                }
            }
        }
    }
}

fn served_service(applied: Value, index: usize) -> Value {
    let mut object = identity(applied, index * 10 + 4);
    let ip = format!("10.96.{}.{}", index / 250, index % 250 + 2);
    let spec = &mut object["spec"];
    spec["type"] = json!("ClusterIP");
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
    spec["internalTrafficPolicy"] = json!("Cluster");
    spec["sessionAffinity"] = json!("None");
    if let Some(ports) = spec["ports"].as_array_mut() {
        for port in ports {
            port["protocol"] = json!("TCP");
        }
    }
    object["status"] = json!({"loadBalancer": {}});
    object
}

/// A running, ready pod of `deployment` as kubelet reports it. The template turns
/// the service account token off, so no projected token volume is injected.
fn served_pod(deployment: &Value, index: usize, replica: usize) -> Value {
    let seed = index * 100 + replica;
    let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = deployment["metadata"]["namespace"].clone();
    let replica_set = format!("{name}-{}", hex(index, 10));
    let pod_name = format!("{replica_set}-{}", &hex(seed, 5));
    let template = &deployment["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!(hex(index, 10));
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(format!("node-{}", index % 50));
    spec["serviceAccountName"] = json!("default");
    spec["serviceAccount"] = json!("default");
    spec["priority"] = json!(0);
    spec["preemptionPolicy"] = json!("PreemptLowerPriority");
    spec["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]);
    let container = &spec["containers"][0];
    let image = container["image"].as_str().unwrap_or_default().to_owned();
    let mounts: Vec<Value> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|mount| {
            let mut mount = mount.clone();
            mount["recursiveReadOnly"] = json!("Disabled");
            mount
        })
        .collect();
    let ip = format!("10.244.{}.{}", seed / 250, seed % 250 + 2);
    let condition = |type_: &str| json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": STARTED});
    let status = json!({
        "phase": "Running",
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"),
                       condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
        "hostIP": "172.18.0.3", "hostIPs": [{"ip": "172.18.0.3"}],
        "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": CREATED, "qosClass": "Guaranteed",
        "containerStatuses": [{
            "name": "runtime", "image": image,
            "imageID": format!("{}@sha256:{}", image.split(':').next().unwrap_or_default(), hex(7, 64)),
            "containerID": format!("containerd://{}", hex(seed, 64)),
            "ready": true, "started": true, "restartCount": 0,
            "state": {"running": {"startedAt": STARTED}}, "lastState": {},
            "volumeMounts": mounts,
            "resources": container["resources"].clone(),
            "allocatedResources": container["resources"]["requests"].clone(),
            "user": {"linux": {"uid": 10001, "gid": 10001, "supplementalGroups": [10001]}},
        }],
    });
    let metadata = json!({
        "name": pod_name, "generateName": format!("{replica_set}-"), "namespace": namespace,
        "uid": uid(seed + 7_000_000), "resourceVersion": format!("{}", 300_000 + seed),
        "creationTimestamp": CREATED, "labels": labels,
        "annotations": template["metadata"]["annotations"].clone(),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set,
                             "uid": uid(seed + 8_000_000), "controller": true, "blockOwnerDeletion": true}],
    });
    let created = json!({"apiVersion": "v1", "metadata": metadata, "spec": spec});
    let mut pod = created.clone();
    pod["kind"] = json!("Pod");
    pod["metadata"]["managedFields"] = json!([
        managed_field("kube-controller-manager", "Update", None, &created),
        managed_field(
            "kubelet",
            "Update",
            Some("status"),
            &json!({"apiVersion": "v1", "status": status})
        ),
    ]);
    pod["status"] = status;
    pod
}

/// A served pod as a typed object.
pub fn pod(value: &Value) -> Pod {
    from(value.clone())
}
