//! One token's checks: its shape, the algorithm allow-list, then signature and time, audience
//! and issuer claims through jsonwebtoken. Pure: keys are handed in, nothing is fetched.

use super::JwtError;
use super::jwks::{KeyKind, SigningKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

/// The algorithms a token may be signed with: asymmetric only. `none` and the HMAC family are
/// absent on purpose — an HMAC "verified" with a public key is forgeable by anyone who has
/// the key, and the JWKS is public.
pub const ALLOWED: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// The allow-list's answer for a header's `alg`.
pub fn allowed(alg: &str) -> Result<Algorithm, JwtError> {
    ALLOWED
        .iter()
        .find(|(name, _)| *name == alg)
        .map(|(_, a)| *a)
        .ok_or_else(|| JwtError::AlgorithmNotAllowed(clip(alg)))
}

/// Whether a key of this kind can verify `alg` (a P-256 key never verifies ES384, an RSA key
/// never EdDSA).
pub fn fits(kind: KeyKind, alg: Algorithm) -> bool {
    use Algorithm::*;
    match kind {
        KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        KeyKind::P256 => alg == ES256,
        KeyKind::P384 => alg == ES384,
        KeyKind::Ed25519 => alg == EdDSA,
    }
}

/// Header values that reach an answer are cut short: they come from whoever sent the token.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// What the unverified header says: the algorithm (allow-listed) and the key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.is_empty() || p.is_empty() {
        return None;
    }
    let b64url = |x: &str| {
        x.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (b64url(h) && b64url(p) && b64url(s)).then_some((h, p, s))
}

fn header_json(h: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(h).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) if m.get("alg").is_some_and(Value::is_string) => Some(m),
        _ => None,
    }
}

/// Three base64url segments whose first is a JSON header naming an `alg`: what a JWT looks
/// like. Virtual keys (`sk-...`) never do.
pub fn looks_like_jwt(token: &str) -> bool {
    segments(token)
        .and_then(|(h, _, _)| header_json(h))
        .is_some()
}

pub fn header(token: &str) -> Result<Header, JwtError> {
    let (h, _, sig) = segments(token).ok_or(JwtError::Malformed("not three base64url parts"))?;
    let json = header_json(h).ok_or(JwtError::Malformed("the header is not JSON with an alg"))?;
    let alg = allowed(json.get("alg").and_then(Value::as_str).unwrap_or_default())?;
    if sig.is_empty() {
        return Err(JwtError::BadSignature);
    }
    if json.contains_key("crit") {
        // RFC 7515: a receiver that does not understand a critical extension must reject.
        return Err(JwtError::Malformed("it has critical header extensions"));
    }
    let kid = match json.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(clip(k)),
        Some(_) => return Err(JwtError::Malformed("its kid is not a string")),
    };
    Ok(Header { alg, kid })
}

/// What the token's time, audience and issuer must satisfy.
pub struct Expect<'a> {
    pub audiences: &'a [String],
    pub issuers: &'a [String],
    pub leeway_secs: u64,
}

/// Verifies the signature with `key` and the registered claims; the claims on success.
pub fn verify(
    token: &str,
    alg: Algorithm,
    key: &SigningKey,
    expect: &Expect<'_>,
) -> Result<Map<String, Value>, JwtError> {
    if !fits(key.kind, alg) {
        return Err(JwtError::KeyMismatch(key.label()));
    }
    if key.alg.is_some_and(|a| a != alg) {
        return Err(JwtError::KeyMismatch(key.label()));
    }
    let mut v = Validation::new(alg);
    v.leeway = expect.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if expect.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(expect.audiences);
        required.push("aud");
    }
    if !expect.issuers.is_empty() {
        v.set_issuer(expect.issuers);
        required.push("iss");
    }
    v.set_required_spec_claims(&required);
    use jsonwebtoken::errors::ErrorKind as K;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
        .map(|data| data.claims)
        .map_err(|e| match e.into_kind() {
            K::ExpiredSignature => JwtError::Expired,
            K::ImmatureSignature => JwtError::NotYetValid,
            K::InvalidAudience => JwtError::WrongAudience,
            K::InvalidIssuer => JwtError::WrongIssuer,
            K::InvalidSignature => JwtError::BadSignature,
            K::MissingRequiredClaim(c) => JwtError::MissingClaim(c),
            K::InvalidClaimFormat(c) => JwtError::BadClaim(c),
            K::InvalidAlgorithm | K::UnsupportedAlgorithm => JwtError::KeyMismatch(key.label()),
            K::Base64(_) | K::Json(_) | K::Utf8(_) | K::InvalidToken => {
                JwtError::Malformed("its parts do not decode")
            }
            _ => JwtError::BadSignature,
        })?;
    // RFC 7519 §4.1.1: `iss` is one StringOrURI. jsonwebtoken also takes a list, and passes
    // one that merely includes a trusted issuer — so one issuer's key could sign a token
    // naming others too, and the subject (`<iss>|<sub>`) would lose its issuer.
    if !expect.issuers.is_empty() && !claims.get("iss").is_some_and(Value::is_string) {
        return Err(JwtError::BadClaim("iss".into()));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn the_allow_list_is_asymmetric_only() {
        for ok in [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        ] {
            assert!(allowed(ok).is_ok(), "{ok}");
        }
        for bad in [
            "none", "None", "HS256", "HS384", "HS512", "ES512", "", "rs256",
        ] {
            assert!(
                matches!(allowed(bad), Err(JwtError::AlgorithmNotAllowed(_))),
                "{bad}"
            );
        }
        assert!(fits(KeyKind::P256, Algorithm::ES256));
        assert!(!fits(KeyKind::P256, Algorithm::ES384));
        assert!(!fits(KeyKind::Rsa, Algorithm::EdDSA));
        assert!(fits(KeyKind::Rsa, Algorithm::PS512));
        assert!(!fits(KeyKind::Ed25519, Algorithm::RS256));
    }

    #[test]
    fn headers_are_read_and_refused_for_their_alg() {
        let tok = |h: &str| format!("{}.{}.c2ln", b64(h), b64("{}"));
        assert_eq!(
            header(&tok(r#"{"alg":"ES256","kid":"k1"}"#)),
            Ok(Header {
                alg: Algorithm::ES256,
                kid: Some("k1".into())
            })
        );
        assert!(matches!(
            header(&tok(r#"{"alg":"none"}"#)),
            Err(JwtError::AlgorithmNotAllowed(a)) if a == "none"
        ));
        assert!(matches!(
            header(&tok(r#"{"alg":"HS256","kid":"k1"}"#)),
            Err(JwtError::AlgorithmNotAllowed(_))
        ));
        // `alg: none` with the signature left off entirely.
        let unsigned = format!("{}.{}.", b64(r#"{"alg":"ES256"}"#), b64("{}"));
        assert_eq!(header(&unsigned), Err(JwtError::BadSignature));
        assert!(matches!(
            header(&tok(r#"{"alg":"ES256","crit":["exp"]}"#)),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn what_looks_like_a_jwt() {
        let h = b64(r#"{"alg":"RS256","typ":"JWT"}"#);
        assert!(looks_like_jwt(&format!("{h}.{}.sig", b64("{}"))));
        assert!(!looks_like_jwt("sk-0123456789abcdef"));
        assert!(!looks_like_jwt(&format!("{h}.{}", b64("{}"))));
        assert!(!looks_like_jwt(&format!("{}.{}.x", b64("{}"), b64("{}"))));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(&format!("{h}.e30=.x")));
    }
}
