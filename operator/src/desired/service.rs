//! The runtime Service and PodDisruptionBudget.

use k8s_openapi::{
    api::{
        core::v1::{Service, ServicePort, ServiceSpec},
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{GRPC_PORT, HTTP_PORT, METRICS_SERVICE_PORT, Owner};

/// ClusterIP Service with the http, grpc and metrics ports.
pub fn service(owner: &Owner<'_>) -> Service {
    let port = |name: &str, port: i32, target: &str, app_protocol: &str| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        app_protocol: Some(app_protocol.into()),
        ..ServicePort::default()
    };
    Service {
        metadata: owner.metadata(owner.name.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(owner.selector_labels()),
            ports: Some(vec![
                port("http", HTTP_PORT, "http", "http"),
                port("grpc", GRPC_PORT, "grpc", "grpc"),
                // The runtime serves /metrics on its http port.
                port("metrics", METRICS_SERVICE_PORT, "http", "http"),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Keeps all but one replica up during voluntary disruptions; none for a single replica,
/// where a budget would block node drains forever.
pub fn pod_disruption_budget(owner: &Owner<'_>) -> Option<PodDisruptionBudget> {
    (owner.spec.runtime.replicas > 1).then(|| PodDisruptionBudget {
        metadata: owner.metadata(owner.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(owner.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
