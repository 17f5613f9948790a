//! TenantQuota admission, as pure functions over plain data: what a ModelDeployment costs
//! ([`footprint`]), which quotas govern it ([`scope`]), what a quota admits ([`admission`])
//! and what the ModelDeployment's reconcile reads from that ([`verdict`]). The controllers
//! in `controller/tenant_quota` and `controller/model_deployment` do the I/O around them.

pub mod admission;
pub mod footprint;
pub mod scope;
pub mod verdict;

pub use admission::{
    Candidate, Decision, Entry, Ineligible, canary_entry_name, decide, is_canary_entry, over_limit,
};
pub use footprint::{Amounts, FootprintError, Limits, Resource, candidate_footprint, footprint};
pub use scope::{Governs, QuotaScope, TenantSource, governing, resolve_tenant};
pub use verdict::{Governor, Subject, Verdict, ran_unlimited, verdict};
