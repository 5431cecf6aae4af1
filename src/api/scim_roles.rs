//! Roles from SCIM groups (`general_settings.scim_admin_group`, `scim_group_roles`): a SCIM user
//! in a Group whose displayName is mapped gets that Group's role and loses it when it leaves,
//! in the same transaction as the membership change, each change with its audit entry.
//!
//! What a Group grants depends on where it sits, never on who asks: a Group outside any
//! organisation (what an unscoped token makes) grants the global role; one inside an
//! organisation (everything a token scoped to an organisation makes or may touch is) grants org
//! admin of that organisation and nothing global, so a business unit's IdP cannot mint a proxy
//! admin whatever the config says. A change to a Group reconciles only the kind of role that
//! Group can give (its "slot"), so a scoped token never touches a global role, even to take one
//! back.
//!
//! What SCIM granted is recorded on the user's SCIM state with the role it replaced
//! (`store::ScimGrants`): taking it back restores exactly that, a role the user already held is
//! not granted (so not taken back), and an administrator who sets the role by hand takes it over.

use super::write::Effects;
use super::{ApiError, Caller};
use crate::config::{GroupRole, GroupRoles};
use crate::roles::{GlobalRole, OrgRole};
use crate::store::{OrgAdminGrant, RoleGrant, StoreError, TeamRecord, Tx, UserRecord};
use crate::tenancy::Directory;
use crate::types::now_ms;
use std::collections::BTreeSet;

/// The kind of role a team's grant lands in: the proxy-wide role, or org admin of one
/// organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Global,
    Org(String),
}

/// What a team gives its SCIM members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Global(GlobalRole),
    OrgAdmin(String),
}

pub fn slot_of(team: &TeamRecord) -> Slot {
    team.organization_id.clone().map_or(Slot::Global, Slot::Org)
}

/// The grant of a team. Only SCIM Groups grant, by their SCIM displayName: an administrator's
/// `team_alias` never matches, so renaming a team by hand cannot hand out roles.
pub fn grant_of(roles: &GroupRoles, team: &TeamRecord) -> Option<Grant> {
    let role = roles.role_of(&team.scim.as_ref()?.display_name)?;
    match (&team.organization_id, role) {
        (None, GroupRole::ProxyAdmin) => Some(Grant::Global(GlobalRole::ProxyAdmin)),
        (None, GroupRole::ProxyAdminViewer) => Some(Grant::Global(GlobalRole::ProxyAdminViewer)),
        // Outside any organisation there is no organisation to administer.
        (None, GroupRole::OrgAdmin) => None,
        (Some(o), GroupRole::ProxyAdmin | GroupRole::OrgAdmin) => Some(Grant::OrgAdmin(o.clone())),
        // An organisation has no read-only admin role: its members already read it.
        (Some(_), GroupRole::ProxyAdminViewer) => None,
    }
}

/// After a team went from `before` to `after` (`None`: created, or deleted) with its members'
/// sides already written: brings in step the roles of every member whose standing changed —
/// those who joined or left, or all of them when what the team grants changed (a rename into
/// or out of a mapped name, a move to another organisation).
pub fn team_changed(
    tx: &mut Tx,
    fx: &mut Effects,
    roles: &GroupRoles,
    by: &str,
    before: Option<&TeamRecord>,
    after: Option<&TeamRecord>,
) -> Result<(), StoreError> {
    let ids = |t: Option<&TeamRecord>| -> BTreeSet<String> {
        t.map(|t| t.members.iter().map(|m| m.user_id.clone()).collect())
            .unwrap_or_default()
    };
    let (was, is) = (ids(before), ids(after));
    let grant = |t: Option<&TeamRecord>| t.and_then(|t| grant_of(roles, t));
    let users: BTreeSet<String> = if grant(before) == grant(after) {
        was.symmetric_difference(&is).cloned().collect()
    } else {
        was.union(&is).cloned().collect()
    };
    let mut slots: Vec<Slot> = Vec::new();
    for s in before.into_iter().chain(after).map(slot_of) {
        if !slots.contains(&s) {
            slots.push(s);
        }
    }
    for id in users {
        sync_user(tx, fx, roles, by, &id, &slots)?;
    }
    Ok(())
}

/// A user an administrator made that SCIM has just adopted (written for the first time): what
/// the groups it is already in grant, limited to the teams a token confined to `scope` may
/// touch — so a scoped token's adoption never decides a global role either.
pub fn adopted(
    tx: &mut Tx,
    fx: &mut Effects,
    roles: &GroupRoles,
    by: &str,
    user: &UserRecord,
    scope: Option<&str>,
    dir: &Directory,
) -> Result<(), StoreError> {
    let mut slots: Vec<Slot> = Vec::new();
    for t in &user.teams {
        let Some(team) = tx.get_team(t)? else {
            continue;
        };
        let reachable = scope.is_none_or(|root| {
            team.organization_id
                .as_deref()
                .is_some_and(|o| dir.org_within(o, root))
        });
        let s = slot_of(&team);
        if reachable && !slots.contains(&s) {
            slots.push(s);
        }
    }
    sync_user(tx, fx, roles, by, &user.user_id, &slots)
}

/// Makes what SCIM granted `user_id` in `slots` match what its groups grant now, writing the
/// user (and the organisations whose member roles change) with their audit entries.
pub fn sync_user(
    tx: &mut Tx,
    fx: &mut Effects,
    roles: &GroupRoles,
    by: &str,
    user_id: &str,
    slots: &[Slot],
) -> Result<(), StoreError> {
    let Some(before) = tx.get_user(user_id)? else {
        return Ok(());
    };
    // Only users the IdP manages get roles from its groups.
    let Some(grants) = before.scim_grants() else {
        return Ok(());
    };
    if roles.is_empty() && grants.is_empty() {
        return Ok(());
    }
    let mut global: Option<GlobalRole> = None;
    let mut orgs: Vec<String> = Vec::new();
    for t in &before.teams {
        match tx.get_team(t)?.and_then(|t| grant_of(roles, &t)) {
            Some(Grant::Global(r)) => global = Some(stronger(global, r)),
            Some(Grant::OrgAdmin(o)) => orgs.push(o),
            None => {}
        }
    }
    let mut after = before.clone();
    let mut org_roles: Vec<(String, OrgRole)> = Vec::new();
    for slot in slots {
        match slot {
            Slot::Global => settle_global(&mut after, global),
            Slot::Org(o) => {
                if let Some(role) = settle_org(&mut after, o, orgs.contains(o)) {
                    org_roles.push((o.clone(), role));
                }
            }
        }
    }
    if after == before {
        return Ok(());
    }
    after.updated_at_ms = now_ms();
    after.updated_by = by.to_string();
    tx.put_user(&after)?;
    // An org-admin grant is a change of one membership: scoped to that organisation, as the
    // organisation member routes scope theirs. A global role concerns the user as a whole.
    let change = if after.user_role == before.user_role && !org_roles.is_empty() {
        let mut within = crate::audit::Within::default();
        for (o, _) in &org_roles {
            within.add_org(Some(o));
        }
        super::users::membership_change(Some(&before), Some(&after), within)
    } else {
        super::users::change("updated", Some(&before), Some(&after))
    };
    tx.audit(change);
    fx.users.push(after);
    for (org, role) in org_roles {
        set_org_side(tx, fx, by, &org, user_id, role)?;
    }
    Ok(())
}

fn stronger(have: Option<GlobalRole>, r: GlobalRole) -> GlobalRole {
    match have {
        Some(GlobalRole::ProxyAdmin) => GlobalRole::ProxyAdmin,
        _ => r,
    }
}

/// Whether holding `have` already gives what `want` would.
fn covers(have: GlobalRole, want: GlobalRole) -> bool {
    have == want || have == GlobalRole::ProxyAdmin
}

/// The proxy-wide role: granted if the groups ask for more than the user holds, taken back
/// (to what it replaced) when they no longer ask for it.
fn settle_global(user: &mut UserRecord, wanted: Option<GlobalRole>) {
    let Some(state) = user.scim.as_mut() else {
        return;
    };
    let mut grant = state.grants.user_role.take();
    // Changed since by someone else (who now owns it): not SCIM's to take back.
    if grant.as_ref().is_some_and(|g| g.granted != user.user_role) {
        grant = None;
    }
    state.grants.user_role = match (wanted, grant) {
        (None, None) => None,
        (None, Some(g)) => {
            user.user_role = g.replaced;
            None
        }
        (Some(w), Some(g)) if covers(g.replaced, w) => {
            user.user_role = g.replaced;
            None
        }
        (Some(w), Some(g)) => {
            user.user_role = w;
            Some(RoleGrant { granted: w, ..g })
        }
        (Some(w), None) if covers(user.user_role, w) => None,
        (Some(w), None) => {
            let replaced = user.user_role;
            user.user_role = w;
            Some(RoleGrant {
                granted: w,
                replaced,
            })
        }
    };
}

/// Org admin of `org`: granted to a member who is not one yet, taken back (to the role it
/// replaced) when no group asks for it. Returns the user's new role there when it changed.
fn settle_org(user: &mut UserRecord, org: &str, wanted: bool) -> Option<OrgRole> {
    let Some(at) = user
        .organizations
        .iter()
        .position(|m| m.organization_id == org)
    else {
        // Not a member (any more): nothing to grant, and a grant there is moot.
        user.take_over_org_role(org);
        return None;
    };
    let current = user.organizations[at].role;
    let state = user.scim.as_mut()?;
    let grant = state.grants.org(org).cloned();
    state.grants.org_admin.retain(|g| g.organization_id != org);
    let new_role = match (wanted, grant) {
        (_, Some(_)) if current != OrgRole::OrgAdmin => return None,
        (true, Some(g)) => {
            state.grants.org_admin.push(g);
            return None;
        }
        (false, Some(g)) => g.replaced,
        (true, None) if current == OrgRole::OrgAdmin => return None,
        (true, None) => {
            state.grants.org_admin.push(OrgAdminGrant {
                organization_id: org.to_string(),
                replaced: current,
            });
            OrgRole::OrgAdmin
        }
        (false, None) => return None,
    };
    user.organizations[at].role = new_role;
    Some(new_role)
}

/// The organisation's side of a member's new role.
fn set_org_side(
    tx: &mut Tx,
    fx: &mut Effects,
    by: &str,
    org: &str,
    user_id: &str,
    role: OrgRole,
) -> Result<(), StoreError> {
    let Some(before) = tx.get_org(org)? else {
        return Ok(());
    };
    let mut after = before.clone();
    for m in after.members.iter_mut().filter(|m| m.user_id == user_id) {
        m.role = role;
    }
    if after == before {
        return Ok(());
    }
    after.updated_at_ms = now_ms();
    after.updated_by = by.to_string();
    tx.put_org(&after)?;
    tx.audit(super::orgs::change("updated", Some(&before), Some(&after)));
    fx.orgs.push(after);
    Ok(())
}

/// Adding a member to a Group that grants a role hands out that role, so an administrator may
/// do it only if it could grant the role by hand: a proxy admin for a global role, an admin of
/// the organisation (or above it) for org admin. A team admin of the Group may not.
pub fn check_may_add(
    who: &Caller,
    dir: &Directory,
    roles: &GroupRoles,
    team: &TeamRecord,
) -> Result<(), ApiError> {
    let id = &who.identity;
    let (allowed, role) = match grant_of(roles, team) {
        None => return Ok(()),
        Some(Grant::Global(r)) => (id.is_proxy_admin(), r.as_str()),
        Some(Grant::OrgAdmin(o)) => (
            id.is_proxy_admin() || id.governs_org(dir, &o),
            OrgRole::OrgAdmin.as_str(),
        ),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "Members of team {} get the role {role} from its SCIM group name \
             (general_settings.scim_group_roles); only someone who may grant that role may add \
             them.",
            team.team_id
        )))
    }
}

/// An administrator moving a SCIM Group out of its organisation would turn what the Group
/// grants into a proxy-wide role for all its members — a name the organisation's IdP chose,
/// minting proxy admins it never could. Refused: make the Group outside any organisation in
/// the IdP connected with an unscoped token instead.
pub fn check_move(
    roles: &GroupRoles,
    before: &TeamRecord,
    after: &TeamRecord,
) -> Result<(), ApiError> {
    if before.organization_id == after.organization_id {
        return Ok(());
    }
    match grant_of(roles, after) {
        Some(Grant::Global(r)) if grant_of(roles, before) != Some(Grant::Global(r)) => {
            Err(ApiError::Conflict(format!(
                "Team {} is the SCIM group `{}`, whose members get the role {} outside any \
                 organization (general_settings.scim_group_roles): it may not be moved out of \
                 its organization by hand.",
                after.team_id,
                after.scim.as_ref().map_or("", |s| s.display_name.as_str()),
                r.as_str()
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "scim_roles_tests.rs"]
mod tests;

/// At start-up: brings every SCIM user's granted roles in step with the settings now in force,
/// so removing or changing `scim_admin_group` / `scim_group_roles` takes back (or gives) what
/// the groups no longer (or now) grant — an administrator who removes the mapping must not be
/// left with proxy admins nobody can see the reason for. One transaction, actor `system`, an
/// audit entry per changed user; a no-op (no write) when everything already agrees.
pub fn reconcile(app: &crate::app::AppState) -> Result<usize, StoreError> {
    let roles = app.scim.group_roles.clone();
    let dir = &app.directory;
    let mut work: Vec<(String, Vec<Slot>)> = Vec::new();
    for u in dir.users() {
        let Some(grants) = u.record.scim_grants() else {
            continue;
        };
        let mut slots: Vec<Slot> = Vec::new();
        let mut add = |s: Slot| {
            if !slots.contains(&s) {
                slots.push(s);
            }
        };
        if grants.user_role.is_some() {
            add(Slot::Global);
        }
        for g in &grants.org_admin {
            add(Slot::Org(g.organization_id.clone()));
        }
        for t in &u.record.teams {
            if let Some(team) = dir.team(t)
                && grant_of(&roles, &team.record).is_some()
            {
                add(slot_of(&team.record));
            }
        }
        if !slots.is_empty() {
            work.push((u.record.user_id.clone(), slots));
        }
    }
    if work.is_empty() {
        return Ok(0);
    }
    let origin = crate::audit::Origin {
        request_id: format!("startup-{}", uuid::Uuid::now_v7()),
        ..Default::default()
    };
    let _order = app
        .admin_writes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut fx = Effects::default();
    app.store
        .write(&crate::audit::Actor::System, &origin, |tx| {
            for (user, slots) in &work {
                sync_user(tx, &mut fx, &roles, "system", user, slots)?;
            }
            Ok::<_, StoreError>(())
        })?;
    let changed = fx.users.len();
    super::write::apply(app, fx);
    Ok(changed)
}
