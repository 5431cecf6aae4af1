//! OpenAI and every OpenAI-compatible server (vLLM, Ollama, Groq...), plus Azure OpenAI's URL
//! and header shape. Requests and replies pass through with only the model name replaced; a
//! stream is forwarded event by event, with its usage read on the way past.

use super::client::{read_reply, send};
use super::sse::{self, SseSplitter};
use super::{ByteStream, Call, IdleLimit, Operation, Reply, UpstreamError, Usage, UsageSlot};
use crate::config::ProviderKind;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn path_of(op: Operation) -> &'static str {
    match op {
        Operation::Chat => "chat/completions",
        Operation::Completion => "completions",
        Operation::Embedding => "embeddings",
    }
}

pub fn wants_stream(body: &Map<String, Value>) -> bool {
    body.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

pub fn wants_usage(body: &Map<String, Value>) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub async fn call(
    c: &Call<'_>,
    op: Operation,
    body: &Map<String, Value>,
) -> Result<Reply, UpstreamError> {
    let stream = op != Operation::Embedding && wants_stream(body);
    let client_wants_usage = wants_usage(body);
    let d = c.deployment;
    let url = match d.provider {
        ProviderKind::Azure => format!(
            "{}/openai/deployments/{}/{}?api-version={}",
            d.api_base,
            c.upstream_model,
            path_of(op),
            d.api_version.as_deref().unwrap_or_default()
        ),
        _ => format!("{}/{}", d.api_base, path_of(op)),
    };
    // A stream asks for the final usage chunk so that every stream can be costed; it is
    // removed again below if the client did not ask for it.
    let payload = request_body(body, c.upstream_model, stream)
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    let mut req = http::Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
    if let Some(key) = &d.api_key {
        req = match d.provider {
            ProviderKind::Azure => req.header("api-key", key.expose()),
            _ => req.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", key.expose()),
            ),
        };
    }
    if stream {
        req = req.header(http::header::ACCEPT, "text/event-stream");
    }
    let req = req
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    let resp = send(c.client, req, c.timeout).await?;
    let is_sse = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if stream && is_sse {
        let idle = d.stream_timeout.unwrap_or(c.timeout);
        let upstream = resp
            .into_body()
            .into_data_stream()
            .map(|r| r.map_err(std::io::Error::other));
        let usage: UsageSlot = Arc::new(Mutex::new(None));
        let stream = passthrough(Box::pin(upstream), client_wants_usage, usage.clone(), idle);
        return Ok(Reply::Stream { stream, usage });
    }
    let bytes = read_reply(resp.into_body(), c.timeout).await?;
    let usage = usage_of(&bytes);
    Ok(Reply::Json { body: bytes, usage })
}

/// The request body an OpenAI-compatible upstream gets for the client's `body`: proxy-only
/// keys left out, `model` set, and with `ask_usage` the final usage chunk asked for.
pub fn request_body(
    body: &Map<String, Value>,
    model: &str,
    ask_usage: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(
        &mut out,
        &UpstreamBody {
            body,
            model,
            ask_usage,
        },
    )?;
    Ok(out)
}

/// The request as the upstream gets it, written straight from the client's body — proxy-only
/// keys left out, `model` replaced, usage asked for on streams — so no attempt (retries and
/// fallbacks make several) copies the body.
struct UpstreamBody<'a> {
    body: &'a Map<String, Value>,
    model: &'a str,
    ask_usage: bool,
}

impl Serialize for UpstreamBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(None)?;
        if !self.body.contains_key("model") {
            out.serialize_entry("model", self.model)?;
        }
        for (k, v) in self.body {
            if super::PROXY_ONLY_PARAMS.contains(&k.as_str()) {
                continue;
            }
            match (k.as_str(), v) {
                ("model", _) => out.serialize_entry(k, self.model)?,
                ("stream_options", Value::Object(opts)) if self.ask_usage => {
                    out.serialize_entry(k, &WithIncludeUsage(opts))?;
                }
                _ => out.serialize_entry(k, v)?,
            }
        }
        if self.ask_usage && !self.body.contains_key("stream_options") {
            out.serialize_entry("stream_options", &WithIncludeUsage(&Map::new()))?;
        }
        out.end()
    }
}

/// A client's `stream_options` with `include_usage` set.
struct WithIncludeUsage<'a>(&'a Map<String, Value>);

impl Serialize for WithIncludeUsage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(None)?;
        for (k, v) in self.0.iter().filter(|(k, _)| *k != "include_usage") {
            out.serialize_entry(k, v)?;
        }
        out.serialize_entry("include_usage", &true)?;
        out.end()
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<Usage>,
}

pub fn usage_of(json: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(json).ok()?.usage
}

/// An error event in the shape OpenAI's SDKs raise on, for failures after the stream began.
pub fn stream_error_event(message: &str) -> Bytes {
    let err = json!({"error": {"message": message, "type": "upstream_error", "param": null, "code": "502"}});
    sse::data_event(&err.to_string())
}

struct Passthrough {
    upstream: ByteStream,
    splitter: SseSplitter,
    client_wants_usage: bool,
    usage: UsageSlot,
    idle: IdleLimit,
    finished: bool,
}

/// Decides for one event: forward it or not, and note its usage.
fn keep_event(block: &[u8], usage: &UsageSlot, client_wants_usage: bool) -> bool {
    // Every chunk says `"usage":null` once usage was asked for; only a real usage object
    // is worth parsing, and it comes once per stream.
    if !has_usage_object(block) {
        return true;
    }
    let event = sse::parse(block);
    let Ok(chunk) = serde_json::from_str::<UsageChunk>(&event.data) else {
        return true;
    };
    if let Some(u) = chunk.usage
        && let Ok(mut slot) = usage.lock()
    {
        *slot = Some(u);
    }
    let usage_only = chunk.choices.is_some_and(|c| c.is_empty());
    !usage_only || client_wants_usage
}

#[derive(Deserialize)]
struct UsageChunk {
    usage: Option<Usage>,
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

/// Whether the event holds `"usage":` followed by an object (not `null`).
fn has_usage_object(block: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"usage\":";
    memchr::memmem::find_iter(block, NEEDLE).any(|at| {
        block[at + NEEDLE.len()..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            == Some(&b'{')
    })
}

fn passthrough(
    upstream: ByteStream,
    client_wants_usage: bool,
    usage: UsageSlot,
    idle: Duration,
) -> ByteStream {
    let state = Passthrough {
        upstream,
        splitter: SseSplitter::default(),
        client_wants_usage,
        usage,
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
                    return Some((Ok(stream_error_event("upstream stream timed out")), st));
                }
                Ok(Some(Ok(chunk))) => {
                    let (usage, wants) = (&st.usage, st.client_wants_usage);
                    let out = st
                        .splitter
                        .push_kept(chunk, |b| keep_event(b, usage, wants));
                    if !out.is_empty() {
                        return Some((Ok(out), st));
                    }
                }
                Ok(Some(Err(e))) => {
                    st.finished = true;
                    return Some((
                        Ok(stream_error_event(&format!("upstream stream failed: {e}"))),
                        st,
                    ));
                }
                Ok(None) => {
                    st.finished = true;
                    if let Some(rest) = st.splitter.rest() {
                        return Some((Ok(rest), st));
                    }
                    return None;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_usage_objects_are_parsed() {
        assert!(!has_usage_object(br#"data: {"choices":[],"usage":null}"#));
        assert!(has_usage_object(
            br#"data: {"choices":[],"usage": {"prompt_tokens":1}}"#
        ));
        assert!(has_usage_object(
            br#"data: {"x":{"usage":null},"usage":{"prompt_tokens":1}}"#
        ));
        assert!(!has_usage_object(br#"data: {"content":"usage"}"#));
    }

    fn upstream(body: Value, ask_usage: bool) -> Value {
        let Value::Object(body) = body else {
            panic!("not an object")
        };
        let bytes = request_body(&body, "gpt-up", ask_usage).expect("serializes");
        serde_json::from_slice(&bytes).expect("valid JSON")
    }

    #[test]
    fn upstream_body_replaces_model_and_drops_proxy_keys() {
        let sent = upstream(
            json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}],
                   "metadata": {"tags": ["x"]}, "fallbacks": ["b"], "temperature": 0.5}),
            false,
        );
        assert_eq!(
            sent,
            json!({"model": "gpt-up", "messages": [{"role": "user", "content": "hi"}],
                   "temperature": 0.5})
        );
        // A body without a model (Azure-style path routes) gets one.
        assert_eq!(
            upstream(json!({"input": "x"}), false),
            json!({"model": "gpt-up", "input": "x"})
        );
    }

    #[test]
    fn upstream_body_asks_for_usage_on_streams() {
        assert_eq!(
            upstream(json!({"model": "m", "stream": true}), true),
            json!({"model": "gpt-up", "stream": true, "stream_options": {"include_usage": true}})
        );
        assert_eq!(
            upstream(
                json!({"model": "m", "stream": true,
                       "stream_options": {"include_usage": false, "other": 1}}),
                true
            ),
            json!({"model": "gpt-up", "stream": true,
                   "stream_options": {"include_usage": true, "other": 1}})
        );
        // Not a stream: the client's options go as they came.
        assert_eq!(
            upstream(
                json!({"model": "m", "stream_options": {"include_usage": false}}),
                false
            ),
            json!({"model": "gpt-up", "stream_options": {"include_usage": false}})
        );
    }
}
