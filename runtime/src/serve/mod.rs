//! The one request path. Every edge (OIP REST, OIP gRPC, the OpenAI API) parses its
//! request, builds a [`RequestContext`] and hands it here; the path takes it through
//! [`route`] (which version) → [`admit`] (may it run) → run (the version's executor or
//! engine) → [`record`] (one metrics record, the same labels on every protocol). Between
//! route and admit, the routed version's circuit breaker may send the request down its
//! model's fallback chain ([`fallback`]). The
//! edge only decodes its wire format (inside `prepare`, once the version is known) and
//! encodes the answer.
//!
//! ```text
//! edge: parse → RequestContext ─┐
//!                               ▼
//!       start: route → breaker → record → admit ─► Call::tensor:   prepare → run → encode
//!                                              └─► Call::generate: prepare → submit → Generation
//! ```
//!
//! The route step is where a model's canary splits its traffic ([`Split`]): by match
//! rules, a sticky header, then the weight; authentication runs before it, so tenant
//! rules see the request's tenant.

mod admit;
pub mod breaker;
mod context;
pub mod fallback;
mod generate;
pub mod limiter;
pub mod notes;
mod record;
pub mod remote;
mod route;
mod split;

use std::time::Instant;

use tracing::Instrument;

pub use admit::{Admitted, admit};
pub use context::{
    Attributes, Credential, Identity, Protocol, REQUEST_TIMEOUT_HEADER, RequestContext,
    parse_grpc_timeout,
};
pub use generate::{Completed, Event, GenerateInput, Generation};
pub use record::{CANCELLED, FALLBACK, Record, SUCCESS};
pub use route::{Target, route};
pub use split::{Decision, RouteReason, Split, weighted};

use crate::error::InferError;
use crate::server::AppState;
use crate::tensor::TensorData;
use fallback::{Gated, Hop};

/// A routed, admitted request on its way to its version; its outcome is recorded
/// exactly once, by [`Call::tensor`], by the [`Generation`] of [`Call::generate`], or
/// as cancelled when it is dropped.
pub struct Call {
    target: Target,
    hop: Hop,
    deadline: Instant,
    admitted: Admitted,
    record: Record,
}

/// Tensors ready for a tensor model's executor.
#[derive(Debug)]
pub struct TensorRequest {
    /// Inputs in signature order.
    pub inputs: Vec<TensorData>,
    /// Rows on dimension 0 (1 when the model is not batched).
    pub rows: u64,
}

/// Runs an edge's `prepare` (reading and decoding the request) by the request's
/// deadline and `limits.bodyTimeout`: a client that trickles its body cannot hold an
/// admitted place for longer. The body timeout is the client's fault (408, nothing for
/// the breaker); the deadline passing first is the request's timeout, as anywhere else.
async fn read_in_time<T>(
    target: &Target,
    deadline: Instant,
    prepare: impl Future<Output = Result<T, InferError>>,
) -> Result<T, InferError> {
    let body_timeout = target.config.limits.body_timeout;
    let read_by = Instant::now() + body_timeout.get();
    match tokio::time::timeout_at(deadline.min(read_by).into(), prepare).await {
        Ok(prepared) => prepared,
        Err(_) if read_by < deadline => Err(InferError::ClientTimeout(format!(
            "the request did not arrive in time (limits.bodyTimeout {body_timeout})"
        ))),
        Err(_) => Err(InferError::DeadlineExceeded(
            "the deadline passed while the request was still being read".into(),
        )),
    }
}

/// Routes and admits `ctx` against what `state` serves right now. A request that
/// names no model or version this server has is refused here, before any record
/// (there is no version to charge it to); an admission refusal is recorded.
pub fn start(state: &AppState, ctx: RequestContext) -> Result<Call, InferError> {
    // Identity first: an unauthenticated request learns nothing, not even which models exist.
    let ctx = crate::identity::authenticate(state, ctx)?;
    let catalog = state.catalog.load();
    let routed = route(&catalog, &ctx)?;
    let new_record = |target: &Target| {
        Record::new(
            std::sync::Arc::clone(&target.version),
            state.tenancy.label(ctx.identity.tenant()),
            ctx.started,
            ctx.span.clone(),
        )
    };
    let Gated {
        target,
        hop,
        admission,
    } = match fallback::gate(state, &catalog, &ctx, &routed) {
        Ok(gated) => gated,
        Err(err) => return Err(new_record(&routed).fail(err)),
    };
    let deadline = crate::limits::deadline(ctx.started, ctx.timeout, &target.config.limits);
    let stand_in = !matches!(hop, Hop::Version);
    let record = new_record(&target).gated(admission, stand_in, &target.config);
    match admit(&target, &ctx, deadline, &state.tenancy) {
        Ok(admitted) => Ok(Call {
            target,
            hop,
            deadline,
            admitted,
            record,
        }),
        Err(err) => Err(record.refuse(err)),
    }
}

impl Call {
    /// The version serving the request and its model's config.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Refuses the request, recorded, when `check` fails on the routed target (an
    /// endpoint that serves only some tasks, say).
    pub fn check(
        self,
        check: impl FnOnce(&Target) -> Result<(), InferError>,
    ) -> Result<Self, InferError> {
        match check(&self.target) {
            Ok(()) => Ok(self),
            Err(err) => Err(self.record.fail(err)),
        }
    }

    /// Runs a tensor request: `prepare` decodes and checks the edge's inputs against
    /// the version (its signature and limits), the version's executor runs them, and
    /// `encode` builds the edge's answer from the outputs. Every outcome, including a
    /// failure to decode or encode, is recorded once.
    pub async fn tensor<P, T>(
        self,
        prepare: impl AsyncFnOnce(&Target) -> Result<(TensorRequest, P), InferError>,
        encode: impl FnOnce(&Target, P, Vec<TensorData>) -> Result<T, InferError>,
    ) -> Result<T, InferError> {
        let Self {
            target,
            hop,
            deadline,
            admitted,
            record,
        } = self;
        let result = async {
            if target.version.generates() {
                return Err(target.version.generates_text());
            }
            let (request, parsed) = read_in_time(&target, deadline, prepare(&target)).await?;
            let outputs = match hop {
                Hop::Version => {
                    target
                        .version
                        .run(
                            request.inputs,
                            request.rows,
                            deadline,
                            &target.config.limits,
                            admitted.tenant.fairness().clone(),
                        )
                        .await?
                }
                Hop::Remote {
                    remote,
                    channel,
                    then,
                } => match remote::infer(channel, &remote, request.inputs, deadline).await {
                    Ok(outputs) => outputs,
                    // The hop failed, not the caller: the chain's fixed answer stands in.
                    Err(err) if !matches!(err, InferError::BadRequest(_)) && then.is_some() => {
                        tracing::warn!(parent: record.span(), error = %err, "remote fallback failed: fixed response");
                        target.version.metrics.fell_back("response");
                        notes::fallback("response");
                        let fixed = then.as_ref().map_or(&[][..], |f| &f.outputs[..]);
                        fallback::fixed_tensors(fixed, request.rows, target.version.batching)?
                    }
                    Err(err) => return Err(err),
                },
                Hop::Fixed(fixed) => {
                    fallback::fixed_tensors(&fixed.outputs, request.rows, target.version.batching)?
                }
            };
            encode(&target, parsed, outputs)
        }
        .instrument(record.span().clone())
        .await;
        drop(admitted);
        record.finish(&result);
        result
    }
}
