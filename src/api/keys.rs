//! `/key/*`: virtual keys, LiteLLM-compatible. Key endpoints accept the secret (`sk-...`) or
//! its sha256 hex (`token`) wherever a key is named.

use super::key_fields::{apply, view};
use super::{ApiError, Caller};
use crate::app::AppState;
use crate::audit::{Actor, Change, Origin};
use crate::auth::{Principal, generate_key, hash_key, mask_key};
use crate::store::{KeyRecord, Tx};
use crate::types::{now_ms, parse_duration};
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
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
        .route("/key/block", post(block))
        .route("/key/unblock", post(unblock))
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

async fn body_of(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, ApiError> {
    crate::request::json_object(headers, body, &app.body_limits)
        .await
        .map(|(map, _permit)| map)
        .map_err(ApiError::Body)
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

fn change(
    action: &str,
    before: Option<&KeyRecord>,
    after: Option<&KeyRecord>,
    token: &str,
) -> Change {
    Change {
        action: action.to_string(),
        table_name: TABLE.to_string(),
        object_id: token.to_string(),
        before_value: before.map(|r| view(r).to_string()).unwrap_or_default(),
        updated_values: after.map(|r| view(r).to_string()).unwrap_or_default(),
    }
}

/// Runs an audited key write off the async threads, then brings the auth cache in step with
/// what committed — both under the admin write lock.
async fn write_keys<T: Send + 'static>(
    app: &AppState,
    caller: &Caller,
    f: impl FnOnce(&mut Tx) -> Result<(T, Vec<KeyRecord>, Vec<KeyRecord>), ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = app.clone();
    let actor: Actor = caller.principal.actor();
    let origin: Origin = caller.origin.clone();
    tokio::task::spawn_blocking(move || {
        let _order = app
            .admin_writes
            .lock()
            // The lock guards ordering, not data: a panic elsewhere leaves nothing to repair.
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (out, upserted, removed) = app.store.write(&actor, &origin, f)?;
        // Install first, then forget only what is gone: a key being edited never disappears
        // from the cache, even for an instant.
        let kept: std::collections::HashSet<String> = upserted
            .iter()
            .flat_map(|r| {
                std::iter::once(r.token.clone())
                    .chain(r.grace_tokens.iter().map(|(t, _)| t.clone()))
            })
            .collect();
        for r in upserted {
            app.auth.keys().upsert(r);
        }
        for r in &removed {
            let tokens = std::iter::once(&r.token).chain(r.grace_tokens.iter().map(|(t, _)| t));
            for t in tokens.filter(|t| !kept.contains(*t)) {
                app.auth.keys().remove_token(t);
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::Internal {
        request_id: caller.origin.request_id.clone(),
        detail: e.to_string(),
    })?
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

async fn generate(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
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
    let now = now_ms();
    let by = caller.principal.actor().label();
    let mut record = KeyRecord {
        token: hex::encode(hash_key(&secret)),
        key_name: mask_key(&secret),
        key_alias: None,
        models: Vec::new(),
        expires_ms: None,
        metadata_json: "{}".into(),
        user_id: None,
        team_id: None,
        max_budget: None,
        soft_budget: None,
        budget_duration: None,
        tpm_limit: None,
        rpm_limit: None,
        max_parallel_requests: None,
        blocked: false,
        spend: 0.0,
        created_at_ms: now,
        updated_at_ms: now,
        created_by: by.clone(),
        updated_by: by,
        grace_tokens: Vec::new(),
    };
    apply(&mut record, &body)?;
    let auth_app = app.clone();
    let candidate = secret.clone();
    let saved = write_keys(&app, &caller, move |tx| {
        // Checked under the admin write lock, against everything that authenticates today.
        if tx.get_key(&record.token)?.is_some() || auth_app.auth.secret_taken(&candidate) {
            return Err(ApiError::Conflict("This key already exists.".into()));
        }
        check_alias_free(tx, record.key_alias.as_deref(), &record.token)?;
        tx.put_key(&record)?;
        tx.audit(change("created", None, Some(&record), &record.token));
        Ok((record.clone(), vec![record], vec![]))
    })
    .await?;
    let mut out = view(&saved);
    out["key"] = Value::String(secret);
    Ok(Json(out))
}

async fn update(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let body = body_of(&app, &headers, body).await?;
    let token = key_arg(&body)?;
    let saved = modify_key(&app, &caller, token, "updated", move |k| apply(k, &body)).await?;
    Ok(Json(view(&saved)))
}

/// Reads a key, edits it, and writes it back with its audit entry, in one transaction.
async fn modify_key(
    app: &AppState,
    caller: &Caller,
    token: String,
    action: &'static str,
    edit: impl FnOnce(&mut KeyRecord) -> Result<(), ApiError> + Send + 'static,
) -> Result<KeyRecord, ApiError> {
    let by = caller.principal.actor().label();
    write_keys(app, caller, move |tx| {
        let before = tx
            .get_key(&token)?
            .ok_or_else(|| ApiError::NotFound("Key not found.".into()))?;
        let mut after = before.clone();
        edit(&mut after)?;
        after.updated_at_ms = now_ms();
        after.updated_by = by;
        check_alias_free(tx, after.key_alias.as_deref(), &token)?;
        tx.put_key(&after)?;
        tx.audit(change(action, Some(&before), Some(&after), &token));
        Ok((after.clone(), vec![after], vec![before]))
    })
    .await
}

async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
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
    let deleted = write_keys(&app, &caller, move |tx| {
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
        let mut removed = Vec::new();
        for t in &tokens {
            let r = tx
                .delete_key(t)?
                .ok_or_else(|| ApiError::NotFound("Key not found.".into()))?;
            tx.audit(change("deleted", Some(&r), None, t));
            removed.push(r);
        }
        Ok((tokens, vec![], removed))
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
    q: Result<Query<InfoQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::invalid(r.body_text(), "query"))?;
    let token = match (&q.key, &caller.principal) {
        (Some(k), _) => token_of(k),
        // With no `key`, a key asks about itself (as in LiteLLM).
        (None, Principal::Key(k)) => k.token.clone(),
        (None, Principal::Master) => return Err(ApiError::invalid("`key` is required.", "key")),
    };
    if let Principal::Key(own) = &caller.principal
        && own.token != token
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
    // `key` is the token even when the secret was given: a secret is shown once, at creation,
    // and never again (answers end up in logs, UIs and proxies).
    Ok(Json(json!({"key": record.token, "info": view(&record)})))
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

fn positive(v: Option<&str>, field: &str, default: usize) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => s.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::invalid(format!("`{field}` must be a positive integer."), field)
        }),
    }
}

async fn list(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::invalid(r.body_text(), "query"))?;
    caller.require_admin()?;
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
    keys.retain(|k| {
        q.user_id
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
                view(k)
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
    caller.require_admin()?;
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
    let by = caller.principal.actor().label();
    let secret = new_secret.clone();
    let auth_app = app.clone();
    let saved = write_keys(&app, &caller, move |tx| {
        if auth_app.auth.secret_taken(&secret) {
            return Err(ApiError::Conflict("The new key already exists.".into()));
        }
        let before = tx
            .get_key(&token)?
            .ok_or_else(|| ApiError::NotFound("Key not found.".into()))?;
        let now = now_ms();
        let mut after = before.clone();
        apply(&mut after, &body)?;
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
        Ok((after.clone(), vec![after], vec![before]))
    })
    .await?;
    let mut out = view(&saved);
    out["key"] = Value::String(new_secret);
    Ok(Json(out))
}

async fn set_blocked(
    app: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    blocked: bool,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let body = body_of(&app, &headers, body).await?;
    let token = key_arg(&body)?;
    let action = if blocked { "blocked" } else { "unblocked" };
    let saved = modify_key(&app, &caller, token, action, move |k| {
        k.blocked = blocked;
        Ok(())
    })
    .await?;
    Ok(Json(view(&saved)))
}

async fn block(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    set_blocked(app, caller, headers, body, true).await
}

async fn unblock(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    set_blocked(app, caller, headers, body, false).await
}
