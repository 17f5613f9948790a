//! The admission decision of one TenantQuota: a pure function from the record (what is
//! admitted, at which generation), the ceilings and the ModelDeployments it governs to the
//! next record and the refusals.
//!
//! Rules:
//! - Nothing admitted is taken back while its ModelDeployment exists: lowering `hard` or a
//!   refused change keeps the admitted entry (and so what runs).
//! - An entry is replaced only by a newer generation of the same uid, and removed only once
//!   the ModelDeployment is known to be gone (or governed elsewhere): a reconcile that sees
//!   an older or incomplete picture never shrinks the record.
//! - Waiting requests (new ModelDeployments, changed generations) are decided oldest first
//!   (creationTimestamp, then namespace/name). Each is admitted if, for every limited
//!   resource it grows, the others' entries plus its new footprint stay within `hard`;
//!   one that does not fit does not stop a younger, smaller one (best-effort FIFO).
//! - A ModelDeployment that ran at its current generation before any quota limited it is
//!   recorded as it is (even beyond `hard`): nothing running is touched, and what it uses
//!   is counted.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use modelplane_api::tenant_quota::{Admission, RejectedDeployment};

use super::footprint::{Amounts, FootprintError, Limits, Resource};

/// `RejectedDeployment.cause` of a ModelDeployment that would exceed `hard`.
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// `RejectedDeployment.cause` of a ModelDeployment of another tenant in a covered namespace.
pub const TENANT_NOT_ALLOWED: &str = "TenantNotAllowed";
/// `RejectedDeployment.cause` of a ModelDeployment whose footprint cannot be counted.
pub const RESOURCES_UNSET: &str = "ResourcesUnset";

/// Suffix of the record name of a runtime-image Canary's candidate pods.
const CANARY_SUFFIX: &str = " (Canary)";

/// The record name of the candidate pods of Canary `name` (a runtime-image candidate runs
/// its own Deployment beside the target's, and is admitted like a ModelDeployment).
pub fn canary_entry_name(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}{CANARY_SUFFIX}")
}

/// Whether a record name is a Canary's candidate pods (which count no ModelDeployment).
pub fn is_canary_entry(name: &str) -> bool {
    name.ends_with(CANARY_SUFFIX)
}

/// One admitted ModelDeployment (or a Canary's candidate pods), as the record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `namespace/name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// The generation admitted.
    pub generation: i64,
    /// What it may use.
    pub amounts: Amounts,
}

impl Entry {
    /// Reads a status entry; `None` if its amounts do not parse (never written so).
    pub fn read(admission: &Admission) -> Option<Self> {
        let mut amounts = Amounts::default();
        amounts.set(Resource::Gpu, u128::try_from(admission.gpu).ok()?);
        amounts.set(Resource::Cpu, Resource::Cpu.parse(&admission.cpu).ok()?);
        amounts.set(
            Resource::Memory,
            Resource::Memory.parse(&admission.memory).ok()?,
        );
        amounts.set(Resource::Replicas, u128::try_from(admission.replicas).ok()?);
        amounts.set(
            Resource::ModelDeployments,
            u128::from(!is_canary_entry(&admission.name)),
        );
        Some(Self {
            name: admission.name.clone(),
            uid: admission.uid.clone(),
            generation: admission.generation,
            amounts,
        })
    }

    /// The status entry.
    pub fn write(&self) -> Admission {
        Admission {
            name: self.name.clone(),
            uid: self.uid.clone(),
            generation: self.generation,
            replicas: i32::try_from(self.amounts.get(Resource::Replicas)).unwrap_or(i32::MAX),
            gpu: i64::try_from(self.amounts.get(Resource::Gpu)).unwrap_or(i64::MAX),
            cpu: Resource::Cpu.format(self.amounts.get(Resource::Cpu)),
            memory: Resource::Memory.format(self.amounts.get(Resource::Memory)),
        }
    }
}

/// Why a ModelDeployment cannot be admitted by this quota whatever its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligible {
    /// Its footprint cannot be counted.
    Footprint(FootprintError),
    /// It runs in a namespace of this quota under another tenant.
    TenantNotAllowed(String),
}

/// A ModelDeployment the quota governs, as the reconcile sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `namespace/name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// Its footprint at this generation, or why it has none here.
    pub demand: Result<Amounts, Ineligible>,
    /// It already runs this generation, admitted while no quota limited its tenant.
    pub grandfathered: bool,
}

/// What the quota decides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// The next record, sorted by name.
    pub entries: Vec<Entry>,
    /// Refused requests, oldest first.
    pub rejected: Vec<RejectedDeployment>,
    /// The sum of the entries.
    pub used: Amounts,
}

/// Decides `candidates` against `limits`, starting from `record`; `departed` holds the uids
/// known to be gone or governed elsewhere (their entries are released).
pub fn decide(
    limits: &Limits,
    record: &[Entry],
    candidates: &[Candidate],
    departed: &BTreeSet<String>,
) -> Decision {
    let by_uid: BTreeMap<&str, &Candidate> =
        candidates.iter().map(|c| (c.uid.as_str(), c)).collect();
    let mut entries: BTreeMap<String, Entry> = record
        .iter()
        .filter(|e| by_uid.contains_key(e.uid.as_str()) || !departed.contains(&e.uid))
        .map(|e| (e.uid.clone(), e.clone()))
        .collect();
    let mut waiting: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| {
            entries
                .get(&c.uid)
                .is_none_or(|e| e.generation < c.generation)
        })
        .collect();
    // Running before any quota: recorded first, as they are.
    waiting.sort_by_key(|c| (!c.grandfathered, c.created, c.name.clone()));
    let mut rejected = Vec::new();
    for candidate in waiting {
        let refuse = |cause: &str, reason: String| RejectedDeployment {
            name: candidate.name.clone(),
            reason,
            generation: Some(candidate.generation),
            cause: Some(cause.to_owned()),
        };
        let demand = match &candidate.demand {
            Ok(demand) => *demand,
            Err(Ineligible::TenantNotAllowed(message)) => {
                rejected.push(refuse(TENANT_NOT_ALLOWED, message.clone()));
                continue;
            }
            Err(Ineligible::Footprint(error)) => {
                rejected.push(refuse(RESOURCES_UNSET, error.to_string()));
                continue;
            }
        };
        let previous = entries.get(&candidate.uid).map(|e| e.amounts);
        let others: Amounts = entries
            .values()
            .filter(|e| e.uid != candidate.uid)
            .map(|e| &e.amounts)
            .sum();
        let over = if candidate.grandfathered {
            Vec::new()
        } else {
            overages(limits, &others, &demand, previous.as_ref())
        };
        if over.is_empty() {
            entries.insert(
                candidate.uid.clone(),
                Entry {
                    name: candidate.name.clone(),
                    uid: candidate.uid.clone(),
                    generation: candidate.generation,
                    amounts: demand,
                },
            );
        } else {
            rejected.push(refuse(QUOTA_EXCEEDED, over.join("; ")));
        }
    }
    let mut entries: Vec<Entry> = entries.into_values().collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uid.cmp(&b.uid)));
    let used = entries.iter().map(|e| &e.amounts).sum();
    Decision {
        entries,
        rejected,
        used,
    }
}

/// One line per limited resource that `demand` grows past `hard` beside `others`:
/// `cpu: needs 12, 4 over the quota of 32 (24 in use by other ModelDeployments)`.
fn overages(
    limits: &Limits,
    others: &Amounts,
    demand: &Amounts,
    previous: Option<&Amounts>,
) -> Vec<String> {
    Resource::ALL
        .iter()
        .filter_map(|&r| {
            let hard = limits.get(r)?;
            let need = demand.get(r);
            let grows = previous.is_none_or(|p| need > p.get(r));
            let total = others.get(r).saturating_add(need);
            (grows && total > hard).then(|| {
                format!(
                    "{}: needs {}, {} over the quota of {} ({} in use by other ModelDeployments)",
                    r.field(),
                    r.format(need),
                    r.format(total - hard),
                    r.format(hard),
                    r.format(others.get(r)),
                )
            })
        })
        .collect()
}

/// The resources whose admitted total exceeds `hard` (after `hard` was lowered, or by what
/// ran before the quota), as `cpu: 40 in use, quota 32`.
pub fn over_limit(limits: &Limits, used: &Amounts) -> Vec<String> {
    Resource::ALL
        .iter()
        .filter_map(|&r| {
            let hard = limits.get(r)?;
            (used.get(r) > hard).then(|| {
                format!(
                    "{}: {} in use, quota {}",
                    r.field(),
                    r.format(used.get(r)),
                    r.format(hard)
                )
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
