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
    runtime_config::TrustedKey,
};
use modelplane_verify::{DockerConfig, Failure, FailureReason, Mode, decide};

use super::status::event;
use crate::{
    Result,
    controller::Context,
    desired::Owner,
    health::Blocker,
    verification::{
        Checked, PinnedRevision, Pins, Signed, check_spec, delegated_model_source, inputs_hash,
        model_signature, pull_secret_credentials,
    },
};

/// `Verified` reason when the image is verified and the model files (HTTP or PVC source) are
/// verified by the runtime against their model-signing bundle before they load.
pub const VERIFIED_AT_LOAD: &str = "VerifiedAtLoad";

/// When a refused revision is checked again if only a spec change can fix it.
pub const HELD_RETRY: Duration = Duration::from_secs(600);

/// What the gate lets through.
#[derive(Default)]
pub struct Gate {
    /// The pinned revision to render; `None` when nothing may roll out.
    pub render: Option<PinnedRevision>,
    /// Why nothing is rendered, when `render` is `None`.
    pub blocker: Option<Blocker>,
    /// The `Verified` condition to write; `None` keeps the current one.
    pub verified: Option<VerifiedCondition>,
    /// The verification Event to publish.
    pub event: Option<Event>,
    /// Check again after this delay instead of the usual resync.
    pub requeue: Option<Duration>,
}

impl Gate {
    /// A gate that renders nothing because of `blocker`.
    pub fn blocked(blocker: Blocker) -> Self {
        Self {
            blocker: Some(blocker),
            ..Self::default()
        }
    }
}

/// The `Verified` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCondition {
    /// True, False, or Unknown (verification disabled).
    pub status: ConditionStatus,
    /// CamelCase reason (`Verified`, `VerificationDisabled`, or a failure reason).
    pub reason: &'static str,
    /// What was verified, or what failed.
    pub message: String,
}

/// Revisions refused recently: not checked again before `until` unless their inputs change,
/// so watch events do not turn into registry traffic.
#[derive(Debug, Default)]
pub struct Holds(Mutex<HashMap<String, Hold>>);

#[derive(Debug)]
struct Hold {
    inputs: String,
    until: Instant,
    /// The blocker reported while nothing serves, repeated until the hold ends.
    blocker: Option<Blocker>,
}

impl Holds {
    /// Time left on the hold of `key` for `inputs`, and its blocker.
    fn remaining(
        &self,
        key: &str,
        inputs: &str,
        now: Instant,
    ) -> Option<(Duration, Option<Blocker>)> {
        let holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let hold = holds.get(key)?;
        (hold.inputs == inputs && hold.until > now)
            .then(|| (hold.until - now, hold.blocker.clone()))
    }

    fn hold(&self, key: &str, hold: Hold) {
        let mut holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        holds.insert(key.to_owned(), hold);
    }

    fn release(&self, key: &str) {
        let mut holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        holds.remove(key);
    }
}

/// Decides what to render for `owner`, whose Deployment carries `recorded` (if any).
/// Asks the registry only when the image, model source or policy changed since `recorded`.
pub async fn gate(
    ctx: &Context,
    key: &str,
    owner: &Owner<'_>,
    recorded: Option<PinnedRevision>,
) -> Result<Gate> {
    let inputs = inputs_hash(owner.spec, &ctx.defaults.runtime_image);
    if let Some(record) = recorded.as_ref().filter(|r| r.inputs == inputs) {
        return Ok(Gate {
            render: Some(record.clone()),
            ..Gate::default()
        });
    }
    if let Some((remaining, blocker)) = ctx.holds.remaining(key, &inputs, Instant::now()) {
        return Ok(Gate {
            render: recorded,
            blocker,
            requeue: Some(remaining),
            ..Gate::default()
        });
    }
    // A pull secret without a usable docker config blocks like a missing Secret: nothing to
    // retry until it is fixed, so the blocked resync (not a hold) picks the fix up.
    let credentials =
        match pull_secret_credentials(&ctx.client, &owner.namespace, owner.spec).await? {
            Ok(credentials) => credentials,
            Err(blocker) => return Ok(Gate::blocked(blocker)),
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
    if outcome.render.is_some() {
        ctx.holds.release(key);
        ctx.backoff.succeeded(&registry_key);
        return Ok(outcome.into_gate(None, None));
    }
    let delay = if outcome.retry {
        ctx.backoff.failed(&registry_key)
    } else {
        HELD_RETRY
    };
    let gate = outcome.into_gate(recorded, Some(delay));
    let hold = Hold {
        inputs,
        until: Instant::now() + delay,
        blocker: gate.blocker.clone(),
    };
    ctx.holds.hold(key, hold);
    Ok(gate)
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
    /// The Event to publish.
    pub event: Option<Event>,
    /// Whether the failure may pass by itself (retry with backoff).
    pub retry: bool,
}

impl Outcome {
    fn into_gate(self, previous: Option<PinnedRevision>, requeue: Option<Duration>) -> Gate {
        let refused = self.render.is_none();
        let blocker = (refused && previous.is_none()).then(|| Blocker {
            reason: self.verified.reason,
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
            reason: failure.reason.as_str(),
            message: failure.message.clone(),
        },
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
    let mut what = format!("image {}", pins.image_digest);
    if let Some(model) = &pins.model_digest {
        what.push_str(&format!(" and model {model}"));
    }
    let signer = signed.signer.as_deref().unwrap_or("a trusted key");
    let delegated = spec
        .model
        .as_ref()
        .and_then(|model| delegated_model_source(&model.source));
    match (mode, delegated) {
        (Mode::Disabled, _) => VerifiedCondition {
            status: ConditionStatus::Unknown,
            reason: "VerificationDisabled",
            message: format!("signature verification is disabled; pinned {what}"),
        },
        (Mode::Enforce | Mode::Audit, Some(model)) => VerifiedCondition {
            status: ConditionStatus::True,
            reason: VERIFIED_AT_LOAD,
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
            reason: "Verified",
            message: format!("{what} signed by {signer}"),
        },
    }
}
