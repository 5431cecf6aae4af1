//! Users and teams SCIM provisioned: their mark on management reads, and
//! `general_settings.scim_managed_objects_editable`.
//!
//! With the setting false the IdP is the only source of truth for what SCIM owns of its
//! objects: a user's identity (email, display name) and existence, a team's name, existence and
//! members. Administrators — the master key included, since this is about where the truth
//! lives, not about permissions — get 409 for changing those, and keep every governance field
//! (budgets, limits, models, keys, blocking, roles), which SCIM does not carry.

use super::ApiError;
use crate::config::ScimSettings;
use crate::store::{TeamRecord, UserRecord};
use serde_json::{Map, Value, json};

/// The mark on a user's management view: whether SCIM manages it, who provisioned it (the
/// audit actor of the token, `scim:<key id>`: an id, never a secret) and the proxy-wide role
/// SCIM granted from its groups. Org admin grants are marked on the memberships themselves, so
/// they are trimmed with them for readers who may not see every organisation.
pub fn mark_user(u: &UserRecord, out: &mut Map<String, Value>) {
    out.insert("scim_managed".into(), json!(u.scim.is_some()));
    out.insert(
        "scim_provisioned_by".into(),
        json!(u.scim.as_ref().map(|s| &s.provisioned_by)),
    );
    let granted = u
        .scim_grants()
        .and_then(|g| g.user_role.as_ref())
        .map(|g| g.granted.as_str());
    out.insert("scim_granted_user_role".into(), json!(granted));
}

/// A user's membership of one organisation as the API shows it, marked when its role came from
/// a SCIM group.
pub fn membership_view(u: &UserRecord, m: &crate::store::OrgMembership) -> Value {
    let mut v = json!({
        "organization_id": m.organization_id,
        "user_role": m.role.as_str(),
    });
    if u.scim_grants()
        .is_some_and(|g| g.org(&m.organization_id).is_some())
        && let Some(o) = v.as_object_mut()
    {
        o.insert("scim_granted".into(), json!(true));
    }
    v
}

/// The mark on a team's management view; `scim_display_name` is the Group's name in the IdP,
/// which an administrator's `team_alias` may differ from.
pub fn mark_team(t: &TeamRecord, out: &mut Map<String, Value>) {
    out.insert("scim_managed".into(), json!(t.scim.is_some()));
    out.insert(
        "scim_provisioned_by".into(),
        json!(t.scim.as_ref().map(|s| &s.provisioned_by)),
    );
    out.insert(
        "scim_display_name".into(),
        json!(t.scim.as_ref().map(|s| &s.display_name)),
    );
}

fn refused(what: &str, id: &str, by: &str, change: &str) -> ApiError {
    ApiError::Conflict(format!(
        "{what} {id} is managed by SCIM (provisioned by {by}): change {change} in the identity \
         provider. general_settings.scim_managed_objects_editable is false."
    ))
}

/// Refuses an administrator's change to a SCIM-managed user's identity (email, display name).
/// Fields sent with their current value are no change.
pub fn check_user_edit(
    s: &ScimSettings,
    before: &UserRecord,
    after: &UserRecord,
) -> Result<(), ApiError> {
    let Some(scim) = before.scim.as_ref().filter(|_| !s.managed_editable) else {
        return Ok(());
    };
    let mut changed = Vec::new();
    if after.user_email != before.user_email {
        changed.push("user_email");
    }
    if after.user_alias != before.user_alias {
        changed.push("user_alias");
    }
    if changed.is_empty() {
        return Ok(());
    }
    Err(refused(
        "User",
        &before.user_id,
        &scim.provisioned_by,
        &format!("its {}", changed.join(" and ")),
    ))
}

pub fn check_user_delete(s: &ScimSettings, u: &UserRecord) -> Result<(), ApiError> {
    match u.scim.as_ref().filter(|_| !s.managed_editable) {
        None => Ok(()),
        Some(scim) => Err(refused(
            "User",
            &u.user_id,
            &scim.provisioned_by,
            "whether it exists (deactivate or delete it there)",
        )),
    }
}

/// Refuses renaming a SCIM-managed team (its SCIM name is the IdP's; `team_alias` follows it).
pub fn check_team_edit(
    s: &ScimSettings,
    before: &TeamRecord,
    after: &TeamRecord,
) -> Result<(), ApiError> {
    match before.scim.as_ref().filter(|_| !s.managed_editable) {
        Some(scim) if after.team_alias != before.team_alias => Err(refused(
            "Team",
            &before.team_id,
            &scim.provisioned_by,
            "its name",
        )),
        _ => Ok(()),
    }
}

/// Refuses adding or removing members of a SCIM-managed team (its members are the Group's).
pub fn check_team_members(s: &ScimSettings, t: &TeamRecord) -> Result<(), ApiError> {
    match t.scim.as_ref().filter(|_| !s.managed_editable) {
        None => Ok(()),
        Some(scim) => Err(refused(
            "Team",
            &t.team_id,
            &scim.provisioned_by,
            "its members",
        )),
    }
}

pub fn check_team_delete(s: &ScimSettings, t: &TeamRecord) -> Result<(), ApiError> {
    match t.scim.as_ref().filter(|_| !s.managed_editable) {
        None => Ok(()),
        Some(scim) => Err(refused(
            "Team",
            &t.team_id,
            &scim.provisioned_by,
            "whether it exists",
        )),
    }
}
