//! The benchmark's upper bound: `forward` in a loop on one thread, no server.
//!
//! ```text
//! cargo run --release -p modelplane-runtime --example plain_loop -- \
//!   --model examples/models/mlp/1/model.pt --shape 1,784 --datatype FP32 \
//!   --batch-sizes 1,8,64 --duration-s 3 --json plain.json
//! ```
//! Uses the runtime's own loader, `no_grad`, and intra-op thread sizing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use modelplane_config::{Device, ModelFormat};
use modelplane_runtime::tensor::{DataType, TorchKind};
use modelplane_runtime::{cgroup, model};

/// Times `forward` of a TorchScript file at several batch sizes.
#[derive(Parser)]
struct Args {
    /// TorchScript file.
    #[arg(long)]
    model: PathBuf,
    /// Shape of one request; dimension 0 is replaced by each batch size.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    shape: Vec<i64>,
    /// Input datatype (OIP name).
    #[arg(long, default_value = "FP32")]
    datatype: String,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    batch_sizes: Vec<i64>,
    /// Seconds of timed forwards per batch size.
    #[arg(long, default_value_t = 3.0)]
    duration_s: f64,
    /// Most timed forwards per batch size.
    #[arg(long, default_value_t = 100_000)]
    max_iterations: usize,
    /// Untimed forwards before timing.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Intra-op threads; default as the runtime (cgroup quota, else host cores).
    #[arg(long)]
    threads: Option<u32>,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Row {
    batch: i64,
    iterations: usize,
    rows_per_s: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn time_batch(
    backend: &dyn model::Backend,
    input: &tch::Tensor,
    args: &Args,
    batch: i64,
) -> anyhow::Result<Row> {
    let inputs = [input.shallow_clone()];
    for _ in 0..args.warmup {
        backend.forward(&inputs).map_err(anyhow::Error::msg)?;
    }
    let budget = Duration::from_secs_f64(args.duration_s);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(args.max_iterations.min(1 << 20));
    while started.elapsed() < budget && latencies.len() < args.max_iterations {
        let t = Instant::now();
        backend.forward(&inputs).map_err(anyhow::Error::msg)?;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(Row {
        batch,
        iterations: latencies.len(),
        rows_per_s: latencies.len() as f64 * batch as f64 / elapsed,
        p50_us: percentile(&latencies, 0.50),
        p90_us: percentile(&latencies, 0.90),
        p99_us: percentile(&latencies, 0.99),
        max_us: percentile(&latencies, 1.0),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let datatype = DataType::parse(&args.datatype).context("unknown --datatype")?;
    let kind = datatype
        .kind()
        .context("datatype not supported by libtorch")?;
    if args.shape.is_empty() {
        bail!("--shape needs at least one dimension");
    }
    let threads = cgroup::PodCgroup::current().intra_op_threads(args.threads);
    tch::set_num_threads(i32::try_from(threads)?);
    let _no_grad = tch::no_grad_guard();
    let backend = model::load(ModelFormat::Torchscript, &args.model, Device::Cpu)?;
    let mut rows = Vec::new();
    for &batch in &args.batch_sizes {
        let mut shape = args.shape.clone();
        shape[0] = batch;
        let floating = matches!(
            datatype,
            DataType::Fp16 | DataType::Fp32 | DataType::Fp64 | DataType::Bf16
        );
        let input = if floating {
            tch::Tensor::f_randn(&shape, (kind, tch::Device::Cpu))?
        } else {
            tch::Tensor::f_zeros(&shape, (kind, tch::Device::Cpu))?
        };
        let row = time_batch(backend.as_ref(), &input, &args, batch)?;
        println!(
            "batch {:>4}: {:>8} it  {:>11.0} rows/s  p50 {:>9.1} us  p90 {:>9.1} us  p99 {:>9.1} us  max {:>9.1} us",
            row.batch,
            row.iterations,
            row.rows_per_s,
            row.p50_us,
            row.p90_us,
            row.p99_us,
            row.max_us
        );
        rows.push(row);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("threads: {threads}");
    Ok(())
}
