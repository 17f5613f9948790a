//! Whether an owned object must be written: the steady-state check that keeps a
//! quiet cluster free of writes.
//!
//! The desired object is stamped with a hash of itself. Against the observed
//! object (from the watch cache) we then know three things without a request:
//! the object is missing; our desired state changed since we last applied it
//! (the stamp differs); or someone edited a field we own (the desired JSON is
//! no longer contained in the observed JSON).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Annotation on every owned object: hash of the desired object as last applied.
pub const APPLIED_HASH_ANNOTATION: &str = "modelplane.io/applied-hash";

/// What reconcile must do with one owned object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The object does not exist: create it.
    Missing,
    /// Our desired state changed since the last apply: apply the new one.
    Outdated,
    /// A field we own was changed by someone else: apply to revert it.
    Drifted {
        /// JSON path of the first field found changed, e.g. `spec.replicas`.
        path: String,
    },
    /// Nothing to write.
    InSync,
}

/// Short, stable hash of any serializable value (hex of the first 8 sha256 bytes).
pub fn hash_of<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let bytes = serde_json::to_vec(value)?;
    Ok(hex::encode(&Sha256::digest(&bytes)[..8]))
}

/// Stamps `desired` (an object's JSON) with the hash of its content.
pub fn stamp(desired: &mut Value) -> Result<(), serde_json::Error> {
    let hash = hash_of(&*desired)?;
    let metadata = desired.as_object_mut().map(|object| {
        object
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()))
    });
    if let Some(Value::Object(metadata)) = metadata {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(annotations) = annotations {
            annotations.insert(APPLIED_HASH_ANNOTATION.to_owned(), Value::String(hash));
        }
    }
    Ok(())
}

/// Compares a stamped desired object with the observed one.
pub fn compare(desired: &Value, observed: Option<&Value>) -> Verdict {
    let Some(observed) = observed else {
        return Verdict::Missing;
    };
    if applied_hash(desired) != applied_hash(observed) {
        return Verdict::Outdated;
    }
    match first_difference(desired, observed, "") {
        Some(path) => Verdict::Drifted { path },
        None => Verdict::InSync,
    }
}

fn applied_hash(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")?
        .get(APPLIED_HASH_ANNOTATION)?
        .as_str()
}

/// First path at which `desired` is not contained in `observed`.
///
/// Fields the API server or other managers add are ignored; lists of named
/// objects (containers, ports, volumes) are matched by name, other lists by
/// position; quantities compare by value (`1000m` equals `1`).
fn first_difference(desired: &Value, observed: &Value, path: &str) -> Option<String> {
    match (desired, observed) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, value)| {
            let here = join(path, key);
            match have.get(key) {
                Some(found) => first_difference(value, found, &here),
                None if is_empty(value) => None,
                None => Some(here),
            }
        }),
        (Value::Object(want), Value::Null) if want.is_empty() => None,
        (Value::Array(want), Value::Array(have)) => array_difference(want, have, path),
        (Value::String(want), Value::String(have)) => {
            (want != have && !same_quantity(want, have)).then(|| path.to_owned())
        }
        (Value::Number(want), Value::Number(have)) => {
            (want.as_f64() != have.as_f64()).then(|| path.to_owned())
        }
        _ => (desired != observed).then(|| path.to_owned()),
    }
}

fn array_difference(want: &[Value], have: &[Value], path: &str) -> Option<String> {
    let named = |value: &Value| value.get("name").and_then(Value::as_str).map(str::to_owned);
    if want.iter().all(|item| named(item).is_some()) {
        return want.iter().find_map(|item| {
            let name = named(item)?;
            let here = format!("{path}[{name}]");
            match have
                .iter()
                .find(|candidate| named(candidate).as_deref() == Some(&name))
            {
                Some(found) => first_difference(item, found, &here),
                None => Some(here),
            }
        });
    }
    if want.len() != have.len() {
        return Some(path.to_owned());
    }
    want.iter()
        .zip(have)
        .enumerate()
        .find_map(|(index, (w, h))| first_difference(w, h, &format!("{path}[{index}]")))
}

fn same_quantity(a: &str, b: &str) -> bool {
    use modelplane_config::units::parse_quantity;
    matches!((parse_quantity(a), parse_quantity(b)), (Ok(x), Ok(y)) if x == y)
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stamped(mut value: Value) -> Value {
        stamp(&mut value).expect("stamp");
        value
    }

    fn desired() -> Value {
        stamped(json!({
            "metadata": {"name": "m", "labels": {"a": "1"}},
            "spec": {
                "replicas": 2,
                "containers": [{"name": "runtime", "ports": [{"name": "http", "containerPort": 8080}],
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
                "volumes": [{"name": "cache", "emptyDir": {}}],
            }
        }))
    }

    /// What the API server returns: our fields plus defaults and foreign fields.
    fn observed() -> Value {
        let mut value = desired();
        value["metadata"]["uid"] = json!("1234");
        value["metadata"]["labels"]["added-by-someone"] = json!("x");
        value["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        value["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        value["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("1000m");
        value["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "injected-sidecar"}));
        value
    }

    #[test]
    fn missing_object_is_created() {
        assert_eq!(compare(&desired(), None), Verdict::Missing);
    }

    #[test]
    fn server_defaults_and_foreign_fields_are_not_drift() {
        assert_eq!(compare(&desired(), Some(&observed())), Verdict::InSync);
    }

    #[test]
    fn edited_owned_field_is_drift_with_its_path() {
        let mut edited = observed();
        edited["spec"]["replicas"] = json!(5);
        assert_eq!(
            compare(&desired(), Some(&edited)),
            Verdict::Drifted {
                path: "spec.replicas".into()
            }
        );
        let mut edited = observed();
        edited["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(9000);
        assert_eq!(
            compare(&desired(), Some(&edited)),
            Verdict::Drifted {
                path: "spec.containers[runtime].ports[http].containerPort".into()
            }
        );
    }

    #[test]
    fn removed_owned_label_is_drift() {
        let mut edited = observed();
        edited["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove("a");
        assert_eq!(
            compare(&desired(), Some(&edited)),
            Verdict::Drifted {
                path: "metadata.labels.a".into()
            }
        );
    }

    #[test]
    fn changed_desired_state_is_outdated_even_if_contained() {
        // A field removed from the desired object is still present on the server;
        // only the stamp tells us to apply (SSA then removes the field).
        let mut smaller = desired();
        smaller["metadata"]["annotations"]
            .as_object_mut()
            .expect("annotations")
            .clear();
        smaller["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("replicas");
        let smaller = stamped(smaller);
        assert_eq!(compare(&smaller, Some(&observed())), Verdict::Outdated);
    }

    #[test]
    fn hash_is_stable_and_content_sensitive() {
        let a = hash_of(&json!({"x": 1})).expect("hash");
        assert_eq!(a, hash_of(&json!({"x": 1})).expect("hash"));
        assert_ne!(a, hash_of(&json!({"x": 2})).expect("hash"));
        assert_eq!(a.len(), 16);
    }
}
