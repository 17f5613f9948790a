//! The canary split: whether a request that names no version goes to its model's
//! candidate or to its stable version, decided from the request alone and without a
//! lock or an allocation.
//!
//! In order: a match rule that matches sends it to the candidate ([`RouteReason::Match`]);
//! else a sticky header it carries decides by a fixed hash of its value
//! ([`RouteReason::Sticky`]); else the weight decides by the model's request counter
//! ([`RouteReason::Weight`]).
//!
//! - **Weight.** Request `n` (a per-model counter, taken with one `fetch_add`) goes to the
//!   candidate iff `⌊(n+1)·w/100⌋ > ⌊n·w/100⌋`, so of any `N` consecutive requests the
//!   candidate gets `⌊N·w/100⌋` or `⌈N·w/100⌉`: exact at every scale, spread evenly rather
//!   than in bursts. The counter lives on across config changes ([`Split::new`] takes the
//!   previous one), so a weight change neither restarts nor skews it.
//! - **Stickiness.** The value's bucket is a fixed 64-bit hash (FNV-1a, then the murmur3
//!   finalizer) of the model, the candidate and the value, modulo 10,000: the same on every
//!   pod and every run. The request goes to the candidate iff the bucket is below
//!   `w·100`, so raising the weight only ever moves values from stable to candidate; a new
//!   candidate draws a fresh set of values.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderName;
use modelplane_config::{CanaryConfig, MatchRule};

use super::Attributes;

/// Why the route step picked a request's version: the `route` field of its span and the
/// `reason` label of `modelplane_route_decisions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteReason {
    /// The request named the version.
    Named,
    /// No split applied (the model has no canary, or its candidate is not ready): the
    /// model's default serving version.
    Default,
    /// A canary match rule sent it to the candidate.
    Match,
    /// Its sticky header's value decided.
    Sticky,
    /// The canary weight decided.
    Weight,
}

impl RouteReason {
    /// Every reason, in [`RouteReason::index`] order.
    pub const ALL: [Self; 5] = [
        Self::Named,
        Self::Default,
        Self::Match,
        Self::Sticky,
        Self::Weight,
    ];

    /// The reason's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Named => "named",
            Self::Default => "default",
            Self::Match => "match",
            Self::Sticky => "sticky",
            Self::Weight => "weight",
        }
    }

    /// The reason's position in [`RouteReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a [`Split`] decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The candidate serves it (else the stable version does).
    pub candidate: bool,
    /// What decided.
    pub reason: RouteReason,
}

/// Sticky buckets: a weight of `w` percent is the buckets below `w * 100`.
const BUCKETS: u64 = 10_000;

/// One model's canary, compiled from its [`CanaryConfig`] for the request path.
#[derive(Debug)]
pub struct Split {
    candidate: String,
    /// Percent, 0-100.
    weight: u32,
    rules: Vec<Rule>,
    sticky_by: Option<HeaderName>,
    /// The hash state after the model and candidate (see the module docs).
    salt: u64,
    counter: Arc<AtomicU64>,
}

/// A compiled [`MatchRule`].
#[derive(Debug)]
struct Rule {
    headers: Vec<(HeaderName, String)>,
    tenants: Vec<String>,
}

impl Split {
    /// The split of `model`'s `canary`, counting weighted requests on `counter` (the
    /// previous split's, so that a config change continues it; else a new one).
    ///
    /// The config was validated, so every header name parses; a rule naming one that
    /// did not could match no request (no request carries such a header) and is left out.
    pub fn new(model: &str, canary: &CanaryConfig, counter: Arc<AtomicU64>) -> Self {
        let salt = [model.as_bytes(), canary.candidate.as_bytes()]
            .iter()
            .fold(FNV_OFFSET, |hash, part| fnv1a(fnv1a(hash, part), &[0xff]));
        Self {
            candidate: canary.candidate.clone(),
            weight: canary.weight.min(100),
            rules: canary.rules.iter().filter_map(Rule::new).collect(),
            sticky_by: canary
                .sticky_by
                .as_deref()
                .and_then(|name| HeaderName::from_bytes(name.as_bytes()).ok()),
            salt,
            counter,
        }
    }

    /// The candidate's version label.
    pub fn candidate(&self) -> &str {
        &self.candidate
    }

    /// The weighted-request counter, to hand to the next split of the model.
    pub fn counter(&self) -> &Arc<AtomicU64> {
        &self.counter
    }

    /// Decides one request from its headers and tenant. Only a decision by weight takes
    /// a tick of the counter.
    pub fn decide(&self, attributes: &Attributes, tenant: &str) -> Decision {
        if self
            .rules
            .iter()
            .any(|rule| rule.matches(attributes, tenant))
        {
            return Decision {
                candidate: true,
                reason: RouteReason::Match,
            };
        }
        if let Some(value) = self
            .sticky_by
            .as_ref()
            .and_then(|name| attributes.bytes(name))
            .filter(|value| !value.is_empty())
        {
            return Decision {
                candidate: self.sticky_bucket(value) < u64::from(self.weight) * (BUCKETS / 100),
                reason: RouteReason::Sticky,
            };
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Decision {
            candidate: weighted(n, self.weight),
            reason: RouteReason::Weight,
        }
    }

    /// The bucket (0..10,000) of a sticky header's value.
    pub fn sticky_bucket(&self, value: &[u8]) -> u64 {
        fmix64(fnv1a(self.salt, value)) % BUCKETS
    }
}

impl Rule {
    fn new(rule: &MatchRule) -> Option<Self> {
        let headers = rule
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                Some((name, value.clone()))
            })
            .collect::<Option<_>>()?;
        Some(Self {
            headers,
            tenants: rule.tenants.clone(),
        })
    }

    fn matches(&self, attributes: &Attributes, tenant: &str) -> bool {
        (self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant))
            && self
                .headers
                .iter()
                .all(|(name, value)| attributes.get(name) == Some(value.as_str()))
    }
}

/// Whether weighted request `n` goes to the candidate at `weight` percent:
/// `⌊(n+1)·w/100⌋ > ⌊n·w/100⌋`. The answer repeats every 100 requests, so `n` is taken
/// modulo 100 (no overflow, whatever `n`).
pub fn weighted(n: u64, weight: u32) -> bool {
    let (r, w) = (n % 100, u64::from(weight.min(100)));
    (r + 1) * w / 100 > r * w / 100
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The murmur3 64-bit finalizer: spreads FNV's weak low bits over the whole word.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
