//! The built-in `mock/` provider: deterministic answers with realistic shapes and usage, so the
//! gateway works out of the box with no credentials or network. `mock_response` in a request
//! (as in LiteLLM) fixes the reply text.

use super::openai::{wants_stream, wants_usage};
use super::sse;
use super::{Call, Operation, Reply, UpstreamError, Usage, UsageSlot};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// A rough token count (about four characters a token), never zero for non-empty text.
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn chat_prompt(body: &Map<String, Value>) -> (String, u64) {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut prompt_tokens = 3;
    let mut last_user = String::new();
    for m in &messages {
        let text = m.get("content").map(text_of).unwrap_or_default();
        prompt_tokens += 4 + tokens(&text);
        if m.get("role").and_then(Value::as_str) == Some("user") {
            last_user = text;
        }
    }
    (last_user, prompt_tokens)
}

fn reply_text(body: &Map<String, Value>, said: &str) -> String {
    if let Some(fixed) = body.get("mock_response").and_then(Value::as_str) {
        return fixed.to_string();
    }
    let said: String = said.chars().take(200).collect();
    format!("This is a mock response from Portcullis. You said: {said}")
}

fn call_id(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    hex::encode(&d[..12])
}

fn now_secs() -> i64 {
    crate::types::now_ms() / 1000
}

pub async fn call(
    c: &Call<'_>,
    op: Operation,
    body: &Map<String, Value>,
) -> Result<Reply, UpstreamError> {
    let model = c.upstream_model;
    match op {
        Operation::Embedding => Ok(embeddings(model, body)),
        Operation::Chat | Operation::Completion => {
            let (said, prompt_tokens) = match op {
                Operation::Chat => chat_prompt(body),
                _ => {
                    let p = body.get("prompt").map(text_of).unwrap_or_default();
                    let t = tokens(&p);
                    (p, t)
                }
            };
            let mut text = reply_text(body, &said);
            // Honour the length cap the way a real model does: cut, and say so.
            let cap = body
                .get("max_completion_tokens")
                .or(body.get("max_tokens"))
                .and_then(Value::as_u64);
            let mut finish = "stop";
            if let Some(cap) = cap.filter(|c| tokens(&text) > *c) {
                text = text
                    .chars()
                    .take((cap as usize).saturating_mul(4))
                    .collect();
                finish = "length";
            }
            let usage = Usage {
                prompt_tokens,
                completion_tokens: tokens(&text),
            };
            let id = call_id(&format!("{said}{}", crate::types::now_ms()));
            if wants_stream(body) {
                Ok(stream(
                    op,
                    model,
                    &id,
                    &text,
                    finish,
                    usage,
                    wants_usage(body),
                ))
            } else {
                Ok(whole(op, model, &id, &text, finish, usage))
            }
        }
    }
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn whole(op: Operation, model: &str, id: &str, text: &str, finish: &str, usage: Usage) -> Reply {
    let body = match op {
        Operation::Chat => json!({
            "id": format!("chatcmpl-{id}"),
            "object": "chat.completion",
            "created": now_secs(),
            "model": model,
            "system_fingerprint": "fp_portcullis_mock",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": finish,
            }],
            "usage": usage_json(usage),
        }),
        _ => json!({
            "id": format!("cmpl-{id}"),
            "object": "text_completion",
            "created": now_secs(),
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
            "usage": usage_json(usage),
        }),
    };
    Reply::Json {
        body: Bytes::from(body.to_string()),
        usage: Some(usage),
    }
}

fn stream(
    op: Operation,
    model: &str,
    id: &str,
    text: &str,
    finish: &str,
    usage: Usage,
    include_usage: bool,
) -> Reply {
    let created = now_secs();
    let mut events: Vec<Bytes> = Vec::new();
    let chunk = |delta: Value, finish: Value| match op {
        Operation::Chat => json!({
            "id": format!("chatcmpl-{id}"), "object": "chat.completion.chunk", "created": created,
            "model": model, "system_fingerprint": "fp_portcullis_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        }),
        _ => json!({
            "id": format!("cmpl-{id}"), "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")),
                         "logprobs": null, "finish_reason": finish}],
        }),
    };
    if op == Operation::Chat {
        events.push(sse::data_event(
            &chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string(),
        ));
    }
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    for w in words {
        events.push(sse::data_event(
            &chunk(json!({"content": w}), Value::Null).to_string(),
        ));
    }
    events.push(sse::data_event(
        &chunk(json!({}), json!(finish)).to_string(),
    ));
    if include_usage {
        let last = json!({
            "id": format!("chatcmpl-{id}"),
            "object": if op == Operation::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": created, "model": model, "choices": [], "usage": usage_json(usage),
        });
        events.push(sse::data_event(&last.to_string()));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let slot: UsageSlot = Arc::new(Mutex::new(Some(usage)));
    Reply::Stream {
        stream: Box::pin(futures_util::stream::iter(events.into_iter().map(Ok))),
        usage: slot,
    }
}

fn embedding_of(text: &str, dims: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(dims);
    let mut block = Sha256::digest(text.as_bytes());
    while out.len() < dims {
        for b in block.iter() {
            if out.len() == dims {
                break;
            }
            out.push(f64::from(*b) / 127.5 - 1.0);
        }
        block = Sha256::digest(block);
    }
    let norm = out
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    out.iter()
        .map(|x| ((x / norm) * 1e6).round() / 1e6)
        .collect()
}

fn embeddings(model: &str, body: &Map<String, Value>) -> Reply {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(other) => vec![other.to_string()],
        None => Vec::new(),
    };
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .filter(|d| (1..=8192).contains(d))
        .unwrap_or(1536) as usize;
    // OpenAI's SDKs ask for base64 (little-endian float32) by default and decode it themselves.
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let prompt_tokens: u64 = inputs.iter().map(|t| tokens(t)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let vector = embedding_of(t, dims);
            let embedding = if base64 {
                use base64::Engine;
                let bytes: Vec<u8> = vector
                    .iter()
                    .flat_map(|x| (*x as f32).to_le_bytes())
                    .collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Reply::Json {
        body: Bytes::from(body.to_string()),
        usage: Some(Usage {
            prompt_tokens,
            completion_tokens: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding_of("hello", 64);
        assert_eq!(a, embedding_of("hello", 64));
        assert_ne!(a, embedding_of("hellp", 64));
        let norm: f64 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-3);
    }
}
