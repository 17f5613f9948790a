//! Controllers, one module per kind, and what they share: the [`Cache`] of watched
//! objects the reconcilers read instead of the API server, and what it keeps of them.

mod cache;
pub mod canary;
pub mod model_deployment;
pub mod projection;
pub mod tenant_quota;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{Client, runtime::events::Recorder};

use crate::{desired::Defaults, metrics::Metrics, verification::ArtifactVerifier};

pub use cache::{Cache, INSTANCE_LABEL, PodIndex, cached, instance_of};

/// Longest Event note the API server accepts is 1 kB; longer notes are cut.
pub(crate) const MAX_NOTE_BYTES: usize = 1024;

/// An Event of `reason` with `note` (cut to [`MAX_NOTE_BYTES`] on a character
/// boundary) for the decision `action`: the one constructor every controller uses.
pub(crate) fn event(
    type_: kube::runtime::events::EventType,
    reason: &str,
    mut note: String,
    action: &str,
) -> kube::runtime::events::Event {
    if note.len() > MAX_NOTE_BYTES {
        let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    kube::runtime::events::Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    }
}

/// Per-object retry delays after failed reconciles.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

/// Delay before retry number `failures` (1-based): 5s doubling up to 5 minutes.
pub fn backoff_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(5 * 2u64.pow(exponent)).min(Duration::from_secs(300))
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        backoff_delay(*count)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}

/// What every reconcile gets.
pub struct Context {
    /// API client for writes and existence checks.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Defaults for unset spec fields.
    pub defaults: Defaults,
    /// Watch caches.
    pub cache: Cache,
    /// Retry delays.
    pub backoff: Backoff,
    /// Resolves and verifies images and models before they roll out.
    pub verifier: Arc<dyn ArtifactVerifier>,
    /// Revisions refused recently, not re-checked until their hold ends.
    pub holds: model_deployment::Holds,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn success_resets_the_backoff() {
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("a"), Duration::from_secs(5));
        assert_eq!(backoff.failed("a"), Duration::from_secs(10));
        assert_eq!(backoff.failed("b"), Duration::from_secs(5));
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(5));
    }
}
