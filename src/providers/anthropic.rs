//! Anthropic's Messages API as an upstream. Anthropic clients are passed straight through;
//! OpenAI clients get their replies translated (see `translate::anthropic_upstream`).

use super::client::{read_reply, send};
use super::openai::stream_error_event;
use super::sse::{self, SseSplitter};
use super::translate::anthropic_upstream;
use super::{ByteStream, Call, Dialect, IdleLimit, Reply, UpstreamError, Usage, UsageSlot};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEFAULT_VERSION: &str = "2023-06-01";

pub async fn messages(
    c: &Call<'_>,
    mut body: Map<String, Value>,
    reply_in: Dialect,
    client_wants_usage: bool,
) -> Result<Reply, UpstreamError> {
    // Always an Anthropic-shaped body here: the client's, or one translated from OpenAI.
    super::strip_anthropic_proxy_params(&mut body);
    body.insert("model".into(), Value::String(c.upstream_model.to_string()));
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let d = c.deployment;
    let version = c
        .headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(DEFAULT_VERSION);
    let payload = serde_json::to_vec(&body).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    let mut req = http::Request::post(format!("{}/v1/messages", d.api_base))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("anthropic-version", version);
    if let Some(beta) = c.headers.get("anthropic-beta") {
        req = req.header("anthropic-beta", beta);
    }
    if let Some(key) = &d.api_key {
        req = req.header("x-api-key", key.expose());
    }
    let req = req
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    let resp = send(c.client, req, c.timeout).await?;
    let model = c.deployment.model_name.clone();
    if stream {
        let idle = d.stream_timeout.unwrap_or(c.timeout);
        let upstream: ByteStream = Box::pin(
            resp.into_body()
                .into_data_stream()
                .map(|r| r.map_err(std::io::Error::other)),
        );
        let usage: UsageSlot = Arc::new(Mutex::new(None));
        let translator = match reply_in {
            Dialect::Anthropic => None,
            Dialect::OpenAi => Some(anthropic_upstream::StreamTranslator::new(
                model,
                client_wants_usage,
            )),
        };
        let stream = events(upstream, translator, usage.clone(), idle);
        return Ok(Reply::Stream { stream, usage });
    }
    let bytes = read_reply(resp.into_body(), c.timeout).await?;
    let parsed: Value = serde_json::from_slice(&bytes)
        .map_err(|e| UpstreamError::Protocol(format!("Anthropic reply is not JSON: {e}")))?;
    let usage = anthropic_upstream::usage_of(parsed.get("usage"));
    match reply_in {
        Dialect::Anthropic => Ok(Reply::Json { body: bytes, usage }),
        Dialect::OpenAi => {
            let translated = anthropic_upstream::reply_to_openai(&parsed);
            Ok(Reply::Json {
                body: Bytes::from(translated.to_string()),
                usage,
            })
        }
    }
}

struct Events {
    upstream: ByteStream,
    splitter: SseSplitter,
    translator: Option<anthropic_upstream::StreamTranslator>,
    usage: UsageSlot,
    seen: Usage,
    idle: IdleLimit,
    finished: bool,
}

impl Events {
    fn note_usage(&mut self, data: &Value) {
        let u = data
            .get("message")
            .and_then(|m| m.get("usage"))
            .or_else(|| data.get("usage"));
        if let Some(u) = anthropic_upstream::usage_of(u) {
            if u.prompt_tokens > 0 {
                self.seen.prompt_tokens = u.prompt_tokens;
            }
            if u.completion_tokens > 0 {
                self.seen.completion_tokens = u.completion_tokens;
            }
            if let Ok(mut slot) = self.usage.lock() {
                *slot = Some(self.seen);
            }
        }
    }

    fn error_event(&self, message: &str) -> Bytes {
        match self.translator {
            Some(_) => stream_error_event(message),
            None => {
                let e = serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}});
                sse::named_event("error", &e.to_string())
            }
        }
    }
}

fn events(
    upstream: ByteStream,
    translator: Option<anthropic_upstream::StreamTranslator>,
    usage: UsageSlot,
    idle: Duration,
) -> ByteStream {
    let state = Events {
        upstream,
        splitter: SseSplitter::default(),
        translator,
        usage,
        seen: Usage::default(),
        idle: IdleLimit::new(idle),
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.finished {
                return None;
            }
            match st.idle.next(&mut st.upstream).await {
                Err(_) => {
                    st.finished = true;
                    let e = st.error_event("upstream stream timed out");
                    return Some((Ok(e), st));
                }
                Ok(Some(Err(e))) => {
                    st.finished = true;
                    let e = st.error_event(&format!("upstream stream failed: {e}"));
                    return Some((Ok(e), st));
                }
                Ok(None) => {
                    st.finished = true;
                    let tail = st
                        .translator
                        .as_mut()
                        .map(|t| t.finish())
                        .unwrap_or_default();
                    if tail.is_empty() {
                        return None;
                    }
                    return Some((Ok(tail), st));
                }
                Ok(Some(Ok(chunk))) => {
                    let mut out = BytesMut::new();
                    for block in st.splitter.push(&chunk) {
                        let event = sse::parse(&block);
                        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                        let kind = event.event.map(str::to_string).or_else(|| {
                            data.get("type").and_then(Value::as_str).map(str::to_string)
                        });
                        if matches!(kind.as_deref(), Some("message_start" | "message_delta")) {
                            st.note_usage(&data);
                        }
                        match st.translator.as_mut() {
                            None => out.extend_from_slice(&block),
                            Some(t) => out.extend_from_slice(&t.event(kind.as_deref(), &data)),
                        }
                    }
                    if !out.is_empty() {
                        return Some((Ok(out.freeze()), st));
                    }
                }
            }
        }
    }))
}
