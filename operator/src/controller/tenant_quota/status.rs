//! The TenantQuota status and Events: pure functions of the decision.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType};
use modelplane_api::{
    condition::{Condition, ConditionStatus, merge_conditions},
    tenant_quota::{
        QuotaSummary, QuotaUsage, TenantQuota, TenantQuotaStatus, condition_types::EXCEEDED,
        condition_types::READY,
    },
};

use crate::quota::{Decision, Entry, Limits, QuotaScope, Resource, over_limit};

/// Refusals named in the `Exceeded` message (all are in `status.rejected`).
const NAMED_IN_MESSAGE: usize = 3;

/// The status stating `decision` for `quota`, keeping the transition times of
/// conditions whose status did not flip.
pub fn next_status(
    quota: &TenantQuota,
    current: &TenantQuotaStatus,
    this: &QuotaScope,
    limits: &Limits,
    decision: &Decision,
    now: &Time,
) -> TenantQuotaStatus {
    let generation = quota.metadata.generation;
    let condition = |type_: &str, status, reason: &str, message: String| {
        Condition::new(type_, status, reason, message, generation, now.clone())
    };
    let ready = condition(
        READY,
        ConditionStatus::True,
        "Enforced",
        format!(
            "admitting the ModelDeployments of tenant {} against spec.hard",
            this.tenant
        ),
    );
    let exceeded = exceeded(limits, decision);
    let exceeded = condition(EXCEEDED, exceeded.0, exceeded.1, exceeded.2);
    let used = |r: Resource| decision.used.get(r);
    let count = |r: Resource| i64::try_from(used(r)).unwrap_or(i64::MAX);
    TenantQuotaStatus {
        observed_generation: generation,
        conditions: merge_conditions(&current.conditions, vec![ready, exceeded]),
        tenant: Some(this.tenant.clone()),
        used: QuotaUsage {
            gpu: count(Resource::Gpu),
            cpu: Some(Resource::Cpu.format(used(Resource::Cpu))),
            memory: Some(Resource::Memory.format(used(Resource::Memory))),
            replicas: i32::try_from(count(Resource::Replicas)).unwrap_or(i32::MAX),
            model_deployments: i32::try_from(count(Resource::ModelDeployments)).unwrap_or(i32::MAX),
        },
        summary: summary(limits, decision),
        admitted: decision.entries.iter().map(|e| e.name.clone()).collect(),
        rejected: decision.rejected.clone(),
        admissions: decision.entries.iter().map(Entry::write).collect(),
    }
}

/// The status of a quota whose `spec.hard` cannot be read: not in force, record untouched.
pub fn invalid(
    quota: &TenantQuota,
    current: &TenantQuotaStatus,
    this: &QuotaScope,
    error: &str,
    now: &Time,
) -> TenantQuotaStatus {
    let ready = Condition::new(
        READY,
        ConditionStatus::False,
        "InvalidHard",
        format!("spec.hard cannot be read ({error}); nothing new is admitted"),
        quota.metadata.generation,
        now.clone(),
    );
    let others = current
        .conditions
        .iter()
        .filter(|c| c.type_ != READY)
        .cloned();
    TenantQuotaStatus {
        observed_generation: quota.metadata.generation,
        conditions: merge_conditions(
            &current.conditions,
            std::iter::once(ready).chain(others).collect(),
        ),
        tenant: Some(this.tenant.clone()),
        ..current.clone()
    }
}

fn exceeded(limits: &Limits, decision: &Decision) -> (ConditionStatus, &'static str, String) {
    if !decision.rejected.is_empty() {
        let named: Vec<String> = decision
            .rejected
            .iter()
            .take(NAMED_IN_MESSAGE)
            .map(|r| format!("{} ({})", r.name, r.reason))
            .collect();
        let more = decision.rejected.len().saturating_sub(NAMED_IN_MESSAGE);
        let tail = if more > 0 {
            format!("; and {more} more in status.rejected")
        } else {
            String::new()
        };
        return (
            ConditionStatus::True,
            "Refused",
            format!(
                "{} ModelDeployment(s) refused: {}{tail}",
                decision.rejected.len(),
                named.join("; ")
            ),
        );
    }
    let over = over_limit(limits, &decision.used);
    if !over.is_empty() {
        return (
            ConditionStatus::True,
            "OverLimit",
            format!(
                "what is admitted exceeds spec.hard (it ran before, or hard was lowered; nothing running is touched, nothing grows): {}",
                over.join("; ")
            ),
        );
    }
    (
        ConditionStatus::False,
        "WithinQuota",
        "every ModelDeployment of the tenant is admitted within spec.hard".into(),
    )
}

fn summary(limits: &Limits, decision: &Decision) -> QuotaSummary {
    let text = |r: Resource| {
        let hard = limits.get(r).map_or("-".to_owned(), |h| r.format(h));
        format!("{}/{hard}", r.format(decision.used.get(r)))
    };
    QuotaSummary {
        gpu: text(Resource::Gpu),
        cpu: text(Resource::Cpu),
        memory: text(Resource::Memory),
        replicas: text(Resource::Replicas),
        model_deployments: text(Resource::ModelDeployments),
    }
}

fn event(type_: EventType, reason: &str, note: String) -> Event {
    crate::controller::event(type_, reason, note, "Admit")
}

/// Events for what changed between two statuses: each new admission (or admitted change),
/// each new refusal, each released entry.
pub fn events(before: &TenantQuotaStatus, after: &TenantQuotaStatus) -> Vec<Event> {
    let mut events = Vec::new();
    for admission in &after.admissions {
        let known = before
            .admissions
            .iter()
            .any(|a| a.uid == admission.uid && a.generation == admission.generation);
        if !known {
            events.push(event(
                EventType::Normal,
                "Admitted",
                format!(
                    "admitted {} (generation {}): {} replicas, {} GPU, {} CPU, {} memory",
                    admission.name,
                    admission.generation,
                    admission.replicas,
                    admission.gpu,
                    admission.cpu,
                    admission.memory
                ),
            ));
        }
    }
    for rejection in &after.rejected {
        let known = before
            .rejected
            .iter()
            .any(|r| r.name == rejection.name && r.generation == rejection.generation);
        if !known {
            events.push(event(
                EventType::Warning,
                rejection.cause.as_deref().unwrap_or("Refused"),
                format!("refused {}: {}", rejection.name, rejection.reason),
            ));
        }
    }
    for admission in &before.admissions {
        if !after.admissions.iter().any(|a| a.uid == admission.uid) {
            events.push(event(
                EventType::Normal,
                "Released",
                format!(
                    "released {}: it was deleted or is no longer governed by this quota",
                    admission.name
                ),
            ));
        }
    }
    events
}
