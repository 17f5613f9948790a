//! A model that hands back only what each row needs (the argmax, the top-k) gives the
//! same tokens, for the same seeds, as one that hands back every logit.

mod engine_support;

use engine_support::{Harness, Setup, collect, collect_tokens, prompt};
use modelplane_generate::engine::{EngineSettings, GenerateRequest, RowLogits, Selection};
use modelplane_generate::sampling::{Sampler, SamplingParams};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// Parameters of every kind: greedy, top-k with and without top-p (flat enough that
/// the order the candidates are drawn in matters), top-p alone, a repetition penalty.
fn parameter_sets() -> Vec<SamplingParams> {
    let seeded = |temperature, top_k, top_p, seed| SamplingParams {
        temperature,
        top_k,
        top_p,
        repetition_penalty: 1.0,
        seed: Some(seed),
    };
    vec![
        SamplingParams::default(),
        seeded(0.0, Some(40), 0.5, 1),
        seeded(1.2, Some(1), 1.0, 2),
        seeded(1.0, Some(2), 1.0, 3),
        seeded(0.7, Some(5), 1.0, 4),
        seeded(0.7, Some(50), 0.9, 5),
        seeded(1.5, Some(256), 0.95, 6),
        seeded(2.0, Some(64), 1.0, 10),
        seeded(2.0, Some(12), 1.0, 11),
        seeded(2.0, Some(30), 1.0, 12),
        seeded(0.05, Some(20), 0.3, 7),
        seeded(0.8, None, 0.9, 8),
        SamplingParams {
            repetition_penalty: 1.3,
            ..seeded(0.9, Some(10), 0.8, 9)
        },
    ]
}

/// A row of `len` logits: random, with runs of equal values, a few NaN, −∞ and ±0.
fn awkward_row(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| match rng.random_range(0..100) {
            0 => f32::NAN,
            1 => f32::NEG_INFINITY,
            2 => -0.0,
            3 => 0.0,
            // Few distinct values: ties at the k-th place are common.
            4..40 => f32::from(rng.random_range(0u8..12)) * 0.5,
            _ => rng.random::<f32>() * 8.0 - 4.0,
        })
        .collect()
}

#[test]
fn picking_from_a_selected_row_draws_what_the_full_row_draws() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for vocab in [3usize, 64, 1000, 49_152] {
        let rows: Vec<Vec<f32>> = (0..40).map(|_| awkward_row(&mut rng, vocab)).collect();
        let vocab_size = u32::try_from(vocab).expect("small");
        for params in parameter_sets() {
            let selection = Selection::for_params(&params, vocab_size);
            let mut full = Sampler::new(&params);
            let mut selected = Sampler::new(&params);
            // The same sampler draws every row in turn: the generators must stay in step.
            for (index, row) in rows.iter().enumerate() {
                let history = [index as u32 % vocab_size];
                let expected = full.sample(row, &history);
                let answer = selection.apply(row);
                assert_eq!(answer.check(selection, vocab_size), Ok(()));
                assert_eq!(
                    selected.pick(&answer, &history),
                    expected,
                    "{params:?} over {vocab} logits, row {index}"
                );
            }
        }
    }
}

#[test]
fn the_order_of_the_top_k_a_model_returns_does_not_matter() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let params = SamplingParams {
        temperature: 2.0,
        top_k: Some(30),
        // No nucleus: the draw walks the candidates in the order the sampler holds them.
        top_p: 1.0,
        repetition_penalty: 1.0,
        seed: Some(3),
    };
    let mut full = Sampler::new(&params);
    let mut shuffled = Sampler::new(&params);
    for _ in 0..200 {
        let row: Vec<f32> = (0..2_000).map(|_| rng.random::<f32>() * 6.0).collect();
        let RowLogits::TopK { ids, values } = Selection::TopK(30).apply(&row) else {
            panic!("a top-k answer");
        };
        let mut pairs: Vec<(u32, f32)> = ids.into_iter().zip(values).collect();
        pairs.reverse();
        pairs.rotate_left(rng.random_range(0..30));
        let (ids, values) = pairs.into_iter().unzip();
        let answer = RowLogits::TopK { ids, values };
        assert_eq!(shuffled.pick(&answer, &[]), full.sample(&row, &[]));
    }
}

fn request(seed: u32, params: SamplingParams) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt(seed, 3 + seed % 20),
        max_tokens: 24,
        sampling: params,
        stop: Vec::new(),
        deadline: None,
        fair: Default::default(),
    }
}

/// The tokens of every request of [`parameter_sets`] (twice each), run side by side.
async fn run_all(select: bool) -> (Vec<Vec<u32>>, Harness) {
    let harness = Harness::start(Setup {
        slots: 4,
        settings: EngineSettings {
            prefill_chunk: 4,
            max_batch_tokens: 12,
            ..EngineSettings::default()
        },
        select,
        ..Setup::default()
    })
    .await;
    let sets = parameter_sets();
    let streams: Vec<_> = sets
        .iter()
        .chain(&sets)
        .cloned()
        .enumerate()
        .map(|(i, params)| {
            let seed = u32::try_from(i).expect("small");
            harness
                .engine
                .submit(request(seed, params))
                .expect("admitted")
        })
        .collect();
    let tokens = collect_tokens(streams).await;
    harness.assert_no_violations();
    (tokens, harness)
}

#[tokio::test]
async fn an_engine_over_a_selecting_model_generates_what_it_does_over_full_logits() {
    let (full, _) = run_all(false).await;
    let (selected, harness) = run_all(true).await;
    assert_eq!(selected, full);
    // The toy model's logits tie often (ids alike modulo 7), so the top-k rows pass
    // ties at the k-th place; and every kind of selection was asked for.
    let asked: Vec<Selection> = harness.selections().into_iter().flatten().collect();
    for kind in [
        Selection::Nothing,
        Selection::Argmax,
        Selection::TopK(5),
        Selection::TopK(50),
        Selection::Full,
    ] {
        assert!(asked.contains(&kind), "{kind:?} never asked: {asked:?}");
    }
}

#[tokio::test]
async fn only_the_row_ending_a_prompt_asks_for_logits() {
    let harness = Harness::start(Setup {
        settings: EngineSettings {
            prefill_chunk: 4,
            max_batch_tokens: 4,
            mix_padding_tokens: 0,
            ..EngineSettings::default()
        },
        select: true,
        ..Setup::default()
    })
    .await;
    // A 13-token prompt fed in chunks of 4: three calls that do not reach its end
    // ask for nothing, the fourth for the argmax of a greedy request.
    let stream = harness
        .engine
        .submit(GenerateRequest {
            prompt: prompt(9, 13),
            max_tokens: 1,
            ..request(1, SamplingParams::default())
        })
        .expect("admitted");
    assert_eq!(collect(stream).await.tokens.len(), 1);
    let asked: Vec<Selection> = harness.selections().into_iter().flatten().collect();
    assert_eq!(
        asked,
        [
            Selection::Nothing,
            Selection::Nothing,
            Selection::Nothing,
            Selection::Argmax
        ]
    );
}
