//! Per-tenant admission: the budgets of each configured tenant (requests per second
//! with burst, tokens per minute, requests in flight), its fair-queuing weight and band,
//! and the bounded `tenant` label of its metrics.
//!
//! A request takes a [`TenantPermit`] on the path's admit step; generation reserves
//! its prompt plus `max_tokens` once the prompt is tokenized, and the permit settles the
//! difference when it ends (completed, failed or cancelled). Bucket state survives
//! config changes: a tenant whose budget changes keeps what its buckets hold.

mod bucket;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use modelplane_config::{FairnessConfig, TenantConfig, TenantRequests};
use modelplane_fair::{Fairness, Flow};

pub use bucket::TokenBucket;

use crate::error::InferError;
use crate::serve::Identity;

/// The `tenant` label of requests from tenants this runtime has no config for: the
/// label's values stay bounded by the config, whatever identities send.
pub const OTHER_TENANT_LABEL: &str = "other";

/// `Retry-After` of a request refused for its tenant's concurrency cap: the time a
/// typical request takes is unknown here, so the client is told to come back soon.
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// The budgets and fair-queuing settings of every configured tenant.
pub struct Tenancy {
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    fairness: RwLock<FairnessConfig>,
    anonymous: RwLock<Arc<str>>,
    other: Arc<str>,
}

/// One configured tenant.
pub struct Tenant {
    name: Arc<str>,
    settings: RwLock<Settings>,
    state: Mutex<State>,
}

#[derive(Clone, Debug)]
struct Settings {
    priority: u32,
    band: i32,
    requests: TenantRequests,
}

#[derive(Debug, Default)]
struct State {
    requests: Option<TokenBucket>,
    tokens: Option<TokenBucket>,
    in_flight: u32,
}

impl Default for Tenancy {
    fn default() -> Self {
        Self {
            tenants: RwLock::new(HashMap::new()),
            fairness: RwLock::new(FairnessConfig::default()),
            anonymous: RwLock::new(Arc::from(modelplane_config::ANONYMOUS_TENANT)),
            other: Arc::from(OTHER_TENANT_LABEL),
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Tenancy {
    /// Tenancy of `tenants`, counting costs with `fairness`, charging anonymous requests
    /// to `anonymous`.
    pub fn new(tenants: &[TenantConfig], fairness: &FairnessConfig, anonymous: &str) -> Self {
        let tenancy = Self::default();
        tenancy.update(tenants, fairness, anonymous, Instant::now());
        tenancy
    }

    /// Applies a changed config: new tenants start with full buckets, changed ones keep
    /// what their buckets hold (up to the new sizes), removed ones are forgotten (their
    /// requests in flight finish under the permits they hold).
    pub fn update(
        &self,
        tenants: &[TenantConfig],
        fairness: &FairnessConfig,
        anonymous: &str,
        now: Instant,
    ) {
        *write(&self.fairness) = fairness.clone();
        *write(&self.anonymous) = Arc::from(anonymous);
        let mut map = write(&self.tenants);
        map.retain(|name, _| tenants.iter().any(|t| t.name == *name));
        for config in tenants {
            let settings = Settings {
                priority: config.priority.max(1),
                band: config.band,
                requests: config.requests.clone(),
            };
            match map.get(config.name.as_str()) {
                Some(tenant) => tenant.reconfigure(settings, now),
                None => {
                    map.insert(
                        config.name.clone(),
                        Arc::new(Tenant::new(&config.name, settings, now)),
                    );
                }
            }
        }
    }

    /// The configured tenant named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        read(&self.tenants).get(name).cloned()
    }

    /// The `tenant` metric label of `name`: its name when configured or the anonymous
    /// tenant, else [`OTHER_TENANT_LABEL`].
    pub fn label(&self, name: &str) -> Arc<str> {
        if let Some(tenant) = read(&self.tenants).get(name) {
            return Arc::clone(&tenant.name);
        }
        let anonymous = read(&self.anonymous);
        if **anonymous == *name {
            return Arc::clone(&anonymous);
        }
        Arc::clone(&self.other)
    }

    /// Admits one request of `identity` now, or refuses it with a 429 whose
    /// `Retry-After` says when its budget allows it.
    pub fn admit(&self, identity: &Identity, now: Instant) -> Result<TenantPermit, InferError> {
        self.admit_as(
            identity.tenant(),
            identity.fairness_key(),
            identity.band(),
            now,
        )
    }

    /// Admits one request of tenant `name`, queued under `fairness_key` in `band`
    /// (the tenant's own band when `None`).
    pub fn admit_as(
        &self,
        name: &str,
        fairness_key: &str,
        band: Option<i32>,
        now: Instant,
    ) -> Result<TenantPermit, InferError> {
        let tenant = self.get(name);
        let fairness = read(&self.fairness).clone();
        let (weight, own_band) = tenant.as_ref().map_or((1, 0), |t| {
            let settings = read(&t.settings);
            (settings.priority, settings.band)
        });
        if let Some(tenant) = &tenant {
            tenant.enter(now)?;
        }
        Ok(TenantPermit {
            tenant,
            fairness: Fairness {
                flow: Flow::new(band.unwrap_or(own_band), fairness_key, weight),
                input_weight: fairness.input_token_weight,
                output_weight: fairness.output_token_weight,
            },
            reserved: 0,
            used: 0,
        })
    }
}

impl Tenant {
    fn new(name: &str, settings: Settings, now: Instant) -> Self {
        let tenant = Self {
            name: Arc::from(name),
            settings: RwLock::new(settings.clone()),
            state: Mutex::new(State::default()),
        };
        tenant.reconfigure(settings, now);
        tenant
    }

    fn reconfigure(&self, settings: Settings, now: Instant) {
        let mut state = self.lock();
        let requests = &settings.requests;
        state.requests = requests.per_second.map(|rate| {
            let capacity = requests.burst.unwrap_or(rate).max(1) as f64;
            sized(state.requests.take(), capacity, rate as f64, now)
        });
        state.tokens = requests.tokens_per_minute.map(|per_minute| {
            sized(
                state.tokens.take(),
                per_minute as f64,
                per_minute as f64 / 60.0,
                now,
            )
        });
        *write(&self.settings) = settings;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests of this tenant in flight now.
    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    fn enter(&self, now: Instant) -> Result<(), InferError> {
        let max_concurrent = read(&self.settings).requests.max_concurrent;
        let mut state = self.lock();
        if let Some(max) = max_concurrent
            && state.in_flight >= max
        {
            return Err(InferError::RateLimited {
                message: format!(
                    "tenant {:?} already has {max} requests in flight (maxConcurrent {max})",
                    self.name
                ),
                retry_after: CONCURRENCY_RETRY,
            });
        }
        if let Some(bucket) = &mut state.requests
            && let Err(wait) = bucket.take(1.0, now)
        {
            let rate = read(&self.settings).requests.per_second.unwrap_or(0);
            return Err(InferError::RateLimited {
                message: format!(
                    "tenant {:?} is over its request rate ({rate}/s); retry in {}",
                    self.name,
                    human(wait)
                ),
                retry_after: wait,
            });
        }
        state.in_flight += 1;
        Ok(())
    }

    fn reserve(&self, tokens: u64, now: Instant) -> Result<(), InferError> {
        let mut state = self.lock();
        let Some(bucket) = &mut state.tokens else {
            return Ok(());
        };
        bucket.take(tokens as f64, now).map_err(|wait| {
            let per_minute = read(&self.settings).requests.tokens_per_minute.unwrap_or(0);
            InferError::RateLimited {
                message: format!(
                    "tenant {:?} is over its token budget ({per_minute} tokens/min): this \
                     request reserves {tokens} (prompt plus max_tokens); retry in {}",
                    self.name,
                    human(wait)
                ),
                retry_after: wait,
            }
        })
    }

    fn settle(&self, unused: u64, now: Instant) {
        if unused == 0 {
            return;
        }
        if let Some(bucket) = &mut self.lock().tokens {
            bucket.give_back(unused as f64, now);
        }
    }

    fn leave(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

fn sized(bucket: Option<TokenBucket>, capacity: f64, rate: f64, now: Instant) -> TokenBucket {
    match bucket {
        Some(mut bucket) => {
            bucket.resize(capacity, rate, now);
            bucket
        }
        None => TokenBucket::new(capacity, rate, now),
    }
}

fn human(wait: Duration) -> String {
    if wait == Duration::MAX {
        "never (the budget does not refill)".to_owned()
    } else {
        format!("{:.3}s", wait.as_secs_f64())
    }
}

/// A request's admission by its tenant, held until the request ends: its place among
/// the tenant's requests in flight and the tokens it reserved.
pub struct TenantPermit {
    tenant: Option<Arc<Tenant>>,
    fairness: Fairness,
    reserved: u64,
    used: u64,
}

impl TenantPermit {
    /// A permit charged to no tenant's budget (tests, tools).
    pub fn unlimited() -> Self {
        Self {
            tenant: None,
            fairness: Fairness::default(),
            reserved: 0,
            used: 0,
        }
    }

    /// Where the request queues and how its tokens are weighed.
    pub fn fairness(&self) -> &Fairness {
        &self.fairness
    }

    /// Reserves `tokens` (prompt plus `max_tokens`) of the tenant's per-minute budget,
    /// or refuses with a 429 saying when they will be there.
    pub fn reserve(&mut self, tokens: u64, now: Instant) -> Result<(), InferError> {
        if let Some(tenant) = &self.tenant {
            tenant.reserve(tokens, now)?;
        }
        self.reserved = self.reserved.saturating_add(tokens);
        Ok(())
    }

    /// Notes tokens actually spent (prompt, then each generated token); what was
    /// reserved beyond them goes back to the budget when the permit is dropped.
    pub fn spent(&mut self, tokens: u64) {
        self.used = self.used.saturating_add(tokens);
    }
}

impl Drop for TenantPermit {
    fn drop(&mut self) {
        if let Some(tenant) = &self.tenant {
            tenant.settle(self.reserved.saturating_sub(self.used), Instant::now());
            tenant.leave();
        }
    }
}

#[cfg(test)]
mod tests;
