//! The status to write and the Events to publish: pure functions of what the
//! reconcile saw and did.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType};
use modelplane_api::{
    condition::{Condition, ConditionStatus, merge_conditions},
    model_deployment::{
        Endpoints, ModelDeploymentStatus, Revision, condition_types::QUOTA_ADMITTED,
    },
};

use super::{
    sync::{Change, ChangeAction},
    unsupported::{FIELDS_IGNORED, UNSUPPORTED_FIELDS, UnsupportedField, ignored_message},
};
use crate::{
    desired::{GRPC_PORT, HTTP_PORT},
    health::{Assessment, Blocker, DEGRADED, PROGRESSING, READY},
    quota::{Verdict, verdict::ADMISSION_PENDING},
    verification::VerifiedCondition,
};

/// The `QuotaAdmitted` condition the reconcile concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCondition {
    /// True (admitted or not limited), False (refused) or Unknown (not decided yet).
    pub status: ConditionStatus,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Which quota, which limit, by how much.
    pub message: String,
}

impl QuotaCondition {
    /// The condition stating `verdict`.
    pub fn of(verdict: &Verdict) -> Self {
        let (status, reason, message) = verdict.condition();
        Self {
            status,
            reason,
            message: message.to_owned(),
        }
    }
}

/// What the status is built from besides the assessment.
pub struct StatusInputs<'a> {
    /// `metadata.generation` of the ModelDeployment.
    pub generation: Option<i64>,
    /// Tenant after defaulting.
    pub tenant: &'a str,
    /// In-cluster DNS name of the Service.
    pub service_host: String,
    /// The revision now applied; `None` when the rollout was blocked.
    pub applied: Option<Revision>,
    /// Digest of the image the ready pods run.
    pub image_digest: Option<String>,
    /// A new `Verified` condition; `None` keeps the current one.
    pub verified: Option<VerifiedCondition>,
    /// The spec's fields not acted on yet: `FieldsIgnored` names them, and is absent
    /// without any (recomputed at every reconcile, never kept).
    pub unsupported: Vec<&'static UnsupportedField>,
    /// A new `QuotaAdmitted` condition; `None` keeps the current one.
    pub quota: Option<QuotaCondition>,
    /// The runtime pods' label selector (`status.selector`).
    pub selector: String,
    /// When the conditions are computed.
    pub now: Time,
}

/// The next status: `current` updated with the assessment, keeping the
/// transition times of conditions whose status did not flip and leaving
/// condition types this controller does not own untouched.
pub fn next_status(
    current: &ModelDeploymentStatus,
    assessment: &Assessment,
    inputs: StatusInputs<'_>,
) -> ModelDeploymentStatus {
    let ours = assessment.conditions.iter().map(|c| {
        Condition::new(
            c.type_,
            c.status,
            c.reason,
            c.message.clone(),
            inputs.generation,
            inputs.now.clone(),
        )
    });
    let verified = inputs.verified.map(|v| {
        Condition::new(
            VERIFIED,
            v.status,
            v.reason,
            v.message,
            inputs.generation,
            inputs.now.clone(),
        )
    });
    let ignored = ignored_message(&inputs.unsupported).map(|message| {
        Condition::new(
            FIELDS_IGNORED,
            ConditionStatus::True,
            UNSUPPORTED_FIELDS,
            message,
            inputs.generation,
            inputs.now.clone(),
        )
    });
    let quota = inputs.quota.map(|q| {
        Condition::new(
            QUOTA_ADMITTED,
            q.status,
            q.reason,
            q.message,
            inputs.generation,
            inputs.now.clone(),
        )
    });
    let (new_verified, new_quota) = (verified.is_some(), quota.is_some());
    let replaced = |type_: &str| {
        [READY, PROGRESSING, DEGRADED, FIELDS_IGNORED].contains(&type_)
            || (new_verified && type_ == VERIFIED)
            || (new_quota && type_ == QUOTA_ADMITTED)
    };
    let others = current
        .conditions
        .iter()
        .filter(|c| !replaced(&c.type_))
        .cloned();
    let conditions = merge_conditions(
        &current.conditions,
        ours.chain(verified)
            .chain(quota)
            .chain(ignored)
            .chain(others)
            .collect(),
    );
    let mut revision = inputs.applied.or_else(|| current.revision.clone());
    if let Some(revision) = revision.as_mut() {
        // The pinned digest is what runs; the pods' digest only fills in for older revisions.
        revision.image_digest = revision
            .image_digest
            .take()
            .or(inputs.image_digest)
            .or_else(|| {
                current
                    .revision
                    .as_ref()
                    .and_then(|r| r.image_digest.clone())
            });
    }
    ModelDeploymentStatus {
        observed_generation: inputs.generation,
        conditions,
        tenant: Some(inputs.tenant.to_owned()),
        replicas: assessment.replicas,
        ready_replicas: assessment.ready_replicas,
        selector: Some(inputs.selector),
        endpoints: Some(Endpoints {
            http: Some(format!("http://{}:{HTTP_PORT}", inputs.service_host)),
            grpc: Some(format!("{}:{GRPC_PORT}", inputs.service_host)),
        }),
        revision,
    }
}

/// Marks `assessment` not Ready because of `blocker` (a reconcile that failed).
pub fn not_ready(assessment: &mut Assessment, blocker: &Blocker) {
    for condition in &mut assessment.conditions {
        if condition.type_ == READY {
            condition.status = ConditionStatus::False;
            condition.reason = blocker.reason;
            condition.message = blocker.message.clone();
        }
    }
}

/// Type of the condition saying whether the serving revision's signatures verified.
pub const VERIFIED: &str = "Verified";

pub(super) use crate::controller::event;

fn list(changes: &[&Change], describe: impl Fn(&Change) -> String) -> String {
    changes
        .iter()
        .map(|c| describe(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Events describing the writes of one reconcile (at most one per kind of write).
///
/// `rolled` says whether the Deployment's pod template changed, so pods restart.
pub fn change_events(changes: &[Change], rolled: bool) -> Vec<Event> {
    let of = |wanted: fn(&ChangeAction) -> bool| {
        changes
            .iter()
            .filter(|c| wanted(&c.action))
            .collect::<Vec<_>>()
    };
    let named = |c: &Change| format!("{} {}", c.kind, c.name);
    let mut events = Vec::new();
    let created = of(|a| matches!(a, ChangeAction::Created));
    if !created.is_empty() {
        events.push(event(
            EventType::Normal,
            "Created",
            format!("created {}", list(&created, named)),
            "Apply",
        ));
    }
    let updated = of(|a| matches!(a, ChangeAction::Updated | ChangeAction::Deleted));
    if !updated.is_empty() {
        let what = list(&updated, |c| match c.action {
            ChangeAction::Deleted => format!("deleted {}", named(c)),
            _ => format!("updated {}", named(c)),
        });
        let (reason, note) = if rolled {
            (
                "RolloutStarted",
                format!(
                    "{what}; model, image, device or resources changed, so the runtime pods roll"
                ),
            )
        } else {
            (
                "Updated",
                format!("{what}; running pods reload the config without a restart"),
            )
        };
        events.push(event(EventType::Normal, reason, note, "Apply"));
    }
    let reverted = of(|a| matches!(a, ChangeAction::Reverted(_)));
    if !reverted.is_empty() {
        let what = list(&reverted, |c| match &c.action {
            ChangeAction::Reverted(path) => format!("{} ({path})", named(c)),
            _ => named(c),
        });
        let note = format!(
            "reverted changes made outside the operator to {what}; edit the ModelDeployment instead"
        );
        events.push(event(EventType::Warning, "DriftReverted", note, "Apply"));
    }
    events
}

/// Events for conditions that changed status or reason: a new problem (Warning; a quota
/// refusal is one, through `Degraded`), the model becoming ready, a rollout completing, a
/// quota admitting what it held back; and a Warning whenever the fields not acted on yet
/// change (their message names them).
pub fn condition_events(before: &[Condition], after: &[Condition]) -> Vec<Event> {
    after
        .iter()
        .filter(|next| {
            let previous = before.iter().find(|c| c.type_ == next.type_);
            previous.is_none_or(|p| {
                p.status != next.status
                    || p.reason != next.reason
                    || (next.type_ == FIELDS_IGNORED && p.message != next.message)
            })
        })
        .filter_map(|c| match (c.type_.as_str(), c.status) {
            (QUOTA_ADMITTED, ConditionStatus::True)
                if before
                    .iter()
                    .any(|p| p.type_ == QUOTA_ADMITTED && p.status != ConditionStatus::True) =>
            {
                Some(event(
                    EventType::Normal,
                    "QuotaAdmitted",
                    c.message.clone(),
                    "Admit",
                ))
            }
            // Waiting for the quota's record is routine, and short.
            (DEGRADED, ConditionStatus::True) if c.reason == ADMISSION_PENDING => None,
            (FIELDS_IGNORED, ConditionStatus::True) => Some(event(
                EventType::Warning,
                UNSUPPORTED_FIELDS,
                c.message.clone(),
                "Assess",
            )),
            (DEGRADED, ConditionStatus::True) => Some(event(
                EventType::Warning,
                &c.reason,
                c.message.clone(),
                "Assess",
            )),
            (READY, ConditionStatus::True) => Some(event(
                EventType::Normal,
                "Ready",
                c.message.clone(),
                "Assess",
            )),
            (PROGRESSING, ConditionStatus::False) if c.reason == "RolloutComplete" => Some(event(
                EventType::Normal,
                "RolloutComplete",
                c.message.clone(),
                "Assess",
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_fit_the_api_limit() {
        let long = "é".repeat(2000);
        let note = event(EventType::Warning, "X", long, "Assess")
            .note
            .expect("note");
        assert!(
            note.len() <= crate::controller::MAX_NOTE_BYTES,
            "{}",
            note.len()
        );
        assert!(note.ends_with('…'));
        let short = event(EventType::Normal, "X", "fine".into(), "Apply").note;
        assert_eq!(short.as_deref(), Some("fine"));
    }

    #[test]
    fn one_event_per_kind_of_write() {
        let change = |kind: &str, action| Change {
            kind: kind.into(),
            name: "m".into(),
            action,
        };
        let changes = [
            change("Service", ChangeAction::Created),
            change("ConfigMap", ChangeAction::Updated),
            change("Deployment", ChangeAction::Reverted("spec.replicas".into())),
        ];
        let reasons: Vec<_> = change_events(&changes, false)
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, ["Created", "Updated", "DriftReverted"]);
        let rolled: Vec<_> = change_events(&changes[1..2], true)
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(rolled, ["RolloutStarted"]);
        assert!(change_events(&[], true).is_empty());
    }

    #[test]
    fn fields_ignored_warns_when_the_fields_change_and_not_when_they_clear() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let ignored = |message: &str| {
            vec![Condition::new(
                FIELDS_IGNORED,
                ConditionStatus::True,
                UNSUPPORTED_FIELDS,
                message,
                Some(1),
                now.clone(),
            )]
        };
        let reasons = |before: &[Condition], after: &[Condition]| {
            condition_events(before, after)
                .into_iter()
                .map(|e| (e.type_, e.reason))
                .collect::<Vec<_>>()
        };
        let warning = vec![(EventType::Warning, UNSUPPORTED_FIELDS.to_owned())];
        assert_eq!(reasons(&[], &ignored("a")), warning);
        assert_eq!(reasons(&ignored("a"), &ignored("a and b")), warning);
        assert!(reasons(&ignored("a"), &ignored("a")).is_empty());
        assert!(reasons(&ignored("a"), &[]).is_empty());
    }
}
