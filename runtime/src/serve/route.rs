//! Route: which version serves a request, decided from the [`RequestContext`] once it
//! is authenticated. A request that names a version gets it; else a model with a canary
//! whose candidate is ready splits it between stable and candidate ([`Split`]); else
//! it gets its model's default serving version.
//!
//! The decision is recorded on the request's span (`version`, `route`) and counted in
//! `modelplane_route_decisions_total{model,version,reason}`, through handles resolved
//! when the version loaded: the step takes no lock and allocates nothing.

use std::sync::Arc;

use modelplane_config::ModelConfig;

use super::RequestContext;
use super::split::RouteReason;
use crate::catalog::{Catalog, ModelEntry, Version};
use crate::error::InferError;

/// The version picked for a request, with its model's config as it was then (limits
/// apply without a reload).
#[derive(Clone)]
pub struct Target {
    /// The model's config.
    pub config: Arc<ModelConfig>,
    /// The instance that runs the request.
    pub version: Arc<Version>,
    /// Why the route picked it.
    pub reason: RouteReason,
}

/// Picks the version for `ctx` from the catalog served right now.
pub fn route(catalog: &Catalog, ctx: &RequestContext) -> Result<Target, InferError> {
    let entry = catalog.model(&ctx.model)?;
    let (version, reason) = pick(entry, ctx)?;
    ctx.span.record("version", version.label.as_str());
    ctx.span.record("route", reason.as_str());
    version.metrics.routed(reason);
    Ok(Target {
        config: Arc::clone(&entry.config),
        version: Arc::clone(version),
        reason,
    })
}

fn pick<'e>(
    entry: &'e ModelEntry,
    ctx: &RequestContext,
) -> Result<(&'e Arc<Version>, RouteReason), InferError> {
    if let Some(label) = ctx.version.as_deref() {
        return Ok((entry.resolve(Some(label))?, RouteReason::Named));
    }
    if let Some((split, candidate)) = entry.canary() {
        let decision = split.decide(&ctx.attributes, ctx.identity.tenant());
        let version = if decision.candidate {
            Some(candidate)
        } else {
            entry.default_serving()
        };
        if let Some(version) = version {
            return Ok((version, decision.reason));
        }
    }
    Ok((entry.resolve(None)?, RouteReason::Default))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::http::HeaderMap;

    use super::*;
    use crate::catalog::fixtures::{entry_of, failed, serving, version_in};
    use crate::catalog::{LoadState, VersionSlot};
    use crate::metrics::Metrics;
    use crate::serve::{Credential, Identity, Protocol};

    const CANARY: &str = ", defaultVersion: '1', canary: {candidate: '2', weight: 100, \
                          match: [{tenants: [beta]}]}";

    fn catalog(entry: ModelEntry) -> Catalog {
        let mut catalog = Catalog::default();
        catalog.models.insert("m".into(), entry);
        catalog
    }

    fn request(version: Option<&str>, tenant: &str) -> RequestContext {
        let mut ctx = RequestContext::new(
            Protocol::Rest,
            "m",
            version.map(str::to_owned),
            HeaderMap::new(),
            Instant::now(),
        )
        .expect("context");
        ctx.identity = Identity::new(Credential::ApiKey, Arc::from(tenant));
        ctx
    }

    fn routed(catalog: &Catalog, ctx: &RequestContext) -> (String, RouteReason) {
        let target = route(catalog, ctx).expect("routed");
        (target.version.label.clone(), target.reason)
    }

    #[tokio::test]
    async fn a_ready_candidate_takes_its_split_and_a_named_version_bypasses_it() {
        let metrics = Metrics::new();
        let (one, two) = (
            version_in(&metrics, "1").await,
            version_in(&metrics, "2").await,
        );
        let catalog = catalog(entry_of(
            CANARY,
            vec![("1", serving(&one)), ("2", serving(&two))],
            None,
        ));
        let anyone = request(None, "anonymous");
        assert_eq!(routed(&catalog, &anyone), ("2".into(), RouteReason::Weight));
        let beta = request(None, "beta");
        assert_eq!(routed(&catalog, &beta), ("2".into(), RouteReason::Match));
        let named = request(Some("1"), "beta");
        assert_eq!(routed(&catalog, &named), ("1".into(), RouteReason::Named));
        let text = metrics.encode();
        for expected in [
            r#"modelplane_route_decisions_total{model="m",version="2",reason="weight"} 1"#,
            r#"modelplane_route_decisions_total{model="m",version="2",reason="match"} 1"#,
            r#"modelplane_route_decisions_total{model="m",version="1",reason="named"} 1"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }

    #[tokio::test]
    async fn a_candidate_loading_or_failed_takes_no_split_traffic() {
        let (one, two) = (
            version_in(&Metrics::new(), "1").await,
            version_in(&Metrics::new(), "2").await,
        );
        let reloading = VersionSlot {
            serving: Some(Arc::clone(&two)),
            state: LoadState::Loading,
        };
        let kept_after_a_failed_reload = VersionSlot {
            serving: Some(Arc::clone(&two)),
            state: LoadState::Failed("corrupt".into()),
        };
        let first_load = VersionSlot {
            serving: None,
            state: LoadState::Loading,
        };
        for candidate in [
            failed("corrupt"),
            first_load,
            reloading,
            kept_after_a_failed_reload,
        ] {
            let entry = entry_of(CANARY, vec![("1", serving(&one)), ("2", candidate)], None);
            let catalog = catalog(entry);
            for tenant in ["anonymous", "beta"] {
                let ctx = request(None, tenant);
                assert_eq!(routed(&catalog, &ctx), ("1".into(), RouteReason::Default));
            }
            let split = catalog.models["m"].split.as_ref().expect("split");
            assert_eq!(
                split.counter().load(std::sync::atomic::Ordering::Relaxed),
                0
            );
        }
    }

    #[tokio::test]
    async fn without_a_canary_the_default_version_serves() {
        let (one, two) = (
            version_in(&Metrics::new(), "1").await,
            version_in(&Metrics::new(), "2").await,
        );
        let slots = vec![("1", serving(&one)), ("2", serving(&two))];
        let catalog = catalog(entry_of(", defaultVersion: '1'", slots, None));
        let ctx = request(None, "beta");
        assert_eq!(routed(&catalog, &ctx), ("1".into(), RouteReason::Default));
        assert!(matches!(
            route(&catalog, &request(Some("3"), "beta")),
            Err(InferError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_new_entry_keeps_the_split_or_continues_its_counter() {
        let slots = || vec![("1", failed("x")), ("2", failed("y"))];
        let first = entry_of(CANARY, slots(), None);
        let split = first.split.as_ref().expect("split");
        split
            .counter()
            .fetch_add(7, std::sync::atomic::Ordering::Relaxed);
        let same = ModelEntry::new(Arc::clone(&first.config), slots_of(slots()), Some(&first));
        assert!(Arc::ptr_eq(split, same.split.as_ref().expect("split"),));
        let reweighted = entry_of(
            &CANARY.replace("weight: 100", "weight: 5"),
            slots(),
            Some(&first),
        );
        let next = reweighted.split.as_ref().expect("split");
        assert!(
            !Arc::ptr_eq(split, next),
            "a new config compiles a new split"
        );
        assert!(
            Arc::ptr_eq(split.counter(), next.counter()),
            "the counter carries over"
        );
        let removed = entry_of(", defaultVersion: '1'", slots(), Some(&first));
        assert!(removed.split.is_none());
    }

    fn slots_of(slots: Vec<(&str, VersionSlot)>) -> Vec<(String, VersionSlot)> {
        slots
            .into_iter()
            .map(|(label, slot)| (label.to_owned(), slot))
            .collect()
    }
}
