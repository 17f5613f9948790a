//! What a generation step spends handing its logits to the sampler: the full `[B, V]`
//! copy to the host plus the host-side argmax / top-k (before), against the argmax or
//! top-k taken on the logits' device and a copy of only that (`step_selected`).
//!
//! ```text
//! cargo run --release -p modelplane-runtime --example step_selection -- \
//!   --batch-sizes 1,8,32 --vocab 49152 --duration-s 2
//! ```
//! The logits are a fixed random tensor on `--device` (no model runs): the figures are
//! the copy and selection cost alone, the part of a step the change touches. Each
//! iteration also picks every row's token with the sampler, and both paths must pick
//! the same tokens. Three paths per point: before (every row copied, then the host's
//! first-maximum scan or one-pass top-k), libtorch selecting every row as asked
//! (`TorchStepModel::copy_selected`), and this change as `step_selected` runs it on
//! that device (on the CPU only unused rows skip the copy; greedy rows use the
//! sampler's vectorized argmax). A last line compares the two host argmaxes.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use modelplane_generate::engine::{RowLogits, Selection};
use modelplane_generate::sampling::{self, Sampler, SamplingParams};
use modelplane_runtime::model::TorchStepModel;
use tch::{Device, Kind, Tensor};

/// Times the full logits copy against device-side selection.
#[derive(Parser)]
struct Args {
    /// Rows per step.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batch_sizes: Vec<i64>,
    /// Logits per row (SmolLM2: 49152).
    #[arg(long, default_value_t = 49_152)]
    vocab: i64,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Timed seconds per path and point.
    #[arg(long, default_value_t = 2.0)]
    duration_s: f64,
    /// libtorch intra-op threads (the runtime's tests and benchmarks serve on one).
    #[arg(long, default_value_t = 1)]
    threads: i32,
}

/// One way requests sample.
struct Workload {
    name: &'static str,
    params: SamplingParams,
    /// The rows feed prompt chunks that do not end their prompts: nothing is sampled.
    chunk: bool,
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "prompt chunk (logits unused)",
            params: SamplingParams::default(),
            chunk: true,
        },
        Workload {
            name: "greedy",
            params: SamplingParams::default(),
            chunk: false,
        },
        Workload {
            name: "top-k 50, top-p 0.9, T 0.8",
            params: SamplingParams {
                temperature: 0.8,
                top_k: Some(50),
                top_p: 0.9,
                repetition_penalty: 1.0,
                seed: Some(1),
            },
            chunk: false,
        },
    ]
}

fn parse_device(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => match other.strip_prefix("cuda:") {
            Some(index) => Ok(Device::Cuda(index.parse().context("cuda:N")?)),
            None => bail!("unknown device {other:?}"),
        },
    }
}

/// Median and mean microseconds of the iterations in `times`.
fn summary(times: &mut [Duration]) -> (f64, f64) {
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().map(|&d| us(d)).sum::<f64>() / times.len().max(1) as f64;
    (us(times[times.len() / 2]), mean)
}

/// One way of turning the logits into tokens; returns the tokens it picked.
type Path<'a> = Box<dyn FnMut() -> anyhow::Result<Vec<u32>> + 'a>;

/// Times every path, one call of each in turn for about `paths.len() · duration`, so
/// that all see the same machine load; fails when they pick different tokens.
fn time_paths(duration: Duration, paths: &mut [Path<'_>]) -> anyhow::Result<Vec<Vec<Duration>>> {
    let mut times = vec![Vec::new(); paths.len()];
    let started = Instant::now();
    let mut warm = 0;
    while started.elapsed() < duration * paths.len() as u32 {
        let mut first = None;
        for (path, times) in paths.iter_mut().zip(&mut times) {
            let t = Instant::now();
            let tokens = path()?;
            if warm >= 10 {
                times.push(t.elapsed());
            }
            match &first {
                None => first = Some(tokens),
                Some(first) if *first != tokens => bail!("the paths picked different tokens"),
                Some(_) => {}
            }
        }
        warm += 1;
    }
    Ok(times)
}

/// The tokens `samplers` pick from `answers` (none for prompt chunks).
fn pick_all(answers: &[RowLogits], samplers: &mut [Sampler], chunk: bool) -> Vec<u32> {
    if chunk {
        return Vec::new();
    }
    answers
        .iter()
        .zip(samplers)
        .map(|(answer, sampler)| sampler.pick(answer, &[]))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = parse_device(&args.device)?;
    tch::set_num_threads(args.threads);
    tch::manual_seed(7);
    let vocab = u32::try_from(args.vocab).context("vocab")?;
    let duration = Duration::from_secs_f64(args.duration_s);
    println!(
        "device {device:?}, V = {vocab}, {} libtorch thread(s), {} s per path and point; µs per step, median (mean)",
        args.threads, args.duration_s
    );
    println!(
        "| sampling | B | before: full copy + host | libtorch selects all | this change | ratio | saved µs/step | bytes to host |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for workload in workloads() {
        let selection = if workload.chunk {
            Selection::Nothing
        } else {
            Selection::for_params(&workload.params, vocab)
        };
        let shipped_selection = TorchStepModel::selection_on(device, selection);
        let chunk = workload.chunk;
        for &batch in &args.batch_sizes {
            // Spread like a language model's logits (SmolLM2's are a few units wide).
            let logits =
                (Tensor::randn([batch, args.vocab], (Kind::Float, device)) * 3.0).f_contiguous()?;
            let rows = usize::try_from(batch).context("batch")?;
            let samplers =
                || -> Vec<Sampler> { (0..rows).map(|_| Sampler::new(&workload.params)).collect() };
            let (mut before, mut device_side, mut shipped) = (samplers(), samplers(), samplers());
            let mut shipped_bytes = 0;
            let logits = &logits;
            let mut paths: Vec<Path<'_>> = vec![
                // What `step` and the sampler did before: every row to the host, then a
                // first-maximum scan (greedy) or the sampler's one-pass top-k.
                Box::new(|| {
                    let full = TorchStepModel::copy_full(logits)?;
                    if chunk {
                        return Ok(Vec::new());
                    }
                    Ok(full
                        .chunks_exact(vocab as usize)
                        .zip(&mut before)
                        .map(|(row, sampler)| match selection {
                            Selection::Argmax => argmax_by_scanning(row),
                            _ => sampler.sample(row, &[]),
                        })
                        .collect())
                }),
                Box::new(|| {
                    let answers = TorchStepModel::copy_selected(logits, &vec![selection; rows])?;
                    Ok(pick_all(&answers, &mut device_side, chunk))
                }),
                Box::new(|| {
                    let answers =
                        TorchStepModel::copy_selected(logits, &vec![shipped_selection; rows])?;
                    shipped_bytes = answers.iter().map(bytes_of).sum();
                    Ok(pick_all(&answers, &mut shipped, chunk))
                }),
            ];
            let mut times = time_paths(duration, &mut paths)?;
            drop(paths);
            let [before, device_side, shipped] = [0, 1, 2].map(|i| summary(&mut times[i]));
            let cell = |(p50, mean): (f64, f64)| format!("{p50:.1} ({mean:.1})");
            println!(
                "| {} | {batch} | {} | {} | {} | {:.1}× | {:.1} | {} → {} |",
                workload.name,
                cell(before),
                cell(device_side),
                cell(shipped),
                before.0 / shipped.0,
                before.0 - shipped.0,
                4 * rows * vocab as usize,
                shipped_bytes,
            );
        }
    }
    host_argmax(duration);
    Ok(())
}

/// The host argmax before the two-pass one: one sequential first-maximum scan.
fn argmax_by_scanning(values: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (index, &value) in values.iter().enumerate() {
        if value > best_value {
            best = index;
            best_value = value;
        }
    }
    best as u32
}

/// Prints the two host argmaxes' time over one SmolLM2-sized row already on the host.
fn host_argmax(duration: Duration) {
    let row = Vec::<f32>::try_from(&(Tensor::randn([49_152], (Kind::Float, Device::Cpu)) * 3.0))
        .unwrap_or_default();
    let (mut scan, mut two_pass) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while started.elapsed() < duration {
        let t = Instant::now();
        let a = std::hint::black_box(argmax_by_scanning(std::hint::black_box(&row)));
        scan.push(t.elapsed());
        let t = Instant::now();
        let b = std::hint::black_box(sampling::argmax(std::hint::black_box(&row)));
        two_pass.push(t.elapsed());
        assert_eq!(a, b);
    }
    let (scan, _) = summary(&mut scan);
    let (two_pass, _) = summary(&mut two_pass);
    println!(
        "host argmax of one row of 49152: scan {scan:.1} µs, two-pass {two_pass:.1} µs ({:.1}×)",
        scan / two_pass
    );
}

/// Bytes an answer carried to the host: float32 values, int64 ids (a top-k row copies
/// `k + 1` of each).
fn bytes_of(answer: &RowLogits) -> usize {
    match answer {
        RowLogits::Nothing => 0,
        RowLogits::Argmax(_) => 4 + 8,
        RowLogits::TopK { ids, .. } => (ids.len() + 1) * (4 + 8),
        RowLogits::Full(values) => 4 * values.len(),
    }
}
