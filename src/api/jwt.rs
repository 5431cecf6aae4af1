//! Authentication as every surface (LLM, management, metrics) runs it: keys as they are, and
//! for a verified JWT its user made sure of — created on first use with `user_id_upsert`
//! (through the one write path, audited as the JWT), refused otherwise. A user that exists is
//! a map lookup, so only a token's first use ever writes.

use super::{Caller, write};
use crate::app::AppState;
use crate::auth::{AuthError, JwtError, JwtGrant, Principal};
use crate::tenancy::scope::Identity;
use http::HeaderMap;
use std::sync::Arc;

/// LiteLLM's header for choosing one of the teams a JWT names.
pub const TEAM_HEADER: &str = "x-litellm-team-id";

pub fn team_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(TEAM_HEADER).and_then(|v| v.to_str().ok())
}

/// The caller of any request; a JWT's user exists once this returns.
pub async fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<Principal, AuthError> {
    let principal = app.auth.authenticate(headers).await?;
    if let Principal::Jwt(grant) = &principal
        && let Some(id) = &grant.user_id
    {
        if app.directory.user(id).is_some() {
            grant.saw_user();
            return Ok(principal);
        }
        if grant.user_was_seen() {
            // Deleted since this token's last use: it does not bring the user back.
            return Err(AuthError::Jwt(JwtError::UserDeleted(id.clone())));
        }
        if !app.auth.jwt().is_some_and(|j| j.user_upsert()) {
            return Err(AuthError::Jwt(JwtError::UnknownUser(id.clone())));
        }
        create_user(app, grant, headers).await?;
        grant.saw_user();
    }
    Ok(principal)
}

async fn create_user(
    app: &AppState,
    grant: &Arc<JwtGrant>,
    headers: &HeaderMap,
) -> Result<(), AuthError> {
    let Some(id) = grant.user_id.clone() else {
        return Ok(());
    };
    let caller = Caller {
        // Provisioning is the configuration's decision, not the caller's: no permission check
        // runs in the closure. The audit entry names the JWT and the role it gives, if any.
        identity: Identity::Service {
            key: grant.entry().clone(),
            role: grant.role,
        },
        origin: crate::audit::Origin {
            request_id: crate::request::new_call_id(),
            source_ip: String::new(),
            user_agent: crate::request::user_agent(headers),
        },
        jwt: Some(grant.clone()),
    };
    let by = caller.label();
    let email = grant.user_email.clone();
    let made = write::commit(app, &caller, move |tx, fx| {
        // A concurrent first request may have created it already.
        if tx.get_user(&id)?.is_some() {
            return Ok(());
        }
        let mut user = super::users::blank_user(&id, &by);
        // An email another user holds stays with that user.
        if let Some(e) = email
            && tx.user_by_email(&e)?.is_none()
        {
            user.user_email = Some(e);
        }
        tx.put_user(&user)?;
        tx.audit(super::users::change("created", None, Some(&user)));
        fx.users.push(user);
        Ok(())
    })
    .await;
    made.map_err(|e| {
        tracing::error!(error = %e, "creating the user a JWT names failed");
        AuthError::Jwt(JwtError::ProvisionFailed)
    })
}
