//! Decision tables of the Canary: plan, verdicts, status and Events, without any I/O.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use modelplane_verify::{Failure, FailureReason, Mode};
use serde_json::{Value, json};

use super::*;
use crate::{
    controller::model_deployment::conclude,
    verification::{Checked, Pins, Signed},
};

const IMAGE: &str = "r.example/runtime:1";

fn canary(candidate: Value) -> CanarySpec {
    serde_json::from_value(json!({
        "targetRef": {"name": "resnet18"},
        "candidate": candidate,
        "steps": [{"weight": 10}],
    }))
    .expect("canary spec")
}

fn model_candidate() -> CanarySpec {
    canary(json!({"model": {"source": {"oci": "r.example/m:v2"}}}))
}

fn target() -> ModelDeploymentSpec {
    serde_json::from_value(json!({
        "model": {"name": "m", "task": "classify", "source": {"oci": "r.example/m:v1"}},
        "verification": {"mode": "Enforce", "keys": [{"secretRef": {"name": "cosign-pub"}}]},
    }))
    .expect("target spec")
}

fn digest(digit: char) -> String {
    format!("sha256:{}", digit.to_string().repeat(64))
}

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("time"))
}

fn verification(status: ConditionStatus, reason: &str) -> Verification {
    Verification {
        status,
        reason: reason.into(),
        message: format!("{reason} message"),
    }
}

fn admitted(inputs: &str, status: ConditionStatus, reason: &str) -> Finding {
    Finding::Admitted {
        record: CandidateRevision {
            inputs: inputs.into(),
            image: Some(format!("{IMAGE}@{}", digest('e'))),
            image_digest: Some(digest('e')),
            model_digest: Some(digest('b')),
            ..CandidateRevision::default()
        },
        verified: verification(status, reason),
    }
}

fn refused(inputs: &str, reason: &str, retry: bool) -> Finding {
    Finding::Refused {
        record: CandidateRevision {
            inputs: inputs.into(),
            ..CandidateRevision::default()
        },
        verified: verification(ConditionStatus::False, reason),
        retry,
    }
}

fn status_of(finding: &Finding) -> CanaryStatus {
    next_status(&CanaryStatus::default(), finding, None, Some(1), &at(0))
}

fn inputs_of(spec: &CanarySpec) -> String {
    let spec = candidate_spec(&target(), &spec.candidate).expect("applies");
    inputs_hash(&spec, IMAGE)
}

fn condition(status: &CanaryStatus, type_: &str) -> (ConditionStatus, String) {
    let c = find_condition(&status.conditions, type_).expect("condition");
    (c.status, c.reason.clone())
}

#[test]
fn plan_reports_without_checking_what_needs_no_registry() {
    let mut aborted = model_candidate();
    aborted.abort = true;
    let none = CanaryStatus::default();
    assert_eq!(
        plan(&aborted, Some(&target()), &none, IMAGE),
        Plan::Report(Finding::Aborted)
    );
    assert_eq!(
        plan(&model_candidate(), None, &none, IMAGE),
        Plan::Report(Finding::TargetNotFound {
            target: "resnet18".into()
        })
    );
    let mut pipeline = target();
    pipeline.model = None;
    assert_eq!(
        plan(&model_candidate(), Some(&pipeline), &none, IMAGE),
        Plan::Report(Finding::NotApplicable(NotApplicable::PipelineTarget))
    );
}

#[test]
fn a_new_candidate_is_verified_and_an_admitted_one_is_not_checked_again() {
    let spec = model_candidate();
    let inputs = inputs_of(&spec);
    let fresh = plan(&spec, Some(&target()), &CanaryStatus::default(), IMAGE);
    assert!(
        matches!(&fresh, Plan::Verify { inputs: i, refused: None, spec } if *i == inputs
            && spec.model.as_ref().and_then(|m| m.source.oci.as_deref()) == Some("r.example/m:v2")),
        "{fresh:?}"
    );
    let settled = admitted(&inputs, ConditionStatus::True, "Verified");
    let status = status_of(&settled);
    assert_eq!(
        plan(&spec, Some(&target()), &status, IMAGE),
        Plan::Report(settled)
    );
}

#[test]
fn a_changed_candidate_is_verified_again() {
    let status = status_of(&admitted(
        &inputs_of(&model_candidate()),
        ConditionStatus::True,
        "Verified",
    ));
    let changed = canary(json!({"model": {"source": {"oci": "r.example/m:v3"}}}));
    let next = plan(&changed, Some(&target()), &status, IMAGE);
    assert!(
        matches!(next, Plan::Verify { refused: None, .. }),
        "{next:?}"
    );
}

#[test]
fn a_change_of_the_targets_policy_or_image_verifies_the_candidate_again() {
    let spec = model_candidate();
    let status = status_of(&admitted(
        &inputs_of(&spec),
        ConditionStatus::True,
        "Verified",
    ));
    let mut audit = target();
    audit.verification = serde_json::from_value(
        json!({"mode": "Audit", "keys": [{"secretRef": {"name": "cosign-pub"}}]}),
    )
    .expect("verification");
    let mut image = target();
    image.runtime.image = Some("r.example/runtime:2".into());
    let mut scaled = target();
    scaled.runtime.replicas = 7;
    for (changed, verify) in [(audit, true), (image, true), (scaled, false)] {
        let next = plan(&spec, Some(&changed), &status, IMAGE);
        assert_eq!(
            matches!(next, Plan::Verify { .. }),
            verify,
            "{:?}: {next:?}",
            changed.runtime
        );
    }
}

#[test]
fn a_refused_candidate_is_rechecked_as_a_refusal_without_a_verifying_phase() {
    let spec = model_candidate();
    let inputs = inputs_of(&spec);
    for (finding, retry) in [
        (refused(&inputs, "NoSignature", false), false),
        (refused(&inputs, "RegistryUnreachable", true), true),
    ] {
        let status = status_of(&finding);
        let next = plan(&spec, Some(&target()), &status, IMAGE);
        let Plan::Verify {
            refused: Some(Finding::Refused { retry: r, .. }),
            ..
        } = next
        else {
            panic!("expected a re-check of the refusal, got {next:?}");
        };
        assert_eq!(r, retry);
    }
}

#[test]
fn a_target_that_went_away_and_came_back_is_verified_again() {
    let spec = model_candidate();
    let admitted = status_of(&admitted(
        &inputs_of(&spec),
        ConditionStatus::True,
        "Verified",
    ));
    let gone = Finding::TargetNotFound {
        target: "resnet18".into(),
    };
    let missing = next_status(&admitted, &gone, None, Some(1), &at(60));
    assert_eq!(missing.candidate, None);
    let next = plan(&spec, Some(&target()), &missing, IMAGE);
    assert!(
        matches!(next, Plan::Verify { refused: None, .. }),
        "{next:?}"
    );
}

#[test]
fn a_check_interrupted_while_verifying_is_run_again_from_the_start() {
    let spec = model_candidate();
    let status = status_of(&Finding::Verifying {
        inputs: inputs_of(&spec),
    });
    let next = plan(&spec, Some(&target()), &status, IMAGE);
    assert!(
        matches!(next, Plan::Verify { refused: None, .. }),
        "{next:?}"
    );
}

#[test]
fn phases_and_conditions_follow_the_finding() {
    use CanaryPhase::*;
    use ConditionStatus::{False, True, Unknown};
    let cases = [
        (
            Finding::TargetNotFound { target: "t".into() },
            Pending,
            Some((Unknown, TARGET_NOT_FOUND)),
            (False, TARGET_NOT_FOUND),
        ),
        (
            Finding::NotApplicable(NotApplicable::PipelineTarget),
            Failed,
            Some((Unknown, CANDIDATE_NOT_APPLICABLE)),
            (False, CANDIDATE_NOT_APPLICABLE),
        ),
        (Finding::Aborted, RolledBack, None, (False, ABORTED)),
        (
            Finding::Verifying { inputs: "i".into() },
            Verifying,
            Some((Unknown, VERIFYING)),
            (True, VERIFYING),
        ),
        (
            admitted("i", True, "Verified"),
            Pending,
            Some((True, "Verified")),
            (True, ADMITTED),
        ),
        (
            admitted("i", False, "NoSignature"),
            Pending,
            Some((False, "NoSignature")),
            (True, ADMITTED),
        ),
        (
            admitted("i", Unknown, "VerificationDisabled"),
            Pending,
            Some((Unknown, "VerificationDisabled")),
            (True, ADMITTED),
        ),
        (
            refused("i", "RegistryUnreachable", true),
            Verifying,
            Some((False, "RegistryUnreachable")),
            (True, VERIFYING),
        ),
        (
            refused("i", "WrongKey", false),
            Failed,
            Some((False, "WrongKey")),
            (False, VERIFICATION_FAILED),
        ),
    ];
    for (finding, phase, verified, progressing) in cases {
        let status = status_of(&finding);
        assert_eq!(status.phase, phase, "{finding:?}");
        assert_eq!(status.weight, 0, "{finding:?}: no traffic is ever shifted");
        let got = find_condition(&status.conditions, condition_types::VERIFIED)
            .map(|c| (c.status, c.reason.as_str()));
        assert_eq!(got, verified, "{finding:?}");
        let (status, reason) = condition(&status, condition_types::PROGRESSING);
        assert_eq!((status, reason.as_str()), progressing, "{finding:?}");
    }
}

#[test]
fn admitted_status_pins_the_candidate_before_any_traffic() {
    let status = status_of(&admitted("i", ConditionStatus::True, "Verified"));
    let record = status.candidate.as_ref().expect("candidate");
    assert_eq!(record.image_digest, Some(digest('e')));
    assert_eq!(record.model_digest, Some(digest('b')));
    assert_eq!(status.weight, 0);
    let progressing =
        find_condition(&status.conditions, condition_types::PROGRESSING).expect("progressing");
    assert!(
        progressing.message.contains(&digest('b')),
        "{}",
        progressing.message
    );
}

/// The rollout's advance as the reconcile computes it for an admitted candidate.
fn stepping(weight: i32) -> Advance {
    Advance {
        status: CanaryStatus {
            phase: CanaryPhase::Progressing,
            weight,
            step_started_at: Some(at(0)),
            ..CanaryStatus::default()
        },
        progressing: Some(Progressing {
            status: ConditionStatus::True,
            reason: progress::STEPPING,
            message: format!("step 1 of 2: {weight}% of requests go to the candidate"),
        }),
        analysis: Some((
            ConditionStatus::True,
            "Passed".into(),
            "errorRate Pass".into(),
        )),
        requeue: std::time::Duration::from_secs(60),
    }
}

#[test]
fn an_admitted_candidate_takes_the_rollouts_traffic_and_conditions() {
    let finding = admitted("i", ConditionStatus::True, "Verified");
    let status = next_status(
        &CanaryStatus::default(),
        &finding,
        Some(&stepping(10)),
        Some(1),
        &at(0),
    );
    assert_eq!(
        (status.phase, status.weight),
        (CanaryPhase::Progressing, 10)
    );
    assert_eq!(
        condition(&status, condition_types::PROGRESSING),
        (ConditionStatus::True, progress::STEPPING.into())
    );
    assert_eq!(
        condition(&status, condition_types::ANALYSIS_PASSING),
        (ConditionStatus::True, "Passed".into())
    );
    assert_eq!(
        condition(&status, condition_types::VERIFIED).0,
        ConditionStatus::True
    );
}

#[test]
fn a_candidate_that_fails_verification_never_gets_traffic() {
    let running = next_status(
        &CanaryStatus::default(),
        &admitted("i", ConditionStatus::True, "Verified"),
        Some(&stepping(50)),
        Some(1),
        &at(0),
    );
    assert_eq!(running.weight, 50);
    // The candidate changed and its new signature does not verify: even with an advance
    // at hand (there is none for a refused candidate), the weight drops to 0.
    for finding in [
        refused("j", "WrongKey", false),
        refused("j", "RegistryUnreachable", true),
        Finding::Verifying { inputs: "j".into() },
        Finding::Aborted,
        Finding::TargetNotFound { target: "t".into() },
    ] {
        let status = next_status(&running, &finding, Some(&stepping(50)), Some(2), &at(60));
        assert_eq!(status.weight, 0, "{finding:?}");
        assert!(!progress::gets_traffic(&status), "{finding:?}");
    }
}

#[test]
fn a_settled_status_is_computed_again_unchanged() {
    for finding in [
        admitted("i", ConditionStatus::True, "Verified"),
        refused("i", "NoSignature", false),
        Finding::TargetNotFound { target: "t".into() },
        Finding::Aborted,
    ] {
        let first = status_of(&finding);
        let again = next_status(&first, &finding, None, Some(1), &at(60));
        assert_eq!(again, first, "{finding:?}");
        assert!(events(&first, &again).is_empty(), "{finding:?}");
    }
}

#[test]
fn abort_keeps_the_verification_verdict() {
    let verified = status_of(&admitted("i", ConditionStatus::True, "Verified"));
    let aborted = next_status(&verified, &Finding::Aborted, None, Some(2), &at(60));
    assert_eq!(aborted.phase, CanaryPhase::RolledBack);
    assert_eq!(
        condition(&aborted, condition_types::VERIFIED),
        (ConditionStatus::True, "Verified".into())
    );
    assert_eq!(aborted.candidate, verified.candidate);
}

fn reasons(before: &CanaryStatus, after: &Finding) -> Vec<(String, String)> {
    let after = next_status(before, after, None, Some(1), &at(60));
    events(before, &after)
        .into_iter()
        .map(|e| (format!("{:?}", e.type_), e.reason))
        .collect()
}

#[test]
fn each_decision_publishes_one_event_per_change() {
    let verifying = status_of(&Finding::Verifying { inputs: "i".into() });
    let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|(t, r)| ((*t).to_owned(), (*r).to_owned()))
            .collect()
    };
    let cases = [
        (
            admitted("i", ConditionStatus::True, "Verified"),
            pairs(&[("Normal", "Verified"), ("Normal", ADMITTED)]),
        ),
        (
            admitted("i", ConditionStatus::False, "NoSignature"),
            pairs(&[("Warning", "NoSignature"), ("Normal", ADMITTED)]),
        ),
        (
            refused("i", "WrongKey", false),
            pairs(&[("Warning", "WrongKey")]),
        ),
        (
            refused("i", "RegistryUnreachable", true),
            pairs(&[("Warning", "RegistryUnreachable")]),
        ),
        (
            admitted("i", ConditionStatus::Unknown, "VerificationDisabled"),
            pairs(&[("Normal", ADMITTED)]),
        ),
    ];
    for (finding, expected) in cases {
        assert_eq!(reasons(&verifying, &finding), expected, "{finding:?}");
    }
    let missing = reasons(
        &CanaryStatus::default(),
        &Finding::TargetNotFound { target: "t".into() },
    );
    assert_eq!(missing, pairs(&[("Warning", TARGET_NOT_FOUND)]));
}

#[test]
fn a_newly_verified_candidate_is_announced_even_if_the_verdict_is_the_same() {
    let first = status_of(&admitted("one", ConditionStatus::True, "Verified"));
    let second = reasons(&first, &admitted("two", ConditionStatus::True, "Verified"));
    assert_eq!(second, [("Normal".to_owned(), "Verified".to_owned())]);
}

fn checked(result: Result<Signed, Failure>, pinned: bool) -> Checked {
    Checked {
        result,
        pins: pinned.then(|| Pins {
            image: format!("{IMAGE}@{}", digest('e')),
            image_digest: digest('e'),
            model_oci: Some(format!("r.example/m:v2@{}", digest('b'))),
            model_digest: Some(digest('b')),
        }),
    }
}

#[test]
fn the_gate_outcome_admits_or_refuses_as_the_mode_says() {
    let spec = candidate_spec(&target(), &model_candidate().candidate).expect("applies");
    let signed = Ok(Signed {
        signer: Some("cosign-pub/cosign.pub".into()),
        from_cache: false,
    });
    let unsigned = || Err(Failure::new(FailureReason::NoSignature, "no signature"));
    let down = Err(Failure::new(FailureReason::RegistryUnreachable, "refused"));
    let cases = [
        (Mode::Enforce, checked(signed, true), "admitted", "Verified"),
        (
            Mode::Enforce,
            checked(unsigned(), false),
            "refused",
            "NoSignature",
        ),
        (
            Mode::Audit,
            checked(unsigned(), true),
            "admitted",
            "NoSignature",
        ),
        (
            Mode::Audit,
            checked(down, false),
            "retry",
            "RegistryUnreachable",
        ),
    ];
    for (mode, checked, verdict, reason) in cases {
        let outcome = conclude(mode, "i", &spec, checked, at(5));
        let finding = finding_of(outcome, "i", vec!["sha256:k".into()]);
        let (got, got_reason, record) = match &finding {
            Finding::Admitted { verified, record } => ("admitted", &verified.reason, record),
            Finding::Refused {
                verified,
                retry: true,
                record,
            } => ("retry", &verified.reason, record),
            Finding::Refused {
                verified, record, ..
            } => ("refused", &verified.reason, record),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!((got, got_reason.as_str()), (verdict, reason), "{mode:?}");
        assert_eq!(record.keys, ["sha256:k"]);
        let pinned_model = record.model_source.as_ref().and_then(|s| s.oci.clone());
        match got {
            "admitted" => {
                assert_eq!(
                    pinned_model,
                    Some(format!("r.example/m:v2@{}", digest('b')))
                );
                let verified = reason == "Verified";
                assert_eq!(record.verified_at.is_some(), verified, "{mode:?}");
            }
            _ => assert_eq!(record.image, None, "{mode:?}: nothing pinned"),
        }
    }
}

#[test]
fn every_step_gets_an_event_of_its_own() {
    let step = |index: i32, weight: i32, started: i64| CanaryStatus {
        phase: CanaryPhase::Progressing,
        step: index,
        weight,
        step_started_at: Some(at(started)),
        ..CanaryStatus::default()
    };
    let first = events(&CanaryStatus::default(), &step(0, 10, 0));
    let second = events(&step(0, 10, 0), &step(1, 50, 60));
    let started = |events: &[kube::runtime::events::Event]| {
        events
            .iter()
            .find(|e| e.reason == "StepStarted")
            .map(|e| (e.action.clone(), e.note.clone()))
            .expect("StepStarted")
    };
    let (first, second) = (started(&first), started(&second));
    assert_eq!(first.1.as_deref(), Some("step 1: weight 10%"));
    assert_eq!(second.1.as_deref(), Some("step 2: weight 50%"));
    // Distinct actions: the recorder would fold the second into the first's series.
    assert_ne!(first.0, second.0);
}
