//! A BulkRequest read and checked: the whole request (schemas, `Operations`, `failOnErrors`,
//! `maxOperations`) and each operation (method, path, bulkId, version, data and the bulkIds it
//! refers to). Nothing here sends anything.

use super::MAX_OPERATIONS;
use super::refs::{REF, refs_in};
use crate::scim::error::ScimError;
use crate::scim::schema::BULK_REQUEST;
use http::{Method, StatusCode};
use serde_json::{Map, Value};

/// An attribute by name in any case (SCIM names are case-insensitive); `null` is absent.
pub(super) fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// The request's `Operations` and `failOnErrors`, or why the whole request is refused.
pub(super) fn parse_request(
    body: &Map<String, Value>,
) -> Result<(&[Value], Option<usize>), ScimError> {
    let names_bulk = match field(body, "schemas") {
        Some(Value::Array(items)) => items.iter().any(|s| {
            s.as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(BULK_REQUEST))
        }),
        _ => false,
    };
    if !names_bulk {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("`schemas` must be [\"{BULK_REQUEST}\"]."),
        ));
    }
    let ops = match field(body, "Operations") {
        Some(Value::Array(ops)) => ops.as_slice(),
        Some(_) => {
            return Err(ScimError::bad(
                "invalidSyntax",
                "`Operations` must be an array.",
            ));
        }
        None => {
            return Err(ScimError::bad(
                "invalidSyntax",
                "A BulkRequest needs an `Operations` array.",
            ));
        }
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("tooMany"),
            format!(
                "The bulk request has {} operations; maxOperations is {MAX_OPERATIONS}.",
                ops.len()
            ),
        ));
    }
    let fail_on_errors = match field(body, "failOnErrors") {
        None => None,
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n >= 1 => Some(n),
            _ => {
                return Err(ScimError::bad(
                    "invalidValue",
                    "`failOnErrors` must be an integer of at least 1.",
                ));
            }
        },
    };
    Ok((ops, fail_on_errors))
}

/// One operation of the request, as its result echoes it, and what to send if it is sound.
pub(super) struct Parsed {
    pub method: Option<String>,
    pub bulk_id: Option<String>,
    pub op: Result<Op, ScimError>,
}

pub(super) struct Op {
    pub method: Method,
    /// Under `/scim/v2`, as sent: `bulkId:` references are replaced just before sending.
    pub path: String,
    pub version: Option<String>,
    pub data: Option<Value>,
    /// The bulkIds its path and data refer to.
    pub refs: Vec<String>,
}

pub(super) fn operation(v: &Value) -> Parsed {
    let Some(m) = v.as_object() else {
        let error = ScimError::bad("invalidSyntax", "An operation must be a JSON object.");
        return Parsed {
            method: None,
            bulk_id: None,
            op: Err(error),
        };
    };
    let method = field(m, "method")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase);
    let bulk_id = field(m, "bulkId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let op = checked(m, method.as_deref(), bulk_id.as_deref());
    Parsed {
        method,
        bulk_id,
        op,
    }
}

fn checked(
    m: &Map<String, Value>,
    method: Option<&str>,
    bulk_id: Option<&str>,
) -> Result<Op, ScimError> {
    let bad = |t: &'static str, d: &str| Err(ScimError::bad(t, d));
    let method = match method {
        Some("POST") => Method::POST,
        Some("PUT") => Method::PUT,
        Some("PATCH") => Method::PATCH,
        Some("DELETE") => Method::DELETE,
        Some(_) => {
            return bad(
                "invalidValue",
                "`method` must be POST, PUT, PATCH or DELETE.",
            );
        }
        None => return bad("invalidSyntax", "An operation needs a `method` (a string)."),
    };
    let Some(path) = field(m, "path").and_then(Value::as_str) else {
        return bad("invalidSyntax", "An operation needs a `path` (a string).");
    };
    if field(m, "bulkId").is_some() && bulk_id.is_none_or(str::is_empty) {
        return bad("invalidValue", "`bulkId` must be a non-empty string.");
    }
    let item = target(path)?;
    let allowed = if method == Method::POST { !item } else { item };
    if !allowed {
        return Err(ScimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            format!(
                "{method} is not allowed on {path}: POST goes to /Users or /Groups; PUT, PATCH \
                 and DELETE go to /Users/{{id}} or /Groups/{{id}}."
            ),
        ));
    }
    if method == Method::POST && bulk_id.is_none() {
        return bad("invalidSyntax", "A POST needs a `bulkId` (RFC 7644 §3.7).");
    }
    let version = match field(m, "version") {
        None => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(_) => return bad("invalidValue", "`version` must be a string (an ETag)."),
    };
    let data = match field(m, "data") {
        None if method != Method::DELETE => {
            return Err(ScimError::bad(
                "invalidSyntax",
                format!("A {method} needs `data`."),
            ));
        }
        // A DELETE sends no body, whatever `data` says.
        _ if method == Method::DELETE => None,
        d => d.cloned(),
    };
    let mut refs = Vec::new();
    if let Some(r) = path.rsplit('/').next().and_then(|id| id.strip_prefix(REF)) {
        refs.push(r.to_string());
    }
    if let Some(d) = &data {
        refs_in(d, &mut refs);
    }
    Ok(Op {
        method,
        path: path.to_string(),
        version,
        data,
        refs,
    })
}

/// Whether `path` names one resource (`/Users/{id}`) rather than a collection (`/Users`); what
/// is neither is refused, a nested bulk included.
fn target(path: &str) -> Result<bool, ScimError> {
    // A query would be dropped by the handlers and a fragment means nothing here: refused
    // rather than half-applied.
    if path.contains(['?', '#']) {
        return Err(ScimError::bad(
            "invalidValue",
            format!("`path` {path} may not have a query or a fragment."),
        ));
    }
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or("").split('/').collect();
    match segments.as_slice() {
        ["Users" | "Groups"] => Ok(false),
        ["Users" | "Groups", id] if !id.is_empty() => Ok(true),
        [first, ..] if first.eq_ignore_ascii_case("Bulk") => Err(ScimError::bad(
            "invalidValue",
            "A bulk operation may not be another bulk request.",
        )),
        _ => Err(ScimError::not_found(format!(
            "No such SCIM endpoint for a bulk operation: {path}. Operations go to /Users, \
             /Groups, /Users/{{id}} or /Groups/{{id}}."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_are_checked_before_anything_is_sent() {
        let status = |v: Value| {
            operation(&v)
                .op
                .err()
                .map(|e| (e.status.as_u16(), e.scim_type))
        };
        assert_eq!(
            status(json!({"method": "post", "path": "/Users", "bulkId": "a", "data": {}})),
            None
        );
        assert_eq!(
            status(json!({"method": "POST", "path": "/Users", "data": {}})),
            Some((400, Some("invalidSyntax")))
        );
        assert_eq!(
            status(json!({"method": "DELETE", "path": "/Users"})),
            Some((405, None))
        );
        assert_eq!(
            status(json!({"method": "POST", "path": "/Users/x", "bulkId": "a", "data": {}})),
            Some((405, None))
        );
        assert_eq!(
            status(json!({"method": "POST", "path": "/Bulk", "bulkId": "a", "data": {}})),
            Some((400, Some("invalidValue")))
        );
        assert_eq!(
            status(json!({"method": "PUT", "path": "/Me/x", "data": {}})),
            Some((404, None))
        );
        assert_eq!(
            status(json!({"method": "DELETE", "path": "/Users/x?attributes=id"})),
            Some((400, Some("invalidValue")))
        );
        assert_eq!(
            status(json!({"method": "GET", "path": "/Users/x"})),
            Some((400, Some("invalidValue")))
        );
        assert_eq!(
            status(json!({"path": "/Users/x"})),
            Some((400, Some("invalidSyntax")))
        );
        assert_eq!(
            status(json!({"method": "PATCH", "path": "/Users/x"})),
            Some((400, Some("invalidSyntax")))
        );
        assert_eq!(
            status(json!("DELETE /Users/x")),
            Some((400, Some("invalidSyntax")))
        );
        let p = operation(
            &json!({"method": "PATCH", "path": "/Groups/bulkId:g", "data": {"v": "bulkId:u"}}),
        );
        assert_eq!(
            p.op.ok().map(|o| o.refs),
            Some(vec!["g".to_string(), "u".to_string()])
        );
    }
}
