//! Who may create or change which key. Run inside the write transaction, under the admin
//! write lock, so the directory it consults cannot change underneath it.
//!
//! The rules: a key's owner user and team must exist and be within the caller's reach; a key
//! for someone else needs authority over them (org admin above them, or admin of the key's
//! team); a team key's user must be in the team; only proxy admins set `allowed_routes`;
//! nobody grants a key models its owner or team does not have; an owner may only narrow its
//! own key's budgets and limits.

use super::{ApiError, Caller};
use crate::store::{Budget, KeyRecord};
use crate::tenancy::Directory;
use crate::tenancy::scope::{Identity, Reach};

/// Checks that `after` is a key the caller may hold in this shape (`before` is the stored
/// version for an update).
pub fn check(
    dir: &Directory,
    caller: &Caller,
    before: Option<&KeyRecord>,
    after: &KeyRecord,
) -> Result<(), ApiError> {
    let id = &caller.identity;
    if let Some(before) = before {
        caller.need(id.key_reach(dir, before), Reach::Owner, "Key")?;
    } else {
        caller.require_writer()?;
    }
    let admin = id.is_proxy_admin();
    let team = match after.team_id.as_deref() {
        Some(t) => {
            let team = dir
                .team(t)
                .ok_or_else(|| ApiError::NotFound(format!("Team {t} not found.")))?;
            if id.team_reach(dir, &team.record) == Reach::Hidden {
                return Err(ApiError::NotFound(format!("Team {t} not found.")));
            }
            Some(team)
        }
        None => None,
    };
    let owner = match after.user_id.as_deref() {
        // A proxy admin's new key may name a user that does not exist yet: LiteLLM creates
        // it with the key, and so does `/key/generate` here.
        Some(u) if admin && dir.user(u).is_none() && before.is_none() => None,
        Some(u) => {
            let user = dir
                .user(u)
                .ok_or_else(|| ApiError::NotFound(format!("User {u} not found.")))?;
            if id.user_reach(dir, &user.record) == Reach::Hidden {
                return Err(ApiError::NotFound(format!("User {u} not found.")));
            }
            Some(user)
        }
        None => None,
    };
    if let (Some(team), Some(owner)) = (&team, &owner)
        && !team.members.contains_key(&owner.record.user_id)
    {
        return Err(ApiError::invalid(
            format!(
                "User {} is not a member of team {}.",
                owner.record.user_id, team.record.team_id
            ),
            "user_id",
        ));
    }
    if let Some(org) = after.organization_id.as_deref() {
        let visible = dir
            .org(org)
            .is_some_and(|o| id.org_reach(dir, &o) != Reach::Hidden);
        if !visible {
            return Err(ApiError::NotFound(format!("Organization {org} not found.")));
        }
        if !admin && !id.governs_org(dir, org) {
            return Err(ApiError::Forbidden(
                "Only an admin of the organization may attach keys to it.".into(),
            ));
        }
    }
    if admin {
        return Ok(());
    }
    let own = owner.is_some() && owner.as_ref().map(|o| o.record.user_id.as_str()) == id.user_id();
    let team_reach = team
        .as_ref()
        .map(|t| id.team_reach(dir, &t.record))
        .unwrap_or(Reach::Hidden);
    let owner_reach = owner
        .as_ref()
        .map(|o| id.user_reach(dir, &o.record))
        .unwrap_or(Reach::Hidden);
    let authority = match (&team, &owner) {
        // Someone's personal key, or a key in a team: team admins act for their team,
        // org admins for users wholly inside their subtree.
        (Some(_), _) if team_reach >= Reach::Members => true,
        (None, Some(_)) if owner_reach == Reach::Manage => true,
        (None, None) => after
            .organization_id
            .as_deref()
            .is_some_and(|o| id.governs_org(dir, o)),
        _ => false,
    };
    let own_allowed = own && (team.is_none() || team_reach >= Reach::Read);
    if !authority && !own_allowed {
        return Err(ApiError::Forbidden(
            "Not allowed to create or move keys for this user or team.".into(),
        ));
    }
    if before.is_none_or(|b| b.allowed_routes != after.allowed_routes)
        && !after.allowed_routes.is_empty()
    {
        return Err(ApiError::Forbidden(
            "Only a proxy admin may set allowed_routes.".into(),
        ));
    }
    // Models: never more than the key's team (for a team key) or owner (for a personal key)
    // has, nor more than the caller's own key has.
    if !after.models.is_empty() {
        let wanted = dir.compile_models(&after.models);
        let through_team = team.is_some();
        let outer_ok = match (&team, &owner) {
            (Some(t), _) => wanted.within(&t.models, through_team),
            (None, Some(o)) => wanted.within(&o.models, through_team),
            (None, None) => true,
        };
        let caller_ok = match id {
            Identity::User { key: Some(k), .. } | Identity::Service { key: k } => {
                wanted.within(&k.models, through_team)
            }
            _ => true,
        };
        if !outer_ok || !caller_ok {
            return Err(ApiError::Forbidden(
                "A key cannot be granted models its owner, its team or the caller does not have."
                    .into(),
            ));
        }
    }
    // An owner without authority over the key may only narrow its budgets and limits, and
    // may not lift a block someone above it placed.
    if !authority && let Some(before) = before {
        narrows(&before.budget, &after.budget)?;
        if before.blocked != after.blocked {
            return Err(ApiError::Forbidden(
                "Only an admin above the key may block or unblock it.".into(),
            ));
        }
    }
    Ok(())
}

fn narrows(before: &Budget, after: &Budget) -> Result<(), ApiError> {
    fn le<T: PartialOrd + Copy>(old: Option<T>, new: Option<T>) -> bool {
        match (old, new) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(o), Some(n)) => n <= o,
        }
    }
    let ok = le(before.max_budget, after.max_budget)
        && le(before.soft_budget, after.soft_budget)
        && le(before.tpm_limit, after.tpm_limit)
        && le(before.rpm_limit, after.rpm_limit)
        && le(before.max_parallel_requests, after.max_parallel_requests)
        && (before.budget_duration.is_none() || before.budget_duration == after.budget_duration);
    if ok {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "A key's owner may only lower its budgets and limits.".into(),
        ))
    }
}
