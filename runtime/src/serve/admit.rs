//! Admit: the one decision whether a routed request may take work on its version, the
//! same for tensor and generate models: its deadline, its tenant's budgets (429 with
//! `Retry-After`), the version's `maxInFlight` (503).
//!
//! The bounded queues themselves stay with the runners (the executor's `maxQueue`, the
//! engine's `maxWaiting`): they are fair queues across tenants, checked where the queue
//! is, and refuse (or shed the lowest band's newest) with [`InferError::Overloaded`].

use std::sync::Arc;
use std::time::Instant;

use super::{RequestContext, Target};
use crate::catalog::Version;
use crate::error::InferError;
use crate::tenancy::{Tenancy, TenantPermit};

/// A request's place among its version's requests in flight and its tenant's
/// admission, held until dropped.
pub struct Admitted {
    version: Arc<Version>,
    /// The tenant's permit: its flow in the fair queues, its token reservation.
    pub tenant: TenantPermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.version.leave();
    }
}

/// Admits `ctx` to `target` if its deadline has not passed, the version's
/// `limits.maxInFlight` leaves room and its tenant's budgets allow it. A request the
/// tenant refuses gives its place back, and one the version refuses takes nothing from
/// its tenant.
pub fn admit(
    target: &Target,
    ctx: &RequestContext,
    deadline: Instant,
    tenancy: &Tenancy,
) -> Result<Admitted, InferError> {
    let now = Instant::now();
    if deadline <= now {
        return Err(InferError::DeadlineExceeded(format!(
            "the deadline passed {:?} after the request arrived, before it was admitted",
            deadline.saturating_duration_since(ctx.started)
        )));
    }
    let limits = &target.config.limits;
    let max = target.version.concurrency_limit(limits);
    if !target.version.enter(max) {
        let which = if limits.adaptive.is_some() {
            "the adaptive limit, limits.adaptive"
        } else {
            "limits.maxInFlight"
        };
        return Err(InferError::Overloaded(format!(
            "{max} requests already in flight ({which})"
        )));
    }
    match tenancy.admit(&ctx.identity, now) {
        Ok(tenant) => Ok(Admitted {
            version: Arc::clone(&target.version),
            tenant,
        }),
        Err(err) => {
            target.version.leave();
            Err(err)
        }
    }
}
