//! The series a Canary analysis reads, per model version, and the interval between two
//! scrapes of them.
//!
//! Every series is cumulative, as the runtime exports it. [`delta`] turns two scrapes of
//! every runtime pod into the [`Snapshot`] of the interval between them; the statistics
//! in [`super::stats`] read only such interval snapshots.
//!
//! # What counts as an error
//!
//! From `modelplane_requests_total` (summed over tenants):
//!
//! - **errors** are the outcomes in [`ERROR_OUTCOMES`]: `internal` and
//!   `deadline_exceeded`, failures of the version itself. A generation whose model step
//!   failed is already counted here as `internal` (the runtime records every request,
//!   streamed or not, once under this series), so `modelplane_generate_requests_total{outcome="error"}`
//!   is not added a second time.
//! - **judged requests** are all outcomes except those in [`UNJUDGED_OUTCOMES`]
//!   (`cancelled`, `rate_limited`, `unauthenticated`, `forbidden`, `not_found`): those
//!   say something about the client, its quota or identity, not about the version that
//!   happened to be routed. Every other outcome (`success`, `bad_request`,
//!   `invalid_parameter`, `too_large`, `not_ready`, `overloaded`, errors, and any outcome
//!   a later runtime adds) is judged.
//!
//! The error rate is errors / judged requests. The empty-output rate is
//! `modelplane_generate_empty_outputs_total` / finished generations, where finished are
//! the generation outcomes in [`FINISHED_GENERATION_OUTCOMES`] (`stop`, `length`).

use std::collections::{BTreeMap, BTreeSet};

/// `modelplane_requests_total` outcomes that count as errors of the version.
pub const ERROR_OUTCOMES: [&str; 2] = ["internal", "deadline_exceeded"];

/// `modelplane_requests_total` outcomes that are not attributable to a version and so are
/// left out of the judged requests.
pub const UNJUDGED_OUTCOMES: [&str; 5] = [
    "cancelled",
    "rate_limited",
    "unauthenticated",
    "forbidden",
    "not_found",
];

/// `modelplane_generate_requests_total` outcomes of a generation that finished normally
/// (the denominator of the empty-output rate).
pub const FINISHED_GENERATION_OUTCOMES: [&str; 2] = ["stop", "length"];

/// A classic Prometheus histogram: cumulative bucket counts by upper bound, plus the sum
/// and count of the observations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// `(upper bound, cumulative count)`, ascending by bound, counts never decreasing;
    /// the last bound is `+Inf` unless the histogram has no buckets at all.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations (may be NaN if the runtime observed a NaN).
    pub sum: f64,
    /// Number of observations as exported in `_count`.
    pub count: u64,
}

impl Histogram {
    /// Builds a histogram from buckets in any order: equal bounds are added together,
    /// NaN bounds dropped, counts made cumulative-monotonic (a bucket below a lower
    /// one is raised to it, as Prometheus's `histogram_quantile` does) and a `+Inf`
    /// bucket appended when missing (holding `count`, or the highest bucket's count).
    /// `count` defaults to the `+Inf` bucket.
    pub fn from_buckets(
        buckets: impl IntoIterator<Item = (f64, u64)>,
        sum: f64,
        count: Option<u64>,
    ) -> Self {
        let mut sorted: Vec<(f64, u64)> =
            buckets.into_iter().filter(|(b, _)| !b.is_nan()).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged: Vec<(f64, u64)> = Vec::with_capacity(sorted.len() + 1);
        for (bound, value) in sorted {
            match merged.last_mut() {
                Some(last) if last.0 == bound => last.1 = last.1.saturating_add(value),
                _ => merged.push((bound, value)),
            }
        }
        let mut highest = 0;
        for bucket in &mut merged {
            highest = highest.max(bucket.1);
            bucket.1 = highest;
        }
        if merged.is_empty() && count.unwrap_or(0) == 0 {
            return Self {
                buckets: Vec::new(),
                sum,
                count: 0,
            };
        }
        if merged.last().is_none_or(|last| last.0 != f64::INFINITY) {
            merged.push((f64::INFINITY, highest.max(count.unwrap_or(0))));
        }
        let observations = merged.last().map_or(0, |last| last.1);
        Self {
            buckets: merged,
            sum,
            count: count.unwrap_or(observations),
        }
    }

    /// Number of observations: the `+Inf` bucket's count.
    pub fn observations(&self) -> u64 {
        self.buckets.last().map_or(0, |last| last.1)
    }

    /// Whether no observation was made.
    pub fn is_empty(&self) -> bool {
        self.observations() == 0
    }

    /// Cumulative count at `bound`: the count of the largest bucket bound ≤ `bound`.
    fn cumulative_at(&self, bound: f64) -> u64 {
        self.buckets
            .iter()
            .take_while(|(b, _)| *b <= bound)
            .last()
            .map_or(0, |(_, c)| *c)
    }

    /// Adds `other` into `self`. Histograms with different bucket layouts are added over
    /// the union of their bounds, each contributing at a bound it lacks the count of its
    /// largest bound below (an undercount there, never an invented observation).
    pub fn add(&mut self, other: &Histogram) {
        if other.buckets.is_empty() && other.count == 0 {
            self.sum += other.sum;
            return;
        }
        let same_layout = self.buckets.len() == other.buckets.len()
            && self
                .buckets
                .iter()
                .zip(&other.buckets)
                .all(|(a, b)| a.0 == b.0);
        let buckets = if same_layout {
            self.buckets
                .iter()
                .zip(&other.buckets)
                .map(|(a, b)| (a.0, a.1.saturating_add(b.1)))
                .collect()
        } else {
            let bounds: Vec<f64> = {
                let mut all: Vec<f64> = self
                    .buckets
                    .iter()
                    .chain(&other.buckets)
                    .map(|(b, _)| *b)
                    .collect();
                all.sort_by(f64::total_cmp);
                all.dedup();
                all
            };
            bounds
                .into_iter()
                .map(|b| {
                    (
                        b,
                        self.cumulative_at(b).saturating_add(other.cumulative_at(b)),
                    )
                })
                .collect()
        };
        self.buckets = buckets;
        self.sum += other.sum;
        self.count = self.count.saturating_add(other.count);
    }

    /// `self − before`, or `None` when the histogram was reset in between (a bucket or
    /// the count went down, or the bucket layout changed).
    fn since(&self, before: &Histogram) -> Option<Histogram> {
        if before.buckets.is_empty() && before.count == 0 {
            return Some(self.clone());
        }
        if self.buckets.is_empty() && self.count == 0 {
            // The series is gone (not reset: a reset one still has its zeroed buckets).
            return Some(Histogram::default());
        }
        if self.buckets.len() != before.buckets.len() || self.count < before.count {
            return None;
        }
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (now, then) in self.buckets.iter().zip(&before.buckets) {
            if now.0 != then.0 || now.1 < then.1 {
                return None;
            }
            buckets.push((now.0, now.1 - then.1));
        }
        Some(Histogram {
            buckets,
            sum: self.sum - before.sum,
            count: self.count - before.count,
        })
    }
}

/// The series of one model version (cumulative in a scrape, increments in an interval
/// [`Snapshot`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionSeries {
    /// `modelplane_requests_total` by `outcome`, summed over tenants.
    pub requests: BTreeMap<String, u64>,
    /// `modelplane_generate_requests_total` by `outcome` (generate models only).
    pub generations: BTreeMap<String, u64>,
    /// `modelplane_generate_empty_outputs_total`: finished generations with no output.
    pub empty_outputs: u64,
    /// `modelplane_request_duration_seconds`.
    pub latency: Histogram,
    /// `gen_ai_server_time_to_first_token_seconds` (generate models only).
    pub time_to_first_token: Histogram,
    /// `gen_ai_server_time_per_output_token_seconds` (generate models only).
    pub time_per_output_token: Histogram,
}

impl VersionSeries {
    /// Requests attributable to the version: every outcome except [`UNJUDGED_OUTCOMES`].
    pub fn judged_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(outcome, _)| !UNJUDGED_OUTCOMES.contains(&outcome.as_str()))
            .fold(0u64, |sum, (_, n)| sum.saturating_add(*n))
    }

    /// Requests that failed because of the version: the [`ERROR_OUTCOMES`].
    pub fn errors(&self) -> u64 {
        ERROR_OUTCOMES
            .iter()
            .filter_map(|outcome| self.requests.get(*outcome))
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// Generations that finished normally ([`FINISHED_GENERATION_OUTCOMES`]).
    pub fn generations_finished(&self) -> u64 {
        FINISHED_GENERATION_OUTCOMES
            .iter()
            .filter_map(|outcome| self.generations.get(*outcome))
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &VersionSeries) {
        add_counts(&mut self.requests, &other.requests);
        add_counts(&mut self.generations, &other.generations);
        self.empty_outputs = self.empty_outputs.saturating_add(other.empty_outputs);
        self.latency.add(&other.latency);
        self.time_to_first_token.add(&other.time_to_first_token);
        self.time_per_output_token.add(&other.time_per_output_token);
    }

    /// `self − before`, or `None` when any series went down (the pod restarted).
    /// A series missing from `self` but present in `before` contributes nothing.
    fn since(&self, before: &VersionSeries) -> Option<VersionSeries> {
        Some(VersionSeries {
            requests: counts_since(&self.requests, &before.requests)?,
            generations: counts_since(&self.generations, &before.generations)?,
            empty_outputs: self.empty_outputs.checked_sub(before.empty_outputs)?,
            latency: self.latency.since(&before.latency)?,
            time_to_first_token: self
                .time_to_first_token
                .since(&before.time_to_first_token)?,
            time_per_output_token: self
                .time_per_output_token
                .since(&before.time_per_output_token)?,
        })
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, n) in from {
        let entry = into.entry(key.clone()).or_default();
        *entry = entry.saturating_add(*n);
    }
}

fn counts_since(
    now: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> Option<BTreeMap<String, u64>> {
    now.iter()
        .map(|(key, n)| {
            let then = before.get(key).copied().unwrap_or(0);
            n.checked_sub(then).map(|d| (key.clone(), d))
        })
        .collect()
}

/// The series of one model, per `version` label.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Series by version label.
    pub versions: BTreeMap<String, VersionSeries>,
}

impl Snapshot {
    /// The series of `version`, empty when it exported none.
    pub fn version(&self, version: &str) -> VersionSeries {
        self.versions.get(version).cloned().unwrap_or_default()
    }

    /// Adds `other` into `self`, version by version.
    pub fn add(&mut self, other: &Snapshot) {
        for (version, series) in &other.versions {
            self.versions
                .entry(version.clone())
                .or_default()
                .add(series);
        }
    }

    /// `self − before`, or `None` when any series of any version went down.
    fn since(&self, before: &Snapshot) -> Option<Snapshot> {
        let empty = VersionSeries::default();
        let versions = self
            .versions
            .iter()
            .map(|(version, now)| {
                let then = before.versions.get(version).unwrap_or(&empty);
                now.since(then).map(|d| (version.clone(), d))
            })
            .collect::<Option<_>>()?;
        Some(Snapshot { versions })
    }
}

/// One scrape of every runtime pod: per pod name, its cumulative [`Snapshot`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodScrape {
    /// Snapshot by pod name.
    pub pods: BTreeMap<String, Snapshot>,
}

/// The increments of the interval between two scrapes, summed over pods.
///
/// Per pod: a pod present in both contributes `now − before`; if any of its series went
/// down the pod restarted in between (its counters started again from zero), and its
/// whole `now` is taken as the increment, the same as Prometheus's `increase()` does with
/// a counter reset. A pod only in `now` (new, or not scraped before) contributes its
/// whole `now`. A pod only in `before` (gone) contributes nothing.
pub fn delta(now: &PodScrape, before: &PodScrape) -> Snapshot {
    let mut interval = Snapshot::default();
    for (pod, snapshot) in &now.pods {
        match before.pods.get(pod).and_then(|then| snapshot.since(then)) {
            Some(increment) => interval.add(&increment),
            None => interval.add(snapshot),
        }
    }
    interval
}

/// Pods in `now` that restarted since `before` (some series went down): for the
/// controller's log.
pub fn restarted_pods(now: &PodScrape, before: &PodScrape) -> BTreeSet<String> {
    now.pods
        .iter()
        .filter(|(pod, snapshot)| {
            before
                .pods
                .get(*pod)
                .is_some_and(|then| snapshot.since(then).is_none())
        })
        .map(|(pod, _)| pod.clone())
        .collect()
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
