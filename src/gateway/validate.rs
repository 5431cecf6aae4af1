//! Shape checks before anything is routed, so bad requests get a precise 400 naming the field.

use super::GatewayError;
use crate::providers::{Dialect, Operation};
use serde_json::{Map, Value};

/// Checks the request and returns its model name.
pub fn request(
    op: Operation,
    dialect: Dialect,
    body: &Map<String, Value>,
) -> Result<&str, GatewayError> {
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.as_str(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(GatewayError::invalid("`model` is required.", "model"));
        }
        Some(_) => return Err(GatewayError::invalid("`model` must be a string.", "model")),
    };
    if let Some(s) = body.get("stream")
        && !s.is_boolean()
        && !s.is_null()
    {
        return Err(GatewayError::invalid(
            "`stream` must be a boolean.",
            "stream",
        ));
    }
    match (op, dialect) {
        (Operation::Chat, _) => {
            let messages = match body.get("messages") {
                Some(Value::Array(m)) if !m.is_empty() => m,
                Some(Value::Array(_)) => {
                    return Err(GatewayError::invalid(
                        "`messages` must not be empty.",
                        "messages",
                    ));
                }
                None | Some(Value::Null) => {
                    return Err(GatewayError::invalid("`messages` is required.", "messages"));
                }
                Some(_) => {
                    return Err(GatewayError::invalid(
                        "`messages` must be an array.",
                        "messages",
                    ));
                }
            };
            for (i, m) in messages.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str);
                if role.is_none() {
                    return Err(GatewayError::invalid(
                        format!("`messages[{i}]` must be an object with a string `role`."),
                        "messages",
                    ));
                }
                if dialect == Dialect::Anthropic {
                    match m.get("content") {
                        Some(Value::String(_) | Value::Array(_)) => {}
                        _ => {
                            return Err(GatewayError::invalid(
                                format!(
                                    "`messages[{i}].content` must be a string or an array of blocks."
                                ),
                                "messages",
                            ));
                        }
                    }
                }
            }
            let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
            if dialect == Dialect::Anthropic && max_tokens == 0 {
                return Err(GatewayError::invalid(
                    "`max_tokens` is required and must be a positive integer.",
                    "max_tokens",
                ));
            }
        }
        (Operation::Completion, _) => match body.get("prompt") {
            Some(Value::String(_) | Value::Array(_)) => {}
            None | Some(Value::Null) => {
                return Err(GatewayError::invalid("`prompt` is required.", "prompt"));
            }
            Some(_) => {
                return Err(GatewayError::invalid(
                    "`prompt` must be a string or an array.",
                    "prompt",
                ));
            }
        },
        (Operation::Embedding, _) => match body.get("input") {
            Some(Value::String(_)) => {}
            Some(Value::Array(a)) if !a.is_empty() => {}
            Some(Value::Array(_)) => {
                return Err(GatewayError::invalid("`input` must not be empty.", "input"));
            }
            None | Some(Value::Null) => {
                return Err(GatewayError::invalid("`input` is required.", "input"));
            }
            Some(_) => {
                return Err(GatewayError::invalid(
                    "`input` must be a string or an array.",
                    "input",
                ));
            }
        },
    }
    Ok(model)
}
