//! OIDC browser login's durable state: sessions (by the sha256 of their cookie, never the
//! cookie) and the identity links `(issuer, subject) → user` with what the group mappings
//! granted. Written only through [`super::Store::write`], so every login, logout and link is
//! audited in the transaction that makes it.

use super::{Store, StoreError, Tx, codec, tables};
use crate::roles::GlobalRole;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Names the session in audit entries (the cookie's digest is not shown anywhere).
    pub session_id: String,
    pub user_id: String,
    /// `<issuer>|<subject>` of the identity that signed in.
    pub subject: String,
    /// The token every cookie-authenticated write must repeat (`x-csrf-token`).
    pub csrf_token: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// The proxy-wide role a group mapping set, with the one it replaced (restored when the
/// mapping no longer gives it, unless an administrator changed the role since).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SsoRoleGrant {
    pub granted: GlobalRole,
    pub replaced: GlobalRole,
}

/// An identity provider's account, linked to one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SsoIdentity {
    pub issuer: String,
    pub subject: String,
    pub user_id: String,
    pub created_at_ms: i64,
    pub last_login_ms: i64,
    pub role_grant: Option<SsoRoleGrant>,
    /// Team memberships the group mappings made (only these are taken away by them).
    pub team_grants: Vec<String>,
}

pub fn identity_key(issuer: &str, subject: &str) -> String {
    format!("{issuer}\n{subject}")
}

impl Tx {
    pub fn get_sso_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<SsoIdentity>, StoreError> {
        self.get_record(tables::SSO_IDENTITIES, &identity_key(issuer, subject))
    }

    pub fn put_sso_identity(&mut self, id: &SsoIdentity) -> Result<(), StoreError> {
        self.put_record(
            tables::SSO_IDENTITIES,
            &identity_key(&id.issuer, &id.subject),
            id,
        )
    }

    pub fn delete_sso_identity(&mut self, issuer: &str, subject: &str) -> Result<(), StoreError> {
        self.remove_record::<SsoIdentity>(tables::SSO_IDENTITIES, &identity_key(issuer, subject))?;
        Ok(())
    }

    pub fn put_session(&mut self, digest: &str, s: &SessionRecord) -> Result<(), StoreError> {
        self.put_record(tables::SSO_SESSIONS, digest, s)
    }

    pub fn delete_session(&mut self, digest: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.remove_record(tables::SSO_SESSIONS, digest)
    }
}

impl Store {
    /// Every stored session with its cookie digest, for the in-memory table at start.
    pub fn all_sessions(&self) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(tables::SSO_SESSIONS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), codec::decode(v.value())?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, Change, Origin};

    #[test]
    fn sessions_and_identities_round_trip_audited() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store = Store::open(&dir.path().join("s.redb")).unwrap_or_else(|e| unreachable!("{e}"));
        let s = SessionRecord {
            session_id: "s1".into(),
            user_id: "u".into(),
            subject: "iss|sub".into(),
            csrf_token: "c".into(),
            created_at_ms: 1,
            expires_at_ms: 2,
        };
        let id = SsoIdentity {
            issuer: "iss".into(),
            subject: "sub".into(),
            user_id: "u".into(),
            created_at_ms: 1,
            last_login_ms: 1,
            role_grant: None,
            team_grants: vec!["t".into()],
        };
        let written = store.write(&Actor::System, &Origin::default(), |tx| {
            tx.put_session("d1", &s)?;
            tx.put_sso_identity(&id)?;
            tx.audit(Change {
                action: "login".into(),
                table_name: "sso_session".into(),
                object_id: "s1".into(),
                ..Default::default()
            });
            Ok::<_, StoreError>(())
        });
        assert!(written.is_ok());
        let all = store.all_sessions().unwrap_or_default();
        assert_eq!(all, vec![("d1".to_string(), s)]);
        let got = store.write(&Actor::System, &Origin::default(), |tx| {
            tx.get_sso_identity("iss", "sub")
        });
        assert_eq!(got.ok().flatten(), Some(id));
    }
}
