//! Prometheus metrics exported on `/metrics`.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of the reconcile counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Kind of the reconciled custom resource, e.g. `ModelDeployment`.
    pub kind: String,
    /// `success` or the error's metric label.
    pub outcome: String,
}

/// Label naming a resource kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Resource kind, e.g. `Deployment`.
    pub kind: String,
}

/// Labels of a Canary's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    /// The Canary's namespace.
    pub namespace: String,
    /// The Canary's name.
    pub name: String,
}

/// Labels of a Canary's phase gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryPhaseLabels {
    /// The Canary's namespace.
    pub namespace: String,
    /// The Canary's name.
    pub name: String,
    /// A phase (`Progressing`, `RolledBack`, …).
    pub phase: String,
}

/// Labels of the analysis verdict counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// The Canary's namespace.
    pub namespace: String,
    /// The Canary's name.
    pub name: String,
    /// The metric's name in `spec.analysis.metrics`.
    pub metric: String,
    /// `Pass`, `Fail` or `Inconclusive`.
    pub verdict: String,
}

/// Labels of a TenantQuota's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    /// The TenantQuota's name.
    pub quota: String,
    /// Its tenant.
    pub tenant: String,
    /// `cpu` (cores), `memory` (bytes), `gpu`, `replicas` or `modelDeployments`.
    pub resource: String,
}

/// The phases a Canary's phase gauge has a series for.
const CANARY_PHASES: [&str; 8] = [
    "Pending",
    "Verifying",
    "Progressing",
    "Paused",
    "Promoting",
    "Succeeded",
    "RolledBack",
    "Failed",
];

/// All operator metrics, registered in one registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    duration: Family<KindLabel, Histogram>,
    objects_managed: Family<KindLabel, Gauge>,
    /// Per (kind, watch scope) counts; the gauge shows their sum per kind.
    managed_by_scope: Mutex<HashMap<(String, String), usize>>,
    leader: Gauge,
    verification: modelplane_verify::Metrics,
    canary_phase: Family<CanaryPhaseLabels, Gauge>,
    canary_weight: Family<CanaryLabels, Gauge>,
    canary_verdicts: Family<VerdictLabels, Counter>,
    quota_used: Family<QuotaLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    quota_hard: Family<QuotaLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let verification = modelplane_verify::Metrics::register(&mut root);
        let registry = root.sub_registry_with_prefix("modelplane_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let objects_managed = Family::<KindLabel, Gauge>::default();
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles by resource kind and outcome",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, by resource kind",
            duration.clone(),
        );
        registry.register(
            "objects_managed",
            "Objects owned by the operator, by kind",
            objects_managed.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease, else 0",
            leader.clone(),
        );
        let canary_phase = Family::<CanaryPhaseLabels, Gauge>::default();
        let canary_weight = Family::<CanaryLabels, Gauge>::default();
        let canary_verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "canary_phase",
            "1 for the phase a Canary is in, 0 for the others",
            canary_phase.clone(),
        );
        registry.register(
            "canary_weight_percent",
            "Percent of a Canary's target traffic on its candidate",
            canary_weight.clone(),
        );
        registry.register(
            "canary_analysis_verdicts",
            "Analysis verdicts per Canary and metric",
            canary_verdicts.clone(),
        );
        let quota_used = Family::<QuotaLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let quota_hard = Family::<QuotaLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "quota_used",
            "What a TenantQuota's admitted ModelDeployments (and Canary pods) may use, by resource",
            quota_used.clone(),
        );
        registry.register(
            "quota_hard",
            "A TenantQuota's spec.hard, by resource (absent: not limited)",
            quota_hard.clone(),
        );
        Self {
            registry: root,
            reconciles,
            duration,
            objects_managed,
            managed_by_scope: Mutex::default(),
            leader,
            verification,
            canary_phase,
            canary_weight,
            canary_verdicts,
            quota_used,
            quota_hard,
        }
    }
}

impl Metrics {
    /// Starts timing one reconcile of `kind`; finish it with [`ReconcileTimer::finish`].
    pub fn reconcile_started(&self, kind: &str) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            kind: kind.to_owned(),
            started: Instant::now(),
        }
    }

    /// Sets how many objects of `kind` the controller watching `scope` owns.
    pub fn set_objects_managed(&self, kind: &str, scope: &str, count: usize) {
        let mut counts = self
            .managed_by_scope
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.insert((kind.to_owned(), scope.to_owned()), count);
        let total: usize = counts
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, n)| n)
            .sum();
        self.objects_managed
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }

    /// Verification counts, cache hits and durations (`modelplane_verification*`), to hand to
    /// the [`modelplane_verify::Verifier`].
    pub fn verification(&self) -> modelplane_verify::Metrics {
        self.verification.clone()
    }

    /// Records what a TenantQuota admitted and its limits, `(resource, used, hard)` with CPU
    /// in cores and memory in bytes.
    pub fn set_quota(&self, quota: &str, tenant: &str, amounts: &[(&str, f64, Option<f64>)]) {
        for (resource, used, hard) in amounts {
            let labels = QuotaLabels {
                quota: quota.to_owned(),
                tenant: tenant.to_owned(),
                resource: (*resource).to_owned(),
            };
            self.quota_used.get_or_create(&labels).set(*used);
            match hard {
                Some(hard) => {
                    self.quota_hard.get_or_create(&labels).set(*hard);
                }
                None => {
                    self.quota_hard.remove(&labels);
                }
            }
        }
    }

    /// Forgets a deleted TenantQuota's series of `resources`.
    pub fn forget_quota(&self, quota: &str, tenant: &str, resources: &[&str]) {
        for resource in resources {
            let labels = QuotaLabels {
                quota: quota.to_owned(),
                tenant: tenant.to_owned(),
                resource: (*resource).to_owned(),
            };
            self.quota_used.remove(&labels);
            self.quota_hard.remove(&labels);
        }
    }

    /// Records a Canary's phase and weight.
    pub fn set_canary(&self, namespace: &str, name: &str, phase: &str, weight: i32) {
        for known in CANARY_PHASES {
            self.canary_phase
                .get_or_create(&CanaryPhaseLabels {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    phase: known.to_owned(),
                })
                .set(i64::from(known == phase));
        }
        self.canary_weight
            .get_or_create(&CanaryLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .set(i64::from(weight));
    }

    /// Counts one analysis verdict of a Canary's metric.
    pub fn count_verdict(&self, namespace: &str, name: &str, metric: &str, verdict: &str) {
        self.canary_verdicts
            .get_or_create(&VerdictLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                metric: metric.to_owned(),
                verdict: verdict.to_owned(),
            })
            .inc();
    }

    /// Forgets a deleted Canary's series.
    pub fn forget_canary(&self, namespace: &str, name: &str) {
        for known in CANARY_PHASES {
            self.canary_phase.remove(&CanaryPhaseLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                phase: known.to_owned(),
            });
        }
        self.canary_weight.remove(&CanaryLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }

    /// Records whether this replica is the leader.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Measures one reconcile; records count and duration when finished.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: String,
    started: Instant,
}

impl ReconcileTimer<'_> {
    /// Records the outcome (`success` or an error's metric label) and the elapsed time.
    pub fn finish(self, outcome: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.metrics
            .duration
            .get_or_create(&KindLabel {
                kind: self.kind.clone(),
            })
            .observe(elapsed);
        self.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind: self.kind,
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The metric names the queries of a Grafana dashboard (JSON) read.
    fn dashboard_metrics(json: &str) -> BTreeSet<String> {
        let board: serde_json::Value = serde_json::from_str(json).expect("dashboard JSON");
        let mut names = BTreeSet::new();
        let panels = board["panels"].as_array().expect("panels");
        for expr in panels
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter_map(|t| t["expr"].as_str())
        {
            let mut rest = expr;
            while let Some(at) = rest.find("modelplane_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
        names
    }

    #[test]
    fn every_operator_dashboard_query_names_a_metric_the_operator_exports() {
        // A family shows in the exposition once it has a series: record one of each.
        let metrics = Metrics::default();
        metrics.reconcile_started("Canary").finish("success");
        metrics.set_objects_managed("Deployment", "*", 1);
        metrics.set_leader(true);
        metrics.set_canary("ns", "c", "Progressing", 10);
        metrics.count_verdict("ns", "c", "errorRate", "Pass");
        metrics.set_quota("q", "t", &[("cpu", 1.0, Some(2.0))]);
        metrics.verification().record(
            modelplane_verify::metrics::Artifact::Image,
            "Verified",
            true,
            std::time::Duration::from_millis(3),
        );
        let exported: BTreeSet<String> = metrics
            .render()
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split(' ').next())
            .map(str::to_owned)
            .collect();
        let family = |name: &str| {
            ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exported.contains(*base))
                .unwrap_or(name)
                .to_owned()
        };
        let used = dashboard_metrics(include_str!(
            "../../charts/modelplane/dashboards/operator.json"
        ));
        assert!(used.len() >= 8, "{used:?}");
        let missing: Vec<&String> = used
            .iter()
            .filter(|n| !exported.contains(&family(n)))
            .collect();
        assert!(
            missing.is_empty(),
            "not exported: {missing:?}; exported: {exported:?}"
        );
    }

    #[test]
    fn finished_reconcile_is_counted_by_kind_and_outcome() {
        let metrics = Metrics::default();
        metrics
            .reconcile_started("ModelDeployment")
            .finish("success");
        metrics.reconcile_started("ModelDeployment").finish("kube");
        metrics
            .reconcile_started("ModelDeployment")
            .finish("success");
        let text = metrics.render();
        assert!(text.contains(
            r#"modelplane_operator_reconciles_total{kind="ModelDeployment",outcome="success"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"modelplane_operator_reconciles_total{kind="ModelDeployment",outcome="kube"} 1"#
        ));
        assert!(text.contains(
            r#"modelplane_operator_reconcile_duration_seconds_count{kind="ModelDeployment"} 3"#
        ));
    }

    #[test]
    fn leader_and_managed_objects_are_gauges() {
        let metrics = Metrics::default();
        metrics.set_leader(true);
        metrics.set_objects_managed("Deployment", "team-a", 3);
        metrics.set_objects_managed("Deployment", "team-b", 1);
        let text = metrics.render();
        assert!(text.contains("modelplane_operator_leader 1"), "{text}");
        assert!(text.contains(r#"modelplane_operator_objects_managed{kind="Deployment"} 4"#));
        metrics.set_leader(false);
        assert!(metrics.render().contains("modelplane_operator_leader 0"));
    }

    #[test]
    fn verification_metrics_are_served_beside_the_operator_metrics() {
        let metrics = Metrics::default();
        metrics.verification().record(
            modelplane_verify::metrics::Artifact::Image,
            "NoSignature",
            false,
            std::time::Duration::from_millis(5),
        );
        let text = metrics.render();
        assert!(
            text.contains(
                r#"modelplane_verifications_total{artifact="image",result="NoSignature"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("modelplane_operator_leader 0"), "{text}");
    }
}
