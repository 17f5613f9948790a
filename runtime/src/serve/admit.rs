//! Admit: the one decision whether a routed request may take work on its version, the
//! same for tensor and generate models. Per-tenant budgets and 429s plug in here.
//!
//! The bounded queues themselves stay with the runners (the executor's `maxQueue`, the
//! engine's `maxWaiting`): they are checked where the queue is, atomically with the
//! enqueue, and refuse with the same [`InferError::Overloaded`].

use std::sync::Arc;
use std::time::Instant;

use super::{RequestContext, Target};
use crate::catalog::Version;
use crate::error::InferError;

/// A request's place among its version's requests in flight, held until dropped.
pub struct Admitted {
    version: Arc<Version>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.version.leave();
    }
}

/// Admits `ctx` to `target` if its deadline has not passed and the version's
/// `limits.maxInFlight` leaves room. Every request is anonymous so far, so no tenant
/// budget applies yet.
pub fn admit(
    target: &Target,
    ctx: &RequestContext,
    deadline: Instant,
) -> Result<Admitted, InferError> {
    if deadline <= Instant::now() {
        return Err(InferError::DeadlineExceeded(format!(
            "the deadline passed {:?} after the request arrived, before it was admitted",
            deadline.saturating_duration_since(ctx.started)
        )));
    }
    let max = target.config.limits.max_in_flight as usize;
    if !target.version.enter(max) {
        return Err(InferError::Overloaded(format!(
            "{max} requests already in flight (limits.maxInFlight)"
        )));
    }
    Ok(Admitted {
        version: Arc::clone(&target.version),
    })
}
