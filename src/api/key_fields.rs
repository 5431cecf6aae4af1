//! The writable fields of a key, read from a request with merge-patch meaning: an omitted field
//! keeps its value, `null` clears it, a value replaces it. Type errors name the field.

use super::ApiError;
use super::fields::{
    boolean, budget_field, budget_view, check_budget, duration_text, metadata, metadata_view,
    string, strings,
};
use crate::roles::KeyType;
use crate::store::KeyRecord;
use crate::types::{ms_to_rfc3339, now_ms, parse_duration};
use serde_json::{Map, Value, json};

/// Applies every known field present in `body` to `record`. Unknown fields are ignored, as
/// LiteLLM does, so its scripts that send extra fields keep working.
pub fn apply(record: &mut KeyRecord, body: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, v) in body {
        let f = field.as_str();
        if budget_field(&mut record.budget, f, v)? {
            continue;
        }
        match f {
            "key_alias" => record.key_alias = string(v, f)?.filter(|s| !s.is_empty()),
            "models" => record.models = strings(v, f)?,
            "duration" => {
                record.expires_ms = match duration_text(v, f)? {
                    None => None,
                    Some(text) => parse_duration(&text).map(|d| {
                        now_ms().saturating_add(d.as_millis().min(i64::MAX as u128) as i64)
                    }),
                }
            }
            "metadata" => record.metadata_json = metadata(v, f)?,
            "user_id" => record.user_id = string(v, f)?.filter(|s| !s.is_empty()),
            "team_id" => record.team_id = string(v, f)?.filter(|s| !s.is_empty()),
            "organization_id" => record.organization_id = string(v, f)?.filter(|s| !s.is_empty()),
            "allowed_routes" => record.allowed_routes = strings(v, f)?,
            "key_type" => {
                record.key_type = match string(v, f)? {
                    None => KeyType::Default,
                    Some(t) => KeyType::parse(&t).ok_or_else(|| {
                        ApiError::invalid(
                            format!("`key_type` must be one of {}.", KeyType::names()),
                            f,
                        )
                    })?,
                }
            }
            "blocked" => record.blocked = boolean(v, f)?,
            _ => {}
        }
    }
    check_budget(&record.budget)
}

/// The JSON a key is shown as. Never holds the secret; `token` is its hash (LiteLLM's name).
pub fn view(r: &KeyRecord, spend: f64) -> Value {
    let mut out = json!({
        "token": r.token,
        "key_id": r.key_id,
        "key_name": r.key_name,
        "key_alias": r.key_alias,
        "spend": spend,
        "expires": r.expires_ms.map(ms_to_rfc3339),
        "models": r.models,
        "aliases": {},
        "config": {},
        "user_id": r.user_id,
        "team_id": r.team_id,
        "organization_id": r.organization_id,
        "allowed_routes": r.allowed_routes,
        "key_type": r.key_type.as_str(),
        "metadata": metadata_view(&r.metadata_json),
        "blocked": r.blocked,
        "created_at": ms_to_rfc3339(r.created_at_ms),
        "updated_at": ms_to_rfc3339(r.updated_at_ms),
        "created_by": r.created_by,
        "updated_by": r.updated_by,
    });
    if let Some(map) = out.as_object_mut() {
        budget_view(&r.budget, map);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> KeyRecord {
        KeyRecord {
            token: "t".into(),
            key_id: "t".into(),
            key_name: "sk-...abcd".into(),
            key_alias: Some("a".into()),
            models: vec!["m".into()],
            expires_ms: None,
            metadata_json: "{}".into(),
            user_id: None,
            team_id: None,
            organization_id: None,
            budget: crate::store::Budget {
                max_budget: Some(5.0),
                rpm_limit: Some(10),
                ..Default::default()
            },
            allowed_routes: Vec::new(),
            key_type: KeyType::Default,
            blocked: false,
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
        assert_eq!(r.budget.max_budget, None);
        assert_eq!(r.budget.rpm_limit, Some(20));
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
