//! `modelplane-operator`: see `modelplane-operator --help`.

use std::process::ExitCode;

use clap::Parser;
use kube::Client;
use modelplane_operator::{cli::Args, run, telemetry};

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops gracefully")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = telemetry::init(&args.log_level, args.log_format) {
        eprintln!("modelplane-operator: invalid --log-level: {error}");
        return ExitCode::FAILURE;
    }
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "no Kubernetes client configuration (in-cluster or KUBECONFIG)");
            return ExitCode::FAILURE;
        }
    };
    match run::run(args, client, termination()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "operator stopped");
            ExitCode::FAILURE
        }
    }
}
