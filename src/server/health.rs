//! Public health probes (LiteLLM's paths) and the JSON answers for unknown routes.

use crate::app::{AppState, Phase};
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
