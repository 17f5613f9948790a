//! Running one analysis interval: read the metrics of stable and candidate (the runtime
//! pods' `/metrics`, or Prometheus), judge every check of `spec.analysis.metrics` with
//! [`crate::analysis`], and hand the rollout an [`Interval`].
//!
//! The `pods` source compares two scrapes an interval apart; the earlier one is kept here,
//! in memory. After an operator restart (or a leader change) the first reading is only a
//! baseline: that interval is not judged, never counted as a pass.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{Api, Client, api::ListParams};
use modelplane_api::{
    canary::{CanarySpec, MetricCheck, MetricResult, MetricSource, ThresholdValue, Verdict},
    units::{parse_duration, parse_percent},
};
use modelplane_config::RuntimeConfig;

use super::progress::Interval;
use crate::{
    analysis::{self, Limits, Metric, PodScrape, Rule, Snapshot, VersionSeries},
    controller::INSTANCE_LABEL,
    desired::{CONFIG_FILE, HTTP_PORT},
};

/// How long one scrape or query may take.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(10);

/// The check used when `spec.analysis.metrics` is empty: the error rate, at most 1 %.
const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;

/// Reads and judges the metrics of canaries; shared by every reconcile.
pub struct Analyzer {
    http: reqwest::Client,
    prometheus: Option<String>,
    baselines: Mutex<HashMap<String, PodScrape>>,
}

/// What a canary's analysis reads from: its target and the versions the runtime serves.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `namespace/name` of the Canary (the baseline's key).
    pub key: String,
    /// The namespace.
    pub namespace: String,
    /// The target ModelDeployment's name.
    pub target: String,
    /// The model's name on the wire (the `model` label).
    pub model: String,
    /// The stable version's label.
    pub stable: String,
    /// The candidate version's label.
    pub candidate: String,
}

impl Analyzer {
    /// An analyzer that asks Prometheus at `prometheus` (a base URL such as
    /// `http://prometheus.monitoring:9090`) for `source: prometheus` and custom metrics.
    pub fn new(prometheus: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(SOURCE_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            http,
            prometheus: prometheus.map(|url| url.trim_end_matches('/').to_owned()),
            baselines: Mutex::default(),
        }
    }

    /// Forgets a canary's baseline (a new step or candidate starts comparing afresh).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodScrape>> {
        self.baselines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the baseline the next analysis compares with (`pods` source only); a failure
    /// is left for the analysis to report.
    pub async fn baseline(&self, client: &Client, spec: &CanarySpec, subject: &Subject) {
        if spec.analysis.source != MetricSource::Pods || !needs_series(spec) {
            return;
        }
        match self.scrape(client, subject).await {
            Ok(scrape) => {
                self.lock().insert(subject.key.clone(), scrape);
            }
            Err(error) => {
                // Never compare with a reading from before this step.
                self.lock().remove(&subject.key);
                tracing::debug!(%error, "no baseline yet");
            }
        }
    }

    /// Judges the interval that ends now.
    pub async fn analyze(&self, client: &Client, spec: &CanarySpec, subject: &Subject) -> Interval {
        let interval = match self.interval(client, spec, subject).await {
            Ok(Some(interval)) => interval,
            Ok(None) => return Interval::Baseline,
            Err(error) => return Interval::SourceError(error),
        };
        let rule = Rule {
            confidence: spec.analysis.confidence,
            min_samples: u64::try_from(spec.analysis.min_samples).unwrap_or(1),
        };
        let stable = interval.version(&subject.stable);
        let candidate = interval.version(&subject.candidate);
        let mut results = Vec::new();
        for check in checks(spec) {
            let result = match &check.prometheus {
                Some(query) => self.custom(&check, &query.query, spec, subject).await,
                None => builtin(&check, &stable, &candidate, &rule),
            };
            match result {
                Ok(result) => results.push(result),
                Err(error) => return Interval::SourceError(error),
            }
        }
        Interval::Judged(results)
    }

    /// The interval's series: `None` when this is the first reading (a baseline).
    async fn interval(
        &self,
        client: &Client,
        spec: &CanarySpec,
        subject: &Subject,
    ) -> Result<Option<Snapshot>, String> {
        if !needs_series(spec) {
            return Ok(Some(Snapshot::default()));
        }
        match spec.analysis.source {
            MetricSource::Pods => {
                let now = self.scrape(client, subject).await?;
                let before = self.lock().insert(subject.key.clone(), now.clone());
                Ok(before.map(|before| {
                    let restarted = analysis::series::restarted_pods(&now, &before);
                    if !restarted.is_empty() {
                        tracing::info!(?restarted, canary = %subject.key, "pods restarted during the interval: their new counters count whole");
                    }
                    analysis::delta(&now, &before)
                }))
            }
            MetricSource::Prometheus => {
                let base = self.prometheus_url()?;
                let interval = parse_duration(&spec.analysis.interval)
                    .map_err(|e| format!("spec.analysis.interval: {e}"))?;
                let selector = format!(
                    "namespace=\"{}\",model=\"{}\"",
                    promql_escape(&subject.namespace),
                    promql_escape(&subject.model)
                );
                analysis::prometheus::window(&self.http, base, &selector, interval, SOURCE_TIMEOUT)
                    .await
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
        }
    }

    async fn scrape(&self, client: &Client, subject: &Subject) -> Result<PodScrape, String> {
        let pods = serving_pods(client, &subject.namespace, &subject.target)
            .await
            .map_err(|e| format!("listing the runtime pods of {}: {e}", subject.target))?;
        if pods.is_empty() {
            return Err(format!(
                "ModelDeployment {} has no ready runtime pod to scrape",
                subject.target
            ));
        }
        analysis::pods::scrape(&self.http, &pods, &subject.model, SOURCE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    }

    fn prometheus_url(&self) -> Result<&str, String> {
        self.prometheus.as_deref().ok_or_else(|| {
            "Prometheus is not configured: start the operator with --prometheus-url (Helm: canary.prometheusUrl)".to_owned()
        })
    }

    /// A custom metric: the query's one number against `max`.
    async fn custom(
        &self,
        check: &MetricCheck,
        query: &str,
        spec: &CanarySpec,
        subject: &Subject,
    ) -> Result<MetricResult, String> {
        let base = self.prometheus_url()?;
        let query = render_query(query, spec, subject);
        let value = analysis::prometheus::query(&self.http, base, &query, SOURCE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let max = match check.max.as_ref().map(|m| m.value()) {
            Some(Ok(ThresholdValue::Number(n))) => Some(n),
            Some(Ok(ThresholdValue::Duration(d))) => Some(d.as_secs_f64()),
            Some(Err(error)) => return Err(format!("metric {}: {error}", check.name)),
            None => None,
        };
        let (verdict, message) = match (value, max) {
            (None, _) => (
                Verdict::Inconclusive,
                "the query returned no sample".to_owned(),
            ),
            (Some(v), _) if v.is_nan() => {
                (Verdict::Inconclusive, "the query returned NaN".to_owned())
            }
            (Some(v), Some(max)) if v > max => (Verdict::Fail, format!("{v} is above max {max}")),
            (Some(v), Some(max)) => (Verdict::Pass, format!("{v} is within max {max}")),
            (Some(_), None) => (Verdict::Fail, "a custom metric needs max".to_owned()),
        };
        Ok(MetricResult {
            name: check.name.clone(),
            stable: None,
            candidate: value,
            stable_samples: None,
            candidate_samples: None,
            verdict,
            message: Some(message),
        })
    }
}

/// The checks of a spec; the default error-rate check when it lists none.
fn checks(spec: &CanarySpec) -> Vec<MetricCheck> {
    if !spec.analysis.metrics.is_empty() {
        return spec.analysis.metrics.clone();
    }
    vec![MetricCheck {
        name: "errorRate".into(),
        max: Some(modelplane_api::canary::Threshold::Number(
            DEFAULT_MAX_ERROR_RATE,
        )),
        max_increase: None,
        prometheus: None,
    }]
}

fn needs_series(spec: &CanarySpec) -> bool {
    checks(spec).iter().any(|c| c.prometheus.is_none())
}

/// A built-in check judged on the interval's series.
pub(super) fn builtin(
    check: &MetricCheck,
    stable: &VersionSeries,
    candidate: &VersionSeries,
    rule: &Rule,
) -> Result<MetricResult, String> {
    let metric = Metric::from_name(&check.name)
        .ok_or_else(|| format!("metric {:?} is not a built-in metric", check.name))?;
    let limits = limits(check)?;
    let judgement = analysis::judge(metric, &limits, stable, candidate, rule);
    let samples = |n: u64| Some(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(MetricResult {
        name: check.name.clone(),
        stable: judgement.stable,
        candidate: judgement.candidate,
        stable_samples: samples(judgement.stable_samples),
        candidate_samples: samples(judgement.candidate_samples),
        verdict: match judgement.verdict {
            analysis::Verdict::Pass => Verdict::Pass,
            analysis::Verdict::Fail => Verdict::Fail,
            analysis::Verdict::Inconclusive => Verdict::Inconclusive,
        },
        message: Some(cut(judgement.reason)),
    })
}

/// `max` (a ratio, or a duration in seconds) and `maxIncrease` of a check.
fn limits(check: &MetricCheck) -> Result<Limits, String> {
    let max = match check.max.as_ref().map(|m| m.value()) {
        Some(Ok(ThresholdValue::Number(n))) => Some(n),
        Some(Ok(ThresholdValue::Duration(d))) => Some(d.as_secs_f64()),
        Some(Err(error)) => return Err(format!("metric {}: {error}", check.name)),
        None => None,
    };
    let max_increase = check
        .max_increase
        .as_deref()
        .map(parse_percent)
        .transpose()
        .map_err(|e| format!("metric {}: maxIncrease: {e}", check.name))?;
    Ok(Limits { max, max_increase })
}

/// A status message is at most 1 KiB.
fn cut(mut text: String) -> String {
    const MAX: usize = 1000;
    if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A custom query with `{{namespace}}`, `{{target}}`, `{{model}}`, `{{stable}}`,
/// `{{candidate}}` and `{{interval}}` filled in.
pub fn render_query(query: &str, spec: &CanarySpec, subject: &Subject) -> String {
    query
        .replace("{{namespace}}", &promql_escape(&subject.namespace))
        .replace("{{target}}", &promql_escape(&subject.target))
        .replace("{{model}}", &promql_escape(&subject.model))
        .replace("{{stable}}", &promql_escape(&subject.stable))
        .replace("{{candidate}}", &promql_escape(&subject.candidate))
        .replace("{{interval}}", &spec.analysis.interval)
}

/// A label value inside PromQL double quotes.
fn promql_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The ready runtime pods of `target` as (pod name, `http://ip:port`).
async fn serving_pods(
    client: &Client,
    namespace: &str,
    target: &str,
) -> kube::Result<Vec<(String, String)>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={target}")))
        .await?;
    Ok(pods.items.iter().filter_map(scrape_target).collect())
}

/// A ready pod's name and base URL.
fn scrape_target(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip = status.pod_ip.as_deref().filter(|_| ready)?;
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    Some((
        pod.metadata.name.clone()?,
        format!("http://{host}:{HTTP_PORT}"),
    ))
}

/// The model name and the stable and candidate version labels the target's runtime configs
/// route between: the split in its config (a model candidate), else its config beside the
/// candidate Deployment's (a runtime-image candidate); `None` while no candidate is rendered.
pub async fn versions(
    client: &Client,
    namespace: &str,
    target: &str,
) -> kube::Result<Option<(String, String, String)>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let read = |config_map: Option<ConfigMap>| {
        config_map?
            .data?
            .get(CONFIG_FILE)
            .and_then(|yaml| RuntimeConfig::from_yaml(yaml).ok())
    };
    let Some(stable) = read(api.get_opt(&format!("{target}-runtime-config")).await?) else {
        return Ok(None);
    };
    if let Some(split) = split_of(&stable) {
        return Ok(Some(split));
    }
    let candidate = read(
        api.get_opt(&format!("{target}-canary-runtime-config"))
            .await?,
    );
    Ok(candidate.and_then(|candidate| replica_split_of(&stable, &candidate)))
}

/// The first model with a canary: (model, stable label, candidate label).
pub fn split_of(config: &RuntimeConfig) -> Option<(String, String, String)> {
    config.models.iter().find_map(|model| {
        let canary = model.canary.as_ref()?;
        let stable = model.default_version()?.to_owned();
        Some((model.name.clone(), stable, canary.candidate.clone()))
    })
}

/// A runtime-image candidate's split: the stable config's first model and its version, and
/// the candidate config's version of that model (labelled apart from stable's).
pub fn replica_split_of(
    stable: &RuntimeConfig,
    candidate: &RuntimeConfig,
) -> Option<(String, String, String)> {
    let model = stable.models.first()?;
    let stable_label = model.default_version()?.to_owned();
    let candidate_label = candidate
        .models
        .iter()
        .find(|m| m.name == model.name)?
        .default_version()?
        .to_owned();
    (candidate_label != stable_label).then(|| (model.name.clone(), stable_label, candidate_label))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(metrics: serde_json::Value) -> CanarySpec {
        serde_json::from_value(json!({
            "targetRef": {"name": "m"}, "candidate": {"runtime": {"image": "r/i:2"}},
            "steps": [{"weight": 5}], "analysis": {"metrics": metrics},
        }))
        .expect("spec")
    }

    fn subject() -> Subject {
        Subject {
            key: "ns/c".into(),
            namespace: "ns".into(),
            target: "m".into(),
            model: "m".into(),
            stable: "v1".into(),
            candidate: "v2".into(),
        }
    }

    #[test]
    fn no_metrics_means_the_default_error_rate_check() {
        let checks = checks(&spec(json!([])));
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].name, "errorRate");
    }

    #[test]
    fn limits_read_ratios_durations_and_percentages() {
        let check = |value| -> MetricCheck { serde_json::from_value(value).expect("check") };
        let latency = limits(&check(
            json!({"name": "latencyP99", "max": "500ms", "maxIncrease": "20%"}),
        ))
        .expect("limits");
        assert_eq!(latency.max, Some(0.5));
        assert_eq!(latency.max_increase, Some(0.2));
        let error = limits(&check(json!({"name": "errorRate", "max": 0.01}))).expect("limits");
        assert_eq!(error.max, Some(0.01));
        assert!(limits(&check(json!({"name": "errorRate", "max": "soon"}))).is_err());
    }

    #[test]
    fn custom_queries_get_the_subject_filled_in_and_escaped() {
        let mut subject = subject();
        subject.candidate = "v\"2".into();
        let query = render_query(
            "sum(rate(x{namespace=\"{{namespace}}\",version=\"{{candidate}}\"}[{{interval}}]))",
            &spec(json!([])),
            &subject,
        );
        assert_eq!(
            query,
            "sum(rate(x{namespace=\"ns\",version=\"v\\\"2\"}[1m]))"
        );
    }

    #[test]
    fn only_ready_pods_with_an_ip_are_scraped() {
        let pod = |ready: &str, ip: Option<&str>| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]},
            }))
            .expect("pod")
        };
        assert_eq!(
            scrape_target(&pod("True", Some("10.0.0.7"))),
            Some(("p".into(), format!("http://10.0.0.7:{HTTP_PORT}")))
        );
        assert_eq!(scrape_target(&pod("False", Some("10.0.0.7"))), None);
        assert_eq!(scrape_target(&pod("True", None)), None);
        assert_eq!(
            scrape_target(&pod("True", Some("fd00::7"))).map(|t| t.1),
            Some(format!("http://[fd00::7]:{HTTP_PORT}"))
        );
    }

    #[test]
    fn the_split_is_read_from_the_rendered_runtime_config() {
        let yaml = "models: [{name: m, defaultVersion: v1, versions: [{version: v1, source: {path: a}}, {version: v2, source: {path: b}}], canary: {candidate: v2, weight: 5}}]";
        let config = RuntimeConfig::from_yaml(yaml).expect("config");
        assert_eq!(
            split_of(&config),
            Some(("m".into(), "v1".into(), "v2".into()))
        );
        let plain = RuntimeConfig::from_yaml(
            "models: [{name: m, versions: [{version: v1, source: {path: a}}]}]",
        )
        .expect("config");
        assert_eq!(split_of(&plain), None);
    }
}
