//! What a ModelDeployment costs a quota: replicas × per-pod resources, plus one
//! ModelDeployment; and the quota's `hard` ceilings in the same units.

use modelplane_api::{
    model_deployment::{Device, RuntimeSpec},
    tenant_quota::HardLimits,
};
use modelplane_config::units::{Quantity, parse_quantity};

/// A resource a TenantQuota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `nvidia.com/gpu`, counted in GPUs.
    Gpu,
    /// CPU, counted in millicores.
    Cpu,
    /// Memory, counted in thousandths of a byte (exact for every quantity).
    Memory,
    /// Runtime pods.
    Replicas,
    /// ModelDeployments.
    ModelDeployments,
}

impl Resource {
    /// Every resource, in the order messages and the status name them.
    pub const ALL: [Resource; 5] = [
        Resource::Gpu,
        Resource::Cpu,
        Resource::Memory,
        Resource::Replicas,
        Resource::ModelDeployments,
    ];

    /// The field name in `spec.hard` and `status.used`.
    pub fn field(self) -> &'static str {
        match self {
            Resource::Gpu => "gpu",
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Replicas => "replicas",
            Resource::ModelDeployments => "modelDeployments",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// `amount` written the way `spec.hard` writes this resource (`4`, `500m`, `8Gi`).
    pub fn format(self, amount: u128) -> String {
        match self {
            Resource::Cpu => Quantity::from_millis(amount).to_string(),
            Resource::Memory => format_memory(amount),
            Resource::Gpu | Resource::Replicas | Resource::ModelDeployments => amount.to_string(),
        }
    }

    /// Reads `text` (a quantity for CPU and memory, an integer otherwise) into its unit.
    pub fn parse(self, text: &str) -> Result<u128, FootprintError> {
        let invalid = || FootprintError::Invalid {
            resource: self,
            value: text.to_owned(),
        };
        match self {
            Resource::Cpu | Resource::Memory => parse_quantity(text)
                .map(Quantity::millis)
                .map_err(|_| invalid()),
            _ => text.parse().map_err(|_| invalid()),
        }
    }
}

/// Memory in millibytes as the shortest exact quantity: `128Gi`, `1500M`, `1000`.
fn format_memory(millis: u128) -> String {
    if !millis.is_multiple_of(1000) {
        return Quantity::from_millis(millis).to_string();
    }
    let bytes = millis / 1000;
    if bytes == 0 {
        return "0".into();
    }
    const BINARY: [(&str, u32); 6] = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    const DECIMAL: [(&str, u32); 6] = [
        ("E", 18),
        ("P", 15),
        ("T", 12),
        ("G", 9),
        ("M", 6),
        ("k", 3),
    ];
    let binary = BINARY.iter().find_map(|&(suffix, shift)| {
        let unit = 1u128 << shift;
        bytes
            .is_multiple_of(unit)
            .then(|| format!("{}{suffix}", bytes / unit))
    });
    let decimal = DECIMAL.iter().find_map(|&(suffix, exponent)| {
        let unit = 10u128.pow(exponent);
        bytes
            .is_multiple_of(unit)
            .then(|| format!("{}{suffix}", bytes / unit))
    });
    // The shortest exact form; binary suffixes win a tie (they are what specs use).
    [binary, decimal, Some(bytes.to_string())]
        .into_iter()
        .flatten()
        .min_by_key(String::len)
        .unwrap_or_default()
}

/// An amount of every [`Resource`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts([u128; 5]);

impl Amounts {
    /// The amount of `resource`.
    pub fn get(&self, resource: Resource) -> u128 {
        self.0[resource.index()]
    }

    /// Sets the amount of `resource`.
    pub fn set(&mut self, resource: Resource, amount: u128) {
        self.0[resource.index()] = amount;
    }

    /// `self + other`, saturating.
    pub fn plus(&self, other: &Amounts) -> Amounts {
        let mut sum = *self;
        for r in Resource::ALL {
            sum.set(r, self.get(r).saturating_add(other.get(r)));
        }
        sum
    }

    /// Whether no resource of `self` exceeds the same resource of `other`.
    pub fn within(&self, other: &Amounts) -> bool {
        Resource::ALL.iter().all(|&r| self.get(r) <= other.get(r))
    }
}

impl<'a> std::iter::Sum<&'a Amounts> for Amounts {
    fn sum<I: Iterator<Item = &'a Amounts>>(iter: I) -> Self {
        iter.fold(Amounts::default(), |sum, next| sum.plus(next))
    }
}

/// The ceilings of `spec.hard`; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits([Option<u128>; 5]);

impl Limits {
    /// The ceiling on `resource`, if any.
    pub fn get(&self, resource: Resource) -> Option<u128> {
        self.0[resource.index()]
    }

    /// Reads `spec.hard`.
    pub fn from_hard(hard: &HardLimits) -> Result<Self, FootprintError> {
        let mut limits = Limits::default();
        let count = |resource, value: Option<i64>| match value {
            Some(v) => u128::try_from(v)
                .map(Some)
                .map_err(|_| FootprintError::Invalid {
                    resource,
                    value: v.to_string(),
                }),
            None => Ok(None),
        };
        let quantity = |resource: Resource, value: &Option<String>| {
            value
                .as_deref()
                .map(|text| resource.parse(text))
                .transpose()
        };
        limits.0[Resource::Gpu.index()] = count(Resource::Gpu, hard.gpu)?;
        limits.0[Resource::Cpu.index()] = quantity(Resource::Cpu, &hard.cpu)?;
        limits.0[Resource::Memory.index()] = quantity(Resource::Memory, &hard.memory)?;
        limits.0[Resource::Replicas.index()] =
            count(Resource::Replicas, hard.replicas.map(i64::from))?;
        limits.0[Resource::ModelDeployments.index()] = count(
            Resource::ModelDeployments,
            hard.model_deployments.map(i64::from),
        )?;
        Ok(limits)
    }
}

/// Why a ModelDeployment's footprint (or a quota's ceiling) cannot be counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FootprintError {
    /// The quota limits a resource the pods do not request, so their use is unbounded.
    #[error(
        "{field}: spec.runtime.resources.{field} is unset, so the pods' {field} is unbounded; the tenant's quota limits {field}, so set it",
        field = .0.field()
    )]
    Unrequested(Resource),
    /// A quantity that does not parse (the CRD's validation makes this rare).
    #[error("{}: {value:?} is not a valid amount", .resource.field())]
    Invalid {
        /// The resource.
        resource: Resource,
        /// What was written.
        value: String,
    },
}

/// What a runtime-image candidate's own pods cost beside the target's `runtime` under
/// `limits`: the most replicas any of its step `weights` gives it (a weight of 100 is the
/// promotion, which replaces the image in the target's own pods), each pod as the
/// target's; it counts no ModelDeployment.
pub fn candidate_footprint(
    runtime: &RuntimeSpec,
    weights: impl IntoIterator<Item = i32>,
    limits: &Limits,
) -> Result<Amounts, FootprintError> {
    let replicas = weights
        .into_iter()
        .filter(|weight| *weight < 100)
        .map(|weight| crate::desired::candidate_replicas(runtime.replicas, weight))
        .max()
        .unwrap_or(0);
    let pods = RuntimeSpec {
        replicas,
        ..runtime.clone()
    };
    let mut amounts = footprint(&pods, limits)?;
    amounts.set(Resource::ModelDeployments, 0);
    Ok(amounts)
}

/// What the pods of `runtime` cost in total under `limits`: replicas × per-pod CPU, memory
/// and GPUs (GPUs only with `device: cuda`, one per pod unless `resources.gpu` says
/// otherwise, as the rendered Deployment requests), plus one ModelDeployment. A resource
/// the quota limits but the pods leave unrequested cannot be counted.
pub fn footprint(runtime: &RuntimeSpec, limits: &Limits) -> Result<Amounts, FootprintError> {
    let replicas = u128::try_from(runtime.replicas.max(0)).unwrap_or(0);
    let resources = runtime.resources.as_ref();
    let per_pod = |resource: Resource, value: Option<&String>| match value {
        Some(text) => resource.parse(text).map(Some),
        None if limits.get(resource).is_some() && replicas > 0 => {
            Err(FootprintError::Unrequested(resource))
        }
        None => Ok(None),
    };
    let cpu = per_pod(Resource::Cpu, resources.and_then(|r| r.cpu.as_ref()))?;
    let memory = per_pod(Resource::Memory, resources.and_then(|r| r.memory.as_ref()))?;
    let gpu = match runtime.device {
        Device::Cuda => resources.and_then(|r| r.gpu).unwrap_or(1).max(0),
        Device::Cpu => 0,
    };
    let mut amounts = Amounts::default();
    amounts.set(Resource::Replicas, replicas);
    amounts.set(Resource::ModelDeployments, 1);
    amounts.set(
        Resource::Gpu,
        replicas.saturating_mul(u128::try_from(gpu).unwrap_or(0)),
    );
    amounts.set(Resource::Cpu, replicas.saturating_mul(cpu.unwrap_or(0)));
    amounts.set(
        Resource::Memory,
        replicas.saturating_mul(memory.unwrap_or(0)),
    );
    Ok(amounts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn runtime(value: serde_json::Value) -> RuntimeSpec {
        serde_json::from_value(value).expect("runtime spec")
    }

    fn hard(value: serde_json::Value) -> Limits {
        Limits::from_hard(&serde_json::from_value(value).expect("hard")).expect("limits")
    }

    fn shown(amounts: &Amounts) -> Vec<String> {
        Resource::ALL
            .iter()
            .map(|&r| r.format(amounts.get(r)))
            .collect()
    }

    #[test]
    fn footprint_is_replicas_times_the_pod_plus_one_deployment() {
        let unlimited = Limits::default();
        let cpu_and_memory = hard(json!({"cpu": "32", "memory": "128Gi"}));
        #[rustfmt::skip]
        let table: [(serde_json::Value, &Limits, [&str; 5]); 6] = [
            (json!({"replicas": 3, "resources": {"cpu": "4", "memory": "8Gi"}}), &cpu_and_memory, ["0", "12", "24Gi", "3", "1"]),
            (json!({"replicas": 2, "device": "cuda", "resources": {"cpu": "500m", "memory": "1.5Gi"}}), &cpu_and_memory, ["2", "1", "3Gi", "2", "1"]),
            (json!({"replicas": 2, "device": "cuda", "resources": {"gpu": 4, "cpu": "1", "memory": "1G"}}), &unlimited, ["8", "2", "2G", "2", "1"]),
            // Nothing requested and nothing limited: only pods and the deployment count.
            (json!({"replicas": 5}), &unlimited, ["0", "0", "0", "5", "1"]),
            // Zero replicas request nothing, so unset resources are fine under a limit.
            (json!({"replicas": 0}), &cpu_and_memory, ["0", "0", "0", "0", "1"]),
            (json!({"replicas": 3, "resources": {"cpu": "250m", "memory": "100Mi"}}), &unlimited, ["0", "750m", "300Mi", "3", "1"]),
        ];
        for (spec, limits, want) in table {
            let amounts = footprint(&runtime(spec.clone()), limits).expect("counted");
            assert_eq!(shown(&amounts), want, "{spec}");
        }
    }

    #[test]
    fn an_unrequested_resource_under_a_limit_cannot_be_counted() {
        let limits = hard(json!({"cpu": "32"}));
        let error = footprint(&runtime(json!({"replicas": 1})), &limits).expect_err("unbounded");
        assert_eq!(error, FootprintError::Unrequested(Resource::Cpu));
        assert!(error.to_string().starts_with(
            "cpu: spec.runtime.resources.cpu is unset, so the pods' cpu is unbounded"
        ));
        let memory = hard(json!({"memory": "1Gi"}));
        let ok = footprint(
            &runtime(json!({"replicas": 1, "resources": {"memory": "1Gi"}})),
            &memory,
        );
        assert!(ok.is_ok(), "memory is requested; cpu is not limited");
    }

    #[test]
    fn memory_is_written_as_the_shortest_exact_quantity() {
        let table = [
            ("128Gi", "128Gi"),
            ("1024Mi", "1Gi"),
            ("1500M", "1500M"),
            ("1000", "1k"),
            ("1001", "1001"),
            ("0", "0"),
        ];
        for (text, want) in table {
            let millis = Resource::Memory.parse(text).expect("parses");
            assert_eq!(Resource::Memory.format(millis), want, "{text}");
        }
        assert_eq!(
            Resource::Cpu.format(Resource::Cpu.parse("1.5").expect("cpu")),
            "1.5"
        );
    }

    #[test]
    fn hard_limits_read_every_field_and_leave_unset_ones_unlimited() {
        let limits = hard(json!({"gpu": 4, "cpu": "32", "replicas": 12}));
        assert_eq!(limits.get(Resource::Gpu), Some(4));
        assert_eq!(limits.get(Resource::Cpu), Some(32_000));
        assert_eq!(limits.get(Resource::Memory), None);
        assert_eq!(limits.get(Resource::Replicas), Some(12));
        assert_eq!(limits.get(Resource::ModelDeployments), None);
    }
}
