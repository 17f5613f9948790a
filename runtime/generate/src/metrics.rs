//! Prometheus series of the generation engine.
//!
//! The three latency histograms are the OpenTelemetry gen_ai server metrics
//! (`gen_ai.server.time_to_first_token`, `gen_ai.server.time_per_output_token`,
//! `gen_ai.server.request.duration`) under their Prometheus names, with the bucket
//! boundaries the semantic conventions advise. The rest (tokens, requests by
//! outcome, queue and KV cache gauges) have no gen_ai equivalent and live under
//! `modelplane_generate_`. Every series carries the labels `model` and `version`.
//!
//! `modelplane_generate_empty_outputs_total` counts the generations that finished
//! normally (outcome `stop` or `length`) yet gave the client nothing to read: no output
//! token, or output text that is empty or whitespace only (an eos or a stop sequence
//! first, say). Its rate over `modelplane_generate_requests_total{outcome=~"stop|length"}`
//! is a canary analysis's empty-output rate, per version.
//!
//! During a hot swap an old and a new engine of the same model version run side by
//! side and share those labels, so each engine adds its own share to the gauges
//! ([`GaugeShare`]) instead of setting them: the series is the sum over the engines
//! alive, and an engine that stops takes its share back.
//!
//! Three unlabeled series sum every engine of the process, for a load balancer that
//! reads one number a pod: the Gateway API inference extension's endpoint picker (its
//! model server protocol's TotalQueuedRequests, TotalRunningRequests and
//! KVCacheUtilization; docs/runtime.md, "Behind an InferencePool"):
//! `modelplane_server_queued_requests`, `modelplane_server_running_requests` and
//! `modelplane_server_kv_cache_usage_ratio` (KV cache bytes reserved over allocated,
//! 0 to 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `gen_ai.server.time_to_first_token` advisory bucket boundaries (seconds).
pub const TIME_TO_FIRST_TOKEN_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// `gen_ai.server.time_per_output_token` advisory bucket boundaries (seconds).
pub const TIME_PER_OUTPUT_TOKEN_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// `gen_ai.server.request.duration` advisory bucket boundaries (seconds).
pub const REQUEST_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    model: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    version: String,
    /// `input` or `output`, the values of OpenTelemetry's `gen_ai.token.type`.
    gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    model: String,
    version: String,
    outcome: &'static str,
}

type HistogramFamily = Family<VersionLabels, Histogram, fn() -> Histogram>;

fn time_to_first_token_histogram() -> Histogram {
    Histogram::new(TIME_TO_FIRST_TOKEN_BUCKETS)
}

fn time_per_output_token_histogram() -> Histogram {
    Histogram::new(TIME_PER_OUTPUT_TOKEN_BUCKETS)
}

fn request_duration_histogram() -> Histogram {
    Histogram::new(REQUEST_DURATION_BUCKETS)
}

/// How a generation request ended, the `outcome` label of the requests counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An eos token or a stop sequence ended it.
    Stop,
    /// It reached `max_tokens`.
    Length,
    /// The client went away.
    Cancelled,
    /// Its deadline passed.
    DeadlineExceeded,
    /// A model step failed.
    Error,
    /// It gave its place in a full queue to a request that ranked above it.
    Shed,
}

impl Outcome {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Shed => "shed",
            Self::Error => "error",
        }
    }
}

/// The process-wide sums of every engine's gauges (module docs).
#[derive(Clone, Debug, Default)]
struct ServerTotals {
    queued: Gauge,
    running: Gauge,
    /// Not exported: the parts of `kv_usage`.
    kv_bytes_used: Gauge,
    kv_bytes_total: Gauge,
    kv_usage: Gauge<f64, AtomicU64>,
}

impl ServerTotals {
    /// Recomputes the usage ratio from the byte sums (0 with nothing allocated).
    fn update_kv_usage(&self) {
        let (used, total) = (self.kv_bytes_used.get(), self.kv_bytes_total.get());
        let ratio = if total > 0 {
            (used as f64 / total as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.kv_usage.set(ratio);
    }
}

/// The metric families of generation, registered once per process.
#[derive(Clone)]
pub struct GenerationFamilies {
    time_to_first_token: HistogramFamily,
    time_per_output_token: HistogramFamily,
    request_duration: HistogramFamily,
    tokens: Family<TokenLabels, Counter>,
    requests: Family<OutcomeLabels, Counter>,
    empty_outputs: Family<VersionLabels, Counter>,
    prefix_queries: Family<VersionLabels, Counter>,
    prefix_hits: Family<VersionLabels, Counter>,
    running: Family<VersionLabels, Gauge>,
    waiting: Family<VersionLabels, Gauge>,
    kv_slots_used: Family<VersionLabels, Gauge>,
    kv_slots_total: Family<VersionLabels, Gauge>,
    kv_bytes_used: Family<VersionLabels, Gauge>,
    kv_bytes_total: Family<VersionLabels, Gauge>,
    server: ServerTotals,
}

impl GenerationFamilies {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let families = Self {
            time_to_first_token: Family::new_with_constructor(time_to_first_token_histogram),
            time_per_output_token: Family::new_with_constructor(time_per_output_token_histogram),
            request_duration: Family::new_with_constructor(request_duration_histogram),
            tokens: Family::default(),
            requests: Family::default(),
            empty_outputs: Family::default(),
            prefix_queries: Family::default(),
            prefix_hits: Family::default(),
            running: Family::default(),
            waiting: Family::default(),
            kv_slots_used: Family::default(),
            kv_slots_total: Family::default(),
            kv_bytes_used: Family::default(),
            kv_bytes_total: Family::default(),
            server: ServerTotals::default(),
        };
        families.register_latencies(registry);
        families.register_counts(registry);
        families
    }

    fn register_latencies(&self, r: &mut Registry) {
        r.register(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to generate first token for successful responses",
            self.time_to_first_token.clone(),
        );
        r.register(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token generated after the first token for successful responses",
            self.time_per_output_token.clone(),
        );
        r.register(
            "gen_ai_server_request_duration_seconds",
            "Generation request duration, arrival to last output token, of successful responses",
            self.request_duration.clone(),
        );
    }

    fn register_counts(&self, r: &mut Registry) {
        r.register(
            "modelplane_generate_tokens",
            "Prompt (input) tokens admitted and completion (output) tokens generated",
            self.tokens.clone(),
        );
        r.register(
            "modelplane_generate_requests",
            "Finished generation requests by outcome",
            self.requests.clone(),
        );
        r.register(
            "modelplane_generate_empty_outputs",
            "Generations that finished normally (stop or length) with no output token or \
             whitespace-only text",
            self.empty_outputs.clone(),
        );
        r.register(
            "modelplane_generate_prefix_cache_queries",
            "Prompt tokens of admitted requests looked up in the prefix cache",
            self.prefix_queries.clone(),
        );
        r.register(
            "modelplane_generate_prefix_cache_hits",
            "Prompt tokens whose keys and values were reused from the prefix cache, not prefilled",
            self.prefix_hits.clone(),
        );
        r.register(
            "modelplane_generate_running_requests",
            "Requests holding a KV cache slot",
            self.running.clone(),
        );
        r.register(
            "modelplane_generate_waiting_requests",
            "Requests queued for a KV cache slot",
            self.waiting.clone(),
        );
        r.register(
            "modelplane_generate_kv_cache_slots_used",
            "KV cache slots held by requests",
            self.kv_slots_used.clone(),
        );
        r.register(
            "modelplane_generate_kv_cache_slots_total",
            "KV cache slots allocated",
            self.kv_slots_total.clone(),
        );
        r.register(
            "modelplane_generate_kv_cache_used_bytes",
            "KV cache memory reserved by the slots in use",
            self.kv_bytes_used.clone(),
        );
        r.register(
            "modelplane_generate_kv_cache_total_bytes",
            "KV cache memory allocated",
            self.kv_bytes_total.clone(),
        );
        r.register(
            "modelplane_server_queued_requests",
            "Generation requests queued for a KV cache slot, every model of the process",
            self.server.queued.clone(),
        );
        r.register(
            "modelplane_server_running_requests",
            "Generation requests holding a KV cache slot, every model of the process",
            self.server.running.clone(),
        );
        r.register(
            "modelplane_server_kv_cache_usage_ratio",
            "KV cache memory reserved over allocated, every model of the process (0 to 1)",
            self.server.kv_usage.clone(),
        );
    }

    /// Handles of one model version's series for one engine: call it once per engine
    /// (an engine's gauges are its share of the version's series).
    pub fn for_version(&self, model: &str, version: &str) -> GenerationMetrics {
        let labels = VersionLabels {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        let tokens = |gen_ai_token_type| TokenLabels {
            model: model.to_owned(),
            version: version.to_owned(),
            gen_ai_token_type,
        };
        GenerationMetrics {
            time_to_first_token: self.time_to_first_token.get_or_create_owned(&labels),
            time_per_output_token: self.time_per_output_token.get_or_create_owned(&labels),
            request_duration: self.request_duration.get_or_create_owned(&labels),
            input_tokens: self.tokens.get_or_create_owned(&tokens("input")),
            output_tokens: self.tokens.get_or_create_owned(&tokens("output")),
            requests: self.requests.clone(),
            empty_outputs: self.empty_outputs.get_or_create_owned(&labels),
            prefix_queries: self.prefix_queries.get_or_create_owned(&labels),
            prefix_hits: self.prefix_hits.get_or_create_owned(&labels),
            running: GaugeShare::new(self.running.get_or_create_owned(&labels)),
            waiting: GaugeShare::new(self.waiting.get_or_create_owned(&labels)),
            kv_slots_used: GaugeShare::new(self.kv_slots_used.get_or_create_owned(&labels)),
            kv_slots_total: GaugeShare::new(self.kv_slots_total.get_or_create_owned(&labels)),
            kv_bytes_used: GaugeShare::new(self.kv_bytes_used.get_or_create_owned(&labels)),
            kv_bytes_total: GaugeShare::new(self.kv_bytes_total.get_or_create_owned(&labels)),
            server_queued: GaugeShare::new(self.server.queued.clone()),
            server_running: GaugeShare::new(self.server.running.clone()),
            server_kv_bytes_used: GaugeShare::new(self.server.kv_bytes_used.clone()),
            server_kv_bytes_total: GaugeShare::new(self.server.kv_bytes_total.clone()),
            server: self.server.clone(),
            labels,
        }
    }
}

/// One engine's part of a gauge that every engine of a model version adds to.
/// Clones share the part (they belong to the same engine).
#[derive(Clone, Debug)]
struct GaugeShare {
    gauge: Gauge,
    /// What this engine has added to `gauge`.
    share: Arc<AtomicI64>,
}

impl GaugeShare {
    fn new(gauge: Gauge) -> Self {
        Self {
            gauge,
            share: Arc::default(),
        }
    }

    /// Makes this engine's part `value` (the gauge moves by the difference).
    fn set(&self, value: i64) {
        let before = self.share.swap(value, Ordering::AcqRel);
        self.gauge.inc_by(value - before);
    }
}

/// Pre-resolved series of one engine of a model version; clones belong to the same
/// engine (see [`GenerationFamilies::for_version`]: one call per engine).
#[derive(Clone)]
pub struct GenerationMetrics {
    labels: VersionLabels,
    time_to_first_token: Histogram,
    time_per_output_token: Histogram,
    request_duration: Histogram,
    input_tokens: Counter,
    output_tokens: Counter,
    requests: Family<OutcomeLabels, Counter>,
    empty_outputs: Counter,
    prefix_queries: Counter,
    prefix_hits: Counter,
    running: GaugeShare,
    waiting: GaugeShare,
    kv_slots_used: GaugeShare,
    kv_slots_total: GaugeShare,
    kv_bytes_used: GaugeShare,
    kv_bytes_total: GaugeShare,
    server_queued: GaugeShare,
    server_running: GaugeShare,
    server_kv_bytes_used: GaugeShare,
    server_kv_bytes_total: GaugeShare,
    server: ServerTotals,
}

/// Timings of a request that produced at least one token.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// Arrival to first token.
    pub first_token: Duration,
    /// Arrival to last token.
    pub total: Duration,
    /// Tokens generated.
    pub completion_tokens: u32,
}

impl GenerationMetrics {
    /// Counts a request's prompt tokens as it takes a slot.
    pub fn admitted(&self, prompt_tokens: usize) {
        self.input_tokens.inc_by(as_u64(prompt_tokens));
    }

    /// Counts a prompt looked up in the prefix cache and the tokens of it found there.
    pub fn prefix_lookup(&self, prompt_tokens: u32, cached_tokens: u32) {
        self.prefix_queries.inc_by(u64::from(prompt_tokens));
        self.prefix_hits.inc_by(u64::from(cached_tokens));
    }

    /// Records the time to a request's first token.
    pub fn first_token(&self, elapsed: Duration) {
        self.time_to_first_token.observe(elapsed.as_secs_f64());
    }

    /// Counts one generated token.
    pub fn token(&self) {
        self.output_tokens.inc();
    }

    /// Counts a finished request; successful ones also record their duration and
    /// time per output token (after the first).
    pub fn finished(&self, outcome: Outcome, timings: Option<Timings>) {
        self.requests
            .get_or_create(&OutcomeLabels {
                model: self.labels.model.clone(),
                version: self.labels.version.clone(),
                outcome: outcome.label(),
            })
            .inc();
        let Some(timings) = timings.filter(|_| matches!(outcome, Outcome::Stop | Outcome::Length))
        else {
            return;
        };
        self.request_duration.observe(timings.total.as_secs_f64());
        if timings.completion_tokens > 1 {
            let decoding = timings.total.saturating_sub(timings.first_token);
            self.time_per_output_token
                .observe(decoding.as_secs_f64() / f64::from(timings.completion_tokens - 1));
        }
    }

    /// Counts a generation that finished normally (stop or length) with no output token
    /// or whitespace-only text; call it beside [`Self::finished`].
    pub fn empty_output(&self) {
        self.empty_outputs.inc();
    }

    /// Sets the queue gauges.
    pub fn set_queue(&self, running: u32, waiting: u32) {
        self.running.set(i64::from(running));
        self.server_running.set(i64::from(running));
        self.set_waiting(waiting);
    }

    /// Counts a waiting request shed from a full queue.
    pub fn shed(&self) {
        self.finished(Outcome::Shed, None);
    }

    /// Sets the waiting gauge alone (from the submitting side).
    pub fn set_waiting(&self, waiting: u32) {
        self.waiting.set(i64::from(waiting));
        self.server_queued.set(i64::from(waiting));
    }

    /// Sets the KV cache gauges.
    pub fn set_kv_cache(
        &self,
        slots_used: u32,
        slots_total: u32,
        bytes_used: u64,
        bytes_total: u64,
    ) {
        self.kv_slots_used.set(i64::from(slots_used));
        self.kv_slots_total.set(i64::from(slots_total));
        self.kv_bytes_used.set(as_i64(bytes_used));
        self.kv_bytes_total.set(as_i64(bytes_total));
        self.server_kv_bytes_used.set(as_i64(bytes_used));
        self.server_kv_bytes_total.set(as_i64(bytes_total));
        self.server.update_kv_usage();
    }

    /// Takes this engine's share back from every gauge (the engine has stopped).
    pub fn withdraw(&self) {
        self.set_queue(0, 0);
        self.set_kv_cache(0, 0, 0, 0);
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
        text
    }

    #[test]
    fn latency_series_use_the_gen_ai_names_and_buckets() {
        let mut registry = Registry::default();
        let metrics = GenerationFamilies::register(&mut registry).for_version("smol", "1");
        metrics.first_token(Duration::from_millis(30));
        metrics.finished(
            Outcome::Length,
            Some(Timings {
                first_token: Duration::from_millis(30),
                total: Duration::from_millis(230),
                completion_tokens: 5,
            }),
        );
        let text = encode(&registry);
        let labels = r#"model="smol",version="1""#;
        for expected in [
            format!(r#"gen_ai_server_time_to_first_token_seconds_bucket{{le="0.04",{labels}}} 1"#),
            format!(r#"gen_ai_server_time_to_first_token_seconds_bucket{{le="0.02",{labels}}} 0"#),
            // (230 - 30) ms / 4 tokens = 50 ms per token.
            format!(
                r#"gen_ai_server_time_per_output_token_seconds_bucket{{le="0.05",{labels}}} 1"#
            ),
            format!(r#"gen_ai_server_request_duration_seconds_bucket{{le="0.32",{labels}}} 1"#),
            format!(r#"gen_ai_server_request_duration_seconds_bucket{{le="0.16",{labels}}} 0"#),
            format!(r#"modelplane_generate_requests_total{{{labels},outcome="length"}} 1"#),
        ] {
            assert!(text.contains(&expected), "missing {expected} in\n{text}");
        }
    }

    #[test]
    fn server_series_sum_every_engine_of_every_model() {
        let mut registry = Registry::default();
        let families = GenerationFamilies::register(&mut registry);
        let (a, b) = (
            families.for_version("a", "1"),
            families.for_version("b", "3"),
        );
        // A hot swap: a second engine of b's version beside the first.
        let b_new = families.for_version("b", "3");
        a.set_queue(2, 1);
        a.set_kv_cache(2, 4, 200, 400);
        b.set_queue(1, 5);
        b.set_kv_cache(1, 4, 100, 400);
        b_new.set_kv_cache(0, 4, 0, 200);
        b.set_waiting(3);
        let text = encode(&registry);
        for expected in [
            "modelplane_server_queued_requests 4",
            "modelplane_server_running_requests 3",
            // (200 + 100 + 0) of (400 + 400 + 200) bytes.
            "modelplane_server_kv_cache_usage_ratio 0.3",
            r#"modelplane_generate_waiting_requests{model="b",version="3"} 3"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        b.withdraw();
        b_new.withdraw();
        a.set_kv_cache(4, 4, 400, 400);
        let text = encode(&registry);
        for expected in [
            "modelplane_server_queued_requests 1",
            "modelplane_server_running_requests 2",
            "modelplane_server_kv_cache_usage_ratio 1.0",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        a.withdraw();
        assert!(encode(&registry).contains("modelplane_server_kv_cache_usage_ratio 0.0"));
    }

    #[test]
    fn empty_outputs_are_counted_per_version() {
        let mut registry = Registry::default();
        let families = GenerationFamilies::register(&mut registry);
        families.for_version("smol", "1").empty_output();
        let text = encode(&registry);
        for expected in [
            r#"modelplane_generate_empty_outputs_total{model="smol",version="1"} 1"#,
            "# HELP modelplane_generate_empty_outputs Generations that finished normally",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        let other = families.for_version("smol", "2");
        drop(other);
        let text = encode(&registry);
        assert!(
            text.contains(r#"modelplane_generate_empty_outputs_total{model="smol",version="2"} 0"#),
            "a version's series exists from its first engine: {text}"
        );
    }

    #[test]
    fn failed_requests_are_counted_without_latencies() {
        let mut registry = Registry::default();
        let metrics = GenerationFamilies::register(&mut registry).for_version("smol", "1");
        metrics.finished(Outcome::Cancelled, None);
        metrics.finished(
            Outcome::Error,
            Some(Timings {
                first_token: Duration::from_millis(1),
                total: Duration::from_millis(2),
                completion_tokens: 2,
            }),
        );
        let text = encode(&registry);
        assert!(text.contains(r#"outcome="cancelled"} 1"#), "{text}");
        assert!(text.contains(r#"outcome="error"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"gen_ai_server_request_duration_seconds_count{model="smol",version="1"} 0"#
            ),
            "{text}"
        );
    }

    #[test]
    fn engines_of_one_version_add_up_and_a_stopped_one_leaves_the_gauges() {
        let mut registry = Registry::default();
        let families = GenerationFamilies::register(&mut registry);
        let old = families.for_version("smol", "1");
        let new = families.for_version("smol", "1");
        old.set_kv_cache(1, 2, 100, 200);
        new.set_kv_cache(3, 4, 300, 400);
        new.set_queue(3, 1);
        // The old engine finishes its last stream during the swap.
        old.set_queue(0, 0);
        old.set_kv_cache(0, 2, 0, 200);
        let text = encode(&registry);
        let labels = r#"{model="smol",version="1"}"#;
        for expected in [
            format!("modelplane_generate_running_requests{labels} 3"),
            format!("modelplane_generate_waiting_requests{labels} 1"),
            format!("modelplane_generate_kv_cache_slots_used{labels} 3"),
            format!("modelplane_generate_kv_cache_slots_total{labels} 6"),
        ] {
            assert!(text.contains(&expected), "missing {expected} in\n{text}");
        }
        old.withdraw();
        let text = encode(&registry);
        for expected in [
            format!("modelplane_generate_kv_cache_slots_total{labels} 4"),
            format!("modelplane_generate_kv_cache_total_bytes{labels} 400"),
            format!("modelplane_generate_running_requests{labels} 3"),
        ] {
            assert!(text.contains(&expected), "missing {expected} in\n{text}");
        }
    }

    #[test]
    fn token_and_cache_gauges_appear() {
        let mut registry = Registry::default();
        let metrics = GenerationFamilies::register(&mut registry).for_version("smol", "1");
        metrics.admitted(7);
        metrics.token();
        metrics.token();
        metrics.set_queue(2, 3);
        metrics.set_kv_cache(2, 4, 200, 400);
        let text = encode(&registry);
        for expected in [
            r#"modelplane_generate_tokens_total{model="smol",version="1",gen_ai_token_type="input"} 7"#,
            r#"modelplane_generate_tokens_total{model="smol",version="1",gen_ai_token_type="output"} 2"#,
            r#"modelplane_generate_running_requests{model="smol",version="1"} 2"#,
            r#"modelplane_generate_waiting_requests{model="smol",version="1"} 3"#,
            r#"modelplane_generate_kv_cache_slots_used{model="smol",version="1"} 2"#,
            r#"modelplane_generate_kv_cache_slots_total{model="smol",version="1"} 4"#,
            r#"modelplane_generate_kv_cache_used_bytes{model="smol",version="1"} 200"#,
            r#"modelplane_generate_kv_cache_total_bytes{model="smol",version="1"} 400"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }
}
