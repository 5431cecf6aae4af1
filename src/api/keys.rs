//! `/key/*`: virtual keys, LiteLLM-compatible. Key endpoints accept the secret (`sk-...`) or
//! its sha256 hex (`token`) wherever a key is named.

use super::fields::positive;
use super::key_fields::{apply, view};
use super::key_policy;
use super::write::commit;
use super::{ApiError, Caller, Params, body_of};
use crate::app::AppState;
use crate::audit::Change;
use crate::auth::{generate_key, hash_key, mask_key};
use crate::store::{KeyRecord, Tx};
use crate::tenancy::scope::Reach;
use crate::types::{now_ms, parse_duration};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// LiteLLM's table name for keys, kept so audit filters written for it still match.
const TABLE: &str = "LiteLLM_VerificationToken";
const MAX_PAGE_SIZE: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/key/generate", post(generate))
        .route("/key/update", post(update))
        .route("/key/delete", post(delete))
        .route("/key/info", get(info))
        .route("/key/list", get(list))
        .route("/key/regenerate", post(regenerate_body))
        .route("/key/{key}/regenerate", post(regenerate_path))
        .route("/key/block", blocking(true))
        .route("/key/unblock", blocking(false))
}

/// The stored token for a secret or a token.
fn token_of(given: &str) -> String {
    let given = given.trim();
    if given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        given.to_ascii_lowercase()
    } else {
        hex::encode(hash_key(given))
    }
}

/// Whether a caller-chosen secret can be presented at all: HTTP headers cannot carry control
/// characters and clients trim or split on whitespace, so such a key would lock its owner out
/// (after a regeneration, for good).
fn usable_secret(k: &str) -> bool {
    k.starts_with("sk-") && k.len() >= 20 && k.bytes().all(|b| b.is_ascii_graphic())
}

fn key_arg(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("key") {
        Some(Value::String(k)) if !k.trim().is_empty() => Ok(token_of(k)),
        _ => Err(ApiError::invalid(
            "`key` is required (the key or its token).",
            "key",
        )),
    }
}

/// A key as the API shows it, with its live meter: current-period spend and, under a
/// `budget_duration`, when that period ends.
pub(super) fn live_view(app: &AppState, r: &KeyRecord) -> Value {
    let meter = app
        .directory
        .ledger()
        .meter(&crate::limits::Subject::Key(r.key_id.clone()));
    let snap = meter.snapshot(
        &crate::tenancy::limits_of(&r.budget),
        crate::types::now_ms(),
    );
    let mut out = view(r, snap.spend);
    out["budget_reset_at"] = json!(snap.budget_reset_at_ms.map(crate::types::ms_to_rfc3339));
    out
}

pub(crate) fn change(
    action: &str,
    before: Option<&KeyRecord>,
    after: Option<&KeyRecord>,
    token: &str,
) -> Change {
    let view = |r: &KeyRecord| view(r, 0.0);
    let mut within = crate::audit::Within::default();
    for r in before.into_iter().chain(after) {
        within.add_org(r.organization_id.as_deref());
        within.add_team(r.team_id.as_deref());
    }
    super::audit_change(
        action,
        TABLE,
        token.to_string(),
        before.map(view),
        after.map(view),
        within,
    )
}

fn check_alias_free(tx: &Tx, alias: Option<&str>, token: &str) -> Result<(), ApiError> {
    if let Some(alias) = alias
        && let Some(other) = tx.key_by_alias(alias)?
        && other.token != token
    {
        return Err(ApiError::Conflict(format!(
            "key_alias `{alias}` is already in use."
        )));
    }
    Ok(())
}

/// A fresh key record for `secret`, with no limits of its own.
pub(super) fn new_record(secret: &str, by: &str, user_id: Option<String>) -> KeyRecord {
    let now = now_ms();
    KeyRecord {
        key_id: uuid::Uuid::now_v7().to_string(),
        token: hex::encode(hash_key(secret)),
        key_name: mask_key(secret),
        key_alias: None,
        models: Vec::new(),
        expires_ms: None,
        metadata_json: "{}".into(),
        user_id,
        team_id: None,
        organization_id: None,
        budget: crate::store::Budget::default(),
        allowed_routes: Vec::new(),
        key_type: crate::roles::KeyType::Default,
        blocked: false,
        created_at_ms: now,
        updated_at_ms: now,
        created_by: by.to_string(),
        updated_by: by.to_string(),
        grace_tokens: Vec::new(),
    }
}

async fn generate(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require_writer()?;
    let body = body_of(&app, &headers, body).await?;
    let secret = match body.get("key") {
        None | Some(Value::Null) => generate_key().map_err(|e| ApiError::Internal {
            request_id: caller.origin.request_id.clone(),
            detail: format!("no randomness: {e}"),
        })?,
        Some(Value::String(k)) if usable_secret(k) => k.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "`key` must start with `sk-` and be at least 20 printable ASCII characters without spaces.",
                "key",
            ));
        }
    };
    // A user's key is its own unless it names another owner (LiteLLM does the same).
    let mut record = new_record(
        &secret,
        &caller.label(),
        caller.identity.user_id().map(str::to_string),
    );
    apply(&mut record, &body)?;
    // A personal key is governed by its owner's organisation: without a team or an explicit
    // `organization_id`, it takes the owner's one organisation (several: the caller must say).
    // (An explicit null or empty `organization_id` counts as none: a user in an organisation
    // cannot step outside it by asking.)
    if record.team_id.is_none()
        && record.organization_id.is_none()
        && let Some(owner) = record
            .user_id
            .as_deref()
            .and_then(|u| app.directory.user(u))
    {
        match owner.record.organizations.as_slice() {
            [] => {}
            [only] => record.organization_id = Some(only.organization_id.clone()),
            _ => {
                return Err(ApiError::invalid(
                    format!(
                        "User {} belongs to several organizations: name the key's `organization_id` (or its `team_id`).",
                        owner.record.user_id
                    ),
                    "organization_id",
                ));
            }
        }
    }
    let auth_app = app.clone();
    let candidate = secret.clone();
    let who = caller.clone();
    let saved = commit(&app, &caller, move |tx, fx| {
        key_policy::check(&auth_app.directory, &who, None, &record, true)?;
        // Checked under the admin write lock, against everything that authenticates today.
        if tx.get_key(&record.token)?.is_some() || auth_app.auth.secret_taken(&candidate) {
            return Err(ApiError::Conflict("This key already exists.".into()));
        }
        check_alias_free(tx, record.key_alias.as_deref(), &record.token)?;
        if let Some(user_id) = &record.user_id
            && tx.get_user(user_id)?.is_none()
        {
            let user = super::users::blank_user(user_id, &who.label());
            tx.put_user(&user)?;
            tx.audit(super::users::change("created", None, Some(&user)));
            fx.users.push(user);
        }
        tx.put_key(&record)?;
        tx.audit(change("created", None, Some(&record), &record.token));
        fx.keys.push(record.clone());
        Ok(record)
    })
    .await?;
    let mut out = view(&saved, 0.0);
    out["key"] = Value::String(secret);
    Ok(Json(out))
}

async fn update(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let token = key_arg(&body)?;
    let saved = modify_key(&app, &caller, token, "updated", Reach::Owner, move |k| {
        apply(k, &body)
    })
    .await?;
    Ok(Json(live_view(&app, &saved)))
}

/// Reads a key, edits it, and writes it back with its audit entry, in one transaction. The
/// caller needs `needed` reach over the key as it was, and the result must pass the key policy.
async fn modify_key(
    app: &AppState,
    caller: &Caller,
    token: String,
    action: &'static str,
    needed: Reach,
    edit: impl FnOnce(&mut KeyRecord) -> Result<(), ApiError> + Send + 'static,
) -> Result<KeyRecord, ApiError> {
    let by = caller.label();
    let who = caller.clone();
    let dir_app = app.clone();
    commit(app, caller, move |tx, fx| {
        let before = tx
            .get_key(&token)?
            .ok_or_else(|| ApiError::NotFound("Key not found.".into()))?;
        let dir = &dir_app.directory;
        who.need(who.identity.key_reach(dir, &before), needed, "Key")?;
        let mut after = before.clone();
        edit(&mut after)?;
        key_policy::check(dir, &who, Some(&before), &after, false)?;
        after.updated_at_ms = now_ms();
        after.updated_by = by;
        check_alias_free(tx, after.key_alias.as_deref(), &token)?;
        tx.put_key(&after)?;
        tx.audit(change(action, Some(&before), Some(&after), &token));
        fx.keys.push(after.clone());
        fx.removed_keys.push(before);
        Ok(after)
    })
    .await
}

async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let strings = |field: &str| -> Result<Vec<String>, ApiError> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    ApiError::invalid(format!("`{field}` must be an array of strings."), field)
                }),
            Some(_) => Err(ApiError::invalid(
                format!("`{field}` must be an array of strings."),
                field,
            )),
        }
    };
    let keys = strings("keys")?;
    let aliases = strings("key_aliases")?;
    if keys.is_empty() && aliases.is_empty() {
        return Err(ApiError::invalid(
            "Give `keys` or `key_aliases` to delete.",
            "keys",
        ));
    }
    let who = caller.clone();
    let dir_app = app.clone();
    let deleted = commit(&app, &caller, move |tx, fx| {
        // All or nothing: an unknown key anywhere in the list deletes none of them.
        let mut tokens: Vec<String> = keys.iter().map(|k| token_of(k)).collect();
        for alias in &aliases {
            let r = tx
                .key_by_alias(alias)?
                .ok_or_else(|| ApiError::NotFound(format!("No key has the alias `{alias}`.")))?;
            tokens.push(r.token);
        }
        // The same key may be named twice (by secret and by alias, not necessarily adjacent):
        // delete it once instead of failing the second time as unknown.
        let mut seen = std::collections::HashSet::new();
        tokens.retain(|t| seen.insert(t.clone()));
        for t in &tokens {
            let r = tx
                .delete_key(t)?
                .ok_or_else(|| ApiError::NotFound("Key not found.".into()))?;
            who.need(
                who.identity.key_reach(&dir_app.directory, &r),
                Reach::Owner,
                "Key",
            )?;
            tx.audit(change("deleted", Some(&r), None, t));
            fx.removed_keys.push(r);
        }
        Ok(tokens)
    })
    .await?;
    Ok(Json(json!({"deleted_keys": deleted})))
}

#[derive(Deserialize)]
struct InfoQuery {
    key: Option<String>,
}

async fn info(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<InfoQuery>,
) -> Result<Json<Value>, ApiError> {
    let token = match (&q.key, caller.identity.key()) {
        (Some(k), _) => token_of(k),
        // With no `key`, a key asks about itself (as in LiteLLM).
        (None, Some(k)) => k.record.token.clone(),
        (None, None) => return Err(ApiError::invalid("`key` is required.", "key")),
    };
    // An `llm_api` key may read its own info and nothing else.
    if let Some(own) = caller.identity.key()
        && own.record.key_type == crate::roles::KeyType::LlmApi
        && own.record.token != token
    {
        return Err(ApiError::NotFound("Key not found.".into()));
    }
    let store = app.store.clone();
    let record = tokio::task::spawn_blocking(move || store.read_key(&token))
        .await
        .map_err(|e| ApiError::Internal {
            request_id: caller.origin.request_id.clone(),
            detail: e.to_string(),
        })??
        .ok_or_else(|| ApiError::NotFound("Key not found.".into()))?;
    caller.need(
        caller.identity.key_reach(&app.directory, &record),
        Reach::Read,
        "Key",
    )?;
    // `key` is the token even when the secret was given: a secret is shown once, at creation,
    // and never again (answers end up in logs, UIs and proxies).

    Ok(Json(
        json!({"key": record.token, "info": live_view(&app, &record)}),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    page: Option<String>,
    size: Option<String>,
    user_id: Option<String>,
    team_id: Option<String>,
    key_alias: Option<String>,
    return_full_object: Option<String>,
}

async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = positive(q.page.as_deref(), "page", 1)?;
    let size = positive(q.size.as_deref(), "size", 10)?.min(MAX_PAGE_SIZE);
    let full = matches!(q.return_full_object.as_deref(), Some("true" | "1"));
    let store = app.store.clone();
    let mut keys = tokio::task::spawn_blocking(move || store.all_keys())
        .await
        .map_err(|e| ApiError::Internal {
            request_id: caller.origin.request_id.clone(),
            detail: e.to_string(),
        })??;
    let dir = &app.directory;
    keys.retain(|k| {
        caller.identity.key_reach(dir, k) >= Reach::Read
            && q.user_id
                .as_ref()
                .is_none_or(|u| k.user_id.as_ref() == Some(u))
            && q.team_id
                .as_ref()
                .is_none_or(|t| k.team_id.as_ref() == Some(t))
            && q.key_alias
                .as_ref()
                .is_none_or(|a| k.key_alias.as_ref() == Some(a))
    });
    // Newest first, as LiteLLM lists them.
    keys.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| a.token.cmp(&b.token))
    });
    let total = keys.len();
    let pages = total.div_ceil(size);
    let shown: Vec<Value> = keys
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|k| {
            if full {
                live_view(&app, k)
            } else {
                Value::String(k.token.clone())
            }
        })
        .collect();
    Ok(Json(
        json!({"keys": shown, "total_count": total, "current_page": page, "total_pages": pages}),
    ))
}

async fn regenerate_path(
    State(app): State<AppState>,
    caller: Caller,
    key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Path(key) = key.map_err(|r| ApiError::invalid(r.body_text(), "key"))?;
    let body = body_of(&app, &headers, body).await?;
    regenerate(app, caller, token_of(&key), body).await
}

async fn regenerate_body(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let token = key_arg(&body)?;
    regenerate(app, caller, token, body).await
}

/// Replaces a key's secret. With `grace_period`, the old secret keeps working until it ends.
async fn regenerate(
    app: AppState,
    caller: Caller,
    token: String,
    mut body: Map<String, Value>,
) -> Result<Json<Value>, ApiError> {
    let grace = match body.remove("grace_period") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_duration(&s).ok_or_else(|| {
            ApiError::invalid(
                "`grace_period` must be a duration such as 30m or 24h.",
                "grace_period",
            )
        })?),
        Some(_) => {
            return Err(ApiError::invalid(
                "`grace_period` must be a duration string.",
                "grace_period",
            ));
        }
    };
    let new_secret = match body.remove("new_key") {
        Some(Value::String(k)) if usable_secret(&k) => k,
        Some(_) => {
            return Err(ApiError::invalid(
                "`new_key` must start with `sk-` and be at least 20 printable ASCII characters without spaces.",
                "new_key",
            ));
        }
        None => generate_key().map_err(|e| ApiError::Internal {
            request_id: caller.origin.request_id.clone(),
            detail: format!("no randomness: {e}"),
        })?,
    };
    body.remove("key");
    let by = caller.label();
    let secret = new_secret.clone();
    let auth_app = app.clone();
    let who = caller.clone();
    let saved = commit(&app, &caller, move |tx, fx| {
        if auth_app.auth.secret_taken(&secret) {
            return Err(ApiError::Conflict("The new key already exists.".into()));
        }
        let before = tx
            .get_key(&token)?
            .ok_or_else(|| ApiError::NotFound("Key not found.".into()))?;
        let dir = &auth_app.directory;
        who.need(who.identity.key_reach(dir, &before), Reach::Owner, "Key")?;
        let now = now_ms();
        let mut after = before.clone();
        apply(&mut after, &body)?;
        key_policy::check(dir, &who, Some(&before), &after, true)?;
        after.token = hex::encode(hash_key(&secret));
        after.key_name = mask_key(&secret);
        after.updated_at_ms = now;
        after.updated_by = by;
        match grace.filter(|g| !g.is_zero()) {
            Some(g) => {
                after.grace_tokens.retain(|(_, until)| *until > now);
                after.grace_tokens.push((
                    before.token.clone(),
                    now.saturating_add(i64::try_from(g.as_millis()).unwrap_or(i64::MAX)),
                ));
            }
            // A rotation without grace is the emergency one: every earlier secret dies now,
            // including those still in an earlier rotation's grace period.
            None => after.grace_tokens.clear(),
        }
        if tx.get_key(&after.token)?.is_some() {
            return Err(ApiError::Conflict("The new key already exists.".into()));
        }
        tx.delete_key(&before.token)?;
        check_alias_free(tx, after.key_alias.as_deref(), &after.token)?;
        tx.put_key(&after)?;
        let mut c = change("rotated", Some(&before), Some(&after), &before.token);
        c.object_id = after.token.clone();
        tx.audit(c);
        fx.keys.push(after.clone());
        fx.removed_keys.push(before);
        Ok(after)
    })
    .await?;
    let mut out = live_view(&app, &saved);
    out["key"] = Value::String(new_secret);
    Ok(Json(out))
}

/// `/key/block` (`true`) or `/key/unblock` (`false`).
fn blocking(blocked: bool) -> axum::routing::MethodRouter<AppState> {
    post(
        move |State(app): State<AppState>, caller: Caller, headers: HeaderMap, body: Body| {
            set_blocked(app, caller, headers, body, blocked)
        },
    )
}

async fn set_blocked(
    app: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    blocked: bool,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let token = key_arg(&body)?;
    let action = if blocked { "blocked" } else { "unblocked" };
    // Blocking narrows, so a key's owner may do it; unblocking needs someone above the key.
    let needed = if blocked {
        Reach::Owner
    } else {
        Reach::Members
    };
    let saved = modify_key(&app, &caller, token, action, needed, move |k| {
        k.blocked = blocked;
        Ok(())
    })
    .await?;
    Ok(Json(live_view(&app, &saved)))
}
