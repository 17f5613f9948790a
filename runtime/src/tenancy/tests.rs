use super::*;

fn tenant(yaml: &str) -> TenantConfig {
    let config = modelplane_config::RuntimeConfig::from_yaml(&format!("tenants: [{yaml}]"))
        .expect("tenant config");
    config.tenants.into_iter().next().expect("one tenant")
}

fn tenancy(tenants: &[&str]) -> Tenancy {
    let tenants: Vec<TenantConfig> = tenants.iter().map(|t| tenant(t)).collect();
    Tenancy::new(&tenants, &FairnessConfig::default(), "anonymous")
}

fn retry_after(result: Result<TenantPermit, InferError>) -> Duration {
    match result {
        Err(InferError::RateLimited { retry_after, .. }) => retry_after,
        Err(other) => panic!("expected a 429, got {other}"),
        Ok(_) => panic!("expected a 429, got admitted"),
    }
}

#[test]
fn requests_beyond_the_burst_get_429_with_the_time_to_the_next_token() {
    let tenancy = tenancy(&["{name: a, requests: {perSecond: 4, burst: 8}}"]);
    let t0 = Instant::now();
    let permits: Vec<_> = (0..8)
        .map(|_| tenancy.admit_as("a", "a", None, t0).expect("within burst"))
        .collect();
    assert_eq!(
        retry_after(tenancy.admit_as("a", "a", None, t0)),
        Duration::from_millis(250)
    );
    drop(permits);
    tenancy
        .admit_as("a", "a", None, t0 + Duration::from_millis(250))
        .expect("one token refilled");
}

#[test]
fn max_concurrent_caps_requests_in_flight_and_a_finished_one_frees_its_place() {
    let tenancy = tenancy(&["{name: a, requests: {maxConcurrent: 2}}"]);
    let now = Instant::now();
    let first = tenancy.admit_as("a", "a", None, now).expect("1");
    let _second = tenancy.admit_as("a", "a", None, now).expect("2");
    let err = tenancy
        .admit_as("a", "a", None, now)
        .err()
        .expect("third refused");
    assert!(err.to_string().contains("maxConcurrent 2"), "{err}");
    drop(first);
    let _third = tenancy
        .admit_as("a", "a", None, now)
        .expect("a place is free");
    assert_eq!(tenancy.get("a").expect("a").in_flight(), 2);
}

#[test]
fn tokens_are_reserved_up_front_and_the_unused_rest_goes_back() {
    let tenancy = tenancy(&["{name: a, requests: {tokensPerMinute: 600}}"]);
    let now = Instant::now();
    let mut permit = tenancy.admit_as("a", "a", None, now).expect("admitted");
    permit.reserve(500, now).expect("500 of 600");
    let mut other = tenancy.admit_as("a", "a", None, now).expect("admitted");
    let err = other.reserve(200, now).expect_err("only 100 left");
    match &err {
        InferError::RateLimited {
            retry_after,
            message,
        } => {
            // 100 missing at 10 tokens/s.
            assert_eq!(*retry_after, Duration::from_secs(10));
            assert!(message.contains("600 tokens/min"), "{message}");
        }
        other => panic!("{other}"),
    }
    permit.spent(120);
    drop(permit);
    other.reserve(200, now).expect("380 came back");
}

#[test]
fn a_cancelled_generation_gives_back_what_it_did_not_spend() {
    let tenancy = tenancy(&["{name: a, requests: {tokensPerMinute: 60}}"]);
    let now = Instant::now();
    let mut permit = tenancy.admit_as("a", "a", None, now).expect("admitted");
    permit.reserve(60, now).expect("all of it");
    permit.spent(10);
    drop(permit);
    let mut next = tenancy.admit_as("a", "a", None, now).expect("admitted");
    next.reserve(50, now).expect("50 came back");
}

#[test]
fn unconfigured_tenants_are_unlimited_and_share_one_metric_label() {
    let tenancy = tenancy(&["{name: a, requests: {perSecond: 1}}"]);
    let now = Instant::now();
    for _ in 0..100 {
        tenancy
            .admit_as("zzz", "zzz", None, now)
            .expect("no budget");
        assert_eq!(&*tenancy.label("zzz"), OTHER_TENANT_LABEL);
    }
    assert_eq!(&*tenancy.label("a"), "a");
    assert_eq!(&*tenancy.label("anonymous"), "anonymous");
}

#[test]
fn priority_is_the_weight_and_a_gateway_band_overrides_the_tenant_band() {
    let tenancy = tenancy(&["{name: a, priority: 10, band: 2}"]);
    let now = Instant::now();
    let permit = tenancy.admit_as("a", "a", None, now).expect("admitted");
    assert_eq!(permit.fairness().flow, Flow::new(2, "a", 10));
    let permit = tenancy
        .admit_as("a", "gw-user-7", Some(-1), now)
        .expect("admitted");
    assert_eq!(permit.fairness().flow, Flow::new(-1, "gw-user-7", 10));
    assert_eq!(permit.fairness().output_weight, 2);
}

#[test]
fn a_config_change_keeps_what_the_buckets_hold() {
    let tenancy = tenancy(&["{name: a, requests: {perSecond: 1, burst: 2}}"]);
    let now = Instant::now();
    drop(tenancy.admit_as("a", "a", None, now).expect("1"));
    drop(tenancy.admit_as("a", "a", None, now).expect("2"));
    let raised = [tenant("{name: a, requests: {perSecond: 100, burst: 200}}")];
    tenancy.update(&raised, &FairnessConfig::default(), "anonymous", now);
    // The bucket was empty and stays so: raising the rate does not hand out a burst.
    let wait = retry_after(tenancy.admit_as("a", "a", None, now));
    assert_eq!(wait, Duration::from_millis(10));
    tenancy.update(&[], &FairnessConfig::default(), "anonymous", now);
    tenancy
        .admit_as("a", "a", None, now)
        .expect("removed: unlimited");
}
