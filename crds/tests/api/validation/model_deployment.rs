use serde_json::{Value, json};

use super::{Refused, assert_admitted, assert_all_refused, remove, set};

const KIND: &str = "ModelDeployment";

fn classifier() -> Value {
    json!({
        "apiVersion": "serving.modelplane.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "resnet18", "namespace": "team-a"},
        "spec": {
            "model": {"name": "resnet18", "task": "classify", "source": {"oci": "registry.example/models/resnet18:v3"}},
            "runtime": {"replicas": 2, "resources": {"cpu": "4", "memory": "8Gi"},
                        "batching": {"maxBatchSize": 32, "maxQueueDelay": "2ms"},
                        "limits": {"maxInFlight": 256, "maxQueue": 1024, "requestTimeout": "30s"}},
        },
    })
}

fn generator() -> Value {
    let object = set(classifier(), "/spec/model/task", json!("generate"));
    let object = set(
        object,
        "/spec/model/tokenizer",
        json!({"path": "tokenizer.json"}),
    );
    set(
        object,
        "/spec/prompts",
        json!([{
            "name": "support",
            "variants": {"v1": {"system": "You are helpful."}, "v2": {"system": "You are terse."}},
            "rules": [
                {"when": {"tenant": "beta"}, "variant": "v2"},
                {"split": {"v1": 90, "v2": 10}, "stickyBy": "x-user-id"},
            ],
            "default": "v1",
        }]),
    )
}

fn pipeline() -> Value {
    let object = remove(classifier(), "/spec/model");
    set(
        object,
        "/spec/pipeline",
        json!({
            "nodes": [
                {"name": "embed", "model": "minilm"},
                {"name": "search", "builtin": "topK", "args": {"k": 5}},
                {"name": "gen", "modelDeployment": "tiny-lm", "timeout": "10s"},
            ],
            "edges": [
                {"from": "embed.embedding", "to": "search.query"},
                {"from": "search.passages", "to": "gen.context"},
            ],
        }),
    )
}

#[test]
fn well_formed_deployments_are_admitted() {
    assert_admitted(KIND, "oci classifier", &classifier());
    let http = json!({"url": "https://models.example/resnet18.pt", "sha256": "a".repeat(64)});
    let http_model = set(classifier(), "/spec/model/source", json!({"http": http}));
    assert_admitted(KIND, "http source", &http_model);
    assert_admitted(
        KIND,
        "http source with a pinned bundle",
        &set(
            http_model,
            "/spec/model/signatureBundle",
            json!({"path": "resnet18.pt.sig", "sha256": "b".repeat(64)}),
        ),
    );
    let pvc = json!({"pvc": {"claimName": "models", "path": "resnet18/v3/model.pt"}});
    assert_admitted(
        KIND,
        "pvc source",
        &set(classifier(), "/spec/model/source", pvc),
    );
    assert_admitted(KIND, "generator with prompts", &generator());
    assert_admitted(
        KIND,
        "generator without tokenizer (tokenizer.json beside the model)",
        &remove(generator(), "/spec/model/tokenizer"),
    );
    assert_admitted(
        KIND,
        "embedder without tokenizer",
        &set(classifier(), "/spec/model/task", json!("embed")),
    );
    assert_admitted(
        KIND,
        "generator naming another tokenizer file",
        &set(
            generator(),
            "/spec/model/tokenizer",
            json!({"path": "tokenizers/chat.json"}),
        ),
    );
    assert_admitted(KIND, "pipeline", &pipeline());
    let gpu = set(classifier(), "/spec/runtime/device", json!("cuda"));
    assert_admitted(
        KIND,
        "gpu",
        &set(gpu, "/spec/runtime/resources/gpu", json!(1)),
    );
    let keys = json!({"mode": "Enforce", "keys": [{"secretRef": {"name": "cosign-pub"}}]});
    assert_admitted(
        KIND,
        "verification",
        &set(classifier(), "/spec/verification", keys),
    );
    assert_admitted(
        KIND,
        "minimal runtime",
        &remove(classifier(), "/spec/runtime"),
    );
}

#[test]
fn model_source_must_be_exactly_one() {
    let two =
        json!({"oci": "registry.example/m:v1", "pvc": {"claimName": "models", "path": "m.pt"}});
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "no source",
                object: set(classifier(), "/spec/model/source", json!({})),
                path: "spec.model.source",
                says: "exactly one of oci, http or pvc",
            },
            Refused {
                case: "two sources",
                object: set(classifier(), "/spec/model/source", two),
                path: "spec.model.source",
                says: "exactly one of oci, http or pvc",
            },
        ],
    );
}

#[test]
fn model_and_pipeline_are_exclusive() {
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "neither",
                object: remove(classifier(), "/spec/model"),
                path: "spec",
                says: "exactly one of spec.model or spec.pipeline",
            },
            Refused {
                case: "both",
                object: set(
                    pipeline(),
                    "/spec/model",
                    classifier()["spec"]["model"].clone(),
                ),
                path: "spec",
                says: "exactly one of spec.model or spec.pipeline",
            },
        ],
    );
}

#[test]
fn runtime_numbers_quantities_and_durations_are_checked() {
    let runtime =
        |pointer: &str, value: Value| set(classifier(), &format!("/spec/runtime/{pointer}"), value);
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "negative replicas",
                object: runtime("replicas", json!(-1)),
                path: "spec.runtime.replicas",
                says: "minimum",
            },
            Refused {
                case: "memory in GB",
                object: runtime("resources/memory", json!("8GB")),
                path: "spec.runtime.resources.memory",
                says: "does not match",
            },
            Refused {
                case: "cpu in words",
                object: runtime("resources/cpu", json!("four")),
                path: "spec.runtime.resources.cpu",
                says: "does not match",
            },
            Refused {
                case: "negative cpu",
                object: runtime("resources/cpu", json!("-1")),
                path: "spec.runtime.resources.cpu",
                says: "does not match",
            },
            Refused {
                case: "duration without unit",
                object: runtime("batching/maxQueueDelay", json!("2")),
                path: "spec.runtime.batching.maxQueueDelay",
                says: "does not match",
            },
            Refused {
                case: "duration with space",
                object: runtime("limits/requestTimeout", json!("30 s")),
                path: "spec.runtime.limits.requestTimeout",
                says: "does not match",
            },
            Refused {
                case: "zero batch",
                object: runtime("batching/maxBatchSize", json!(0)),
                path: "spec.runtime.batching.maxBatchSize",
                says: "minimum",
            },
            Refused {
                case: "unknown device",
                object: runtime("device", json!("tpu")),
                path: "spec.runtime.device",
                says: "is not one of",
            },
            Refused {
                case: "gpu on cpu",
                object: runtime("resources/gpu", json!(1)),
                path: "spec.runtime",
                says: "resources.gpu requires device cuda",
            },
            Refused {
                case: "misspelt field",
                object: runtime("replica", json!(2)),
                path: "spec.runtime",
                says: "replica",
            },
        ],
    );
}

#[test]
fn model_fields_are_checked() {
    let model =
        |pointer: &str, value: Value| set(classifier(), &format!("/spec/model/{pointer}"), value);
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "unknown task",
                object: model("task", json!("translate")),
                path: "spec.model.task",
                says: "is not one of",
            },
            Refused {
                case: "unknown format",
                object: model("format", json!("onnx")),
                path: "spec.model.format",
                says: "is not one of",
            },
            Refused {
                case: "bundle pin on a model not fetched over http",
                object: model(
                    "signatureBundle",
                    json!({"path": "model.sig", "sha256": "a".repeat(64)}),
                ),
                path: "spec.model",
                says: "only an http source can use it",
            },
            Refused {
                case: "short sha256",
                object: model(
                    "source",
                    json!({"http": {"url": "https://m.example/m.pt", "sha256": "abc"}}),
                ),
                path: "spec.model.source.http.sha256",
                says: "does not match",
            },
            Refused {
                case: "ftp url",
                object: model(
                    "source",
                    json!({"http": {"url": "ftp://m.example/m.pt", "sha256": "a".repeat(64)}}),
                ),
                path: "spec.model.source.http.url",
                says: "does not match",
            },
            Refused {
                case: "escaping pvc path",
                object: model(
                    "source",
                    json!({"pvc": {"claimName": "models", "path": "../etc/passwd"}}),
                ),
                path: "spec.model.source.pvc.path",
                says: "does not match",
            },
            Refused {
                case: "oci with spaces",
                object: model("source", json!({"oci": "not a reference"})),
                path: "spec.model.source.oci",
                says: "does not match",
            },
        ],
    );
}

#[test]
fn verification_needs_keys_unless_disabled() {
    let verification = |value: Value| set(classifier(), "/spec/verification", value);
    assert_admitted(
        KIND,
        "disabled without keys",
        &verification(json!({"mode": "Disabled"})),
    );
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "enforce without keys",
                object: verification(json!({"mode": "Enforce"})),
                path: "spec.verification",
                says: "keys are required",
            },
            Refused {
                case: "audit without keys",
                object: verification(json!({"mode": "Audit", "keys": []})),
                path: "spec.verification",
                says: "keys are required",
            },
            Refused {
                case: "unknown mode",
                object: verification(json!({"mode": "Strict"})),
                path: "spec.verification.mode",
                says: "is not one of",
            },
            Refused {
                case: "unknown detector",
                object: set(
                    classifier(),
                    "/spec/redaction",
                    json!({"detectors": ["ssn"]}),
                ),
                path: "spec.redaction.detectors[0]",
                says: "is not one of",
            },
        ],
    );
}

#[test]
fn prompts_must_be_consistent() {
    let prompt = |pointer: &str, value: Value| {
        set(generator(), &format!("/spec/prompts/0/{pointer}"), value)
    };
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "prompts on a classifier",
                object: set(generator(), "/spec/model/task", json!("classify")),
                path: "spec",
                says: "spec.prompts requires spec.model.task generate",
            },
            Refused {
                case: "unknown default",
                object: prompt("default", json!("v3")),
                path: "spec.prompts[0]",
                says: "default must name one of variants",
            },
            Refused {
                case: "rule names unknown variant",
                object: prompt("rules/0/variant", json!("v9")),
                path: "spec.prompts[0]",
                says: "rules may only name variants",
            },
            Refused {
                case: "split names unknown variant",
                object: prompt("rules/1/split", json!({"v1": 50, "v7": 50})),
                path: "spec.prompts[0]",
                says: "rules may only name variants",
            },
            Refused {
                case: "variant and split",
                object: prompt("rules/0/split", json!({"v1": 1})),
                path: "spec.prompts[0].rules[0]",
                says: "exactly one of variant or split",
            },
            Refused {
                case: "sticky without split",
                object: prompt("rules/0/stickyBy", json!("x-user-id")),
                path: "spec.prompts[0].rules[0]",
                says: "stickyBy requires split",
            },
            Refused {
                case: "all-zero split",
                object: prompt("rules/1/split", json!({"v1": 0, "v2": 0})),
                path: "spec.prompts[0].rules[1]",
                says: "at least one weight above 0",
            },
            Refused {
                case: "weight over 100",
                object: prompt("rules/1/split/v1", json!(101)),
                path: "spec.prompts[0].rules[1].split.v1",
                says: "maximum",
            },
        ],
    );
}

#[test]
fn pipelines_must_be_wired_to_their_nodes() {
    let node =
        |pointer: &str, value: Value| set(pipeline(), &format!("/spec/pipeline/{pointer}"), value);
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "node of two kinds",
                object: node("nodes/0/builtin", json!("topK")),
                path: "spec.pipeline.nodes[0]",
                says: "exactly one of model, modelDeployment or builtin",
            },
            Refused {
                case: "node of no kind",
                object: node("nodes/0", json!({"name": "embed"})),
                path: "spec.pipeline.nodes[0]",
                says: "exactly one of model, modelDeployment or builtin",
            },
            Refused {
                case: "edge to unknown node",
                object: node("edges/0/to", json!("rank.query")),
                path: "spec.pipeline",
                says: "every edge must start and end at a node",
            },
            Refused {
                case: "edge without port",
                object: node("edges/0/from", json!("embed")),
                path: "spec.pipeline.edges[0].from",
                says: "does not match",
            },
            Refused {
                case: "bad node timeout",
                object: node("nodes/2/timeout", json!("soon")),
                path: "spec.pipeline.nodes[2].timeout",
                says: "does not match",
            },
            Refused {
                case: "no nodes",
                object: node("nodes", json!([])),
                path: "spec.pipeline.nodes",
                says: "[]",
            },
        ],
    );
}

#[test]
fn fallbacks_are_admitted_and_malformed_ones_refused() {
    let chain = json!({
        "modelDeployment": "resnet18-small",
        "timeout": "2s",
        "breaker": {"window": "30s", "minRequests": 20, "errorPercent": 50, "baselineFactor": 5,
                    "minErrorPercent": 10, "openFor": "10s", "maxOpenFor": "5m", "probes": 3},
        "response": {"outputs": [{"name": "scores", "datatype": "FP32", "shape": [2], "data": ["0.5", "0.5"]}]},
    });
    assert_admitted(
        KIND,
        "a whole chain",
        &set(classifier(), "/spec/fallback", chain),
    );
    assert_admitted(
        KIND,
        "the DESIGN shorthand",
        &set(
            classifier(),
            "/spec/fallback",
            json!({"modelDeployment": "resnet18-small"}),
        ),
    );
    assert_admitted(
        KIND,
        "a breaker alone",
        &set(
            classifier(),
            "/spec/fallback",
            json!({"breaker": {"probes": 1}}),
        ),
    );
    assert_admitted(
        KIND,
        "a fixed text",
        &set(
            generator(),
            "/spec/fallback",
            json!({"response": {"text": "Busy; try again."}}),
        ),
    );
    let fallback = |value: Value| set(classifier(), "/spec/fallback", value);
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "empty fallback",
                object: fallback(json!({})),
                path: "spec.fallback",
                says: "set modelDeployment, response or breaker",
            },
            Refused {
                case: "both outputs and text",
                object: fallback(json!({"response": {"text": "x", "outputs": [
                    {"name": "s", "datatype": "FP32", "shape": [1], "data": ["1"]}]}})),
                path: "spec.fallback.response",
                says: "set exactly one of outputs or text",
            },
            Refused {
                case: "an empty response",
                object: fallback(json!({"response": {}})),
                path: "spec.fallback.response",
                says: "set exactly one of outputs or text",
            },
            Refused {
                case: "error percent over 100",
                object: fallback(json!({"breaker": {"errorPercent": 101}})),
                path: "spec.fallback.breaker.errorPercent",
                says: "maximum",
            },
            Refused {
                case: "zero probes",
                object: fallback(json!({"breaker": {"probes": 0}})),
                path: "spec.fallback.breaker.probes",
                says: "minimum",
            },
            Refused {
                case: "a malformed duration",
                object: fallback(json!({"breaker": {"openFor": "ten seconds"}})),
                path: "spec.fallback.breaker.openFor",
                says: "does not match",
            },
            Refused {
                case: "an unknown datatype",
                object: fallback(json!({"response": {"outputs": [
                    {"name": "s", "datatype": "FP16", "shape": [1], "data": ["1"]}]}})),
                path: "spec.fallback.response.outputs[0].datatype",
                says: "is not one of",
            },
            Refused {
                case: "a name that is no ModelDeployment name",
                object: fallback(json!({"modelDeployment": "Resnet_18"})),
                path: "spec.fallback.modelDeployment",
                says: "does not match",
            },
        ],
    );
}

#[test]
fn adaptive_limits_are_bounded() {
    let adaptive = |value: Value| set(classifier(), "/spec/runtime/limits/adaptive", value);
    assert_admitted(
        KIND,
        "an adaptive limit",
        &adaptive(
            json!({"minLimit": 2, "maxLimit": 64, "initialLimit": 8, "window": "250ms",
                         "bufferPercent": 10, "maxChangePercent": 25}),
        ),
    );
    assert_admitted(KIND, "all defaults", &adaptive(json!({})));
    assert_all_refused(
        KIND,
        vec![
            Refused {
                case: "a zero minimum",
                object: adaptive(json!({"minLimit": 0})),
                path: "spec.runtime.limits.adaptive.minLimit",
                says: "minimum",
            },
            Refused {
                case: "a change over 100 %",
                object: adaptive(json!({"maxChangePercent": 150})),
                path: "spec.runtime.limits.adaptive.maxChangePercent",
                says: "maximum",
            },
            Refused {
                case: "a malformed window",
                object: adaptive(json!({"window": "soon"})),
                path: "spec.runtime.limits.adaptive.window",
                says: "does not match",
            },
        ],
    );
}
