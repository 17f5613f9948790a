//! Resolving and verifying a candidate revision: the target's key and pull Secrets are read,
//! the shared [`ArtifactVerifier`](crate::verification::ArtifactVerifier) asked, and the
//! result judged by the same rules as a ModelDeployment rollout
//! ([`conclude`](crate::controller::model_deployment::conclude)).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff};
use modelplane_api::{condition::ConditionStatus, model_deployment::ModelDeploymentSpec};

use super::{
    Context,
    decision::{Finding, Verification, finding_of},
};
use crate::{
    Result,
    controller::model_deployment::{conclude, effective_mode},
    health::Blocker,
    verification::{check_spec, pull_secret_credentials},
};

/// Candidates refused recently: not checked again before their hold ends unless their inputs
/// change, so watch events do not turn into registry traffic.
#[derive(Debug, Default)]
pub struct Holds(Mutex<HashMap<String, (String, Instant)>>);

impl Holds {
    /// Time left on the hold of `key` for `inputs`.
    pub fn remaining(&self, key: &str, inputs: &str, now: Instant) -> Option<Duration> {
        let holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (held, until) = holds.get(key)?;
        (held == inputs && *until > now).then(|| *until - now)
    }

    /// Holds `key`'s candidate `inputs` for `delay`.
    pub fn hold(&self, key: &str, inputs: &str, delay: Duration) {
        let mut holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        holds.insert(key.to_owned(), (inputs.to_owned(), Instant::now() + delay));
    }

    /// Forgets the hold of `key`.
    pub fn release(&self, key: &str) {
        let mut holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        holds.remove(key);
    }
}

/// Resolves and verifies the candidate revision `spec` (resolved from `inputs`) with the
/// target's keys, mode and pull secrets, in `namespace`.
pub async fn verify(
    ctx: &Context,
    namespace: &str,
    spec: &ModelDeploymentSpec,
    inputs: &str,
) -> Result<Finding> {
    let credentials = match pull_secret_credentials(&ctx.client, namespace, spec).await? {
        Ok(credentials) => credentials,
        Err(blocker) => return Ok(unusable_pull_secret(blocker, inputs)),
    };
    let mode = effective_mode(spec);
    let found = check_spec(
        ctx.verifier.as_ref(),
        &ctx.client,
        namespace,
        spec,
        &ctx.default_image,
        mode,
        credentials,
    )
    .await?;
    let fingerprints = found
        .keys
        .keys()
        .iter()
        .map(|key| format!("sha256:{}", key.fingerprint()))
        .collect();
    let checked = found.checked;
    let outcome = conclude(mode, inputs, spec, checked, Time(jiff::Timestamp::now()));
    Ok(finding_of(outcome, inputs, fingerprints))
}

/// A pull Secret that is missing or holds no docker config: nothing can be resolved.
fn unusable_pull_secret(blocker: Blocker, inputs: &str) -> Finding {
    Finding::Refused {
        record: modelplane_api::canary::CandidateRevision {
            inputs: inputs.to_owned(),
            ..Default::default()
        },
        verified: Verification {
            status: ConditionStatus::False,
            reason: blocker.reason.to_owned(),
            message: blocker.message,
        },
        retry: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_expire_and_do_not_cover_other_inputs() {
        let holds = Holds::default();
        holds.hold("ns/c", "a", Duration::from_secs(60));
        let now = Instant::now();
        assert!(holds.remaining("ns/c", "a", now).is_some());
        assert_eq!(holds.remaining("ns/c", "b", now), None);
        assert_eq!(
            holds.remaining("ns/c", "a", now + Duration::from_secs(61)),
            None
        );
        holds.release("ns/c");
        assert_eq!(holds.remaining("ns/c", "a", now), None);
    }
}
