//! Quota math and admission order, as tables.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::quota::footprint::{Limits, footprint};

fn limits(hard: serde_json::Value) -> Limits {
    Limits::from_hard(&serde_json::from_value(hard).expect("hard")).expect("limits")
}

/// A candidate `ns/name` (uid `name`) created at second `created`, at `generation`, with
/// `replicas` pods of 4 CPU and 8Gi each.
fn md(name: &str, created: i64, generation: i64, replicas: i32) -> Candidate {
    let runtime = serde_json::from_value(json!({
        "replicas": replicas, "resources": {"cpu": "4", "memory": "8Gi"},
    }))
    .expect("runtime");
    Candidate {
        name: format!("ns/{name}"),
        uid: name.to_owned(),
        generation,
        created: Some(Timestamp::from_second(created).expect("time")),
        demand: footprint(&runtime, &Limits::default()).map_err(Ineligible::Footprint),
        grandfathered: false,
    }
}

fn entry(candidate: &Candidate) -> Entry {
    Entry {
        name: candidate.name.clone(),
        uid: candidate.uid.clone(),
        generation: candidate.generation,
        amounts: candidate.demand.clone().expect("countable"),
    }
}

fn admitted(decision: &Decision) -> Vec<(String, i64)> {
    decision
        .entries
        .iter()
        .map(|e| (e.uid.clone(), e.generation))
        .collect()
}

fn refused(decision: &Decision) -> Vec<String> {
    decision
        .rejected
        .iter()
        .map(|r| r.name.trim_start_matches("ns/").to_owned())
        .collect()
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

/// Case name, candidates, admitted, refused.
type Case<'a> = (&'a str, Vec<Candidate>, &'a [&'a str], &'a [&'a str]);

#[test]
fn competing_deployments_are_admitted_oldest_first_and_never_together_over_the_quota() {
    // cpu 32 = 8 pods of 4 CPU.
    let hard =
        limits(json!({"cpu": "32", "memory": "128Gi", "replicas": 12, "modelDeployments": 6}));
    #[rustfmt::skip]
    let table: [Case<'_>; 5] = [
        ("all fit", vec![md("a", 1, 1, 2), md("b", 2, 1, 2)], &["a", "b"], &[]),
        // Listed young first: order is by creationTimestamp, not by list order.
        ("the older one wins", vec![md("young", 9, 1, 6), md("old", 1, 1, 6)], &["old"], &["young"]),
        // The same creation second: namespace/name decides.
        ("name breaks a tie", vec![md("b", 5, 1, 6), md("a", 5, 1, 6)], &["a"], &["b"]),
        // A younger, smaller one is admitted beside an older one that does not fit.
        ("best effort", vec![md("big", 1, 1, 9), md("small", 2, 1, 2)], &["small"], &["big"]),
        ("exactly full", vec![md("a", 1, 1, 4), md("b", 2, 1, 4), md("c", 3, 1, 1)], &["a", "b"], &["c"]),
    ];
    for (case, candidates, want_admitted, want_refused) in table {
        let decision = decide(&hard, &[], &candidates, &none());
        let names: Vec<String> = admitted(&decision).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, want_admitted, "{case}");
        assert_eq!(refused(&decision), want_refused, "{case}");
        assert!(
            decision.used.get(Resource::Cpu) <= 32_000,
            "{case}: over the quota"
        );
        assert_eq!(
            decision.used,
            decision.entries.iter().map(|e| &e.amounts).sum::<Amounts>(),
            "{case}: used is the sum of the record"
        );
    }
}

#[test]
fn the_refusal_names_each_limit_and_the_amount_over() {
    let hard = limits(json!({"cpu": "32", "replicas": 12}));
    let running = md("running", 1, 1, 6);
    let decision = decide(
        &hard,
        &[entry(&running)],
        &[running, md("new", 2, 1, 3)],
        &none(),
    );
    assert_eq!(refused(&decision), ["new"]);
    let rejection = &decision.rejected[0];
    assert_eq!(
        rejection.reason,
        "cpu: needs 12, 4 over the quota of 32 (24 in use by other ModelDeployments)"
    );
    assert_eq!(rejection.cause.as_deref(), Some(QUOTA_EXCEEDED));
    assert_eq!(rejection.generation, Some(1));

    let both = limits(json!({"cpu": "32", "replicas": 7}));
    let running = md("running", 1, 1, 6);
    let decision = decide(
        &both,
        &[entry(&running)],
        &[running, md("new", 2, 1, 3)],
        &none(),
    );
    assert_eq!(
        decision.rejected[0].reason,
        "cpu: needs 12, 4 over the quota of 32 (24 in use by other ModelDeployments); \
         replicas: needs 3, 2 over the quota of 7 (6 in use by other ModelDeployments)"
    );
}

#[test]
fn a_scale_up_that_does_not_fit_keeps_the_admitted_generation() {
    let hard = limits(json!({"replicas": 6}));
    let other = md("other", 1, 1, 2);
    let before = md("web", 2, 1, 2);
    let record = [entry(&other), entry(&before)];
    // spec.runtime.replicas (or the HPA through /scale) asks for 5: 2 + 5 > 6.
    let scaled = md("web", 2, 2, 5);
    let decision = decide(&hard, &record, &[other.clone(), scaled], &none());
    assert_eq!(
        admitted(&decision),
        [("other".into(), 1), ("web".into(), 1)]
    );
    assert_eq!(refused(&decision), ["web"]);
    assert!(
        decision.rejected[0]
            .reason
            .starts_with("replicas: needs 5, 1 over the quota of 6")
    );
    // Asking for 4 fits exactly.
    let fits = md("web", 2, 3, 4);
    let decision = decide(&hard, &record, &[other, fits], &none());
    assert_eq!(
        admitted(&decision),
        [("other".into(), 1), ("web".into(), 3)]
    );
    assert!(decision.rejected.is_empty());
}

#[test]
fn raising_the_quota_or_releasing_a_deployment_admits_the_waiting_one() {
    let first = md("first", 1, 1, 4);
    let waiting = md("waiting", 2, 1, 4);
    let record = [entry(&first)];
    let candidates = [first.clone(), waiting.clone()];
    let tight = limits(json!({"replicas": 6}));
    assert_eq!(
        refused(&decide(&tight, &record, &candidates, &none())),
        ["waiting"]
    );
    // Raised quota, same record and candidates.
    let raised = limits(json!({"replicas": 8}));
    let decision = decide(&raised, &record, &candidates, &none());
    assert_eq!(
        admitted(&decision),
        [("first".into(), 1), ("waiting".into(), 1)]
    );
    // Or: `first` is deleted and confirmed gone.
    let departed = BTreeSet::from(["first".to_owned()]);
    let decision = decide(&tight, &record, &[waiting], &departed);
    assert_eq!(admitted(&decision), [("waiting".into(), 1)]);
}

#[test]
fn the_record_never_shrinks_on_an_incomplete_or_older_view() {
    let hard = limits(json!({"replicas": 4}));
    let seen_elsewhere = md("fresh", 1, 3, 4);
    let record = [entry(&seen_elsewhere)];
    // This reconcile's cache has not seen `fresh` yet (another operator admitted it): its
    // entry stays, so `mine` cannot take its room.
    let decision = decide(&hard, &record, &[md("mine", 2, 1, 1)], &none());
    assert_eq!(admitted(&decision), [("fresh".into(), 3)]);
    assert_eq!(refused(&decision), ["mine"]);
    // This reconcile sees an older generation of `fresh`: the newer entry stays.
    let stale = md("fresh", 1, 2, 1);
    let decision = decide(&hard, &record, &[stale], &none());
    assert_eq!(admitted(&decision), [("fresh".into(), 3)]);
    assert!(decision.rejected.is_empty());
}

#[test]
fn lowering_the_quota_takes_nothing_back_but_blocks_growth() {
    let a = md("a", 1, 1, 4);
    let b = md("b", 2, 1, 4);
    let record = [entry(&a), entry(&b)];
    let lowered = limits(json!({"replicas": 6}));
    let decision = decide(&lowered, &record, &[a.clone(), b.clone()], &none());
    assert_eq!(admitted(&decision), [("a".into(), 1), ("b".into(), 1)]);
    assert_eq!(
        over_limit(&lowered, &decision.used),
        ["replicas: 8 in use, quota 6"]
    );
    // A change that does not grow (a new model version) is recorded; a new one is not.
    let upgraded = md("a", 1, 2, 4);
    let decision = decide(&lowered, &record, &[upgraded, b, md("c", 3, 1, 1)], &none());
    assert_eq!(admitted(&decision), [("a".into(), 2), ("b".into(), 1)]);
    assert_eq!(refused(&decision), ["c"]);
}

#[test]
fn deployments_running_before_the_quota_are_recorded_as_they_are() {
    let hard = limits(json!({"replicas": 4}));
    let mut old = md("old", 1, 1, 6);
    old.grandfathered = true;
    let decision = decide(&hard, &[], &[md("new", 0, 1, 1), old], &none());
    assert_eq!(admitted(&decision), [("old".into(), 1)]);
    assert_eq!(refused(&decision), ["new"]);
    assert_eq!(
        over_limit(&hard, &decision.used),
        ["replicas: 6 in use, quota 4"]
    );
}

#[test]
fn ineligible_deployments_are_refused_with_their_cause_and_keep_their_entry() {
    let hard = limits(json!({"cpu": "8"}));
    let admitted_before = md("moved", 1, 1, 1);
    let mut moved = md("moved", 1, 2, 1);
    moved.demand = Err(Ineligible::TenantNotAllowed("another tenant".into()));
    let mut unset = md("unset", 2, 1, 1);
    unset.demand = Err(Ineligible::Footprint(FootprintError::Unrequested(
        Resource::Cpu,
    )));
    let decision = decide(&hard, &[entry(&admitted_before)], &[moved, unset], &none());
    assert_eq!(admitted(&decision), [("moved".into(), 1)]);
    let causes: Vec<_> = decision
        .rejected
        .iter()
        .map(|r| r.cause.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(causes, [TENANT_NOT_ALLOWED, RESOURCES_UNSET]);
}

#[test]
fn record_entries_survive_the_round_trip_through_the_status() {
    let candidate = md("a", 1, 7, 3);
    let written = entry(&candidate).write();
    assert_eq!(
        serde_json::to_value(&written).expect("json"),
        json!({"name": "ns/a", "uid": "a", "generation": 7, "replicas": 3, "gpu": 0,
               "cpu": "12", "memory": "24Gi"})
    );
    assert_eq!(Entry::read(&written), Some(entry(&candidate)));
}
