//! The operator process: HTTP server, leader election, controllers, shutdown.
//!
//! One [`Shutdown`] signal reaches every long-running task. Once it fires, the
//! controllers and the HTTP server get [`SHUTDOWN_GRACE`] to finish, then are
//! dropped; the Lease is released either way, so a standby takes over at once.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use axum::http::{HeaderValue, header};
use kube::{Api, Client, api::ListParams};
use modelplane_api::model_deployment::ModelDeployment;
use modelplane_verify::{DockerConfig, RegistryOptions, Verifier};
use tokio::sync::watch;

use crate::{
    cli::{Args, Scope},
    controller::{canary, model_deployment, tenant_quota},
    desired::Defaults,
    http::{self, Health},
    leader::{ElectionConfig, LeaderElector},
    metrics::Metrics,
    verification::{ArtifactVerifier, RegistryVerifier},
};

/// What the operator calls itself in the `User-Agent` of every request it makes.
pub const USER_AGENT: &str = concat!("modelplane-operator/", env!("CARGO_PKG_VERSION"));

/// How long running reconciles and open HTTP connections may take once shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long giving up the Lease may take on the way out.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// After a shutdown request the process exits by this deadline, whatever still runs.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// A Kubernetes client for `config` whose requests name the operator in `User-Agent`,
/// so that the API server's audit log attributes its writes.
pub fn client(mut config: kube::Config) -> kube::Result<Client> {
    config
        .headers
        .retain(|(name, _)| name != header::USER_AGENT);
    config
        .headers
        .push((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
    Client::try_from(config)
}

/// The one shutdown signal of the process, with the moment it was requested.
#[derive(Clone)]
struct Shutdown(watch::Receiver<Option<Instant>>);

impl Shutdown {
    /// A signal that fires when `trigger` resolves.
    fn on(trigger: impl Future<Output = ()> + Send + 'static) -> Self {
        let (stop, stopped) = watch::channel(None);
        tokio::spawn(async move {
            trigger.await;
            tracing::info!(grace = ?SHUTDOWN_GRACE, "shutdown requested");
            let _ = stop.send(Some(Instant::now()));
        });
        Self(stopped)
    }

    /// When shutdown was requested; waits for the request.
    fn requested_at(&self) -> impl Future<Output = Instant> + Send + Sync + 'static {
        let mut receiver = self.0.clone();
        async move {
            match receiver.wait_for(Option::is_some).await {
                Ok(at) => at.unwrap_or_else(Instant::now),
                // The sender is gone only if its task died, which also means shutting down.
                Err(_) => Instant::now(),
            }
        }
    }

    /// Resolves once shutdown was requested.
    fn requested(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let at = self.requested_at();
        async move {
            at.await;
        }
    }

    /// Runs `task` to its end, or gives up on it once the grace period after the
    /// shutdown request is over (dropping it cancels whatever it still waits on).
    async fn within_grace<T>(&self, what: &str, task: impl Future<Output = T>) -> Option<T> {
        let grace_over = async {
            let at = self.requested_at().await;
            tokio::time::sleep_until((at + SHUTDOWN_GRACE).into()).await;
        };
        tokio::select! {
            done = task => Some(done),
            () = grace_over => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "{what} did not stop in time; abandoning it");
                None
            }
        }
    }
}

/// Runs the operator until `shutdown` resolves (graceful) or it loses the leader Lease (error).
pub async fn run(
    args: Args,
    client: Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::on(shutdown);
    tokio::select! {
        installed = crds_installed(&client) => installed?,
        () = shutdown.requested() => return Ok(()),
    }

    let metrics = Arc::new(Metrics::default());
    let verifier = registry_verifier(&args, &metrics)?;
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    let mut server = tokio::spawn(http::serve(
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
    if let Some(elector) = &elector {
        release(elector).await;
    }
    if outcome.is_err() {
        // Lost leadership: exit now rather than wait for a shutdown signal.
        server.abort();
        return outcome;
    }
    match shutdown.within_grace("the HTTP server", &mut server).await {
        Some(served) => served.context("HTTP server task")?.context("HTTP server"),
        None => {
            server.abort();
            Ok(())
        }
    }
}

/// Fails with a hint when the API server does not serve ModelDeployments.
async fn crds_installed(client: &Client) -> anyhow::Result<()> {
    Api::<ModelDeployment>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .context(
            "cannot list ModelDeployments; are the CRDs installed (charts/modelplane/crds)?",
        )?;
    Ok(())
}

/// Gives the Lease up, bounded in time: a standby takes over at once instead of after expiry.
async fn release(elector: &LeaderElector) {
    match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
        Ok(Ok(true)) => tracing::info!("released the leader lease"),
        Ok(Ok(false)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not release the leader lease"),
        Err(_) => {
            tracing::warn!(timeout = ?RELEASE_TIMEOUT, "releasing the leader lease timed out")
        }
    }
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
    // A controller stopped gracefully waits for its running reconciles and, before its
    // first list arrived, for that list, which it no longer polls: it would wait forever.
    // The grace period bounds both.
    let controllers = shutdown.within_grace(
        "the controllers",
        run_controllers(
            client,
            args.scope(),
            metrics.clone(),
            defaults,
            verifier,
            Arc::new(canary::Analyzer::new(args.prometheus_url.clone())),
            shutdown,
        ),
    );
    let lost = async {
        match elector {
            Some(elector) => elector.hold().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = controllers => Ok(()),
        () = lost => anyhow::bail!("lost the leader lease; exiting so that a restart rejoins the election"),
    }
}

/// One ModelDeployment and one Canary controller per watched namespace (or one each for all),
/// and one TenantQuota controller over all of them.
async fn run_controllers(
    client: Client,
    scope: Scope,
    metrics: Arc<Metrics>,
    defaults: Defaults,
    verifier: Arc<dyn ArtifactVerifier>,
    analyzer: Arc<canary::Analyzer>,
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
            analyzer.clone(),
            shutdown.requested(),
        )
    });
    let canaries = futures::future::join_all(canaries);
    let quotas = tenant_quota::run(
        client.clone(),
        namespaces.clone(),
        metrics.clone(),
        shutdown.requested(),
    );
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
    futures::future::join3(futures::future::join_all(controllers), canaries, quotas).await;
}

/// The registry client and verification cache shared by every controller, from the flags.
fn registry_verifier(args: &Args, metrics: &Metrics) -> anyhow::Result<Arc<dyn ArtifactVerifier>> {
    let verifier = Verifier::new(args.verification_cache_ttl, Some(metrics.verification()));
    let verifier =
        RegistryVerifier::new(registry_options(args)?, verifier).context("registry client")?;
    Ok(Arc::new(verifier))
}

/// How the operator's registry clients are set up, from the flags.
pub fn registry_options(args: &Args) -> anyhow::Result<RegistryOptions> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let credentials = match &args.registry_credentials_file {
        Some(path) => DockerConfig::from_json(&read(path)?)
            .with_context(|| format!("{} is not a .dockerconfigjson", path.display()))?,
        None => DockerConfig::default(),
    };
    Ok(RegistryOptions {
        credentials,
        ca_bundle_pem: args.registry_ca_file.as_deref().map(read).transpose()?,
        insecure_registries: args.insecure_registries.clone(),
        user_agent: USER_AGENT.into(),
        ..RegistryOptions::default()
    })
}

fn default_identity() -> String {
    std::env::var("HOSTNAME")
        .unwrap_or_else(|_| format!("modelplane-operator-{}", std::process::id()))
}
