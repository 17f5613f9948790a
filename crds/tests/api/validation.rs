//! Every validation of the schemas, evaluated offline: each bad object the API
//! server must refuse is refused at the right field with a message naming it, and
//! the good ones are admitted.

mod canary;
mod model_deployment;
mod tenant_quota;

use serde_json::Value;

use crate::server;
use crate::support::{Violation, admit};

/// `object` with the value at JSON pointer `pointer` replaced (parents created as needed).
pub fn set(mut object: Value, pointer: &str, value: Value) -> Value {
    let mut node = &mut object;
    for key in pointer.trim_start_matches('/').split('/') {
        node = match node {
            Value::Array(items) => &mut items[key.parse::<usize>().expect("array index")],
            other => {
                if !other.is_object() {
                    *other = Value::Object(Default::default());
                }
                other
                    .as_object_mut()
                    .expect("object")
                    .entry(key)
                    .or_insert(Value::Null)
            }
        };
    }
    *node = value;
    object
}

/// `object` without the value at JSON pointer `pointer`.
pub fn remove(mut object: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    if let Some(Value::Object(fields)) = object.pointer_mut(parent) {
        fields.remove(key);
    }
    object
}

/// One case the API server must refuse.
pub struct Refused {
    /// What is wrong, for the failure message.
    pub case: &'static str,
    /// The object.
    pub object: Value,
    /// Path of the refused field (`spec.runtime.replicas`).
    pub path: &'static str,
    /// Text the refusal message must contain.
    pub says: &'static str,
}

/// Asserts that `object` of `kind` is admitted.
pub fn assert_admitted(kind: &str, case: &str, object: &Value) {
    let violations = admit(kind, object);
    assert!(
        violations.is_empty(),
        "{kind} {case}: expected admission, got {violations:#?}"
    );
    if server::enabled()
        && let Err(message) = server::dry_run(object)
    {
        panic!("{kind} {case}: the API server refused what the offline check admits: {message}");
    }
}

/// Asserts every case is refused at its path with its message.
pub fn assert_all_refused(kind: &str, cases: Vec<Refused>) {
    let mut failures = Vec::new();
    for case in cases {
        let violations: Vec<Violation> = admit(kind, &case.object);
        let matched = violations
            .iter()
            .any(|v| v.path == case.path && v.message.contains(case.says));
        if !matched {
            failures.push(format!(
                "{}: expected refusal at {} saying {:?}, got {:?}",
                case.case, case.path, case.says, violations
            ));
        }
        if server::enabled() {
            match server::dry_run(&case.object) {
                Ok(()) => failures.push(format!("{}: the API server admitted it", case.case)),
                Err(message) if !message.contains(case.path) => failures.push(format!(
                    "{}: the API server refused it but not at {}: {message}",
                    case.case, case.path
                )),
                Err(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{kind}:\n{}", failures.join("\n"));
}
