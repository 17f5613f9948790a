//! Keeps the serving [`Authenticator`] in line with the identity config and its files.
//!
//! Every watch pass of the reloader re-reads the files (on the blocking pool) and
//! compares their [`Fingerprint`]: Kubernetes updates a mounted Secret by swapping a
//! symlink, which file watches miss, so content is compared, not events. When the
//! config or the files differ from the last attempt, a new authenticator is built from
//! exactly what was read; it replaces the serving one, or, when it fails, the serving
//! one stays and the failure is logged and counted once (until something changes
//! again).

use std::sync::Arc;

use modelplane_config::IdentityConfig;

use super::{Authenticator, Files, Fingerprint};
use crate::server::AppState;

/// The last identity config and files an authenticator was built (or tried) from.
pub struct Watch {
    config: IdentityConfig,
    fingerprint: Fingerprint,
}

impl Watch {
    /// A watch starting from the authenticator `current`, built from `config`.
    pub fn new(config: &IdentityConfig, current: &Authenticator) -> Self {
        Self {
            config: config.clone(),
            fingerprint: *current.fingerprint(),
        }
    }

    /// One pass: re-reads the files of `config` and, when they or `config` changed,
    /// rebuilds the authenticator of `state`.
    pub async fn pass(&mut self, config: &IdentityConfig, state: &AppState) {
        let reading = config.clone();
        let Ok(files) = tokio::task::spawn_blocking(move || Files::read(&reading)).await else {
            tracing::warn!("reading the identity files did not finish; trying again next pass");
            return;
        };
        if *config == self.config && *files.fingerprint() == self.fingerprint {
            return;
        }
        self.config = config.clone();
        self.fingerprint = *files.fingerprint();
        match Authenticator::from_files(config, files) {
            Ok(authenticator) => {
                tracing::info!(identity = %authenticator.summary(), "identity reloaded");
                state.authenticator.store(Arc::new(authenticator));
            }
            Err(err) => {
                tracing::error!(error = %err, "identity reload failed; the previous identity keeps serving");
                state.metrics.identity_reload_failed();
            }
        }
    }
}
