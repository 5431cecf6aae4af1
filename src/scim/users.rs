//! `/scim/v2/Users`: SCIM Users are Portcullis users.
//!
//! PATCH is applied to the resource as it stands and the result goes through the same checks
//! and write as a PUT, so both paths keep the same rules (uniqueness, read-only attributes,
//! what lands in which field).

use super::error::ScimError;
use super::list::{self, Listing};
use super::resource::{self, UserInput};
use super::schema::{self, USER_ATTRS};
use super::{Base, ScimCaller, json_body, reply};
use crate::api::write::{Effects, commit};
use crate::app::AppState;
use crate::roles::OrgRole;
use crate::store::{OrgMember, OrgMembership, ScimUser, Tx, UserRecord};
use crate::types::now_ms;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub fn pairs(q: Pairs) -> Result<serde_json::Map<String, Value>, ScimError> {
    let Query(p) = q.map_err(|e| ScimError::bad("invalidValue", e.body_text()))?;
    Ok(list::query_map(p))
}

/// A resource answer with its `ETag` (and `Location` on creation).
pub fn resource_reply(status: StatusCode, resource: &Value) -> Response {
    let mut r = reply(status, resource);
    if let Some(v) = resource["meta"]["version"]
        .as_str()
        .and_then(|v| http::HeaderValue::from_str(v).ok())
    {
        r.headers_mut().insert(http::header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Some(v) = resource["meta"]["location"]
            .as_str()
            .and_then(|v| http::HeaderValue::from_str(v).ok())
    {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

/// `If-Match` (RFC 7644 §3.14): `*` or the current version, else 412.
pub fn check_if_match(headers: &HeaderMap, current: &str) -> Result<(), ScimError> {
    let Some(wanted) = headers.get(http::header::IF_MATCH) else {
        return Ok(());
    };
    let wanted = wanted.to_str().unwrap_or_default();
    let strip = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    let matches = wanted
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == strip(current));
    if matches {
        Ok(())
    } else {
        Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("The resource changed: its version is {current}, not {wanted}."),
        ))
    }
}

fn matches(f: &Option<super::filter::Filter>, r: &Value) -> Result<bool, ScimError> {
    match f {
        None => Ok(true),
        Some(f) => super::filter::evaluate(f, r, &schema::UserAttributes)
            .map_err(|e| ScimError::bad("invalidFilter", e.message)),
    }
}

/// The users an indexed filter can only match (`userName`, `externalId` or `emails.value`
/// `eq`, alone or in an `and`), read by index; `None` when no index answers the filter and
/// every user must be tested.
fn indexed(app: &AppState, l: &Listing) -> Result<Option<Vec<UserRecord>>, ScimError> {
    let Some((path, value)) = l.filter.as_ref().and_then(super::filter::simple_eq) else {
        return Ok(None);
    };
    if path
        .schema
        .as_deref()
        .is_some_and(|u| !super::filter::is_core_schema(u))
    {
        return Ok(None);
    }
    let attr = path.attr.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    let by_name = attr == "username" && sub.is_none();
    let by_email = attr == "emails" && matches!(sub.as_deref(), None | Some("value"));
    let by_external_id = attr == "externalid" && sub.is_none();
    let found = if by_name || by_email {
        app.store.find_users_by_name_or_email(value, by_name)?
    } else if by_external_id {
        // Case-exact (RFC 7643 §3.1), as the index is.
        app.store.find_users_by_external_id(value)?
    } else {
        return Ok(None);
    };
    Ok(Some(found))
}

async fn run_listing(
    app: AppState,
    sc: ScimCaller,
    base: Base,
    params: serde_json::Map<String, Value>,
) -> Result<Response, ScimError> {
    let l = list::listing(&params)?;
    if let Some(f) = &l.filter {
        super::filter::check(f, &schema::UserAttributes)
            .map_err(|e| ScimError::bad("invalidFilter", e.message))?;
    }
    let (dir, org) = (&app.directory, sc.org.as_deref());
    // Only the matches are kept: a scan builds each user's resource once, tests it and drops
    // it unless it matches, so memory follows the matches, not the directory.
    let mut matched = Vec::new();
    let mut test = |u: &UserRecord| -> Result<(), ScimError> {
        if !resource::user_visible(dir, org, u) {
            return Ok(());
        }
        let r = resource::user_resource(u, dir, org, &base.0);
        if matches(&l.filter, &r)? {
            matched.push(r);
        }
        Ok(())
    };
    match indexed(&app, &l)? {
        Some(found) => {
            for u in &found {
                test(u)?;
            }
        }
        // The entries are shared (`Arc`), not copied; no lock is held while testing them.
        None => {
            for u in dir.users() {
                test(&u.record)?;
            }
        }
    }
    // A stable order before any sortBy: by creation, then id.
    matched.sort_by(|a, b| {
        (a["meta"]["created"].as_str(), a["id"].as_str())
            .cmp(&(b["meta"]["created"].as_str(), b["id"].as_str()))
    });
    Ok(reply(
        StatusCode::OK,
        &list::respond(matched, &l, USER_ATTRS, schema::USER),
    ))
}

pub async fn list(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    q: Pairs,
) -> Result<Response, ScimError> {
    let params = pairs(q)?;
    run_listing(app, sc, base, params).await
}

pub async fn search(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let params = list::search_request(&app, &headers, body).await?;
    run_listing(app, sc, base, params).await
}

fn visible_user(app: &AppState, sc: &ScimCaller, id: &str) -> Result<UserRecord, ScimError> {
    app.directory
        .user(id)
        .map(|u| u.record.clone())
        .filter(|u| resource::user_visible(&app.directory, sc.org.as_deref(), u))
        .ok_or_else(|| ScimError::not_found(format!("User {id} not found.")))
}

pub async fn get_one(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    Path(id): Path<String>,
    q: Pairs,
) -> Result<Response, ScimError> {
    let params = pairs(q)?;
    let l = list::listing(&params)?;
    let u = visible_user(&app, &sc, &id)?;
    let r = resource::user_resource(&u, &app.directory, sc.org.as_deref(), &base.0);
    let r = list::project(r, &l.attributes, &l.excluded, USER_ATTRS, schema::USER);
    Ok(resource_reply(StatusCode::OK, &r))
}

/// Refuses a `userName` or email another user holds.
fn check_unique(tx: &Tx, input: &UserInput, id: &str) -> Result<(), ScimError> {
    if let Some(other) = tx.user_by_scim_name(&input.user_name)?
        && other.user_id != id
    {
        return Err(ScimError::conflict(format!(
            "userName {} is already taken.",
            input.user_name
        )));
    }
    // An administrator's user is named by its email: a SCIM user may not take that name.
    if let Some(other) = tx.user_by_email(&input.user_name)?
        && other.user_id != id
        && other.scim.is_none()
    {
        return Err(ScimError::conflict(format!(
            "userName {} is the email of an existing user.",
            input.user_name
        )));
    }
    if let Some(email) = &input.email
        && let Some(other) = tx.user_by_email(email)?
        && other.user_id != id
    {
        return Err(ScimError::conflict(format!(
            "The email {email} belongs to another user."
        )));
    }
    Ok(())
}

/// Puts `user` into organisation `org` (both sides), if it is not there yet.
pub fn join_org(
    tx: &mut Tx,
    fx: &mut Effects,
    user: &mut UserRecord,
    org: &str,
) -> Result<(), ScimError> {
    if user.organizations.iter().any(|m| m.organization_id == org) {
        return Ok(());
    }
    let Some(before) = tx.get_org(org)? else {
        return Err(ScimError::new(
            StatusCode::CONFLICT,
            None,
            format!("The token's organization {org} no longer exists."),
        ));
    };
    let mut after = before.clone();
    after.members.push(OrgMember {
        user_id: user.user_id.clone(),
        role: OrgRole::InternalUser,
    });
    after.updated_at_ms = now_ms();
    tx.put_org(&after)?;
    tx.audit(crate::api::orgs::change(
        "updated",
        Some(&before),
        Some(&after),
    ));
    fx.orgs.push(after);
    user.organizations.push(OrgMembership {
        organization_id: org.to_string(),
        role: OrgRole::InternalUser,
    });
    Ok(())
}

fn apply_input(user: &mut UserRecord, input: UserInput, by: &str) {
    let version = user.scim.as_ref().map_or(1, |s| s.version + 1);
    let provisioned_by = user
        .scim
        .as_ref()
        .map_or_else(|| by.to_string(), |s| s.provisioned_by.clone());
    // What its groups granted is not a User attribute: a PUT or PATCH keeps it.
    let grants = user
        .scim
        .as_ref()
        .map(|s| s.grants.clone())
        .unwrap_or_default();
    user.user_email = input.email;
    user.user_alias = input.display_name;
    user.external_id = input.external_id;
    user.scim = Some(ScimUser {
        user_name: input.user_name,
        active: input.active,
        attributes_json: Value::Object(input.attributes).to_string(),
        version,
        provisioned_by,
        grants,
    });
    user.updated_at_ms = now_ms();
    user.updated_by = by.to_string();
}

pub async fn create(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    sc.require_writer()?;
    let v = json_body(&app, &headers, body).await?;
    let input = resource::user_input(&v)?;
    let who = sc.label();
    let org = sc.org.clone();
    let saved = commit(&app, &sc.caller, move |tx, fx| {
        let mut user = crate::api::users::blank_user(&uuid::Uuid::new_v4().to_string(), &who);
        if let Err(e) = check_unique(tx, &input, &user.user_id) {
            return Ok(Err(e));
        }
        apply_input(&mut user, input, &who);
        if let Some(org) = &org
            && let Err(e) = join_org(tx, fx, &mut user, org)
        {
            return Ok(Err(e));
        }
        tx.put_user(&user)?;
        tx.audit(crate::api::users::change("created", None, Some(&user)));
        fx.users.push(user.clone());
        Ok(Ok(user))
    })
    .await??;
    let r = resource::user_resource(&saved, &app.directory, sc.org.as_deref(), &base.0);
    Ok(resource_reply(StatusCode::CREATED, &r))
}

/// A token scoped to an organisation manages that organisation's people, not the proxy's
/// administrators who happen to belong to it: deactivating or deleting one would let a business
/// unit's IdP lock out the people who govern every unit.
fn check_below_scope(org: Option<&str>, u: &UserRecord) -> Result<(), ScimError> {
    use crate::roles::GlobalRole;
    if org.is_some()
        && matches!(
            u.user_role,
            GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer
        )
    {
        return Err(ScimError::new(
            StatusCode::FORBIDDEN,
            None,
            format!(
                "User {} holds a proxy-wide role; a SCIM token scoped to an organisation may read it but not change or delete it.",
                u.user_id
            ),
        ));
    }
    Ok(())
}

/// Replaces a user with `input` (PUT, and PATCH after it is applied), under `If-Match`.
async fn write_user(
    app: AppState,
    sc: ScimCaller,
    base: Base,
    id: String,
    headers: HeaderMap,
    make: impl FnOnce(&Value) -> Result<UserInput, ScimError> + Send + 'static,
) -> Result<Response, ScimError> {
    sc.require_writer()?;
    let who = sc.label();
    let dir = app.directory.clone();
    let (org, base_url) = (sc.org.clone(), base.0.clone());
    let roles = app.scim.group_roles.clone();
    let saved = commit(&app, &sc.caller, move |tx, fx| {
        let Some(before) = tx
            .get_user(&id)?
            .filter(|u| resource::user_visible(&dir, org.as_deref(), u))
        else {
            return Ok(Err(ScimError::not_found(format!("User {id} not found."))));
        };
        if let Err(e) = check_below_scope(org.as_deref(), &before) {
            return Ok(Err(e));
        }
        let current = resource::user_resource(&before, &dir, org.as_deref(), &base_url);
        if let Err(e) = check_if_match(&headers, current["meta"]["version"].as_str().unwrap_or(""))
        {
            return Ok(Err(e));
        }
        let input = match make(&current).and_then(|input| {
            check_unique(tx, &input, &id)?;
            Ok(input)
        }) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        let mut after = before.clone();
        apply_input(&mut after, input, &who);
        let action = match (before.disabled(), after.disabled()) {
            (false, true) => "blocked",
            (true, false) => "unblocked",
            _ => "updated",
        };
        tx.put_user(&after)?;
        tx.audit(crate::api::users::change(
            action,
            Some(&before),
            Some(&after),
        ));
        fx.users.push(after.clone());
        // An administrator's user the IdP adopts gets what the groups it is already in grant
        // (within what this token may touch).
        if before.scim.is_none() {
            crate::api::scim_roles::adopted(tx, fx, &roles, &who, &after, org.as_deref(), &dir)?;
            return Ok(Ok(tx.get_user(&id)?.unwrap_or(after)));
        }
        Ok(Ok(after))
    })
    .await??;
    let r = resource::user_resource(&saved, &app.directory, sc.org.as_deref(), &base.0);
    Ok(resource_reply(StatusCode::OK, &r))
}

pub async fn replace(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let v = json_body(&app, &headers, body).await?;
    write_user(app, sc, base, id, headers, move |_| {
        resource::user_input(&v)
    })
    .await
}

pub async fn patch(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let ops = json_body(&app, &headers, body).await?;
    write_user(app, sc, base, id, headers, move |current| {
        let mut r = current.clone();
        super::patch::apply(&mut r, &ops, &schema::UserAttributes)
            .map_err(|e| ScimError::bad(e.scim_type, e.message))?;
        resource::user_input(&r)
    })
    .await
}

/// DELETE: the user, its keys and its memberships go, in one transaction (a leaver loses
/// access on the next request).
pub async fn delete(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    sc.require_writer()?;
    let dir = app.directory.clone();
    let (org, base_url) = (sc.org.clone(), base.0.clone());
    commit(&app, &sc.caller, move |tx, fx| {
        let Some(user) = tx
            .get_user(&id)?
            .filter(|u| resource::user_visible(&dir, org.as_deref(), u))
        else {
            return Ok(Err(ScimError::not_found(format!("User {id} not found."))));
        };
        if let Err(e) = check_below_scope(org.as_deref(), &user) {
            return Ok(Err(e));
        }
        let current = resource::user_resource(&user, &dir, org.as_deref(), &base_url);
        if let Err(e) = check_if_match(&headers, current["meta"]["version"].as_str().unwrap_or(""))
        {
            return Ok(Err(e));
        }
        let keys = tx.all_keys()?;
        crate::api::users::remove_user(tx, fx, &user, true, &keys)?;
        Ok(Ok(()))
    })
    .await??;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}
