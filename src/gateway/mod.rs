//! The LLM surfaces: OpenAI's `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/models` (plus LiteLLM's bare and Azure-style aliases) and Anthropic's `/v1/messages`.
//! Each request is authenticated, checked against the key's models, and handed to the router;
//! the reply streams back untouched except for the headers LiteLLM clients read.

mod error;
mod jwt;
mod metering;
mod validate;

pub use error::GatewayError;

use crate::app::AppState;
use crate::auth::Principal;
use crate::limits::{Admission, pricing};
use crate::metrics::{Metrics, ModelMetrics};
use crate::providers::{Dialect, HttpClient, Operation, Reply};
use crate::store::usage::SpendLogRow;
use crate::tenancy::access::{self, RouteClass};
use metering::Meterage;

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
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// The LLM call routes: template, operation, dialect, and whether the model is named in the
/// path (Azure-style). A route's index here is how the metrics name it.
const LLM: [(&str, Operation, Dialect, bool); 10] = {
    use Dialect::{Anthropic, OpenAi};
    use Operation::{Chat, Completion, Embedding};
    [
        ("/v1/chat/completions", Chat, OpenAi, false),
        ("/chat/completions", Chat, OpenAi, false),
        ("/v1/completions", Completion, OpenAi, false),
        ("/completions", Completion, OpenAi, false),
        ("/v1/embeddings", Embedding, OpenAi, false),
        ("/embeddings", Embedding, OpenAi, false),
        ("/v1/messages", Chat, Anthropic, false),
        (
            "/openai/deployments/{model}/chat/completions",
            Chat,
            OpenAi,
            true,
        ),
        (
            "/openai/deployments/{model}/completions",
            Completion,
            OpenAi,
            true,
        ),
        (
            "/openai/deployments/{model}/embeddings",
            Embedding,
            OpenAi,
            true,
        ),
    ]
};

/// The templates of the LLM call routes, in the order the metrics number them.
pub const LLM_ROUTES: [&str; LLM.len()] = {
    let mut out = [""; LLM.len()];
    let mut i = 0;
    while i < LLM.len() {
        out[i] = LLM[i].0;
        i += 1;
    }
    out
};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/v1/models", get(list_models))
        .route("/models", get(list_models))
        .route("/v1/models/{*model}", get(get_model))
        .route("/models/{*model}", get(get_model));
    for (i, (path, op, dialect, in_path)) in LLM.into_iter().enumerate() {
        router = router.route(
            path,
            if in_path {
                azure(i, op)
            } else {
                llm(i, op, dialect)
            },
        );
    }
    router
}

/// A POST route for one operation in one dialect.
fn llm(route: usize, op: Operation, dialect: Dialect) -> MethodRouter<AppState> {
    post(
        move |State(app): State<AppState>,
              client: Client,
              uri: http::Uri,
              headers: HeaderMap,
              body: Body| {
            let call = Route {
                index: route,
                op,
                dialect,
            };
            serve(app, client, uri, headers, body, call, None)
        },
    )
}

/// An Azure-style route: the model is the deployment named in the path.
fn azure(route: usize, op: Operation) -> MethodRouter<AppState> {
    post(
        move |State(app): State<AppState>,
              model: Result<Path<String>, PathRejection>,
              client: Client,
              uri: http::Uri,
              headers: HeaderMap,
              body: Body| {
            let model = model.map(|Path(m)| m).map_err(|r| r.body_text());
            let call = Route {
                index: route,
                op,
                dialect: Dialect::OpenAi,
            };
            serve(app, client, uri, headers, body, call, Some(model))
        },
    )
}

/// Which LLM route a call came in on.
#[derive(Clone, Copy)]
struct Route {
    /// Index into [`LLM_ROUTES`].
    index: usize,
    op: Operation,
    dialect: Dialect,
}

async fn serve(
    app: AppState,
    client: Client,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
    on: Route,
    path_model: Option<Result<String, String>>,
) -> Response {
    let started = Instant::now();
    let (op, dialect) = (on.op, on.dialect);
    let call_id = new_call_id();
    let mut failed_at: Option<(String, u32)> = None;
    let mut observed: Option<Arc<ModelMetrics>> = None;
    let client = client.as_ref().map_or(&app.upstream, |Extension(c)| c);
    let call = Incoming {
        path: uri.path(),
        headers: &headers,
        op,
        dialect,
        call_id: &call_id,
        started,
    };
    let routed = route(
        &app,
        client,
        &call,
        body,
        path_model,
        &mut failed_at,
        &mut observed,
    )
    .await;
    let model = observed.as_deref().unwrap_or(app.metrics.unknown());
    match routed {
        Ok((routed, meterage)) => {
            // A stream's duration is recorded when it ends, by the metering wrapper.
            let stream = matches!(routed.reply, Reply::Stream { .. });
            let resp = respond(routed, meterage, &call_id, started, &app.metrics);
            model.request(on.index, resp.status().as_u16());
            if !stream {
                model.duration(started.elapsed());
            }
            resp
        }
        Err(e) => {
            e.observe(&app.metrics);
            let mut resp = e.render(dialect, &call_id);
            model.request(on.index, resp.status().as_u16());
            model.duration(started.elapsed());
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

/// What a call arrived as.
struct Incoming<'a> {
    path: &'a str,
    headers: &'a HeaderMap,
    op: Operation,
    dialect: Dialect,
    call_id: &'a str,
    started: Instant,
}

fn call_type(op: Operation, dialect: Dialect) -> &'static str {
    match (op, dialect) {
        (_, Dialect::Anthropic) => "anthropic_messages",
        (Operation::Chat, _) => "acompletion",
        (Operation::Completion, _) => "atext_completion",
        (Operation::Embedding, _) => "aembedding",
    }
}

/// The end user a call is made for: the body's `user`, or LiteLLM's header.
fn end_user(
    body: &serde_json::Map<String, serde_json::Value>,
    headers: &HeaderMap,
) -> Option<String> {
    headers
        .get("x-litellm-end-user-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| body.get("user").and_then(serde_json::Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

async fn route(
    app: &AppState,
    client: &HttpClient,
    call: &Incoming<'_>,
    body: Body,
    path_model: Option<Result<String, String>>,
    failed_at: &mut Option<(String, u32)>,
    observed: &mut Option<Arc<ModelMetrics>>,
) -> Result<(Routed, Meterage), GatewayError> {
    let (headers, op, dialect) = (call.headers, call.op, call.dialect);
    let principal = crate::api::jwt::authenticate(app, headers)
        .await
        .map_err(GatewayError::Auth)?;
    // The permit rides until routing is over: the body stays in memory that long.
    let (mut body, permit) = request::json_object(headers, body, &app.body_limits)
        .await
        .map_err(GatewayError::Body)?;
    let body_bytes = permit.bytes();
    if let Some(m) = path_model {
        let m = m.map_err(|e| GatewayError::invalid(e, "model"))?;
        body.insert("model".into(), serde_json::Value::String(m));
    }
    let model = validate::request(op, dialect, &body)?.to_string();
    // Resolved before the access checks only so that a refusal is counted under its model
    // group; an unknown model is still reported after them, as before.
    // One routing table for the whole call, even if SIGHUP swaps it meanwhile.
    let router = app.router();
    let target = router.resolve(&model);
    if let Some(t) = &target {
        *observed = Some(app.metrics.model(&t.group.name).clone());
    }
    let mut end_user = end_user(&body, headers);
    let dir = &app.directory;
    let chain = match &principal {
        Principal::Master => None,
        Principal::Key(k) => {
            let role = k
                .record
                .user_id
                .as_deref()
                .and_then(|u| dir.user(u))
                .map(|u| u.record.user_role);
            access::check_route(dir, k, role, RouteClass::Llm, call.path)
                .map_err(GatewayError::Denied)?;
            let chain = access::chain(dir, k, end_user.as_deref()).map_err(GatewayError::Denied)?;
            access::check_model(dir, &chain, &model).map_err(GatewayError::Denied)?;
            Some(chain)
        }
        Principal::Jwt(g) => {
            // An end user the token names wins over the request's: it was signed.
            if g.end_user.is_some() {
                end_user.clone_from(&g.end_user);
            }
            Some(jwt::chain(
                dir,
                g,
                headers,
                end_user.as_deref(),
                call.path,
                &model,
            )?)
        }
    };
    let target = target.ok_or(GatewayError::UnknownModel {
        model: model.clone(),
    })?;
    let stream = body
        .get("stream")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let prompt_estimate = pricing::estimate_prompt_tokens(body_bytes);
    let admission: Option<Admission> = match &chain {
        Some(chain) => {
            let estimate = estimate_cost(&target, &body, body_bytes);
            Some(
                dir.ledger()
                    .admit(&access::levels(chain), estimate, crate::types::now_ms())
                    .map_err(|r| GatewayError::Limited(r.into()))?,
            )
        }
        None => None,
    };
    let key = chain.as_ref().map(|c| &c.key.record);
    let meterage = Meterage {
        admission,
        model: observed
            .clone()
            .unwrap_or_else(|| app.metrics.unknown().clone()),
        started: call.started,
        queue: app.spend.clone(),
        row: SpendLogRow {
            request_id: call.call_id.to_string(),
            call_type: call_type(op, dialect).to_string(),
            api_key: key.map(|k| k.token.clone()).unwrap_or_default(),
            key_alias: key.and_then(|k| k.key_alias.clone()),
            user_id: key.and_then(|k| k.user_id.clone()),
            team_id: key.and_then(|k| k.team_id.clone()),
            organization_id: chain
                .as_ref()
                .and_then(|c| c.orgs.first())
                .map(|o| o.record.organization_id.clone()),
            end_user,
            model: model.clone(),
            start_ms: crate::types::now_ms(),
            status: "success".into(),
            stream,
            ..Default::default()
        },
        prompt_estimate,
    };
    let may_use_model = |name: &str| match &chain {
        None => true,
        Some(c) => access::check_model(dir, c, name).is_ok(),
    };
    let routed = router
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
        .await;
    match routed {
        Ok(r) => Ok((r, meterage)),
        Err(e) => {
            let mut failed = meterage;
            failed.row.status = "failure".into();
            failed.finish(None, None, 0);
            Err(match e {
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
    }
}

/// The most this call can cost, to reserve against budgets: the prompt guess plus the
/// requested `max_tokens` (or a default) at the dearest deployment of the group.
fn estimate_cost(
    target: &crate::router::Target,
    body: &serde_json::Map<String, serde_json::Value>,
    body_bytes: usize,
) -> f64 {
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|f| body.get(*f).and_then(serde_json::Value::as_u64));
    target
        .group
        .members
        .iter()
        .map(|m| {
            let d = &m.deployment;
            pricing::estimate_cost(
                body_bytes,
                max_tokens,
                d.input_cost_per_token,
                d.output_cost_per_token,
                &d.upstream_model,
            )
        })
        .fold(0.0, f64::max)
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
const ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

fn respond(
    routed: Routed,
    meterage: Meterage,
    call_id: &str,
    started: Instant,
    metrics: &Metrics,
) -> Response {
    let overhead = started.elapsed().saturating_sub(routed.upstream_time);
    metrics.overhead(overhead);
    let rate = meterage.admission.as_ref().map(Admission::headers);
    // Sized for every header set below: growing a header map is a reallocation and a rehash.
    let mut headers = HeaderMap::with_capacity(24);
    let h = &mut headers;
    let body = match routed.reply {
        Reply::Json { body, usage } => {
            meterage.finish(Some(&routed.deployment), usage, 0);
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Body::from(body)
        }
        Reply::Stream { stream, usage } => {
            let stream = metering::metered(stream, meterage, usage, routed.deployment.clone());
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            h.insert(ACCEL_BUFFERING, HeaderValue::from_static("no"));
            Body::from_stream(stream)
        }
    };
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
    if let Some(rate) = &rate {
        error::rate_headers(h, rate);
    }
    let overhead_ms = format!("{:.3}", overhead.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&overhead_ms) {
        h.insert(OVERHEAD.clone(), v);
    }
    let mut resp = Response::new(body);
    *resp.headers_mut() = headers;
    resp
}

/// The caller of a model listing, refused if its key may not use LLM routes at all.
async fn model_caller(
    app: &AppState,
    headers: &HeaderMap,
    path: &str,
) -> Result<Principal, GatewayError> {
    let dir = &app.directory;
    let checked = crate::api::jwt::authenticate(app, headers)
        .await
        .map_err(GatewayError::Auth)
        .and_then(|principal| {
            match &principal {
                Principal::Master => {}
                Principal::Key(k) => {
                    let role = k
                        .record
                        .user_id
                        .as_deref()
                        .and_then(|u| dir.user(u))
                        .map(|u| u.record.user_role);
                    access::check_route(dir, k, role, RouteClass::Llm, path)
                        .map_err(GatewayError::Denied)?;
                    // A key whose chain is blocked (a deactivated user, a blocked team...) may
                    // call no model, so it is refused here as on a call, not shown an empty list.
                    access::chain(dir, k, None).map_err(GatewayError::Denied)?;
                }
                Principal::Jwt(g) => jwt::may_call(dir, g, headers, path)?,
            }
            Ok(principal)
        });
    if let Err(e) = &checked {
        e.observe(&app.metrics);
    }
    checked
}

async fn list_models(State(app): State<AppState>, uri: http::Uri, headers: HeaderMap) -> Response {
    let call_id = new_call_id();
    let principal = match model_caller(&app, &headers, uri.path()).await {
        Ok(p) => p,
        Err(e) => return e.render(Dialect::OpenAi, &call_id),
    };
    let data: Vec<_> = app
        .router()
        .groups()
        .iter()
        .filter(|g| model_visible(&app, &principal, &headers, &g.name))
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
    let principal = match model_caller(&app, &headers, "/v1/models").await {
        Ok(p) => p,
        Err(e) => return e.render(Dialect::OpenAi, &call_id),
    };
    // A model the caller may not use is reported as absent, not as forbidden.
    if app.router().resolve(&model).is_none() || !model_visible(&app, &principal, &headers, &model)
    {
        return GatewayError::UnknownModel { model }.render(Dialect::OpenAi, &call_id);
    }
    axum::Json(model_object(&model)).into_response()
}

/// Whether a caller may use a model: what `/v1/models` lists.
fn model_visible(app: &AppState, principal: &Principal, headers: &HeaderMap, model: &str) -> bool {
    let dir = &app.directory;
    match principal {
        Principal::Master => true,
        Principal::Key(k) => {
            access::chain(dir, k, None).is_ok_and(|c| access::check_model(dir, &c, model).is_ok())
        }
        Principal::Jwt(g) => jwt::may_use(dir, g, headers, model),
    }
}

fn model_object(name: &str) -> serde_json::Value {
    json!({"id": name, "object": "model", "created": 1_677_610_602, "owned_by": "openai"})
}
