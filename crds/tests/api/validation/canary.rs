use serde_json::{Value, json};

use super::{Refused, assert_admitted, assert_all_refused, remove, set};

const KIND: &str = "Canary";

fn canary() -> Value {
    json!({
        "apiVersion": "serving.modelplane.io/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": "resnet18-v4", "namespace": "team-a"},
        "spec": {
            "targetRef": {"name": "resnet18"},
            "candidate": {"model": {"source": {"oci": "registry.example/models/resnet18:v4"}}},
            "steps": [{"weight": 5, "pause": "2m"}, {"weight": 25, "pause": "5m"}, {"weight": 50, "pause": "5m"}],
            "match": [{"headers": {"x-canary": "true"}}, {"tenants": ["beta-testers"]}],
            "window": {"start": "02:00", "end": "06:00", "timeZone": "Europe/Berlin"},
            "analysis": {
                "interval": "1m",
                "failureLimit": 2,
                "metrics": [
                    {"name": "errorRate", "max": 0.01},
                    {"name": "latencyP99", "maxIncrease": "20%"},
                    {"name": "timeToFirstTokenP95", "max": "500ms"},
                    {"name": "timePerOutputTokenP95", "maxIncrease": "10%"},
                    {"name": "emptyOutputRate", "max": 0.02},
                    {"name": "custom", "prometheus": {"query": "sum(rate(x[1m]))"}, "max": 0.5},
                ],
                "source": "pods",
                "confidence": 0.99,
                "minSamples": 200,
                "inconclusiveLimit": 5,
                "onInconclusive": "Fail",
                "metricErrorLimit": 3,
            },
            "stickyBy": "x-user-id",
        },
    })
}

fn weights(weights: &[i64]) -> Value {
    let steps: Vec<Value> = weights.iter().map(|w| json!({"weight": w})).collect();
    set(canary(), "/spec/steps", Value::Array(steps))
}

#[test]
fn well_formed_canaries_are_admitted() {
    assert_admitted(KIND, "full", &canary());
    assert_admitted(KIND, "single step", &weights(&[100]));
    assert_admitted(
        KIND,
        "ten steps",
        &weights(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    );
    assert_admitted(KIND, "image only", &image_candidate());
    assert_admitted(
        KIND,
        "image with empty match",
        &set(image_candidate(), "/spec/match", json!([])),
    );
}

/// The full Canary with a runtime-image candidate, without `match` and `stickyBy`.
fn image_candidate() -> Value {
    let image = set(
        canary(),
        "/spec/candidate",
        json!({"runtime": {"image": "ghcr.io/modelplane/runtime:0.2.0"}}),
    );
    remove(remove(image, "/spec/match"), "/spec/stickyBy")
}

#[test]
fn a_runtime_image_candidate_takes_no_match_rules_or_stickiness() {
    let says = "weighted by replica count";
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "image with match",
                object: set(
                    image_candidate(),
                    "/spec/match",
                    json!([{"headers": {"x-canary": "true"}}]),
                ),
                path: "spec",
                says,
            },
            Refused {
                case: "image with stickyBy",
                object: set(image_candidate(), "/spec/stickyBy", json!("x-user-id")),
                path: "spec",
                says,
            },
            Refused {
                case: "image and model with match",
                object: set(
                    canary(),
                    "/spec/candidate/runtime",
                    json!({"image": "ghcr.io/modelplane/runtime:0.2.0"}),
                ),
                path: "spec",
                says,
            },
        ],
    );
}

#[test]
fn step_weights_must_rise_within_0_to_100() {
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "repeated weight",
                object: weights(&[5, 5]),
                path: "spec.steps",
                says: "strictly increasing",
            },
            Refused {
                case: "falling weight",
                object: weights(&[50, 25]),
                path: "spec.steps",
                says: "strictly increasing",
            },
            Refused {
                case: "late fall",
                object: weights(&[1, 2, 3, 4, 5, 6, 7, 8, 10, 9]),
                path: "spec.steps",
                says: "strictly increasing",
            },
            Refused {
                case: "over 100",
                object: weights(&[5, 101]),
                path: "spec.steps[1].weight",
                says: "maximum",
            },
            Refused {
                case: "negative",
                object: weights(&[-1, 5]),
                path: "spec.steps[0].weight",
                says: "minimum",
            },
            Refused {
                case: "too many steps",
                object: weights(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
                path: "spec.steps",
                says: "more than 10",
            },
            Refused {
                case: "no steps",
                object: weights(&[]),
                path: "spec.steps",
                says: "[]",
            },
            Refused {
                case: "pause in words",
                object: set(canary(), "/spec/steps/0/pause", json!("2 minutes")),
                path: "spec.steps[0].pause",
                says: "does not match",
            },
        ],
    );
}

#[test]
fn candidate_match_and_window_are_checked() {
    let two_sources = json!({"model": {"source": {"oci": "r.example/m:v1", "http": {"url": "https://m.example/m.pt", "sha256": "a".repeat(64)}}}});
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "empty candidate",
                object: set(canary(), "/spec/candidate", json!({})),
                path: "spec.candidate",
                says: "candidate must change model, runtime or prompts",
            },
            Refused {
                case: "two candidate sources",
                object: set(canary(), "/spec/candidate", two_sources),
                path: "spec.candidate.model.source",
                says: "exactly one of oci, http or pvc",
            },
            Refused {
                case: "empty match",
                object: set(canary(), "/spec/match/0", json!({})),
                path: "spec.match[0]",
                says: "match needs headers or tenants",
            },
            Refused {
                case: "hour 25",
                object: set(canary(), "/spec/window/start", json!("25:00")),
                path: "spec.window.start",
                says: "does not match",
            },
        ],
    );
}

#[test]
fn analysis_metrics_are_checked() {
    let metric = |index: usize, value: Value| {
        set(canary(), &format!("/spec/analysis/metrics/{index}"), value)
    };
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "unknown built-in",
                object: metric(0, json!({"name": "errorRatio", "max": 0.1})),
                path: "spec.analysis.metrics[0]",
                says: "name must be a built-in metric",
            },
            Refused {
                case: "no threshold",
                object: metric(0, json!({"name": "errorRate"})),
                path: "spec.analysis.metrics[0]",
                // The API server: "must validate at least one schema (anyOf)" and
                // "spec.analysis.metrics[0].max: Required value".
                says: "anyOf",
            },
            Refused {
                case: "threshold that is neither a number nor a duration",
                object: metric(0, json!({"name": "latencyP99", "max": "fast"})),
                path: "spec.analysis.metrics[0].max",
                says: "does not match",
            },
            Refused {
                case: "percent without sign",
                object: metric(1, json!({"name": "latencyP99", "maxIncrease": "20"})),
                path: "spec.analysis.metrics[1].maxIncrease",
                says: "does not match",
            },
            Refused {
                case: "custom with increase",
                object: metric(
                    3,
                    json!({"name": "custom", "prometheus": {"query": "up"}, "maxIncrease": "5%"}),
                ),
                path: "spec.analysis.metrics[3]",
                says: "maxIncrease applies to built-in metrics only",
            },
            Refused {
                case: "unknown source",
                object: set(canary(), "/spec/analysis/source", json!("grafana")),
                path: "spec.analysis.source",
                says: "is not one of",
            },
            Refused {
                case: "zero failure limit",
                object: set(canary(), "/spec/analysis/failureLimit", json!(0)),
                path: "spec.analysis.failureLimit",
                says: "minimum",
            },
        ],
    );
}

#[test]
fn statistics_and_stickiness_are_checked() {
    let analysis =
        |field: &str, value: Value| set(canary(), &format!("/spec/analysis/{field}"), value);
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "confidence of 1",
                object: analysis("confidence", json!(1.0)),
                path: "spec.analysis.confidence",
                says: "maximum",
            },
            Refused {
                case: "confidence below a coin",
                object: analysis("confidence", json!(0.4)),
                path: "spec.analysis.confidence",
                says: "minimum",
            },
            Refused {
                case: "no samples",
                object: analysis("minSamples", json!(0)),
                path: "spec.analysis.minSamples",
                says: "minimum",
            },
            Refused {
                case: "zero inconclusive limit",
                object: analysis("inconclusiveLimit", json!(0)),
                path: "spec.analysis.inconclusiveLimit",
                says: "minimum",
            },
            Refused {
                case: "unknown inconclusive policy",
                object: analysis("onInconclusive", json!("Succeed")),
                path: "spec.analysis.onInconclusive",
                says: "is not one of",
            },
            Refused {
                case: "zero metric error limit",
                object: analysis("metricErrorLimit", json!(0)),
                path: "spec.analysis.metricErrorLimit",
                says: "minimum",
            },
            Refused {
                case: "sticky header with a space",
                object: set(canary(), "/spec/stickyBy", json!("x user")),
                path: "spec.stickyBy",
                says: "does not match",
            },
        ],
    );
}
