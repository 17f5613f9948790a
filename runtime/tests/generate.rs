//! Generative serving through the runtime's loading path (tiny-llama, random weights):
//! greedy tokens equal the Python reference loop, continuous batching runs requests
//! side by side and gives the same tokens as running alone.

mod common;
mod generate_support;

use std::time::Duration;

use common::*;
use generate_support::*;

/// Prompts of different lengths (token ids) and how many tokens each generates.
fn workload() -> Vec<(Vec<u32>, u32)> {
    (0..8u32)
        .map(|i| {
            let prompt = (0..5 + 9 * i)
                .map(|t| (t * 37 + i * 101) % 49_000 + 3)
                .collect();
            (prompt, 12 + 6 * i)
        })
        .collect()
}

#[tokio::test]
async fn greedy_tokens_equal_the_python_reference_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start_inline(&tiny_config(dir.path(), &tiny_llama(), "")).await;
    let requests = workload();
    let expected = python_reference(&tiny_llama(), &requests);
    for ((prompt, max_tokens), want) in requests.iter().zip(&expected) {
        let got = generate_ids(&running, "tiny", prompt, *max_tokens).await;
        assert_eq!(&got, want, "prompt of {} tokens", prompt.len());
    }
    running.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_batch_continuously_with_the_same_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generation = "generation: {slots: 8, context: 256}";
    let running = start_inline(&tiny_config(dir.path(), &tiny_llama(), generation)).await;
    let requests = workload();
    let mut alone = Vec::new();
    for (prompt, max_tokens) in &requests {
        alone.push(generate_ids(&running, "tiny", prompt, *max_tokens).await);
    }

    // All at once: they must hold slots side by side (share steps) and give the very
    // tokens each gave alone. How much faster that is is a benchmark's question
    // (`scripts/bench.sh`, docs/benchmarks.md), not a timed test's.
    let version = serving(&running, "tiny");
    let engine = version.engine().expect("generate model");
    let together = futures::future::join_all(
        requests
            .iter()
            .map(|(prompt, max_tokens)| generate_ids(&running, "tiny", prompt, *max_tokens)),
    );
    let watch = async {
        let mut most = 0;
        for _ in 0..5_000 {
            most = most.max(engine.stats().running);
            if most == requests.len() as u32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        most
    };
    let (together, most_running) = tokio::join!(together, watch);
    assert_eq!(together, alone, "batched tokens differ from alone");
    assert!(
        most_running >= 2,
        "the concurrent requests never ran side by side (at most {most_running} at once)"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_dropped_stream_frees_its_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generation = "generation: {slots: 1, context: 512}";
    let running = start_inline(&tiny_config(dir.path(), &tiny_llama(), generation)).await;
    let version = serving(&running, "tiny");
    let engine = version.engine().expect("generate model");
    let mut stream = engine
        .submit(greedy_request(vec![5, 6, 7], 400))
        .expect("admitted");
    stream.next().await.expect("a first event");
    assert_eq!(engine.stats().slots_used, 1);
    drop(stream);
    wait_until(Duration::from_secs(10), || async {
        engine.stats().slots_used == 0
    })
    .await
    .expect("the slot is freed");
    let again = generate_ids(&running, "tiny", &[5, 6, 7], 3).await;
    assert_eq!(again.len(), 3);
    running.shutdown().await;
}
