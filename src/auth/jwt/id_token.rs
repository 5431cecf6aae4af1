//! An OpenID Connect ID token's checks (OIDC Core §3.1.3.7), on the same machinery as bearer
//! JWTs: the algorithm allow-list and signature against the provider's key set (an unknown
//! `kid` refetches it, rate-limited), `iss`, `aud`, `exp`, `nbf` with bounded clock skew —
//! then what only an ID token has: `azp`, `iat` required and recent, `sub`, and the `nonce`
//! this login sent.

use super::{Jwks, JwtError, token};
use crate::config::JWT_LEEWAY;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

/// The oldest `iat` accepted: an ID token is minted by the code exchange a moment ago.
const MAX_AGE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("{0}")]
    Token(JwtError),
    #[error("The ID token's nonce does not match this login.")]
    Nonce,
    #[error("The ID token was issued to another client (azp).")]
    AuthorizedParty,
    #[error("The ID token's iat is {0}.")]
    IssuedAt(&'static str),
    #[error("The ID token names no subject (sub).")]
    Subject,
}

/// What the token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// Verifies `token`; its claims when every check passes.
pub async fn verify(
    jwks: &Jwks,
    id_token: &str,
    want: &Expected<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    let header = token::header(id_token).map_err(IdTokenError::Token)?;
    let (set, i, _) = jwks.key_for(&header).await.map_err(IdTokenError::Token)?;
    let issuers = [want.issuer.to_string()];
    let audiences = [want.client_id.to_string()];
    let expect = token::Expect {
        audiences: &audiences,
        issuers: &issuers,
        leeway_secs: JWT_LEEWAY.as_secs(),
    };
    let claims =
        token::verify(id_token, header.alg, &set[i], &expect).map_err(IdTokenError::Token)?;
    check_claims(&claims, want, crate::types::now_ms() / 1000)?;
    Ok(claims)
}

/// The checks beyond signature, `iss`, `aud`, `exp` and `nbf`. Pure.
pub fn check_claims(
    claims: &Map<String, Value>,
    want: &Expected<'_>,
    now_s: i64,
) -> Result<(), IdTokenError> {
    let leeway = JWT_LEEWAY.as_secs() as i64;
    // A token for several audiences must say which client it was issued to; any `azp` must be
    // this client.
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp") {
        Some(Value::String(a)) if a == want.client_id => {}
        None if !several => {}
        _ => return Err(IdTokenError::AuthorizedParty),
    }
    let iat = match claims.get("iat").and_then(Value::as_f64) {
        Some(t) if t.is_finite() => t as i64,
        _ => return Err(IdTokenError::IssuedAt("missing")),
    };
    if iat > now_s + leeway {
        return Err(IdTokenError::IssuedAt("in the future"));
    }
    if iat < now_s - MAX_AGE_SECS - leeway {
        return Err(IdTokenError::IssuedAt("too old"));
    }
    match claims.get("sub") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => return Err(IdTokenError::Subject),
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if nonce.is_empty() || !bool::from(nonce.as_bytes().ct_eq(want.nonce.as_bytes())) {
        return Err(IdTokenError::Nonce);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn nonce_azp_iat_and_sub() {
        let want = Expected {
            issuer: "i",
            client_id: "c",
            nonce: "n1",
        };
        let now = 1_000_000;
        let ok = json!({"sub": "s", "iat": now, "nonce": "n1", "aud": "c"});
        assert_eq!(check_claims(&claims(ok.clone()), &want, now), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = claims(ok.clone());
            c.insert(k.into(), v);
            check_claims(&c, &want, now)
        };
        assert_eq!(with("nonce", json!("n2")), Err(IdTokenError::Nonce));
        assert_eq!(with("nonce", json!("")), Err(IdTokenError::Nonce));
        assert_eq!(
            with("azp", json!("other")),
            Err(IdTokenError::AuthorizedParty)
        );
        assert_eq!(with("azp", json!("c")), Ok(()));
        assert_eq!(
            with("aud", json!(["c", "other"])),
            Err(IdTokenError::AuthorizedParty)
        );
        assert_eq!(
            with("iat", json!(now + 3600)),
            Err(IdTokenError::IssuedAt("in the future"))
        );
        assert_eq!(
            with("iat", json!(now - 3600)),
            Err(IdTokenError::IssuedAt("too old"))
        );
        assert_eq!(
            with("iat", json!("x")),
            Err(IdTokenError::IssuedAt("missing"))
        );
        assert_eq!(with("sub", json!("")), Err(IdTokenError::Subject));
        let mut c = claims(ok);
        c.remove("nonce");
        assert_eq!(check_claims(&c, &want, now), Err(IdTokenError::Nonce));
    }
}
