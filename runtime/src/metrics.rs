//! Prometheus metrics: one registry per process, handles resolved once per model version
//! so the request path only touches atomics and a histogram lock.
//!
//! Every per-request series carries `model` and `version`. The route step counts its
//! decisions in `modelplane_route_decisions_total{model,version,reason}` (`reason`: see
//! [`RouteReason`]), so a canary's traffic split shows per version and per cause; a
//! generation model also counts `modelplane_generate_empty_outputs_total` (see
//! [`modelplane_generate::metrics`]).

use std::sync::atomic::AtomicU64;

use modelplane_generate::metrics::{GenerationFamilies, GenerationMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::serve::RouteReason;
use crate::serve::breaker::Transition;

/// Labels of every per-version series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// Model name.
    pub model: String,
    /// Version label.
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    model: String,
    version: String,
    tenant: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    model: String,
    version: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HopLabels {
    model: String,
    version: String,
    hop: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    model: String,
    version: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

type HistogramFamily = Family<VersionLabels, Histogram, fn() -> Histogram>;

/// All series the runtime exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    request_duration: HistogramFamily,
    queue_duration: HistogramFamily,
    compute_duration: HistogramFamily,
    batch_size: HistogramFamily,
    queue_length: Family<VersionLabels, Gauge>,
    in_flight: Family<VersionLabels, Gauge>,
    breaker_state: Family<VersionLabels, Gauge>,
    breaker_opened: Family<RouteLabels, Counter>,
    fallbacks: Family<HopLabels, Counter>,
    concurrency_limit: Family<VersionLabels, Gauge>,
    route_decisions: Family<RouteLabels, Counter>,
    load_seconds: Family<VersionLabels, Gauge<f64, AtomicU64>>,
    load_failures: Family<VersionLabels, Counter>,
    state: Family<StateLabels, Gauge>,
    config_reload_failures: Counter,
    auth_failures: Family<ReasonLabels, Counter>,
    identity_reload_failures: Counter,
    /// The pod's cgroup v2 figures, read at every scrape, and the tenant slices' state.
    pub cgroup: crate::cgroup::CgroupMetrics,
    generation: GenerationFamilies,
    /// Model signature verification outcomes.
    pub signing: crate::signing::SigningMetrics,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(25e-6, 2.0, 20))
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// The states a version's `modelplane_model_state` series can be in.
pub const STATES: [&str; 3] = ["loading", "ready", "failed"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every series.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let generation = GenerationFamilies::register(&mut registry);
        let mut metrics = Self {
            registry,
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            queue_duration: Family::new_with_constructor(latency_histogram),
            compute_duration: Family::new_with_constructor(latency_histogram),
            batch_size: Family::new_with_constructor(batch_histogram),
            breaker_state: Family::default(),
            breaker_opened: Family::default(),
            fallbacks: Family::default(),
            concurrency_limit: Family::default(),
            queue_length: Family::default(),
            in_flight: Family::default(),
            route_decisions: Family::default(),
            load_seconds: Family::default(),
            load_failures: Family::default(),
            state: Family::default(),
            config_reload_failures: Counter::default(),
            auth_failures: Family::default(),
            identity_reload_failures: Counter::default(),
            cgroup: crate::cgroup::CgroupMetrics::default(),
            generation,
            signing: crate::signing::SigningMetrics::default(),
        };
        metrics.register_request_series();
        metrics.register_process_series();
        metrics
    }

    fn register_request_series(&mut self) {
        let r = &mut self.registry;
        r.register(
            "modelplane_requests",
            "Inference requests by outcome",
            self.requests.clone(),
        );
        r.register(
            "modelplane_request_duration_seconds",
            "Inference request duration, admission to response",
            self.request_duration.clone(),
        );
        r.register(
            "modelplane_queue_duration_seconds",
            "Time queued before a forward",
            self.queue_duration.clone(),
        );
        r.register(
            "modelplane_compute_duration_seconds",
            "Forward pass duration per batch",
            self.compute_duration.clone(),
        );
        r.register(
            "modelplane_batch_size",
            "Rows per forward pass",
            self.batch_size.clone(),
        );
        r.register(
            "modelplane_queue_length",
            "Requests waiting for a forward",
            self.queue_length.clone(),
        );
        r.register(
            "modelplane_in_flight",
            "Requests admitted and not yet answered",
            self.in_flight.clone(),
        );
        r.register(
            "modelplane_concurrency_limit",
            "The version's adaptive in-flight limit now (limits.adaptive)",
            self.concurrency_limit.clone(),
        );
        r.register(
            "modelplane_breaker_state",
            "Circuit breaker of the version: 0 closed, 1 half-open, 2 open",
            self.breaker_state.clone(),
        );
        r.register(
            "modelplane_breaker_opened",
            "Times the version's circuit breaker opened, by why \
             (error_rate, baseline, probe)",
            self.breaker_opened.clone(),
        );
        r.register(
            "modelplane_fallback_requests",
            "Requests for the version sent down a fallback hop while its breaker \
             was open (hop: stable, model:<name>, grpc:<model>, response; a request \
             a grpc hop failed counts again under the response that stood in)",
            self.fallbacks.clone(),
        );
        r.register(
            "modelplane_route_decisions",
            "Requests routed to a version, by why the route picked it \
             (named, default, match, sticky, weight)",
            self.route_decisions.clone(),
        );
    }

    fn register_process_series(&mut self) {
        let r = &mut self.registry;
        self.signing.register(r);
        r.register(
            "modelplane_model_load_seconds",
            "Duration of the last successful load",
            self.load_seconds.clone(),
        );
        r.register(
            "modelplane_model_load_failures",
            "Failed model loads",
            self.load_failures.clone(),
        );
        r.register(
            "modelplane_model_state",
            "1 for the state a version is in",
            self.state.clone(),
        );
        r.register(
            "modelplane_config_reload_failures",
            "Config files that failed to parse",
            self.config_reload_failures.clone(),
        );
        r.register(
            "modelplane_auth_failures",
            "Requests refused by identity (401, 403) by reason",
            self.auth_failures.clone(),
        );
        r.register(
            "modelplane_identity_reload_failures",
            "Identity rebuilds (config or key files changed) that failed; the previous one serves",
            self.identity_reload_failures.clone(),
        );
        self.cgroup.register(r);
    }

    /// Handles for one model version.
    pub fn version(&self, model: &str, version: &str) -> VersionMetrics {
        let labels = VersionLabels {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        let route = RouteReason::ALL.map(|reason| {
            self.route_decisions.get_or_create_owned(&RouteLabels {
                model: model.to_owned(),
                version: version.to_owned(),
                reason: reason.as_str(),
            })
        });
        VersionMetrics {
            route,
            requests: self.requests.clone(),
            request_duration: self.request_duration.get_or_create_owned(&labels),
            queue_duration: self.queue_duration.get_or_create_owned(&labels),
            compute_duration: self.compute_duration.get_or_create_owned(&labels),
            batch_size: self.batch_size.get_or_create_owned(&labels),
            queue_length: self.queue_length.get_or_create_owned(&labels),
            in_flight: self.in_flight.get_or_create_owned(&labels),
            breaker_state: self.breaker_state.get_or_create_owned(&labels),
            breaker_opened: self.breaker_opened.clone(),
            concurrency_limit: self.concurrency_limit.clone(),
            fallbacks: self.fallbacks.clone(),
            labels,
        }
    }

    /// The generation series (`gen_ai_server_*`, KV cache) of one `generate` model version.
    pub fn generation(&self, model: &str, version: &str) -> GenerationMetrics {
        self.generation.for_version(model, version)
    }

    /// Records the state a version is in (and clears its other states).
    pub fn set_state(&self, model: &str, version: &str, state: &str) {
        for candidate in STATES {
            let labels = StateLabels {
                model: model.to_owned(),
                version: version.to_owned(),
                state: candidate.to_owned(),
            };
            self.state
                .get_or_create(&labels)
                .set(i64::from(candidate == state));
        }
    }

    /// Records a successful load and how long it took.
    pub fn loaded(&self, model: &str, version: &str, seconds: f64) {
        let labels = VersionLabels {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        self.load_seconds.get_or_create(&labels).set(seconds);
        self.set_state(model, version, "ready");
    }

    /// Counts a failed load.
    pub fn load_failed(&self, model: &str, version: &str) {
        let labels = VersionLabels {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        self.load_failures.get_or_create(&labels).inc();
    }

    /// Counts a config file that did not parse or validate.
    pub fn config_reload_failed(&self) {
        self.config_reload_failures.inc();
    }

    /// Counts a request refused by identity, before routing (so under no version).
    pub fn auth_failed(&self, reason: &str) {
        let labels = ReasonLabels {
            reason: reason.to_owned(),
        };
        self.auth_failures.get_or_create(&labels).inc();
    }

    /// Counts an identity rebuild that failed (the previous authenticator serves on).
    pub fn identity_reload_failed(&self) {
        self.identity_reload_failures.inc();
    }

    /// Renders the text exposition format (cgroup figures are read now).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn outcome(labels: &VersionLabels, tenant: &str, outcome: &str) -> OutcomeLabels {
    OutcomeLabels {
        model: labels.model.clone(),
        version: labels.version.clone(),
        tenant: tenant.to_owned(),
        outcome: outcome.to_owned(),
    }
}

/// Pre-resolved series of one model version.
#[derive(Clone)]
pub struct VersionMetrics {
    labels: VersionLabels,
    requests: Family<OutcomeLabels, Counter>,
    /// Admission to response.
    pub request_duration: Histogram,
    /// Time queued before a forward.
    pub queue_duration: Histogram,
    /// Forward pass duration per batch.
    pub compute_duration: Histogram,
    /// Rows per forward.
    pub batch_size: Histogram,
    /// Requests waiting for a forward.
    pub queue_length: Gauge,
    /// Requests admitted and not yet answered.
    pub in_flight: Gauge,
    /// Route decisions by [`RouteReason::index`].
    route: [Counter; RouteReason::ALL.len()],
    breaker_state: Gauge,
    concurrency_limit: Family<VersionLabels, Gauge>,
    breaker_opened: Family<RouteLabels, Counter>,
    fallbacks: Family<HopLabels, Counter>,
}

impl VersionMetrics {
    /// Counts a request the route step sent to this version, and why.
    pub fn routed(&self, reason: RouteReason) {
        self.route[reason.index()].inc();
    }

    /// Shows the version's breaker moving, and counts why it opened.
    pub fn breaker_moved(&self, transition: &Transition) {
        self.breaker_state.set(transition.phase().gauge());
        if let Transition::Opened { reason, .. } = transition {
            self.breaker_opened
                .get_or_create(&RouteLabels {
                    model: self.labels.model.clone(),
                    version: self.labels.version.clone(),
                    reason: reason.as_str(),
                })
                .inc();
        }
    }

    /// Shows the version's adaptive in-flight limit (the series exists only for
    /// versions that have one).
    pub fn set_concurrency_limit(&self, limit: usize) {
        self.concurrency_limit
            .get_or_create(&self.labels)
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// Counts a request for this version that fallback `hop` (its label) served.
    pub fn fell_back(&self, hop: &str) {
        self.fallbacks
            .get_or_create(&HopLabels {
                model: self.labels.model.clone(),
                version: self.labels.version.clone(),
                hop: hop.to_owned(),
            })
            .inc();
    }

    /// Counts a finished request of `tenant` (its bounded label, see
    /// [`crate::tenancy::Tenancy::label`]) by outcome (`success` or an error's metric label).
    pub fn count(&self, tenant: &str, outcome_label: &str) {
        self.requests
            .get_or_create(&outcome(&self.labels, tenant, outcome_label))
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_series_appear_in_the_exposition() {
        let metrics = Metrics::new();
        let version = metrics.version("mlp", "1");
        version.count("anonymous", "success");
        version.count("team-a", "bad_request");
        version.batch_size.observe(4.0);
        metrics.set_state("mlp", "1", "ready");
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"modelplane_requests_total{model="mlp",version="1",tenant="anonymous",outcome="success"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"tenant="team-a",outcome="bad_request"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modelplane_batch_size_count{model="mlp",version="1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modelplane_model_state{model="mlp",version="1",state="ready"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"state="failed"} 0"#), "{text}");
    }

    #[test]
    fn route_decisions_are_counted_per_version_and_reason() {
        let metrics = Metrics::new();
        let (stable, candidate) = (metrics.version("m", "1"), metrics.version("m", "2"));
        stable.routed(RouteReason::Weight);
        stable.routed(RouteReason::Weight);
        candidate.routed(RouteReason::Match);
        // A reloaded instance of the same version counts into the same series.
        metrics.version("m", "2").routed(RouteReason::Match);
        let text = metrics.encode();
        for expected in [
            r#"modelplane_route_decisions_total{model="m",version="1",reason="weight"} 2"#,
            r#"modelplane_route_decisions_total{model="m",version="2",reason="match"} 2"#,
            r#"modelplane_route_decisions_total{model="m",version="2",reason="sticky"} 0"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }

    #[test]
    fn a_failed_load_is_counted() {
        let metrics = Metrics::new();
        metrics.load_failed("mlp", "2");
        let text = metrics.encode();
        assert!(
            text.contains(r#"modelplane_model_load_failures_total{model="mlp",version="2"} 1"#),
            "{text}"
        );
    }
}
