//! Who is calling: credentials from headers, resolved against the master key, the in-memory
//! key cache and (with JWT auth on) the cache of verified tokens. No disk I/O and no global
//! lock on this path — it runs on every request; only a JWT seen for the first time is
//! verified, and only a key id no one has makes it wait for a key set refetch.

pub mod jwt;
mod keys;
pub mod oidc;
pub mod password;
pub mod proxy_headers;
pub mod session;

pub use jwt::{JwtAuth, JwtError, JwtGrant};
pub use keys::{KeyCache, generate_key, hash_key, mask_key};

use crate::tenancy::KeyEntry;
use crate::types::{Secret, now_ms};
use http::HeaderMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The master key: proxy admin.
    Master,
    Key(Arc<KeyEntry>),
    /// A verified bearer JWT.
    Jwt(Arc<JwtGrant>),
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Master)
    }

    pub fn actor(&self) -> crate::audit::Actor {
        match self {
            Principal::Master => crate::audit::Actor::MasterKey,
            Principal::Key(k) => crate::audit::Actor::Key(k.record.token.clone()),
            Principal::Jwt(g) => crate::audit::Actor::Jwt {
                subject: format!("jwt:{}", g.subject),
                user_id: g.user_id.clone(),
                role: g.role.map(|r| r.as_str().to_string()).unwrap_or_default(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "No API key provided. Pass it as 'Authorization: Bearer <key>' (or x-api-key / api-key)."
    )]
    Missing,
    #[error("Invalid API key.")]
    Invalid,
    #[error("API key expired.")]
    Expired,
    #[error("API key is blocked.")]
    Blocked,
    #[error("{0}")]
    Jwt(JwtError),
    /// A browser session cookie that is unknown, expired, idle too long or revoked.
    #[error("The session has ended (expired, signed out or revoked); sign in again at /sso/login.")]
    Session,
    /// Identity headers from a trusted proxy that name no one clearly.
    #[error("The identity headers from the trusted proxy are unusable: {0}.")]
    ProxyHeaders(&'static str),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_api_key",
            AuthError::Invalid => "invalid_api_key",
            AuthError::Expired => "expired_api_key",
            AuthError::Blocked => "blocked_api_key",
            AuthError::Jwt(e) => e.code(),
            AuthError::Session => "invalid_session",
            AuthError::ProxyHeaders(_) => "invalid_proxy_identity",
        }
    }

    /// A valid credential that may not do this (403) rather than no valid credential (401).
    pub fn forbidden(&self) -> bool {
        matches!(self, AuthError::Jwt(e) if e.forbidden())
    }
}

/// Header names that may carry a credential, in the order they win: LiteLLM's own header, the
/// OpenAI SDK's bearer, the Azure SDK's `api-key`, the Anthropic SDK's `x-api-key`.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    // Empty values (and a bare `Bearer`) carry nothing and do not hide a later header.
    [
        "x-litellm-api-key",
        http::header::AUTHORIZATION.as_str(),
        "api-key",
        "x-api-key",
    ]
    .iter()
    .filter_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
    .map(strip_bearer)
    .find(|v| !v.is_empty())
}

/// `Bearer <token>` in any letter case and with any whitespace, or the bare token.
fn strip_bearer(value: &str) -> &str {
    let v = value.trim();
    match v.get(..6) {
        Some(p) if p.eq_ignore_ascii_case("bearer") => {
            let rest = &v[6..];
            if rest.is_empty() {
                ""
            } else if rest.starts_with(|c: char| c.is_ascii_whitespace()) {
                rest.trim()
            } else {
                v
            }
        }
        _ => v,
    }
}

pub struct Authenticator {
    master_hash: Option<[u8; 32]>,
    keys: KeyCache,
    jwt: Option<Arc<JwtAuth>>,
}

impl Authenticator {
    pub fn new(master_key: Option<&Secret<String>>, keys: KeyCache) -> Self {
        Authenticator {
            master_hash: master_key.map(|k| hash_key(k.expose())),
            keys,
            jwt: None,
        }
    }

    /// Turns JWT auth on: bearer JWTs are verified by `jwt`.
    pub fn with_jwt(mut self, jwt: Arc<JwtAuth>) -> Self {
        self.jwt = Some(jwt);
        self
    }

    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    pub fn jwt(&self) -> Option<&Arc<JwtAuth>> {
        self.jwt.as_ref()
    }

    /// The caller of a request: master key, virtual key, or (with JWT auth on) a JWT.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let presented = credential(headers).ok_or(AuthError::Missing)?;
        let digest = hash_key(presented);
        if let Some(known) = self.authenticate_known(presented, &digest) {
            return known;
        }
        match &self.jwt {
            Some(jwt) => jwt
                .verify(presented, &digest)
                .await
                .map(Principal::Jwt)
                .map_err(|e| {
                    tracing::debug!(reason = %e, "JWT refused");
                    AuthError::Jwt(e)
                }),
            None => Err(AuthError::Invalid),
        }
    }

    /// What needs no verification: the master key, a virtual key, or a JWT verified before.
    /// `None` for a JWT not seen yet (with JWT auth on), which [`Self::authenticate`] verifies.
    /// Keys are tried first, so a key that happens to look like a JWT still works.
    pub fn authenticate_known(
        &self,
        presented: &str,
        digest: &[u8; 32],
    ) -> Option<Result<Principal, AuthError>> {
        match self.authenticate_digest(digest) {
            Err(AuthError::Invalid) => {}
            known => return Some(known),
        }
        // With JWT auth off a JWT is an unknown key like any other: the ordinary 401.
        let Some(jwt) = &self.jwt else {
            return Some(Err(AuthError::Invalid));
        };
        if let Some(grant) = jwt.cached(digest) {
            return Some(Ok(Principal::Jwt(grant)));
        }
        if jwt::looks_like_jwt(presented) {
            None
        } else {
            Some(Err(AuthError::Invalid))
        }
    }

    /// Whether `secret` already authenticates as something: the master key, a key, or a replaced
    /// key in its grace period. A new secret must not, or two identities would share it.
    pub fn secret_taken(&self, secret: &str) -> bool {
        let digest = hash_key(secret);
        self.master_hash
            .as_ref()
            .is_some_and(|m| bool::from(m.ct_eq(&digest)))
            || self.keys.lookup(&digest).is_some()
    }

    /// The master key or a virtual key (never a JWT).
    pub fn authenticate_secret(&self, presented: &str) -> Result<Principal, AuthError> {
        self.authenticate_digest(&hash_key(presented))
    }

    fn authenticate_digest(&self, digest: &[u8; 32]) -> Result<Principal, AuthError> {
        if let Some(master) = &self.master_hash
            && bool::from(master.ct_eq(digest))
        {
            return Ok(Principal::Master);
        }
        let entry = self.keys.lookup(digest).ok_or(AuthError::Invalid)?;
        let now = now_ms();
        if entry.valid_until.is_some_and(|until| now >= until) {
            return Err(AuthError::Expired);
        }
        let record = &entry.entry.record;
        if record.expires_ms.is_some_and(|exp| now >= exp) {
            return Err(AuthError::Expired);
        }
        if record.blocked {
            return Err(AuthError::Blocked);
        }
        Ok(Principal::Key(entry.entry.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn credential_sources_in_order() {
        let mut h = HeaderMap::new();
        assert_eq!(credential(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("sk-anthropic"));
        assert_eq!(credential(&h), Some("sk-anthropic"));
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-openai"),
        );
        assert_eq!(credential(&h), Some("sk-openai"));
        h.insert(
            "x-litellm-api-key",
            HeaderValue::from_static("Bearer sk-litellm"),
        );
        assert_eq!(credential(&h), Some("sk-litellm"));
    }

    #[test]
    fn master_key_authenticates_and_others_do_not() {
        let auth = Authenticator::new(Some(&Secret::new("sk-master".into())), KeyCache::default());
        assert!(matches!(
            auth.authenticate_secret("sk-master"),
            Ok(Principal::Master)
        ));
        assert_eq!(
            auth.authenticate_secret("sk-master2").err(),
            Some(AuthError::Invalid)
        );
        assert_eq!(auth.authenticate_secret("").err(), Some(AuthError::Invalid));
    }
}
