//! Admission, cancellation, deadlines, accounting and shutdown of the engine.

mod engine_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use engine_support::{
    BYTES_PER_TOKEN, EOS, Harness, Setup, collect, eventually, finish, greedy, long_running_prompt,
    prompt, reference, take_tokens, text_of,
};
use modelplane_generate::engine::{AdmissionError, EngineError, EngineSettings, StreamEvent};
use modelplane_generate::sampling::SamplingParams;

fn slow(slots: u32, max_waiting: u32) -> Setup {
    Setup {
        slots,
        delay: Duration::from_millis(2),
        settings: EngineSettings {
            max_waiting,
            ..EngineSettings::default()
        },
        ..Setup::default()
    }
}

#[tokio::test]
async fn requests_that_can_never_run_are_refused() {
    let harness = Harness::start(Setup {
        context: 32,
        ..Setup::default()
    })
    .await;
    let engine = &harness.engine;
    assert_eq!(
        engine.submit(greedy(Vec::new(), 4)).err(),
        Some(AdmissionError::EmptyPrompt)
    );
    assert_eq!(
        engine.submit(greedy(prompt(1, 30), 3)).err(),
        Some(AdmissionError::TooLong {
            prompt: 30,
            max_tokens: 3,
            context: 32
        })
    );
    let zero = engine.submit(greedy(prompt(1, 3), 0)).err();
    assert!(
        matches!(zero, Some(AdmissionError::Invalid(ref e)) if e.param == "max_tokens"),
        "{zero:?}"
    );
    let mut bad = greedy(prompt(1, 3), 4);
    bad.sampling = SamplingParams {
        temperature: -1.0,
        ..SamplingParams::default()
    };
    let invalid = engine.submit(bad).err();
    assert!(
        matches!(invalid, Some(AdmissionError::Invalid(_))),
        "{invalid:?}"
    );
    // Exactly at the context is fine.
    let fits = engine.submit(greedy(prompt(1, 29), 3)).expect("fits");
    assert_eq!(collect(fits).await.tokens, reference(&prompt(1, 29), 3));
}

#[tokio::test]
async fn a_full_queue_refuses_with_queue_full() {
    let harness = Harness::start(slow(1, 1)).await;
    let mut running = harness
        .engine
        .submit(greedy(long_running_prompt(3, 200), 200))
        .expect("admitted");
    take_tokens(&mut running, 1).await;
    let waiting = harness
        .engine
        .submit(greedy(prompt(2, 3), 2))
        .expect("queued");
    let refused = harness.engine.submit(greedy(prompt(3, 3), 2)).err();
    assert!(
        matches!(refused, Some(AdmissionError::QueueFull(_))),
        "{refused:?}"
    );
    let stats = harness.engine.stats();
    assert_eq!((stats.running, stats.waiting), (1, 1));
    drop(running);
    assert_eq!(collect(waiting).await.tokens, reference(&prompt(2, 3), 2));
}

#[tokio::test]
async fn a_burst_may_fill_the_free_slots_and_then_max_waiting() {
    // The engine thread is inside a (slow) step while the burst arrives, so none of
    // it has been admitted yet: only requests beyond the 3 free slots wait.
    let harness = Harness::start(Setup {
        slots: 4,
        delay: Duration::from_millis(50),
        settings: EngineSettings {
            max_waiting: 1,
            ..EngineSettings::default()
        },
        ..Setup::default()
    })
    .await;
    let mut running = harness
        .engine
        .submit(greedy(long_running_prompt(3, 100), 100))
        .expect("admitted");
    take_tokens(&mut running, 1).await;
    let burst: Vec<_> = (0..4)
        .map(|i| harness.engine.submit(greedy(prompt(10 + i, 3), 2)))
        .collect();
    let refused = harness.engine.submit(greedy(prompt(20, 3), 2)).err();
    assert!(
        matches!(refused, Some(AdmissionError::QueueFull(_))),
        "{refused:?}"
    );
    for (i, stream) in (0..).zip(burst) {
        let stream = stream.expect("a free slot or the one waiting place");
        assert_eq!(
            collect(stream).await.tokens,
            reference(&prompt(10 + i, 3), 2)
        );
    }
}

#[tokio::test]
async fn a_dropped_stream_frees_its_slot_within_one_step_for_the_next_request() {
    let harness = Harness::start(slow(1, 4)).await;
    let first_prompt = long_running_prompt(3, 200);
    let mut first = harness
        .engine
        .submit(greedy(first_prompt.clone(), 200))
        .expect("admitted");
    let head = take_tokens(&mut first, 3).await;
    assert_eq!(head.tokens, reference(&first_prompt, 3));
    let next = harness
        .engine
        .submit(greedy(prompt(2, 4), 5))
        .expect("queued");
    let calls_at_drop = harness.calls().len();
    drop(first);
    let next = collect(next).await;
    assert_eq!(next.tokens, reference(&prompt(2, 4), 5));
    // After the drop, at most the step already under way still feeds the
    // cancelled request; the next step is the new request's prefill in that slot.
    let calls = harness.calls();
    let before_reuse = calls[calls_at_drop..]
        .iter()
        .position(|call| call.iter().any(|&(slot, start, _)| slot == 0 && start == 0))
        .expect("the next request ran");
    assert!(
        before_reuse <= 1,
        "{before_reuse} more steps fed the cancelled request"
    );
    harness.assert_no_violations();
    assert!(eventually(|| harness.engine.stats().slots_used == 0).await);
    let text = harness.metrics_text();
    assert!(
        text.contains(
            r#"modelplane_generate_requests_total{model="toy",version="1",outcome="cancelled"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_passed_deadline_fails_running_and_waiting_requests() {
    let harness = Harness::start(slow(1, 4)).await;
    let deadline = Some(Instant::now() + Duration::from_millis(60));
    let mut running = greedy(long_running_prompt(3, 200), 200);
    running.deadline = deadline;
    let mut waiting = greedy(prompt(2, 3), 3);
    waiting.deadline = deadline;
    let running = harness.engine.submit(running).expect("admitted");
    let waiting = harness.engine.submit(waiting).expect("queued");
    let running = collect(running).await;
    assert!(running.tokens.len() < 200);
    assert_eq!(
        running.last,
        Some(StreamEvent::Failed(EngineError::DeadlineExceeded))
    );
    let waiting = collect(waiting).await;
    assert!(waiting.tokens.is_empty());
    assert_eq!(
        waiting.last,
        Some(StreamEvent::Failed(EngineError::DeadlineExceeded))
    );
    assert!(eventually(|| harness.engine.stats().slots_used == 0).await);
    let after = harness
        .engine
        .submit(greedy(prompt(4, 3), 3))
        .expect("admitted");
    assert_eq!(collect(after).await.tokens, reference(&prompt(4, 3), 3));
}

#[tokio::test]
async fn stats_and_metrics_account_slots_kv_bytes_and_tokens() {
    let context = 256;
    let harness = Harness::start(Setup {
        slots: 3,
        context,
        delay: Duration::from_millis(1),
        ..Setup::default()
    })
    .await;
    let idle = harness.engine.stats();
    let slot_bytes = u64::from(context) * BYTES_PER_TOKEN;
    assert_eq!((idle.slots_total, idle.slots_used), (3, 0));
    assert_eq!(idle.kv_cache_bytes_total, 3 * slot_bytes);
    assert_eq!(idle.kv_cache_bytes_used, 0);

    let mut a = harness
        .engine
        .submit(greedy(long_running_prompt(5, 200), 200))
        .expect("a");
    let mut b = harness
        .engine
        .submit(greedy(long_running_prompt(6, 200), 200))
        .expect("b");
    let a_head = take_tokens(&mut a, 1).await;
    let b_head = take_tokens(&mut b, 1).await;
    let busy = harness.engine.stats();
    assert_eq!((busy.running, busy.slots_used, busy.waiting), (2, 2, 0));
    assert_eq!(busy.kv_cache_bytes_used, 2 * slot_bytes);
    let text = harness.metrics_text();
    assert!(
        text.contains(r#"modelplane_generate_kv_cache_slots_used{model="toy",version="1"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"modelplane_generate_kv_cache_used_bytes{{model="toy",version="1"}} {}"#,
            2 * slot_bytes
        )),
        "{text}"
    );
    let a = finish(a_head, a).await;
    let b = finish(b_head, b).await;
    assert!(eventually(|| harness.engine.stats().running == 0).await);

    let text = harness.metrics_text();
    let output = a.tokens.len() + b.tokens.len();
    for expected in [
        r#"modelplane_generate_tokens_total{model="toy",version="1",gen_ai_token_type="input"} 11"#
            .to_owned(),
        format!(
            r#"modelplane_generate_tokens_total{{model="toy",version="1",gen_ai_token_type="output"}} {output}"#
        ),
        r#"modelplane_generate_requests_total{model="toy",version="1",outcome="length"} 2"#
            .to_owned(),
        r#"gen_ai_server_time_to_first_token_seconds_count{model="toy",version="1"} 2"#.to_owned(),
        r#"gen_ai_server_time_per_output_token_seconds_count{model="toy",version="1"} 2"#
            .to_owned(),
        r#"gen_ai_server_request_duration_seconds_count{model="toy",version="1"} 2"#.to_owned(),
        r#"modelplane_generate_running_requests{model="toy",version="1"} 0"#.to_owned(),
        r#"modelplane_generate_kv_cache_slots_used{model="toy",version="1"} 0"#.to_owned(),
    ] {
        assert!(text.contains(&expected), "missing {expected} in\n{text}");
    }
}

#[tokio::test]
async fn dropping_every_handle_drains_the_queue_then_stops_the_thread() {
    let harness = Harness::start(slow(1, 4)).await;
    let first_prompt = long_running_prompt(3, 20);
    let first = harness
        .engine
        .submit(greedy(first_prompt.clone(), 20))
        .expect("admitted");
    let second = harness
        .engine
        .submit(greedy(prompt(2, 3), 4))
        .expect("queued");
    let Harness {
        engine,
        dropped,
        registry,
        ..
    } = harness;
    drop(engine);
    assert_eq!(collect(first).await.tokens, reference(&first_prompt, 20));
    assert_eq!(collect(second).await.tokens, reference(&prompt(2, 3), 4));
    assert!(
        eventually(|| dropped.load(Ordering::SeqCst)).await,
        "the model was never dropped"
    );
    // A stopped engine takes its share of the gauges back (a hot swap's new engine
    // of the same version keeps reporting its own).
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    for gauge in [
        "kv_cache_slots_total",
        "kv_cache_total_bytes",
        "running_requests",
    ] {
        let expected = format!(r#"modelplane_generate_{gauge}{{model="toy",version="1"}} 0"#);
        assert!(text.contains(&expected), "missing {expected} in\n{text}");
    }
}

#[tokio::test]
async fn a_model_that_fails_to_load_fails_start() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = modelplane_generate::metrics::GenerationFamilies::register(&mut registry)
        .for_version("toy", "1");
    let started = modelplane_generate::engine::Engine::start(
        "broken".to_owned(),
        Box::new(|| Err("no model.pt".to_owned())),
        engine_support::codec(),
        vec![engine_support::EOS],
        EngineSettings::default(),
        metrics,
    )
    .await;
    assert_eq!(started.err(), Some("no model.pt".to_owned()));
}

#[tokio::test]
async fn a_normal_finish_with_nothing_to_read_is_an_empty_output() {
    let harness = Harness::start(Setup::default()).await;
    let eos_first = (0..10_000)
        .map(|seed| prompt(seed, 4))
        .find(|p| reference(p, 4) == [EOS])
        .expect("a prompt the model ends at once");
    let visible = long_running_prompt(4, 3);
    // A stop sequence that is the first token's text: the client reads nothing.
    let first = reference(&visible, 1);
    let stopped_at_once = {
        let mut request = greedy(visible.clone(), 3);
        request.stop = vec![text_of(&first)];
        request
    };
    for request in [greedy(eos_first, 4), stopped_at_once, greedy(visible, 3)] {
        let stream = harness.engine.submit(request).expect("admitted");
        let outcome = collect(stream).await;
        assert!(
            matches!(outcome.last, Some(StreamEvent::Finished { .. })),
            "{outcome:?}"
        );
    }
    let text = harness.metrics_text();
    for expected in [
        r#"modelplane_generate_empty_outputs_total{model="toy",version="1"} 2"#,
        r#"modelplane_generate_requests_total{model="toy",version="1",outcome="stop"} 2"#,
        r#"modelplane_generate_requests_total{model="toy",version="1",outcome="length"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}
