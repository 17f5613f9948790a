//! The chart's rendered manifests, checked offline against the Kubernetes API types: each
//! object (default values and others) deserializes into its k8s-openapi type and comes back
//! the same, so a misspelt or misplaced field (which the type would drop) or a wrong type
//! fails here, not at `helm install`. Needs `helm` (`bash scripts/k8s-tools.sh`; CI has it).

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm() -> Option<PathBuf> {
    let local = root().join(".cache/bin/helm");
    std::env::var_os("HELM")
        .map(PathBuf::from)
        .or_else(|| local.is_file().then_some(local))
}

/// `helm template` of the chart with `sets` (`--set-json`), as JSON documents.
fn render(helm: &Path, sets: &[&str]) -> Vec<Value> {
    let mut command = Command::new(helm);
    command
        .args(["template", "mp"])
        .arg(root().join("charts/modelplane"))
        .args(["--namespace", "modelplane-system"]);
    for set in sets {
        command.args(["--set-json", set]);
    }
    let output = command.output().expect("helm runs");
    assert!(
        output.status.success(),
        "helm template {sets:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(document).expect("YAML");
            serde_json::to_value(value).expect("JSON")
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// `value` without nulls and empty maps, as serializing a typed object writes it.
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn round_trip<K: Serialize + DeserializeOwned>(document: &Value) -> Result<(), String> {
    let typed: K = serde_json::from_value(document.clone()).map_err(|e| e.to_string())?;
    let back = normalized(&serde_json::to_value(&typed).map_err(|e| e.to_string())?);
    let original = normalized(document);
    if back != original {
        return Err(format!(
            "fields the Kubernetes type does not know were dropped:\nrendered: {original:#}\ntyped:    {back:#}"
        ));
    }
    Ok(())
}

/// Checks one rendered object against its Kubernetes type; the kinds of other APIs are
/// named in `others` (prometheus-operator's, checked by their own fields below).
fn check(document: &Value) -> Result<&'static str, String> {
    let kind = document["kind"].as_str().unwrap_or_default();
    match kind {
        "Deployment" => round_trip::<Deployment>(document).map(|()| "Deployment"),
        "Service" => round_trip::<Service>(document).map(|()| "Service"),
        "ServiceAccount" => round_trip::<ServiceAccount>(document).map(|()| "ServiceAccount"),
        "ConfigMap" => round_trip::<ConfigMap>(document).map(|()| "ConfigMap"),
        "ClusterRole" => round_trip::<ClusterRole>(document).map(|()| "ClusterRole"),
        "ClusterRoleBinding" => {
            round_trip::<ClusterRoleBinding>(document).map(|()| "ClusterRoleBinding")
        }
        "Role" => round_trip::<Role>(document).map(|()| "Role"),
        "RoleBinding" => round_trip::<RoleBinding>(document).map(|()| "RoleBinding"),
        "PodDisruptionBudget" => {
            round_trip::<PodDisruptionBudget>(document).map(|()| "PodDisruptionBudget")
        }
        "ServiceMonitor" | "PodMonitor" => {
            let api = document["apiVersion"].as_str().unwrap_or_default();
            let spec = &document["spec"];
            let ok = api == "monitoring.coreos.com/v1"
                && spec["selector"]["matchLabels"].is_object()
                && (spec["endpoints"].is_array() || spec["podMetricsEndpoints"].is_array());
            ok.then_some("monitor")
                .ok_or_else(|| format!("malformed {kind}: {document:#}"))
        }
        other => Err(format!("a kind this test does not know: {other}")),
    }
}

#[test]
fn rendered_manifests_are_valid_kubernetes_objects() {
    let Some(helm) = helm() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have helm (scripts/k8s-tools.sh)"
        );
        eprintln!("skipping: no helm (bash scripts/k8s-tools.sh installs it)");
        return;
    };
    let variants: [&[&str]; 3] = [
        &[],
        &[
            r#"operator.namespaces=["team-a","team-b"]"#,
            "operator.replicas=3",
            "dashboards.enabled=true",
            "monitoring.serviceMonitor=true",
            "monitoring.podMonitor=true",
            r#"operator.registry={"insecure":["127.0.0.1:5000"],"caSecret":"ca","credentialsSecret":"creds"}"#,
            r#"operator.canary.prometheusUrl="http://prometheus.monitoring:9090""#,
            r#"operator.tolerations=[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]"#,
            r#"operator.nodeSelector={"kubernetes.io/os":"linux"}"#,
        ],
        &[
            "operator.replicas=1",
            r#"operator.leaderElection={"enabled":false}"#,
        ],
    ];
    for sets in variants {
        let documents = render(&helm, sets);
        assert!(
            documents.len() >= 6,
            "{sets:?}: {} objects",
            documents.len()
        );
        for document in &documents {
            if let Err(problem) = check(document) {
                panic!(
                    "{sets:?}: {} {}: {problem}",
                    document["kind"], document["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn a_misplaced_field_is_caught() {
    let mut document: Value = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80}], "selectr": {"a": "b"}},
    });
    assert!(check(&document).is_err(), "a typo in a field name");
    document["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("selectr");
    assert_eq!(check(&document), Ok("Service"));
}
