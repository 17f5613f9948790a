//! Record: one metrics record per request, with the same labels and outcomes on every
//! protocol.

use std::sync::Arc;
use std::time::Instant;

use crate::catalog::Version;
use crate::error::InferError;

/// The outcome label of a request whose future was dropped before it finished: the
/// client went away (or its stream was cancelled).
pub const CANCELLED: &str = "cancelled";

/// The outcome label of a request that succeeded.
pub const SUCCESS: &str = "success";

/// Records a request once: when the path finishes it, or as [`CANCELLED`] when it is
/// dropped first.
pub struct Record {
    version: Arc<Version>,
    tenant: Arc<str>,
    started: Instant,
    span: tracing::Span,
    done: bool,
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
        }
    }

    /// The request's span.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the request's result.
    pub fn finish<T>(mut self, result: &Result<T, InferError>) {
        match result {
            Ok(_) => self.write(SUCCESS),
            Err(err) => self.failed(err),
        }
    }

    /// Records a failure and hands the error back.
    pub fn fail(mut self, err: InferError) -> InferError {
        self.failed(&err);
        err
    }

    fn failed(&mut self, err: &InferError) {
        tracing::debug!(parent: &self.span, error = %err, "request failed");
        self.write(err.metric_label());
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
            self.write(CANCELLED);
        }
    }
}
