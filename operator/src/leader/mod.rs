//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Every replica runs the same loop: read the Lease, [`decide`], and write it
//! back conditionally on its `resourceVersion`, so two replicas can never both
//! win the same round. Only the holder runs the controllers.

mod decision;

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

pub use decision::{Decision, decide, next_spec, released};

/// Settings of one candidate.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (usually the pod name).
    pub identity: String,
    /// How long the Lease is valid without renewal.
    pub lease_duration: Duration,
    /// Interval between attempts to acquire or renew.
    pub retry_period: Duration,
}

/// A candidate for leadership.
pub struct LeaderElector {
    leases: Api<Lease>,
    config: ElectionConfig,
}

impl LeaderElector {
    /// A candidate that competes for the Lease described by `config`.
    pub fn new(client: Client, config: ElectionConfig) -> Self {
        Self {
            leases: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// One election round; returns whether this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.leases.get_opt(&self.config.name).await? else {
            return self.create(now).await;
        };
        let current = lease.spec.clone().unwrap_or_default();
        let decision = decide(
            &current,
            &self.config.identity,
            now,
            self.config.lease_duration,
        );
        if let Decision::Follow { holder } = &decision {
            tracing::debug!(%holder, "lease held by another replica");
            return Ok(false);
        }
        let spec = next_spec(
            &current,
            &decision,
            &self.config.identity,
            now,
            self.config.lease_duration,
        );
        if decision == Decision::Acquire {
            tracing::info!(identity = %self.config.identity, "acquiring leader lease");
        }
        self.write(lease, spec).await
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "leader election round failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Keeps renewing the Lease; returns once leadership is lost.
    ///
    /// Leadership counts as lost when another replica holds the Lease, or when
    /// renewals have failed for two thirds of the lease duration (so we stop
    /// before a standby may legitimately take over).
    pub async fn hold(&self) {
        let renew_deadline = self.config.lease_duration * 2 / 3;
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(%error, "failed to renew leader lease");
                    if last_renewed.elapsed() >= renew_deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up (on graceful shutdown) so a standby need not wait for expiry;
    /// returns whether this replica held it and now no longer does.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(lease) = self.leases.get_opt(&self.config.name).await? else {
            return Ok(false);
        };
        let current = lease.spec.clone().unwrap_or_default();
        if current.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        self.write(lease, released(&current)).await
    }

    async fn create(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let spec = next_spec(
            &LeaseSpec::default(),
            &Decision::Acquire,
            &self.config.identity,
            now,
            self.config.lease_duration,
        );
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        match self.leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Replaces the Lease; the `resourceVersion` we read makes the write conditional.
    async fn write(&self, mut lease: Lease, spec: LeaseSpec) -> Result<bool, kube::Error> {
        lease.spec = Some(spec);
        match self
            .leases
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests;
