//! Users and teams as SCIM resources, and SCIM input as records: what is stored where, the
//! checks on each attribute, and what a scoped token may see.

use super::error::ScimError;
use super::schema::{self, Attr, Kind, Mutability};
use crate::store::{TeamRecord, UserRecord};
use crate::tenancy::Directory;
use crate::types::ms_to_rfc3339;
use serde_json::{Map, Value, json};

/// Attributes kept in the record's own fields (or computed), never in `attributes_json`.
/// `active` is kept in both: the record's flag decides access (absent means active), the
/// attribute says whether the IdP set it.
const USER_OWN: &[&str] = &[
    "schemas",
    "id",
    "meta",
    "userName",
    "externalId",
    "groups",
    "password",
];

pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// The version of a user as a resource: SCIM's own counter, else the record's last change.
pub fn user_version(u: &UserRecord) -> u64 {
    u.scim
        .as_ref()
        .map_or(u.updated_at_ms.max(0) as u64, |s| s.version)
}

pub fn team_version(t: &TeamRecord) -> u64 {
    t.scim
        .as_ref()
        .map_or(t.updated_at_ms.max(0) as u64, |s| s.version)
}

/// Whether a scoped token (confined to `org`) sees a user: one of its organisations lies in
/// that subtree.
pub fn user_visible(dir: &Directory, org: Option<&str>, u: &UserRecord) -> bool {
    match org {
        None => true,
        Some(root) => u
            .organizations
            .iter()
            .any(|m| dir.org_within(&m.organization_id, root)),
    }
}

pub fn team_visible(dir: &Directory, org: Option<&str>, t: &TeamRecord) -> bool {
    match org {
        None => true,
        Some(root) => t
            .organization_id
            .as_deref()
            .is_some_and(|o| dir.org_within(o, root)),
    }
}

/// A user as a SCIM User resource.
pub fn user_resource(u: &UserRecord, dir: &Directory, org: Option<&str>, base: &str) -> Value {
    let mut out: Map<String, Value> = u
        .scim
        .as_ref()
        .and_then(|s| serde_json::from_str::<Value>(&s.attributes_json).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let mut schemas = vec![json!(schema::USER)];
    if out.contains_key(schema::ENTERPRISE) {
        schemas.push(json!(schema::ENTERPRISE));
    }
    let (user_name, active) = match &u.scim {
        // `active` of a SCIM user is in its attributes, as the IdP set it (or absent).
        Some(s) => (s.user_name.clone(), s.active),
        // A user an administrator made: named by its email, else its id.
        None => (
            u.user_email.clone().unwrap_or_else(|| u.user_id.clone()),
            !u.blocked,
        ),
    };
    if u.scim.is_none() {
        if let Some(alias) = &u.user_alias {
            out.insert("displayName".into(), json!(alias));
        }
        if let Some(email) = &u.user_email {
            out.insert(
                "emails".into(),
                json!([{"value": email, "type": "work", "primary": true}]),
            );
        }
    }
    out.insert("schemas".into(), json!(schemas));
    out.insert("id".into(), json!(u.user_id));
    out.insert("userName".into(), json!(user_name));
    if u.scim.is_none() {
        out.insert("active".into(), json!(active));
    }
    if let Some(x) = &u.external_id {
        out.insert("externalId".into(), json!(x));
    }
    let groups: Vec<Value> = u
        .teams
        .iter()
        .filter_map(|t| dir.team(t))
        .filter(|t| team_visible(dir, org, &t.record))
        .map(|t| {
            json!({
                "value": t.record.team_id,
                "$ref": format!("{base}/Groups/{}", t.record.team_id),
                "display": t.record.team_alias.clone().unwrap_or_else(|| t.record.team_id.clone()),
                "type": "direct",
            })
        })
        .collect();
    if !groups.is_empty() {
        out.insert("groups".into(), json!(groups));
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": ms_to_rfc3339(u.created_at_ms),
            "lastModified": ms_to_rfc3339(u.updated_at_ms),
            "location": format!("{base}/Users/{}", u.user_id),
            "version": etag(user_version(u)),
        }),
    );
    Value::Object(out)
}

/// A team as a SCIM Group resource.
pub fn group_resource(t: &TeamRecord, dir: &Directory, org: Option<&str>, base: &str) -> Value {
    let display = t
        .scim
        .as_ref()
        .map(|s| s.display_name.clone())
        .or_else(|| t.team_alias.clone())
        .unwrap_or_else(|| t.team_id.clone());
    let members: Vec<Value> = t
        .members
        .iter()
        .filter(|m| {
            dir.user(&m.user_id)
                .is_some_and(|u| user_visible(dir, org, &u.record))
        })
        .map(|m| {
            let display = dir
                .user(&m.user_id)
                .and_then(|u| u.record.user_alias.clone().or(u.record.user_email.clone()));
            let mut v = json!({
                "value": m.user_id,
                "$ref": format!("{base}/Users/{}", m.user_id),
                "type": "User",
            });
            if let (Some(d), Some(o)) = (display, v.as_object_mut()) {
                o.insert("display".into(), json!(d));
            }
            v
        })
        .collect();
    let mut out = json!({
        "schemas": [schema::GROUP],
        "id": t.team_id,
        "displayName": display,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": ms_to_rfc3339(t.created_at_ms),
            "lastModified": ms_to_rfc3339(t.updated_at_ms),
            "location": format!("{base}/Groups/{}", t.team_id),
            "version": etag(team_version(t)),
        },
    });
    if let (Some(x), Some(o)) = (&t.external_id, out.as_object_mut()) {
        o.insert("externalId".into(), json!(x));
    }
    out
}

/// `"True"`/`"False"` (Entra ID) and real booleans.
pub fn boolean(v: &Value, what: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("`{what}` must be a boolean."),
        )),
    }
}

/// Checks one value against its attribute definition, normalising booleans; unknown
/// sub-attributes are dropped (RFC 7643 §2.1: a service provider may ignore them).
fn check_value(a: &Attr, v: &Value, path: &str) -> Result<Value, ScimError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if a.multi {
        let items = match v {
            Value::Array(items) => items.clone(),
            // A single value where a list belongs: taken as a list of one (IdPs do this).
            other => vec![other.clone()],
        };
        let one = Attr { multi: false, ..*a };
        return items
            .iter()
            .map(|x| check_value(&one, x, path))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    let bad =
        |expected: &str| ScimError::bad("invalidValue", format!("`{path}` must be {expected}."));
    match a.kind {
        Kind::Boolean => boolean(v, path).map(Value::Bool),
        Kind::String | Kind::Reference | Kind::DateTime | Kind::Binary => match v {
            Value::String(_) => Ok(v.clone()),
            _ => Err(bad("a string")),
        },
        Kind::Complex => {
            let Some(m) = v.as_object() else {
                return Err(bad("an object"));
            };
            let mut out = Map::new();
            for (k, x) in m {
                if let Some(sub) = schema::find(a.sub, k) {
                    if sub.mutability == Mutability::ReadOnly {
                        continue;
                    }
                    let x = check_value(sub, x, &format!("{path}.{}", sub.name))?;
                    if !x.is_null() {
                        out.insert(sub.name.to_string(), x);
                    }
                }
            }
            Ok(Value::Object(out))
        }
    }
}

/// The writable attributes of `input` under `attrs`, by their canonical names, checked.
fn writable(
    input: &Map<String, Value>,
    attrs: &[Attr],
    skip: &[&str],
) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    for (k, v) in input {
        if skip.iter().any(|s| s.eq_ignore_ascii_case(k)) {
            continue;
        }
        let Some(a) = schema::find(attrs, k) else {
            continue;
        };
        if a.mutability == Mutability::ReadOnly {
            continue;
        }
        let v = check_value(a, v, a.name)?;
        if !v.is_null() {
            out.insert(a.name.to_string(), v);
        }
    }
    Ok(out)
}

/// What a User resource asks for, checked: the fields records hold, and the rest.
pub struct UserInput {
    pub user_name: String,
    pub active: bool,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    /// The primary (else first) email, which becomes the user's `user_email`.
    pub email: Option<String>,
    pub attributes: Map<String, Value>,
}

pub fn user_input(v: &Value) -> Result<UserInput, ScimError> {
    let Some(m) = v.as_object() else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "A User must be a JSON object.",
        ));
    };
    let get = |name: &str| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let user_name = match get("userName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ScimError::bad(
                "invalidValue",
                "`userName` is required and may not be empty.",
            ));
        }
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                "`userName` must be a string.",
            ));
        }
    };
    let external_id = match get("externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                "`externalId` must be a string.",
            ));
        }
    };
    let mut attributes = writable(m, schema::USER_ATTRS, USER_OWN)?;
    // The enterprise extension, under its URN (also accepted with the URN in any case).
    if let Some((_, ext)) = m
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(schema::ENTERPRISE))
    {
        let Some(ext) = ext.as_object() else {
            return Err(ScimError::bad(
                "invalidValue",
                "The enterprise extension must be an object.",
            ));
        };
        let ext = writable(ext, schema::ENTERPRISE_ATTRS, &[])?;
        if !ext.is_empty() {
            attributes.insert(schema::ENTERPRISE.into(), Value::Object(ext));
        }
    }
    // `active` is in `attributes` (normalised to a boolean) when given; absent means active.
    let active = attributes
        .get("active")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let display_name = attributes
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::to_string);
    let email = primary_email(attributes.get("emails"));
    Ok(UserInput {
        user_name,
        active,
        external_id,
        display_name,
        email,
        attributes,
    })
}

fn primary_email(emails: Option<&Value>) -> Option<String> {
    let list = emails?.as_array()?;
    let primary = list
        .iter()
        .find(|e| e["primary"].as_bool() == Some(true))
        .or_else(|| list.first())?;
    primary["value"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_string())
}

/// What a Group resource asks for.
pub struct GroupInput {
    pub display_name: String,
    pub external_id: Option<String>,
    /// Member user ids, in order, without duplicates; `None` when the input had no `members`.
    pub members: Option<Vec<String>>,
}

pub fn group_input(v: &Value) -> Result<GroupInput, ScimError> {
    let Some(m) = v.as_object() else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "A Group must be a JSON object.",
        ));
    };
    let get = |name: &str| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let display_name = match get("displayName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(ScimError::bad(
                "invalidValue",
                "`displayName` is required and must be a non-empty string.",
            ));
        }
    };
    let external_id = match get("externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                "`externalId` must be a string.",
            ));
        }
    };
    let members = match get("members") {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => {
            let mut ids: Vec<String> = Vec::new();
            for item in items {
                let id = item
                    .get("value")
                    .and_then(Value::as_str)
                    .or_else(|| item.as_str())
                    .ok_or_else(|| {
                        ScimError::bad(
                            "invalidValue",
                            "Each member needs a `value`: the id of a User.",
                        )
                    })?;
                if !ids.iter().any(|x| x == id) {
                    ids.push(id.to_string());
                }
            }
            Some(ids)
        }
        Some(_) => {
            return Err(ScimError::bad("invalidValue", "`members` must be a list."));
        }
    };
    Ok(GroupInput {
        display_name,
        external_id,
        members,
    })
}
