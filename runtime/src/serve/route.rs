//! Route: which version serves a request. Canary splits (by weight, header, tenant)
//! will decide here, from the [`RequestContext`]; today a request gets the version it
//! names, else its model's default serving version.

use std::sync::Arc;

use modelplane_config::ModelConfig;

use super::RequestContext;
use crate::catalog::{Catalog, Version};
use crate::error::InferError;

/// The version picked for a request, with its model's config as it was then (limits
/// apply without a reload).
#[derive(Clone)]
pub struct Target {
    /// The model's config.
    pub config: Arc<ModelConfig>,
    /// The instance that runs the request.
    pub version: Arc<Version>,
}

/// Picks the version for `ctx` from the catalog served right now.
pub fn route(catalog: &Catalog, ctx: &RequestContext) -> Result<Target, InferError> {
    let (entry, version) = catalog.resolve(&ctx.model, ctx.version.as_deref())?;
    ctx.span.record("version", version.label.as_str());
    Ok(Target {
        config: Arc::clone(&entry.config),
        version,
    })
}
