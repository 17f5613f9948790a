//! The API server type-checks every CEL rule against the schema it sits on: a rule that
//! names a field the schema does not declare with a type (a free-form
//! `x-kubernetes-preserve-unknown-fields` value, or a field that does not exist) makes
//! the whole CRD invalid ("undefined field"). The CEL interpreter used by the other
//! tests evaluates rules without that check, so this module resolves every field
//! access of every rule against the schema, as the API server's checker does.

use cel_parser::{
    Parser,
    ast::{Expr, IdedExpr},
};
use serde_json::Value;

use crate::structural::each_rule;

/// What a CEL expression is, as far as the schema tells.
#[derive(Clone, Copy)]
enum Typed<'a> {
    /// A value described by this schema node.
    Node(&'a Value),
    /// A value that is not a schema field (a literal, a map key, a result).
    Other,
}

/// Variables in scope: `self`, `oldSelf` and comprehension variables.
struct Scope<'a, 'b> {
    name: &'b str,
    typed: Typed<'a>,
    outer: Option<&'b Scope<'a, 'b>>,
}

impl<'a> Scope<'a, '_> {
    fn lookup(&self, name: &str) -> Option<Typed<'a>> {
        if self.name == name {
            return Some(self.typed);
        }
        self.outer.and_then(|outer| outer.lookup(name))
    }
}

fn flag(node: &Value, key: &str) -> bool {
    node.get(key) == Some(&Value::Bool(true))
}

/// Whether CEL sees a declared type on `node`.
fn has_declared_type(node: &Value) -> bool {
    node.get("type").is_some_and(Value::is_string) || flag(node, "x-kubernetes-int-or-string")
}

/// Every field access in `rule` (on `node`) the API server's type checker would refuse.
pub fn undeclared_fields(rule: &str, node: &Value) -> Result<Vec<String>, String> {
    let expr = Parser::new()
        .parse(rule)
        .map_err(|error| format!("{rule}: does not parse: {error}"))?;
    let root_self = Scope {
        name: "self",
        typed: Typed::Node(node),
        outer: None,
    };
    let scope = Scope {
        name: "oldSelf",
        typed: Typed::Node(node),
        outer: Some(&root_self),
    };
    let mut problems = Vec::new();
    if !has_declared_type(node) {
        problems.push("self: a rule on a value without a declared type".to_owned());
    }
    resolve(&expr, &scope, &mut problems);
    Ok(problems)
}

/// The schema node that `expr` evaluates to, recording refused accesses on the way.
fn resolve<'a>(expr: &IdedExpr, scope: &Scope<'a, '_>, problems: &mut Vec<String>) -> Typed<'a> {
    match &expr.expr {
        Expr::Ident(name) => scope.lookup(name).unwrap_or(Typed::Other),
        Expr::Select(select) => {
            let operand = resolve(&select.operand, scope, problems);
            select_field(operand, &select.field, problems)
        }
        Expr::Call(call) => {
            if let Some(target) = call.target.as_deref() {
                resolve(target, scope, problems);
            }
            let args: Vec<Typed<'a>> = call
                .args
                .iter()
                .map(|arg| resolve(arg, scope, problems))
                .collect();
            match (call.func_name.as_str(), args.as_slice()) {
                ("_[_]", [Typed::Node(container), _]) => element_of(container),
                _ => Typed::Other,
            }
        }
        Expr::Comprehension(comprehension) => {
            let range = resolve(&comprehension.iter_range, scope, problems);
            let element = match range {
                Typed::Node(node) if node.get("type") == Some(&Value::from("array")) => {
                    element_of(node)
                }
                _ => Typed::Other,
            };
            let inner = Scope {
                name: &comprehension.iter_var,
                typed: element,
                outer: Some(scope),
            };
            let accumulator = Scope {
                name: &comprehension.accu_var,
                typed: Typed::Other,
                outer: Some(&inner),
            };
            resolve(&comprehension.accu_init, scope, problems);
            for part in [
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                resolve(part, &accumulator, problems);
            }
            Typed::Other
        }
        Expr::List(list) => {
            for element in &list.elements {
                resolve(element, scope, problems);
            }
            Typed::Other
        }
        Expr::Map(_) | Expr::Struct(_) | Expr::Literal(_) | Expr::Unspecified => Typed::Other,
    }
}

/// `operand.field` (also `has(operand.field)`): an object's declared property, or a map's value.
fn select_field<'a>(operand: Typed<'a>, field: &str, problems: &mut Vec<String>) -> Typed<'a> {
    let Typed::Node(node) = operand else {
        return Typed::Other;
    };
    if let Some(Value::Object(properties)) = node.get("properties") {
        return match properties.get(field) {
            Some(child) if has_declared_type(child) => Typed::Node(child),
            Some(_) => {
                problems.push(format!("{field}: no declared type (CEL: undefined field)"));
                Typed::Other
            }
            None => {
                problems.push(format!("{field}: not a property (CEL: undefined field)"));
                Typed::Other
            }
        };
    }
    match node.get("additionalProperties") {
        Some(values @ Value::Object(_)) if has_declared_type(values) => Typed::Node(values),
        _ => {
            problems.push(format!(
                "{field}: selected on a value with no declared fields"
            ));
            Typed::Other
        }
    }
}

/// `container[index]`: a list's items, or a map's values.
fn element_of(container: &Value) -> Typed<'_> {
    container
        .get("items")
        .or_else(|| container.get("additionalProperties"))
        .filter(|element| element.is_object())
        .map_or(Typed::Other, Typed::Node)
}

#[test]
fn every_field_a_cel_rule_names_has_a_declared_type() {
    let mut rules = 0;
    each_rule(&mut |path, node, rule| {
        let text = rule["rule"].as_str().expect("rule text");
        let problems = undeclared_fields(text, node).unwrap_or_else(|e| panic!("{e}"));
        assert!(problems.is_empty(), "{path}: rule {text:?}: {problems:?}");
        rules += 1;
    });
    assert!(rules >= 15, "expected the documented rules, found {rules}");
}

fn metric_item() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "max": {"x-kubernetes-preserve-unknown-fields": true},
            "limit": {"x-kubernetes-int-or-string": true},
            "tags": {"type": "array", "items": {"type": "object",
                "properties": {"key": {"type": "string"}, "blob": {"x-kubernetes-preserve-unknown-fields": true}}}},
            "weights": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    })
}

#[test]
fn checker_refuses_a_rule_that_names_a_free_form_field() {
    let problems = undeclared_fields("has(self.max) || has(self.name)", &metric_item()).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("max:"), "{problems:?}");
}

#[test]
fn checker_refuses_unknown_fields_and_untyped_fields_inside_comprehensions() {
    let node = metric_item();
    let unknown = undeclared_fields("self.nmae == 'x'", &node).unwrap();
    assert!(
        unknown[0].starts_with("nmae: not a property"),
        "{unknown:?}"
    );
    let nested = undeclared_fields("self.tags.all(t, has(t.blob))", &node).unwrap();
    assert!(nested[0].starts_with("blob:"), "{nested:?}");
    let indexed = undeclared_fields("self.tags[0].blob == 1", &node).unwrap();
    assert!(indexed[0].starts_with("blob:"), "{indexed:?}");
}

#[test]
fn checker_accepts_typed_fields_int_or_string_maps_and_comprehension_variables() {
    let node = metric_item();
    for rule in [
        "has(self.limit) && self.name != ''",
        "self.tags.all(t, t.key.startsWith('a'))",
        "self.tags.exists(t, self.tags.exists(u, u.key == t.key))",
        "self.weights.all(k, self.weights[k] > 0)",
        "!has(self.weights.a) || self.weights.a > 0",
        "self.name == oldSelf.name",
    ] {
        assert_eq!(undeclared_fields(rule, &node), Ok(vec![]), "{rule}");
    }
}

#[test]
fn checker_refuses_a_rule_on_a_value_without_a_type() {
    let free = serde_json::json!({"x-kubernetes-preserve-unknown-fields": true});
    assert_eq!(undeclared_fields("self != null", &free).unwrap().len(), 1);
}
