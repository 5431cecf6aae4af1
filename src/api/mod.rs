//! The management API (LiteLLM-compatible routes and shapes): virtual keys today; users, teams
//! and organisations as they land. Every change goes through the store's audited write path and
//! then updates the in-memory caches, under one lock so concurrent edits cannot reorder them.

mod audit;
mod caller;
mod customers;
mod error;
mod explain;
mod fields;
mod key_fields;
mod key_policy;
mod keys;
mod orgs;
mod spend;
mod teams;
mod users;
mod write;

pub use caller::{Caller, PeerAddr};
pub use error::ApiError;

use crate::app::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    keys::routes()
        .merge(audit::routes())
        .merge(users::routes())
        .merge(teams::routes())
        .merge(orgs::routes())
        .merge(customers::routes())
        .merge(spend::routes())
        .merge(explain::routes())
}

/// A request body as a JSON object (an empty body is an empty object).
async fn body_of(
    app: &AppState,
    headers: &http::HeaderMap,
    body: axum::body::Body,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    crate::request::json_object(headers, body, &app.body_limits)
        .await
        .map(|(map, _permit)| map)
        .map_err(ApiError::Body)
}

/// The audit entry of a change to one object, from its JSON views before and after and where it
/// sits (which decides who may read the entry). Live counters (`spend`) are left out: an entry
/// records the object, not its meter.
fn audit_change(
    action: &str,
    table: &str,
    object_id: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    within: crate::audit::Within,
) -> crate::audit::Change {
    let text = |mut v: serde_json::Value| {
        if let Some(m) = v.as_object_mut() {
            m.remove("spend");
        }
        v.to_string()
    };
    crate::audit::Change {
        action: action.to_string(),
        table_name: table.to_string(),
        object_id,
        before_value: before.map(text).unwrap_or_default(),
        updated_values: after.map(text).unwrap_or_default(),
        within,
    }
}

/// The caller's spend view of a meter: current-period spend.
fn spend(meter: &crate::limits::Meter, limits: &crate::limits::Limits) -> f64 {
    meter.snapshot(limits, crate::types::now_ms()).spend
}

/// Query parameters whose rejection is a management error (400 in the `{error}` envelope)
/// rather than axum's plain-text answer.
pub struct Params<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Params(q))
            .map_err(|r| ApiError::invalid(r.body_text(), "query"))
    }
}
