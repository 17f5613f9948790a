//! Wiring: shared state, listeners for REST, gRPC and metrics, the reloader, and
//! graceful shutdown.

mod http;
mod metadata;
mod rejection;
mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::serve::ListenerExt;
use modelplane_config::{ConfigError, RuntimeConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

pub use metadata::{
    ModelMeta, ServerMeta, TensorMeta, VersionStatus, model_metadata, server_metadata,
};
pub use status::{http_headers, http_status};

use crate::catalog::Catalog;
use crate::identity::{Authenticator, IdentityError};
use crate::metrics::Metrics;
use crate::protocol::grpc::{
    GrpcService, pb::grpc_inference_service_server::GrpcInferenceServiceServer,
};
use crate::reload::Reloader;
use crate::tenancy::Tenancy;

/// What every handler shares: the current catalog and the metrics.
pub struct AppState {
    /// The models served right now; replaced as a whole on every change.
    pub catalog: ArcSwap<Catalog>,
    /// Prometheus series.
    pub metrics: Metrics,
    /// Maps requests to tenants; replaced as a whole when the identity config or its
    /// key files change (`identity::Watch`).
    pub authenticator: ArcSwap<Authenticator>,
    /// Per-tenant budgets and fair-queuing settings; updated in place on config changes.
    pub tenancy: Tenancy,
    /// Channels of the `grpc` fallback hops, by address.
    pub remotes: crate::serve::remote::Remotes,
}

impl AppState {
    /// Nothing served yet, with fresh metrics.
    pub fn new() -> Self {
        Self {
            catalog: ArcSwap::from_pointee(Catalog::default()),
            metrics: Metrics::new(),
            authenticator: ArcSwap::from_pointee(Authenticator::default()),
            tenancy: Tenancy::default(),
            remotes: crate::serve::remote::Remotes::default(),
        }
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the config comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// A YAML file, watched for changes.
    File(PathBuf),
    /// A config built in memory (the `--model` shortcut, tests); model files are still watched.
    Inline(Box<RuntimeConfig>),
}

impl ConfigSource {
    /// Reads and validates the config.
    pub fn load(&self) -> Result<RuntimeConfig, StartError> {
        match self {
            Self::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| StartError::ReadConfig {
                        path: path.clone(),
                        source,
                    })?;
                Ok(RuntimeConfig::from_yaml(&text)?)
            }
            Self::Inline(config) => {
                config.validate()?;
                Ok((**config).clone())
            }
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file cannot be read.
    #[error("cannot read config {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The identity config or a key file it names is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A listen address is taken or invalid.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A started server: its bound addresses and the handle to stop it.
pub struct Running {
    /// Bound REST address.
    pub http_addr: SocketAddr,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound metrics address, when separate from REST.
    pub metrics_addr: Option<SocketAddr>,
    /// Shared state (tests inspect the catalog and metrics).
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    initial_load: Option<oneshot::Receiver<Vec<String>>>,
    grace: std::time::Duration,
}

impl Running {
    /// Waits for the first load of every model; returns one line per model left with
    /// no serving version (empty when everything loaded). Later calls return at once.
    pub async fn initial_load(&mut self) -> Vec<String> {
        match self.initial_load.take() {
            Some(receiver) => receiver.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to the shutdown grace), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(self.grace, all).await.is_err() {
            tracing::warn!(grace = ?self.grace, "in-flight requests did not finish within the shutdown grace");
        }
    }
}

/// A bound listener and the address it got.
struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

async fn bind(addr: &str) -> Result<Bound, StartError> {
    let error = |source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let addr = listener.local_addr().map_err(error)?;
    Ok(Bound { listener, addr })
}

/// Loads the config, binds every listener, and starts serving; models load in the
/// background and the server reports ready once each has a version.
pub async fn start(source: ConfigSource) -> Result<Running, StartError> {
    let config = source.load()?;
    let threads =
        crate::cgroup::PodCgroup::current().intra_op_threads(config.server.intra_op_threads);
    tch::set_num_threads(i32::try_from(threads).unwrap_or(1));
    tracing::info!(threads, "libtorch intra-op threads");
    let state = Arc::new(AppState::new());
    state.tenancy.update(
        &config.tenants,
        &config.fairness,
        config.identity.anonymous_tenant(),
        std::time::Instant::now(),
    );
    let authenticator = Authenticator::new(&config.identity)?;
    tracing::info!(identity = %authenticator.summary(), "identity");
    state.authenticator.store(Arc::new(authenticator));
    let http = bind(&config.server.http).await?;
    let grpc = bind(&config.server.grpc).await?;
    let metrics = match &config.server.metrics {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let (http_addr, grpc_addr, metrics_addr) =
        (http.addr, grpc.addr, metrics.as_ref().map(|m| m.addr));

    let (stop, stopped) = watch::channel(false);
    let grace = config.server.shutdown_grace.get();
    let grpc_service = grpc_service(&config, Arc::clone(&state));
    let mut tasks = Vec::new();
    let (initial_tx, initial_rx) = oneshot::channel();
    let reloader = Reloader::new(source, config, Arc::clone(&state));
    tasks.push(tokio::spawn(reloader.run(stopped.clone(), initial_tx)));
    let router = http::router(Arc::clone(&state), metrics.is_none());
    tasks.push(tokio::spawn(serve_http(
        http.listener,
        router,
        stopped.clone(),
    )));
    if let Some(metrics) = metrics {
        let router =
            rejection::with_error_bodies(http::metrics_router().with_state(Arc::clone(&state)));
        tasks.push(tokio::spawn(serve_http(
            metrics.listener,
            router,
            stopped.clone(),
        )));
    }
    tasks.push(tokio::spawn(serve_grpc(
        grpc.listener,
        grpc_service,
        stopped,
    )));
    tracing::info!(%http_addr, %grpc_addr, ?metrics_addr, "serving");
    let initial_load = Some(initial_rx);
    Ok(Running {
        http_addr,
        grpc_addr,
        metrics_addr,
        state,
        stop,
        tasks,
        initial_load,
        grace,
    })
}

/// The gRPC service, taking messages as large as the largest model body limit.
fn grpc_service(
    config: &RuntimeConfig,
    state: Arc<AppState>,
) -> GrpcInferenceServiceServer<GrpcService> {
    let largest = config
        .models
        .iter()
        .map(|m| m.limits.max_body_bytes)
        .max()
        .unwrap_or(0)
        .max(4 << 20);
    GrpcInferenceServiceServer::new(GrpcService::new(state))
        .max_decoding_message_size(usize::try_from(largest).unwrap_or(usize::MAX))
        .max_encoding_message_size(usize::MAX)
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn serve_http(listener: TcpListener, router: axum::Router, stop: watch::Receiver<bool>) {
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(stopped(stop))
        .await;
    if let Err(err) = served {
        tracing::error!(error = %err, "REST server failed");
    }
}

async fn serve_grpc(
    listener: TcpListener,
    service: GrpcInferenceServiceServer<GrpcService>,
    stop: watch::Receiver<bool>,
) {
    // Accepted sockets need TCP_NODELAY themselves (the builder's setting only reaches
    // listeners tonic binds): small responses otherwise wait out delayed ACKs.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    // HTTP/2's default 64 KiB windows make a larger tensor wait a WINDOW_UPDATE round
    // trip per window; 1 MiB per stream (2 MiB per connection) sends a classifier input
    // in one go.
    let served = tonic::transport::Server::builder()
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(2 << 20)
        .layer(crate::serve::notes::NotesLayer)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stopped(stop))
        .await;
    if let Err(err) = served {
        tracing::error!(error = %err, "gRPC server failed");
    }
}
