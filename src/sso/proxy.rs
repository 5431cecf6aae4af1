//! Sign-in by a trusted proxy's identity headers (docs/sso.md, "oauth2-proxy"): the person the
//! headers name is provisioned on first sight and kept in step with the groups the proxy
//! sends, through the same transaction as an OIDC login (`provision::proxy_sign_in`). A person
//! seen unchanged before costs a map lookup: no disk, no write.

use super::provision::{self, Outcome, Person};
use crate::api::{ApiError, PeerAddr};
use crate::app::AppState;
use crate::auth::AuthError;
use crate::auth::proxy_headers::{ProxyIdentity, ProxyOutcome};
use crate::tenancy::UserEntry;
use http::HeaderMap;
use std::sync::Arc;

/// The user a request's trusted identity headers name, provisioned and in step; `Ok(None)`
/// when the request carries none (headers from an untrusted peer count as none: ignored).
pub async fn proxy_user(
    app: &AppState,
    headers: &HeaderMap,
    ext: &http::Extensions,
) -> Result<Option<(Arc<UserEntry>, ProxyIdentity)>, ApiError> {
    let Some(proxy) = &app.trusted_proxy else {
        return Ok(None);
    };
    let peer = ext.get::<PeerAddr>().map(|p| p.0.ip());
    let id = match proxy.read(peer, headers) {
        ProxyOutcome::Absent | ProxyOutcome::Untrusted => return Ok(None),
        ProxyOutcome::Malformed(why) => return Err(ApiError::Auth(AuthError::ProxyHeaders(why))),
        ProxyOutcome::Trusted(id) => id,
    };
    let known = app.directory.user(&id.user_id);
    if let Some(u) = &known {
        // A deactivated user is refused from memory, without a write per request.
        refuse_disabled(u)?;
        if proxy.in_step(&id) {
            return Ok(Some((u.clone(), id)));
        }
    }
    if let Some(why) = proxy.recently_refused(&id) {
        return Err(ApiError::Forbidden(why));
    }
    let person = Person {
        user_id: id.user_id.clone(),
        email: id.email.clone(),
        email_verified: false,
        name: None,
        groups: id.groups.clone(),
        role: None,
    };
    let origin = super::origin_of(headers, ext);
    match provision::proxy_sign_in(app, proxy.mapping(), person, origin).await? {
        Outcome::Known => {
            proxy.mark_in_step(&id);
            let user =
                app.directory
                    .user(&id.user_id)
                    .ok_or(ApiError::Auth(AuthError::ProxyHeaders(
                        "the user could not be provisioned",
                    )))?;
            refuse_disabled(&user)?;
            Ok(Some((user, id)))
        }
        Outcome::Refused { message, .. } => {
            proxy.mark_refused(&id, &message);
            Err(ApiError::Forbidden(message))
        }
        Outcome::In { .. } => Err(ApiError::Internal {
            request_id: crate::request::new_call_id(),
            detail: "a proxy sign-in opened a session".into(),
        }),
    }
}

fn refuse_disabled(u: &UserEntry) -> Result<(), ApiError> {
    if u.record.disabled() {
        let why = if u.record.blocked {
            "This user is blocked."
        } else {
            "This user was deactivated by SCIM provisioning."
        };
        return Err(ApiError::Forbidden(why.into()));
    }
    Ok(())
}
