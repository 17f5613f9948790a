//! `modelplane-bench`: drive an Open Inference Protocol server and report
//! throughput, latency percentiles and errors by status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use modelplane_bench::client::{Protocol, Target};
use modelplane_bench::load::Limits;
use modelplane_bench::schedule::Arrivals;
use modelplane_bench::tensor::{DataType, parse_shape};
use modelplane_bench::{Input, Load, Plan, Report};

/// Load generator for the Open Inference Protocol (REST JSON, REST binary, gRPC).
///
/// Closed loop by default (`--concurrency`); open loop with `--rate`. A run
/// stops after `--requests` or `--duration`, whichever comes first.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Base URL of the REST listener, or of the gRPC listener with `--protocol grpc`.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    #[arg(long, value_enum, default_value = "rest-json")]
    protocol: Protocol,
    /// Model name.
    #[arg(long)]
    model: String,
    /// Model version; empty selects the default version.
    #[arg(long, default_value = "")]
    model_version: String,
    /// Input name; read from the model metadata when unset.
    #[arg(long)]
    input_name: Option<String>,
    /// Input datatype, e.g. FP32; read from the model metadata when unset.
    #[arg(long, value_parser = parse_datatype)]
    datatype: Option<DataType>,
    /// Input shape, e.g. 1,3,64,64; read from the model metadata when unset.
    #[arg(long)]
    shape: Option<String>,
    /// Rows per request when the metadata's first dimension is free (-1).
    #[arg(long, default_value_t = 1)]
    batch: i64,
    /// Raw little-endian input elements; random values when unset.
    #[arg(long)]
    input_file: Option<PathBuf>,
    /// Seed for random input values and Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Closed loop: requests in flight at once.
    #[arg(long, default_value_t = 1, conflicts_with = "rate")]
    concurrency: usize,
    /// Open loop: requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: how gaps between requests are drawn.
    #[arg(long, value_enum, default_value = "poisson")]
    arrivals: Arrivals,
    /// Open loop: outstanding requests beyond which due ones are dropped.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Most requests to send (warm-up excluded).
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Longest time to send requests for, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Requests sent before measuring, not counted.
    #[arg(long, default_value_t = 0)]
    warmup_requests: u64,
    /// Time limit of one request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Threads of the load generator's async runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Label copied into the report.
    #[arg(long, default_value = "")]
    label: String,
    /// Also write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_datatype(s: &str) -> Result<DataType, String> {
    s.parse()
        .map_err(|e: modelplane_bench::Error| e.to_string())
}

impl Args {
    fn plan(&self) -> Result<Plan, String> {
        let load = match self.rate {
            Some(rate) if !(rate.is_finite() && rate > 0.0) => {
                return Err(format!("--rate must be a positive number, got {rate}"));
            }
            Some(rate) => Load::Open {
                rate,
                arrivals: self.arrivals,
                max_in_flight: self.max_in_flight.max(1),
            },
            None => Load::Closed {
                concurrency: self.concurrency.max(1),
            },
        };
        let shape = match &self.shape {
            Some(text) => Some(parse_shape(text).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Plan {
            label: self.label.clone(),
            protocol: self.protocol,
            target: Target {
                url: self.url.clone(),
                model: self.model.clone(),
                version: self.model_version.clone(),
                timeout: self.timeout,
            },
            input: Input {
                name: self.input_name.clone(),
                datatype: self.datatype,
                shape,
                batch: self.batch,
                file: self.input_file.clone(),
                seed: self.seed,
            },
            load,
            limits: Limits {
                requests: self.requests,
                duration: self.duration,
            },
            warmup_requests: self.warmup_requests,
        })
    }
}

fn write_json(path: &PathBuf, report: &Report) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = args.plan().and_then(|plan| {
        // One thread: a current-thread runtime, so no request hops between threads.
        let mut builder = if args.threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(args.threads);
            builder
        };
        let runtime = builder
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?;
        runtime
            .block_on(modelplane_bench::run(&plan))
            .map_err(|e| e.to_string())
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("modelplane-bench: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{report}");
    if let Some(path) = &args.json
        && let Err(e) = write_json(path, &report)
    {
        eprintln!("modelplane-bench: {e}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
