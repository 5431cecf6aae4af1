//! Identity headers from a trusted authenticating proxy (oauth2-proxy, Pomerium, an ingress with
//! `auth_request`): who the proxy signed in, taken **only** from connections whose peer address
//! is in `trusted_proxy_ranges`. The same headers from anywhere else are ignored — anyone can
//! send `X-Forwarded-Email: admin@…` — and the attempt is logged (rate-limited, so a flood of
//! spoofed requests cannot flood the log).
//!
//! LiteLLM's `enable_oauth2_proxy_auth` reads the headers from every caller; here the peer
//! address decides, and nothing else does (not `X-Forwarded-For`, which the caller writes).

use crate::config::{GroupMapping, ProxySettings, UiAccessMode};
use dashmap::DashMap;
use http::HeaderMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};

/// What a trusted proxy says about the person behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyIdentity {
    /// The user id: the user header, else the email.
    pub user_id: String,
    pub email: Option<String>,
    /// Comma-separated in the header (oauth2-proxy's shape), trimmed, empty ones dropped.
    pub groups: Vec<String>,
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyOutcome {
    /// No identity header at all.
    Absent,
    /// From a trusted peer: who it says.
    Trusted(ProxyIdentity),
    /// From a trusted peer, but unusable (no user, a value too long or not text).
    Malformed(&'static str),
    /// Identity headers from a peer outside the trusted ranges: ignored.
    Untrusted,
}

/// Values longer than this are refused: a user id or email is short, and the value ends up in
/// records and audit entries.
const MAX_VALUE: usize = 256;
const MAX_GROUPS_HEADER: usize = 8 * 1024;

pub struct TrustedProxy {
    settings: ProxySettings,
    /// Who may open the UI (`ui_access_mode`).
    pub ui_access: UiAccessMode,
    /// When an untrusted attempt was last logged (ms since the epoch).
    warned_ms: AtomicI64,
    /// User id → fingerprint of the email and groups last brought in step with the store, so
    /// a request whose person is unchanged writes nothing and reads no disk.
    synced: DashMap<String, u64>,
    /// User id → (fingerprint, when, why) of a recent refusal: refused again from memory for a
    /// minute, so a refused person's every request does not write an audit entry.
    refused: DashMap<String, (u64, i64, String)>,
}

impl TrustedProxy {
    pub fn new(settings: ProxySettings, ui_access: UiAccessMode) -> Self {
        TrustedProxy {
            settings,
            ui_access,
            warned_ms: AtomicI64::new(0),
            synced: DashMap::new(),
            refused: DashMap::new(),
        }
    }

    pub fn mapping(&self) -> &GroupMapping {
        &self.settings.mapping
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.settings.ranges.iter().any(|r| r.contains(peer))
    }

    /// Whether this person was brought in step with the store as they are now.
    pub fn in_step(&self, id: &ProxyIdentity) -> bool {
        self.synced
            .get(&id.user_id)
            .is_some_and(|f| *f == fingerprint(id))
    }

    pub fn mark_in_step(&self, id: &ProxyIdentity) {
        self.refused.remove(&id.user_id);
        self.synced.insert(id.user_id.clone(), fingerprint(id));
    }

    /// Why this person, as they are now, was refused in the last minute.
    pub fn recently_refused(&self, id: &ProxyIdentity) -> Option<String> {
        let r = self.refused.get(&id.user_id)?;
        let (f, at, why) = r.value();
        (*f == fingerprint(id) && crate::types::now_ms() - at < 60_000).then(|| why.clone())
    }

    pub fn mark_refused(&self, id: &ProxyIdentity, why: &str) {
        // Bounded: a flood of invented names must not grow memory without end.
        if self.refused.len() >= 10_000 {
            self.refused.clear();
        }
        self.refused.insert(
            id.user_id.clone(),
            (fingerprint(id), crate::types::now_ms(), why.to_string()),
        );
    }

    /// Reads the identity headers of a request from `peer`.
    pub fn read(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> ProxyOutcome {
        let names = &self.settings.headers;
        let present = [&names.user_id, &names.user_email, &names.groups]
            .iter()
            .any(|n| headers.contains_key(*n));
        if !present {
            return ProxyOutcome::Absent;
        }
        if !peer.is_some_and(|p| self.trusts(p)) {
            self.warn_untrusted(peer);
            return ProxyOutcome::Untrusted;
        }
        match self.identity(headers) {
            Ok(id) => ProxyOutcome::Trusted(id),
            Err(why) => ProxyOutcome::Malformed(why),
        }
    }

    fn identity(&self, headers: &HeaderMap) -> Result<ProxyIdentity, &'static str> {
        // A header given twice is ambiguous (which proxy wrote which?): refused.
        let one = |name: &http::HeaderName, max: usize| -> Result<Option<String>, &'static str> {
            let mut values = headers.get_all(name).iter();
            let Some(v) = values.next() else {
                return Ok(None);
            };
            if values.next().is_some() {
                return Err("an identity header is given more than once");
            }
            let v = v
                .to_str()
                .map_err(|_| "an identity header is not visible ASCII")?
                .trim();
            if v.len() > max {
                return Err("an identity header is too long");
            }
            Ok((!v.is_empty()).then(|| v.to_string()))
        };
        let names = &self.settings.headers;
        let user = one(&names.user_id, MAX_VALUE)?;
        let email = one(&names.user_email, MAX_VALUE)?.map(|e| e.to_lowercase());
        if email.as_deref().is_some_and(|e| !plausible_email(e)) {
            return Err("the email header is not an email address");
        }
        let groups = one(&names.groups, MAX_GROUPS_HEADER)?
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let user_id = user
            .or_else(|| email.clone())
            .ok_or("neither the user nor the email header names anyone")?;
        Ok(ProxyIdentity {
            user_id,
            email,
            groups,
        })
    }

    /// At most one warning a minute; the log names the peer, never the values (they may be
    /// an attacker's probe of what the log shows).
    fn warn_untrusted(&self, peer: Option<IpAddr>) {
        let now = crate::types::now_ms();
        let last = self.warned_ms.load(Ordering::Relaxed);
        if now - last >= 60_000
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                "identity headers from an address outside trusted_proxy_ranges were ignored \
                 (logged at most once a minute)"
            );
        }
    }
}

fn fingerprint(id: &ProxyIdentity) -> u64 {
    let mut groups: Vec<&str> = id.groups.iter().map(String::as_str).collect();
    groups.sort_unstable();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&id.email, groups).hash(&mut h);
    h.finish()
}

fn plausible_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxy() -> TrustedProxy {
        let (config, _) = crate::config::Config::from_yaml(
            "general_settings:\n  enable_oauth2_proxy_auth: true\n  \
             trusted_proxy_ranges: [127.0.0.1/32]\n",
            &Default::default(),
        )
        .unwrap();
        TrustedProxy::new(config.trusted_proxy.unwrap(), UiAccessMode::All)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn headers_count_only_from_trusted_peers() {
        let p = proxy();
        let h = headers(&[
            ("x-forwarded-email", "ann@example.com"),
            ("x-forwarded-groups", "eng, admins,,"),
        ]);
        assert_eq!(
            p.read(Some(ip("127.0.0.1")), &h),
            ProxyOutcome::Trusted(ProxyIdentity {
                user_id: "ann@example.com".into(),
                email: Some("ann@example.com".into()),
                groups: vec!["eng".into(), "admins".into()],
            })
        );
        assert_eq!(p.read(Some(ip("127.0.0.2")), &h), ProxyOutcome::Untrusted);
        assert_eq!(p.read(None, &h), ProxyOutcome::Untrusted);
        assert_eq!(
            p.read(Some(ip("127.0.0.1")), &HeaderMap::new()),
            ProxyOutcome::Absent
        );
    }

    #[test]
    fn ambiguous_or_odd_values_are_refused() {
        let p = proxy();
        let peer = Some(ip("127.0.0.1"));
        let twice = headers(&[("x-forwarded-user", "ann"), ("x-forwarded-user", "root")]);
        assert!(matches!(p.read(peer, &twice), ProxyOutcome::Malformed(_)));
        let long = "a".repeat(300);
        let h = headers(&[("x-forwarded-user", long.as_str())]);
        assert!(matches!(p.read(peer, &h), ProxyOutcome::Malformed(_)));
        let h = headers(&[("x-forwarded-email", "not-an-email")]);
        assert!(matches!(p.read(peer, &h), ProxyOutcome::Malformed(_)));
        let h = headers(&[("x-forwarded-groups", "eng")]);
        assert!(matches!(p.read(peer, &h), ProxyOutcome::Malformed(_)));
        let h = headers(&[("x-forwarded-user", "ann"), ("x-forwarded-email", "")]);
        assert_eq!(
            p.read(peer, &h),
            ProxyOutcome::Trusted(ProxyIdentity {
                user_id: "ann".into(),
                email: None,
                groups: vec![],
            })
        );
    }
}
