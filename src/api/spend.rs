//! `GET /spend/logs`: one row per LLM request, LiteLLM's shape and query parameters. The
//! caller's scope is applied inside the store scan (never by trimming a page afterwards), so
//! totals and pages count only rows the caller may see; asking for someone else's rows
//! answers an empty result, which discloses nothing.

use super::fields::positive;
use super::{ApiError, Caller, Params};
use crate::app::AppState;
use crate::store::usage::{SpendLogFilter, SpendLogRow};
use crate::tenancy::scope::{Identity, Reach};
use crate::types::ms_to_rfc3339;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;

const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 50;
const DAY_MS: i64 = 86_400_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/spend/logs", get(spend_logs))
}

/// The rows a caller may see. `All` for proxy admins and viewers; otherwise a union: a row is
/// visible when any one of its user, team, organisation or key is in the caller's reach.
enum Scope {
    All,
    Within {
        users: HashSet<String>,
        teams: HashSet<String>,
        orgs: HashSet<String>,
        keys: HashSet<String>,
    },
}

impl Scope {
    fn of(app: &AppState, identity: &Identity) -> Scope {
        if identity.sees_everything() {
            return Scope::All;
        }
        let dir = &app.directory;
        let mut users = HashSet::new();
        let mut keys = HashSet::new();
        match identity {
            Identity::User { user, .. } => {
                users.insert(user.record.user_id.clone());
            }
            // A key without a user sees what it spent itself.
            Identity::Service { key, .. } => {
                keys.insert(key.record.token.clone());
            }
            Identity::Master => return Scope::All,
        }
        // Team admins see their teams' rows; org admins see their subtrees' teams and orgs.
        let teams = dir
            .teams()
            .into_iter()
            .filter(|t| identity.team_reach(dir, &t.record) >= Reach::Members)
            .map(|t| t.record.team_id.clone())
            .collect();
        let orgs = dir
            .orgs()
            .into_iter()
            .map(|o| o.record.organization_id.clone())
            .filter(|o| identity.governs_org(dir, o))
            .collect();
        Scope::Within {
            users,
            teams,
            orgs,
            keys,
        }
    }

    fn admits(&self, r: &SpendLogRow) -> bool {
        match self {
            Scope::All => true,
            Scope::Within {
                users,
                teams,
                orgs,
                keys,
            } => {
                let has = |set: &HashSet<String>, v: &Option<String>| {
                    v.as_ref().is_some_and(|v| set.contains(v))
                };
                has(users, &r.user_id)
                    || has(teams, &r.team_id)
                    || has(orgs, &r.organization_id)
                    || keys.contains(&r.api_key)
            }
        }
    }
}

/// One row as LiteLLM's `SpendLogs` table shows it.
fn row_view(r: &SpendLogRow) -> Value {
    json!({
        "request_id": r.request_id,
        "call_type": r.call_type,
        "api_key": r.api_key,
        "spend": r.spend,
        "total_tokens": r.total_tokens,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "startTime": ms_to_rfc3339(r.start_ms),
        "endTime": ms_to_rfc3339(r.end_ms),
        "model": r.model,
        "model_id": r.model_id,
        "model_group": r.model,
        "api_base": r.api_base,
        "user": r.user_id,
        "team_id": r.team_id,
        "organization_id": r.organization_id,
        "end_user": r.end_user,
        "status": r.status,
        "stream": r.stream,
        "metadata": {
            "user_api_key": r.api_key,
            "user_api_key_alias": r.key_alias,
            "user_api_key_user_id": r.user_id,
            "user_api_key_team_id": r.team_id,
            "user_api_key_org_id": r.organization_id,
            "user_api_key_end_user_id": r.end_user,
            "status": r.status,
        },
    })
}

/// A date bound: `YYYY-MM-DD` (the whole day, UTC, for an end bound) or RFC 3339.
pub(super) fn date_arg(text: &str, field: &str, end: bool) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::invalid(
            format!("`{field}` must be a date (YYYY-MM-DD) or an RFC 3339 timestamp."),
            field,
        )
    };
    let text = text.trim();
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad());
    }
    let mut parts = text.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    let d: u8 = d.parse().map_err(|_| bad())?;
    let month = time::Month::try_from(m).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
    let start = date.midnight().assume_utc().unix_timestamp() * 1000;
    Ok(if end { start + DAY_MS - 1 } else { start })
}

/// The stored token for a secret or a token.
pub(super) fn token_of(given: &str) -> String {
    let given = given.trim();
    if given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        given.to_ascii_lowercase()
    } else {
        hex::encode(crate::auth::hash_key(given))
    }
}

#[derive(Deserialize)]
struct LogsQuery {
    api_key: Option<String>,
    user_id: Option<String>,
    team_id: Option<String>,
    request_id: Option<String>,
    end_user: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    model: Option<String>,
    status: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

async fn spend_logs(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<LogsQuery>,
) -> Result<Json<Value>, ApiError> {
    // LiteLLM answers a bare list unless asked for pages.
    let paged = q.page.is_some() || q.page_size.is_some();
    let page = positive(q.page.as_deref(), "page", 1)?;
    let size = positive(q.page_size.as_deref(), "page_size", DEFAULT_PAGE_SIZE)?;
    if size > MAX_PAGE_SIZE {
        return Err(ApiError::invalid(
            format!("`page_size` must be at most {MAX_PAGE_SIZE}."),
            "page_size",
        ));
    }
    let status = nonempty(q.status);
    if let Some(s) = &status
        && s != "success"
        && s != "failure"
    {
        return Err(ApiError::invalid(
            "`status` must be `success` or `failure`.",
            "status",
        ));
    }
    let filter = SpendLogFilter {
        start_ms: nonempty(q.start_date)
            .map(|d| date_arg(&d, "start_date", false))
            .transpose()?,
        end_ms: nonempty(q.end_date)
            .map(|d| date_arg(&d, "end_date", true))
            .transpose()?,
        request_id: nonempty(q.request_id),
        api_key: nonempty(q.api_key).map(|k| token_of(&k)),
        user_id: nonempty(q.user_id),
        team_id: nonempty(q.team_id),
        organization_ids: None,
        end_user: nonempty(q.end_user),
        model: nonempty(q.model),
        status,
    };
    let scope = Scope::of(&app, &caller.identity);
    let (page, size) = if paged {
        (page, size)
    } else {
        (1, MAX_PAGE_SIZE)
    };
    let store = app.store.clone();
    let found = tokio::task::spawn_blocking(move || {
        store.spend_logs_within(&filter, |r| scope.admits(r), page, size)
    })
    .await
    .map_err(|e| ApiError::Internal {
        request_id: caller.origin.request_id.clone(),
        detail: e.to_string(),
    })??;
    let rows: Vec<Value> = found.rows.iter().map(row_view).collect();
    if !paged {
        return Ok(Json(Value::Array(rows)));
    }
    let total = usize::try_from(found.total).unwrap_or(usize::MAX);
    Ok(Json(json!({
        "data": rows,
        "total": found.total,
        "page": page,
        "page_size": size,
        "total_pages": total.div_ceil(size),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_whole_days_or_exact_instants() {
        let start = date_arg("2024-03-01", "start_date", false).unwrap_or(-1);
        let end = date_arg("2024-03-01", "end_date", true).unwrap_or(-1);
        assert_eq!(start, 1_709_251_200_000);
        assert_eq!(end, start + DAY_MS - 1);
        assert_eq!(
            date_arg("2024-03-01T00:00:01Z", "start_date", false).unwrap_or(-1),
            start + 1000
        );
        for bad in ["2024-13-01", "yesterday", "2024-02-30", ""] {
            assert!(date_arg(bad, "start_date", false).is_err(), "{bad}");
        }
    }
}
