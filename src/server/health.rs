//! Public health probes (LiteLLM's paths), the Prometheus scrape (`/metrics`, guarded by
//! `general_settings.metrics_auth`) and the JSON answers for unknown routes.

use crate::api::ApiError;
use crate::app::{AppState, Phase};
use crate::auth::Principal;
use crate::config::MetricsAuth;
use crate::roles::GlobalRole;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health/liveliness", get(alive))
        .route("/health/liveness", get(alive))
        .route("/health/readiness", get(readiness))
        .route("/metrics", get(metrics))
}

async fn metrics(State(app): State<AppState>, headers: http::HeaderMap) -> Response {
    if let Err(refused) = may_scrape(&app, &headers).await {
        return refused.into_response();
    }
    // A stat of the database file, off the worker thread.
    let db_bytes = tokio::fs::metadata(app.metrics.data_file())
        .await
        .ok()
        .map(|m| m.len());
    for (id, cooling, in_flight) in app.router().deployment_states() {
        app.metrics.set_deployment(id, cooling, in_flight);
    }
    match app.metrics.encode(app.spend.dropped(), db_bytes) {
        Ok(mut text) => {
            budget_remaining(&app, &mut text);
            audit_index(&app, &mut text);
            (
                [(http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                text,
            )
                .into_response()
        }
        Err(_) => ApiError::Internal {
            request_id: crate::request::new_call_id(),
            detail: "encoding the metrics failed".into(),
        }
        .into_response(),
    }
}

/// `portcullis_budget_remaining_usd` for every organisation and team with a `max_budget`:
/// administrators create those, so the series stay few (keys and users, which are many and
/// come and go, are left out; `/key/info` and `/user/info` show theirs).
fn budget_remaining(app: &AppState, out: &mut String) {
    use std::fmt::Write as _;
    let now = crate::types::now_ms();
    let dir = &app.directory;
    let mut rows: Vec<(&str, String, f64)> = Vec::new();
    for o in dir.orgs() {
        if let Some(max) = o.limits.max_budget {
            let spent = o.meter.snapshot(&o.limits, now).spend;
            rows.push((
                "organization",
                o.record.organization_id.clone(),
                max - spent,
            ));
        }
    }
    for t in dir.teams() {
        if let Some(max) = t.limits.max_budget {
            let spent = t.meter.snapshot(&t.limits, now).spend;
            rows.push(("team", t.record.team_id.clone(), max - spent));
        }
    }
    if rows.is_empty() {
        return;
    }
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let _ = writeln!(
        out,
        "# HELP portcullis_budget_remaining_usd Budget left in the current period (USD).\n# TYPE portcullis_budget_remaining_usd gauge"
    );
    for (level, id, left) in rows {
        let id = id
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = writeln!(
            out,
            "portcullis_budget_remaining_usd{{level=\"{level}\",id=\"{id}\"}} {left}"
        );
    }
}

/// The audit log's head and how far the search index is behind it (from memory: the store
/// keeps its head, the indexer its position).
fn audit_index(app: &AppState, out: &mut String) {
    use std::fmt::Write as _;
    let (head, _) = app.store.appended().now();
    let _ = writeln!(
        out,
        "# HELP portcullis_audit_head_seq Sequence number of the newest audit entry.\n# TYPE portcullis_audit_head_seq gauge\nportcullis_audit_head_seq {head}"
    );
    if let Some(index) = &app.audit_index {
        let indexed = index.status().indexed();
        let _ = writeln!(
            out,
            "# HELP portcullis_audit_index_lag_entries Audit entries not yet searchable.\n# TYPE portcullis_audit_index_lag_entries gauge\nportcullis_audit_index_lag_entries {}\n# HELP portcullis_audit_index_healthy 1 unless the audit indexer is failing.\n# TYPE portcullis_audit_index_healthy gauge\nportcullis_audit_index_healthy {}",
            head.saturating_sub(indexed),
            u8::from(index.status().healthy())
        );
    }
}

/// Applies `metrics_auth`: 401 without a valid credential, 403 for one that is not enough.
async fn may_scrape(app: &AppState, headers: &http::HeaderMap) -> Result<(), ApiError> {
    let needed = app.metrics.auth;
    if needed == MetricsAuth::None {
        return Ok(());
    }
    let principal = app
        .auth
        .authenticate(headers)
        .await
        .map_err(ApiError::Auth)?;
    let allowed = match principal {
        Principal::Master => true,
        Principal::Key(_) | Principal::Jwt(_) if needed == MetricsAuth::MasterKey => false,
        Principal::Jwt(g) => {
            // A JWT reads like a key of its acting role: an admin or admin viewer may.
            let path = "/metrics";
            let class = crate::tenancy::access::classify(&http::Method::GET, path);
            let dir = &app.directory;
            let role = g.acting_role(dir);
            matches!(
                role,
                Some(GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer)
            ) && g
                .candidates(dir, None)
                .ok()
                .and_then(|keys| keys.first().cloned().cloned())
                .is_some_and(|k| {
                    crate::tenancy::access::check_route(dir, &k, role, class, path).is_ok()
                })
        }
        Principal::Key(k) => {
            let user = k
                .record
                .user_id
                .as_deref()
                .and_then(|u| app.directory.user(u));
            let admin = user.as_ref().is_some_and(|u| {
                !u.record.blocked
                    && matches!(
                        u.record.user_role,
                        GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer
                    )
            });
            // The key's own limits apply too: an admin's `llm_api` key, or one whose
            // `allowed_routes` leave /metrics out, may not scrape.
            let path = "/metrics";
            let class = crate::tenancy::access::classify(&http::Method::GET, path);
            admin
                && crate::tenancy::access::check_route(
                    &app.directory,
                    &k,
                    user.map(|u| u.record.user_role),
                    class,
                    path,
                )
                .is_ok()
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "This key may not read the metrics.".into(),
        ))
    }
}

async fn alive() -> Response {
    axum::Json("I'm alive!").into_response()
}

async fn readiness(State(app): State<AppState>) -> Response {
    let db_ok = app.store.healthy();
    let (status, word) = match app.phase() {
        Phase::Ready if !db_ok => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy"),
        Phase::Ready => (StatusCode::OK, "healthy"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
    };
    let body = json!({
        "status": word,
        "db": if db_ok { "connected" } else { "write_failed" },
        "cache": null,
        "litellm_version": env!("CARGO_PKG_VERSION"),
        "portcullis_version": env!("CARGO_PKG_VERSION"),
    });
    (status, axum::Json(body)).into_response()
}

pub async fn not_found() -> Response {
    let body = json!({"error": {"message": "Not found.", "type": "not_found_error", "param": null, "code": "404"}});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

pub async fn method_not_allowed() -> Response {
    let body = json!({"error": {"message": "Method not allowed on this route.", "type": "bad_request_error", "param": null, "code": "405"}});
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
