//! Verification results cached by (digest, key-set fingerprint), so a steady cluster does not
//! ask the registry again on every reconcile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::digest::Digest;

/// Most entries kept; past it, expired entries go first, then the oldest.
const DEFAULT_CAPACITY: usize = 4096;

/// A successful verification worth remembering: who signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResult {
    /// Name of the trusted key that signed.
    pub signer: String,
}

#[derive(Debug)]
struct Entry {
    result: CachedResult,
    stored_at: Instant,
}

/// A TTL cache of successful verifications. Failures are never cached: a signature pushed
/// after a failure must be seen at the next attempt.
#[derive(Debug)]
pub struct VerificationCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<(Digest, String), Entry>>,
}

impl VerificationCache {
    /// A cache whose entries live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, DEFAULT_CAPACITY)
    }

    /// A cache whose entries live for `ttl`, holding at most `capacity` of them.
    pub fn with_capacity(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The result for `digest` verified under the key set with `keys_fingerprint`, if fresh at `now`.
    pub fn get(
        &self,
        digest: &Digest,
        keys_fingerprint: &str,
        now: Instant,
    ) -> Option<CachedResult> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&(digest.clone(), keys_fingerprint.to_owned()))?;
        (now.saturating_duration_since(entry.stored_at) < self.ttl).then(|| entry.result.clone())
    }

    /// Remembers a successful verification at `now`.
    pub fn insert(
        &self,
        digest: Digest,
        keys_fingerprint: String,
        result: CachedResult,
        now: Instant,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, e| now.saturating_duration_since(e.stored_at) < ttl);
        }
        if entries.len() >= self.capacity {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.stored_at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            (digest, keys_fingerprint),
            Entry {
                result,
                stored_at: now,
            },
        );
    }

    /// How many entries are held (fresh or not).
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str) -> CachedResult {
        CachedResult {
            signer: name.into(),
        }
    }

    #[test]
    fn entry_is_served_until_its_ttl_then_forgotten() {
        let cache = VerificationCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let d = Digest::from_raw([1; 32]);
        cache.insert(d.clone(), "keys".into(), signer("k"), t0);
        assert_eq!(
            cache.get(&d, "keys", t0 + Duration::from_secs(59)),
            Some(signer("k"))
        );
        assert_eq!(cache.get(&d, "keys", t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn another_key_set_does_not_see_the_result() {
        let cache = VerificationCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let d = Digest::from_raw([1; 32]);
        cache.insert(d.clone(), "keys-a".into(), signer("k"), t0);
        assert_eq!(cache.get(&d, "keys-b", t0), None);
        assert_eq!(cache.get(&Digest::from_raw([2; 32]), "keys-a", t0), None);
    }

    #[test]
    fn capacity_evicts_expired_then_oldest_entries() {
        let cache = VerificationCache::with_capacity(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        let d = |b| Digest::from_raw([b; 32]);
        cache.insert(d(1), "k".into(), signer("1"), t0);
        cache.insert(d(2), "k".into(), signer("2"), t0 + Duration::from_secs(5));
        cache.insert(d(3), "k".into(), signer("3"), t0 + Duration::from_secs(6));
        assert_eq!(cache.len(), 2);
        let later = t0 + Duration::from_secs(7);
        assert_eq!(cache.get(&d(1), "k", later), None);
        assert!(cache.get(&d(2), "k", later).is_some());
        assert!(cache.get(&d(3), "k", later).is_some());
    }
}
