//! Canary analysis: candidate against stable, one interval at a time.
//!
//! Pure logic: [`series`] (the series read, and the interval between two scrapes),
//! [`exposition`] (the runtime's `/metrics` text) and [`stats`] (the verdict of one
//! metric). I/O, the two metric sources of `spec.analysis.source`: [`pods`] (the
//! operator scrapes every runtime pod's `/metrics`) and [`prometheus`] (PromQL
//! `increase()` over the interval, and custom queries). Both sources fail with a
//! [`SourceError`], which the controller counts apart from failed analyses.
//!
//! ```text
//! pods:       scrape(now) ─┐
//!             scrape(before) ─ series::delta ─┐
//! prometheus: window ─────────────────────────┴─ Snapshot ─ stats::judge(metric, stable, candidate)
//! ```

pub mod exposition;
pub mod pods;
pub mod prometheus;
pub mod series;
mod source;
pub mod stats;

pub use exposition::{ExpositionError, parse};
pub use series::{Histogram, PodScrape, Snapshot, VersionSeries, delta};
pub use source::SourceError;
pub use stats::{Judgement, Limits, Metric, Quantile, Rule, Verdict, judge};

#[cfg(test)]
mod test_server;
