//! What the watch caches keep is enough: every decision the reconcile makes from a
//! cached object — pod problems, the running digest, the status, drift, the pinned
//! revision — comes out the same on the kept object as on the whole one.

#[path = "support/served.rs"]
#[allow(dead_code)]
mod served;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use modelplane_operator::{
    controller::projection::{LAST_APPLIED_ANNOTATION, project_pod, strip_bookkeeping},
    desired::RUNTIME_CONTAINER,
    drift::{Verdict, compare},
    health::{Observation, assess, running_image_digest, worst_problem},
    verification::PinnedRevision,
};
use serde::Serialize;
use serde_json::{Value, json};

use served::{applied, model_deployment, served};

fn projected(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    project_pod(&mut pod);
    pod
}

fn stripped<K: kube::Resource + Clone>(object: &K) -> K {
    let mut object = object.clone();
    strip_bookkeeping(&mut object);
    object
}

/// A served pod of `md-0000` with `edit` applied to its JSON.
fn pod_with(edit: impl Fn(&mut Value)) -> Pod {
    let md = model_deployment("scale", 0, 1);
    let mut pod = served(&md, 0).pods.remove(0);
    edit(&mut pod);
    served::pod(&pod)
}

fn waiting(reason: &str, message: &str) -> impl Fn(&mut Value) {
    let state = json!({"waiting": {"reason": reason, "message": message}});
    move |pod: &mut Value| {
        let container = &mut pod["status"]["containerStatuses"][0];
        container["state"] = state.clone();
        container["ready"] = json!(false);
    }
}

fn pod_cases() -> Vec<(&'static str, Pod)> {
    let crashed = |exit_code: i32, message: &str| {
        let message = message.to_owned();
        move |pod: &mut Value| {
            waiting(
                "CrashLoopBackOff",
                "back-off 5m0s restarting failed container",
            )(pod);
            pod["status"]["containerStatuses"][0]["lastState"] = json!({"terminated": {
                "exitCode": exit_code, "reason": "Error", "message": message,
                "startedAt": served::CREATED, "finishedAt": served::STARTED,
                "containerID": "containerd://0123"}});
            pod["status"]["containerStatuses"][0]["restartCount"] = json!(4);
        }
    };
    vec![
        ("running and ready", pod_with(|_| {})),
        (
            "image pull back-off",
            pod_with(waiting("ImagePullBackOff", "manifest unknown")),
        ),
        (
            "model failed to load",
            pod_with(crashed(3, "no such file: /models/model.pt")),
        ),
        ("crash loop", pod_with(crashed(137, ""))),
        (
            "config error",
            pod_with(waiting(
                "CreateContainerConfigError",
                "secret \"s\" not found",
            )),
        ),
        (
            "no GPU to schedule on",
            pod_with(|pod| {
                pod["status"] = json!({"phase": "Pending", "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]});
            }),
        ),
        (
            "unschedulable",
            pod_with(|pod| {
                pod["status"] = json!({"phase": "Pending", "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 node(s) had untolerated taint."}]});
            }),
        ),
        (
            "terminating with a pull error",
            pod_with(|pod| {
                waiting("ErrImagePull", "denied")(pod);
                pod["metadata"]["deletionTimestamp"] = json!(served::STARTED);
            }),
        ),
        (
            "running, not ready",
            pod_with(|pod| pod["status"]["containerStatuses"][0]["ready"] = json!(false)),
        ),
    ]
}

#[test]
fn health_decisions_on_projected_pods_equal_those_on_whole_pods() {
    let md = model_deployment("scale", 0, 1);
    let deployment = served(&md, 0).deployment;
    for (case, pod) in pod_cases() {
        let whole = std::slice::from_ref(&pod);
        let kept = [projected(&pod)];
        assert_eq!(worst_problem(whole), worst_problem(&kept), "{case}");
        assert_eq!(
            running_image_digest(whole, RUNTIME_CONTAINER),
            running_image_digest(&kept, RUNTIME_CONTAINER),
            "{case}"
        );
        for desired_replicas in [0, 1, 2] {
            let observe = |deployment: &Deployment, pods: &[Pod]| {
                assess(&Observation {
                    desired_replicas,
                    deployment: Some(deployment),
                    pods,
                    blocker: None,
                })
            };
            assert_eq!(
                observe(&deployment, whole),
                observe(&stripped(&deployment), &kept),
                "{case}, {desired_replicas} replicas wanted"
            );
        }
    }
    // The table covers what health tells apart.
    let problems: Vec<_> = pod_cases()
        .iter()
        .map(|(_, pod)| worst_problem(std::slice::from_ref(pod)).map(|p| p.reason))
        .collect();
    for reason in [
        "ImagePullBackOff",
        "ModelLoadFailed",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "InsufficientGPU",
        "Unschedulable",
    ] {
        assert!(problems.contains(&Some(reason)), "no case for {reason}");
    }
    assert!(running_image_digest(&[pod_with(|_| {})], RUNTIME_CONTAINER).is_some());
}

#[test]
fn the_worst_problem_among_projected_pods_is_the_same() {
    let pods: Vec<Pod> = pod_cases().into_iter().map(|(_, pod)| pod).collect();
    let kept: Vec<Pod> = pods.iter().map(projected).collect();
    assert_eq!(worst_problem(&pods), worst_problem(&kept));
    for skip in 0..pods.len() {
        let some = |all: &[Pod]| -> Vec<Pod> {
            all.iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| p.clone())
                .collect()
        };
        assert_eq!(worst_problem(&some(&pods)), worst_problem(&some(&kept)));
    }
}

fn json_of<K: Serialize>(object: &K) -> Value {
    serde_json::to_value(object).expect("serializes")
}

/// Drift of `observed` (edited by `edit`) against `desired`, on the whole object and on
/// what the cache keeps of it; asserts they agree and returns the verdict.
fn drift_both<K>(desired: &Value, observed: &K, edit: &dyn Fn(&mut Value)) -> Verdict
where
    K: kube::Resource + Clone + Serialize + serde::de::DeserializeOwned,
{
    let mut edited = json_of(observed);
    edit(&mut edited);
    let whole: K = serde_json::from_value(edited).expect("edited object deserializes");
    let on_whole = compare(desired, Some(&json_of(&whole)));
    let on_kept = compare(desired, Some(&json_of(&stripped(&whole))));
    assert_eq!(on_whole, on_kept);
    on_whole
}

/// A user's client-side `kubectl apply` of a copy: last-applied copy, their managedFields
/// entry, a label of their own.
fn kubectl_applied(object: &mut Value) {
    let copy = object.clone();
    object["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = json!(copy.to_string());
    object["metadata"]["labels"]["team"] = json!("search");
    if let Some(fields) = object["metadata"]["managedFields"].as_array_mut() {
        fields.push(
            json!({"manager": "kubectl-client-side-apply", "operation": "Update",
                           "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                           "fieldsV1": served::fields_v1(&copy)}),
        );
    }
}

fn drop_managed_fields(object: &mut Value) {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
}

#[test]
fn drift_on_cached_owned_objects_equals_drift_on_whole_ones() {
    let md = model_deployment("scale", 3, 3);
    let objects = served(&md, 3);
    let deployment = applied(&objects.desired.deployment);
    let service = applied(&objects.desired.service);
    let config_map = applied(&objects.desired.config_map);
    let budget = applied(
        objects
            .desired
            .pod_disruption_budget
            .as_ref()
            .expect("3 replicas"),
    );
    let observed_budget = objects.budget.clone().expect("budget served");
    let unchanged: &dyn Fn(&mut Value) = &|_| {};
    let in_sync = Verdict::InSync;
    let drifted = |path: &str| Verdict::Drifted { path: path.into() };
    let cases: Vec<(&str, Verdict, Verdict)> = vec![
        (
            "converged deployment",
            drift_both(&deployment, &objects.deployment, unchanged),
            in_sync.clone(),
        ),
        (
            "replicas scaled by hand",
            drift_both(&deployment, &objects.deployment, &|d| {
                d["spec"]["replicas"] = json!(7)
            }),
            drifted("spec.replicas"),
        ),
        (
            "image edited",
            drift_both(&deployment, &objects.deployment, &|d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest")
            }),
            drifted("spec.template.spec.containers[runtime].image"),
        ),
        (
            "owned label removed",
            drift_both(&deployment, &objects.deployment, &|d| {
                if let Some(labels) = d["metadata"]["labels"].as_object_mut() {
                    labels.remove("modelplane.io/tenant");
                }
            }),
            drifted("metadata.labels.modelplane.io/tenant"),
        ),
        (
            "pinned revision edited",
            drift_both(&deployment, &objects.deployment, &|d| {
                d["metadata"]["annotations"]["modelplane.io/pinned-revision"] = json!("{}")
            }),
            drifted("metadata.annotations.modelplane.io/pinned-revision"),
        ),
        (
            "someone kubectl-applied a copy",
            drift_both(&deployment, &objects.deployment, &kubectl_applied),
            in_sync.clone(),
        ),
        (
            "someone kubectl-applied an edited copy",
            drift_both(&deployment, &objects.deployment, &|d| {
                d["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["serve"]);
                kubectl_applied(d);
            }),
            drifted("spec.template.spec.containers[runtime].args"),
        ),
        (
            "no managedFields at all",
            drift_both(&deployment, &objects.deployment, &drop_managed_fields),
            in_sync.clone(),
        ),
        (
            "applied-hash removed",
            drift_both(&deployment, &objects.deployment, &|d| {
                if let Some(annotations) = d["metadata"]["annotations"].as_object_mut() {
                    annotations.remove("modelplane.io/applied-hash");
                }
            }),
            Verdict::Outdated,
        ),
        (
            "converged service",
            drift_both(&service, &objects.service, unchanged),
            in_sync.clone(),
        ),
        (
            "service port edited",
            drift_both(&service, &objects.service, &|s| {
                s["spec"]["ports"][0]["port"] = json!(1234)
            }),
            drifted("spec.ports[http].port"),
        ),
        (
            "converged config map",
            drift_both(&config_map, &objects.config_map, unchanged),
            in_sync.clone(),
        ),
        (
            "runtime config edited",
            drift_both(&config_map, &objects.config_map, &|c| {
                c["data"]["config.yaml"] = json!("models: []\n")
            }),
            drifted("data.config.yaml"),
        ),
        (
            "config map kubectl-applied",
            drift_both(&config_map, &objects.config_map, &kubectl_applied),
            in_sync.clone(),
        ),
        (
            "converged budget",
            drift_both(&budget, &observed_budget, unchanged),
            in_sync.clone(),
        ),
        (
            "budget loosened",
            drift_both(&budget, &observed_budget, &|b| {
                b["spec"]["maxUnavailable"] = json!(3)
            }),
            drifted("spec.maxUnavailable"),
        ),
    ];
    for (case, verdict, expected) in cases {
        assert_eq!(verdict, expected, "{case}");
    }
}

#[test]
fn a_changed_desired_state_is_outdated_on_the_cached_deployment_too() {
    let objects = served(&model_deployment("scale", 4, 1), 4);
    let scaled = served(&model_deployment("scale", 4, 2), 4);
    let desired = applied(&scaled.desired.deployment);
    assert_eq!(
        drift_both(&desired, &objects.deployment, &|_| {}),
        Verdict::Outdated
    );
}

#[test]
fn the_pinned_revision_and_the_budget_owner_survive_stripping() {
    let objects = served(&model_deployment("scale", 5, 2), 5);
    let kept = stripped(&objects.deployment);
    assert_eq!(
        PinnedRevision::read(&objects.deployment),
        PinnedRevision::read(&kept)
    );
    assert_eq!(
        objects
            .deployment
            .metadata
            .annotations
            .as_ref()
            .map(|a| a.len()),
        kept.metadata.annotations.as_ref().map(|a| a.len()),
        "only bookkeeping goes, and the Deployment has none in its annotations"
    );
    let budget = objects.budget.expect("budget");
    assert_eq!(
        budget.metadata.owner_references,
        stripped(&budget).metadata.owner_references
    );
    let md = model_deployment("scale", 5, 2);
    let kept_md = stripped(&md);
    assert_eq!(kept_md.spec, md.spec);
    assert_eq!(kept_md.status, md.status);
    assert_eq!(kept_md.metadata.uid, md.metadata.uid);
    assert_eq!(kept_md.metadata.managed_fields, None);
    assert!(
        md.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LAST_APPLIED_ANNOTATION))
    );
    assert!(
        !kept_md
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LAST_APPLIED_ANNOTATION))
    );
}
