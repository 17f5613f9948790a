//! Schema building blocks shared by the three resources: name patterns, size bounds
//! that keep the API server's CEL cost estimate low, and hand-written schemas for
//! free-form values.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A DNS-1123 label (`resnet18`, `team-a`): names of Kubernetes objects that become
/// labels or Service names, and of pipeline nodes.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Longest DNS-1123 label.
pub const DNS_LABEL_MAX: u32 = 63;

/// A DNS-1123 subdomain (`cosign-pub`, `models.v1`): names of Secrets, PVCs and other objects.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Longest DNS-1123 subdomain.
pub const DNS_SUBDOMAIN_MAX: u32 = 253;

/// A model name as served on the wire (`resnet18`, `all-MiniLM-L6-v2`, `smollm2.135m`).
pub const MODEL_NAME_PATTERN: &str = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$";

/// An OCI reference: `host[:port]/repository[:tag][@sha256:digest]`.
pub const OCI_REFERENCE_PATTERN: &str = r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$";
/// Longest OCI reference.
pub const OCI_REFERENCE_MAX: u32 = 512;

/// An `http://` or `https://` URL without whitespace.
pub const HTTP_URL_PATTERN: &str = r"^https?://[^\s]+$";
/// Longest URL.
pub const URL_MAX: u32 = 2048;

/// A lowercase hex SHA-256 digest.
pub const SHA256_PATTERN: &str = r"^[a-f0-9]{64}$";

/// A relative file path inside a volume or artifact: no leading `/`, no `..` component.
pub const RELATIVE_PATH_PATTERN: &str = r"^([^/.][^/]*|\.[^/.][^/]*)(/([^/.][^/]*|\.[^/.][^/]*))*$";
/// Longest relative path.
pub const PATH_MAX: u32 = 1024;

/// An HTTP header name (`x-canary`, `x-user-id`).
pub const HEADER_NAME_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";
/// Longest header name, header value, tenant name or other short free text.
pub const SHORT_TEXT_MAX: u32 = 256;

/// A camelCase identifier (`topK`, `errorRate`).
pub const IDENTIFIER_PATTERN: &str = r"^[a-z][A-Za-z0-9]*$";

/// Schema of a free-form JSON object whose keys and values are kept as written.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Schema of a value that is either a number or a string (kept as written; the
/// operator reads it with [`crate::canary::Threshold::value`]).
pub fn number_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
