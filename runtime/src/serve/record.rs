//! Record: one metrics record per request, with the same labels and outcomes on every
//! protocol.

use std::sync::Arc;
use std::time::Instant;

use modelplane_config::ModelConfig;

use super::breaker::{Admission, Outcome};
use super::limiter::Signal;
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
    success: &'static str,
    /// The model's config when the version itself runs the request: its breaker learns
    /// how the request ended (when it let it through, `admission`) and its adaptive
    /// limit takes the request's latency.
    runs_on: Option<Arc<ModelConfig>>,
    admission: Option<Admission>,
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
            success: SUCCESS,
            runs_on: None,
            admission: None,
        }
    }

    /// The record of a request the breaker step let through (`admission`) to the
    /// version of `config`, or sent to a remote or fixed hop (`stand_in`: its success is
    /// counted as [`FALLBACK`], and neither its outcome nor its latency is the version's).
    pub fn gated(
        mut self,
        admission: Option<Admission>,
        stand_in: bool,
        config: &Arc<ModelConfig>,
    ) -> Self {
        if stand_in {
            self.success = FALLBACK;
        } else {
            self.admission = admission;
            self.runs_on = Some(Arc::clone(config));
        }
        self
    }

    /// Feeds the version's adaptive limit a latency `signal` of this request.
    pub fn sample(&self, signal: Signal, latency: std::time::Duration) {
        if let Some(config) = &self.runs_on {
            self.version.sample_latency(&config.limits, signal, latency);
        }
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
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
                // A generation's signals are its token times, sampled as they happen.
                if !self.version.generates() {
                    self.sample(Signal::Request, self.started.elapsed());
                }
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
        if let (Some(admission), Some(config)) = (self.admission.take(), &self.runs_on) {
            super::fallback::settle(&self.version, config, admission, outcome);
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
