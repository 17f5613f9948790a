//! What a ModelDeployment's reconcile concludes from the TenantQuotas that govern it: a
//! pure reading of their admission records, which only the TenantQuota controller writes.

use modelplane_api::{
    condition::{Condition, ConditionStatus, find_condition},
    model_deployment::condition_types::QUOTA_ADMITTED,
    tenant_quota::TenantQuotaStatus,
};

use super::admission::{QUOTA_EXCEEDED, RESOURCES_UNSET, TENANT_NOT_ALLOWED};

/// `QuotaAdmitted=True` reason when no quota governs the tenant.
pub const NO_TENANT_QUOTA: &str = "NoTenantQuota";
/// `QuotaAdmitted=True` reason when every governing quota admitted this generation.
pub const ADMITTED: &str = "Admitted";
/// `QuotaAdmitted=Unknown` reason while a quota has not decided this generation yet.
pub const ADMISSION_PENDING: &str = "AdmissionPending";

/// A governing quota as the reconcile sees it.
#[derive(Debug, Clone, Copy)]
pub struct Governor<'a> {
    /// `metadata.name` of the TenantQuota.
    pub name: &'a str,
    /// Its status (the record); `None` before its controller wrote one.
    pub status: Option<&'a TenantQuotaStatus>,
    /// Refuses the ModelDeployment outright (another tenant in its namespace), with why.
    pub refuses: Option<&'a str>,
}

/// The ModelDeployment being reconciled.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `namespace/name`.
    pub key: &'a str,
    /// `metadata.uid`.
    pub uid: &'a str,
    /// `metadata.generation`.
    pub generation: i64,
    /// Its tenant.
    pub tenant: &'a str,
    /// Its current `QuotaAdmitted` condition, if any.
    pub current: Option<&'a Condition>,
}

/// Whether this generation may roll out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No quota governs the tenant.
    NotLimited {
        /// The condition message.
        message: String,
    },
    /// Every governing quota admitted this generation.
    Admitted {
        /// The condition message.
        message: String,
    },
    /// A governing quota refused this generation.
    Refused {
        /// CamelCase reason (`QuotaExceeded`, `TenantNotAllowed`, `ResourcesUnset`).
        reason: &'static str,
        /// Which quota, which limit, by how much.
        message: String,
    },
    /// A governing quota has not decided this generation yet.
    Pending {
        /// The condition message.
        message: String,
    },
}

impl Verdict {
    /// Whether the spec's generation may be rendered and applied.
    pub fn rolls_out(&self) -> bool {
        matches!(self, Verdict::NotLimited { .. } | Verdict::Admitted { .. })
    }

    /// The `QuotaAdmitted` condition: status, reason, message.
    pub fn condition(&self) -> (ConditionStatus, &'static str, &str) {
        match self {
            Verdict::NotLimited { message } => (ConditionStatus::True, NO_TENANT_QUOTA, message),
            Verdict::Admitted { message } => (ConditionStatus::True, ADMITTED, message),
            Verdict::Refused { reason, message } => (ConditionStatus::False, reason, message),
            Verdict::Pending { message } => (ConditionStatus::Unknown, ADMISSION_PENDING, message),
        }
    }
}

fn cause(text: Option<&str>) -> &'static str {
    match text {
        Some(TENANT_NOT_ALLOWED) => TENANT_NOT_ALLOWED,
        Some(RESOURCES_UNSET) => RESOURCES_UNSET,
        _ => QUOTA_EXCEEDED,
    }
}

/// What one quota says about `subject`'s generation.
enum Says {
    Admits,
    Refuses(&'static str, String),
    Undecided,
}

fn says(quota: &Governor<'_>, subject: &Subject<'_>) -> Says {
    if let Some(message) = quota.refuses {
        return Says::Refuses(TENANT_NOT_ALLOWED, message.to_owned());
    }
    let Some(status) = quota.status else {
        return Says::Undecided;
    };
    let admitted = status
        .admissions
        .iter()
        .any(|a| a.uid == subject.uid && a.generation == subject.generation);
    if admitted {
        return Says::Admits;
    }
    let rejection = status
        .rejected
        .iter()
        .find(|r| r.name == subject.key && r.generation == Some(subject.generation));
    match rejection {
        Some(r) => Says::Refuses(cause(r.cause.as_deref()), r.reason.clone()),
        None => Says::Undecided,
    }
}

/// The verdict on `subject` under `governors` (sorted by name). While a quota has not
/// decided yet, a generation already admitted (`QuotaAdmitted=True` for it) stays admitted:
/// it is what runs.
pub fn verdict(subject: &Subject<'_>, governors: &[Governor<'_>]) -> Verdict {
    if governors.is_empty() {
        return Verdict::NotLimited {
            message: format!("no TenantQuota for tenant {}; not limited", subject.tenant),
        };
    }
    let mut pending = Vec::new();
    for quota in governors {
        match says(quota, subject) {
            Says::Admits => {}
            Says::Refuses(reason, why) => {
                return Verdict::Refused {
                    reason,
                    message: format!(
                        "TenantQuota {} refused generation {}: {why}",
                        quota.name, subject.generation
                    ),
                };
            }
            Says::Undecided => pending.push(quota.name),
        }
    }
    let names = governors
        .iter()
        .map(|q| q.name)
        .collect::<Vec<_>>()
        .join(", ");
    if pending.is_empty() {
        return Verdict::Admitted {
            message: format!(
                "admitted by TenantQuota {names} for tenant {}",
                subject.tenant
            ),
        };
    }
    let already = subject.current.filter(|c| {
        c.type_ == QUOTA_ADMITTED
            && c.status == ConditionStatus::True
            && c.observed_generation == Some(subject.generation)
    });
    if let Some(current) = already {
        return if current.reason == ADMITTED {
            Verdict::Admitted {
                message: current.message.clone(),
            }
        } else {
            Verdict::NotLimited {
                message: current.message.clone(),
            }
        };
    }
    Verdict::Pending {
        message: format!(
            "waiting for TenantQuota {} to admit generation {}",
            pending.join(", "),
            subject.generation
        ),
    }
}

/// Whether `conditions` say this generation ran admitted while no quota limited the tenant
/// (so a new quota records it as it is).
pub fn ran_unlimited(conditions: &[Condition], generation: Option<i64>) -> bool {
    find_condition(conditions, QUOTA_ADMITTED).is_some_and(|c| {
        c.status == ConditionStatus::True
            && c.reason == NO_TENANT_QUOTA
            && c.observed_generation.is_some()
            && c.observed_generation == generation
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
    use modelplane_api::tenant_quota::{Admission, RejectedDeployment};

    use super::*;

    fn status(
        admitted_generation: Option<i64>,
        refused_generation: Option<i64>,
    ) -> TenantQuotaStatus {
        TenantQuotaStatus {
            admissions: admitted_generation
                .map(|generation| Admission {
                    name: "ns/web".into(),
                    uid: "u1".into(),
                    generation,
                    replicas: 2,
                    gpu: 0,
                    cpu: "8".into(),
                    memory: "16Gi".into(),
                })
                .into_iter()
                .collect(),
            rejected: refused_generation
                .map(|generation| RejectedDeployment {
                    name: "ns/web".into(),
                    reason: "replicas: needs 5, 1 over the quota of 6 (2 in use by other ModelDeployments)".into(),
                    generation: Some(generation),
                    cause: Some(QUOTA_EXCEEDED.into()),
                })
                .into_iter()
                .collect(),
            ..TenantQuotaStatus::default()
        }
    }

    fn subject<'a>(generation: i64, current: Option<&'a Condition>) -> Subject<'a> {
        Subject {
            key: "ns/web",
            uid: "u1",
            generation,
            tenant: "team-a",
            current,
        }
    }

    fn condition(reason: &str, generation: i64) -> Condition {
        Condition::new(
            QUOTA_ADMITTED,
            ConditionStatus::True,
            reason,
            "before",
            Some(generation),
            Time(Timestamp::UNIX_EPOCH),
        )
    }

    /// Governors, the current condition, and the expected status, reason and rollout.
    type Case<'a> = (
        Vec<Governor<'a>>,
        Option<&'a Condition>,
        ConditionStatus,
        &'a str,
        bool,
    );

    #[test]
    fn the_verdict_reads_the_record_for_this_exact_generation() {
        let admitted = status(Some(2), None);
        let refused = status(Some(1), Some(2));
        let undecided = status(Some(1), None);
        let quota = |status| Governor {
            name: "team-a",
            status: Some(status),
            refuses: None,
        };
        let earlier = condition(ADMITTED, 1);
        let unlimited = condition(NO_TENANT_QUOTA, 2);
        #[rustfmt::skip]
        let table: [Case<'_>; 6] = [
            (vec![], None, ConditionStatus::True, NO_TENANT_QUOTA, true),
            (vec![quota(&admitted)], None, ConditionStatus::True, ADMITTED, true),
            (vec![quota(&refused)], None, ConditionStatus::False, QUOTA_EXCEEDED, false),
            // Admitted at generation 1 only: generation 2 waits, whatever the old condition.
            (vec![quota(&undecided)], Some(&earlier), ConditionStatus::Unknown, ADMISSION_PENDING, false),
            // Ran unlimited at generation 2 before the quota existed: it stays admitted.
            (vec![quota(&undecided)], Some(&unlimited), ConditionStatus::True, NO_TENANT_QUOTA, true),
            // Two quotas: one refusal is enough.
            (vec![quota(&admitted), Governor { name: "z", status: Some(&refused), refuses: None }], None, ConditionStatus::False, QUOTA_EXCEEDED, false),
        ];
        for (index, (governors, current, status, reason, rolls)) in table.into_iter().enumerate() {
            let verdict = verdict(&subject(2, current), &governors);
            let (got_status, got_reason, _) = verdict.condition();
            assert_eq!((got_status, got_reason), (status, reason), "case {index}");
            assert_eq!(verdict.rolls_out(), rolls, "case {index}");
        }
    }

    #[test]
    fn messages_name_the_quota_the_limit_and_the_tenant() {
        let none = verdict(&subject(1, None), &[]);
        assert_eq!(
            none.condition().2,
            "no TenantQuota for tenant team-a; not limited"
        );
        let refused = status(Some(1), Some(2));
        let governor = Governor {
            name: "team-a",
            status: Some(&refused),
            refuses: None,
        };
        assert_eq!(
            verdict(&subject(2, None), &[governor]).condition().2,
            "TenantQuota team-a refused generation 2: replicas: needs 5, 1 over the quota of 6 (2 in use by other ModelDeployments)"
        );
        let escape = Governor {
            name: "team-a",
            status: None,
            refuses: Some("namespace ns is covered by TenantQuota team-a for tenant team-a"),
        };
        let verdict = verdict(&subject(2, None), &[escape]);
        assert_eq!(verdict.condition().1, TENANT_NOT_ALLOWED);
    }

    #[test]
    fn only_an_unlimited_run_of_this_generation_counts_as_running_before_the_quota() {
        let unlimited = [condition(NO_TENANT_QUOTA, 3)];
        assert!(ran_unlimited(&unlimited, Some(3)));
        assert!(!ran_unlimited(&unlimited, Some(4)));
        assert!(!ran_unlimited(&[condition(ADMITTED, 3)], Some(3)));
        assert!(!ran_unlimited(&[], Some(3)));
    }
}
