//! The identity providers' signing keys: one key set per `JWT_PUBLIC_KEY_URL` entry, fetched at
//! start, again after `public_key_ttl`, and when a token names a key id nobody has — at most
//! once per [`KID_REFETCH_EVERY`] per source, so a flood of made-up key ids costs one fetch.
//!
//! Every fetch runs on one task (the refresher), so the request path only reads the current
//! sets (an `ArcSwap` load) and, for an unknown key id, waits for the refresher's next round.

use super::{JwtError, token};
use crate::providers::HttpClient;
use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The fewest seconds between two refetches caused by unknown key ids, per source.
pub const KID_REFETCH_EVERY: Duration = Duration::from_secs(10);
/// A key set that could not be fetched is tried again this often.
const RETRY_EVERY: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request waits for a refetch it asked for.
const WAIT_FOR_REFETCH: Duration = Duration::from_secs(5);
/// Key sets are a few kilobytes; anything this large is not one.
const MAX_JWKS_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One public key from a key set.
pub struct SigningKey {
    pub kid: Option<String>,
    /// The key's own `alg`, when its set names one: the token's must then match.
    pub alg: Option<Algorithm>,
    pub kind: KeyKind,
    pub key: DecodingKey,
    /// Index of the source (key URL) the key came from.
    pub source: usize,
}

impl SigningKey {
    pub fn label(&self) -> String {
        self.kid.clone().unwrap_or_else(|| "(no kid)".into())
    }
}

/// A JWKS document → the keys this gateway can verify with. Encryption keys, symmetric keys
/// and unknown types are skipped: a key set is public, so a symmetric key in it would let
/// anyone sign.
pub fn parse_set(body: &[u8], source: usize) -> Result<Vec<SigningKey>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let items = match v {
        Value::Object(mut m) => match m.remove("keys") {
            Some(Value::Array(keys)) => keys,
            _ => return Err("no `keys` array".into()),
        },
        // LiteLLM also accepts a bare array of keys.
        Value::Array(keys) => keys,
        _ => return Err("neither a key set nor a list of keys".into()),
    };
    Ok(items
        .into_iter()
        .filter_map(|item| serde_json::from_value::<Jwk>(item).ok())
        .filter_map(|jwk| signing_key(&jwk, source))
        .collect())
}

fn signing_key(jwk: &Jwk, source: usize) -> Option<SigningKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let kind = match &jwk.algorithm {
        // Below 2048 bits an RSA key can be factored: nothing is verified with it.
        AlgorithmParameters::RSA(p)
            if URL_SAFE_NO_PAD.decode(&p.n).is_ok_and(|n| n.len() >= 256) =>
        {
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            KeyKind::Ed25519
        }
        _ => return None,
    };
    // A key whose own `alg` is outside the allow-list (or unknown) verifies nothing.
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(token::allowed(&format!("{a:?}")).ok()?),
    };
    Some(SigningKey {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        key: DecodingKey::from_jwk(jwk).ok()?,
        source,
    })
}

/// One key URL and what was last fetched from it.
pub struct Source {
    pub url: String,
    keys: ArcSwap<Vec<SigningKey>>,
    /// When the set was last fetched successfully, and last tried (ms since the epoch; 0: never).
    fetched_ms: AtomicI64,
    tried_ms: AtomicI64,
    kid_refetch_ms: AtomicI64,
    /// The document the keys in use were read from: the same answer again changes nothing.
    body: std::sync::Mutex<Bytes>,
}

impl Source {
    pub fn new(url: String, keys: Vec<SigningKey>) -> Source {
        let now = if keys.is_empty() {
            0
        } else {
            crate::types::now_ms()
        };
        Source {
            url,
            keys: ArcSwap::from_pointee(keys),
            fetched_ms: AtomicI64::new(now),
            tried_ms: AtomicI64::new(now),
            kid_refetch_ms: AtomicI64::new(0),
            body: std::sync::Mutex::new(Bytes::new()),
        }
    }

    pub fn keys(&self) -> Arc<Vec<SigningKey>> {
        self.keys.load_full()
    }
}

/// The key sets of every source, and the way to ask for a refetch.
pub struct Jwks {
    pub sources: Vec<Arc<Source>>,
    wake: Notify,
    /// Tickets of refetch requests: a request takes one, the refresher serves all taken so far.
    asked: AtomicU64,
    served: watch::Sender<u64>,
    /// Bumped whenever a fetched key set replaces a source's keys: a token verified under an
    /// earlier generation is verified again, so a key the identity provider withdrew stops
    /// verifying the tokens it signed at once, not when they expire.
    generation: AtomicU64,
}

impl Jwks {
    pub fn new(sources: Vec<Source>) -> Jwks {
        Jwks {
            sources: sources.into_iter().map(Arc::new).collect(),
            wake: Notify::new(),
            asked: AtomicU64::new(0),
            served: watch::Sender::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The key sets' generation (see the field).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The key that signed a token, refetching the sets once (rate-limited, see
    /// [`Jwks::run`]) when no source has its key id; with the generation the key was read at
    /// (read before the keys: a set replaced meanwhile makes a cached result verify again).
    pub async fn key_for(
        &self,
        header: &token::Header,
    ) -> Result<(Arc<Vec<SigningKey>>, usize, u64), JwtError> {
        let generation = self.generation();
        match self.find(header) {
            Err(JwtError::UnknownKeyId(_) | JwtError::NoKeys) => {
                self.refetch().await;
                let generation = self.generation();
                let (set, i) = self.find(header)?;
                Ok((set, i, generation))
            }
            Ok((set, i)) => Ok((set, i, generation)),
            Err(e) => Err(e),
        }
    }

    /// The key that signed a token: by key id across every source, or — for a token without
    /// one — the only key that fits its algorithm.
    pub fn find(&self, h: &token::Header) -> Result<(Arc<Vec<SigningKey>>, usize), JwtError> {
        let sets: Vec<Arc<Vec<SigningKey>>> = self.sources.iter().map(|s| s.keys()).collect();
        if sets.iter().all(|s| s.is_empty()) {
            return Err(JwtError::NoKeys);
        }
        match &h.kid {
            Some(kid) => sets
                .into_iter()
                .find_map(|set| {
                    let i = set.iter().position(|k| k.kid.as_deref() == Some(kid))?;
                    Some((set, i))
                })
                .ok_or_else(|| JwtError::UnknownKeyId(kid.clone())),
            None => {
                let mut fitting = sets.into_iter().flat_map(|set| {
                    let idx: Vec<usize> = (0..set.len())
                        .filter(|&i| token::fits(set[i].kind, h.alg))
                        .collect();
                    idx.into_iter().map(move |i| (set.clone(), i))
                });
                match (fitting.next(), fitting.next()) {
                    (Some(one), None) => Ok(one),
                    (None, _) => Err(JwtError::UnknownKeyId("(none)".into())),
                    _ => Err(JwtError::AmbiguousKey),
                }
            }
        }
    }

    /// Asks the refresher for a refetch (it decides per source whether the rate limit allows
    /// one) and waits for a round that began after the request, or gives up after a while.
    pub async fn refetch(&self) {
        let ticket = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let mut served = self.served.subscribe();
        self.wake.notify_one();
        let _ = tokio::time::timeout(WAIT_FOR_REFETCH, served.wait_for(|s| *s >= ticket)).await;
    }

    /// Fetches key sets forever: stale or missing ones on a timer, and on request (unknown key
    /// ids), each source at most once per [`KID_REFETCH_EVERY`] for the latter.
    pub async fn run(self: Arc<Self>, client: HttpClient, ttl: Duration) {
        let mut first = true;
        loop {
            let asked = if first {
                first = false;
                false
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_EVERY) => false,
                    _ = self.wake.notified() => true,
                }
            };
            let ticket = self.asked.load(Ordering::Acquire);
            let now = crate::types::now_ms();
            for (index, s) in self.sources.iter().enumerate() {
                let stale = now - s.fetched_ms.load(Ordering::Relaxed) >= ttl.as_millis() as i64;
                let may_retry =
                    now - s.tried_ms.load(Ordering::Relaxed) >= RETRY_EVERY.as_millis() as i64;
                let kid_due = asked
                    && now - s.kid_refetch_ms.load(Ordering::Relaxed)
                        >= KID_REFETCH_EVERY.as_millis() as i64;
                if kid_due {
                    s.kid_refetch_ms.store(now, Ordering::Relaxed);
                }
                if (kid_due || (stale && may_retry)) && fetch_one(&client, s, index).await {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
            }
            self.served.send_replace(ticket);
        }
    }
}

/// Fetches one source's key set; whether its keys changed.
async fn fetch_one(client: &HttpClient, s: &Source, index: usize) -> bool {
    s.tried_ms.store(crate::types::now_ms(), Ordering::Relaxed);
    let fetched = fetch(client, &s.url).await;
    let parsed = fetched.and_then(|body| {
        let keys = parse_set(&body, index).and_then(usable)?;
        Ok((body, keys))
    });
    match parsed {
        Ok((body, keys)) => {
            let mut last = s
                .body
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = *last != body;
            if changed {
                tracing::info!(url = %s.url, keys = keys.len(), "JWT signing keys fetched");
                s.keys.store(Arc::new(keys));
                *last = body;
            }
            s.fetched_ms
                .store(crate::types::now_ms(), Ordering::Relaxed);
            changed
        }
        // The previous keys stay in use: an identity provider's outage must not turn every
        // valid token away before its keys would have gone stale anyway.
        Err(e) => {
            tracing::warn!(url = %s.url, error = %e, "JWT signing keys could not be fetched");
            false
        }
    }
}

/// A key set with no key this gateway can verify with is what a broken endpoint answers (an
/// empty list, keys of unknown types), not a rotation: it does not replace the keys in use.
fn usable(keys: Vec<SigningKey>) -> Result<Vec<SigningKey>, String> {
    if keys.is_empty() {
        Err("the key set holds no usable signing key".into())
    } else {
        Ok(keys)
    }
}

async fn fetch(client: &HttpClient, url: &str) -> Result<Bytes, String> {
    let req = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        // Not pooled: this runs every few minutes, and a pooled connection would be driven by
        // whichever runtime opened it.
        .header(http::header::CONNECTION, "close")
        .header(
            http::header::USER_AGENT,
            concat!("portcullis/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(FETCH_TIMEOUT, client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let body = tokio::time::timeout(
        FETCH_TIMEOUT,
        Limited::new(resp.into_body(), MAX_JWKS_BYTES).collect(),
    )
    .await
    .map_err(|_| "timed out reading".to_string())?
    .map_err(|e| format!("reading: {e}"))?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_keep_only_asymmetric_signing_keys() {
        let set = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "hs", "alg": "HS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird"},
            {"kty": "RSA", "kid": "rsa-2048", "e": "AQAB", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 256])},
            {"kty": "RSA", "kid": "rsa-1024", "e": "AQAB", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 128])}
        ]});
        let keys = parse_set(set.to_string().as_bytes(), 0).unwrap_or_default();
        let kids: Vec<String> = keys.iter().map(SigningKey::label).collect();
        assert_eq!(kids, ["ec", "ed", "rsa-2048"]);
        assert_eq!(keys[2].kind, KeyKind::Rsa);
        assert_eq!(keys[0].kind, KeyKind::P256);
        assert_eq!(keys[0].alg, Some(Algorithm::ES256));
        assert_eq!(keys[1].kind, KeyKind::Ed25519);
        assert!(parse_set(b"{\"nope\": 1}", 0).is_err());
        assert!(parse_set(b"[]", 0).is_ok_and(|k| k.is_empty()));
    }
}
