//! JWT auth on the API (LiteLLM's `enable_jwt_auth`): a bearer that is a JWT is verified
//! against the identity providers' key sets — asymmetric algorithms only, `exp`/`nbf` with
//! bounded clock skew, `aud` and `iss` when configured — and its claims become a governed
//! caller ([`JwtGrant`]). Verified tokens are cached by digest until they expire, so a repeat
//! costs what a virtual key costs: a sha256 and a sharded map lookup.

mod claims;
mod grant;
pub mod id_token;
mod jwks;
mod token;

pub use grant::JwtGrant;
pub use token::looks_like_jwt;

use crate::config::{JWT_LEEWAY, JwtSettings};
use crate::providers::HttpClient;
pub use claims::lookup as claim_at;
use dashmap::DashMap;
pub use jwks::{Jwks, SigningKey, Source};
use std::sync::Arc;

/// Validated tokens kept at most; past it expired ones are swept, and if none were, new
/// tokens are verified on every use instead of cached (memory stays bounded).
const MAX_CACHED: usize = 100_000;

/// Why a bearer JWT was refused. Messages say which check failed and never repeat the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("The JWT is malformed: {0}.")]
    Malformed(&'static str),
    #[error(
        "The JWT's algorithm `{0}` is not allowed (allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)."
    )]
    AlgorithmNotAllowed(String),
    #[error("The JWT's key id (kid) `{0}` is unknown: no identity provider publishes it.")]
    UnknownKeyId(String),
    #[error("The JWT names no key id (kid), and no single key of the identity providers fits it.")]
    AmbiguousKey,
    #[error("The key `{0}` cannot verify this JWT's algorithm.")]
    KeyMismatch(String),
    #[error(
        "No signing keys are available from the identity provider (JWT_PUBLIC_KEY_URL); try again shortly."
    )]
    NoKeys,
    #[error("The JWT's signature does not verify.")]
    BadSignature,
    #[error("The JWT has expired.")]
    Expired,
    #[error("The JWT is not valid yet (its nbf is in the future).")]
    NotYetValid,
    #[error("The JWT was issued for another audience (aud does not match JWT_AUDIENCE).")]
    WrongAudience,
    #[error("The JWT comes from an issuer that is not trusted (iss does not match JWT_ISSUER).")]
    WrongIssuer,
    #[error("The JWT lacks the `{0}` claim.")]
    MissingClaim(String),
    #[error("The JWT's `{0}` claim has the wrong type.")]
    BadClaim(String),
    #[error("The JWT names no user, team or organization to act for.")]
    NoIdentity,
    #[error(
        "The user `{0}` named by the JWT does not exist (litellm_jwtauth.user_id_upsert creates users on first use)."
    )]
    UnknownUser(String),
    #[error(
        "The user `{0}` named by the JWT was deleted after this token was first used; the token no longer works."
    )]
    UserDeleted(String),
    #[error("The user named by the JWT could not be created; try again.")]
    ProvisionFailed,
    #[error("The team `{0}` named by the JWT does not exist.")]
    UnknownTeam(String),
    #[error("None of the JWT's roles is allowed (litellm_jwtauth.user_allowed_roles).")]
    RoleNotAllowed,
    #[error("The team `{0}` (x-litellm-team-id) is not among the teams the JWT names.")]
    TeamNotInToken(String),
}

impl JwtError {
    /// Refusals of a valid token for what it may do (403), not for what it is (401).
    pub fn forbidden(&self) -> bool {
        matches!(self, JwtError::RoleNotAllowed | JwtError::TeamNotInToken(_))
    }

    pub fn code(&self) -> &'static str {
        if self.forbidden() {
            "jwt_not_allowed"
        } else {
            "invalid_jwt"
        }
    }
}

/// The verifier: key sets, settings, and the cache of validated tokens.
pub struct JwtAuth {
    settings: JwtSettings,
    jwks: Arc<Jwks>,
    /// Each grant with the key sets' generation it was verified under.
    cache: DashMap<[u8; 32], (Arc<JwtGrant>, u64)>,
    /// When the cache was last swept of expired tokens (ms since the epoch).
    swept_ms: std::sync::atomic::AtomicI64,
}

impl JwtAuth {
    /// Key sets start empty; [`JwtAuth::refresher`] fetches them.
    pub fn new(settings: JwtSettings) -> JwtAuth {
        let sources = settings
            .key_urls
            .iter()
            .map(|u| Source::new(u.clone(), Vec::new()))
            .collect();
        JwtAuth {
            settings,
            jwks: Arc::new(Jwks::new(sources)),
            cache: DashMap::new(),
            swept_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// With fixed key sets (JWKS documents, one per key URL), for tests and benchmarks.
    pub fn with_key_sets(settings: JwtSettings, sets: &[&[u8]]) -> Result<JwtAuth, String> {
        let mut sources = Vec::new();
        for (i, url) in settings.key_urls.iter().enumerate() {
            let keys = match sets.get(i) {
                Some(body) => jwks::parse_set(body, i)?,
                None => Vec::new(),
            };
            sources.push(Source::new(url.clone(), keys));
        }
        Ok(JwtAuth {
            settings,
            jwks: Arc::new(Jwks::new(sources)),
            cache: DashMap::new(),
            swept_ms: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// The task that keeps the key sets fresh; the server runs it for its whole life.
    pub fn refresher(&self, client: HttpClient) -> impl Future<Output = ()> + Send + 'static {
        self.jwks.clone().run(client, self.settings.public_key_ttl)
    }

    /// `user_id_upsert`: users a token names are created on first use.
    pub fn user_upsert(&self) -> bool {
        self.settings.claims.user_upsert
    }

    /// A token verified before, not expired since, and verified with the keys in use now (a
    /// key set that changed since — a key withdrawn — has it verified again).
    pub fn cached(&self, digest: &[u8; 32]) -> Option<Arc<JwtGrant>> {
        let (hit, generation) = self.cache.get(digest).map(|g| g.value().clone())?;
        if hit.valid_until_ms <= crate::types::now_ms() {
            self.cache.remove(digest);
            return None;
        }
        // Kept until verified again, which replaces it (or, failing, leaves it unused).
        (generation == self.jwks.generation()).then_some(hit)
    }

    /// Verifies a token not in the cache. The only wait is for a key set refetch when the
    /// token names a key id nobody has (rate-limited per source).
    pub async fn verify(&self, token: &str, digest: &[u8; 32]) -> Result<Arc<JwtGrant>, JwtError> {
        let header = token::header(token)?;
        let (set, i, generation) = self.jwks.key_for(&header).await?;
        let key: &SigningKey = &set[i];
        let issuers = if self.settings.paired {
            self.settings
                .issuers
                .get(key.source)
                .map(std::slice::from_ref)
                .unwrap_or_default()
        } else {
            &self.settings.issuers[..]
        };
        let expect = token::Expect {
            audiences: &self.settings.audiences,
            issuers,
            leeway_secs: JWT_LEEWAY.as_secs(),
        };
        let claims = token::verify(token, header.alg, key, &expect)?;
        let mapped = claims::map(&self.settings.claims, &claims)?;
        let grant = Arc::new(JwtGrant::new(mapped, JWT_LEEWAY.as_millis() as i64));
        // A token seen before keeps its grant: what it learnt about its user (see
        // `JwtGrant::user_seen`) must survive a re-verification.
        let grant = match self.cache.get(digest) {
            Some(old) if old.0.subject == grant.subject => old.0.clone(),
            _ => grant,
        };
        self.remember(*digest, grant.clone(), generation);
        Ok(grant)
    }

    fn remember(&self, digest: [u8; 32], grant: Arc<JwtGrant>, generation: u64) {
        if self.cache.len() >= MAX_CACHED {
            // A sweep reads every entry: at most one a second, or a full cache of live tokens
            // would make each new token's verification scan 100,000 entries.
            let now = crate::types::now_ms();
            let last = self.swept_ms.load(std::sync::atomic::Ordering::Relaxed);
            if now - last >= 1_000
                && self
                    .swept_ms
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                self.cache.retain(|_, g| g.0.valid_until_ms > now);
            }
        }
        if self.cache.len() < MAX_CACHED || self.cache.contains_key(&digest) {
            self.cache.insert(digest, (grant, generation));
        }
    }
}
