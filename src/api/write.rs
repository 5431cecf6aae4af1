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
}

pub async fn commit<T: Send + 'static>(
    app: &AppState,
    caller: &Caller,
    f: impl FnOnce(&mut Tx, &mut Effects) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = app.clone();
    let actor = caller.actor();
    let origin = caller.origin.clone();
    let request_id = caller.origin.request_id.clone();
    tokio::task::spawn_blocking(move || {
        let _order = app
            .admin_writes
            .lock()
            // The lock guards ordering, not data: a panic elsewhere leaves nothing to repair.
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut effects = Effects::default();
        let out = app.store.write(&actor, &origin, |tx| f(tx, &mut effects))?;
        apply(&app, effects);
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::Internal {
        request_id,
        detail: e.to_string(),
    })?
}

pub(crate) fn apply(app: &AppState, e: Effects) {
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
