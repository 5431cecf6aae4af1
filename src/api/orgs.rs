//! `/organization/*`: organisations in a tree, LiteLLM-compatible plus `/organization/tree`.

use crate::audit::Change;
use crate::store::OrgRecord;
use serde_json::{Value, json};

/// LiteLLM's table name for organisations, kept so audit filters written for it still match.
pub const TABLE: &str = "LiteLLM_OrganizationTable";

/// An organisation as the API shows it.
pub fn view(o: &OrgRecord, spend: f64) -> Value {
    let mut out = json!({
        "organization_id": o.organization_id,
        "organization_alias": o.organization_alias,
        "parent_organization_id": o.parent_id,
        "models": o.models,
        "spend": spend,
        "members": o.members.iter().map(|m| json!({
            "user_id": m.user_id,
            "user_role": m.role.as_str(),
        })).collect::<Vec<_>>(),
        "metadata": super::fields::metadata_view(&o.metadata_json),
        "created_at": crate::types::ms_to_rfc3339(o.created_at_ms),
        "updated_at": crate::types::ms_to_rfc3339(o.updated_at_ms),
        "created_by": o.created_by,
        "updated_by": o.updated_by,
    });
    if let Some(m) = out.as_object_mut() {
        super::fields::budget_view(&o.budget, m);
    }
    out
}

pub fn change(action: &str, before: Option<&OrgRecord>, after: Option<&OrgRecord>) -> Change {
    let id = after
        .or(before)
        .map(|o| o.organization_id.clone())
        .unwrap_or_default();
    Change {
        action: action.to_string(),
        table_name: TABLE.to_string(),
        object_id: id,
        before_value: before.map(|o| view(o, 0.0).to_string()).unwrap_or_default(),
        updated_values: after.map(|o| view(o, 0.0).to_string()).unwrap_or_default(),
    }
}
