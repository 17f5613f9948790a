//! The generated schemas are what the API server demands of a CRD: structural, with
//! valid defaults, rules it can compile, and bounds that keep every rule's cost estimate low.

use modelplane_api::crd;
use serde_json::Value;

use crate::support::{all_schemas, eval_rule, strict_json_schema};

/// Calls `visit(path, node)` for every schema node below and including `schema`.
pub fn walk<'a>(schema: &'a Value, path: &str, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(path, schema);
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (name, child) in properties {
            walk(child, &format!("{path}.{name}"), visit);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, &format!("{path}[]"), visit);
    }
    if let Some(values @ Value::Object(_)) = schema.get("additionalProperties") {
        walk(values, &format!("{path}{{}}"), visit);
    }
}

fn flag(node: &Value, key: &str) -> bool {
    node.get(key) == Some(&Value::Bool(true))
}

#[test]
fn every_node_has_a_type_or_an_escape_hatch() {
    for (kind, schema) in all_schemas() {
        walk(&schema, &kind, &mut |path, node| {
            let typed = node.get("type").is_some_and(Value::is_string);
            let escaped = flag(node, "x-kubernetes-int-or-string")
                || flag(node, "x-kubernetes-preserve-unknown-fields");
            assert!(typed || escaped, "{path}: no type");
        });
    }
}

#[test]
fn schemas_use_no_constructs_the_api_server_refuses() {
    let forbidden = ["$ref", "definitions", "$defs", "$schema", "nullable"];
    for (kind, schema) in all_schemas() {
        walk(&schema, &kind, &mut |path, node| {
            for key in forbidden {
                assert!(node.get(key).is_none(), "{path}: uses {key}");
            }
            for junctor in JUNCTORS {
                if let Some(branches) = node.get(junctor) {
                    assert_value_validations_only(&format!("{path}.{junctor}"), branches);
                }
            }
            assert!(
                !(node.get("properties").is_some() && node.get("additionalProperties").is_some()),
                "{path}: properties and additionalProperties together"
            );
            if node.get("type") == Some(&Value::from("array")) {
                assert!(node.get("items").is_some(), "{path}: array without items");
            }
            if let Some(Value::Array(values)) = node.get("enum") {
                assert!(
                    values.iter().all(Value::is_string),
                    "{path}: non-string enum value"
                );
            }
        });
    }
}

/// Keys that combine sub-schemas.
const JUNCTORS: [&str; 4] = ["anyOf", "oneOf", "allOf", "not"];

/// A structural schema allows junctors only over value validations: no type, no
/// properties, no description or default inside them (the API server's structural rule).
fn assert_value_validations_only(path: &str, junction: &Value) {
    const VALUE_VALIDATIONS: [&str; 16] = [
        "required",
        "enum",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "uniqueItems",
        "multipleOf",
        "minProperties",
        "maxProperties",
    ];
    let branches: Vec<&Value> = match junction {
        Value::Array(branches) => branches.iter().collect(),
        single => vec![single],
    };
    for branch in branches {
        let keys = branch.as_object().expect("a junctor branch is a schema");
        for (key, value) in keys {
            if JUNCTORS.contains(&key.as_str()) {
                assert_value_validations_only(&format!("{path}.{key}"), value);
            } else {
                assert!(
                    VALUE_VALIDATIONS.contains(&key.as_str()),
                    "{path}: {key} inside a junctor is not a value validation"
                );
            }
        }
    }
}

#[test]
fn root_has_spec_and_status_and_leaves_metadata_alone() {
    for (kind, schema) in all_schemas() {
        assert_eq!(schema["type"], "object", "{kind}");
        let properties = schema["properties"].as_object().expect("root properties");
        assert!(
            properties.contains_key("spec") && properties.contains_key("status"),
            "{kind}"
        );
        if let Some(metadata) = properties.get("metadata")
            && let Some(Value::Object(fields)) = metadata.get("properties")
        {
            assert!(
                fields.keys().all(|k| k == "name" || k == "generateName"),
                "{kind}: metadata constrained"
            );
        }
    }
}

#[test]
fn list_map_keys_are_required_scalars_of_the_items() {
    for (kind, schema) in all_schemas() {
        walk(&schema, &kind, &mut |path, node| {
            if node.get("x-kubernetes-list-type") != Some(&Value::from("map")) {
                return;
            }
            let items = &node["items"];
            let required = items["required"].as_array().cloned().unwrap_or_default();
            for key in node["x-kubernetes-list-map-keys"]
                .as_array()
                .expect("map keys")
            {
                assert!(
                    required.contains(key),
                    "{path}: list-map key {key} not required"
                );
                let key_type = &items["properties"][key.as_str().expect("key name")]["type"];
                assert!(
                    key_type == "string" || key_type == "integer",
                    "{path}: key {key} not scalar"
                );
            }
        });
    }
}

#[test]
fn defaults_are_valid_against_their_own_schema() {
    for (kind, schema) in all_schemas() {
        walk(&schema, &kind, &mut |path, node| {
            let Some(default) = node.get("default") else {
                return;
            };
            let validator =
                jsonschema::validator_for(&strict_json_schema(node)).expect("node compiles");
            let errors: Vec<_> = validator
                .iter_errors(default)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{path}: default {default} invalid: {errors:?}"
            );
        });
    }
}

/// Calls `visit(path, node, rule)` for every `x-kubernetes-validations` rule of every CRD.
pub fn each_rule(visit: &mut dyn FnMut(&str, &Value, &Value)) {
    for (kind, schema) in all_schemas() {
        walk(&schema, &kind, &mut |path, node| {
            for rule in node["x-kubernetes-validations"]
                .as_array()
                .into_iter()
                .flatten()
            {
                visit(path, node, rule);
            }
        });
    }
}

#[test]
fn every_rule_compiles_and_has_a_message() {
    let mut count = 0;
    each_rule(&mut |path, _, rule| {
        let text = rule["rule"].as_str().expect("rule text");
        if let Err(error) = eval_rule(text, &Value::Null) {
            assert!(!error.contains("does not compile"), "{path}: {error}");
        }
        assert!(
            rule["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {text} has no message"
        );
        count += 1;
    });
    assert!(count >= 15, "expected the documented rules, found {count}");
}

/// `rule` with every `has(...)` call removed: presence tests do not traverse values.
fn without_presence_tests(rule: &str) -> String {
    let mut out = String::new();
    let mut rest = rule;
    while let Some(start) = rest.find("has(") {
        out.push_str(&rest[..start]);
        let mut depth = 0;
        let end = rest[start..]
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => return None,
                }
                (depth == 0).then_some(start + i + 1)
            })
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The schema nodes a rule on `node` traverses: the node itself when it uses `self`
/// as a value, otherwise the properties it reads as `self.<name>`.
fn reached_by<'a>(rule: &str, node: &'a Value) -> Vec<(String, &'a Value)> {
    let text = without_presence_tests(rule);
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let self_as_value = text.match_indices("self").any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + 4..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(|c| is_ident(c) || c == '.')
    });
    if self_as_value {
        return vec![("self".to_owned(), node)];
    }
    let Some(Value::Object(properties)) = node.get("properties") else {
        return Vec::new();
    };
    properties
        .iter()
        .filter(|(name, _)| {
            let access = format!("self.{name}");
            text.match_indices(&access).any(|(i, _)| {
                !text[i + access.len()..]
                    .chars()
                    .next()
                    .is_some_and(is_ident)
            })
        })
        .map(|(name, child)| (name.clone(), child))
        .collect()
}

fn unbounded_nodes(schema: &Value, path: &str) -> Vec<String> {
    let mut unbounded = Vec::new();
    walk(schema, path, &mut |path, node| {
        let missing = match node.get("type").and_then(Value::as_str) {
            Some("string") => node.get("maxLength").is_none() && node.get("enum").is_none(),
            Some("array") => node.get("maxItems").is_none(),
            Some("object") => {
                node.get("additionalProperties").is_some() && node.get("maxProperties").is_none()
            }
            _ => flag(node, "x-kubernetes-preserve-unknown-fields"),
        };
        if missing {
            unbounded.push(path.to_owned());
        }
    });
    unbounded
}

#[test]
fn every_value_a_rule_traverses_is_bounded() {
    for (kind, schema) in all_schemas() {
        let mut unbounded = Vec::new();
        walk(&schema, &kind, &mut |path, node| {
            for rule in node["x-kubernetes-validations"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for (name, reached) in reached_by(rule["rule"].as_str().expect("rule"), node) {
                    unbounded.extend(unbounded_nodes(reached, &format!("{path}:{name}")));
                }
            }
        });
        assert!(
            unbounded.is_empty(),
            "{kind}: unbounded values reached by CEL rules: {unbounded:?}"
        );
    }
}

#[test]
fn bound_check_notices_an_unbounded_string() {
    let node = serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "other": {"type": "string"}},
    });
    let reached = reached_by("self.name != '' || has(self.other)", &node);
    assert_eq!(reached.len(), 1);
    assert_eq!(
        unbounded_nodes(reached[0].1, "name"),
        vec!["name".to_owned()]
    );
}

/// Resolves a printer-column JSONPath (`.status.conditions[?(@.type=="Ready")].status`) in a schema.
fn resolve_column<'a>(schema: &'a Value, json_path: &str) -> Option<&'a Value> {
    let mut node = schema;
    let mut rest = json_path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[?(") {
            node = node.get("items")?;
            rest = &after[after.find(")]")? + 2..];
            continue;
        }
        let field = rest.strip_prefix('.')?;
        let end = field.find(['.', '[']).unwrap_or(field.len());
        node = node.get("properties")?.get(&field[..end])?;
        rest = &field[end..];
    }
    Some(node)
}

#[test]
fn printer_columns_name_existing_fields_and_status_is_a_subresource() {
    for file in crd::all().expect("CRDs generate") {
        let version = &file.crd.spec.versions[0];
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref()),
        )
        .expect("schema");
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some()),
            "{}",
            file.file_name
        );
        let columns = version
            .additional_printer_columns
            .as_ref()
            .expect("printer columns");
        for column in columns
            .iter()
            .filter(|c| !c.json_path.starts_with(".metadata"))
        {
            assert!(
                resolve_column(&schema, &column.json_path).is_some(),
                "{}: column {} points at missing {}",
                file.file_name,
                column.name,
                column.json_path
            );
        }
        assert!(
            columns.iter().any(|c| c.name == "Age"),
            "{}: no Age column",
            file.file_name
        );
        let names = &file.crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["modelplane".to_owned()][..])
        );
        assert_eq!(names.short_names.as_ref().map(Vec::len), Some(1));
    }
}
