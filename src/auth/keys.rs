//! Virtual key secrets and the in-memory cache that authenticates them.
//!
//! The cache is a sharded concurrent map from sha256 digest to the key record; writers (the
//! management API, after its commit) replace entries, readers never block on each other.

use crate::tenancy::KeyEntry;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A fresh secret: `sk-` + 192 random bits in hex.
pub fn generate_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)?;
    Ok(format!("sk-{}", hex::encode(bytes)))
}

pub fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// LiteLLM's display form of a key: enough to recognise it, not to use it.
pub fn mask_key(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

/// What a digest resolves to: the key, and for a replaced secret in its grace period, the end
/// of that period.
#[derive(Debug)]
pub struct CachedKey {
    pub entry: Arc<KeyEntry>,
    pub valid_until: Option<i64>,
}

#[derive(Clone, Default)]
pub struct KeyCache {
    by_digest: Arc<DashMap<[u8; 32], Arc<CachedKey>>>,
}

fn digest_of_hex(token: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(token, &mut out).ok()?;
    Some(out)
}

impl KeyCache {
    pub fn lookup(&self, digest: &[u8; 32]) -> Option<Arc<CachedKey>> {
        self.by_digest.get(digest).map(|e| e.value().clone())
    }

    /// Installs (or replaces) a key and its grace-period predecessors.
    pub fn upsert(&self, entry: Arc<KeyEntry>) {
        let record = &entry.record;
        for (old, until) in &record.grace_tokens {
            if let Some(d) = digest_of_hex(old) {
                self.by_digest.insert(
                    d,
                    Arc::new(CachedKey {
                        entry: entry.clone(),
                        valid_until: Some(*until),
                    }),
                );
            }
        }
        if let Some(d) = digest_of_hex(&record.token) {
            self.by_digest.insert(
                d,
                Arc::new(CachedKey {
                    entry: entry.clone(),
                    valid_until: None,
                }),
            );
        }
    }

    /// Forgets one secret's digest.
    pub fn remove_token(&self, token: &str) {
        if let Some(d) = digest_of_hex(token) {
            self.by_digest.remove(&d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_masked() {
        let a = generate_key().unwrap_or_default();
        let b = generate_key().unwrap_or_default();
        assert!(a.starts_with("sk-") && a.len() == 51);
        assert_ne!(a, b);
        assert_eq!(mask_key("sk-abcdef1234"), "sk-...1234");
    }

    #[test]
    fn hash_matches_litellm_token() {
        // LiteLLM stores hashlib.sha256(key.encode()).hexdigest().
        assert_eq!(
            hex::encode(hash_key("sk-1234")),
            "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
        );
    }
}
