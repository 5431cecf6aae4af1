//! Translation between the OpenAI and Anthropic API shapes, in both directions.
//!
//! `anthropic_upstream`: OpenAI clients served by an Anthropic deployment.
//! `anthropic_surface`: Anthropic clients (`/v1/messages`) served by any other deployment.

pub mod anthropic_surface;
pub mod anthropic_upstream;

use serde_json::Value;

/// The plain text of an OpenAI or Anthropic `content` value (a string or a list of parts).
pub fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

pub fn finish_to_openai(stop_reason: Option<&str>) -> Option<&'static str> {
    Some(match stop_reason? {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    })
}

pub fn finish_to_anthropic(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

pub fn unix_now() -> i64 {
    crate::types::now_ms() / 1000
}
