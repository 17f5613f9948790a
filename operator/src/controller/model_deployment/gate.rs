//! The verification gate before a rollout: resolve tags to digests, verify signatures under
//! the spec's mode, and choose the pinned revision to render — the new one, or the one
//! already serving when the new one is refused.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api,
    runtime::events::{Event, EventType},
};
use modelplane_api::{
    condition::ConditionStatus,
    model_deployment::{ModelDeploymentSpec, VerificationMode},
};
use modelplane_verify::{DockerConfig, Failure, FailureReason, KeySet, Mode, decide, load_keys};

use super::status::event;
use crate::{
    Result,
    controller::Context,
    desired::Owner,
    health::Blocker,
    verification::{Check, Checked, PinnedRevision, Pins, Signed, inputs_hash, pull_credentials},
};

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
    let credentials = match pull_secret_credentials(ctx, owner).await? {
        Ok(credentials) => credentials,
        Err(blocker) => return Ok(Gate::blocked(blocker)),
    };
    let mode = effective_mode(owner.spec);
    let checked = check(ctx, owner, mode, credentials).await?;
    let outcome = conclude(
        mode,
        &inputs,
        owner.spec,
        checked,
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
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

/// Loads the keys and runs the check; a key that cannot be loaded fails the check (the
/// references are still resolved, so Audit can roll them out).
async fn check(
    ctx: &Context,
    owner: &Owner<'_>,
    mode: Mode,
    credentials: Option<DockerConfig>,
) -> Result<Checked> {
    let (keys, key_failure) = match mode {
        Mode::Disabled => (KeySet::new(Vec::new()), None),
        Mode::Enforce | Mode::Audit => match trusted_keys(ctx, owner).await? {
            Ok(keys) => (keys, None),
            Err(failure) => (KeySet::new(Vec::new()), Some(failure)),
        },
    };
    let request = Check {
        image: owner
            .spec
            .runtime
            .image
            .clone()
            .unwrap_or_else(|| ctx.defaults.runtime_image.clone()),
        model_oci: owner.spec.model.as_ref().and_then(|m| m.source.oci.clone()),
        keys,
        mode: if key_failure.is_some() {
            Mode::Disabled
        } else {
            mode
        },
        credentials,
    };
    let mut checked = ctx.verifier.check(&request).await;
    if let Some(failure) = key_failure
        && checked.result.is_ok()
    {
        checked.result = Err(failure);
    }
    Ok(checked)
}

/// The PEM keys named by `spec.verification.keys`, read from Secrets.
async fn trusted_keys(ctx: &Context, owner: &Owner<'_>) -> Result<Result<KeySet, Failure>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let mut entries = Vec::new();
    for key in owner.spec.verification.iter().flat_map(|v| &v.keys) {
        let secret = api.get_opt(&key.secret_ref.name).await?;
        let pem = secret
            .and_then(|s| s.data)
            .and_then(|data| data.get(&key.secret_ref.key).map(|bytes| bytes.0.clone()));
        entries.push((
            format!("{}/{}", key.secret_ref.name, key.secret_ref.key),
            pem,
        ));
    }
    Ok(load_keys(entries))
}

/// The credentials of the Secrets `spec.runtime.imagePullSecrets` names, merged.
async fn pull_secret_credentials(
    ctx: &Context,
    owner: &Owner<'_>,
) -> Result<Result<Option<DockerConfig>, Blocker>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let mut found = Vec::new();
    for secret in &owner.spec.runtime.image_pull_secrets {
        found.push((secret.name.clone(), api.get_opt(&secret.name).await?));
    }
    Ok(pull_credentials(&owner.namespace, found))
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
    let result = checked
        .result
        .and_then(|signed| require_signed_model(mode, spec, signed));
    match (result, checked.pins) {
        (Ok(signed), Some(pins)) => {
            let verified = signed_condition(mode, &signed, &pins);
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

/// Models from HTTP or PVC sources carry no signature the operator can check.
fn require_signed_model(
    mode: Mode,
    spec: &ModelDeploymentSpec,
    signed: Signed,
) -> Result<Signed, Failure> {
    let unsigned_source = spec
        .model
        .as_ref()
        .map(|m| &m.source)
        .filter(|source| source.oci.is_none())
        .map(|source| if source.http.is_some() { "http" } else { "pvc" });
    match (mode, unsigned_source) {
        (Mode::Enforce | Mode::Audit, Some(kind)) => Err(Failure::new(
            FailureReason::NoSignature,
            format!(
                "the model comes from a {kind} source, whose signature the operator cannot verify; serve it from an OCI artifact signed with cosign, or set verification.mode to Audit or Disabled"
            ),
        )),
        _ => Ok(signed),
    }
}

fn signed_condition(mode: Mode, signed: &Signed, pins: &Pins) -> VerifiedCondition {
    let mut what = format!("image {}", pins.image_digest);
    if let Some(model) = &pins.model_digest {
        what.push_str(&format!(" and model {model}"));
    }
    match mode {
        Mode::Disabled => VerifiedCondition {
            status: ConditionStatus::Unknown,
            reason: "VerificationDisabled",
            message: format!("signature verification is disabled; pinned {what}"),
        },
        Mode::Enforce | Mode::Audit => VerifiedCondition {
            status: ConditionStatus::True,
            reason: "Verified",
            message: format!(
                "{what} signed by {}",
                signed.signer.as_deref().unwrap_or("a trusted key")
            ),
        },
    }
}
