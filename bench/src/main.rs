//! `modelplane-bench`: drive an Open Inference Protocol server and report
//! throughput, latency percentiles and errors by status; or stream
//! generations (OpenAI SSE, gRPC `ModelStreamInfer`) and report time to first
//! token, inter-token latency, jitter and output tokens/s.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use modelplane_bench::client::{Protocol, Target};
use modelplane_bench::load::Limits;
use modelplane_bench::schedule::Arrivals;
use modelplane_bench::stream::prompts::Prompts;
use modelplane_bench::stream::{Generation, StreamPlan, StreamProtocol, StreamReport};
use modelplane_bench::tenants::TenantsArgs;
use modelplane_bench::tensor::{self, DataType, parse_shape};
use modelplane_bench::{Input, Load, Plan, Report};
use modelplane_config::units::parse_duration;
use serde::Serialize;

/// The wire format of a run: a tensor protocol or a streaming one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Wire {
    /// OIP REST with JSON tensors.
    RestJson,
    /// OIP REST with the binary tensor data extension.
    RestBinary,
    /// OIP gRPC `ModelInfer`.
    Grpc,
    /// OpenAI `/v1/completions`, streamed (SSE).
    OpenaiCompletions,
    /// OpenAI `/v1/chat/completions`, streamed (SSE).
    OpenaiChat,
    /// OIP gRPC `ModelStreamInfer` on a generate model.
    GrpcStream,
}

impl Wire {
    fn split(self) -> Result<Protocol, StreamProtocol> {
        match self {
            Wire::RestJson => Ok(Protocol::RestJson),
            Wire::RestBinary => Ok(Protocol::RestBinary),
            Wire::Grpc => Ok(Protocol::Grpc),
            Wire::OpenaiCompletions => Err(StreamProtocol::OpenAiCompletions),
            Wire::OpenaiChat => Err(StreamProtocol::OpenAiChat),
            Wire::GrpcStream => Err(StreamProtocol::GrpcStream),
        }
    }
}

/// Per-request time limit when `--timeout` is not given.
const TENSOR_TIMEOUT: Duration = Duration::from_secs(10);
const STREAM_TIMEOUT: Duration = Duration::from_secs(300);

/// Load generator for the Open Inference Protocol (REST JSON, REST binary, gRPC)
/// and for streaming generation (OpenAI SSE completions and chat, gRPC
/// ModelStreamInfer).
///
/// Closed loop by default (`--concurrency`); open loop with `--rate`. A run
/// stops after `--requests` or `--duration`, whichever comes first.
///
/// `modelplane-bench tenants --help`: several tenants' client groups (each
/// with its API key and load) against one server at once.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Base URL of the HTTP listener (REST, OpenAI), or of the gRPC listener
    /// with `--protocol grpc` or `grpc-stream`.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    #[arg(long, value_enum, default_value = "rest-json")]
    protocol: Wire,
    /// Model name.
    #[arg(long)]
    model: String,
    /// Model version; empty selects the default version.
    #[arg(long, default_value = "")]
    model_version: String,
    /// Streaming: prompts, one a line (JSON string or plain text), sent
    /// round-robin; the built-in set (bench/prompts.jsonl) when unset.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Streaming: `max_tokens` of every request.
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// Streaming: sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Tensor protocols: input name; read from the model metadata when unset.
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
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Requests sent before measuring, not counted.
    #[arg(long, default_value_t = 0)]
    warmup_requests: u64,
    /// Time limit of one request (a whole stream); 10s for tensor protocols
    /// and 300s for streaming ones when unset.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// API key sent as `Authorization: Bearer <key>` (REST, OpenAI, gRPC
    /// `ModelInfer`); none when unset.
    #[arg(long, env = "MODELPLANE_BENCH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
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
    tensor::parse_datatype(s).map_err(|e| e.to_string())
}

/// What the flags ask for.
enum Job {
    Tensor(Plan),
    Stream(StreamPlan),
}

impl Args {
    fn job(&self) -> Result<Job, String> {
        match self.protocol.split() {
            Ok(protocol) => self.plan(protocol).map(Job::Tensor),
            Err(protocol) => self.stream_plan(protocol).map(Job::Stream),
        }
    }

    fn load(&self) -> Result<Load, String> {
        Ok(match self.rate {
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
        })
    }

    fn target(&self, default_timeout: Duration) -> Target {
        Target {
            url: self.url.clone(),
            model: self.model.clone(),
            version: self.model_version.clone(),
            timeout: self.timeout.unwrap_or(default_timeout),
            api_key: self.api_key.clone(),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            requests: self.requests,
            duration: self.duration,
        }
    }

    fn stream_plan(&self, protocol: StreamProtocol) -> Result<StreamPlan, String> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!(
                "--temperature must be ≥ 0, got {}",
                self.temperature
            ));
        }
        let prompts = match &self.prompts {
            Some(path) => Prompts::from_file(path).map_err(|e| e.to_string())?,
            None => Prompts::builtin(),
        };
        Ok(StreamPlan {
            label: self.label.clone(),
            protocol,
            target: self.target(STREAM_TIMEOUT),
            generation: Generation {
                prompts,
                max_tokens: self.max_tokens.max(1),
                temperature: self.temperature,
            },
            load: self.load()?,
            limits: self.limits(),
            warmup_requests: self.warmup_requests,
            seed: self.seed,
        })
    }

    fn plan(&self, protocol: Protocol) -> Result<Plan, String> {
        let load = self.load()?;
        let shape = match &self.shape {
            Some(text) => Some(parse_shape(text).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Plan {
            label: self.label.clone(),
            protocol,
            target: self.target(TENSOR_TIMEOUT),
            input: Input {
                name: self.input_name.clone(),
                datatype: self.datatype,
                shape,
                batch: self.batch,
                file: self.input_file.clone(),
                seed: self.seed,
            },
            load,
            limits: self.limits(),
            warmup_requests: self.warmup_requests,
        })
    }
}

fn write_json(path: &PathBuf, report: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A finished run of either kind.
enum Finished {
    Tensor(Report),
    Stream(StreamReport),
}

async fn execute(job: Job) -> Result<Finished, String> {
    match job {
        Job::Tensor(plan) => modelplane_bench::run(&plan).await.map(Finished::Tensor),
        Job::Stream(plan) => modelplane_bench::stream::run(&plan)
            .await
            .map(Finished::Stream),
    }
    .map_err(|e| e.to_string())
}

fn async_runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    // One thread: a current-thread runtime, so no request hops between threads.
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

/// `modelplane-bench tenants ...`: several tenants' client groups at once.
fn tenants_main(args: TenantsArgs) -> ExitCode {
    let result = args.plan().and_then(|plan| {
        async_runtime(args.threads)?
            .block_on(modelplane_bench::tenants::run(&plan))
            .map_err(|e| e.to_string())
    });
    let written = match &result {
        Ok(report) => {
            println!("{report}");
            args.json.as_ref().map(|path| write_json(path, report))
        }
        Err(e) => Some(Err(e.clone())),
    };
    if let Some(Err(e)) = written {
        eprintln!("modelplane-bench tenants: {e}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "tenants") {
        let argv =
            std::iter::once("modelplane-bench tenants".into()).chain(std::env::args_os().skip(2));
        return tenants_main(TenantsArgs::parse_from(argv));
    }
    let args = Args::parse();
    let result = args
        .job()
        .and_then(|job| async_runtime(args.threads)?.block_on(execute(job)));
    let written = match &result {
        Ok(Finished::Tensor(report)) => {
            println!("{report}");
            args.json.as_ref().map(|path| write_json(path, report))
        }
        Ok(Finished::Stream(report)) => {
            println!("{report}");
            args.json.as_ref().map(|path| write_json(path, report))
        }
        Err(e) => Some(Err(e.clone())),
    };
    if let Some(Err(e)) = written {
        eprintln!("modelplane-bench: {e}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
