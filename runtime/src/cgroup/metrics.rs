//! The pod's cgroup figures as Prometheus series, read from the cgroup files at every
//! scrape (a [`Collector`]): there is no polling task and a scrape always shows the
//! kernel's current counters. A figure whose file is absent has no series.
//!
//! | series | from |
//! | --- | --- |
//! | `modelplane_cgroup_cpu_limit_cores` | `cpu.max` (0: no quota) |
//! | `modelplane_cgroup_memory_max_bytes` | `memory.max` (0: no limit) |
//! | `modelplane_cgroup_memory_current_bytes` | `memory.current` |
//! | `modelplane_cgroup_cpu_usage_seconds_total` | `cpu.stat` `usage_usec` |
//! | `modelplane_cgroup_cpu_periods_total` | `cpu.stat` `nr_periods` |
//! | `modelplane_cgroup_cpu_throttled_periods_total` | `cpu.stat` `nr_throttled` |
//! | `modelplane_cgroup_cpu_throttled_seconds_total` | `cpu.stat` `throttled_usec` |
//! | `modelplane_cgroup_pressure_{cpu,memory,io}_{some,full}_avg10` | PSI `avg10`, as a ratio 0–1 |
//! | `modelplane_cgroup_pressure_{cpu,memory,io}_{some,full}_seconds_total` | PSI `total` |
//! | `modelplane_cgroup_tenant_slices{state}` | [`super::slices`]: `active` slices, `unavailable` 1 where they cannot be made |

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::slices::SliceStatus;
use super::{PodCgroup, Pressure, Snapshot};

/// The cgroup series of one registry.
#[derive(Clone, Debug)]
pub struct CgroupMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pod: PodCgroup,
    slices: Arc<SliceStatus>,
}

impl Default for CgroupMetrics {
    fn default() -> Self {
        Self::new(PodCgroup::current())
    }
}

impl CgroupMetrics {
    /// Series read from `pod` at every scrape.
    pub fn new(pod: PodCgroup) -> Self {
        Self {
            inner: Arc::new(Inner {
                pod,
                slices: Arc::default(),
            }),
        }
    }

    /// Adds the series to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }

    /// Where the tenant slices report their state.
    pub fn slices(&self) -> Arc<SliceStatus> {
        Arc::clone(&self.inner.slices)
    }
}

impl Collector for CgroupMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.inner.pod.snapshot();
        encode_snapshot(&snapshot, &mut encoder)?;
        let slices = &self.inner.slices;
        let descriptor = encoder.encode_descriptor(
            "modelplane_cgroup_tenant_slices",
            "Tenant cgroup slices: active ones, and 1 for unavailable where the cgroup \
             subtree is not delegated (admission alone holds tenants apart)",
            None,
            ConstGauge::new(0i64).metric_type(),
        );
        let mut family = descriptor?;
        for (state, value) in [
            ("active", slices.active()),
            ("unavailable", i64::from(slices.unavailable())),
        ] {
            let labels = [("state", state)];
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn gauge<N>(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn encode_snapshot(snapshot: &Snapshot, encoder: &mut DescriptorEncoder) -> fmt::Result {
    if let Some(cpu_max) = snapshot.cpu_max {
        let cores = cpu_max.cores().unwrap_or(0.0);
        let help = "CPU quota of the pod's cgroup, cores (cpu.max; 0: no quota)";
        gauge(encoder, "modelplane_cgroup_cpu_limit_cores", help, cores)?;
    }
    if let Some(max) = snapshot.memory_max {
        let help = "memory.max of the pod's cgroup (0: no limit)";
        let bytes = max.map_or(0, saturating_i64);
        gauge(encoder, "modelplane_cgroup_memory_max_bytes", help, bytes)?;
    }
    if let Some(current) = snapshot.memory_current {
        let help = "memory.current of the pod's cgroup";
        let bytes = saturating_i64(current);
        gauge(
            encoder,
            "modelplane_cgroup_memory_current_bytes",
            help,
            bytes,
        )?;
    }
    if let Some(stat) = snapshot.cpu_stat {
        let seconds = |usec: u64| usec as f64 / 1e6;
        let counters = [
            (
                "modelplane_cgroup_cpu_usage_seconds",
                "CPU time used by the pod's cgroup (cpu.stat usage_usec)",
                stat.usage_usec.map(seconds),
            ),
            (
                "modelplane_cgroup_cpu_periods",
                "CPU bandwidth periods with runnable tasks (cpu.stat nr_periods)",
                stat.nr_periods.map(|n| n as f64),
            ),
            (
                "modelplane_cgroup_cpu_throttled_periods",
                "Periods in which the CPU quota ran out (cpu.stat nr_throttled)",
                stat.nr_throttled.map(|n| n as f64),
            ),
            (
                "modelplane_cgroup_cpu_throttled_seconds",
                "Time the pod's tasks spent throttled (cpu.stat throttled_usec)",
                stat.throttled_usec.map(seconds),
            ),
        ];
        for (name, help, value) in counters {
            if let Some(value) = value {
                counter(encoder, name, help, value)?;
            }
        }
    }
    let resources = [
        ("cpu", snapshot.cpu_pressure),
        ("memory", snapshot.memory_pressure),
        ("io", snapshot.io_pressure),
    ];
    for (resource, pressure) in resources {
        if let Some(pressure) = pressure {
            encode_pressure(encoder, resource, &pressure)?;
        }
    }
    Ok(())
}

fn encode_pressure(
    encoder: &mut DescriptorEncoder,
    resource: &str,
    pressure: &Pressure,
) -> fmt::Result {
    for (kind, line) in [("some", pressure.some), ("full", pressure.full)] {
        let Some(line) = line else { continue };
        let who = if kind == "some" {
            "some tasks"
        } else {
            "all tasks"
        };
        let name = format!("modelplane_cgroup_pressure_{resource}_{kind}_avg10");
        let help = format!(
            "Share of the last 10 s in which {who} of the pod's cgroup stalled on {resource} (PSI avg10, 0-1)"
        );
        gauge(encoder, &name, &help, line.avg10 / 100.0)?;
        let name = format!("modelplane_cgroup_pressure_{resource}_{kind}_seconds");
        let help =
            format!("Time in which {who} of the pod's cgroup stalled on {resource} (PSI total)");
        counter(encoder, &name, &help, line.total_usec as f64 / 1e6)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::tests::fake_tree;

    fn exposition(metrics: &CgroupMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn every_figure_of_the_tree_is_exported() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_tree(dir.path());
        std::fs::write(dir.path().join("cpu.max"), "150000 100000\n").expect("write");
        std::fs::write(dir.path().join("memory.max"), "2147483648\n").expect("write");
        let text = exposition(&CgroupMetrics::new(PodCgroup::at(dir.path().to_owned())));
        for sample in [
            "modelplane_cgroup_cpu_limit_cores 1.5",
            "modelplane_cgroup_memory_max_bytes 2147483648\n",
            "modelplane_cgroup_memory_current_bytes 104857600\n",
            "modelplane_cgroup_cpu_usage_seconds_total 1.5",
            "modelplane_cgroup_cpu_periods_total 10",
            "modelplane_cgroup_cpu_throttled_periods_total 2",
            "modelplane_cgroup_cpu_throttled_seconds_total 0.25",
            "modelplane_cgroup_pressure_cpu_some_avg10 0.0125",
            "modelplane_cgroup_pressure_cpu_some_seconds_total 3.0",
            "modelplane_cgroup_pressure_io_full_seconds_total 0.25",
            "modelplane_cgroup_pressure_memory_full_avg10 0.0",
            r#"modelplane_cgroup_tenant_slices{state="active"} 0"#,
            r#"modelplane_cgroup_tenant_slices{state="unavailable"} 0"#,
        ] {
            assert!(text.contains(sample), "{sample} missing from\n{text}");
        }
        assert!(
            text.contains("# TYPE modelplane_cgroup_cpu_throttled_seconds counter"),
            "{text}"
        );
    }

    #[test]
    fn absent_files_have_no_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = exposition(&CgroupMetrics::new(PodCgroup::at(dir.path().join("none"))));
        assert!(
            !text.contains("modelplane_cgroup_cpu_limit_cores"),
            "{text}"
        );
        assert!(!text.contains("modelplane_cgroup_pressure"), "{text}");
        assert!(text.contains("modelplane_cgroup_tenant_slices"), "{text}");
    }

    #[test]
    fn no_limits_read_as_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_tree(dir.path());
        let text = exposition(&CgroupMetrics::new(PodCgroup::at(dir.path().to_owned())));
        assert!(
            text.contains("modelplane_cgroup_cpu_limit_cores 0.0"),
            "{text}"
        );
        assert!(
            text.contains("modelplane_cgroup_memory_max_bytes 0\n"),
            "{text}"
        );
    }
}
