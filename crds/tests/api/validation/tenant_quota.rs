use serde_json::{Value, json};

use super::{Refused, assert_admitted, assert_all_refused, remove, set};

const KIND: &str = "TenantQuota";

fn quota() -> Value {
    json!({
        "apiVersion": "serving.modelplane.io/v1alpha1",
        "kind": "TenantQuota",
        "metadata": {"name": "team-a"},
        "spec": {
            "namespaces": ["team-a", "team-a-dev"],
            "hard": {"gpu": 4, "cpu": "32", "memory": "128Gi", "replicas": 12, "modelDeployments": 6},
            "requests": {"perSecond": 200, "burst": 400, "tokensPerMinute": 500000, "maxConcurrent": 64},
            "priority": 10,
            "runtimeCgroup": {"cpuWeight": 200, "cpuMax": "2 cores"},
        },
    })
}

#[test]
fn well_formed_quotas_are_admitted() {
    assert_admitted(KIND, "namespaces", &quota());
    let selector = json!({"matchLabels": {"modelplane.io/tenant": "team-a"}});
    let by_selector = set(
        remove(quota(), "/spec/namespaces"),
        "/spec/namespaceSelector",
        selector,
    );
    assert_admitted(KIND, "selector", &by_selector);
    for cpu_max in ["max", "1 core", "1.5", "500m"] {
        assert_admitted(
            KIND,
            cpu_max,
            &set(quota(), "/spec/runtimeCgroup/cpuMax", json!(cpu_max)),
        );
    }
}

#[test]
fn quota_must_select_namespaces() {
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "neither",
                object: remove(quota(), "/spec/namespaces"),
                path: "spec",
                says: "set spec.namespaces or spec.namespaceSelector",
            },
            Refused {
                case: "empty list",
                object: set(quota(), "/spec/namespaces", json!([])),
                path: "spec",
                says: "set spec.namespaces or spec.namespaceSelector",
            },
            Refused {
                case: "bad namespace name",
                object: set(quota(), "/spec/namespaces/0", json!("Team_A")),
                path: "spec.namespaces[0]",
                says: "does not match",
            },
        ],
    );
}

#[test]
fn quota_amounts_are_checked() {
    let spec = |pointer: &str, value: Value| set(quota(), &format!("/spec/{pointer}"), value);
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "cpu in cores",
                object: spec("hard/cpu", json!("32 cores")),
                path: "spec.hard.cpu",
                says: "does not match",
            },
            Refused {
                case: "negative memory",
                object: spec("hard/memory", json!("-1Gi")),
                path: "spec.hard.memory",
                says: "does not match",
            },
            Refused {
                case: "negative gpu",
                object: spec("hard/gpu", json!(-1)),
                path: "spec.hard.gpu",
                says: "minimum",
            },
            Refused {
                case: "negative replicas",
                object: spec("hard/replicas", json!(-2)),
                path: "spec.hard.replicas",
                says: "minimum",
            },
            Refused {
                case: "zero priority",
                object: spec("priority", json!(0)),
                path: "spec.priority",
                says: "minimum",
            },
            Refused {
                case: "zero cpu weight",
                object: spec("runtimeCgroup/cpuWeight", json!(0)),
                path: "spec.runtimeCgroup.cpuWeight",
                says: "minimum",
            },
            Refused {
                case: "cpu max in words",
                object: spec("runtimeCgroup/cpuMax", json!("lots")),
                path: "spec.runtimeCgroup.cpuMax",
                says: "does not match",
            },
            Refused {
                case: "burst below rate",
                object: spec("requests/burst", json!(100)),
                path: "spec.requests",
                says: "burst must be at least perSecond",
            },
        ],
    );
}
