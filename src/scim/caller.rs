//! Who may use SCIM, and within which organisation.
//!
//! A SCIM token is a virtual key whose `allowed_routes` name only `/scim` routes (as in
//! LiteLLM: `"allowed_routes": ["/scim/*"]`; only proxy admins may set `allowed_routes`). A token
//! with an `organization_id` is scoped to that organisation: what it provisions lands in its
//! subtree, and it sees and touches nothing outside it — each business unit can connect its own
//! IdP. The master key and proxy admins' keys may use SCIM too, unscoped (viewers read only).

use super::error::ScimError;
use crate::api::Caller;
use crate::app::AppState;
use crate::tenancy::KeyEntry;
use crate::tenancy::scope::Identity;
use axum::extract::FromRequestParts;
use http::StatusCode;
use http::request::Parts;

#[derive(Clone)]
pub struct ScimCaller {
    pub caller: Caller,
    /// The organisation a scoped token provisions into and is confined to.
    pub org: Option<String>,
    /// The key id of the SCIM token (the audit actor is `scim:<id>`).
    pub token_id: Option<String>,
    pub read_only: bool,
}

/// Whether a key is a SCIM token: limited to `/scim` routes.
pub fn is_scim_token(key: &KeyEntry) -> bool {
    let routes = &key.record.allowed_routes;
    !routes.is_empty()
        && routes
            .iter()
            .all(|r| r.trim_start_matches('/').starts_with("scim"))
}

impl ScimCaller {
    /// Who is recorded as having made or changed an object: `scim:<key id>` for a token.
    pub fn label(&self) -> String {
        self.token_id
            .as_ref()
            .map_or_else(|| self.caller.label(), |t| format!("scim:{t}"))
    }

    pub fn require_writer(&self) -> Result<(), ScimError> {
        if self.read_only {
            return Err(ScimError::new(
                StatusCode::FORBIDDEN,
                None,
                "This credential is read-only.",
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ScimError> {
        let caller = Caller::from_request_parts(parts, app).await?;
        let token = caller.identity.key().filter(|k| is_scim_token(k)).cloned();
        let (org, token_id) = match &token {
            Some(k) => (
                k.record.organization_id.clone(),
                Some(k.record.key_id.clone()),
            ),
            None => (None, None),
        };
        let admin = match &caller.identity {
            Identity::Master => true,
            other => other.sees_everything(),
        };
        if token.is_none() && !admin {
            return Err(ScimError::new(
                StatusCode::FORBIDDEN,
                None,
                "This credential may not use SCIM: use a SCIM token (a key with allowed_routes \
                 [\"/scim/*\"]), the master key, or a proxy admin's key.",
            ));
        }
        let read_only = caller.identity.read_only();
        Ok(ScimCaller {
            caller,
            org,
            token_id,
            read_only,
        })
    }
}
