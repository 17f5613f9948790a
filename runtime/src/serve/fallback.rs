//! The breaker step of the path: after the route picks a version, its circuit
//! breaker ([`super::breaker`]) lets the request through, or sends it elsewhere. A
//! canary candidate's split traffic goes back to the stable version (hop `stable`);
//! anything else goes down the model's fallback chain: another local model (whose own breaker and readiness count), a
//! model another runtime serves over gRPC ([`super::remote`]), a fixed answer. The hop
//! that serves it is named in the [`super::notes::FALLBACK_HEADER`] response header
//! and counted in `modelplane_fallback_requests_total` of the routed version.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use modelplane_config::{FallbackHop, FixedResponse, FixedTensor, ModelConfig, RemoteModel};

use super::breaker::{Admission, Outcome, Transition};
use super::{RequestContext, Target, notes};
use crate::catalog::{Catalog, Version};
use crate::error::InferError;
use crate::server::AppState;
use crate::tensor::TensorData;

/// What serves a request once the breaker step has run.
pub enum Hop {
    /// The target's version itself.
    Version,
    /// Another runtime's model; on failure, `then` (the chain's fixed answer) if any.
    Remote {
        /// The hop's address and model.
        remote: RemoteModel,
        /// The channel to it.
        channel: tonic::transport::Channel,
        /// The fixed answer after it in the chain.
        then: Option<FixedResponse>,
    },
    /// A fixed answer.
    Fixed(FixedResponse),
}

/// Tells `version`'s breaker how a request it let through (`admission`) ended.
pub fn settle(version: &Version, config: &ModelConfig, admission: Admission, outcome: Outcome) {
    let Some(breaker) = config.breaker() else {
        return;
    };
    if let Some(transition) = version
        .breaker
        .observe(breaker, admission, outcome, Instant::now())
    {
        moved(version, &transition);
    }
}

/// The request's target after the breaker step (the routed one, or a local fallback
/// model's), the hop that serves it and how that version's breaker let it through.
pub struct Gated {
    /// The version (and model config) the request is decoded against and charged to.
    pub target: Target,
    /// What runs it.
    pub hop: Hop,
    /// How the target version's breaker let it through (none without a breaker, or
    /// when a remote or fixed hop stands in): [`settle`] tells it how it ended.
    pub admission: Option<Admission>,
}

/// The hop label of a candidate's split traffic sent back to the stable version.
pub const STABLE: &str = "stable";

/// Runs the breaker step for `target`, routed for `ctx`.
pub fn gate(
    state: &AppState,
    catalog: &Catalog,
    ctx: &RequestContext,
    target: &Target,
) -> Result<Gated, InferError> {
    let retry_after = match pass(target) {
        Ok(admission) => {
            return Ok(Gated {
                target: target.clone(),
                hop: Hop::Version,
                admission,
            });
        }
        Err(retry_after) => retry_after,
    };
    if let Some(stable) = stable_of_candidate(catalog, ctx, target)
        && let Ok(admission) = pass(&stable)
    {
        target.version.metrics.fell_back(STABLE);
        notes::fallback(STABLE);
        ctx.span.record("fallback", STABLE);
        ctx.span.record("version", stable.version.label.as_str());
        return Ok(Gated {
            target: stable,
            hop: Hop::Version,
            admission,
        });
    }
    let chain = &target.config.fallback;
    let mut passed_over = Vec::new();
    for (at, hop) in chain.iter().enumerate() {
        let label = hop.label();
        let gated = match hop {
            FallbackHop::Model(name) => match local(catalog, ctx, name) {
                Ok((fallback, admission)) => Gated {
                    target: fallback,
                    hop: Hop::Version,
                    admission,
                },
                Err(why) => {
                    passed_over.push(format!("{label} ({why})"));
                    continue;
                }
            },
            FallbackHop::Grpc(remote) => match state.remotes.channel(&remote.address) {
                Ok(channel) => Gated {
                    target: target.clone(),
                    hop: Hop::Remote {
                        remote: remote.clone(),
                        channel,
                        then: chain[at + 1..].iter().find_map(|later| match later {
                            FallbackHop::Response(fixed) => Some(fixed.clone()),
                            _ => None,
                        }),
                    },
                    admission: None,
                },
                Err(err) => {
                    passed_over.push(format!("{label} ({err})"));
                    continue;
                }
            },
            FallbackHop::Response(fixed) => Gated {
                target: target.clone(),
                hop: Hop::Fixed(fixed.clone()),
                admission: None,
            },
        };
        target.version.metrics.fell_back(&label);
        notes::fallback(&label);
        ctx.span.record("fallback", label.as_str());
        return Ok(gated);
    }
    let version = &target.version;
    let tried = if passed_over.is_empty() {
        "no fallback is configured".to_owned()
    } else {
        format!("no fallback could serve: {}", passed_over.join(", "))
    };
    Err(InferError::CircuitOpen {
        message: format!(
            "the circuit breaker of model {:?} version {:?} is open and {tried}",
            version.model, version.label
        ),
        retry_after,
    })
}

/// Asks `target`'s breaker: how it lets the request through (none without a breaker)
/// or how long it stays open.
fn pass(target: &Target) -> Result<Option<Admission>, Duration> {
    let Some(breaker) = target.config.breaker() else {
        return Ok(None);
    };
    let version = &target.version;
    let (admission, transition) = version.breaker.admit(breaker, Instant::now());
    if let Some(transition) = transition {
        moved(version, &transition);
    }
    match admission {
        Admission::Open { retry_after } => Err(retry_after),
        Admission::Closed | Admission::Probe => Ok(Some(admission)),
    }
}

/// The default version of local model `name`, when it can serve: loaded, its own
/// breaker not open.
fn local(
    catalog: &Catalog,
    ctx: &RequestContext,
    name: &str,
) -> Result<(Target, Option<Admission>), String> {
    let entry = catalog.model(name).map_err(|err| err.to_string())?;
    let version = entry.resolve(None).map_err(|err| err.to_string())?;
    let target = Target {
        config: Arc::clone(&entry.config),
        version: Arc::clone(version),
        reason: super::RouteReason::Default,
    };
    let admission = pass(&target).map_err(|_| "its own breaker is open".to_owned())?;
    ctx.span.record("version", target.version.label.as_str());
    Ok((target, admission))
}

/// The stable version, when the route sent `ctx` to a canary candidate by the split
/// (not by naming it).
fn stable_of_candidate(catalog: &Catalog, ctx: &RequestContext, target: &Target) -> Option<Target> {
    if ctx.version.is_some() {
        return None;
    }
    let entry = catalog.model(&target.version.model).ok()?;
    let stable = entry.default_serving()?;
    if Arc::ptr_eq(stable, &target.version) {
        return None;
    }
    Some(Target {
        config: Arc::clone(&target.config),
        version: Arc::clone(stable),
        reason: target.reason,
    })
}

fn moved(version: &Version, transition: &Transition) {
    version.metrics.breaker_moved(transition);
    match transition {
        Transition::Opened {
            reason,
            share,
            requests,
            baseline,
            open_for,
        } => tracing::warn!(
            model = %version.model,
            version = %version.label,
            reason = reason.as_str(),
            failure_share = share,
            requests,
            baseline = baseline.unwrap_or(f64::NAN),
            open_for = ?open_for,
            "circuit breaker opened"
        ),
        Transition::HalfOpened => tracing::info!(
            model = %version.model,
            version = %version.label,
            "circuit breaker half-open: probing"
        ),
        Transition::Closed => tracing::info!(
            model = %version.model,
            version = %version.label,
            "circuit breaker closed"
        ),
    }
}

/// The fixed answer's tensors for a request of `rows` rows: each tensor once, or, for
/// a version that batches, once per row on a new dimension 0.
pub fn fixed_tensors(
    fixed: &[FixedTensor],
    rows: u64,
    batching: bool,
) -> Result<Vec<TensorData>, InferError> {
    fixed
        .iter()
        .map(|tensor| {
            // Checked when the config was read; a failure here is a bug, not the client's.
            let (datatype, bytes) = tensor
                .to_bytes()
                .map_err(|why| InferError::Internal(format!("fixed response: {why}")))?;
            let (shape, data) = if batching {
                let rows_i64 = i64::try_from(rows).unwrap_or(i64::MAX);
                let shape = std::iter::once(rows_i64)
                    .chain(tensor.shape.iter().copied())
                    .collect();
                (shape, bytes.repeat(usize::try_from(rows).unwrap_or(1)))
            } else {
                (tensor.shape.clone(), bytes)
            };
            Ok(TensorData {
                name: tensor.name.clone(),
                datatype,
                shape,
                data: Bytes::from(data),
            })
        })
        .collect()
}
