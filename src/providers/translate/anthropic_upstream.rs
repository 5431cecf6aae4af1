//! OpenAI chat completions → Anthropic Messages, and the replies (whole and streamed) back.

use super::{finish_to_openai, text_of, unix_now};
use crate::providers::Usage;
use crate::providers::sse;
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

const DEFAULT_MAX_TOKENS: u64 = 4096;

fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((media, data)) = rest.split_once(";base64,")
    {
        return json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}});
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

fn blocks_of(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .map(|t| json!({"type": "text", "text": t})),
                Some("image_url") => {
                    let url = p
                        .get("image_url")
                        .and_then(|i| i.get("url").or(Some(i)))
                        .and_then(Value::as_str)?;
                    Some(image_block(url))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Anthropic wants strictly alternating roles: consecutive same-role turns are merged.
fn push_turn(out: &mut Vec<Value>, role: &str, mut blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(Value::Array(existing)) = last.get_mut("content")
    {
        existing.append(&mut blocks);
        return;
    }
    out.push(json!({"role": role, "content": blocks}));
}

pub fn request_from_openai(body: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err("n > 1 is not supported by Anthropic models".into());
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` must be an array")?;
    let mut system = Vec::new();
    let mut turns = Vec::new();
    for m in messages {
        let content = m.get("content");
        match m.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" | "developer" => system.push(text_of(content)),
            "assistant" => {
                let mut blocks = blocks_of(content);
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = call.get("function").cloned().unwrap_or(Value::Null);
                    let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.get("id").cloned().unwrap_or(json!("")),
                        "name": f.get("name").cloned().unwrap_or(json!("")),
                        "input": input,
                    }));
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            "tool" | "function" => {
                let id = m
                    .get("tool_call_id")
                    .or(m.get("name"))
                    .cloned()
                    .unwrap_or(json!(""));
                push_turn(
                    &mut turns,
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": id, "content": text_of(content)}),
                    ],
                );
            }
            _ => push_turn(&mut turns, "user", blocks_of(content)),
        }
    }
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(turns));
    let system: Vec<String> = system.into_iter().filter(|s| !s.is_empty()).collect();
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n")));
    }
    let max_tokens = body
        .get("max_completion_tokens")
        .or(body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));
    for k in ["temperature", "top_p", "top_k", "stream"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let converted: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut tool = json!({
                    "name": f.get("name").cloned().unwrap_or(json!("")),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object", "properties": {}})),
                });
                if let Some(d) = f.get("description") {
                    tool["description"] = d.clone();
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(converted));
    }
    let mut choice = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"type": "auto"})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"type": "tool", "name": n})),
        _ => None,
    };
    if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) && out.contains_key("tools") {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        c["disable_parallel_tool_use"] = Value::Bool(true);
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(out)
}

pub fn usage_of(u: Option<&Value>) -> Option<Usage> {
    let u = u?.as_object()?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: n("input_tokens")
            + n("cache_creation_input_tokens")
            + n("cache_read_input_tokens"),
        completion_tokens: n("output_tokens"),
    })
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

pub fn reply_to_openai(msg: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in msg
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(json!("")),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(json!("")),
                    "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = usage_of(msg.get("usage")).unwrap_or_default();
    json!({
        "id": msg.get("id").cloned().unwrap_or(json!("")),
        "object": "chat.completion",
        "created": unix_now(),
        "model": msg.get("model").cloned().unwrap_or(json!("")),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_to_openai(msg.get("stop_reason").and_then(Value::as_str)).unwrap_or("stop"),
        }],
        "usage": usage_json(usage),
    })
}

/// Turns Anthropic stream events into OpenAI `chat.completion.chunk` events.
pub struct StreamTranslator {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    usage: Usage,
    /// Anthropic content-block index → OpenAI tool-call index.
    tool_blocks: Vec<(u64, u64)>,
    finish: Option<&'static str>,
    done: bool,
}

impl StreamTranslator {
    pub fn new(model: String, include_usage: bool) -> Self {
        StreamTranslator {
            id: String::new(),
            model,
            created: unix_now(),
            include_usage,
            usage: Usage::default(),
            tool_blocks: Vec::new(),
            finish: None,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        sse::data_event(&c.to_string())
    }

    pub fn event(&mut self, kind: Option<&str>, data: &Value) -> Bytes {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            Some("message_start") => {
                let m = data.get("message").cloned().unwrap_or(Value::Null);
                self.id = m
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some(model) = m.get("model").and_then(Value::as_str) {
                    // Name the model as the non-streamed reply does: the upstream's own name.
                    self.model = model.to_string();
                }
                if let Some(u) = usage_of(m.get("usage")) {
                    self.usage.prompt_tokens = u.prompt_tokens;
                }
                self.chunk(json!({"role": "assistant", "content": ""}), None)
            }
            Some("content_block_start") => {
                let block = data.get("content_block").cloned().unwrap_or(Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let tool_index = self.tool_blocks.len() as u64;
                        self.tool_blocks.push((index, tool_index));
                        self.chunk(
                            json!({"tool_calls": [{"index": tool_index, "id": block.get("id"), "type": "function",
                                "function": {"name": block.get("name"), "arguments": ""}}]}),
                            None,
                        )
                    }
                    Some("text") => match block.get("text").and_then(Value::as_str) {
                        Some(t) if !t.is_empty() => self.chunk(json!({"content": t}), None),
                        _ => Bytes::new(),
                    },
                    _ => Bytes::new(),
                }
            }
            Some("content_block_delta") => {
                let delta = data.get("delta").cloned().unwrap_or(Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => self.chunk(json!({"content": delta.get("text")}), None),
                    Some("thinking_delta") => {
                        self.chunk(json!({"reasoning_content": delta.get("thinking")}), None)
                    }
                    Some("input_json_delta") => {
                        let tool_index = self
                            .tool_blocks
                            .iter()
                            .find(|(b, _)| *b == index)
                            .map(|(_, t)| *t)
                            .unwrap_or(0);
                        self.chunk(
                            json!({"tool_calls": [{"index": tool_index, "function": {"arguments": delta.get("partial_json")}}]}),
                            None,
                        )
                    }
                    _ => Bytes::new(),
                }
            }
            Some("message_delta") => {
                if let Some(u) = usage_of(data.get("usage")) {
                    self.usage.completion_tokens = u.completion_tokens;
                    if u.prompt_tokens > 0 {
                        self.usage.prompt_tokens = u.prompt_tokens;
                    }
                }
                let stop = data
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                self.finish = finish_to_openai(stop);
                self.chunk(json!({}), Some(self.finish.unwrap_or("stop")))
            }
            Some("message_stop") => self.finish(),
            Some("error") => {
                self.done = true;
                let message = data
                    .get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error");
                crate::providers::openai::stream_error_event(message)
            }
            _ => Bytes::new(),
        }
    }

    /// The closing events (usage chunk if asked for, then `[DONE]`), once.
    pub fn finish(&mut self) -> Bytes {
        if self.done {
            return Bytes::new();
        }
        self.done = true;
        let mut out = BytesMut::new();
        if self.include_usage {
            let c = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage_json(self.usage),
            });
            out.extend_from_slice(&sse::data_event(&c.to_string()));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_translation_covers_system_tools_and_results() {
        let body = json!({
            "model": "claude", "max_tokens": 100, "stop": "END", "user": "u1",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
        });
        let out = request_from_openai(body.as_object().unwrap_or(&Map::new())).unwrap_or_default();
        assert_eq!(out["system"], "be brief");
        assert_eq!(out["max_tokens"], 100);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["tool_choice"], json!({"type": "any"}));
        assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
        let msgs = out["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_eq!(msgs[1]["content"][0]["input"], json!({"city": "Paris"}));
        // The tool result and the next user text merge into one user turn.
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["text"], "thanks");
        assert_eq!(out["metadata"]["user_id"], "u1");
    }

    #[test]
    fn reply_translation_maps_tools_and_usage() {
        let msg = json!({"id": "msg_1", "model": "claude", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 2}});
        let out = reply_to_openai(&msg);
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(out["usage"]["prompt_tokens"], 12);
        assert_eq!(out["usage"]["total_tokens"], 17);
    }
}
