//! Reading request fields with merge-patch meaning (an omitted field keeps its value, `null`
//! clears it, a value replaces it), shared by every management object. Type errors name the
//! field; unknown fields are ignored as LiteLLM does, so scripts that send extra fields work.

use super::ApiError;
use crate::store::Budget;
use crate::types::parse_duration;
use serde_json::{Map, Value, json};

pub fn string(v: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::invalid(
            format!("`{field}` must be a string or null."),
            field,
        )),
    }
}

/// A required, non-empty string field.
pub fn required(body: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match body.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(ApiError::invalid(
            format!("`{field}` is required (a non-empty string)."),
            field,
        )),
    }
}

/// An optional string field: absent or null is `None`.
pub fn optional(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    body.get(field)
        .map_or(Ok(None), |v| string(v, field))
        .map(|s| s.filter(|s| !s.is_empty()))
}

pub fn count(v: &Value, field: &str) -> Result<Option<u64>, ApiError> {
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

pub fn money(v: &Value, field: &str) -> Result<Option<f64>, ApiError> {
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

pub fn duration_text(v: &Value, field: &str) -> Result<Option<String>, ApiError> {
    let s = string(v, field)?;
    // A zero duration is a typo: a key born expired, or a budget that never holds.
    if let Some(text) = &s
        && parse_duration(text).is_none_or(|d| d.is_zero())
    {
        return Err(ApiError::invalid(
            format!("`{field}` must be a duration such as 30s, 30m, 30h, 30d or 1mo."),
            field,
        ));
    }
    Ok(s)
}

pub fn strings(v: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|m| m.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid(format!("`{field}` must be an array of strings."), field)
            }),
        _ => Err(ApiError::invalid(
            format!("`{field}` must be an array of strings."),
            field,
        )),
    }
}

pub fn boolean(v: &Value, field: &str) -> Result<bool, ApiError> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        _ => Err(ApiError::invalid(
            format!("`{field}` must be a boolean."),
            field,
        )),
    }
}

pub fn metadata(v: &Value, field: &str) -> Result<String, ApiError> {
    match v {
        Value::Null => Ok("{}".to_string()),
        Value::Object(_) => Ok(v.to_string()),
        _ => Err(ApiError::invalid(
            format!("`{field}` must be an object."),
            field,
        )),
    }
}

pub fn metadata_view(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

/// The budget and limit fields, under their LiteLLM names.
pub const BUDGET_FIELDS: &[&str] = &[
    "max_budget",
    "soft_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
];

/// Applies one budget field if `field` is one; says whether it was. `prefix_suffix` lets team
/// members use LiteLLM's `max_budget_in_team`.
pub fn budget_field(b: &mut Budget, field: &str, v: &Value) -> Result<bool, ApiError> {
    match field {
        "max_budget" | "max_budget_in_team" => b.max_budget = money(v, field)?,
        "soft_budget" => b.soft_budget = money(v, field)?,
        "budget_duration" => b.budget_duration = duration_text(v, field)?,
        "tpm_limit" => b.tpm_limit = count(v, field)?,
        "rpm_limit" => b.rpm_limit = count(v, field)?,
        "max_parallel_requests" => b.max_parallel_requests = count(v, field)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// Checks a budget as a whole once its fields are applied.
pub fn check_budget(b: &Budget) -> Result<(), ApiError> {
    if let (Some(soft), Some(max)) = (b.soft_budget, b.max_budget)
        && soft > max
    {
        return Err(ApiError::invalid(
            "`soft_budget` must not exceed `max_budget`.",
            "soft_budget",
        ));
    }
    Ok(())
}

/// Adds the budget fields to a JSON view.
pub fn budget_view(b: &Budget, out: &mut Map<String, Value>) {
    out.insert("max_budget".into(), json!(b.max_budget));
    out.insert("soft_budget".into(), json!(b.soft_budget));
    out.insert("budget_duration".into(), json!(b.budget_duration));
    out.insert("tpm_limit".into(), json!(b.tpm_limit));
    out.insert("rpm_limit".into(), json!(b.rpm_limit));
    out.insert(
        "max_parallel_requests".into(),
        json!(b.max_parallel_requests),
    );
}

/// Whether any field in `body` is a governance field (budgets, limits, models): such fields
/// may only be changed by someone above the object.
pub fn touches_governance(body: &Map<String, Value>, extra: &[&str]) -> bool {
    body.keys().any(|k| {
        BUDGET_FIELDS.contains(&k.as_str()) || k == "models" || extra.contains(&k.as_str())
    })
}

/// A positive integer query parameter.
pub fn positive(v: Option<&str>, field: &str, default: usize) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => s.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::invalid(format!("`{field}` must be a positive integer."), field)
        }),
    }
}

/// An id list from `field`: a string array, or one string.
pub fn id_list(body: &Map<String, Value>, field: &str) -> Result<Vec<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(v) => strings(v, field),
    }
}

/// `cascade: true` asks to delete an object's children with it.
pub fn cascade(body: &Map<String, Value>) -> Result<bool, ApiError> {
    body.get("cascade")
        .map_or(Ok(false), |v| boolean(v, "cascade"))
}

/// Ids chosen by callers: 1 to 256 bytes, no control characters (they end up in logs, URLs and
/// audit entries).
pub fn check_id(id: &str, field: &str) -> Result<(), ApiError> {
    if id.trim().is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            format!("`{field}` must be 1 to 256 bytes without control characters."),
            field,
        ));
    }
    Ok(())
}

/// A caller-chosen id from `field`, or a fresh uuid when it is absent or null.
pub fn id_or_new(body: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(uuid::Uuid::new_v4().to_string()),
        Some(Value::String(s)) => {
            check_id(s, field)?;
            Ok(s.clone())
        }
        Some(_) => Err(ApiError::invalid(
            format!("`{field}` must be a string."),
            field,
        )),
    }
}
