//! Record: one metrics record per request, with the same labels and outcomes on every
//! protocol.

use std::sync::Arc;
use std::time::Instant;

use super::breaker::Outcome;
use super::fallback::Ticket;
use crate::catalog::Version;
use crate::error::InferError;

/// The outcome label of a request whose future was dropped before it finished: the
/// client went away (or its stream was cancelled).
pub const CANCELLED: &str = "cancelled";

/// The outcome label of a request that succeeded.
pub const SUCCESS: &str = "success";

/// The outcome label of a request a remote or fixed fallback hop answered for the
/// version while its breaker was open.
pub const FALLBACK: &str = "fallback";

/// Records a request once: when the path finishes it, or as [`CANCELLED`] when it is
/// dropped first; the breaker that let it through learns how it ended.
pub struct Record {
    version: Arc<Version>,
    tenant: Arc<str>,
    started: Instant,
    span: tracing::Span,
    done: bool,
    ticket: Option<Ticket>,
    success: &'static str,
}

impl Record {
    /// Starts the record of a request of `tenant` (its metric label) that arrived at
    /// `started`.
    pub fn new(
        version: Arc<Version>,
        tenant: Arc<str>,
        started: Instant,
        span: tracing::Span,
    ) -> Self {
        Self {
            version,
            tenant,
            started,
            span,
            done: false,
            ticket: None,
            success: SUCCESS,
        }
    }

    /// The record of a request the breaker step let through with `ticket`, or sent to
    /// a remote or fixed hop (`stand_in`: its success is counted as [`FALLBACK`]).
    pub fn gated(mut self, ticket: Option<Ticket>, stand_in: bool) -> Self {
        self.ticket = ticket;
        if stand_in {
            self.success = FALLBACK;
        }
        self
    }

    /// The request's span.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the request's result.
    pub fn finish<T>(mut self, result: &Result<T, InferError>) {
        match result {
            Ok(_) => {
                self.settle(Outcome::Success);
                self.write(self.success);
            }
            Err(err) => self.failed(err),
        }
    }

    /// Records a refusal at admission and hands the error back: the version never saw
    /// the request, so its breaker counts nothing (a deadline already past included).
    pub fn refuse(mut self, err: InferError) -> InferError {
        self.settle(Outcome::Neutral);
        self.fail(err)
    }

    /// Records a failure and hands the error back.
    pub fn fail(mut self, err: InferError) -> InferError {
        self.failed(&err);
        err
    }

    fn failed(&mut self, err: &InferError) {
        tracing::debug!(parent: &self.span, error = %err, "request failed");
        self.settle(err.breaker_outcome());
        self.write(err.metric_label());
    }

    fn settle(&mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            ticket.settle(outcome);
        }
    }

    fn write(&mut self, outcome: &'static str) {
        self.done = true;
        self.span.record("outcome", outcome);
        let metrics = &self.version.metrics;
        metrics
            .request_duration
            .observe(self.started.elapsed().as_secs_f64());
        metrics.count(&self.tenant, outcome);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.done {
            self.settle(Outcome::Neutral);
            self.write(CANCELLED);
        }
    }
}
