use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderValue};
use modelplane_config::RuntimeConfig;

use super::*;

/// The split of model `m` (stable v1, candidate v2) with `extra` added to its canary.
fn split(weight: u32, extra: &str) -> Split {
    let yaml = format!(
        "models: [{{name: m, defaultVersion: v1, versions: [{{version: v1, source: {{path: /a}}}}, \
         {{version: v2, source: {{path: /b}}}}], canary: {{candidate: v2, weight: {weight}{extra}}}}}]"
    );
    let config = RuntimeConfig::from_yaml(&yaml).expect("valid canary");
    let canary = config.models[0].canary.as_ref().expect("canary");
    Split::new("m", canary, Arc::default())
}

fn headers(pairs: &[(&'static str, &str)]) -> Attributes {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).expect("value"));
    }
    Attributes::new(map)
}

/// How many of `n` requests without headers the split sends to the candidate.
fn candidates(split: &Split, n: usize) -> usize {
    let plain = Attributes::default();
    (0..n)
        .filter(|_| {
            let decision = split.decide(&plain, "anonymous");
            assert_eq!(decision.reason, RouteReason::Weight);
            decision.candidate
        })
        .count()
}

#[test]
fn ten_thousand_requests_at_five_percent_send_exactly_five_hundred_to_the_candidate() {
    let split = split(5, "");
    let sent = candidates(&split, 10_000);
    assert!((495..=505).contains(&sent), "{sent}");
    assert_eq!(sent, 500, "the weighted split is exact");
}

#[test]
fn every_window_of_consecutive_requests_gets_the_floor_or_ceiling_of_its_share() {
    for weight in 0..=100u32 {
        let picks: Vec<bool> = (0..400).map(|n| weighted(n, weight)).collect();
        for len in [1usize, 7, 20, 100, 333] {
            for start in 0..=(picks.len() - len) {
                let got = picks[start..start + len].iter().filter(|c| **c).count() as u64;
                let share = len as u64 * u64::from(weight);
                let (floor, ceil) = (share / 100, share.div_ceil(100));
                assert!(
                    (floor..=ceil).contains(&got),
                    "weight {weight}, window {start}..+{len}: {got} (want {floor}..={ceil})"
                );
            }
        }
    }
    // The case the canary analysis leans on: 5 of every 100, in any window.
    let split = split(5, "");
    let picks: Vec<bool> = (0..1_000).map(|_| candidates(&split, 1) == 1).collect();
    for window in picks.windows(100) {
        assert_eq!(window.iter().filter(|c| **c).count(), 5);
    }
}

#[test]
fn weight_zero_sends_none_and_weight_hundred_sends_all() {
    assert_eq!(candidates(&split(0, ""), 1_000), 0);
    assert_eq!(candidates(&split(100, ""), 1_000), 1_000);
    assert!(
        !weighted(u64::MAX, 0) && weighted(u64::MAX, 100),
        "no overflow"
    );
}

#[test]
fn a_weight_change_continues_the_counter() {
    let first = split(10, "");
    assert_eq!(candidates(&first, 150), 15);
    let raised = CanaryConfig {
        weight: 50,
        ..canary_of(&first)
    };
    let next = Split::new("m", &raised, Arc::clone(first.counter()));
    assert_eq!(next.counter().load(Ordering::Relaxed), 150, "carried over");
    // Requests 150..350 at 50 %: exactly 100, though the counter did not restart.
    assert_eq!(candidates(&next, 200), 100);
}

fn canary_of(split: &Split) -> CanaryConfig {
    CanaryConfig {
        candidate: split.candidate().to_owned(),
        weight: split.weight,
        rules: Vec::new(),
        sticky_by: None,
    }
}

#[test]
fn header_and_tenant_rules_win_whatever_the_weight_and_take_no_counter_tick() {
    let rules = ", match: [{headers: {X-Canary: 'true', x-region: eu}}, {tenants: [beta, qa]}]";
    for weight in [0, 5, 100] {
        let split = split(weight, rules);
        let matched = [
            (
                headers(&[("x-canary", "true"), ("x-region", "eu")]),
                "anonymous",
            ),
            (headers(&[]), "beta"),
            (headers(&[("x-canary", "false")]), "qa"),
        ];
        for (attributes, tenant) in &matched {
            for _ in 0..50 {
                let decision = split.decide(attributes, tenant);
                assert_eq!(
                    decision,
                    Decision {
                        candidate: true,
                        reason: RouteReason::Match
                    },
                    "weight {weight}, tenant {tenant}"
                );
            }
        }
        assert_eq!(split.counter().load(Ordering::Relaxed), 0, "no tick");
        // Near misses: one header of two, a value in another case, another tenant.
        let missed = [
            (headers(&[("x-canary", "true")]), "anonymous"),
            (
                headers(&[("x-canary", "TRUE"), ("x-region", "eu")]),
                "anonymous",
            ),
            (headers(&[]), "beta-testers"),
        ];
        for (attributes, tenant) in &missed {
            assert_eq!(split.decide(attributes, tenant).reason, RouteReason::Weight);
        }
    }
}

#[test]
fn a_rule_with_headers_and_tenants_needs_both() {
    let split = split(
        0,
        ", match: [{headers: {x-canary: 'true'}, tenants: [beta]}]",
    );
    let canary = headers(&[("x-canary", "true")]);
    assert!(split.decide(&canary, "beta").candidate);
    assert!(!split.decide(&canary, "gamma").candidate);
    assert!(!split.decide(&headers(&[]), "beta").candidate);
}

#[test]
fn a_sticky_value_keeps_its_version_and_about_weight_percent_of_values_go_to_the_candidate() {
    let split = split(5, ", stickyBy: X-User-Id");
    let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let mut to_candidate = 0;
    for user in &users {
        let attributes = headers(&[("x-user-id", user)]);
        let first = split.decide(&attributes, "anonymous");
        assert_eq!(first.reason, RouteReason::Sticky);
        for _ in 0..3 {
            assert_eq!(split.decide(&attributes, "anonymous"), first, "{user}");
        }
        to_candidate += usize::from(first.candidate);
    }
    assert!(
        (400..=600).contains(&to_candidate),
        "{to_candidate} of 10000"
    );
    assert_eq!(split.counter().load(Ordering::Relaxed), 0, "no tick");
    // An empty value is no value: the weight decides.
    let empty = headers(&[("x-user-id", "")]);
    assert_eq!(
        split.decide(&empty, "anonymous").reason,
        RouteReason::Weight
    );
}

#[test]
fn raising_the_weight_never_moves_a_sticky_value_back_to_stable() {
    let users: Vec<String> = (0..2_000).map(|i| format!("u{i}")).collect();
    let mut before: HashSet<&str> = HashSet::new();
    for weight in 0..=100 {
        let split = split(weight, ", stickyBy: x-user-id");
        let now: HashSet<&str> = users
            .iter()
            .filter(|user| {
                split
                    .decide(&headers(&[("x-user-id", user)]), "anonymous")
                    .candidate
            })
            .map(String::as_str)
            .collect();
        assert!(before.is_subset(&now), "weight {weight} moved a user back");
        before = now;
    }
    assert_eq!(
        before.len(),
        users.len(),
        "at 100 % every user is on the candidate"
    );
}

#[test]
fn the_sticky_hash_is_fixed() {
    // Pinned: pods of two builds must agree on every user's version. Changing the hash
    // reshuffles users between stable and candidate mid-rollout.
    let split = split(5, ", stickyBy: x-user-id");
    assert_eq!(split.sticky_bucket(b"alice"), ALICE_BUCKET);
    assert_eq!(split.sticky_bucket(b""), EMPTY_BUCKET);
    let other = Split::new("other-model", &canary_of(&split), Arc::default());
    assert_ne!(
        other.sticky_bucket(b"alice"),
        ALICE_BUCKET,
        "another model draws its own users"
    );
}

const ALICE_BUCKET: u64 = 7329;
const EMPTY_BUCKET: u64 = 6529;
