//! An offline stand-in for the API server's handling of a custom object: schema
//! defaulting, OpenAPI validation (with strict field validation, as `kubectl apply`
//! does by default) and CEL `x-kubernetes-validations`.

use std::path::PathBuf;

use cel_interpreter::{Context, Program, Value as CelValue};
use modelplane_api::crd;
use serde_json::{Map, Value};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `openAPIV3Schema` of the CRD of `kind`, as JSON.
pub fn schema_of(kind: &str) -> Value {
    let files = crd::all().expect("CRDs generate");
    let file = files
        .into_iter()
        .find(|f| f.crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD of kind {kind}"));
    let version = &file.crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// Every CRD schema with its kind.
pub fn all_schemas() -> Vec<(String, Value)> {
    ["ModelDeployment", "TenantQuota", "Canary"]
        .into_iter()
        .map(|kind| (kind.to_owned(), schema_of(kind)))
        .collect()
}

/// One refusal: where, and the message the API server would print.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// JSON path of the offending value (`spec.runtime.replicas`).
    pub path: String,
    /// The message.
    pub message: String,
}

/// What the API server would say about `object` of `kind`: every violation, after defaulting.
pub fn admit(kind: &str, object: &Value) -> Vec<Violation> {
    let schema = schema_of(kind);
    let mut object = object.clone();
    apply_defaults(&schema, &mut object);
    let mut violations = openapi_violations(&schema, &object);
    cel_violations(&schema, &object, "", &mut violations);
    violations
}

/// Inserts schema defaults for missing properties, recursively (as the API server does
/// before validation).
pub fn apply_defaults(schema: &Value, data: &mut Value) {
    match data {
        Value::Object(fields) => {
            if let Some(Value::Object(properties)) = schema.get("properties") {
                for (name, property) in properties {
                    if let (false, Some(default)) =
                        (fields.contains_key(name), property.get("default"))
                    {
                        fields.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = fields.get_mut(name) {
                        apply_defaults(property, child);
                    }
                }
            } else if let Some(values @ Value::Object(_)) = schema.get("additionalProperties") {
                fields
                    .values_mut()
                    .for_each(|child| apply_defaults(values, child));
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                items
                    .iter_mut()
                    .for_each(|item| apply_defaults(item_schema, item));
            }
        }
        _ => {}
    }
}

/// The schema as plain JSON Schema with unknown fields refused (strict field validation).
pub fn strict_json_schema(schema: &Value) -> Value {
    let mut strict = schema.clone();
    close_objects(&mut strict);
    strict
}

fn close_objects(schema: &mut Value) {
    let Some(node) = schema.as_object_mut() else {
        return;
    };
    let preserves = node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if node.contains_key("properties") && !preserves && !node.contains_key("additionalProperties") {
        node.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(properties)) = node.get_mut("properties") {
        // `metadata` is validated by the API server itself, not by the CRD schema.
        properties.remove("metadata");
        properties.values_mut().for_each(close_objects);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = node.get_mut(key) {
            close_objects(child);
        }
    }
}

fn openapi_violations(schema: &Value, object: &Value) -> Vec<Violation> {
    let mut strict = strict_json_schema(schema);
    if let Some(Value::Object(properties)) = strict.get_mut("properties") {
        for key in ["apiVersion", "kind", "metadata"] {
            properties.insert(key.into(), serde_json::json!({}));
        }
    }
    let validator = jsonschema::validator_for(&strict).expect("schema compiles as JSON Schema");
    validator
        .iter_errors(object)
        .map(|error| Violation {
            path: display_path(object, &error.instance_path().to_string()),
            message: error.to_string(),
        })
        .collect()
}

/// Turns a JSON pointer into the API server's notation (`spec.steps[0].weight`).
fn display_path(object: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut node = Some(object);
    for segment in pointer.split('/').skip(1) {
        let key = segment.replace("~1", "/").replace("~0", "~");
        match node {
            Some(Value::Array(items)) => {
                out.push_str(&format!("[{key}]"));
                node = key.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            _ => {
                if !out.is_empty() {
                    out.push('.');
                }
                node = node.and_then(|n| n.get(&key));
                out.push_str(&key);
            }
        }
    }
    out
}

/// Evaluates every `x-kubernetes-validations` rule against the data at its place.
fn cel_violations(schema: &Value, data: &Value, path: &str, out: &mut Vec<Violation>) {
    if let Some(Value::Array(rules)) = schema.get("x-kubernetes-validations") {
        for rule in rules {
            let text = rule["rule"].as_str().expect("rule is a string");
            if let Err(message) = eval_rule(text, data) {
                let message = rule
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or(message, str::to_owned);
                out.push(Violation {
                    path: path.to_owned(),
                    message,
                });
            }
        }
    }
    match data {
        Value::Object(fields) => cel_object_children(schema, fields, path, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    cel_violations(item_schema, item, &format!("{path}[{index}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn cel_object_children(
    schema: &Value,
    fields: &Map<String, Value>,
    path: &str,
    out: &mut Vec<Violation>,
) {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (name, value) in fields {
            if let Some(property) = properties.get(name) {
                cel_violations(property, value, &join(name), out);
            }
        }
    } else if let Some(values @ Value::Object(_)) = schema.get("additionalProperties") {
        for (name, value) in fields {
            cel_violations(values, value, &join(name), out);
        }
    }
}

/// Evaluates one rule with `self` bound to `data`; `Err` carries why it did not hold.
pub fn eval_rule(rule: &str, data: &Value) -> Result<(), String> {
    let program =
        Program::compile(rule).map_err(|e| format!("rule {rule:?} does not compile: {e}"))?;
    let mut context = Context::default();
    let value = cel_interpreter::to_value(data).map_err(|e| e.to_string())?;
    context.add_variable_from_value("self", value);
    match program.execute(&context) {
        Ok(CelValue::Bool(true)) => Ok(()),
        Ok(other) => Err(format!("failed rule: {rule} (gave {other:?})")),
        Err(error) => Err(format!("rule {rule:?} errored: {error}")),
    }
}
