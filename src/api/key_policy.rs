//! Who may create or change which key. Run inside the write transaction, under the admin
//! write lock, so the directory it consults cannot change underneath it.
//!
//! The rules: a key's owner user and team must exist and be within the caller's reach; a key
//! for someone else needs authority over them (org admin above them, or admin of the key's
//! team); a team key's user must be in the team; only proxy admins set `allowed_routes`;
//! nobody grants a key models its owner or team does not have; an owner may only narrow its
//! own key's budgets and limits.

use super::{ApiError, Caller};
use crate::roles::KeyType;
use crate::store::KeyRecord;
use crate::tenancy::Directory;
use crate::tenancy::scope::{Identity, Reach};

/// Checks that `after` is a key the caller may hold in this shape (`before` is the stored
/// version for an update).
pub fn check(
    dir: &Directory,
    caller: &Caller,
    before: Option<&KeyRecord>,
    after: &KeyRecord,
    issues_secret: bool,
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
            // Not named: the id may have come from the owner's membership, not from the caller.
            return Err(ApiError::NotFound("Organization not found.".into()));
        }
        // Attaching a key to an organisation puts it under that organisation's policies: its
        // admins may do it, and so may the key's owner for an organisation it is a member of.
        let owner_member = owner.as_ref().is_some_and(|o| {
            id.user_id() == Some(o.record.user_id.as_str())
                && o.record
                    .organizations
                    .iter()
                    .any(|m| m.organization_id == org)
        });
        let changed = before.is_none_or(|b| b.organization_id.as_deref() != Some(org));
        if changed && !admin && !owner_member && !id.governs_org(dir, org) {
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
    // Authority over someone else's key comes from being above its owner (an org admin over
    // a user wholly inside its subtree) or, for a team key, from administering the team.
    let above_owner = owner_reach == Reach::Manage;
    let authority = match (&team, &owner) {
        (Some(_), _) if team_reach >= Reach::Members => true,
        (None, Some(_)) if above_owner => true,
        (None, None) => after
            .organization_id
            .as_deref()
            .is_some_and(|o| id.governs_org(dir, o)),
        _ => false,
    };
    if !own
        && owner.as_ref().is_some_and(|o| {
            matches!(
                o.record.user_role,
                crate::roles::GlobalRole::ProxyAdmin | crate::roles::GlobalRole::ProxyAdminViewer
            )
        })
    {
        return Err(ApiError::Forbidden(
            "Keys of proxy admins are issued by proxy admins.".into(),
        ));
    }
    let own_allowed = own && (team.is_none() || team_reach >= Reach::Read);
    if !authority && !own_allowed {
        return Err(ApiError::Forbidden(
            "Not allowed to create or move keys for this user or team.".into(),
        ));
    }
    // A secret handed to someone other than the key's owner must not carry the owner's
    // management powers unless the caller is above the owner: a team admin issues its
    // members' keys as `llm_api` keys, or it could act as any (more powerful) teammate.
    // For the same reason it may not widen the type of such a key: it may hold its secret.
    if owner.is_some() && !own && !above_owner && after.key_type != KeyType::LlmApi {
        if issues_secret {
            return Err(ApiError::Forbidden(
                "A key issued for another team member must have key_type llm_api.".into(),
            ));
        }
        if before.is_some_and(|b| b.key_type != after.key_type) {
            return Err(ApiError::Forbidden(
                "Only someone above a key's owner may widen its key_type.".into(),
            ));
        }
    }
    if before.is_none_or(|b| b.allowed_routes != after.allowed_routes)
        && !after.allowed_routes.is_empty()
    {
        return Err(ApiError::Forbidden(
            "Only a proxy admin may set allowed_routes.".into(),
        ));
    }
    // Models: never more than the key's team (for a team key) or owner (for a personal key)
    // has, nor more than the caller's own key has; an owner acting alone only narrows.
    let wanted = dir.compile_models(&after.models);
    let through_team = team.is_some();
    let outer_ok = after.models.is_empty()
        || match (&team, &owner) {
            (Some(t), _) => wanted.within(&t.models, through_team),
            (None, Some(o)) => wanted.within(&o.models, through_team),
            (None, None) => true,
        };
    let caller_ok = match id {
        Identity::User { key: Some(k), .. } | Identity::Service { key: k, .. } => {
            wanted.within(&k.models, through_team)
        }
        _ => true,
    };
    let narrow_ok = authority
        || before.is_none_or(|b| wanted.within(&dir.compile_models(&b.models), through_team));
    if !outer_ok || !caller_ok || !narrow_ok {
        return Err(ApiError::Forbidden(
            "A key cannot be granted models its owner, its team, the caller or (for its owner) the key itself does not have."
                .into(),
        ));
    }
    // An owner without authority over the key may only narrow its budgets, limits and
    // lifetime, and may not lift a block someone above it placed.
    if !authority && let Some(before) = before {
        narrows(before, after)?;
        if before.blocked && !after.blocked {
            return Err(ApiError::Forbidden(
                "Only an admin above the key may unblock it.".into(),
            ));
        }
    }
    Ok(())
}

/// Whether `after` allows no route `before` did not: `default` covers every type,
/// `management` covers `read_only`.
fn narrower_type(before: KeyType, after: KeyType) -> bool {
    before == after
        || before == KeyType::Default
        || (before == KeyType::Management && after == KeyType::ReadOnly)
}

fn narrows(before: &KeyRecord, after: &KeyRecord) -> Result<(), ApiError> {
    fn le<T: PartialOrd + Copy>(old: Option<T>, new: Option<T>) -> bool {
        match (old, new) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(o), Some(n)) => n <= o,
        }
    }
    let (b, a) = (&before.budget, &after.budget);
    let ok = le(b.max_budget, a.max_budget)
        && le(b.soft_budget, a.soft_budget)
        && le(b.tpm_limit, a.tpm_limit)
        && le(b.rpm_limit, a.rpm_limit)
        && le(b.max_parallel_requests, a.max_parallel_requests)
        // A period turns a lifetime budget into a renewable one: only from above.
        && b.budget_duration == a.budget_duration
        && le(before.expires_ms, after.expires_ms)
        && narrower_type(before.key_type, after.key_type);
    if ok {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "A key's owner may only narrow it: lower its budgets, limits and lifetime, or restrict its type.".into(),
        ))
    }
}
