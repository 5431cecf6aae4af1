//! The authenticated caller of a management route: who it is in the governance model, the
//! route gates it passed, and the origin recorded in audit entries.

use super::ApiError;
use crate::app::AppState;
use crate::audit::{Actor, Origin};
use crate::auth::{AuthError, JwtGrant, Principal};
use crate::roles::GlobalRole;
use crate::tenancy::KeyEntry;
use crate::tenancy::access::{self, RouteClass};
use crate::tenancy::scope::{Identity, Reach};
use axum::extract::FromRequestParts;
use http::Method;
use http::request::Parts;
use std::net::SocketAddr;
use std::sync::Arc;

/// The peer address of a connection, put on each request by the server.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

#[derive(Clone)]
pub struct Caller {
    pub identity: Identity,
    pub origin: Origin,
    /// The JWT the caller came with (its identity's key is the token's entry): audit entries
    /// and `created_by` name it.
    pub jwt: Option<Arc<JwtGrant>>,
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
        if let Some(g) = &self.jwt {
            return Actor::Jwt {
                subject: format!("jwt:{}", g.subject),
                user_id: g.user_id.clone(),
                role: self.acting_role().to_string(),
            };
        }
        match &self.identity {
            Identity::Master => Actor::MasterKey,
            Identity::User { user, key, .. } => Actor::User {
                user_id: user.record.user_id.clone(),
                key: key.as_ref().map(|k| k.record.token.clone()),
                role: self.acting_role().to_string(),
            },
            // A SCIM token acts as `scim:<key id>`: the IdP connection, not an anonymous key.
            Identity::Service { key, .. } if crate::scim::is_scim_token(key) => {
                Actor::Scim(key.record.key_id.clone())
            }
            Identity::Service { key, .. } => Actor::Key(key.record.token.clone()),
        }
    }

    pub fn label(&self) -> String {
        match &self.jwt {
            Some(g) => format!("jwt:{}", g.subject),
            None => self.identity.label(),
        }
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
        // A browser session, when no credential header is present (a header always wins).
        if app.oidc.is_some()
            && crate::auth::credential(&parts.headers).is_none()
            && crate::auth::session::cookie_value(&parts.headers).is_some()
        {
            return session_caller(app, parts);
        }
        // A trusted proxy's identity headers, when no credential header is present. From any
        // other peer they are ignored (and the request needs a key like any other).
        if app.trusted_proxy.is_some()
            && crate::auth::credential(&parts.headers).is_none()
            && let Some((user, _)) =
                crate::sso::proxy::proxy_user(app, &parts.headers, &parts.extensions).await?
        {
            // The proxy's sign-in rides on a cookie of its own: a write must come from this
            // site (there is no CSRF token to check).
            if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
                && crate::sso::cross_site(&parts.headers, app.base_url())
            {
                return Err(ApiError::Forbidden(
                    "Cross-site request refused (Origin).".into(),
                ));
            }
            return user_caller(app, parts, user);
        }
        let principal = super::jwt::authenticate(app, &parts.headers)
            .await
            .map_err(ApiError::Auth)?;
        let class = access::classify(&parts.method, parts.uri.path());
        let path = parts.uri.path();
        let mut jwt = None;
        let identity = match principal {
            Principal::Master => Identity::Master,
            Principal::Key(key) => key_identity(app, key, None, class, path)?,
            Principal::Jwt(grant) => {
                // The team the management call is made in: the header's, else the token's
                // first that exists here. What the caller may manage comes from its stored
                // memberships, as for a key.
                let team = super::jwt::team_header(&parts.headers);
                let key = grant
                    .candidates(&app.directory, team)
                    .map_err(|e| ApiError::Auth(AuthError::Jwt(e)))?
                    .first()
                    .map(|k| Arc::clone(k))
                    .ok_or(ApiError::Auth(AuthError::Invalid))?;
                let identity = key_identity(app, key, grant.role, class, path)?;
                jwt = Some(grant);
                identity
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
        Ok(Caller {
            identity,
            origin,
            jwt,
        })
    }
}

/// The caller a session cookie names: its user, governed as the user's own key would be (its
/// role's route permissions included); a write must pass the CSRF checks.
fn session_caller(app: &AppState, parts: &Parts) -> Result<Caller, ApiError> {
    let (session, user) = crate::sso::resolve(app, &parts.headers)?;
    crate::sso::check_csrf(app, &parts.method, &parts.headers, &session, None)?;
    user_caller(app, parts, user)
}

/// A signed-in person (session or trusted proxy) acting as themselves, with no key: their
/// role's route permissions apply.
fn user_caller(
    app: &AppState,
    parts: &Parts,
    user: Arc<crate::tenancy::UserEntry>,
) -> Result<Caller, ApiError> {
    let class = access::classify(&parts.method, parts.uri.path());
    let path = parts.uri.path();
    let role = user.record.user_role;
    if let Some(routes) = app.directory.role_routes(role)
        && !routes.iter().any(|e| access::route_matches(e, class, path))
    {
        return Err(ApiError::Forbidden(format!(
            "role_permissions for {role} do not include this route"
        )));
    }
    Ok(Caller {
        identity: Identity::User {
            user,
            key: None,
            role: None,
        },
        origin: crate::sso::origin_of(&parts.headers, &parts.extensions),
        jwt: None,
    })
}

/// A key's (or a JWT's entry's) identity, refused if its user is deactivated or the route is
/// not one it may call. `role` is a JWT's role, overriding the stored user's.
fn key_identity(
    app: &AppState,
    key: Arc<KeyEntry>,
    role: Option<GlobalRole>,
    class: RouteClass,
    path: &str,
) -> Result<Identity, ApiError> {
    let user = key
        .record
        .user_id
        .as_deref()
        .and_then(|u| app.directory.user(u));
    if let Some(u) = &user
        && u.record.disabled()
    {
        let why = if u.record.blocked {
            "This user is blocked."
        } else {
            "This user was deactivated by SCIM provisioning."
        };
        return Err(ApiError::Forbidden(why.into()));
    }
    let acting = role.or(user.as_ref().map(|u| u.record.user_role));
    access::check_route(&app.directory, &key, acting, class, path)
        .map_err(|d| ApiError::Forbidden(d.rule))?;
    Ok(match user {
        Some(user) => Identity::User {
            user,
            key: Some(key),
            role,
        },
        None => Identity::Service { key, role },
    })
}
