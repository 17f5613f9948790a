//! The `modelplane-runtime` command.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use modelplane_config::{self as config, RuntimeConfig};
use modelplane_runtime::ConfigSource;

/// Serves PyTorch models over the Open Inference Protocol v2 (REST and gRPC).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Log line format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "MODELPLANE_LOG_FORMAT",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the models of a config file, or one local model file.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["config", "model"]))]
struct ServeArgs {
    /// Runtime config file (YAML); watched for changes.
    #[arg(long, env = "MODELPLANE_CONFIG")]
    config: Option<PathBuf>,
    /// Serve one TorchScript file instead (its signature from signature.json beside it).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Name to serve `--model` under (default: the file's parent directory name).
    #[arg(long, requires = "model")]
    name: Option<String>,
    /// REST listen address for `--model`.
    #[arg(long, default_value = "0.0.0.0:8080", requires = "model")]
    http: SocketAddr,
    /// gRPC listen address for `--model`.
    #[arg(long, default_value = "0.0.0.0:8081", requires = "model")]
    grpc: SocketAddr,
    /// Largest batch for `--model` (1: no batching).
    #[arg(long, default_value_t = 1, requires = "model")]
    max_batch_size: u32,
    /// Device for `--model`.
    #[arg(long, default_value = "cpu", requires = "model")]
    device: String,
}

impl ServeArgs {
    fn source(&self) -> anyhow::Result<ConfigSource> {
        if let Some(path) = &self.config {
            return Ok(ConfigSource::File(path.clone()));
        }
        let model = self
            .model
            .as_ref()
            .context("either --config or --model is required")?;
        let name = match &self.name {
            Some(name) => name.clone(),
            None => default_name(model)?,
        };
        let device = match self.device.as_str() {
            "cpu" => config::Device::Cpu,
            "cuda" => config::Device::Cuda,
            other => anyhow::bail!("--device must be cpu or cuda, not {other:?}"),
        };
        let yaml = format!(
            "server: {{http: '{}', grpc: '{}'}}\nmodels:\n- name: {name}\n  batching: {{maxBatchSize: {}}}\n  versions: [{{version: '1', source: {{path: {:?}}}}}]\n",
            self.http,
            self.grpc,
            self.max_batch_size,
            model.display().to_string(),
        );
        let mut parsed = RuntimeConfig::from_yaml(&yaml)?;
        parsed.models[0].versions[0].device = device;
        Ok(ConfigSource::Inline(Box::new(parsed)))
    }
}

/// `examples/models/mlp/1/model.pt` is served as `mlp`; `mlp.pt` as `mlp`.
fn default_name(model: &std::path::Path) -> anyhow::Result<String> {
    let parent = model
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    let stem = model.file_stem().and_then(|n| n.to_str());
    let versioned = parent.is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    let name = if versioned {
        model
            .parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
    } else {
        stem
    };
    name.map(str::to_owned)
        .context("cannot derive a model name from --model; pass --name")
}

/// Exit status when a model has no version to serve after the first load; the
/// operator maps it to `Degraded=True, reason ModelLoadFailed`.
const LOAD_FAILURE_EXIT: i32 = 3;

/// Where Kubernetes reads a container's termination message.
const TERMINATION_LOG: &str = "/dev/termination-log";

fn report_load_failure(failures: &[String]) {
    for line in failures {
        tracing::error!("{line}");
    }
    // Only where the kubelet mounted the file: never create it elsewhere.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(TERMINATION_LOG);
    if let Ok(mut file) = file {
        use std::io::Write;
        let _ = file.write_all(failures.join("\n").as_bytes());
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let Command::Serve(args) = cli.command;
    let mut running = modelplane_runtime::start(args.source()?).await?;
    let signal = tokio::select! {
        failures = running.initial_load() => {
            if !failures.is_empty() {
                report_load_failure(&failures);
                running.shutdown().await;
                std::process::exit(LOAD_FAILURE_EXIT);
            }
            shutdown_signal().await?
        }
        signal = shutdown_signal() => signal?,
    };
    tracing::info!(
        signal,
        "shutting down: no new connections, finishing in-flight requests"
    );
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
