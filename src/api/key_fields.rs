//! The writable fields of a key, read from a request with merge-patch meaning: an omitted field
//! keeps its value, `null` clears it, a value replaces it. Type errors name the field.

use super::ApiError;
use crate::store::KeyRecord;
use crate::types::{ms_to_rfc3339, now_ms, parse_duration};
use serde_json::{Map, Value, json};

fn string(v: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::invalid(
            format!("`{field}` must be a string or null."),
            field,
        )),
    }
}

fn count(v: &Value, field: &str) -> Result<Option<u64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid(format!("`{field}` must be a non-negative integer."), field)
        }),
        _ => Err(ApiError::invalid(
            format!("`{field}` must be a non-negative integer or null."),
            field,
        )),
    }
}

fn money(v: &Value, field: &str) -> Result<Option<f64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_f64() {
            // `+ 0.0` turns -0.0 into 0.0, which is what anyone sending it meant.
            Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x + 0.0)),
            _ => Err(ApiError::invalid(
                format!("`{field}` must be a finite number >= 0."),
                field,
            )),
        },
        _ => Err(ApiError::invalid(
            format!("`{field}` must be a number or null."),
            field,
        )),
    }
}

fn duration_text(v: &Value, field: &str) -> Result<Option<String>, ApiError> {
    let s = string(v, field)?;
    if let Some(text) = &s
        && parse_duration(text).is_none()
    {
        return Err(ApiError::invalid(
            format!("`{field}` must be a duration such as 30s, 30m, 30h, 30d or 1mo."),
            field,
        ));
    }
    Ok(s)
}

/// Applies every known field present in `body` to `record`. Unknown fields are ignored, as
/// LiteLLM does, so its scripts that send extra fields keep working.
pub fn apply(record: &mut KeyRecord, body: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, v) in body {
        let f = field.as_str();
        match f {
            "key_alias" => record.key_alias = string(v, f)?.filter(|s| !s.is_empty()),
            "models" => {
                record.models = match v {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items
                        .iter()
                        .map(|m| m.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            ApiError::invalid("`models` must be an array of strings.", f)
                        })?,
                    _ => {
                        return Err(ApiError::invalid(
                            "`models` must be an array of strings.",
                            f,
                        ));
                    }
                }
            }
            "duration" => {
                record.expires_ms = match duration_text(v, f)? {
                    None => None,
                    Some(text) => parse_duration(&text).map(|d| {
                        now_ms().saturating_add(d.as_millis().min(i64::MAX as u128) as i64)
                    }),
                }
            }
            "metadata" => {
                record.metadata_json = match v {
                    Value::Null => "{}".to_string(),
                    Value::Object(_) => v.to_string(),
                    _ => return Err(ApiError::invalid("`metadata` must be an object.", f)),
                }
            }
            "user_id" => record.user_id = string(v, f)?,
            "team_id" => record.team_id = string(v, f)?,
            "max_budget" => record.max_budget = money(v, f)?,
            "soft_budget" => record.soft_budget = money(v, f)?,
            "budget_duration" => record.budget_duration = duration_text(v, f)?,
            "tpm_limit" => record.tpm_limit = count(v, f)?,
            "rpm_limit" => record.rpm_limit = count(v, f)?,
            "max_parallel_requests" => record.max_parallel_requests = count(v, f)?,
            "blocked" => {
                record.blocked = match v {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    _ => return Err(ApiError::invalid("`blocked` must be a boolean.", f)),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The JSON a key is shown as. Never holds the secret; `token` is its hash (LiteLLM's name).
pub fn view(r: &KeyRecord) -> Value {
    let metadata: Value = serde_json::from_str(&r.metadata_json).unwrap_or_else(|_| json!({}));
    json!({
        "token": r.token,
        "key_name": r.key_name,
        "key_alias": r.key_alias,
        "spend": r.spend,
        "max_budget": r.max_budget,
        "soft_budget": r.soft_budget,
        "expires": r.expires_ms.map(ms_to_rfc3339),
        "models": r.models,
        "aliases": {},
        "config": {},
        "user_id": r.user_id,
        "team_id": r.team_id,
        "max_parallel_requests": r.max_parallel_requests,
        "metadata": metadata,
        "tpm_limit": r.tpm_limit,
        "rpm_limit": r.rpm_limit,
        "budget_duration": r.budget_duration,
        "blocked": r.blocked,
        "created_at": ms_to_rfc3339(r.created_at_ms),
        "updated_at": ms_to_rfc3339(r.updated_at_ms),
        "created_by": r.created_by,
        "updated_by": r.updated_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> KeyRecord {
        KeyRecord {
            token: "t".into(),
            key_name: "sk-...abcd".into(),
            key_alias: Some("a".into()),
            models: vec!["m".into()],
            expires_ms: None,
            metadata_json: "{}".into(),
            user_id: None,
            team_id: None,
            max_budget: Some(5.0),
            soft_budget: None,
            budget_duration: None,
            tpm_limit: None,
            rpm_limit: Some(10),
            max_parallel_requests: None,
            blocked: false,
            spend: 0.0,
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: String::new(),
            updated_by: String::new(),
            grace_tokens: Vec::new(),
        }
    }

    #[test]
    fn merge_patch_semantics() {
        let mut r = blank();
        let body = json!({"max_budget": null, "rpm_limit": 20, "send_invite_email": true});
        apply(&mut r, body.as_object().unwrap_or(&Map::new())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.max_budget, None);
        assert_eq!(r.rpm_limit, Some(20));
        assert_eq!(r.key_alias.as_deref(), Some("a"));
        assert_eq!(r.models, vec!["m".to_string()]);
    }

    #[test]
    fn bad_types_name_the_field() {
        for (body, field) in [
            (json!({"max_budget": -1}), "max_budget"),
            (json!({"max_budget": "5"}), "max_budget"),
            (json!({"rpm_limit": 1.5}), "rpm_limit"),
            (json!({"models": [1]}), "models"),
            (json!({"duration": "forever"}), "duration"),
            (json!({"metadata": [1]}), "metadata"),
        ] {
            let mut r = blank();
            match apply(&mut r, body.as_object().unwrap_or(&Map::new())) {
                Err(ApiError::Invalid { param, .. }) => assert_eq!(param.as_deref(), Some(field)),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
