//! `modelplane-operator`: see `modelplane-operator --help`.

use std::{future::Future, process::ExitCode};

use clap::Parser;
use futures::FutureExt;
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

/// Ends the process once `requested` has resolved and either a second signal arrives or
/// [`run::EXIT_DEADLINE`] passes, whatever graceful shutdown is still waiting on.
async fn exit_when_overdue(requested: impl Future<Output = ()>) {
    requested.await;
    tokio::select! {
        () = termination() => tracing::warn!("second termination signal; exiting at once"),
        () = tokio::time::sleep(run::EXIT_DEADLINE) => tracing::error!(
            deadline = ?run::EXIT_DEADLINE,
            "graceful shutdown did not finish in time; exiting anyway"
        ),
    }
    std::process::exit(1);
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = telemetry::init(&args.log_level, args.log_format) {
        eprintln!("modelplane-operator: invalid --log-level: {error}");
        return ExitCode::FAILURE;
    }
    let config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "no Kubernetes client configuration (in-cluster or KUBECONFIG)");
            return ExitCode::FAILURE;
        }
    };
    let client = match run::client(config) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the Kubernetes client");
            return ExitCode::FAILURE;
        }
    };
    let requested = termination().shared();
    tokio::spawn(exit_when_overdue(requested.clone()));
    match run::run(args, client, requested).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "operator stopped");
            ExitCode::FAILURE
        }
    }
}
