//! Upstream LLM providers: how one call to one deployment is made and how its answer comes back.
//!
//! Every call enters in the caller's dialect (OpenAI or Anthropic) and its reply leaves in that
//! same dialect; translation happens here and nowhere else. Streams are forwarded event by event
//! as they arrive, never collected. Retrying, choosing deployments and error envelopes belong to
//! the router and the gateway, not here.

mod anthropic;
mod client;
mod mock;
mod openai;
pub mod sse;
mod stream;
pub mod translate;

pub use client::{HttpClient, http_client};
pub use openai::request_body as openai_request_body;
pub use stream::{ByteStream, IdleLimit, with_guard};

use crate::config::{Deployment, ProviderKind};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Completion,
    Embedding,
}

/// The API shape a client speaks; replies are produced in the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// Filled in when a stream's final usage arrives; read once the stream is over.
pub type UsageSlot = Arc<Mutex<Option<Usage>>>;

pub enum Reply {
    Json {
        body: Bytes,
        usage: Option<Usage>,
    },
    Stream {
        stream: ByteStream,
        usage: UsageSlot,
    },
}

#[derive(Debug)]
pub enum UpstreamError {
    /// The provider answered with an error status; its body is kept to pass through.
    Status {
        status: StatusCode,
        body: Bytes,
        retry_after: Option<Duration>,
    },
    Timeout,
    Connect(String),
    /// The provider answered something we could not understand.
    Protocol(String),
    /// The deployment's provider cannot do this operation at all.
    Unsupported(String),
}

impl UpstreamError {
    /// Failures worth another attempt (here or on another deployment).
    pub fn retryable(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            UpstreamError::Timeout | UpstreamError::Connect(_) => true,
            UpstreamError::Protocol(_) | UpstreamError::Unsupported(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Everything one attempt needs.
pub struct Call<'a> {
    pub client: &'a HttpClient,
    pub deployment: &'a Deployment,
    /// The model name to send upstream (a wildcard deployment fills in the requested name).
    pub upstream_model: &'a str,
    pub timeout: Duration,
    /// The client's request headers, for the few that are forwarded (`anthropic-version`, `-beta`).
    pub headers: &'a HeaderMap,
}

/// Keys LiteLLM's clients send that are for the proxy, never for the provider.
const PROXY_ONLY_PARAMS: &[&str] = &[
    "metadata",
    "litellm_metadata",
    "mock_response",
    "num_retries",
    "fallbacks",
    "caching",
    "tags",
    "litellm_logging_obj",
    "user_api_key",
];

/// Removes the proxy's own keys from an Anthropic Messages body (an OpenAI-shaped one is
/// written without them by the OpenAI provider), where `metadata` (`{"user_id"}`) is
/// Anthropic's own field and is kept: LiteLLM clients put the proxy's metadata in `litellm_metadata` there, and
/// the OpenAI → Anthropic translation puts the OpenAI `user` in `metadata.user_id`.
pub fn strip_anthropic_proxy_params(body: &mut Map<String, Value>) {
    for k in PROXY_ONLY_PARAMS.iter().filter(|k| **k != "metadata") {
        body.remove(*k);
    }
}

/// Makes one call to one deployment.
pub async fn call(
    c: &Call<'_>,
    op: Operation,
    dialect: Dialect,
    body: &Map<String, Value>,
) -> Result<Reply, UpstreamError> {
    match (dialect, c.deployment.provider) {
        (Dialect::Anthropic, ProviderKind::Anthropic) => {
            anthropic::messages(c, body.clone(), Dialect::Anthropic, true).await
        }
        (Dialect::Anthropic, _) => {
            let inner = translate::anthropic_surface::request_to_openai(body.clone())
                .map_err(UpstreamError::Unsupported)?;
            let reply = Box::pin(call(c, op, Dialect::OpenAi, &inner)).await?;
            translate::anthropic_surface::reply_from_openai(reply)
        }
        (Dialect::OpenAi, ProviderKind::Anthropic) => match op {
            Operation::Chat => {
                let wants_usage = openai::wants_usage(body);
                let translated = translate::anthropic_upstream::request_from_openai(body)
                    .map_err(UpstreamError::Unsupported)?;
                anthropic::messages(c, translated, Dialect::OpenAi, wants_usage).await
            }
            _ => Err(UpstreamError::Unsupported(
                "Anthropic deployments only serve chat completions".into(),
            )),
        },
        (Dialect::OpenAi, ProviderKind::OpenAi | ProviderKind::Azure) => {
            openai::call(c, op, body).await
        }
        (Dialect::OpenAi, ProviderKind::Mock) => mock::call(c, op, body).await,
    }
}

/// Reads `retry-after` (seconds, possibly fractional) or `retry-after-ms`.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 86_400.0)
        .map(Duration::from_secs_f64)
}
