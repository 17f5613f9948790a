//! The pure part of leader election: who may hold the Lease, given what it says now.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::LeaseSpec,
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};

/// What a candidate should do after reading the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The Lease is free or expired: write ourselves in as holder.
    Acquire,
    /// We already hold it: refresh `renewTime`.
    Renew,
    /// Someone else holds a valid Lease; try again later.
    Follow {
        /// Current holder.
        holder: String,
    },
}

/// Decides what `me` should do with the Lease whose spec is `current` at time `now`.
///
/// A Lease whose holder has not renewed within its duration is expired and
/// may be taken by anyone; `fallback_duration` applies when the Lease names none.
pub fn decide(
    current: &LeaseSpec,
    me: &str,
    now: Timestamp,
    fallback_duration: Duration,
) -> Decision {
    let holder = current.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == me {
        return Decision::Renew;
    }
    let duration = current
        .lease_duration_seconds
        .and_then(|secs| u64::try_from(secs).ok())
        .map(Duration::from_secs)
        .unwrap_or(fallback_duration);
    let expired = match &current.renew_time {
        Some(MicroTime(renewed)) => {
            let valid_for = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
            renewed
                .checked_add(valid_for)
                .is_ok_and(|until| until <= now)
        }
        None => true,
    };
    if expired {
        Decision::Acquire
    } else {
        Decision::Follow {
            holder: holder.to_owned(),
        }
    }
}

/// The Lease spec to write after an `Acquire` or `Renew` decision.
pub fn next_spec(
    current: &LeaseSpec,
    decision: &Decision,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> LeaseSpec {
    let duration_secs = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX).max(1);
    let transitions = current.lease_transitions.unwrap_or(0);
    match decision {
        Decision::Renew => LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(duration_secs),
            ..current.clone()
        },
        Decision::Acquire | Decision::Follow { .. } => {
            let changed_hands = current
                .holder_identity
                .as_deref()
                .is_some_and(|holder| !holder.is_empty() && holder != me);
            LeaseSpec {
                holder_identity: Some(me.to_owned()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_duration_seconds: Some(duration_secs),
                lease_transitions: Some(transitions + i32::from(changed_hands)),
                ..current.clone()
            }
        }
    }
}

/// The Lease spec that hands leadership back on shutdown, so a standby takes over at once.
pub fn released(current: &LeaseSpec) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        acquire_time: None,
        renew_time: None,
        ..current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at(0))),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn empty_lease_is_acquired() {
        assert_eq!(
            decide(&LeaseSpec::default(), "a", at(0), LEASE),
            Decision::Acquire
        );
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(
            decide(&held_by("a", 0), "a", at(100), LEASE),
            Decision::Renew
        );
    }

    #[test]
    fn valid_lease_of_another_replica_is_followed() {
        assert_eq!(
            decide(&held_by("b", 0), "a", at(14), LEASE),
            Decision::Follow { holder: "b".into() }
        );
    }

    #[test]
    fn expired_lease_of_another_replica_is_taken_over() {
        assert_eq!(
            decide(&held_by("b", 0), "a", at(15), LEASE),
            Decision::Acquire
        );
        assert_eq!(
            decide(&held_by("b", 0), "a", at(60), LEASE),
            Decision::Acquire
        );
    }

    #[test]
    fn lease_without_renew_time_is_expired() {
        let spec = LeaseSpec {
            renew_time: None,
            ..held_by("b", 0)
        };
        assert_eq!(decide(&spec, "a", at(1), LEASE), Decision::Acquire);
    }

    #[test]
    fn takeover_counts_a_transition_and_renewal_does_not() {
        let taken = next_spec(&held_by("b", 0), &Decision::Acquire, "a", at(20), LEASE);
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));

        let renewed = next_spec(&held_by("a", 0), &Decision::Renew, "a", at(5), LEASE);
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(5))));
    }

    #[test]
    fn released_lease_is_free_for_the_next_candidate() {
        let released = released(&held_by("a", 0));
        assert_eq!(decide(&released, "b", at(1), LEASE), Decision::Acquire);
        assert_eq!(released.lease_transitions, Some(3));
    }
}
