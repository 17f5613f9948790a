//! The operator process: HTTP server, leader election, controllers, shutdown.

use std::{future::Future, sync::Arc};

use anyhow::Context as _;
use kube::{Api, Client, api::ListParams};
use modelplane_api::model_deployment::ModelDeployment;
use modelplane_verify::{DockerConfig, RegistryOptions, Verifier};
use tokio::sync::watch;

use crate::{
    cli::{Args, Scope},
    controller::{canary, model_deployment},
    desired::Defaults,
    http::{self, Health},
    leader::{ElectionConfig, LeaderElector},
    metrics::Metrics,
    verification::{ArtifactVerifier, RegistryVerifier},
};

/// A shutdown signal that many tasks can wait on.
#[derive(Clone)]
struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown was requested.
    fn requested(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut receiver = self.0.clone();
        async move {
            // An error means the sender is gone, which also means shutting down.
            let _ = receiver.wait_for(|stop| *stop).await;
        }
    }
}

/// Runs the operator until `shutdown` resolves (graceful) or it loses the leader Lease (error).
pub async fn run(
    args: Args,
    client: Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Api::<ModelDeployment>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .context(
            "cannot list ModelDeployments; are the CRDs installed (charts/modelplane/crds)?",
        )?;

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested");
        let _ = stop.send(true);
    });
    let shutdown = Shutdown(stopped);
    let metrics = Arc::new(Metrics::default());
    let verifier = registry_verifier(&args, &metrics)?;
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    let server = tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        shutdown.requested(),
    ));
    health.set_ready(true);

    let elector = args.leader_elect.then(|| {
        let identity = args.identity.clone().unwrap_or_else(default_identity);
        LeaderElector::new(
            client.clone(),
            ElectionConfig {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity,
                lease_duration: args.lease_duration,
                retry_period: args.lease_retry,
            },
        )
    });
    let outcome = lead(
        &args,
        client,
        elector.as_ref(),
        (&metrics, verifier),
        &shutdown,
    )
    .await;
    metrics.set_leader(false);
    if let Some(elector) = &elector
        && let Err(error) = elector.release().await
    {
        tracing::warn!(%error, "could not release the leader lease");
    }
    if outcome.is_err() {
        // Lost leadership: exit now rather than wait for a shutdown signal.
        server.abort();
        return outcome;
    }
    server
        .await
        .context("HTTP server task")?
        .context("HTTP server")
}

/// Waits for leadership, then runs the controllers while it lasts.
async fn lead(
    args: &Args,
    client: Client,
    elector: Option<&LeaderElector>,
    (metrics, verifier): (&Arc<Metrics>, Arc<dyn ArtifactVerifier>),
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    if let Some(elector) = elector {
        tracing::info!("waiting for the leader lease");
        tokio::select! {
            () = elector.acquire() => tracing::info!("became leader"),
            () = shutdown.requested() => return Ok(()),
        }
    }
    metrics.set_leader(true);
    let defaults = Defaults {
        runtime_image: args.runtime_image.clone(),
        insecure_registries: args.insecure_registries.clone(),
    };
    let controllers = run_controllers(
        client,
        args.scope(),
        metrics.clone(),
        defaults,
        verifier,
        shutdown,
    );
    let lost = async {
        match elector {
            Some(elector) => elector.hold().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = controllers => Ok(()),
        () = lost => anyhow::bail!("lost the leader lease; exiting so that a restart rejoins the election"),
    }
}

/// One ModelDeployment and one Canary controller per watched namespace (or one each for all).
async fn run_controllers(
    client: Client,
    scope: Scope,
    metrics: Arc<Metrics>,
    defaults: Defaults,
    verifier: Arc<dyn ArtifactVerifier>,
    shutdown: &Shutdown,
) {
    let namespaces = match scope {
        Scope::All => vec![None],
        Scope::Namespaces(namespaces) => namespaces.into_iter().map(Some).collect(),
    };
    let canaries = namespaces.iter().map(|namespace| {
        canary::run(
            client.clone(),
            namespace.clone(),
            metrics.clone(),
            defaults.runtime_image.clone(),
            verifier.clone(),
            shutdown.requested(),
        )
    });
    let canaries = futures::future::join_all(canaries);
    let controllers = namespaces.into_iter().map(|namespace| {
        model_deployment::run(
            client.clone(),
            namespace,
            metrics.clone(),
            defaults.clone(),
            verifier.clone(),
            shutdown.requested(),
        )
    });
    futures::future::join(futures::future::join_all(controllers), canaries).await;
}

/// The registry client and verification cache shared by every controller, from the flags.
fn registry_verifier(args: &Args, metrics: &Metrics) -> anyhow::Result<Arc<dyn ArtifactVerifier>> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let credentials = match &args.registry_credentials_file {
        Some(path) => DockerConfig::from_json(&read(path)?)
            .with_context(|| format!("{} is not a .dockerconfigjson", path.display()))?,
        None => DockerConfig::default(),
    };
    let options = RegistryOptions {
        credentials,
        ca_bundle_pem: args.registry_ca_file.as_deref().map(read).transpose()?,
        insecure_registries: args.insecure_registries.clone(),
        ..RegistryOptions::default()
    };
    let verifier = Verifier::new(args.verification_cache_ttl, Some(metrics.verification()));
    let verifier = RegistryVerifier::new(options, verifier).context("registry client")?;
    Ok(Arc::new(verifier))
}

fn default_identity() -> String {
    std::env::var("HOSTNAME")
        .unwrap_or_else(|_| format!("modelplane-operator-{}", std::process::id()))
}
