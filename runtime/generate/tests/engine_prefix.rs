//! Prefix caching through the engine over the toy model, whose output depends on every
//! token its slot holds: a reused or copied prefix that were not exactly the prompt's would
//! change the tokens.

mod engine_support;

use engine_support::{
    Harness, Setup, collect_tokens, greedy, long_running_prompt, prompt, reference,
};
use modelplane_generate::engine::EngineSettings;

/// A shared system prompt of 40 tokens, then a different question per request.
fn chat(question: u32) -> Vec<u32> {
    let mut tokens = prompt(7, 40);
    tokens.extend(prompt(100 + question, 6));
    tokens
}

fn setup(prefix_caching: bool, slots: u32) -> Setup {
    Setup {
        slots,
        settings: EngineSettings {
            prefix_caching,
            ..EngineSettings::default()
        },
        ..Setup::default()
    }
}

/// The value of a counter series in `text` (0 when absent).
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Runs `prompts` one after another (each after the previous ended); returns the tokens.
async fn one_by_one(harness: &Harness, prompts: &[Vec<u32>], max_tokens: u32) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for p in prompts {
        let stream = harness
            .engine
            .submit(greedy(p.clone(), max_tokens))
            .expect("admitted");
        out.extend(collect_tokens(vec![stream]).await);
    }
    out
}

#[tokio::test]
async fn a_shared_prefix_is_reused_and_the_output_is_that_of_a_full_prefill() {
    let prompts: Vec<Vec<u32>> = (0..6).map(chat).collect();
    let expected: Vec<Vec<u32>> = prompts.iter().map(|p| reference(p, 12)).collect();
    for caching in [false, true] {
        let harness = Harness::start(setup(caching, 2)).await;
        let out = one_by_one(&harness, &prompts, 12).await;
        assert_eq!(out, expected, "prefix caching {caching}");
        harness.assert_no_violations();
        let text = harness.metrics_text();
        let queries = counter(&text, "modelplane_generate_prefix_cache_queries_total");
        let hits = counter(&text, "modelplane_generate_prefix_cache_hits_total");
        assert_eq!(queries, 6 * 46, "{text}");
        if caching {
            // Every request after the first finds the 40-token system prompt.
            assert!(hits >= 5 * 40, "hits {hits}");
            // Those prefills start past the prefix.
            let starts: Vec<u32> = harness
                .calls()
                .iter()
                .flatten()
                .filter(|(_, _, len)| *len > 1)
                .map(|(_, start, _)| *start)
                .collect();
            assert_eq!(starts[0], 0);
            assert!(starts[1..].iter().all(|start| *start >= 40), "{starts:?}");
        } else {
            assert_eq!(hits, 0);
        }
    }
}

/// A long request sharing `chat`'s 40-token prefix runs; `chat(1)` arrives while it does
/// (slow steps), so no free slot holds the prefix and the running one does. Returns the
/// harness after both ended with their reference tokens.
async fn join_a_running_prefix(copies: bool) -> Harness {
    let first = {
        let mut tokens = prompt(7, 40);
        tokens.extend(long_running_prompt(6, 40));
        tokens
    };
    let second = chat(1);
    let harness = Harness::start(Setup {
        copies,
        delay: std::time::Duration::from_millis(5),
        ..setup(true, 2)
    })
    .await;
    let running = harness
        .engine
        .submit(greedy(first.clone(), 40))
        .expect("admitted");
    // Let the first prefill happen.
    assert!(engine_support::eventually(|| !harness.calls().is_empty()).await);
    let joined = harness
        .engine
        .submit(greedy(second.clone(), 12))
        .expect("admitted");
    let out = collect_tokens(vec![running, joined]).await;
    assert_eq!(out, vec![reference(&first, 40), reference(&second, 12)]);
    harness.assert_no_violations();
    harness
}

#[tokio::test]
async fn a_prefix_held_by_a_running_request_is_copied_into_a_new_slot() {
    let copies = join_a_running_prefix(true).await.copies();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].2, 40, "the shared prefix, not more: {copies:?}");
}

#[tokio::test]
async fn a_model_that_cannot_copy_prefills_instead() {
    assert!(join_a_running_prefix(false).await.copies().is_empty());
}

#[tokio::test]
async fn the_least_recently_freed_prefix_is_evicted_first() {
    // Two slots: prefixes A and B fill them; C evicts A (the older); B is still found.
    let with_prefix = |seed: u32, question: u32| {
        let mut tokens = prompt(seed, 40);
        tokens.extend(prompt(200 + question, 4));
        tokens
    };
    let (a, b, c) = (with_prefix(1, 0), with_prefix(2, 0), with_prefix(3, 0));
    let harness = Harness::start(setup(true, 2)).await;
    one_by_one(&harness, &[a, b, c], 4).await;
    let before = counter(
        &harness.metrics_text(),
        "modelplane_generate_prefix_cache_hits_total",
    );
    let out = one_by_one(&harness, &[with_prefix(2, 1)], 4).await;
    assert_eq!(out, vec![reference(&with_prefix(2, 1), 4)]);
    let after = counter(
        &harness.metrics_text(),
        "modelplane_generate_prefix_cache_hits_total",
    );
    assert!(
        after - before >= 40,
        "B's prefix survived: {before} -> {after}"
    );
    let before = after;
    let out = one_by_one(&harness, &[with_prefix(1, 1)], 4).await;
    assert_eq!(out, vec![reference(&with_prefix(1, 1), 4)]);
    let after = counter(
        &harness.metrics_text(),
        "modelplane_generate_prefix_cache_hits_total",
    );
    assert_eq!(after, before, "A's prefix was evicted");
    harness.assert_no_violations();
}
