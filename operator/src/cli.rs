//! Command-line flags (each also settable by environment variable).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use modelplane_config::units::parse_duration;

/// Default runtime image used when a ModelDeployment does not name one.
pub const DEFAULT_RUNTIME_IMAGE: &str =
    concat!("ghcr.io/modelplane/runtime:", env!("CARGO_PKG_VERSION"));

/// `modelplane-operator`: reconciles ModelDeployments into modelplane-runtime pods.
#[derive(Debug, Clone, Parser)]
#[command(name = "modelplane-operator", version, about)]
pub struct Args {
    /// Namespaces to watch (comma separated); empty watches all namespaces.
    #[arg(long, env = "MODELPLANE_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Log filter in `tracing` EnvFilter syntax, e.g. `info` or `modelplane_operator=debug,info`.
    #[arg(long, env = "MODELPLANE_LOG", default_value = "info")]
    pub log_level: String,

    /// Log output format.
    #[arg(long, env = "MODELPLANE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Address of the HTTP server for `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "MODELPLANE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Run leader election so that only one replica reconciles.
    #[arg(long, env = "MODELPLANE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(
        long,
        env = "MODELPLANE_LEASE_NAME",
        default_value = "modelplane-operator"
    )]
    pub lease_name: String,

    /// Namespace of the Lease; defaults to the pod's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// How long a Lease stays valid without renewal; a standby takes over after it.
    #[arg(long, env = "MODELPLANE_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How often the holder renews and a standby retries.
    #[arg(long, env = "MODELPLANE_LEASE_RETRY", default_value = "2s", value_parser = parse_duration)]
    pub lease_retry: Duration,

    /// Identity written into the Lease; defaults to the pod name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Runtime image used when a ModelDeployment leaves `spec.runtime.image` empty.
    #[arg(long, env = "MODELPLANE_RUNTIME_IMAGE", default_value = DEFAULT_RUNTIME_IMAGE)]
    pub runtime_image: String,

    /// Registry reached over plain HTTP instead of HTTPS (`host[:port]`; repeatable).
    #[arg(
        long = "insecure-registry",
        env = "MODELPLANE_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,

    /// PEM file of extra CA certificates trusted for registry TLS (private registries).
    #[arg(long, env = "MODELPLANE_REGISTRY_CA_FILE")]
    pub registry_ca_file: Option<PathBuf>,

    /// Registry credentials, a `.dockerconfigjson` file (e.g. a mounted pull Secret).
    #[arg(long, env = "MODELPLANE_REGISTRY_CREDENTIALS_FILE")]
    pub registry_credentials_file: Option<PathBuf>,

    /// How long a successful signature verification is trusted for the same digest and keys.
    #[arg(long, env = "MODELPLANE_VERIFICATION_CACHE_TTL", default_value = "60m", value_parser = parse_duration)]
    pub verification_cache_ttl: Duration,

    /// Prometheus base URL (e.g. `http://prometheus.monitoring:9090`) for Canaries with
    /// `analysis.source: prometheus` and custom metrics; unset: only the `pods` source works.
    #[arg(long, env = "MODELPLANE_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable text (for a terminal).
    Text,
}

/// The namespaces the controllers watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace in the cluster.
    All,
    /// Only the listed namespaces.
    Namespaces(Vec<String>),
}

impl Args {
    /// The watch scope the flags describe.
    pub fn scope(&self) -> Scope {
        let namespaces: Vec<String> = self
            .namespaces
            .iter()
            .map(|ns| ns.trim().to_owned())
            .filter(|ns| !ns.is_empty())
            .collect();
        if namespaces.is_empty() {
            Scope::All
        } else {
            Scope::Namespaces(namespaces)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("modelplane-operator").chain(args.iter().copied()))
            .expect("flags parse")
    }

    #[test]
    fn no_namespaces_means_all_namespaces() {
        assert_eq!(parse(&[]).scope(), Scope::All);
    }

    #[test]
    fn namespace_list_is_split_on_commas() {
        let args = parse(&["--namespaces", "team-a, team-b,"]);
        assert_eq!(
            args.scope(),
            Scope::Namespaces(vec!["team-a".into(), "team-b".into()])
        );
    }

    #[test]
    fn leader_election_can_be_switched_off() {
        assert!(parse(&[]).leader_elect);
        assert!(!parse(&["--leader-elect", "false"]).leader_elect);
    }

    #[test]
    fn insecure_registries_repeat_and_split() {
        let args = parse(&[
            "--insecure-registry",
            "127.0.0.1:5000",
            "--insecure-registry",
            "a.local,b.local",
        ]);
        assert_eq!(
            args.insecure_registries,
            ["127.0.0.1:5000", "a.local", "b.local"]
        );
        assert_eq!(args.verification_cache_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn lease_durations_accept_units() {
        let args = parse(&["--lease-duration", "30s", "--lease-retry", "500ms"]);
        assert_eq!(args.lease_duration, Duration::from_secs(30));
        assert_eq!(args.lease_retry, Duration::from_millis(500));
    }

    #[test]
    fn duration_flags_take_the_crd_notation() {
        let args = parse(&[
            "--lease-duration",
            "1m30s",
            "--lease-retry",
            "1.5s",
            "--verification-cache-ttl",
            "1h2m3.5s",
        ]);
        assert_eq!(args.lease_duration, Duration::from_secs(90));
        assert_eq!(args.lease_retry, Duration::from_millis(1_500));
        assert_eq!(
            args.verification_cache_ttl,
            Duration::from_millis(3_723_500)
        );
        let refused = Args::try_parse_from(["modelplane-operator", "--lease-retry", "2 s"])
            .expect_err("not a duration");
        assert!(refused.to_string().contains("\"2 s\""), "{refused}");
    }
}
