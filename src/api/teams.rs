//! `/team/*`: teams, LiteLLM-compatible.

use crate::audit::Change;
use crate::store::TeamRecord;
use serde_json::{Value, json};

/// LiteLLM's table name for teams, kept so audit filters written for it still match.
pub const TABLE: &str = "LiteLLM_TeamTable";

/// A team as the API shows it.
pub fn view(t: &TeamRecord, spend: f64) -> Value {
    let mut out = json!({
        "team_id": t.team_id,
        "team_alias": t.team_alias,
        "organization_id": t.organization_id,
        "models": t.models,
        "spend": spend,
        "members_with_roles": t.members.iter().map(|m| {
            let mut v = json!({"user_id": m.user_id, "role": m.role.as_str()});
            if let Some(map) = v.as_object_mut() {
                super::fields::budget_view(&m.budget, map);
            }
            v
        }).collect::<Vec<_>>(),
        "blocked": t.blocked,
        "metadata": super::fields::metadata_view(&t.metadata_json),
        "created_at": crate::types::ms_to_rfc3339(t.created_at_ms),
        "updated_at": crate::types::ms_to_rfc3339(t.updated_at_ms),
        "created_by": t.created_by,
        "updated_by": t.updated_by,
    });
    if let Some(m) = out.as_object_mut() {
        super::fields::budget_view(&t.budget, m);
    }
    out
}

pub fn change(action: &str, before: Option<&TeamRecord>, after: Option<&TeamRecord>) -> Change {
    let id = after.or(before).map(|t| t.team_id.clone()).unwrap_or_default();
    Change {
        action: action.to_string(),
        table_name: TABLE.to_string(),
        object_id: id,
        before_value: before.map(|t| view(t, 0.0).to_string()).unwrap_or_default(),
        updated_values: after.map(|t| view(t, 0.0).to_string()).unwrap_or_default(),
    }
}
