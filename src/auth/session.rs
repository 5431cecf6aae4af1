//! Browser sessions (OIDC login) in memory: the cookie's sha256 → the session, loaded from the
//! store at start and kept in step with it by the write path, so a cookie costs what a virtual
//! key costs (a sha256 and a sharded map lookup) — no disk I/O per request.
//!
//! The idle timeout is tracked here only: a restart gives every session a fresh idle period
//! (its absolute expiry, stored, still holds).

use crate::store::sso::SessionRecord;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The session cookie's name.
pub const COOKIE: &str = "portcullis_session";

pub struct Session {
    /// Hex sha256 of the cookie: the session's key in the store.
    pub digest: String,
    pub record: SessionRecord,
    last_seen_ms: AtomicI64,
}

impl Session {
    pub fn last_seen_ms(&self) -> i64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }
}

/// Why a session cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dead {
    Unknown,
    Expired,
    Idle,
}

#[derive(Default)]
pub struct Sessions {
    map: DashMap<String, Arc<Session>>,
}

/// Hex sha256 of a cookie value: what is stored and looked up, never the value.
pub fn digest(cookie: &str) -> String {
    hex::encode(Sha256::digest(cookie.as_bytes()))
}

/// The session cookie's value from a `Cookie` header, if it has one.
pub fn cookie_value(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

impl Sessions {
    pub fn insert(&self, digest: String, record: SessionRecord) {
        let s = Session {
            digest: digest.clone(),
            record,
            last_seen_ms: AtomicI64::new(crate::types::now_ms()),
        };
        self.map.insert(digest, Arc::new(s));
    }

    pub fn remove(&self, digest: &str) -> Option<Arc<Session>> {
        self.map.remove(digest).map(|(_, s)| s)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live session a cookie names, its idle clock restarted. An expired or idle one is
    /// dropped (the caller deletes its row).
    pub fn touch(
        &self,
        cookie: &str,
        idle_ms: i64,
    ) -> Result<Arc<Session>, (Dead, Option<Arc<Session>>)> {
        let d = digest(cookie);
        let Some(s) = self.map.get(&d).map(|s| s.value().clone()) else {
            return Err((Dead::Unknown, None));
        };
        let now = crate::types::now_ms();
        let dead = if s.record.expires_at_ms <= now {
            Some(Dead::Expired)
        } else if now - s.last_seen_ms() > idle_ms {
            Some(Dead::Idle)
        } else {
            None
        };
        if let Some(why) = dead {
            self.map.remove(&d);
            return Err((why, Some(s)));
        }
        s.last_seen_ms.store(now, Ordering::Relaxed);
        Ok(s)
    }

    /// The digests of every session of `user_id` (a scan: runs only when a user is
    /// deactivated or deleted).
    pub fn of_user(&self, user_id: &str) -> Vec<String> {
        self.map
            .iter()
            .filter(|s| s.record.user_id == user_id)
            .map(|s| s.key().clone())
            .collect()
    }

    /// Every session of `user_id` (a scan: runs only at a login).
    pub fn sessions_of(&self, user_id: &str) -> Vec<Arc<Session>> {
        self.map
            .iter()
            .filter(|s| s.record.user_id == user_id)
            .map(|s| s.value().clone())
            .collect()
    }

    /// Sessions past their expiry or idle for longer than `idle_ms`, removed from memory.
    pub fn take_dead(&self, idle_ms: i64) -> Vec<Arc<Session>> {
        let now = crate::types::now_ms();
        let dead: Vec<Arc<Session>> = self
            .map
            .iter()
            .filter(|s| s.record.expires_at_ms <= now || now - s.last_seen_ms() > idle_ms)
            .map(|s| s.value().clone())
            .collect();
        for s in &dead {
            self.map.remove(&s.digest);
        }
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(user: &str, expires: i64) -> SessionRecord {
        SessionRecord {
            session_id: "s".into(),
            user_id: user.into(),
            subject: "i|s".into(),
            csrf_token: "c".into(),
            created_at_ms: 0,
            expires_at_ms: expires,
        }
    }

    #[test]
    fn cookies_sessions_and_expiry() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=b; portcullis_session=xyz ; c=d"),
        );
        assert_eq!(cookie_value(&h), Some("xyz"));
        let s = Sessions::default();
        let far = crate::types::now_ms() + 60_000;
        s.insert(digest("live"), rec("u", far));
        s.insert(digest("old"), rec("u", 1));
        assert!(s.touch("live", 10_000).is_ok());
        assert!(matches!(
            s.touch("old", 10_000),
            Err((Dead::Expired, Some(_)))
        ));
        assert!(matches!(
            s.touch("nope", 10_000),
            Err((Dead::Unknown, None))
        ));
        assert!(matches!(s.touch("live", -1), Err((Dead::Idle, Some(_)))));
        s.insert(digest("a"), rec("v", far));
        assert_eq!(s.of_user("v"), vec![digest("a")]);
        assert_eq!(s.len(), 1);
    }
}
