//! Streaming generation benchmarks: prompts sent round-robin over OpenAI SSE
//! (completions or chat) or gRPC `ModelStreamInfer`, in closed or open loop;
//! time to first token, inter-token latency, jitter and output tokens/s.

use tokio::time::Instant;

use crate::Error;
use crate::client::Target;
use crate::load::{self, Limits, Measured, Probe};
use crate::plan::Load;
use crate::schedule::Schedule;

pub mod grpc;
pub mod openai;
pub mod prompts;
pub mod record;
pub mod trace;

pub use record::{StreamRecorder, StreamReport, StreamScenario};

/// One streamed request: what it measured, or its failure status.
pub type StreamSample = Result<trace::Completed, String>;

/// The streaming wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamProtocol {
    /// `POST /v1/completions`, SSE.
    OpenAiCompletions,
    /// `POST /v1/chat/completions`, SSE.
    OpenAiChat,
    /// `inference.GRPCInferenceService/ModelStreamInfer`.
    GrpcStream,
}

impl StreamProtocol {
    /// Kebab-case name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamProtocol::OpenAiCompletions => "openai-completions",
            StreamProtocol::OpenAiChat => "openai-chat",
            StreamProtocol::GrpcStream => "grpc-stream",
        }
    }
}

/// What every request asks the model for.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompts: prompts::Prompts,
    pub max_tokens: u32,
    /// 0 is greedy.
    pub temperature: f32,
}

/// Everything one streaming run needs.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub label: String,
    pub protocol: StreamProtocol,
    /// Base URL of the HTTP listener (OpenAI) or the gRPC listener; `timeout`
    /// bounds one whole stream.
    pub target: Target,
    pub generation: Generation,
    pub load: Load,
    pub limits: Limits,
    /// Requests sent first, at the run's concurrency (1 in an open loop), not counted.
    pub warmup_requests: u64,
    /// Seed of Poisson arrivals.
    pub seed: u64,
}

/// A ready client for one streaming protocol.
#[derive(Debug, Clone)]
pub enum StreamClient {
    OpenAi(openai::OpenAiProbe),
    Grpc(grpc::GrpcStreamProbe),
}

impl StreamClient {
    /// Prepares the request bodies and opens the HTTP pool or gRPC channel.
    pub async fn connect(plan: &StreamPlan, connections: usize) -> Result<Self, Error> {
        let t = &plan.target;
        let openai = |endpoint| {
            openai::OpenAiProbe::new(
                &t.url,
                endpoint,
                &t.model,
                &plan.generation,
                t.timeout,
                connections,
                t.api_key.as_deref(),
            )
            .map(StreamClient::OpenAi)
        };
        match plan.protocol {
            StreamProtocol::OpenAiCompletions => openai(openai::Endpoint::Completions),
            StreamProtocol::OpenAiChat => openai(openai::Endpoint::Chat),
            StreamProtocol::GrpcStream => {
                let client = crate::client::grpc_client(&t.url).await?;
                Ok(StreamClient::Grpc(grpc::GrpcStreamProbe::new(
                    client,
                    &t.model,
                    &t.version,
                    &plan.generation,
                    t.timeout,
                )))
            }
        }
    }
}

impl Probe for StreamClient {
    type Sample = StreamSample;

    async fn send(&mut self, issued: Instant) -> StreamSample {
        match self {
            StreamClient::OpenAi(probe) => probe.send(issued).await,
            StreamClient::Grpc(probe) => probe.send(issued).await,
        }
    }
}

/// Runs `plan`: warm-up, then the measured loop; summarises it.
pub async fn run(plan: &StreamPlan) -> Result<StreamReport, Error> {
    let (connections, warmup_concurrency) = match plan.load {
        Load::Closed { concurrency } => (concurrency, concurrency),
        Load::Open { max_in_flight, .. } => (max_in_flight, 1),
    };
    let client = StreamClient::connect(plan, connections).await?;
    if plan.warmup_requests > 0 {
        let warmup = Limits {
            requests: plan.warmup_requests,
            duration: plan.limits.duration,
        };
        let _: Measured<StreamRecorder> =
            load::closed_loop(&client, warmup_concurrency, warmup).await;
        plan.generation.prompts.restart();
    }
    let measured: Measured<StreamRecorder> = match plan.load {
        Load::Closed { concurrency } => load::closed_loop(&client, concurrency, plan.limits).await,
        Load::Open {
            rate,
            arrivals,
            max_in_flight,
        } => {
            let schedule = Schedule::new(arrivals, rate, plan.seed);
            load::open_loop(&client, schedule, max_in_flight, plan.limits).await
        }
    };
    Ok(StreamReport::new(
        scenario(plan),
        &measured.tally,
        measured.elapsed,
    ))
}

fn scenario(plan: &StreamPlan) -> StreamScenario {
    let mode = plan.load.mode();
    StreamScenario {
        label: plan.label.clone(),
        protocol: plan.protocol.as_str().to_owned(),
        url: plan.target.url.clone(),
        model: plan.target.model.clone(),
        max_tokens: plan.generation.max_tokens,
        temperature: plan.generation.temperature,
        prompts: plan.generation.prompts.all().len(),
        mode,
    }
}
