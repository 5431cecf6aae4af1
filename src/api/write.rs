//! The one way the management API changes state: an audited store write run off the async
//! threads, followed by bringing the in-memory directory and key cache in step with what
//! committed — both under the admin write lock, so two concurrent edits cannot reach the
//! caches in the opposite order of their commits.

use super::{ApiError, Caller};
use crate::app::AppState;
use crate::store::{CustomerRecord, KeyRecord, OrgRecord, TeamRecord, Tx, UserRecord};
use std::collections::HashSet;

/// What a committed write changed, for the in-memory caches.
#[derive(Default)]
pub struct Effects {
    pub keys: Vec<KeyRecord>,
    pub removed_keys: Vec<KeyRecord>,
    pub users: Vec<UserRecord>,
    pub removed_users: Vec<String>,
    pub teams: Vec<TeamRecord>,
    pub removed_teams: Vec<String>,
    pub orgs: Vec<OrgRecord>,
    pub removed_orgs: Vec<String>,
    pub customers: Vec<CustomerRecord>,
    pub removed_customers: Vec<String>,
    /// Browser sessions deleted in the transaction (cookie digests), forgotten after it.
    pub removed_sessions: Vec<String>,
    /// Browser sessions opened in the transaction (cookie digest, record): in memory under
    /// the same lock as the commit, so a later transaction blocking or deleting their user
    /// finds and ends them.
    pub sessions: Vec<(String, crate::store::sso::SessionRecord)>,
}

pub async fn commit<T: Send + 'static>(
    app: &AppState,
    caller: &Caller,
    f: impl FnOnce(&mut Tx, &mut Effects) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    commit_as(app, caller.actor(), caller.origin.clone(), f).await
}

/// [`commit`] for a write no management caller makes (a browser login provisioning its user).
pub async fn commit_as<T: Send + 'static>(
    app: &AppState,
    actor: crate::audit::Actor,
    origin: crate::audit::Origin,
    f: impl FnOnce(&mut Tx, &mut Effects) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = app.clone();
    let request_id = origin.request_id.clone();
    tokio::task::spawn_blocking(move || {
        let _order = app
            .admin_writes
            .lock()
            // The lock guards ordering, not data: a panic elsewhere leaves nothing to repair.
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut effects = Effects::default();
        let out = app.store.write(&actor, &origin, |tx| {
            let out = f(tx, &mut effects)?;
            revoke_sessions(&app, tx, &mut effects)?;
            Ok::<_, ApiError>(out)
        })?;
        apply(&app, effects);
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::Internal {
        request_id,
        detail: e.to_string(),
    })?
}

/// A user deactivated (blocked, SCIM `active: false`) or deleted in this transaction loses its
/// browser sessions in the same transaction, each with its audit entry.
fn revoke_sessions(app: &AppState, tx: &mut Tx, fx: &mut Effects) -> Result<(), ApiError> {
    if app.sessions.is_empty() {
        return Ok(());
    }
    let gone: Vec<String> = fx
        .users
        .iter()
        .filter(|u| u.disabled())
        .map(|u| u.user_id.clone())
        .chain(fx.removed_users.iter().cloned())
        .collect();
    for user in gone {
        for digest in app.sessions.of_user(&user) {
            if let Some(s) = tx.delete_session(&digest)? {
                tx.audit(crate::sso::session_change("revoked", &s));
            }
            fx.removed_sessions.push(digest);
        }
    }
    Ok(())
}

pub(crate) fn apply(app: &AppState, e: Effects) {
    for (d, s) in e.sessions {
        app.sessions.insert(d, s);
    }
    for d in &e.removed_sessions {
        app.sessions.remove(d);
    }
    let dir = &app.directory;
    // Objects first, then keys: a key's entry is compiled against its current owners.
    for u in e.users {
        dir.upsert_user(u);
    }
    for t in e.teams {
        dir.upsert_team(t);
    }
    for o in e.orgs {
        dir.upsert_org(o);
    }
    for c in e.customers {
        dir.upsert_customer(c);
    }
    // Install first, then forget only what is gone: a key being edited never disappears
    // from the cache, even for an instant.
    let kept: HashSet<String> = e
        .keys
        .iter()
        .flat_map(|r| {
            std::iter::once(r.token.clone()).chain(r.grace_tokens.iter().map(|(t, _)| t.clone()))
        })
        .collect();
    let kept_ids: HashSet<&str> = e.keys.iter().map(|r| r.key_id.as_str()).collect();
    for r in &e.keys {
        app.auth.keys().upsert(dir.key_entry(r.clone()));
    }
    for r in &e.removed_keys {
        let tokens = std::iter::once(&r.token).chain(r.grace_tokens.iter().map(|(t, _)| t));
        for t in tokens.filter(|t| !kept.contains(*t)) {
            app.auth.keys().remove_token(t);
        }
        if !kept_ids.contains(r.key_id.as_str()) {
            dir.ledger()
                .forget(&crate::limits::Subject::Key(r.key_id.clone()));
        }
    }
    for id in e.removed_users {
        dir.remove_user(&id);
    }
    for id in e.removed_teams {
        dir.remove_team(&id);
    }
    for id in e.removed_orgs {
        dir.remove_org(&id);
    }
    for id in e.removed_customers {
        dir.remove_customer(&id);
    }
}
