//! The LLM surfaces: OpenAI's `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/models` (plus LiteLLM's bare and Azure-style aliases) and Anthropic's `/v1/messages`.
//! Each request is authenticated, checked against the key's models, and handed to the router;
//! the reply streams back untouched except for the headers LiteLLM clients read.

mod access;
mod error;
mod validate;

pub use access::may_use;
pub use error::GatewayError;

use crate::app::AppState;
use crate::providers::{Dialect, HttpClient, Operation, Reply};

/// The upstream pool of the worker thread serving the request (absent outside the server).
type Client = Option<Extension<HttpClient>>;
use crate::request::{self, new_call_id};
use crate::router::{RouteCall, RouteError, Routed};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::json;
use std::time::Instant;

pub fn routes() -> Router<AppState> {
    use Dialect::{Anthropic, OpenAi};
    use Operation::{Chat, Completion, Embedding};
    Router::new()
        .route("/v1/chat/completions", llm(Chat, OpenAi))
        .route("/chat/completions", llm(Chat, OpenAi))
        .route("/v1/completions", llm(Completion, OpenAi))
        .route("/completions", llm(Completion, OpenAi))
        .route("/v1/embeddings", llm(Embedding, OpenAi))
        .route("/embeddings", llm(Embedding, OpenAi))
        .route("/v1/messages", llm(Chat, Anthropic))
        .route("/v1/models", get(list_models))
        .route("/models", get(list_models))
        .route("/v1/models/{*model}", get(get_model))
        .route("/models/{*model}", get(get_model))
        .route("/openai/deployments/{model}/chat/completions", azure(Chat))
        .route("/openai/deployments/{model}/completions", azure(Completion))
        .route("/openai/deployments/{model}/embeddings", azure(Embedding))
}

/// A POST route for one operation in one dialect.
fn llm(op: Operation, dialect: Dialect) -> MethodRouter<AppState> {
    post(
        move |State(app): State<AppState>, client: Client, headers: HeaderMap, body: Body| {
            serve(app, client, headers, body, op, dialect, None)
        },
    )
}

/// An Azure-style route: the model is the deployment named in the path.
fn azure(op: Operation) -> MethodRouter<AppState> {
    post(
        move |State(app): State<AppState>,
              model: Result<Path<String>, PathRejection>,
              client: Client,
              headers: HeaderMap,
              body: Body| {
            let model = model.map(|Path(m)| m).map_err(|r| r.body_text());
            serve(app, client, headers, body, op, Dialect::OpenAi, Some(model))
        },
    )
}

async fn serve(
    app: AppState,
    client: Client,
    headers: HeaderMap,
    body: Body,
    op: Operation,
    dialect: Dialect,
    path_model: Option<Result<String, String>>,
) -> Response {
    let started = Instant::now();
    let call_id = new_call_id();
    let mut failed_at: Option<(String, u32)> = None;
    let client = client.as_ref().map_or(&app.upstream, |Extension(c)| c);
    match route(
        &app,
        client,
        &headers,
        body,
        op,
        dialect,
        path_model,
        &mut failed_at,
    )
    .await
    {
        Ok(routed) => respond(routed, &call_id, started),
        Err(e) => {
            let mut resp = e.render(dialect, &call_id);
            // Which deployment failed last, and how far the fallbacks went: what an operator
            // needs to read a failure.
            if let Some((deployment_id, fallbacks)) = failed_at {
                let h = resp.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&deployment_id) {
                    h.insert("x-litellm-model-id", v);
                }
                h.insert(
                    "x-litellm-attempted-fallbacks",
                    HeaderValue::from(fallbacks),
                );
            }
            resp
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn route(
    app: &AppState,
    client: &HttpClient,
    headers: &HeaderMap,
    body: Body,
    op: Operation,
    dialect: Dialect,
    path_model: Option<Result<String, String>>,
    failed_at: &mut Option<(String, u32)>,
) -> Result<Routed, GatewayError> {
    let principal = app.auth.authenticate(headers).map_err(GatewayError::Auth)?;
    // The permit rides until routing is over: the body stays in memory that long.
    let (mut body, _permit) = request::json_object(headers, body, &app.body_limits)
        .await
        .map_err(GatewayError::Body)?;
    if let Some(m) = path_model {
        let m = m.map_err(|e| GatewayError::invalid(e, "model"))?;
        body.insert("model".into(), serde_json::Value::String(m));
    }
    let model = validate::request(op, dialect, &body)?.to_string();
    if !may_use(&principal, &model, &app.router) {
        return Err(GatewayError::ModelNotAllowed { model });
    }
    let target = app
        .router
        .resolve(&model)
        .ok_or(GatewayError::UnknownModel {
            model: model.clone(),
        })?;
    let stream = body
        .get("stream")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let may_use_model = |name: &str| may_use(&principal, name, &app.router);
    app.router
        .execute(RouteCall {
            client,
            target: &target,
            op,
            dialect,
            body: &body,
            headers,
            stream,
            may_use: &may_use_model,
        })
        .await
        .map_err(|e| match e {
            RouteError::NoDeployments { model, retry_after } => {
                GatewayError::NoDeployments { model, retry_after }
            }
            RouteError::Upstream {
                error,
                deployment_id,
                attempted_fallbacks,
            } => {
                *failed_at = Some((deployment_id, attempted_fallbacks));
                GatewayError::Upstream(error)
            }
        })
}

const CALL_ID: HeaderName = HeaderName::from_static("x-litellm-call-id");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const MODEL_ID: HeaderName = HeaderName::from_static("x-litellm-model-id");
const MODEL_GROUP: HeaderName = HeaderName::from_static("x-litellm-model-group");
const API_BASE: HeaderName = HeaderName::from_static("x-litellm-model-api-base");
const FALLBACKS: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");
const RETRIES: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
const OVERHEAD: HeaderName = HeaderName::from_static("x-litellm-overhead-duration-ms");

fn respond(routed: Routed, call_id: &str, started: Instant) -> Response {
    let overhead = started.elapsed().saturating_sub(routed.upstream_time);
    let mut resp = match routed.reply {
        Reply::Json { body, .. } => {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Reply::Stream { stream, .. } => {
            let mut r = Body::from_stream(stream).into_response();
            let h = r.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            r
        }
    };
    let h = resp.headers_mut();
    h.reserve(10);
    if let Ok(id) = HeaderValue::from_str(call_id) {
        h.insert(CALL_ID.clone(), id.clone());
        // The SDKs expose these as `_request_id` (OpenAI) and `request_id` (Anthropic).
        h.insert(X_REQUEST_ID.clone(), id.clone());
        h.insert(REQUEST_ID.clone(), id);
    }
    let named = &routed.deployment.headers;
    for (name, value) in [
        (&MODEL_ID, &named.model_id),
        (&MODEL_GROUP, &named.model_group),
        (&API_BASE, &named.api_base),
    ] {
        if let Some(v) = value {
            h.insert(name.clone(), v.clone());
        }
    }
    h.insert(
        FALLBACKS.clone(),
        HeaderValue::from(routed.attempted_fallbacks),
    );
    h.insert(RETRIES.clone(), HeaderValue::from(routed.attempted_retries));
    let overhead_ms = format!("{:.3}", overhead.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&overhead_ms) {
        h.insert(OVERHEAD.clone(), v);
    }
    resp
}

async fn list_models(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let call_id = new_call_id();
    let principal = match app.auth.authenticate(&headers) {
        Ok(p) => p,
        Err(e) => return GatewayError::Auth(e).render(Dialect::OpenAi, &call_id),
    };
    let data: Vec<_> = app
        .router
        .groups()
        .iter()
        .filter(|g| may_use(&principal, &g.name, &app.router))
        .map(|g| model_object(&g.name))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn get_model(
    State(app): State<AppState>,
    model: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let call_id = new_call_id();
    let model = match model {
        Ok(Path(m)) => m,
        Err(r) => {
            return GatewayError::invalid(r.body_text(), "model").render(Dialect::OpenAi, &call_id);
        }
    };
    let principal = match app.auth.authenticate(&headers) {
        Ok(p) => p,
        Err(e) => return GatewayError::Auth(e).render(Dialect::OpenAi, &call_id),
    };
    // A model the caller may not use is reported as absent, not as forbidden.
    if app.router.resolve(&model).is_none() || !may_use(&principal, &model, &app.router) {
        return GatewayError::UnknownModel { model }.render(Dialect::OpenAi, &call_id);
    }
    axum::Json(model_object(&model)).into_response()
}

fn model_object(name: &str) -> serde_json::Value {
    json!({"id": name, "object": "model", "created": 1_677_610_602, "owned_by": "openai"})
}
