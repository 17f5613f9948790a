//! Concurrent reconciles and two operators (a leader change) cannot over-admit: every
//! record the API server accepts stays within `hard`, whatever the interleaving and however
//! stale each operator's caches are.

use modelplane_api::{model_deployment::ModelDeployment, tenant_quota::TenantQuota};
use serde_json::json;

use super::tests::{FakeApi, model_deployment, quota, reconcile_view};

/// Replicas admitted by a record.
fn admitted_replicas(status: &modelplane_api::TenantQuotaStatus) -> i32 {
    status.admissions.iter().map(|a| a.replicas).sum()
}

/// Every record the server accepted stays within `hard`, and none drops an admission of a
/// ModelDeployment that still exists (an MD controller may already run what it admitted):
/// so what runs never exceeds `hard` either.
fn assert_never_over(api: &FakeApi, hard: i32) {
    let state = api.state();
    for (index, status) in state.accepted.iter().enumerate() {
        assert!(
            admitted_replicas(status) <= hard,
            "accepted record {index} admits {} replicas over {hard}: {:?}",
            admitted_replicas(status),
            status.admitted
        );
    }
    for (index, pair) in state.accepted.windows(2).enumerate() {
        for admission in &pair[0].admissions {
            let exists = state
                .model_deployments
                .values()
                .any(|uid| *uid == admission.uid);
            let kept = pair[1].admissions.iter().any(|a| a.uid == admission.uid);
            assert!(
                kept || !exists,
                "accepted record {} dropped the admission of {}, which still exists",
                index + 1,
                admission.name
            );
        }
    }
}

#[tokio::test]
async fn two_operators_deciding_from_the_same_record_admit_only_one() {
    // Each fits alone, not together; each operator has seen only one of them.
    let (x, y) = (model_deployment("x", 1, 2), model_deployment("y", 2, 2));
    let api = FakeApi::new(&[quota(json!({"replicas": 3}))], &[x.clone(), y.clone()]);
    let seen = api.quota("team-a");
    tokio::join!(
        reconcile_view(&api, &seen, std::slice::from_ref(&x)),
        reconcile_view(&api, &seen, std::slice::from_ref(&y)),
    );
    assert_eq!(api.state().conflicts, 1, "the second write was refused");
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(status.admissions.len(), 1);

    // The loser decides again from the fresh record, still without seeing the winner.
    let winner = status.admitted[0].clone();
    let (loser, theirs) = if winner == "team-a/x" {
        (&y, "team-a/y")
    } else {
        (&x, "team-a/x")
    };
    reconcile_view(&api, &api.quota("team-a"), std::slice::from_ref(loser)).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(status.admitted, [winner]);
    assert_eq!(
        status
            .rejected
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        [theirs]
    );
    assert_never_over(&api, 3);
}

/// A small deterministic generator (no dependency, reproducible runs).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One operator's view: what its caches hold.
struct View {
    quota: TenantQuota,
    seen: Vec<ModelDeployment>,
}

#[tokio::test]
async fn interleaved_reconciles_with_stale_caches_never_over_admit() {
    const HARD: i32 = 5;
    let all: Vec<ModelDeployment> = (0..10u32)
        .map(|i| model_deployment(&format!("md-{i}"), i, 1 + (i % 3) as i32))
        .collect();
    for seed in 1..=20u64 {
        let mut random = Lcg(seed);
        let api = FakeApi::new(&[quota(json!({"replicas": HARD}))], &all);
        let start = api.quota("team-a");
        let mut views: Vec<View> = (0..3)
            .map(|_| View {
                quota: start.clone(),
                seen: Vec::new(),
            })
            .collect();
        for _round in 0..40 {
            // Each view learns of some ModelDeployments and, sometimes, the current record.
            for view in &mut views {
                for md in &all {
                    let known = view.seen.iter().any(|s| s.metadata.uid == md.metadata.uid);
                    if !known && random.chance(30) {
                        view.seen.push(md.clone());
                    }
                }
                if random.chance(50) {
                    view.quota = api.quota("team-a");
                }
            }
            let [a, b, c] = &views[..] else {
                unreachable!("three views")
            };
            tokio::join!(
                reconcile_view(&api, &a.quota, &a.seen),
                reconcile_view(&api, &b.quota, &b.seen),
                reconcile_view(&api, &c.quota, &c.seen),
            );
            assert_never_over(&api, HARD);
        }
        // Every view caught up: the record settles within the quota, each deployment either
        // admitted or refused.
        for _ in 0..3 {
            reconcile_view(&api, &api.quota("team-a"), &all).await;
        }
        let status = api.quota("team-a").status.expect("status");
        assert!(admitted_replicas(&status) <= HARD, "seed {seed}");
        assert_eq!(
            status.admitted.len() + status.rejected.len(),
            all.len(),
            "seed {seed}: every deployment decided"
        );
        assert_never_over(&api, HARD);
    }
}

#[tokio::test]
async fn with_complete_caches_the_outcome_is_the_oldest_first_one() {
    let all: Vec<ModelDeployment> = (0..6u32)
        .rev()
        .map(|i| model_deployment(&format!("md-{i}"), i, 2))
        .collect();
    let api = FakeApi::new(&[quota(json!({"replicas": 6}))], &all);
    let seen = api.quota("team-a");
    tokio::join!(
        reconcile_view(&api, &seen, &all),
        reconcile_view(&api, &seen, &all),
    );
    reconcile_view(&api, &api.quota("team-a"), &all).await;
    let status = api.quota("team-a").status.expect("status");
    assert_eq!(
        status.admitted,
        ["team-a/md-0", "team-a/md-1", "team-a/md-2"]
    );
    assert_eq!(status.rejected.len(), 3);
    assert_never_over(&api, 6);
}
