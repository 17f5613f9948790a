//! The same cases, put to a real API server when one is named.
//!
//! The offline stand-in in `support` cannot be the last word: it evaluates CEL
//! without the API server's type checker. With `MODELPLANE_CRD_SERVER=1` every case
//! is also sent, as a server-side dry run, to the API server of `KUBECONFIG` through
//! `kubectl` (the CRDs of `crds/yaml/` must be applied there and the namespace of
//! each object must exist). Without it the real server is not asked and the offline
//! verdict stands alone; CI has no API server, a developer changing a CRD does.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Whether a real API server is to be asked too.
pub fn enabled() -> bool {
    std::env::var("MODELPLANE_CRD_SERVER").is_ok_and(|v| v == "1")
}

/// The API server's verdict on `object`: `Ok` when a server-side dry-run create
/// with strict field validation admits it, `Err` with the server's message otherwise.
pub fn dry_run(object: &Value) -> Result<(), String> {
    let mut child = Command::new("kubectl")
        .args(["create", "--dry-run=server", "--validate=strict", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("MODELPLANE_CRD_SERVER=1 needs kubectl on PATH");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(object.to_string().as_bytes())
        .expect("kubectl reads the object");
    let output = child.wait_with_output().expect("kubectl runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
