//! The rollout decision: given the mode and a verification outcome, what to roll out and record.

use std::str::FromStr;

use crate::outcome::{Failure, Verified};

/// `spec.verification.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// An unverified revision is never rolled out.
    Enforce,
    /// Unverified revisions roll out; the failure is recorded in status and an Event.
    Audit,
    /// Nothing is verified; tags are still resolved to digests and pinned.
    Disabled,
}

impl Mode {
    /// The mode in effect: the one the spec names, else `Enforce` once keys exist, else `Disabled`.
    pub fn effective(configured: Option<Mode>, has_keys: bool) -> Self {
        match (configured, has_keys) {
            (Some(mode), _) => mode,
            (None, true) => Self::Enforce,
            (None, false) => Self::Disabled,
        }
    }

    /// The spelling used in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "Enforce",
            Self::Audit => "Audit",
            Self::Disabled => "Disabled",
        }
    }
}

/// The spec spelling is not a mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verification mode {0:?} (Enforce, Audit or Disabled)")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Enforce" => Ok(Self::Enforce),
            "Audit" => Ok(Self::Audit),
            "Disabled" => Ok(Self::Disabled),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

/// `status` of the `Verified` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    /// Verified.
    True,
    /// Not verified (the reason says why).
    False,
    /// Verification is disabled.
    Unknown,
}

/// Event type, as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Informational.
    Normal,
    /// Something a user should look at.
    Warning,
}

/// The `Verified` condition to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// True / False / Unknown.
    pub status: ConditionStatus,
    /// CamelCase reason (`Verified`, `VerificationDisabled`, or a [`crate::FailureReason`]).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// An Event to emit on the ModelDeployment (or Canary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub kind: EventType,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable note.
    pub note: String,
}

/// What to do with a revision after verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Roll the revision out (else keep the previous revision serving).
    pub roll_out: bool,
    /// The `Verified` condition.
    pub condition: Condition,
    /// The Event to emit, if any.
    pub event: Option<Event>,
    /// Verify again later with backoff (the failure may be transient).
    pub retry: bool,
}

/// Decides what to roll out and record for `outcome` under `mode`.
pub fn decide(mode: Mode, outcome: &Result<Verified, Failure>) -> Decision {
    match (mode, outcome) {
        (Mode::Disabled, _) => Decision {
            roll_out: true,
            condition: Condition {
                status: ConditionStatus::Unknown,
                reason: "VerificationDisabled",
                message: "signature verification is disabled".to_owned(),
            },
            event: None,
            retry: false,
        },
        (_, Ok(verified)) => {
            let signer = verified.signer.as_deref().unwrap_or("a trusted key");
            let message = format!("{} signed by {signer}", verified.digest);
            Decision {
                roll_out: true,
                condition: Condition {
                    status: ConditionStatus::True,
                    reason: "Verified",
                    message: message.clone(),
                },
                event: (!verified.from_cache).then_some(Event {
                    kind: EventType::Normal,
                    reason: "Verified",
                    note: message,
                }),
                retry: false,
            }
        }
        (Mode::Enforce | Mode::Audit, Err(failure)) => {
            let enforce = mode == Mode::Enforce;
            let note = if enforce {
                format!(
                    "not rolled out, previous revision keeps serving: {}",
                    failure.message
                )
            } else {
                format!("audit mode, rolled out unverified: {}", failure.message)
            };
            Decision {
                roll_out: !enforce,
                condition: Condition {
                    status: ConditionStatus::False,
                    reason: failure.reason.as_str(),
                    message: failure.message.clone(),
                },
                event: Some(Event {
                    kind: EventType::Warning,
                    reason: failure.reason.as_str(),
                    note,
                }),
                retry: failure.is_retryable(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::outcome::FailureReason;

    fn verified(from_cache: bool) -> Result<Verified, Failure> {
        Ok(Verified {
            digest: Digest::from_raw([7; 32]),
            pinned: None,
            signer: Some("cosign-pub".into()),
            from_cache,
        })
    }

    fn failed(reason: FailureReason) -> Result<Verified, Failure> {
        Err(Failure::new(reason, "details"))
    }

    /// (mode, outcome, roll out, condition status, condition reason, event type, retry)
    type Row = (
        Mode,
        Result<Verified, Failure>,
        bool,
        ConditionStatus,
        &'static str,
        Option<EventType>,
        bool,
    );

    #[test]
    fn decision_table() {
        use ConditionStatus::*;
        use FailureReason::*;
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (Mode::Enforce, verified(false), true, True, "Verified", Some(EventType::Normal), false),
            (Mode::Enforce, verified(true), true, True, "Verified", None, false),
            (Mode::Enforce, failed(NoSignature), false, False, "NoSignature", Some(EventType::Warning), false),
            (Mode::Enforce, failed(WrongKey), false, False, "WrongKey", Some(EventType::Warning), false),
            (Mode::Enforce, failed(DigestMismatch), false, False, "DigestMismatch", Some(EventType::Warning), false),
            (Mode::Enforce, failed(TagMoved), false, False, "TagMoved", Some(EventType::Warning), false),
            (Mode::Enforce, failed(TamperedLayer), false, False, "TamperedLayer", Some(EventType::Warning), false),
            (Mode::Enforce, failed(RegistryUnreachable), false, False, "RegistryUnreachable", Some(EventType::Warning), true),
            (Mode::Enforce, failed(KeyMissing), false, False, "KeyMissing", Some(EventType::Warning), false),
            (Mode::Audit, verified(false), true, True, "Verified", Some(EventType::Normal), false),
            (Mode::Audit, failed(NoSignature), true, False, "NoSignature", Some(EventType::Warning), false),
            (Mode::Audit, failed(WrongKey), true, False, "WrongKey", Some(EventType::Warning), false),
            (Mode::Audit, failed(DigestMismatch), true, False, "DigestMismatch", Some(EventType::Warning), false),
            (Mode::Audit, failed(TagMoved), true, False, "TagMoved", Some(EventType::Warning), false),
            (Mode::Audit, failed(TamperedLayer), true, False, "TamperedLayer", Some(EventType::Warning), false),
            (Mode::Audit, failed(RegistryUnreachable), true, False, "RegistryUnreachable", Some(EventType::Warning), true),
            (Mode::Audit, failed(KeyMissing), true, False, "KeyMissing", Some(EventType::Warning), false),
            (Mode::Disabled, verified(false), true, Unknown, "VerificationDisabled", None, false),
            (Mode::Disabled, failed(NoSignature), true, Unknown, "VerificationDisabled", None, false),
        ];
        for (mode, outcome, roll_out, status, reason, event, retry) in table {
            let decision = decide(mode, &outcome);
            let case = format!("{mode:?} {outcome:?}");
            assert_eq!(decision.roll_out, roll_out, "{case}");
            assert_eq!(decision.condition.status, status, "{case}");
            assert_eq!(decision.condition.reason, reason, "{case}");
            assert_eq!(decision.event.as_ref().map(|e| e.kind), event, "{case}");
            assert_eq!(decision.retry, retry, "{case}");
        }
    }

    #[test]
    fn enforce_event_says_the_previous_revision_keeps_serving() {
        let decision = decide(Mode::Enforce, &failed(FailureReason::WrongKey));
        let event = decision.event.unwrap();
        assert!(
            event.note.contains("previous revision keeps serving"),
            "{}",
            event.note
        );
        assert_eq!(decision.condition.message, "details");
    }

    #[test]
    fn effective_mode_defaults_to_enforce_once_keys_exist() {
        assert_eq!(Mode::effective(None, true), Mode::Enforce);
        assert_eq!(Mode::effective(None, false), Mode::Disabled);
        assert_eq!(Mode::effective(Some(Mode::Audit), true), Mode::Audit);
        assert_eq!(Mode::effective(Some(Mode::Enforce), false), Mode::Enforce);
    }

    #[test]
    fn modes_parse_from_their_spec_spelling_only() {
        for mode in [Mode::Enforce, Mode::Audit, Mode::Disabled] {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
        }
        assert!("enforce".parse::<Mode>().is_err());
    }
}
