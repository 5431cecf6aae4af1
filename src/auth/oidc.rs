//! The OpenID provider side of browser login: discovery, the authorization request
//! (authorization code + PKCE S256, `state` and `nonce`), the code exchange and the ID token's
//! checks (`jwt::id_token`, on the same key-set machinery as bearer JWTs), and the pending
//! logins in between — in memory, capped, single-use, expiring after 10 minutes.
//!
//! One task (`Oidc::run`) fetches the discovery document (retrying every 10 s until it
//! answers) and then keeps the provider's key set fresh; requests only read what it fetched.

use super::jwt::id_token::{self, IdTokenError};
use super::jwt::{Jwks, Source};
use crate::config::SsoSettings;
use crate::providers::HttpClient;
use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long a login may take between `/sso/login` and `/sso/callback`.
pub const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// Logins started and not finished, at most (a flood of `/sso/login` cannot grow memory).
pub const MAX_PENDING: usize = 10_000;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_EVERY: Duration = Duration::from_secs(10);
const WAIT_FOR_DISCOVERY: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 1 << 20;
/// The provider's key set is fetched again after this long (and at once for an unknown kid).
const JWKS_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("This login link is not valid (unknown, already used or missing state). Start again.")]
    BadState,
    #[error("This login took too long. Start again.")]
    Expired,
    #[error(
        "This login was started in another browser (or this browser's cookies were cleared). Start again here."
    )]
    OtherBrowser,
    #[error("The identity provider cannot be reached: {0}")]
    Unavailable(String),
    #[error("The identity provider refused the login: {0}")]
    Refused(String),
    #[error("{0}")]
    Token(IdTokenError),
}

/// The provider's endpoints.
#[derive(Debug, Clone)]
pub struct Provider {
    /// `None`: endpoints configured without discovery (identity from userinfo only).
    pub issuer: Option<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    /// `client_secret_basic` (the default) rather than `client_secret_post`.
    pub basic_auth: bool,
}

/// A login between its start and its callback.
struct Pending {
    /// sha256 of the browser's login cookie (`portcullis_login`): only the browser that
    /// started the login may finish it (RFC 6749 §10.12), so a callback URL made by someone
    /// else's login cannot sign this browser in as them.
    binding: String,
    nonce: String,
    verifier: String,
    return_to: String,
    created_ms: i64,
}

/// Who the provider says signed in: the issuer, and the claims (ID token, completed from
/// userinfo where the ID token lacks one).
#[derive(Debug, Clone)]
pub struct Verified {
    pub issuer: String,
    pub subject: String,
    pub claims: Map<String, Value>,
    pub return_to: String,
}

pub struct Oidc {
    pub settings: SsoSettings,
    /// Cookies carry `Secure` (the server serves TLS, or `base_url` is https).
    pub secure_cookie: bool,
    provider: ArcSwapOption<Provider>,
    jwks: OnceLock<Arc<Jwks>>,
    wake: Notify,
    ready: watch::Sender<bool>,
    pending: DashMap<String, Pending>,
    /// Failed logins audited in the current second (a flood is logged, not audited).
    fail_second: std::sync::atomic::AtomicI64,
    fail_count: std::sync::atomic::AtomicU32,
}

/// Failed logins audited per second at most; more are only logged, so a script hammering the
/// callback cannot grow the audit log without bound.
const MAX_FAILURE_AUDITS_PER_SEC: u32 = 20;

/// 256 random bits, base64url.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    // The OS random source failing leaves zeros only if getrandom itself is broken; every
    // caller needs an unguessable value, so it is treated as fatal to the request instead.
    if getrandom::fill(&mut b).is_err() {
        use rand::RngCore;
        rand::rng().fill_bytes(&mut b);
    }
    URL_SAFE_NO_PAD.encode(b)
}

/// PKCE S256: `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Oidc {
    pub fn new(settings: SsoSettings, tls: bool) -> Oidc {
        let secure_cookie = tls || settings.base_url.starts_with("https://");
        let provider = match (
            &settings.issuer,
            &settings.authorization_endpoint,
            &settings.token_endpoint,
        ) {
            (None, Some(a), Some(t)) => Some(Arc::new(Provider {
                issuer: None,
                authorization_endpoint: a.clone(),
                token_endpoint: t.clone(),
                userinfo_endpoint: settings.userinfo_endpoint.clone(),
                basic_auth: true,
            })),
            _ => None,
        };
        Oidc {
            settings,
            secure_cookie,
            provider: ArcSwapOption::new(provider),
            jwks: OnceLock::new(),
            wake: Notify::new(),
            ready: watch::Sender::new(false),
            pending: DashMap::new(),
            fail_second: std::sync::atomic::AtomicI64::new(0),
            fail_count: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Whether one more failed login may be audited this second.
    pub fn may_audit_failure(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let sec = crate::types::now_ms() / 1000;
        if self.fail_second.swap(sec, Relaxed) != sec {
            self.fail_count.store(0, Relaxed);
        }
        self.fail_count.fetch_add(1, Relaxed) < MAX_FAILURE_AUDITS_PER_SEC
    }

    /// Uses up a login's state without finishing it (the provider answered with an error).
    /// False when the state is unknown or another browser started that login.
    pub fn abandon(&self, state: &str, binding: Option<&str>) -> bool {
        self.pending
            .remove(state)
            .is_some_and(|(_, l)| bound(&l, binding))
    }

    /// Fetches the discovery document until it answers, then keeps the key set fresh. Runs
    /// for the server's whole life.
    pub async fn run(self: Arc<Self>, client: HttpClient) {
        let Some(issuer) = self.settings.issuer.clone() else {
            self.ready.send_replace(true);
            return;
        };
        let jwks_uri = loop {
            match discover(&client, &issuer, &self.settings).await {
                Ok((provider, jwks_uri)) => {
                    tracing::info!(issuer = %issuer, "OIDC provider discovered");
                    self.provider.store(Some(Arc::new(provider)));
                    break jwks_uri;
                }
                Err(e) => {
                    tracing::warn!(issuer = %issuer, error = %e, "OIDC discovery failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_EVERY) => {}
                _ = self.wake.notified() => {}
            }
        };
        let jwks = Arc::new(Jwks::new(vec![Source::new(jwks_uri, Vec::new())]));
        let _ = self.jwks.set(jwks.clone());
        self.ready.send_replace(true);
        jwks.run(client, JWKS_TTL).await;
    }

    /// The provider, once discovered (waiting a moment for discovery to finish).
    pub async fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        if let Some(p) = self.provider.load_full() {
            return Ok(p);
        }
        self.wake.notify_one();
        let mut ready = self.ready.subscribe();
        let _ = tokio::time::timeout(WAIT_FOR_DISCOVERY, ready.wait_for(|r| *r)).await;
        self.provider
            .load_full()
            .ok_or_else(|| OidcError::Unavailable("its discovery document did not load".into()))
    }

    /// Starts a login: the authorization URL to send the browser to.
    /// `reauthenticate`: ask the provider to sign the person in again (`prompt=login`) rather
    /// than reuse its own session — after a sign-out here.
    /// `binding`: the value of the browser's login cookie, which its callback must carry.
    pub async fn begin(
        &self,
        return_to: String,
        reauthenticate: bool,
        binding: &str,
    ) -> Result<String, OidcError> {
        let p = self.provider().await?;
        let now = crate::types::now_ms();
        if self.pending.len() >= MAX_PENDING {
            self.pending
                .retain(|_, l| now - l.created_ms < PENDING_TTL_MS);
            // Still full (a flood of starts): the oldest gives way. Refusing new logins
            // instead would let anyone lock everybody out with a few requests a second.
            while self.pending.len() >= MAX_PENDING {
                let oldest = self
                    .pending
                    .iter()
                    .min_by_key(|l| l.created_ms)
                    .map(|l| l.key().clone());
                match oldest {
                    Some(k) => {
                        self.pending.remove(&k);
                    }
                    None => break,
                }
            }
        }
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let challenge = pkce_challenge(&verifier);
        let scope = self.settings.scopes.join(" ");
        let redirect_uri = self.settings.redirect_uri();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let query = if reauthenticate {
            format!("{query}&prompt=login")
        } else {
            query
        };
        self.pending.insert(
            state,
            Pending {
                binding: binding_digest(binding),
                nonce,
                verifier,
                return_to,
                created_ms: now,
            },
        );
        let sep = if p.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{sep}{query}", p.authorization_endpoint))
    }

    /// Logins in progress.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Finishes a login: the state is used up (whatever happens next), the code exchanged
    /// with the PKCE verifier, the ID token verified.
    /// `binding`: the browser's login cookie; another browser's state is refused (and used up).
    pub async fn finish(
        &self,
        client: &HttpClient,
        state: Option<&str>,
        code: Option<&str>,
        binding: Option<&str>,
    ) -> Result<Verified, OidcError> {
        let state = state.filter(|s| !s.is_empty()).ok_or(OidcError::BadState)?;
        let (_, login) = self.pending.remove(state).ok_or(OidcError::BadState)?;
        if !bound(&login, binding) {
            return Err(OidcError::OtherBrowser);
        }
        if crate::types::now_ms() - login.created_ms >= PENDING_TTL_MS {
            return Err(OidcError::Expired);
        }
        let code = code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OidcError::Refused("no authorization code".into()))?;
        let p = self.provider().await?;
        let tokens = self.exchange(client, &p, code, &login.verifier).await?;
        let access = tokens.get("access_token").and_then(Value::as_str);
        let (issuer, mut claims) = match &p.issuer {
            Some(issuer) => {
                let id = tokens
                    .get("id_token")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        OidcError::Refused("the token response has no id_token".into())
                    })?;
                let jwks = self
                    .jwks
                    .get()
                    .ok_or_else(|| OidcError::Unavailable("no key set yet".into()))?;
                let want = id_token::Expected {
                    issuer,
                    client_id: &self.settings.client_id,
                    nonce: &login.nonce,
                };
                let claims = id_token::verify(jwks, id, &want)
                    .await
                    .map_err(OidcError::Token)?;
                (issuer.clone(), claims)
            }
            None => {
                let info = p.userinfo_endpoint.as_deref().ok_or_else(|| {
                    OidcError::Unavailable("no userinfo endpoint is configured".into())
                })?;
                let access = access.ok_or_else(|| {
                    OidcError::Refused("the token response has no access_token".into())
                })?;
                let claims = userinfo(client, info, access).await?;
                (format!("userinfo:{info}"), claims)
            }
        };
        // Claims the ID token lacks (groups, email) may be in userinfo; its `sub` must be the
        // ID token's (OIDC Core §5.3.4), or it describes someone else.
        if p.issuer.is_some()
            && let (Some(info), Some(access)) = (p.userinfo_endpoint.as_deref(), access)
            && self.wants_userinfo(&claims)
        {
            match userinfo(client, info, access).await {
                Ok(extra) if extra.get("sub") == claims.get("sub") => {
                    for (k, v) in extra {
                        claims.entry(k).or_insert(v);
                    }
                }
                Ok(_) => tracing::warn!("OIDC userinfo names another subject; ignored"),
                Err(e) => tracing::warn!(error = %e, "OIDC userinfo unavailable"),
            }
        }
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(OidcError::Token(IdTokenError::Subject)),
        };
        Ok(Verified {
            issuer,
            subject,
            claims,
            return_to: login.return_to,
        })
    }

    fn wants_userinfo(&self, claims: &Map<String, Value>) -> bool {
        let s = &self.settings;
        let missing = |path: &str| super::jwt::claim_at(claims, path).is_none();
        missing(&s.email_claim) || s.groups_claim.as_deref().is_some_and(missing)
    }

    async fn exchange(
        &self,
        client: &HttpClient,
        p: &Provider,
        code: &str,
        verifier: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let s = &self.settings;
        let redirect_uri = s.redirect_uri();
        let mut pairs: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut req = http::Request::post(&p.token_endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        match (&s.client_secret, p.basic_auth) {
            (Some(secret), true) => {
                // RFC 6749 §2.3.1: both parts form-encoded before base64.
                let enc =
                    |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(&s.client_id), enc(secret.expose()));
                req = req.header(
                    http::header::AUTHORIZATION,
                    format!("Basic {}", STANDARD.encode(pair)),
                );
            }
            (Some(secret), false) => {
                pairs.push(("client_id", &s.client_id));
                pairs.push(("client_secret", secret.expose()));
            }
            (None, _) => pairs.push(("client_id", &s.client_id)),
        }
        let req = req
            .body(Full::new(Bytes::from(form(&pairs))))
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        let (status, body) = send(client, req).await.map_err(OidcError::Unavailable)?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            // The provider's error code only (`invalid_grant`): its description may quote input.
            let code = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect::<String>();
            return Err(OidcError::Refused(format!(
                "the token endpoint answered {} ({code})",
                status.as_u16()
            )));
        }
        match v {
            Value::Object(m) => Ok(m),
            _ => Err(OidcError::Refused("the token response is not JSON".into())),
        }
    }
}

fn binding_digest(binding: &str) -> String {
    hex::encode(Sha256::digest(binding.as_bytes()))
}

/// Whether a callback's login cookie is the one its login was started with.
fn bound(login: &Pending, binding: Option<&str>) -> bool {
    binding.is_some_and(|b| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            binding_digest(b).as_bytes(),
            login.binding.as_bytes(),
        ))
    })
}

/// `application/x-www-form-urlencoded` text of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        f.append_pair(k, v);
    }
    f.finish()
}

async fn userinfo(
    client: &HttpClient,
    url: &str,
    access_token: &str,
) -> Result<Map<String, Value>, OidcError> {
    let req = http::Request::get(url)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {access_token}"),
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| OidcError::Unavailable(e.to_string()))?;
    let (status, body) = send(client, req).await.map_err(OidcError::Unavailable)?;
    if !status.is_success() {
        return Err(OidcError::Refused(format!(
            "the userinfo endpoint answered {}",
            status.as_u16()
        )));
    }
    match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(OidcError::Refused(
            "the userinfo answer is not a JSON object".into(),
        )),
    }
}

/// The discovery document of `issuer`: its endpoints and key set URL, checked (its `issuer`
/// must be the one configured, OIDC Discovery §4.3; its URLs https or loopback).
async fn discover(
    client: &HttpClient,
    issuer: &str,
    s: &SsoSettings,
) -> Result<(Provider, String), String> {
    let url = format!("{issuer}/.well-known/openid-configuration");
    let req = http::Request::get(&url)
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (status, body) = send(client, req).await?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
    let field = |name: &str| -> Result<String, String> {
        let v = doc
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the discovery document has no {name}"))?;
        match crate::config::secure_url_problem(v) {
            Some(p) => Err(format!("{name}: {p}")),
            None => Ok(v.to_string()),
        }
    };
    let found = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if found.trim_end_matches('/') != issuer {
        return Err(format!(
            "the discovery document names issuer `{found}`, not `{issuer}`"
        ));
    }
    let methods: Vec<&str> = doc
        .get("token_endpoint_auth_methods_supported")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let basic_auth = methods.is_empty()
        || methods.contains(&"client_secret_basic")
        || !methods.contains(&"client_secret_post");
    let userinfo_endpoint = match &s.userinfo_endpoint {
        Some(u) => Some(u.clone()),
        None => doc
            .get("userinfo_endpoint")
            .is_some()
            .then(|| field("userinfo_endpoint"))
            .transpose()?,
    };
    let provider = Provider {
        // The document's own spelling: ID tokens name exactly it (OpenID Connect Discovery
        // §4.3), and some providers (Auth0) end it with a `/` the configuration may omit.
        issuer: Some(found.to_string()),
        authorization_endpoint: match &s.authorization_endpoint {
            Some(a) => a.clone(),
            None => field("authorization_endpoint")?,
        },
        token_endpoint: match &s.token_endpoint {
            Some(t) => t.clone(),
            None => field("token_endpoint")?,
        },
        userinfo_endpoint,
        basic_auth,
    };
    Ok((provider, field("jwks_uri")?))
}

async fn send(
    client: &HttpClient,
    req: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String> {
    let (mut parts, body) = req.into_parts();
    // Not pooled: a pooled connection would be driven by whichever runtime opened it.
    parts.headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    parts.headers.insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("portcullis/", env!("CARGO_PKG_VERSION"))),
    );
    let req = http::Request::from_parts(parts, body);
    let resp = tokio::time::timeout(FETCH_TIMEOUT, client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = tokio::time::timeout(
        FETCH_TIMEOUT,
        Limited::new(resp.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| "timed out reading".to_string())?
    .map_err(|e| format!("reading: {e}"))?;
    Ok((status, body.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
