//! The modelplane API: the custom resources `ModelDeployment`, `TenantQuota` and
//! `Canary` in `serving.modelplane.io/v1alpha1`, shared by the operator and the
//! end-to-end tests.
//!
//! The generated CustomResourceDefinitions (see [`crd`]) need Kubernetes 1.30 or newer.
//!
//! Besides the types, the crate holds the pure helpers that maintain status conditions
//! ([`condition`]) and re-exports [`units`], the string formats specs use, from
//! `modelplane-config` (which the runtime shares without linking kube).

pub mod canary;
pub mod condition;
pub mod crd;
pub mod model_deployment;
pub mod schema;
pub mod tenant_quota;

pub use modelplane_config::units;

pub use canary::{Canary, CanarySpec, CanaryStatus};
pub use condition::{Condition, ConditionStatus};
pub use model_deployment::{ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus};
pub use tenant_quota::{TenantQuota, TenantQuotaSpec, TenantQuotaStatus};

/// API group of all modelplane resources.
pub const GROUP: &str = "serving.modelplane.io";
/// API version of all modelplane resources.
pub const VERSION: &str = "v1alpha1";
/// The oldest Kubernetes release the CRDs work on (CEL validation rules are GA since 1.29;
/// the CRDs use nothing newer than 1.30).
pub const MIN_KUBERNETES_VERSION: &str = "1.30";
