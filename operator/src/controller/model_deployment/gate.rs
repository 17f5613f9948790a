//! The verification gate before a rollout: resolve tags to digests, verify signatures under
//! the spec's mode, and choose the pinned revision to render — the new one, or the one
//! already serving when the new one is refused.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType};
use modelplane_api::{
    condition::ConditionStatus,
    model_deployment::{ModelDeploymentSpec, VerificationMode},
};
use modelplane_config::TrustedKey;
use modelplane_verify::{DockerConfig, Failure, FailureReason, Mode, decide};

use super::status::event;
use crate::{
    Result,
    controller::Context,
    desired::{Defaults, Owner},
    health::Blocker,
    verification::{
        Checked, PinnedRevision, Pins, Signed, VerifiedCondition, check_spec,
        delegated_model_source, inputs_hash, model_signature, pinned_artifacts,
        pull_secret_credentials,
    },
};

/// `Verified` reason when the image is verified and the model files (HTTP or PVC source) are
/// verified by the runtime against their model-signing bundle before they load.
pub const VERIFIED_AT_LOAD: &str = "VerifiedAtLoad";

/// Longest wait before a refused revision is checked again. A refusal is never final:
/// a signature may be pushed or a key rotated at any time, so refused revisions are
/// re-checked with a backoff from seconds up to this, and at once when the spec or one of
/// the Secrets it names changes.
pub const HELD_RETRY: Duration = Duration::from_secs(120);

/// The wait before re-checking a refused revision: the shared per-object backoff (5 s
/// doubling with each refusal in a row), capped at [`HELD_RETRY`].
pub fn held_retry(backoff: Duration) -> Duration {
    backoff.min(HELD_RETRY)
}

/// What the gate lets through.
#[derive(Default)]
pub struct Gate {
    /// The pinned revision to render; `None` when nothing may roll out.
    pub render: Option<PinnedRevision>,
    /// Why nothing is rendered, when `render` is `None`.
    pub blocker: Option<Blocker>,
    /// The `Verified` condition of the spec's revision, computed at every reconcile so a
    /// status written from a stale object never drops or keeps a stale one; `None` only when
    /// nothing about the revision is known yet.
    pub verified: Option<VerifiedCondition>,
    /// The verification Event to publish.
    pub event: Option<Event>,
    /// Check again after this delay instead of the usual resync.
    pub requeue: Option<Duration>,
}

/// Revisions refused recently: not checked again before `until` unless their inputs change,
/// so watch events do not turn into registry traffic.
#[derive(Debug, Default)]
pub struct Holds(Mutex<HashMap<String, Hold>>);

#[derive(Debug)]
struct Hold {
    /// The revision's inputs and the versions of the Secrets the spec names: a new
    /// signature key or pull secret ends the hold at once.
    inputs: String,
    until: Instant,
    /// The blocker reported while nothing serves, repeated until the hold ends.
    blocker: Option<Blocker>,
    /// The `Verified` condition of the refused revision, repeated until the hold ends.
    verified: VerifiedCondition,
}

/// What a hold repeats while it lasts.
struct Held {
    remaining: Duration,
    blocker: Option<Blocker>,
    verified: VerifiedCondition,
}

impl Holds {
    /// The hold of `key` for `inputs`, if it lasts past `now`.
    fn remaining(&self, key: &str, inputs: &str, now: Instant) -> Option<Held> {
        let holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let hold = holds.get(key)?;
        (hold.inputs == inputs && hold.until > now).then(|| Held {
            remaining: hold.until - now,
            blocker: hold.blocker.clone(),
            verified: hold.verified.clone(),
        })
    }

    fn hold(&self, key: &str, hold: Hold) {
        let mut holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        holds.insert(key.to_owned(), hold);
    }

    /// Ends every hold now, as if its time had run out.
    #[cfg(test)]
    pub fn expire(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn release(&self, key: &str) {
        let mut holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        holds.remove(key);
    }
}

/// Decides what to render for `owner`, whose Deployment carries `recorded` (if any).
/// Asks the registry only when the image, model source or policy changed since `recorded`.
/// `secrets` fingerprints the versions of the Secrets the spec names.
pub async fn gate(
    ctx: &Context,
    key: &str,
    owner: &Owner<'_>,
    recorded: Option<PinnedRevision>,
    secrets: &str,
) -> Result<Gate> {
    let inputs = inputs_hash(owner.spec, &ctx.defaults.runtime_image);
    if let Some(record) = recorded.as_ref().filter(|r| r.inputs == inputs) {
        return Ok(Gate {
            verified: Some(record.verified_condition(effective_mode(owner.spec))),
            render: Some(record.clone()),
            ..Gate::default()
        });
    }
    let hold_inputs = format!("{inputs}/{secrets}");
    if let Some(held) = ctx.holds.remaining(key, &hold_inputs, Instant::now()) {
        return Ok(Gate {
            render: recorded,
            blocker: held.blocker,
            verified: Some(held.verified),
            requeue: Some(held.remaining),
            ..Gate::default()
        });
    }
    // A pull secret without a usable docker config blocks like a missing Secret: nothing to
    // retry until it is fixed, so the blocked resync (not a hold) picks the fix up.
    let credentials =
        match pull_secret_credentials(&ctx.client, &owner.namespace, owner.spec).await? {
            Ok(credentials) => credentials,
            Err(blocker) => {
                return Ok(blocked_by_reference(
                    owner,
                    recorded.as_ref(),
                    &ctx.defaults,
                    blocker,
                ));
            }
        };
    let mode = effective_mode(owner.spec);
    let (checked, trusted) = check(ctx, owner, mode, credentials).await?;
    let mut outcome = conclude(
        mode,
        &inputs,
        owner.spec,
        checked,
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    if let Some(render) = outcome.render.as_mut() {
        render.model_signature = model_signature(mode, owner.spec, trusted);
    }
    let registry_key = format!("{key}#registry");
    if let Some(render) = outcome.render.as_mut() {
        render.verified = Some(outcome.verified.clone());
        ctx.holds.release(key);
        ctx.backoff.succeeded(&registry_key);
        return Ok(outcome.into_gate(None, None));
    }
    let delay = held_retry(ctx.backoff.failed(&registry_key));
    let gate = outcome.into_gate(recorded, Some(delay));
    let hold = Hold {
        inputs: hold_inputs,
        until: Instant::now() + delay,
        blocker: gate.blocker.clone(),
        verified: gate.verified.clone().unwrap_or_else(|| VerifiedCondition {
            status: ConditionStatus::Unknown,
            reason: "VerificationPending".into(),
            message: "not verified yet".into(),
        }),
    };
    ctx.holds.hold(key, hold);
    Ok(gate)
}

/// The gate when a Secret or PVC the spec names is missing: nothing renders, and `Verified`
/// still says where the spec's revision stands.
pub fn blocked_by_reference(
    owner: &Owner<'_>,
    recorded: Option<&PinnedRevision>,
    defaults: &Defaults,
    blocker: Blocker,
) -> Gate {
    let mode = effective_mode(owner.spec);
    let inputs = inputs_hash(owner.spec, &defaults.runtime_image);
    let verified = match recorded.filter(|r| r.inputs == inputs) {
        Some(record) => record.verified_condition(mode),
        None if mode == Mode::Disabled => VerifiedCondition {
            status: ConditionStatus::Unknown,
            reason: "VerificationDisabled".into(),
            message: "signature verification is disabled".into(),
        },
        None => VerifiedCondition {
            status: ConditionStatus::Unknown,
            reason: blocker.reason.into(),
            message: format!("not verified yet: {}", blocker.message),
        },
    };
    Gate {
        blocker: Some(blocker),
        verified: Some(verified),
        ..Gate::default()
    }
}

/// `spec.verification`'s mode in effect.
pub fn effective_mode(spec: &ModelDeploymentSpec) -> Mode {
    match spec.verification.as_ref().map(|v| v.effective_mode()) {
        Some(VerificationMode::Enforce) => Mode::Enforce,
        Some(VerificationMode::Audit) => Mode::Audit,
        Some(VerificationMode::Disabled) | None => Mode::Disabled,
    }
}

/// Loads the keys and runs the check (see [`check_spec`]); also returns the trusted keys as
/// PEM, for the runtime to verify model files with.
async fn check(
    ctx: &Context,
    owner: &Owner<'_>,
    mode: Mode,
    credentials: Option<DockerConfig>,
) -> Result<(Checked, Vec<TrustedKey>)> {
    let found = check_spec(
        ctx.verifier.as_ref(),
        &ctx.client,
        &owner.namespace,
        owner.spec,
        &ctx.defaults.runtime_image,
        mode,
        credentials,
    )
    .await?;
    Ok((found.checked, found.trusted))
}

/// The pure part of the gate: what a check means under `mode`.
pub struct Outcome {
    /// The revision to roll out, if it may.
    pub render: Option<PinnedRevision>,
    /// The `Verified` condition.
    pub verified: VerifiedCondition,
    /// The reason of the failure, if the check failed.
    pub failure: Option<&'static str>,
    /// The Event to publish.
    pub event: Option<Event>,
    /// Whether the failure may pass by itself (a registry outage) rather than needing a
    /// signature, a key or a spec change. Either way the revision is re-checked.
    pub retry: bool,
}

impl Outcome {
    fn into_gate(self, previous: Option<PinnedRevision>, requeue: Option<Duration>) -> Gate {
        let refused = self.render.is_none();
        let blocker = (refused && previous.is_none()).then(|| Blocker {
            reason: self.failure.unwrap_or("VerificationFailed"),
            message: format!("not rolled out: {}", self.verified.message),
        });
        Gate {
            render: self.render.or(previous),
            // With nothing serving, the blocker's Degraded condition raises the Event.
            event: if blocker.is_some() { None } else { self.event },
            blocker,
            verified: Some(self.verified),
            requeue,
        }
    }
}

/// Applies `mode` to `checked` for the revision of `spec` resolved from `inputs`.
pub fn conclude(
    mode: Mode,
    inputs: &str,
    spec: &ModelDeploymentSpec,
    checked: Checked,
    now: Time,
) -> Outcome {
    match (checked.result, checked.pins) {
        (Ok(signed), Some(pins)) => {
            let verified = signed_condition(mode, spec, &signed, &pins);
            let event = (mode != Mode::Disabled && !signed.from_cache).then(|| {
                event(
                    EventType::Normal,
                    "Verified",
                    verified.message.clone(),
                    "Verify",
                )
            });
            let verified_at = (mode != Mode::Disabled).then_some(now);
            Outcome {
                render: Some(PinnedRevision::new(inputs.into(), spec, pins, verified_at)),
                verified,
                failure: None,
                event,
                retry: false,
            }
        }
        (result, pins) => {
            let failure = result.err().unwrap_or_else(|| {
                Failure::new(
                    FailureReason::RegistryError,
                    "the references were not resolved",
                )
            });
            failed(mode, inputs, spec, failure, pins)
        }
    }
}

fn failed(
    mode: Mode,
    inputs: &str,
    spec: &ModelDeploymentSpec,
    failure: Failure,
    pins: Option<Pins>,
) -> Outcome {
    let decision = decide(mode, &Err(failure.clone()));
    let render = pins
        .filter(|_| decision.roll_out)
        .map(|pins| PinnedRevision::new(inputs.into(), spec, pins, None));
    let note = match (&render, decision.event) {
        (Some(_), Some(event)) => event.note,
        _ => format!(
            "not rolled out, the previous revision keeps serving: {}",
            failure.message
        ),
    };
    Outcome {
        render,
        verified: VerifiedCondition {
            status: ConditionStatus::False,
            reason: failure.reason.as_str().into(),
            message: failure.message.clone(),
        },
        failure: Some(failure.reason.as_str()),
        event: Some(event(
            EventType::Warning,
            failure.reason.as_str(),
            note,
            "Verify",
        )),
        retry: failure.is_retryable(),
    }
}

fn signed_condition(
    mode: Mode,
    spec: &ModelDeploymentSpec,
    signed: &Signed,
    pins: &Pins,
) -> VerifiedCondition {
    let what = pinned_artifacts(&pins.image_digest, pins.model_digest.as_deref());
    let signer = signed.signer.as_deref().unwrap_or("a trusted key");
    let delegated = spec
        .model
        .as_ref()
        .and_then(|model| delegated_model_source(&model.source));
    match (mode, delegated) {
        (Mode::Disabled, _) => VerifiedCondition {
            status: ConditionStatus::Unknown,
            reason: "VerificationDisabled".into(),
            message: format!("signature verification is disabled; pinned {what}"),
        },
        (Mode::Enforce | Mode::Audit, Some(model)) => VerifiedCondition {
            status: ConditionStatus::True,
            reason: VERIFIED_AT_LOAD.into(),
            message: format!(
                "image {} signed by {signer}; the model ({model}) is verified by the runtime before it loads, against its model-signing bundle and the same keys ({} mode: {})",
                pins.image_digest,
                mode.as_str(),
                if mode == Mode::Enforce {
                    "a model that does not verify is not loaded"
                } else {
                    "a model that does not verify loads and is counted in modelplane_model_signature_failures_total"
                }
            ),
        },
        (Mode::Enforce | Mode::Audit, None) => VerifiedCondition {
            status: ConditionStatus::True,
            reason: "Verified".into(),
            message: format!("{what} signed by {signer}"),
        },
    }
}
