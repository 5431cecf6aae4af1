//! `/organization/member_*`: organisation memberships. Both sides of a membership (the
//! organisation's member list and the user's organisations) change in one transaction, each
//! with its audit entry, so neither side can outlive the other.

use super::{change, visible};
use crate::api::write::commit;
use crate::api::{ApiError, Caller, body_of, fields::optional, fields::required};
use crate::app::AppState;
use crate::roles::OrgRole;
use crate::store::{OrgMember, OrgMembership, OrgRecord, Tx, UserRecord};
use crate::tenancy::Directory;
use crate::tenancy::scope::Reach;
use crate::types::now_ms;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use http::HeaderMap;
use serde_json::{Map, Value, json};

fn role_arg(v: Option<&Value>, default: Option<OrgRole>) -> Result<OrgRole, ApiError> {
    let bad = |got: &str| {
        ApiError::invalid(
            format!("`role` must be one of {} (got `{got}`).", OrgRole::names()),
            "role",
        )
    };
    match v {
        None | Some(Value::Null) => default.ok_or_else(|| {
            ApiError::invalid(
                format!("`role` is required: one of {}.", OrgRole::names()),
                "role",
            )
        }),
        Some(Value::String(s)) => OrgRole::parse(s).ok_or_else(|| bad(s)),
        Some(other) => Err(bad(&other.to_string())),
    }
}

/// Who a membership request names: `user_id` or `user_email`, and the role asked for.
struct MemberArg {
    user_id: Option<String>,
    user_email: Option<String>,
    role: OrgRole,
}

fn member_arg(m: &Map<String, Value>, default: Option<OrgRole>) -> Result<MemberArg, ApiError> {
    let arg = MemberArg {
        user_id: optional(m, "user_id")?,
        user_email: optional(m, "user_email")?,
        role: role_arg(m.get("role"), default)?,
    };
    if arg.user_id.is_none() && arg.user_email.is_none() {
        return Err(ApiError::invalid(
            "Name the member by `user_id` or `user_email`.",
            "user_id",
        ));
    }
    Ok(arg)
}

/// One entry of `member_add`'s `member` (an object, or an array of them).
fn added_member(v: &Value) -> Result<MemberArg, ApiError> {
    let m = v.as_object().ok_or_else(|| {
        ApiError::invalid(
            "`member` must be an object or an array of objects.",
            "member",
        )
    })?;
    member_arg(m, Some(OrgRole::InternalUser))
}

/// The named user, if it exists and the caller can see it.
fn find_user(
    tx: &Tx,
    dir: &Directory,
    caller: &Caller,
    m: &MemberArg,
) -> Result<Option<UserRecord>, ApiError> {
    let found = match (&m.user_id, &m.user_email) {
        (Some(id), _) => tx.get_user(id)?,
        (None, Some(email)) => tx.user_by_email(email)?,
        (None, None) => None,
    };
    let found = found.filter(|u| caller.identity.user_reach(dir, u) >= Reach::Read);
    if let Some(u) = &found {
        caller.may_change_memberships_of(u)?;
    }
    Ok(found)
}

/// Runs a membership change on one organisation the caller manages the members of: `edit`
/// changes the organisation's and the users' sides, and both are written and audited here.
async fn membership<T: Send + 'static>(
    app: &AppState,
    caller: &Caller,
    org_id: String,
    edit: impl FnOnce(&mut Tx, &Directory, &mut OrgRecord, &mut Vec<UserRecord>) -> Result<T, ApiError>
    + Send
    + 'static,
) -> Result<T, ApiError> {
    let who = caller.clone();
    let dir_app = app.clone();
    commit(app, caller, move |tx, fx| {
        let dir = &dir_app.directory;
        let entry = visible(dir, &who, &org_id)?;
        who.need(
            who.identity.org_reach(dir, &entry),
            Reach::Members,
            "Organization",
        )?;
        let before = tx
            .get_org(&org_id)?
            .ok_or_else(|| ApiError::NotFound(format!("Organization {org_id} not found.")))?;
        let mut after = before.clone();
        let mut users = Vec::new();
        let out = edit(tx, dir, &mut after, &mut users)?;
        after.updated_at_ms = now_ms();
        after.updated_by = who.label();
        tx.put_org(&after)?;
        tx.audit(change("updated", Some(&before), Some(&after)));
        fx.orgs.push(after);
        for u in users {
            let prior = tx.get_user(&u.user_id)?;
            tx.put_user(&u)?;
            let mut within = crate::audit::Within::default();
            within.add_org(Some(&org_id));
            tx.audit(crate::api::users::membership_change(
                prior.as_ref(),
                Some(&u),
                within,
            ));
            fx.users.push(u);
        }
        Ok(out)
    })
    .await
}

/// The working copy of a user already touched in this request, else the stored one.
fn pending(users: &mut Vec<UserRecord>, user: UserRecord) -> &mut UserRecord {
    let at = match users.iter().position(|u| u.user_id == user.user_id) {
        Some(i) => i,
        None => {
            users.push(user);
            users.len() - 1
        }
    };
    &mut users[at]
}

pub(super) async fn member_add(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let org_id = required(&body, "organization_id")?;
    let members = match body.get("member") {
        Some(Value::Array(items)) => items
            .iter()
            .map(added_member)
            .collect::<Result<Vec<_>, _>>()?,
        Some(m) => vec![added_member(m)?],
        None => return Err(ApiError::invalid("`member` is required.", "member")),
    };
    let who = caller.clone();
    let id = org_id.clone();
    let answer_id = org_id.clone();
    let added = membership(&app, &caller, org_id, move |tx, dir, org, users| {
        let mut added = Vec::new();
        for m in &members {
            let user = find_user(tx, dir, &who, m)?
                .ok_or_else(|| ApiError::NotFound("User not found.".into()))?;
            if org.members.iter().any(|x| x.user_id == user.user_id) {
                return Err(ApiError::Conflict(format!(
                    "User {} is already a member of organization {id}.",
                    user.user_id
                )));
            }
            org.members.push(OrgMember {
                user_id: user.user_id.clone(),
                role: m.role,
            });
            let u = pending(users, user);
            u.organizations.push(OrgMembership {
                organization_id: id.clone(),
                role: m.role,
            });
            added.push(json!({
                "user_id": u.user_id, "organization_id": id, "user_role": m.role.as_str(),
            }));
        }
        Ok(added)
    })
    .await?;
    let users: Vec<Value> = added.iter().map(|m| m["user_id"].clone()).collect();
    Ok(Json(json!({
        "organization_id": answer_id,
        "updated_users": users,
        "updated_organization_memberships": added,
    })))
}

/// The member a `member_update` / `member_delete` body names: 404 unless it is one.
fn find_member(
    tx: &Tx,
    dir: &Directory,
    caller: &Caller,
    org: &OrgRecord,
    m: &MemberArg,
) -> Result<UserRecord, ApiError> {
    let not_member = || {
        ApiError::NotFound(format!(
            "User is not a member of organization {}.",
            org.organization_id
        ))
    };
    find_user(tx, dir, caller, m)?
        .filter(|u| org.members.iter().any(|x| x.user_id == u.user_id))
        .ok_or_else(not_member)
}

pub(super) async fn member_update(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let org_id = required(&body, "organization_id")?;
    let arg = member_arg(&body, None)?;
    let who = caller.clone();
    let id = org_id.clone();
    let out = membership(&app, &caller, org_id, move |tx, dir, org, users| {
        let user = find_member(tx, dir, &who, org, &arg)?;
        for x in org.members.iter_mut().filter(|x| x.user_id == user.user_id) {
            x.role = arg.role;
        }
        let u = pending(users, user);
        // Set by hand: leaving a SCIM group no longer takes this role back.
        u.take_over_org_role(&id);
        for x in u
            .organizations
            .iter_mut()
            .filter(|x| x.organization_id == id)
        {
            x.role = arg.role;
        }
        if !u.organizations.iter().any(|x| x.organization_id == id) {
            // Repairs a one-sided membership rather than leaving it.
            u.organizations.push(OrgMembership {
                organization_id: id.clone(),
                role: arg.role,
            });
        }
        Ok(json!({"organization_id": id, "user_id": u.user_id, "user_role": arg.role.as_str()}))
    })
    .await?;
    Ok(Json(out))
}

pub(super) async fn member_delete(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let org_id = required(&body, "organization_id")?;
    // A removal ignores any role sent along with it.
    let mut named = body.clone();
    named.remove("role");
    let arg = member_arg(&named, Some(OrgRole::InternalUser))?;
    let who = caller.clone();
    let id = org_id.clone();
    let out = membership(&app, &caller, org_id, move |tx, dir, org, users| {
        let user = find_member(tx, dir, &who, org, &arg)?;
        org.members.retain(|x| x.user_id != user.user_id);
        let u = pending(users, user);
        u.organizations.retain(|x| x.organization_id != id);
        u.take_over_org_role(&id);
        Ok(json!({"organization_id": id, "user_id": u.user_id, "deleted": true}))
    })
    .await?;
    Ok(Json(out))
}
