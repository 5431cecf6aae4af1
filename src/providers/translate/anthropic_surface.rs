//! Anthropic Messages requests (`/v1/messages`) served by OpenAI-shaped deployments: the request
//! becomes a chat completion, and the reply (whole or streamed) becomes an Anthropic message.

use super::{finish_to_anthropic, text_of};
use crate::providers::sse::{self, SseSplitter};
use crate::providers::{ByteStream, Reply, UpstreamError, Usage};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

fn image_part(source: &Value) -> Option<Value> {
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png"),
            source.get("data").and_then(Value::as_str).unwrap_or("")
        ),
        Some("url") => source.get("url").and_then(Value::as_str)?.to_string(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

pub fn request_to_openai(body: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut messages = Vec::new();
    match body.get("system") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}))
        }
        Some(v @ Value::Array(_)) => {
            messages.push(json!({"role": "system", "content": text_of(Some(v))}))
        }
        _ => {}
    }
    let turns = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` must be an array")?;
    for turn in turns {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or("user");
        let blocks: Vec<Value> = match turn.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(b)) => b.clone(),
            _ => return Err("each message needs `content` (a string or a list of blocks)".into()),
        };
        let mut parts = Vec::new();
        let mut calls = Vec::new();
        for b in &blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => parts.push(json!({"type": "text", "text": b.get("text").cloned().unwrap_or(json!(""))})),
                Some("image") => {
                    if let Some(p) = b.get("source").and_then(image_part) {
                        parts.push(p);
                    }
                }
                Some("tool_use") => calls.push(json!({
                    "id": b.get("id").cloned().unwrap_or(json!("")),
                    "type": "function",
                    "function": {
                        "name": b.get("name").cloned().unwrap_or(json!("")),
                        "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                    },
                })),
                Some("tool_result") => messages.push(json!({
                    "role": "tool",
                    "tool_call_id": b.get("tool_use_id").cloned().unwrap_or(json!("")),
                    "content": text_of(b.get("content")),
                })),
                _ => {}
            }
        }
        if role == "assistant" {
            let text = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("");
            let mut m = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
            if !calls.is_empty() {
                m["tool_calls"] = Value::Array(calls);
            }
            messages.push(m);
        } else if !parts.is_empty() {
            let only_text = parts
                .iter()
                .all(|p| p.get("type").and_then(Value::as_str) == Some("text"));
            let content = if only_text {
                Value::String(
                    parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(""),
                )
            } else {
                Value::Array(parts)
            };
            messages.push(json!({"role": "user", "content": content}));
        }
    }
    let mut out = Map::new();
    out.insert(
        "model".into(),
        body.get("model").cloned().unwrap_or(Value::Null),
    );
    out.insert("messages".into(), Value::Array(messages));
    if let Some(v) = body.get("max_tokens") {
        out.insert("max_tokens".into(), v.clone());
    }
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = body.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(stops) = body.get("stop_sequences") {
        out.insert("stop".into(), stops.clone());
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let converted: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.get("name").cloned().unwrap_or(json!("")),
                    "description": t.get("description").cloned().unwrap_or(json!("")),
                    "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"})),
                }})
            })
            .collect();
        out.insert("tools".into(), Value::Array(converted));
    }
    if let Some(choice) = body.get("tool_choice") {
        let c = match choice.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice.get("name")}}),
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), c);
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if let Some(user) = body.get("metadata").and_then(|m| m.get("user_id")) {
        out.insert("user".into(), user.clone());
    }
    Ok(out)
}

fn message_id(openai_id: &str) -> String {
    if openai_id.starts_with("msg_") {
        openai_id.to_string()
    } else {
        format!("msg_{}", openai_id.trim_start_matches("chatcmpl-"))
    }
}

fn usage_json(u: Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens})
}

pub fn reply_from_openai(reply: Reply) -> Result<Reply, UpstreamError> {
    match reply {
        Reply::Json { body, usage } => {
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| UpstreamError::Protocol(format!("upstream reply is not JSON: {e}")))?;
            Ok(Reply::Json {
                body: Bytes::from(message_from_openai(&v, usage.unwrap_or_default()).to_string()),
                usage,
            })
        }
        Reply::Stream { stream, usage } => Ok(Reply::Stream {
            stream: translate_stream(stream),
            usage,
        }),
    }
}

fn message_from_openai(v: &Value, usage: Usage) -> Value {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .cloned()
        .unwrap_or(Value::Null);
    let msg = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    if let Some(text) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").cloned().unwrap_or(Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(json!("")),
            "name": f.get("name").cloned().unwrap_or(json!("")),
            "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({})),
        }));
    }
    json!({
        "id": message_id(v.get("id").and_then(Value::as_str).unwrap_or("")),
        "type": "message",
        "role": "assistant",
        "model": v.get("model").cloned().unwrap_or(json!("")),
        "content": content,
        "stop_reason": finish_to_anthropic(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage_json(usage),
    })
}

#[derive(PartialEq)]
enum Block {
    None,
    Text,
    Tool(u64),
}

/// OpenAI chunks in, Anthropic events out.
struct Translator {
    started: bool,
    ended: bool,
    block: Block,
    next_index: u64,
    finish: Option<String>,
    usage: Usage,
}

impl Translator {
    fn start(&mut self, out: &mut BytesMut, chunk: &Value) {
        if self.started {
            return;
        }
        self.started = true;
        let id = message_id(chunk.get("id").and_then(Value::as_str).unwrap_or(""));
        let m = json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "content": [],
            "model": chunk.get("model").cloned().unwrap_or(json!("")),
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0},
        }});
        out.extend_from_slice(&sse::named_event("message_start", &m.to_string()));
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if self.block != Block::None {
            let e = json!({"type": "content_block_stop", "index": self.next_index - 1});
            out.extend_from_slice(&sse::named_event("content_block_stop", &e.to_string()));
            self.block = Block::None;
        }
    }

    fn open_block(&mut self, out: &mut BytesMut, block: Block, content_block: Value) {
        self.close_block(out);
        let e = json!({"type": "content_block_start", "index": self.next_index, "content_block": content_block});
        out.extend_from_slice(&sse::named_event("content_block_start", &e.to_string()));
        self.next_index += 1;
        self.block = block;
    }

    fn delta(&self, out: &mut BytesMut, delta: Value) {
        let e =
            json!({"type": "content_block_delta", "index": self.next_index - 1, "delta": delta});
        out.extend_from_slice(&sse::named_event("content_block_delta", &e.to_string()));
    }

    fn chunk(&mut self, out: &mut BytesMut, chunk: &Value) {
        self.start(out, chunk);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null())
            && let Ok(u) = serde_json::from_value::<Usage>(u.clone())
        {
            self.usage = u;
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if self.block != Block::Text {
                self.open_block(out, Block::Text, json!({"type": "text", "text": ""}));
            }
            self.delta(out, json!({"type": "text_delta", "text": text}));
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let f = call.get("function").cloned().unwrap_or(Value::Null);
            if self.block != Block::Tool(index) {
                let block = json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or(json!("")),
                    "name": f.get("name").cloned().unwrap_or(json!("")), "input": {}});
                self.open_block(out, Block::Tool(index), block);
            }
            if let Some(args) = f
                .get("arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                self.delta(
                    out,
                    json!({"type": "input_json_delta", "partial_json": args}),
                );
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
    }

    fn end(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.start(out, &Value::Null);
        self.close_block(out);
        let e = json!({"type": "message_delta",
            "delta": {"stop_reason": finish_to_anthropic(self.finish.as_deref()), "stop_sequence": null},
            "usage": usage_json(self.usage)});
        out.extend_from_slice(&sse::named_event("message_delta", &e.to_string()));
        out.extend_from_slice(&sse::named_event(
            "message_stop",
            "{\"type\":\"message_stop\"}",
        ));
    }
}

fn translate_stream(upstream: ByteStream) -> ByteStream {
    let state = (
        upstream,
        SseSplitter::default(),
        Translator {
            started: false,
            ended: false,
            block: Block::None,
            next_index: 0,
            finish: None,
            usage: Usage::default(),
        },
    );
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut up, mut splitter, mut t)| async move {
            loop {
                if t.ended {
                    return None;
                }
                let mut out = BytesMut::new();
                match up.next().await {
                    Some(Ok(chunk)) => {
                        for block in splitter.push(&chunk) {
                            let event = sse::parse(&block);
                            if event.data == "[DONE]" {
                                t.end(&mut out);
                                break;
                            }
                            let v: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                            if let Some(err) = v.get("error") {
                                let e = json!({"type": "error", "error": {"type": "api_error",
                                "message": err.get("message").cloned().unwrap_or(json!("upstream error"))}});
                                out.extend_from_slice(&sse::named_event("error", &e.to_string()));
                                t.ended = true;
                                break;
                            }
                            t.chunk(&mut out, &v);
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (up, splitter, t))),
                    None => t.end(&mut out),
                }
                if !out.is_empty() {
                    return Some((Ok(out.freeze()), (up, splitter, t)));
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_request_becomes_openai() {
        let body = json!({"model": "m", "max_tokens": 50, "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}, "stream": true});
        let out =
            request_to_openai(body.as_object().cloned().unwrap_or_default()).unwrap_or_default();
        let msgs = out["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(msgs[0], json!({"role": "system", "content": "sys"}));
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(
            msgs[3],
            json!({"role": "tool", "tool_call_id": "t1", "content": "ok"})
        );
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[tokio::test]
    async fn openai_stream_becomes_anthropic_events() {
        let chunks: [&'static str; 3] = [
            "data: {\"id\":\"chatcmpl-1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"id\":\"chatcmpl-1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
        ];
        let up: ByteStream = Box::pin(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok(Bytes::from_static(c.as_bytes()))),
        ));
        let out: Vec<Bytes> = translate_stream(up)
            .filter_map(|r| async move { r.ok() })
            .collect()
            .await;
        let text: String = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).to_string())
            .collect();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains("\"output_tokens\":2"));
        assert!(text.contains("\"stop_reason\":\"end_turn\""));
    }
}
