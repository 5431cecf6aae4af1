//! `POST /access/explain`: why a key (or a user) may or may not make a call, level by level.
//! Every decision comes from the functions enforcement runs (`access::check_route`,
//! `access::chain`, `access::check_model`, the meters' budgets), in the order it runs them,
//! so an explanation cannot drift from what a request would meet. Nothing is reserved or
//! changed: budgets are read from meter snapshots.

use super::{ApiError, Caller, body_of};
use crate::app::AppState;
use crate::limits::{Limits, Meter, Subject, to_nanos};
use crate::tenancy::access::{self, Chain, Denial, RouteClass};
use crate::tenancy::scope::Reach;
use crate::tenancy::{KeyEntry, UserEntry};
use crate::types::now_ms;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use http::{HeaderMap, Method};
use serde_json::{Map, Value, json};
use std::sync::Arc;

const DEFAULT_ROUTE: &str = "/v1/chat/completions";

pub fn routes() -> Router<AppState> {
    Router::new().route("/access/explain", post(explain))
}

/// The checks made so far and the first refusal, which decides.
#[derive(Default)]
struct Explanation {
    checks: Vec<Value>,
    decided_by: Option<Value>,
}

impl Explanation {
    fn pass(&mut self, level: &str, id: &str, check: &str, detail: impl Into<String>) {
        self.push(level, id, check, "pass", detail.into());
    }

    /// Records a refusal; the first one decides. Returns whether checking may go on.
    fn deny(&mut self, level: &str, id: &str, check: &str, rule: impl Into<String>) -> bool {
        let rule = rule.into();
        if self.decided_by.is_none() {
            self.decided_by = Some(json!({"level": level, "id": id, "rule": rule}));
        }
        self.push(level, id, check, "deny", rule);
        false
    }

    fn denial(&mut self, d: &Denial, check: &str) -> bool {
        self.deny(d.level, &d.id, check, d.rule.clone())
    }

    fn push(&mut self, level: &str, id: &str, check: &str, result: &str, detail: String) {
        self.checks.push(json!({
            "level": level,
            "id": id,
            "check": check,
            "result": result,
            "detail": detail,
        }));
    }

    fn answer(self, mut subject: Map<String, Value>) -> Json<Value> {
        subject.insert("allowed".into(), json!(self.decided_by.is_none()));
        subject.insert("decided_by".into(), self.decided_by.unwrap_or(Value::Null));
        subject.insert("checks".into(), Value::Array(self.checks));
        Json(Value::Object(subject))
    }
}

fn text_arg(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    super::fields::optional(body, field).map(|v| v.filter(|s| !s.trim().is_empty()))
}

/// The stored token for a secret or a token.
fn token_of(given: &str) -> String {
    let given = given.trim();
    if given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        given.to_ascii_lowercase()
    } else {
        hex::encode(crate::auth::hash_key(given))
    }
}

/// What a call would be: its route (path and method) and its model.
struct Call {
    path: String,
    class: RouteClass,
    model: Option<String>,
    end_user: Option<String>,
}

async fn explain(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let key = text_arg(&body, "key")?;
    let user_id = text_arg(&body, "user_id")?;
    let path = text_arg(&body, "route")?.unwrap_or_else(|| DEFAULT_ROUTE.to_string());
    if !path.starts_with('/') {
        return Err(ApiError::invalid(
            "`route` must be a path starting with `/`.",
            "route",
        ));
    }
    let method = match text_arg(&body, "method")? {
        None => Method::POST,
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| ApiError::invalid("`method` must be an HTTP method.", "method"))?,
    };
    let call = Call {
        class: access::classify(&method, &path),
        path,
        model: text_arg(&body, "model")?,
        end_user: text_arg(&body, "end_user")?,
    };
    let mut subject = Map::new();
    subject.insert("route".into(), json!(call.path));
    subject.insert("model".into(), json!(call.model));
    match (key, user_id) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "Give either `key` or `user_id`, not both.",
            "key",
        )),
        (None, None) => Err(ApiError::invalid("Give `key` or `user_id`.", "key")),
        (Some(k), None) => {
            let found = find_key(&app, &caller, &token_of(&k)).await?;
            caller.need(
                caller.identity.key_reach(&app.directory, &found.0.record),
                Reach::Read,
                "Key",
            )?;
            subject.insert("key".into(), json!(found.0.record.token));
            Ok(explain_key(&app, &found.0, found.1, &call).answer(subject))
        }
        (None, Some(id)) => {
            let dir = &app.directory;
            let user = dir
                .user(&id)
                .ok_or_else(|| ApiError::NotFound("User not found.".into()))?;
            caller.need(
                caller.identity.user_reach(dir, &user.record),
                Reach::Read,
                "User",
            )?;
            subject.insert("user_id".into(), json!(id));
            Ok(explain_user(&app, &user, &call).answer(subject))
        }
    }
}

/// The key a token names, and for a replaced secret in its grace period, when that ends. The
/// cache holds every key; the store is asked only if the cache does not know the token.
async fn find_key(
    app: &AppState,
    caller: &Caller,
    token: &str,
) -> Result<(Arc<KeyEntry>, Option<i64>), ApiError> {
    let mut digest = [0u8; 32];
    if hex::decode_to_slice(token, &mut digest).is_ok()
        && let Some(cached) = app.auth.keys().lookup(&digest)
    {
        return Ok((cached.entry.clone(), cached.valid_until));
    }
    let store = app.store.clone();
    let wanted = token.to_string();
    let record = tokio::task::spawn_blocking(move || store.read_key(&wanted))
        .await
        .map_err(|e| ApiError::Internal {
            request_id: caller.origin.request_id.clone(),
            detail: e.to_string(),
        })??
        .ok_or_else(|| ApiError::NotFound("Key not found.".into()))?;
    Ok((app.directory.key_entry(record), None))
}

fn explain_key(
    app: &AppState,
    key: &Arc<KeyEntry>,
    valid_until: Option<i64>,
    call: &Call,
) -> Explanation {
    let mut out = Explanation::default();
    let dir = &app.directory;
    let r = &key.record;
    let token = r.token.as_str();
    let now = now_ms();
    // Authentication first, as a request meets it.
    let usable = if valid_until.is_some_and(|until| now >= until) {
        out.deny(
            "key",
            token,
            "status",
            "this secret was replaced and its grace period has ended",
        )
    } else if r.expires_ms.is_some_and(|exp| now >= exp) {
        out.deny("key", token, "status", "key has expired")
    } else if r.blocked {
        out.deny("key", token, "status", "key is blocked")
    } else {
        out.pass("key", token, "status", "key is active");
        true
    };
    if !usable {
        return out;
    }
    let role = r
        .user_id
        .as_deref()
        .and_then(|u| dir.user(u))
        .map(|u| u.record.user_role);
    match access::check_route(dir, key, role, call.class, &call.path) {
        Ok(()) => out.pass(
            "key",
            token,
            "route",
            format!(
                "key_type {}, allowed_routes and role permissions allow {}",
                r.key_type, call.path
            ),
        ),
        Err(d) => {
            out.denial(&d, "route");
            return out;
        }
    }
    let Some(chain) = explain_chain(&mut out, dir, key, call.end_user.as_deref()) else {
        return out;
    };
    if let Some(model) = &call.model
        && !explain_model(&mut out, app, &chain, model)
    {
        return out;
    }
    // Budgets meter LLM calls only.
    if call.class == RouteClass::Llm {
        for level in access::levels(&chain) {
            let subject = level.meter.subject();
            let id = match subject {
                Subject::Key(_) => token.to_string(),
                other => other.id(),
            };
            if !budget_check(
                &mut out,
                subject.level_name(),
                &id,
                level.meter,
                level.limits,
                now,
            ) || !rate_check(
                &mut out,
                subject.level_name(),
                &id,
                level.meter,
                level.limits,
            ) {
                break;
            }
        }
    }
    out
}

/// Lists the levels `access::chain` walks, in its order; its own answer decides.
fn explain_chain(
    out: &mut Explanation,
    dir: &crate::tenancy::Directory,
    key: &Arc<KeyEntry>,
    end_user: Option<&str>,
) -> Option<Chain> {
    let r = &key.record;
    let mut walked: Vec<(&'static str, String, &'static str)> = Vec::new();
    if let Some(u) = &r.user_id {
        walked.push(("user", u.clone(), "user exists and is not blocked"));
    }
    if let Some(t) = &r.team_id {
        walked.push(("team", t.clone(), "team exists and is not blocked"));
        if r.user_id.is_some() {
            walked.push((
                "team_member",
                t.clone(),
                "the key's user is a member of the team",
            ));
        }
    }
    if let Some(e) = end_user {
        walked.push(("end_user", e.to_string(), "end user is not blocked"));
    }
    match access::chain(dir, key, end_user) {
        Ok(chain) => {
            for (level, id, detail) in &walked {
                out.pass(level, id, "status", *detail);
            }
            for o in &chain.orgs {
                out.pass(
                    "organization",
                    &o.record.organization_id,
                    "status",
                    "in the key's organization chain",
                );
            }
            Some(chain)
        }
        Err(d) => {
            for (level, id, detail) in &walked {
                if *level == d.level && *id == d.id {
                    break;
                }
                out.pass(level, id, "status", *detail);
            }
            out.denial(&d, "status");
            None
        }
    }
}

/// Lists the levels `access::check_model` consults, in its order, then whether any deployment
/// serves the model at all.
fn explain_model(out: &mut Explanation, app: &AppState, chain: &Chain, model: &str) -> bool {
    let dir = &app.directory;
    let through_team = chain.team.is_some();
    let mut consulted: Vec<(&'static str, String)> = vec![("key", chain.key.record.token.clone())];
    if let Some(u) = &chain.user
        && !through_team
    {
        consulted.push(("user", u.record.user_id.clone()));
    }
    if let Some(role) = chain.role
        && dir.role_models(role).is_some()
    {
        consulted.push(("role", role.as_str().to_string()));
    }
    if let Some(t) = &chain.team {
        consulted.push(("team", t.record.team_id.clone()));
    }
    for o in &chain.orgs {
        consulted.push(("organization", o.record.organization_id.clone()));
    }
    let allowed = format!("allows {model}");
    match access::check_model(dir, chain, model) {
        Ok(()) => {
            for (level, id) in &consulted {
                out.pass(level, id, "model", allowed.clone());
            }
        }
        Err(d) => {
            for (level, id) in &consulted {
                if *level == d.level && *id == d.id {
                    break;
                }
                out.pass(level, id, "model", allowed.clone());
            }
            return out.denial(&d, "model");
        }
    }
    model_exists(out, app, model)
}

fn model_exists(out: &mut Explanation, app: &AppState, model: &str) -> bool {
    if app.router().resolve(model).is_some() {
        out.pass(
            "proxy",
            model,
            "model_exists",
            format!("a deployment serves {model}"),
        );
        true
    } else {
        out.deny(
            "proxy",
            model,
            "model_exists",
            format!("no deployment serves {model}"),
        )
    }
}

/// Budget headroom at one level, judged as admission judges it (spend plus reservations of
/// calls in flight against `max_budget`), without reserving anything.
fn budget_check(
    out: &mut Explanation,
    level: &str,
    id: &str,
    meter: &Meter,
    limits: &Limits,
    now: i64,
) -> bool {
    let snap = meter.snapshot(limits, now);
    let Some(max) = limits.max_budget else {
        out.pass(
            level,
            id,
            "budget",
            format!("spend {} with no max_budget", snap.spend),
        );
        return true;
    };
    let used = to_nanos(snap.spend).saturating_add(to_nanos(snap.reserved));
    let detail = format!(
        "spend {} (+{} reserved in flight) of max_budget {max}",
        snap.spend, snap.reserved
    );
    if used >= to_nanos(max) {
        out.deny(level, id, "budget", format!("budget exceeded: {detail}"))
    } else {
        out.pass(level, id, "budget", detail);
        true
    }
}

/// A level's request and token rates and its parallel slots, when it sets any. The rate
/// buckets refill continuously, so only the limits are shown; a full parallel budget refuses.
fn rate_check(
    out: &mut Explanation,
    level: &str,
    id: &str,
    meter: &Meter,
    limits: &Limits,
) -> bool {
    if limits.rpm_limit.is_none()
        && limits.tpm_limit.is_none()
        && limits.max_parallel_requests.is_none()
    {
        return true;
    }
    let show = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |n| n.to_string());
    let in_flight = meter.in_flight();
    let detail = format!(
        "rpm_limit {}, tpm_limit {}, max_parallel_requests {} ({in_flight} in flight)",
        show(limits.rpm_limit),
        show(limits.tpm_limit),
        show(limits.max_parallel_requests),
    );
    if limits.max_parallel_requests.is_some_and(|m| in_flight >= m) {
        out.deny(
            level,
            id,
            "rate_limits",
            format!("parallel requests at the limit: {detail}"),
        )
    } else {
        out.pass(level, id, "rate_limits", detail);
        true
    }
}

/// A user's own level: what any key of its own would meet before its key's rules.
fn explain_user(app: &AppState, user: &UserEntry, call: &Call) -> Explanation {
    let mut out = Explanation::default();
    let dir = &app.directory;
    let u = &user.record;
    let role = u.user_role;
    if u.blocked {
        out.deny("user", &u.user_id, "status", "user is blocked");
        return out;
    }
    out.pass(
        "user",
        &u.user_id,
        "status",
        "user exists and is not blocked",
    );
    match dir.role_routes(role) {
        Some(routes)
            if !routes
                .iter()
                .any(|e| access::route_matches(e, call.class, &call.path)) =>
        {
            out.deny(
                "role",
                role.as_str(),
                "route",
                format!("role_permissions for {role} do not include {}", call.path),
            );
            return out;
        }
        Some(_) => out.pass(
            "role",
            role.as_str(),
            "route",
            format!("role_permissions for {role} include {}", call.path),
        ),
        None => out.pass(
            "role",
            role.as_str(),
            "route",
            format!("no role_permissions narrow routes for {role}"),
        ),
    }
    if let Some(model) = &call.model {
        // Judged as for a personal key: a team key is governed by its team instead.
        if !user.models.allows(model, false) {
            out.deny(
                "user",
                &u.user_id,
                "model",
                format!("the user's models do not include {model} (judged as for a personal key)"),
            );
            return out;
        }
        out.pass("user", &u.user_id, "model", format!("allows {model}"));
        if let Some(set) = dir.role_models(role) {
            if !set.allows(model, false) {
                out.deny(
                    "role",
                    role.as_str(),
                    "model",
                    format!("role_permissions for {role} do not include {model}"),
                );
                return out;
            }
            out.pass("role", role.as_str(), "model", format!("allows {model}"));
        }
        if !model_exists(&mut out, app, model) {
            return out;
        }
    }
    if call.class == RouteClass::Llm {
        budget_check(
            &mut out,
            "user",
            &u.user_id,
            &user.meter,
            &user.limits,
            now_ms(),
        );
    }
    out
}
