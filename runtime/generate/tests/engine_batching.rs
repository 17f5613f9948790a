//! Continuous batching gives every request the tokens it gets alone, whatever joins,
//! leaves or is prefilled in chunks beside it.

mod engine_support;

use std::time::Duration;

use engine_support::{
    EOS, Harness, POISON, Setup, collect, collect_tokens, eventually, finish, greedy,
    long_running_prompt, prompt, reference, take_tokens, text_of,
};
use modelplane_generate::engine::{EngineError, EngineSettings, FinishReason, StreamEvent, Usage};
use modelplane_generate::sampling::SamplingParams;

fn settings(prefill_chunk: u32, mix_padding_tokens: u32) -> EngineSettings {
    EngineSettings {
        prefill_chunk,
        mix_padding_tokens,
        ..EngineSettings::default()
    }
}

/// Settings whose iteration budget is one chunk, so that even a lone prompt is chunked.
fn chunked(prefill_chunk: u32) -> EngineSettings {
    EngineSettings {
        prefill_chunk,
        max_batch_tokens: prefill_chunk,
        mix_padding_tokens: 0,
        ..EngineSettings::default()
    }
}

/// `(prompt, max_tokens)` of requests with different lengths.
fn workload() -> Vec<(Vec<u32>, u32)> {
    vec![
        (prompt(1, 1), 30),
        (prompt(2, 17), 12),
        (prompt(3, 40), 25),
        (prompt(4, 5), 40),
        (prompt(5, 23), 3),
        (prompt(6, 64), 20),
        (prompt(7, 2), 33),
    ]
}

#[tokio::test]
async fn batched_requests_joining_at_different_steps_match_running_alone() {
    let harness = Harness::start(Setup {
        slots: 3,
        settings: settings(8, 4),
        // Steps that take a little time, so that on a loaded machine the early requests are
        // still decoding when the later ones join (otherwise they may never share a step).
        delay: Duration::from_millis(2),
        ..Setup::default()
    })
    .await;
    let mut pending = Vec::new();
    for (i, (prompt, max_tokens)) in workload().into_iter().enumerate() {
        let mut stream = harness
            .engine
            .submit(greedy(prompt.clone(), max_tokens))
            .expect("admitted");
        // Let the earlier requests decode a little before the next one joins.
        let head = if i % 2 == 0 {
            take_tokens(&mut stream, 2).await
        } else {
            Default::default()
        };
        pending.push((prompt, max_tokens, tokio::spawn(finish(head, stream))));
    }
    for (prompt, max_tokens, outcome) in pending {
        let rest = outcome.await.expect("collector");
        let expected = reference(&prompt, max_tokens);
        assert_eq!(rest.tokens, expected, "prompt of {} tokens", prompt.len());
        let reason = if expected.last() == Some(&EOS) {
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        assert_eq!(
            rest.last,
            Some(StreamEvent::Finished {
                reason,
                usage: Usage {
                    prompt_tokens: prompt.len() as u32,
                    completion_tokens: expected.len() as u32,
                },
            })
        );
    }
    harness.assert_no_violations();
    let widest = harness.calls().iter().map(Vec::len).max().unwrap_or(0);
    assert!(widest > 1, "requests never shared a step");
}

#[tokio::test]
async fn one_slot_engine_matches_the_reference_loop() {
    let harness = Harness::start(Setup {
        slots: 1,
        ..Setup::default()
    })
    .await;
    for (prompt, max_tokens) in workload() {
        let stream = harness
            .engine
            .submit(greedy(prompt.clone(), max_tokens))
            .expect("admitted");
        assert_eq!(collect(stream).await.tokens, reference(&prompt, max_tokens));
    }
    harness.assert_no_violations();
}

#[tokio::test]
async fn chunked_prefill_gives_the_same_tokens_as_whole_prompts() {
    let mut outputs = Vec::new();
    for chunk in [3, 1000] {
        let harness = Harness::start(Setup {
            settings: chunked(chunk),
            ..Setup::default()
        })
        .await;
        let streams: Vec<_> = workload()
            .into_iter()
            .map(|(prompt, max_tokens)| {
                harness
                    .engine
                    .submit(greedy(prompt, max_tokens))
                    .expect("admitted")
            })
            .collect();
        let tokens = collect_tokens(streams).await;
        harness.assert_no_violations();
        let longest_row = harness.calls().iter().flatten().map(|row| row.2).max();
        assert_eq!(longest_row, Some(chunk.min(64)), "chunk {chunk}");
        outputs.push(tokens);
    }
    assert_eq!(outputs[0], outputs[1]);
    let expected: Vec<_> = workload().iter().map(|(p, m)| reference(p, *m)).collect();
    assert_eq!(outputs[0], expected);
}

#[tokio::test]
async fn a_long_prompt_delays_running_decodes_by_at_most_one_chunk() {
    let chunk = 8;
    let harness = Harness::start(Setup {
        slots: 2,
        context: 512,
        settings: settings(chunk, 0),
        ..Setup::default()
    })
    .await;
    let mut decoding = harness
        .engine
        .submit(greedy(long_running_prompt(3, 100), 100))
        .expect("admitted");
    take_tokens(&mut decoding, 2).await;
    let long = harness
        .engine
        .submit(greedy(prompt(2, 300), 5))
        .expect("admitted");
    let long = collect(long).await;
    assert_eq!(long.tokens, reference(&prompt(2, 300), 5));
    drop(decoding);
    harness.assert_no_violations();
    // Between two decode rows of the first request (slot 0), the long prompt
    // (slot 1) advances by at most one chunk.
    let mut prefilled_since_decode = 0;
    let mut decodes = 0;
    for call in harness.calls() {
        for (slot, start, len) in call {
            match slot {
                0 if start >= 3 => {
                    assert!(
                        prefilled_since_decode <= chunk,
                        "{prefilled_since_decode} prompt tokens between two decodes"
                    );
                    prefilled_since_decode = 0;
                    decodes += 1;
                }
                1 if start < 300 => prefilled_since_decode += len,
                _ => {}
            }
        }
    }
    assert!(
        decodes > 300 / chunk,
        "only {decodes} decodes while the prompt was read"
    );
}

#[tokio::test]
async fn prefill_chunks_do_not_pad_decode_rows_beyond_the_mixing_allowance() {
    let harness = Harness::start(Setup {
        slots: 4,
        settings: settings(16, 6),
        ..Setup::default()
    })
    .await;
    let mut streams = Vec::new();
    for seed in 0..3 {
        let mut stream = harness
            .engine
            .submit(greedy(long_running_prompt(2 + seed, 60), 60))
            .expect("admitted");
        take_tokens(&mut stream, 1).await;
        streams.push(stream);
    }
    let long = harness
        .engine
        .submit(greedy(prompt(9, 50), 3))
        .expect("admitted");
    collect(long).await;
    drop(streams);
    for call in harness.calls() {
        let decodes = call.iter().filter(|row| row.2 == 1).count() as u32;
        let longest = call.iter().map(|row| row.2).max().unwrap_or(1);
        if decodes > 0 && longest > 1 {
            assert!(
                decodes * (longest - 1) <= 6,
                "call {call:?} pads decode rows too much"
            );
        }
    }
}

#[tokio::test]
async fn a_packed_model_takes_prompt_chunks_into_the_decode_call() {
    // mix_padding_tokens 0 would keep every chunk out of the decode call of a padded
    // model; a model that declares packed_rows pays nothing for the padding, so the
    // engine runs one call per iteration, with the same tokens.
    let harness = Harness::start(Setup {
        slots: 3,
        settings: settings(16, 0),
        packed_rows: true,
        delay: Duration::from_millis(1),
        ..Setup::default()
    })
    .await;
    let running_prompt = long_running_prompt(3, 40);
    let mut running = harness
        .engine
        .submit(greedy(running_prompt.clone(), 40))
        .expect("admitted");
    let head = take_tokens(&mut running, 1).await;
    let joining = prompt(8, 50);
    let joined = collect(
        harness
            .engine
            .submit(greedy(joining.clone(), 3))
            .expect("admitted"),
    )
    .await;
    let rest = finish(head, running).await;
    assert_eq!(joined.tokens, reference(&joining, 3));
    assert_eq!(rest.tokens, reference(&running_prompt, 40));
    let mixed = harness
        .calls()
        .into_iter()
        .filter(|call| call.iter().any(|row| row.2 == 1) && call.iter().any(|row| row.2 > 1));
    assert!(
        mixed.count() > 0,
        "no call mixed a decode row with a prompt chunk"
    );
}

#[tokio::test]
async fn a_failed_step_fails_only_the_requests_in_that_call() {
    let harness = Harness::start(Setup {
        slots: 3,
        delay: Duration::from_millis(1),
        settings: settings(64, 0),
        ..Setup::default()
    })
    .await;
    let healthy_prompt = long_running_prompt(4, 30);
    let mut healthy = harness
        .engine
        .submit(greedy(healthy_prompt.clone(), 30))
        .expect("admitted");
    let head = take_tokens(&mut healthy, 2).await;
    let mut poisoned_prompt = prompt(2, 10);
    poisoned_prompt[5] = POISON;
    let poisoned = harness
        .engine
        .submit(greedy(poisoned_prompt, 10))
        .expect("admitted");
    let poisoned = collect(poisoned).await;
    assert!(poisoned.tokens.is_empty());
    assert!(
        matches!(
            poisoned.last,
            Some(StreamEvent::Failed(EngineError::Step(_)))
        ),
        "{:?}",
        poisoned.last
    );
    let healthy = finish(head, healthy).await;
    assert_eq!(healthy.tokens, reference(&healthy_prompt, 30));
    assert!(matches!(healthy.last, Some(StreamEvent::Finished { .. })));
    // The engine keeps serving, in the failed request's slot too.
    let after = harness
        .engine
        .submit(greedy(prompt(3, 6), 5))
        .expect("admitted");
    assert_eq!(collect(after).await.tokens, reference(&prompt(3, 6), 5));
    assert!(eventually(|| harness.engine.stats().slots_used == 0).await);
}

#[tokio::test]
async fn a_panicking_step_fails_its_requests_and_the_engine_keeps_serving() {
    let harness = Harness::start(Setup::default()).await;
    let mut poisoned_prompt = prompt(2, 5);
    poisoned_prompt[0] = POISON;
    let poisoned = collect(
        harness
            .engine
            .submit(greedy(poisoned_prompt, 4))
            .expect("admitted"),
    )
    .await;
    match poisoned.last {
        Some(StreamEvent::Failed(EngineError::Step(error))) => {
            assert!(error.0.contains("poisoned first token"), "{error}");
        }
        other => panic!("expected a step error, got {other:?}"),
    }
    let after = harness
        .engine
        .submit(greedy(prompt(3, 6), 5))
        .expect("admitted");
    assert_eq!(collect(after).await.tokens, reference(&prompt(3, 6), 5));
}

#[tokio::test]
async fn streamed_text_is_the_decoded_tokens_and_stops_before_a_stop_sequence() {
    let harness = Harness::start(Setup::default()).await;
    let p = long_running_prompt(4, 30);
    let plain = collect(
        harness
            .engine
            .submit(greedy(p.clone(), 30))
            .expect("admitted"),
    )
    .await;
    let full_text = text_of(&plain.tokens);
    assert_eq!(plain.text, full_text);
    assert_eq!(full_text.len(), 30);

    let stop = full_text[10..13].to_owned();
    let cut = full_text.find(&stop).expect("stop occurs");
    let mut request = greedy(p, 30);
    request.stop = vec![stop.clone()];
    let stopped = collect(harness.engine.submit(request).expect("admitted")).await;
    assert_eq!(stopped.text, full_text[..cut], "stop {stop:?}");
    assert!(
        matches!(
            stopped.last,
            Some(StreamEvent::Finished {
                reason: FinishReason::Stop,
                ..
            })
        ),
        "{:?}",
        stopped.last
    );
    assert_eq!(stopped.tokens, plain.tokens[..cut + stop.len()]);
}

#[tokio::test]
async fn an_eos_token_ends_with_stop_and_adds_no_text() {
    let harness = Harness::start(Setup::default()).await;
    let (p, expected) = (0..1000)
        .map(|seed| prompt(seed, 3))
        .map(|p| {
            let expected = reference(&p, 60);
            (p, expected)
        })
        .find(|(_, expected)| expected.last() == Some(&EOS))
        .expect("some prompt reaches eos");
    let outcome = collect(harness.engine.submit(greedy(p, 60)).expect("admitted")).await;
    assert_eq!(outcome.tokens, expected);
    assert_eq!(outcome.text, text_of(&expected[..expected.len() - 1]));
    assert!(!outcome.text.contains("</s>"));
    assert!(
        matches!(
            outcome.last,
            Some(StreamEvent::Finished {
                reason: FinishReason::Stop,
                ..
            })
        ),
        "{:?}",
        outcome.last
    );
}

#[tokio::test]
async fn seeded_sampling_gives_the_same_tokens_alone_and_batched() {
    let request = |seed| {
        let mut request = greedy(prompt(seed, 6), 40);
        request.sampling = SamplingParams {
            temperature: 0.8,
            top_p: 0.9,
            seed: Some(u64::from(seed)),
            ..SamplingParams::default()
        };
        request
    };
    let alone = Harness::start(Setup {
        slots: 1,
        ..Setup::default()
    })
    .await;
    let mut expected = Vec::new();
    for seed in 0..4 {
        let stream = alone.engine.submit(request(seed)).expect("admitted");
        expected.push(collect(stream).await.tokens);
    }
    let batched = Harness::start(Setup::default()).await;
    let streams: Vec<_> = (0..4)
        .map(|seed| batched.engine.submit(request(seed)).expect("admitted"))
        .collect();
    let tokens = collect_tokens(streams).await;
    assert_eq!(tokens, expected);
    let greedy_tokens: Vec<_> = (0..4).map(|seed| reference(&prompt(seed, 6), 40)).collect();
    assert_ne!(tokens, greedy_tokens, "sampling never left the greedy path");
    assert!(batched.calls().iter().any(|call| call.len() > 1));
}
