//! Status conditions in the shape of `metav1.Condition`, and the pure helpers that
//! update them so that `lastTransitionTime` only moves when a status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether a condition holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell yet.
    Unknown,
}

/// One aspect of an object's current state (same shape as `metav1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Kind of condition in CamelCase, e.g. `Ready`; unique within the list.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    /// Whether the condition holds: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason for the last transition, e.g. `QuotaExceeded`.
    #[schemars(
        length(min = 1, max = 1024),
        pattern(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    )]
    pub reason: String,
    /// Human-readable detail, e.g. which limit was exceeded and by how much.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When the status last changed from one value to another.
    pub last_transition_time: Time,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition that (if it is new or flips) transitioned at `now`.
    pub fn new(
        type_: impl Into<String>,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
        observed_generation: Option<i64>,
        now: Time,
    ) -> Self {
        Self {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now,
            observed_generation,
        }
    }

    /// True when `self` and `other` say the same thing, transition time aside.
    pub fn same_state(&self, other: &Self) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
            && self.observed_generation == other.observed_generation
    }
}

/// The condition of `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of `type_` is present with status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

/// Inserts or replaces the condition of `update.type_`, keeping the previous
/// `lastTransitionTime` unless the status flips. Returns whether anything but the
/// transition time changed (so a caller can skip a write when nothing did).
pub fn set_condition(conditions: &mut Vec<Condition>, mut update: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        Some(existing) => {
            if existing.same_state(&update) {
                return false;
            }
            if existing.status == update.status {
                update.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = update;
            true
        }
        None => {
            conditions.push(update);
            true
        }
    }
}

/// The conditions to write when the operator has computed `desired` from scratch:
/// `desired`, in its order, each keeping the `lastTransitionTime` of its counterpart
/// in `current` when the status did not flip. Conditions absent from `desired` are dropped.
pub fn merge_conditions(current: &[Condition], desired: Vec<Condition>) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|mut next| {
            if let Some(previous) = find_condition(current, &next.type_)
                && previous.status == next.status
            {
                next.last_transition_time = previous.last_transition_time.clone();
            }
            next
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn ready(status: ConditionStatus, reason: &str, now: i64) -> Condition {
        Condition::new("Ready", status, reason, "", Some(1), at(now))
    }

    #[test]
    fn set_condition_appends_a_new_type() {
        let mut conditions = vec![];
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Serving", 10)
        ));
        assert_eq!(
            conditions,
            vec![ready(ConditionStatus::True, "Serving", 10)]
        );
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = vec![ready(ConditionStatus::False, "Loading", 10)];
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "Verifying", 20)
        ));
        assert_eq!(conditions[0].reason, "Verifying");
        assert_eq!(conditions[0].last_transition_time, at(10));
    }

    #[test]
    fn set_condition_moves_transition_time_when_status_flips() {
        let mut conditions = vec![ready(ConditionStatus::False, "Loading", 10)];
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Serving", 20)
        ));
        assert_eq!(conditions[0].status, ConditionStatus::True);
        assert_eq!(conditions[0].last_transition_time, at(20));
    }

    #[test]
    fn set_condition_reports_no_change_for_an_identical_state() {
        let mut conditions = vec![ready(ConditionStatus::True, "Serving", 10)];
        assert!(!set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Serving", 99)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
    }

    #[test]
    fn merge_conditions_carries_times_and_drops_stale_types() {
        let current = vec![
            ready(ConditionStatus::True, "Serving", 10),
            Condition::new(
                "Degraded",
                ConditionStatus::True,
                "Breaker",
                "",
                None,
                at(5),
            ),
        ];
        let verified = Condition::new(
            "Verified",
            ConditionStatus::True,
            "Signed",
            "",
            None,
            at(30),
        );
        let merged = merge_conditions(
            &current,
            vec![
                ready(ConditionStatus::True, "Serving", 30),
                verified.clone(),
            ],
        );
        assert_eq!(
            merged,
            vec![ready(ConditionStatus::True, "Serving", 10), verified]
        );
    }

    #[test]
    fn is_condition_true_needs_status_true() {
        let conditions = vec![ready(ConditionStatus::Unknown, "Pending", 1)];
        assert!(!is_condition_true(&conditions, "Ready"));
        assert!(!is_condition_true(&conditions, "Verified"));
        assert!(is_condition_true(
            &[ready(ConditionStatus::True, "Serving", 1)],
            "Ready"
        ));
    }
}
