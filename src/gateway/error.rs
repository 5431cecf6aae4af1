//! Every failure of the LLM surfaces, and its one rendering per dialect: OpenAI's error envelope
//! on the OpenAI routes, Anthropic's on `/v1/messages`. Upstream errors keep the upstream's
//! status and, where it already speaks the client's dialect, its body.

use crate::auth::AuthError;
use crate::limits::{RateHeaders, Refusal, RefusalKind};
use crate::providers::{Dialect, UpstreamError};
use crate::request::BodyError;
use crate::tenancy::access::{Denial, DenialKind};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug)]
pub enum GatewayError {
    Body(BodyError),
    Invalid {
        message: String,
        param: Option<&'static str>,
    },
    Auth(AuthError),
    UnknownModel {
        model: String,
    },
    NoDeployments {
        model: String,
        retry_after: Duration,
    },
    Upstream(UpstreamError),
    /// A level of the key's chain refused it (blocked, model, route).
    Denied(Denial),
    /// A budget or rate limit has no headroom.
    Limited(Box<Refusal>),
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>, param: &'static str) -> Self {
        GatewayError::Invalid {
            message: message.into(),
            param: Some(param),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            GatewayError::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Body(BodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Body(BodyError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Body(_) | GatewayError::Invalid { .. } => StatusCode::BAD_REQUEST,
            GatewayError::Auth(e) if e.forbidden() => StatusCode::FORBIDDEN,
            GatewayError::Auth(_) => StatusCode::UNAUTHORIZED,
            GatewayError::UnknownModel { .. } => StatusCode::NOT_FOUND,
            GatewayError::NoDeployments { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Upstream(e) => match e {
                UpstreamError::Status { status, .. } => *status,
                UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                UpstreamError::Connect(_) | UpstreamError::Protocol(_) => StatusCode::BAD_GATEWAY,
                UpstreamError::Unsupported(_) => StatusCode::BAD_REQUEST,
            },
            GatewayError::Denied(d) => match d.kind {
                DenialKind::Blocked => StatusCode::UNAUTHORIZED,
                DenialKind::Model | DenialKind::Route => StatusCode::FORBIDDEN,
            },
            GatewayError::Limited(r) => match r.kind {
                // LiteLLM answers an exceeded budget with 400 `budget_exceeded`.
                RefusalKind::Budget { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::TOO_MANY_REQUESTS,
            },
        }
    }

    /// (OpenAI `type`, `code`) — the code is what scripts match on.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            GatewayError::Body(BodyError::TooLarge { .. }) => {
                ("invalid_request_error", "request_too_large")
            }
            GatewayError::Body(BodyError::Timeout) => ("invalid_request_error", "request_timeout"),
            GatewayError::Body(BodyError::Busy) => ("service_unavailable", "server_busy"),
            GatewayError::Body(_) => ("invalid_request_error", "invalid_json"),
            GatewayError::Invalid { .. } => ("invalid_request_error", "invalid_value"),
            GatewayError::Auth(e) if e.forbidden() => ("permission_error", e.code()),
            GatewayError::Auth(e) => ("authentication_error", e.code()),
            GatewayError::UnknownModel { .. } => ("invalid_request_error", "model_not_found"),
            GatewayError::NoDeployments { .. } => ("rate_limit_error", "no_deployments_available"),
            GatewayError::Upstream(e) => match e {
                UpstreamError::Status { .. } => ("upstream_error", "upstream_error"),
                UpstreamError::Timeout => ("timeout_error", "upstream_timeout"),
                UpstreamError::Connect(_) => ("upstream_error", "upstream_unreachable"),
                UpstreamError::Protocol(_) => ("upstream_error", "bad_upstream_response"),
                UpstreamError::Unsupported(_) => ("invalid_request_error", "unsupported_operation"),
            },
            GatewayError::Denied(d) => match d.kind {
                DenialKind::Blocked => ("authentication_error", "blocked"),
                DenialKind::Model => ("permission_error", "model_not_allowed"),
                DenialKind::Route => ("permission_error", "route_not_allowed"),
            },
            GatewayError::Limited(r) => match r.kind {
                RefusalKind::Budget { .. } => ("budget_exceeded", "budget_exceeded"),
                RefusalKind::Parallel { .. } => ("rate_limit_error", "max_parallel_requests"),
                RefusalKind::Rpm { .. } | RefusalKind::Tpm { .. } => {
                    ("rate_limit_error", "rate_limit_exceeded")
                }
            },
        }
    }

    fn message(&self) -> String {
        match self {
            GatewayError::Body(e) => e.to_string(),
            GatewayError::Invalid { message, .. } => message.clone(),
            GatewayError::Auth(e) => e.to_string(),
            GatewayError::UnknownModel { model } => {
                format!("The model `{model}` does not exist on this gateway.")
            }
            GatewayError::NoDeployments { model, .. } => {
                format!(
                    "No deployments available for model `{model}`: all are cooling down after failures."
                )
            }
            GatewayError::Upstream(e) => match e {
                UpstreamError::Status { status, body, .. } => upstream_message(body)
                    .unwrap_or_else(|| format!("The upstream provider answered {status}.")),
                UpstreamError::Timeout => "The upstream provider did not answer in time.".into(),
                UpstreamError::Connect(_) => "The upstream provider could not be reached.".into(),
                UpstreamError::Protocol(_) => {
                    "The upstream provider sent a reply that could not be understood.".into()
                }
                UpstreamError::Unsupported(m) => m.clone(),
            },
            GatewayError::Denied(d) => {
                format!("Access denied by the {} level: {}.", d.level, d.rule)
            }
            GatewayError::Limited(r) => r.to_string(),
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            GatewayError::Invalid { param, .. } => *param,
            GatewayError::UnknownModel { .. } => Some("model"),
            GatewayError::Denied(d) if d.kind == DenialKind::Model => Some("model"),
            _ => None,
        }
    }

    /// Counts the refusals the metrics break down: credentials, access rules, limits.
    pub fn observe(&self, metrics: &crate::metrics::Metrics) {
        match self {
            GatewayError::Auth(e) => metrics.auth_failed(e.code()),
            GatewayError::Denied(d) => metrics.access_denied(
                d.level,
                match d.kind {
                    DenialKind::Blocked => "blocked",
                    DenialKind::Model => "model",
                    DenialKind::Route => "route",
                },
            ),
            GatewayError::Limited(r) => metrics.limit_rejected(
                r.level,
                match r.kind {
                    RefusalKind::Budget { .. } => "budget",
                    RefusalKind::Rpm { .. } => "rpm",
                    RefusalKind::Tpm { .. } => "tpm",
                    RefusalKind::Parallel { .. } => "parallel",
                },
            ),
            GatewayError::Body(_)
            | GatewayError::Invalid { .. }
            | GatewayError::UnknownModel { .. }
            | GatewayError::NoDeployments { .. }
            | GatewayError::Upstream(_) => {}
        }
    }

    pub fn render(self, dialect: Dialect, call_id: &str) -> Response {
        let status = self.status();
        if let GatewayError::Upstream(
            UpstreamError::Connect(detail) | UpstreamError::Protocol(detail),
        ) = &self
        {
            // The detail may name internal hosts; it goes to the log once, not to the client.
            tracing::warn!(call_id, detail = %detail, "upstream failure");
        }
        let body = match (&self, dialect) {
            (GatewayError::Upstream(UpstreamError::Status { body, .. }), Dialect::OpenAi) if is_openai_error(body) => body.clone(),
            (GatewayError::Upstream(UpstreamError::Status { body, .. }), Dialect::Anthropic) if is_anthropic_error(body) => body.clone(),
            (_, Dialect::OpenAi) => {
                let (kind, code) = self.kind();
                Bytes::from(json!({"error": {"message": self.message(), "type": kind, "param": self.param(), "code": code}}).to_string())
            }
            (_, Dialect::Anthropic) => Bytes::from(
                json!({"type": "error", "error": {"type": anthropic_type(status), "message": self.message()}}).to_string(),
            ),
        };
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(call_id) {
            h.insert("x-litellm-call-id", v.clone());
            h.insert("x-request-id", v.clone());
            h.insert("request-id", v);
        }
        let retry_after = match &self {
            GatewayError::NoDeployments { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            GatewayError::Body(BodyError::Busy) => Some(1),
            GatewayError::Upstream(e) => e.retry_after().map(|d| d.as_secs().max(1)),
            GatewayError::Limited(r) => r
                .retry_after()
                .map(|d| d.as_secs_f64().ceil().max(1.0) as u64),
            _ => None,
        };
        if let GatewayError::Limited(r) = &self {
            rate_headers(h, &r.headers);
        }
        if let Some(secs) = retry_after {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let GatewayError::Body(
            BodyError::TooLarge { .. } | BodyError::Timeout | BodyError::Busy,
        ) = &self
        {
            // The rest of the body was never read, so the server may close this connection;
            // saying so stops the client from reusing it for its next request.
            h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// LiteLLM's (and OpenAI's) `x-ratelimit-*` headers, for the tightest level of each kind.
pub fn rate_headers(h: &mut http::HeaderMap, r: &RateHeaders) {
    // Named once: a header name given as text is parsed and validated on every insert.
    const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
    const REMAINING_REQUESTS: HeaderName =
        HeaderName::from_static("x-ratelimit-remaining-requests");
    const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
    const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
    for (name, value) in [
        (LIMIT_REQUESTS, r.limit_requests),
        (REMAINING_REQUESTS, r.remaining_requests),
        (LIMIT_TOKENS, r.limit_tokens),
        (REMAINING_TOKENS, r.remaining_tokens),
    ] {
        if let Some(v) = value {
            h.insert(name, HeaderValue::from(v));
        }
    }
}

fn upstream_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    e.get("message")
        .and_then(Value::as_str)
        .or(e.as_str())
        .map(str::to_string)
}

fn is_openai_error(body: &[u8]) -> bool {
    // Anthropic's envelope also has `error.message`; its top-level `"type": "error"` tells
    // them apart, so an Anthropic upstream's error is re-enveloped for OpenAI clients.
    serde_json::from_slice::<Value>(body).ok().is_some_and(|v| {
        v.get("error").is_some_and(|e| e.get("message").is_some())
            && v.get("type").and_then(Value::as_str) != Some("error")
    })
}

fn is_anthropic_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some("error"))
}

fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}
