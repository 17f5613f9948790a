//! The sampler's behaviour as a distribution: what it may pick and how often,
//! with fixed seeds and bounds several standard deviations wide.

use modelplane_generate::sampling::{Sampler, SamplingParams};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const DRAWS: usize = 20_000;

fn seeded(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        seed: Some(seed),
        ..SamplingParams::default()
    }
}

/// Relative frequency of each id over `draws` draws.
fn frequencies(params: &SamplingParams, logits: &[f32], draws: usize) -> Vec<f64> {
    let mut sampler = Sampler::new(params);
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..draws {
        counts[sampler.sample(logits, &[]) as usize] += 1;
    }
    counts
        .iter()
        .map(|&count| count as f64 / draws as f64)
        .collect()
}

fn softmax(logits: &[f32], temperature: f32) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&logit| f64::from((logit - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|weight| weight / total).collect()
}

/// Each frequency over `draws` draws within five standard deviations (at most
/// 0.5/√draws) of its probability.
fn assert_close(observed: &[f64], expected: &[f64], draws: usize) {
    let tolerance = 2.5 / (draws as f64).sqrt();
    for (id, (o, e)) in observed.iter().zip(expected).enumerate() {
        assert!(
            (o - e).abs() < tolerance,
            "id {id}: observed {o:.4}, expected {e:.4}"
        );
    }
}

fn random_logits(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-10.0..10.0)).collect()
}

#[test]
fn draws_follow_softmax_of_logits_over_temperature() {
    let logits = [1.0, 2.0, 0.0, 3.0, -1.0];
    for temperature in [0.5, 1.0, 1.7] {
        let params = SamplingParams {
            temperature,
            ..seeded(1)
        };
        let observed = frequencies(&params, &logits, DRAWS);
        assert_close(&observed, &softmax(&logits, temperature), DRAWS);
    }
}

#[test]
fn top_k_never_picks_outside_the_k_best_and_renormalises() {
    let logits = random_logits(2, 49_152);
    let mut ranked: Vec<u32> = (0..logits.len() as u32).collect();
    ranked.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let best: Vec<u32> = ranked[..5].to_vec();
    let params = SamplingParams {
        top_k: Some(5),
        temperature: 2.0,
        ..seeded(3)
    };
    // Fewer draws: each one scans the whole vocabulary (slow in debug builds).
    let draws = 3_000;
    let observed = frequencies(&params, &logits, draws);
    let outside: f64 = (0..logits.len() as u32)
        .filter(|id| !best.contains(id))
        .map(|id| observed[id as usize])
        .sum();
    assert_eq!(outside, 0.0);
    let best_logits: Vec<f32> = best.iter().map(|&id| logits[id as usize]).collect();
    let best_observed: Vec<f64> = best.iter().map(|&id| observed[id as usize]).collect();
    assert_close(&best_observed, &softmax(&best_logits, 2.0), draws);
}

#[test]
fn top_p_keeps_the_smallest_nucleus_reaching_p() {
    let probabilities: [f32; 4] = [0.5, 0.3, 0.15, 0.05];
    let logits: Vec<f32> = probabilities.iter().map(|p| p.ln()).collect();
    let params = SamplingParams {
        top_p: 0.7,
        ..seeded(4)
    };
    // 0.5 < 0.7 ≤ 0.5 + 0.3: the two most likely tokens, renormalised.
    let observed = frequencies(&params, &logits, DRAWS);
    assert_close(&observed, &[0.625, 0.375, 0.0, 0.0], DRAWS);
    let params = SamplingParams {
        top_p: 0.9,
        ..seeded(5)
    };
    let observed = frequencies(&params, &logits, DRAWS);
    assert_close(
        &observed,
        &[0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0],
        DRAWS,
    );
}

#[test]
fn top_p_over_a_full_vocabulary_keeps_only_the_nucleus() {
    // Twenty likely tokens among 49 152 near-impossible ones.
    let mut logits = vec![-20.0f32; 49_152];
    for id in (0..20).map(|i| i * 2_000 + 7) {
        logits[id] = 5.0;
    }
    let params = SamplingParams {
        top_p: 0.95,
        temperature: 1.0,
        ..seeded(6)
    };
    let mut sampler = Sampler::new(&params);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let id = sampler.sample(&logits, &[]);
        assert_eq!(logits[id as usize], 5.0, "picked {id} outside the nucleus");
        seen.insert(id);
    }
    assert!(
        seen.len() >= 15,
        "only {} of 20 nucleus tokens drawn",
        seen.len()
    );
}

#[test]
fn repetition_penalty_lowers_the_share_of_seen_tokens() {
    let logits = [1.0, 1.0, -1.0, -1.0];
    let params = SamplingParams {
        repetition_penalty: 2.0,
        ..seeded(7)
    };
    let mut sampler = Sampler::new(&params);
    let history = [0, 2, 0];
    let mut counts = [0usize; 4];
    for _ in 0..DRAWS {
        counts[sampler.sample(&logits, &history) as usize] += 1;
    }
    let observed: Vec<f64> = counts.iter().map(|&c| c as f64 / DRAWS as f64).collect();
    // Token 0: 1.0 / 2 = 0.5; token 2: -1.0 · 2 = -2.0.
    assert_close(&observed, &softmax(&[0.5, 1.0, -2.0, -1.0], 1.0), DRAWS);
}

#[test]
fn same_seed_gives_the_same_tokens_and_another_seed_does_not() {
    let logits = random_logits(8, 1_000)
        .iter()
        .map(|l| l / 10.0)
        .collect::<Vec<_>>();
    let run = |seed| {
        let params = SamplingParams {
            top_k: Some(500),
            top_p: 0.95,
            ..seeded(seed)
        };
        let mut sampler = Sampler::new(&params);
        (0..100)
            .map(|_| sampler.sample(&logits, &[]))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn greedy_ignores_the_seed_and_takes_the_first_maximum() {
    let logits = [0.5, 4.0, 4.0, 3.9];
    for seed in [None, Some(1), Some(2)] {
        let params = SamplingParams {
            seed,
            ..SamplingParams::default()
        };
        assert_eq!(Sampler::new(&params).sample(&logits, &[]), 1);
    }
}

#[test]
fn unseeded_samplers_still_follow_the_distribution_support() {
    let params = SamplingParams {
        temperature: 1.0,
        top_k: Some(2),
        ..SamplingParams::default()
    };
    let mut sampler = Sampler::new(&params);
    for _ in 0..200 {
        assert!(sampler.sample(&[0.0, 3.0, 2.9, -5.0], &[]) < 3);
    }
}

#[test]
fn validation_names_the_parameter() {
    let cases: [(SamplingParams, &str); 9] = [
        (
            SamplingParams {
                temperature: -0.1,
                ..Default::default()
            },
            "temperature",
        ),
        (
            SamplingParams {
                temperature: 2.5,
                ..Default::default()
            },
            "temperature",
        ),
        (
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            "temperature",
        ),
        (
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            "top_p",
        ),
        (
            SamplingParams {
                top_p: 1.01,
                ..Default::default()
            },
            "top_p",
        ),
        (
            SamplingParams {
                top_p: f32::NAN,
                ..Default::default()
            },
            "top_p",
        ),
        (
            SamplingParams {
                top_k: Some(0),
                ..Default::default()
            },
            "top_k",
        ),
        (
            SamplingParams {
                repetition_penalty: 0.0,
                ..Default::default()
            },
            "repetition_penalty",
        ),
        (
            SamplingParams {
                repetition_penalty: f32::INFINITY,
                ..Default::default()
            },
            "repetition_penalty",
        ),
    ];
    for (params, param) in cases {
        let err = params.validate().expect_err(param);
        assert_eq!(err.param, param, "{params:?}");
        assert!(err.to_string().contains(param), "{err}");
    }
}

#[test]
fn validation_accepts_the_edges_of_each_range() {
    let cases = [
        SamplingParams {
            temperature: 2.0,
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.01,
            top_p: 1e-6,
            ..Default::default()
        },
        SamplingParams {
            top_k: Some(1),
            repetition_penalty: 0.01,
            ..Default::default()
        },
        SamplingParams {
            top_k: Some(u32::MAX),
            repetition_penalty: 10.0,
            seed: Some(0),
            ..Default::default()
        },
    ];
    for params in cases {
        assert_eq!(params.validate(), Ok(()), "{params:?}");
    }
}
