//! The authenticated caller of a management route: who it is in the governance model, the
//! route gates it passed, and the origin recorded in audit entries.

use super::ApiError;
use crate::app::AppState;
use crate::audit::{Actor, Origin};
use crate::auth::Principal;
use crate::tenancy::access;
use crate::tenancy::scope::{Identity, Reach};
use axum::extract::FromRequestParts;
use http::request::Parts;
use std::net::SocketAddr;

/// The peer address of a connection, put on each request by the server.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

#[derive(Clone)]
pub struct Caller {
    pub identity: Identity,
    pub origin: Origin,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.identity.is_proxy_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "Only a proxy admin may do this.".into(),
            ))
        }
    }

    /// Refuses callers that may change nothing (viewers, read-only keys).
    pub fn require_writer(&self) -> Result<(), ApiError> {
        if self.identity.read_only() {
            Err(ApiError::Forbidden(
                "This caller is read-only and may change nothing.".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// The standard answer for an object: hidden is 404 (never disclosed), a reach below
    /// `needed` is 403, and any write by a read-only caller is 403.
    pub fn need(&self, reach: Reach, needed: Reach, what: &str) -> Result<(), ApiError> {
        if reach == Reach::Hidden {
            return Err(ApiError::NotFound(format!("{what} not found.")));
        }
        if needed > Reach::Read {
            self.require_writer()?;
        }
        if reach < needed {
            return Err(ApiError::Forbidden(format!(
                "Not allowed to do this to this {}.",
                what.to_lowercase()
            )));
        }
        Ok(())
    }

    /// Proxy admins and their viewers are never managed from below: their memberships change
    /// only by a proxy admin's hand.
    pub fn may_change_memberships_of(
        &self,
        user: &crate::store::UserRecord,
    ) -> Result<(), ApiError> {
        use crate::roles::GlobalRole;
        if matches!(
            user.user_role,
            GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer
        ) && !self.identity.is_proxy_admin()
        {
            return Err(ApiError::Forbidden(
                "Only a proxy admin may change a proxy admin's memberships.".into(),
            ));
        }
        Ok(())
    }

    pub fn actor(&self) -> Actor {
        match &self.identity {
            Identity::Master => Actor::MasterKey,
            Identity::User { user, key } => Actor::User {
                user_id: user.record.user_id.clone(),
                key: key.as_ref().map(|k| k.record.token.clone()),
                role: self.acting_role().to_string(),
            },
            // A SCIM token acts as `scim:<key id>`: the IdP connection, not an anonymous key.
            Identity::Service { key } if crate::scim::is_scim_token(key) => {
                Actor::Scim(key.record.key_id.clone())
            }
            Identity::Service { key } => Actor::Key(key.record.token.clone()),
        }
    }

    pub fn label(&self) -> String {
        self.identity.label()
    }

    /// The most powerful role the caller holds, for the audit trail: its proxy-level role,
    /// unless that is an ordinary user's and it administers an organisation.
    fn acting_role(&self) -> &'static str {
        use crate::roles::GlobalRole;
        match self.identity.role() {
            Some(r @ (GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer)) => r.as_str(),
            _ if !self.identity.admin_orgs().is_empty() => crate::roles::OrgRole::OrgAdmin.as_str(),
            Some(r) => r.as_str(),
            None => "",
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let principal = app
            .auth
            .authenticate(&parts.headers)
            .map_err(ApiError::Auth)?;
        let identity = match principal {
            Principal::Master => Identity::Master,
            Principal::Key(key) => {
                let user = key
                    .record
                    .user_id
                    .as_deref()
                    .and_then(|u| app.directory.user(u));
                if let Some(u) = &user
                    && u.record.disabled()
                {
                    return Err(ApiError::Forbidden("This user is blocked.".into()));
                }
                let role = user.as_ref().map(|u| u.record.user_role);
                let class = access::classify(&parts.method, parts.uri.path());
                access::check_route(&app.directory, &key, role, class, parts.uri.path())
                    .map_err(|d| ApiError::Forbidden(d.rule))?;
                match user {
                    Some(user) => Identity::User {
                        user,
                        key: Some(key),
                    },
                    None => Identity::Service { key },
                }
            }
        };
        let origin = Origin {
            request_id: parts
                .extensions
                .get::<super::RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_else(crate::request::new_call_id),
            source_ip: parts
                .extensions
                .get::<PeerAddr>()
                .map(|p| p.0.ip().to_string())
                .unwrap_or_default(),
            user_agent: crate::request::user_agent(&parts.headers),
        };
        Ok(Caller { identity, origin })
    }
}
