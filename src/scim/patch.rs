//! Applying a SCIM PatchOp request (RFC 7644 §3.5.2) to a resource held as a JSON object.
//!
//! [`apply`] makes the structural change only: it canonicalises attribute names, converts the
//! `"True"`/`"False"` strings IdPs send for booleans, keeps at most one `primary` value and guards
//! read-only attributes. The caller still validates the result against the schema (types,
//! required attributes, uniqueness), hashes a `password` a client may have set, and refreshes
//! `meta` before storing it.
//!
//! Choices where the RFC is silent or real IdPs bend it (see also docs/scim.md):
//! - `op` is matched in any case (Entra ID sends `Add`/`Replace`/`Remove`); so are the member
//!   names `op`, `path`, `value` and `Operations`; an empty `path` is the same as none.
//! - Without a path, every key of the value object is itself a path: `name.givenName`,
//!   `emails[type eq "work"].value` and `urn:…:User:department` (Entra ID), or an extension
//!   schema URN holding an object of that extension's attributes (Okta, RFC examples).
//! - add and replace on a single-valued complex attribute merge sub-attributes (RFC §3.5.2.3:
//!   "sub-attributes that are not specified in the value parameter are left unchanged"); a null
//!   sub-attribute in the value unassigns it. A plain string given for a complex attribute with a
//!   `value` sub-attribute (Entra ID's `manager`) means `{"value": …}` and replaces the whole value.
//! - add to a multi-valued attribute skips a value already there and merges into a value with the
//!   same `value` (and no conflicting `type`) instead of duplicating it: re-adding a group member
//!   with a `display` does not make two members.
//! - A value selection filter that matches nothing: remove succeeds without change (the RFC's
//!   remove rules list no failure for it, and IdPs retry on errors); add and replace create the
//!   value when the filter is only `eq` conditions on sub-attributes that include `type` (Entra ID
//!   sends `emails[type eq "work"].value` for a user without a work email), and otherwise fail with
//!   `noTarget` (RFC §3.5.2.3).
//! - `remove` with a `value` array and no filter (Azure AD's group member removal) removes the
//!   values whose `value` sub-attribute matches one given; an empty array removes nothing.
//! - A null value (or empty array for a multi-valued attribute) in add/replace unassigns
//!   (RFC 7643 §2.5), except that add of nothing to a multi-valued attribute changes nothing.
//! - Read-only attributes: an operation that would change one fails with `mutability`, one that
//!   leaves it as it is succeeds (Okta puts the group's unchanged `id` in a rename). Read-only
//!   sub-attributes inside a value object (a manager's `displayName`) are dropped, as RFC 7644
//!   §3.3/§3.5.1 do for resource bodies; named in a path they are guarded like attributes.
//! - `schemas` is kept by the server: extension URNs are added when an extension's first
//!   attribute is set and dropped when its last is removed. A client may name extension URNs in
//!   `schemas` but not remove one whose attributes remain, nor change the core schema.
//! - An unknown attribute, in a path or as a key of a path-less value, fails with `invalidPath`;
//!   an unknown sub-attribute inside a value fails with `invalidValue`, unless its value is null
//!   (Entra ID's `"$ref": null`).
//! - Removing a required attribute is allowed here; the caller's validation rejects the result.

use std::fmt;

use serde_json::{Map, Value};

use super::filter::{self, AttrPath, Attributes, Filter, Op, get_ci, is_core_schema, shorten};
use super::path::{self, PatchPath};

/// The `schemas` value of a PatchOp request.
pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A failed PATCH: SCIM answers 400 with this `scimType` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// `invalidPath`, `noTarget`, `invalidValue`, `mutability` or `invalidSyntax`.
    pub scim_type: &'static str,
    pub message: String,
}

impl PatchError {
    fn new(scim_type: &'static str, message: impl Into<String>) -> PatchError {
        PatchError {
            scim_type,
            message: message.into(),
        }
    }

    fn invalid_path(message: impl Into<String>) -> PatchError {
        PatchError::new("invalidPath", message)
    }

    fn no_target(message: impl Into<String>) -> PatchError {
        PatchError::new("noTarget", message)
    }

    fn invalid_value(message: impl Into<String>) -> PatchError {
        PatchError::new("invalidValue", message)
    }

    fn mutability(message: impl Into<String>) -> PatchError {
        PatchError::new("mutability", message)
    }

    fn invalid_syntax(message: impl Into<String>) -> PatchError {
        PatchError::new("invalidSyntax", message)
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.scim_type, self.message)
    }
}

impl std::error::Error for PatchError {}

/// What PATCH needs to know about the resource type's attributes. Every method is asked with the
/// schema URN as written (None, a core URN or an extension URN) and the attribute names in
/// canonical spelling or as the client wrote them, so compare names case-insensitively.
pub trait Schema: Attributes {
    fn multi_valued(&self, schema: Option<&str>, attr: &str) -> bool;
    /// Mutability `readOnly` (id, meta, a User's groups, …).
    fn read_only(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> bool;
    /// The canonical spelling of the attribute (`sub: None`) or of its sub-attribute, e.g.
    /// "userName" for "USERNAME". None when the schema has no such attribute or sub-attribute
    /// (always None for a sub-attribute of a simple attribute).
    fn canonical(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> Option<String>;
    /// Whether the attribute (or sub-attribute) is of type boolean.
    fn boolean(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> bool;
}

/// Applies the PatchOp request `body` to `resource` (a JSON object). Atomic: on error `resource`
/// is left as it was (RFC 7644 §3.5.2).
pub fn apply(resource: &mut Value, body: &Value, schema: &dyn Schema) -> Result<(), PatchError> {
    let operations = operations(body)?;
    if !resource.is_object() {
        return Err(PatchError::invalid_value(
            "the resource is not a JSON object",
        ));
    }
    let mut work = resource.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_operation(&mut work, operation, schema).map_err(|e| PatchError {
            scim_type: e.scim_type,
            message: format!("Operations[{index}]: {}", e.message),
        })?;
    }
    *resource = work;
    Ok(())
}

fn operations(body: &Value) -> Result<&[Value], PatchError> {
    let Some(body) = body.as_object() else {
        return Err(PatchError::invalid_syntax(
            "a PATCH body must be a PatchOp JSON object",
        ));
    };
    // Tolerate a missing "schemas" (no IdP omits it, but nothing depends on it), not a wrong one.
    if let Some(schemas) = get_ci(body, "schemas") {
        let names_patch_op = match schemas {
            Value::Array(items) => items.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_URN))
            }),
            Value::String(s) => s.eq_ignore_ascii_case(PATCH_OP_URN),
            _ => false,
        };
        if !names_patch_op {
            return Err(PatchError::invalid_syntax(format!(
                "'schemas' must be [\"{PATCH_OP_URN}\"]"
            )));
        }
    }
    match get_ci(body, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => Ok(ops),
        Some(Value::Array(_)) => Err(PatchError::invalid_syntax(
            "'Operations' is empty; a PatchOp needs at least one operation",
        )),
        Some(_) => Err(PatchError::invalid_syntax("'Operations' must be an array")),
        None => Err(PatchError::invalid_syntax(
            "a PatchOp needs an 'Operations' array",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Remove,
    Replace,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Add => "add",
            Kind::Remove => "remove",
            Kind::Replace => "replace",
        }
    }
}

fn apply_operation(
    work: &mut Value,
    operation: &Value,
    schema: &dyn Schema,
) -> Result<(), PatchError> {
    let Some(operation) = operation.as_object() else {
        return Err(PatchError::invalid_syntax(
            "an operation must be a JSON object",
        ));
    };
    let kind = match get_ci(operation, "op") {
        None | Some(Value::Null) => {
            return Err(PatchError::invalid_syntax(
                "missing 'op' (add, remove or replace)",
            ));
        }
        Some(Value::String(op)) => match op.to_ascii_lowercase().as_str() {
            "add" => Kind::Add,
            "remove" => Kind::Remove,
            "replace" => Kind::Replace,
            _ => {
                return Err(PatchError::invalid_syntax(format!(
                    "unknown op '{}' (expected add, remove or replace)",
                    shorten(op)
                )));
            }
        },
        Some(_) => {
            return Err(PatchError::invalid_syntax(
                "'op' must be a string: add, remove or replace",
            ));
        }
    };
    let path = match get_ci(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => {
            Some(path::parse_path(p).map_err(|e| PatchError::invalid_path(e.message))?)
        }
        Some(_) => return Err(PatchError::invalid_path("'path' must be a string")),
    };
    let value = get_ci(operation, "value");
    match (kind, path, value) {
        (Kind::Remove, None, _) => Err(PatchError::no_target(
            "'remove' needs a 'path' naming what to remove",
        )),
        (Kind::Remove, Some(path), value) => apply_path(work, kind, &path, value, schema),
        (_, _, None) => Err(PatchError::invalid_value(format!(
            "'{}' needs a 'value'",
            kind.name()
        ))),
        (_, Some(path), Some(value)) => apply_path(work, kind, &path, Some(value), schema),
        (_, None, Some(Value::Object(attributes))) => {
            for (key, value) in attributes {
                apply_key(work, kind, None, key, value, schema)?;
            }
            Ok(())
        }
        (_, None, Some(_)) => Err(PatchError::invalid_value(format!(
            "without a 'path', the value of '{}' must be an object of attributes",
            kind.name()
        ))),
    }
}

/// One key of a path-less add/replace value (or of an extension object inside it).
fn apply_key(
    work: &mut Value,
    kind: Kind,
    extension: Option<&str>,
    key: &str,
    value: &Value,
    schema: &dyn Schema,
) -> Result<(), PatchError> {
    let mut path = path::parse_path(key).map_err(|e| {
        PatchError::invalid_path(format!("value key '{}': {}", shorten(key), e.message))
    })?;
    if let Some(urn) = extension {
        match &path.attr.schema {
            Some(own) if !own.eq_ignore_ascii_case(urn) => {
                return Err(PatchError::invalid_path(format!(
                    "'{}' inside the '{urn}' object names another schema",
                    shorten(key)
                )));
            }
            _ => path.attr.schema = Some(urn.to_string()),
        }
    }
    apply_path(work, kind, &path, Some(value), schema)
}

/// The attribute a path names, resolved against the schema.
struct Target<'a> {
    schema: &'a dyn Schema,
    /// As written: `None`, a core URN or an extension URN.
    urn: Option<&'a str>,
    /// The path's attribute, for filter evaluation.
    path: &'a AttrPath,
    /// Canonical spelling.
    name: String,
    multi: bool,
}

impl Target<'_> {
    fn sub_name(&self, sub: &str) -> Option<String> {
        self.schema.canonical(self.urn, &self.name, Some(sub))
    }

    /// The key a well-known sub-attribute (`value`, `type`, `primary`) is stored under.
    fn key(&self, sub: &str) -> String {
        self.sub_name(sub).unwrap_or_else(|| sub.to_string())
    }

    /// Whether the attribute is complex with a `value` sub-attribute, so a bare value means it.
    fn has_value_sub(&self) -> bool {
        self.sub_name("value").is_some()
    }

    fn read_only(&self, sub: Option<&str>) -> bool {
        self.schema.read_only(self.urn, &self.name, sub)
    }

    fn case_exact(&self, sub: Option<&str>) -> bool {
        self.schema
            .case_exact(self.urn, &self.name, sub)
            .unwrap_or(false)
    }

    fn display(&self, sub: Option<&str>) -> String {
        match sub {
            Some(sub) => format!("{}.{sub}", self.name),
            None => self.name.clone(),
        }
    }

    /// A simple value for the attribute or its sub-attribute, with "True"/"False" made boolean.
    fn scalar(&self, sub: Option<&str>, value: &Value) -> Result<Value, PatchError> {
        if !self.schema.boolean(self.urn, &self.name, sub) {
            return Ok(value.clone());
        }
        match value {
            Value::Bool(_) | Value::Null => Ok(value.clone()),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            other => Err(PatchError::invalid_value(format!(
                "'{}' is a boolean; got {}",
                self.display(sub),
                shorten(&other.to_string())
            ))),
        }
    }

    /// A complex value's sub-attributes under canonical names. Nulls are kept (they unassign in
    /// a merge); read-only sub-attributes are dropped unless the whole attribute is read-only, in
    /// which case they must stay for the unchanged-value check.
    fn complex(&self, object: &Map<String, Value>) -> Result<Map<String, Value>, PatchError> {
        let whole_read_only = self.read_only(None);
        let mut out = Map::new();
        for (key, value) in object {
            let Some(sub) = self.sub_name(key) else {
                // Entra ID sends `"$ref": null` in members; a null asks for nothing.
                if value.is_null() {
                    continue;
                }
                return Err(PatchError::invalid_value(format!(
                    "'{}' has no sub-attribute '{}'",
                    self.name,
                    shorten(key)
                )));
            };
            if !whole_read_only && self.read_only(Some(&sub)) {
                continue;
            }
            let value = self.scalar(Some(&sub), value)?;
            put(&mut out, &sub, value);
        }
        Ok(out)
    }

    /// One value of the attribute; `None` for null.
    fn element(&self, value: &Value) -> Result<Option<Value>, PatchError> {
        match value {
            Value::Null => Ok(None),
            Value::Object(object) => Ok(Some(Value::Object(self.complex(object)?))),
            Value::Array(_) => Err(PatchError::invalid_value(format!(
                "a value of '{}' cannot be an array",
                self.name
            ))),
            scalar if self.has_value_sub() => {
                let key = self.key("value");
                let mut object = Map::new();
                object.insert(key.clone(), self.scalar(Some(&key), scalar)?);
                Ok(Some(Value::Object(object)))
            }
            scalar => Ok(Some(self.scalar(None, scalar)?)),
        }
    }

    /// The values of a multi-valued attribute; a single value stands for a one-element array.
    fn elements(&self, value: &Value) -> Result<Vec<Value>, PatchError> {
        let items: &[Value] = match value {
            Value::Array(items) => items,
            other => std::slice::from_ref(other),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(element) = self.element(item)? {
                out.push(element);
            }
        }
        Ok(out)
    }

    fn is_primary(&self, value: &Value) -> bool {
        value
            .as_object()
            .and_then(|o| get_ci(o, "primary"))
            .is_some_and(|p| *p == Value::Bool(true))
    }

    /// RFC 7644 §3.5.2: a value made primary demotes the others; two made primary at once is an
    /// error (RFC 7643 §2.4: "primary" true appears no more than once).
    fn settle_primary(&self, items: &mut [Value], winners: &[usize]) -> Result<(), PatchError> {
        let mut winners = winners.to_vec();
        winners.sort_unstable();
        winners.dedup();
        match winners.as_slice() {
            [] => Ok(()),
            [winner] => {
                let key = self.key("primary");
                for (i, item) in items.iter_mut().enumerate() {
                    if i != *winner
                        && self.is_primary(item)
                        && let Value::Object(object) = item
                    {
                        put(object, &key, Value::Bool(false));
                    }
                }
                Ok(())
            }
            _ => Err(PatchError::invalid_value(format!(
                "more than one value of '{}' would be primary",
                self.name
            ))),
        }
    }

    /// Whether two values of a multi-valued attribute are the same value: equal, or complex with
    /// the same `value` and no conflicting `type`.
    fn same_value(&self, a: &Value, b: &Value) -> bool {
        if a == b {
            return true;
        }
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                let (Some(va), Some(vb)) = (get_ci(a, "value"), get_ci(b, "value")) else {
                    return false;
                };
                if !self.equal(Some("value"), va, vb) {
                    return false;
                }
                match (get_ci(a, "type"), get_ci(b, "type")) {
                    (Some(ta), Some(tb)) => self.equal(Some("type"), ta, tb),
                    _ => true,
                }
            }
            _ => self.equal(None, a, b),
        }
    }

    fn equal(&self, sub: Option<&str>, a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::String(x), Value::String(y)) if !self.case_exact(sub) => {
                x.to_lowercase() == y.to_lowercase()
            }
            _ => a == b,
        }
    }
}

fn apply_path(
    work: &mut Value,
    kind: Kind,
    path: &PatchPath,
    value: Option<&Value>,
    schema: &dyn Schema,
) -> Result<(), PatchError> {
    let urn = path.attr.schema.as_deref();
    if urn.is_none() && path.attr.attr.eq_ignore_ascii_case("schemas") {
        if path.filter.is_some() || path.attr.sub.is_some() {
            return Err(PatchError::invalid_path(
                "'schemas' has no sub-attributes to select",
            ));
        }
        return patch_schemas(work, kind, value);
    }
    let Some(name) = schema.canonical(urn, &path.attr.attr, None) else {
        if let (Some(urn), None, None) = (urn, &path.filter, &path.attr.sub) {
            // Not an attribute of the schema: maybe the path (or value key) is a whole extension
            // schema URN, like "urn:…:enterprise:2.0:User".
            let extension = format!("{urn}:{}", path.attr.attr);
            match (kind, value) {
                (Kind::Remove, _) if remove_extension(work, &extension) => return Ok(()),
                (Kind::Add | Kind::Replace, Some(Value::Object(attributes))) => {
                    for (key, value) in attributes {
                        apply_key(work, kind, Some(&extension), key, value, schema)?;
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        return Err(PatchError::invalid_path(format!(
            "unknown attribute '{}'",
            shorten(&path.attr.to_string())
        )));
    };
    let target = Target {
        schema,
        urn,
        path: &path.attr,
        name,
        multi: schema.multi_valued(urn, &path.attr.attr),
    };
    let sub = match path.sub() {
        Some(sub) => Some(target.sub_name(sub).ok_or_else(|| {
            PatchError::invalid_path(format!(
                "unknown attribute '{}': '{}' has no sub-attribute '{}'",
                shorten(&path.attr.to_string()),
                target.name,
                shorten(sub)
            ))
        })?),
        None => None,
    };
    if let Some(filter) = &path.filter {
        if !target.multi {
            return Err(PatchError::invalid_path(format!(
                "'{}' is single-valued; '[ ]' selects among the values of a multi-valued attribute",
                target.name
            )));
        }
        let attrs: &dyn Attributes = schema;
        filter::check_relative(filter, &path.attr, attrs).map_err(|e| {
            PatchError::invalid_path(format!("invalid filter in path: {}", e.message))
        })?;
    }

    let extension = urn.filter(|u| !is_core_schema(u));
    let had_extension = extension.is_some_and(|u| extension_in_use(work, u));
    let guarded =
        target.read_only(None) || sub.as_deref().is_some_and(|s| target.read_only(Some(s)));
    {
        let Some(container) = container(work, extension, kind != Kind::Remove) else {
            // Removing from an extension the resource does not have.
            return Ok(());
        };
        let before = get_ci(container, &target.name)
            .filter(|v| !v.is_null())
            .cloned();
        match (&path.filter, kind) {
            (Some(filter), Kind::Remove) => {
                remove_filtered(container, &target, filter, sub.as_deref())?
            }
            (Some(filter), _) => {
                set_filtered(container, &target, filter, sub.as_deref(), value_of(value)?)?
            }
            (None, Kind::Remove) => remove_plain(container, &target, sub.as_deref(), value)?,
            (None, _) => set_plain(container, kind, &target, sub.as_deref(), value_of(value)?)?,
        }
        let after = get_ci(container, &target.name).filter(|v| !v.is_null());
        if guarded && before.as_ref() != after {
            return Err(PatchError::mutability(format!(
                "'{}' is read-only",
                target.display(sub.as_deref())
            )));
        }
    }
    if let Some(urn) = extension {
        settle_extension(work, urn, had_extension);
    }
    Ok(())
}

fn value_of(value: Option<&Value>) -> Result<&Value, PatchError> {
    value.ok_or_else(|| PatchError::invalid_value("missing 'value'"))
}

/// add/replace without a value filter.
fn set_plain(
    container: &mut Map<String, Value>,
    kind: Kind,
    target: &Target<'_>,
    sub: Option<&str>,
    value: &Value,
) -> Result<(), PatchError> {
    let name = target.name.as_str();
    match (sub, target.multi) {
        (Some(sub), true) => {
            // `emails.type`: every value's sub-attribute.
            let new = target.scalar(Some(sub), value)?;
            let mut items = take_items(container, name);
            if items.is_empty() {
                if new.is_null() {
                    return Ok(());
                }
                items.push(Value::Object(Map::new()));
            }
            let mut winners = Vec::new();
            for (i, item) in items.iter_mut().enumerate() {
                set_sub(item, target, sub, &new)?;
                if target.is_primary(item) && sub.eq_ignore_ascii_case("primary") {
                    winners.push(i);
                }
            }
            target.settle_primary(&mut items, &winners)?;
            put_items(container, name, items);
        }
        (Some(sub), false) => {
            let new = target.scalar(Some(sub), value)?;
            let mut current = match take(container, name) {
                Some(Value::Object(object)) => Value::Object(object),
                _ => Value::Object(Map::new()),
            };
            set_sub(&mut current, target, sub, &new)?;
            put_unless_empty(container, name, current);
        }
        (None, true) => {
            let new = target.elements(value)?;
            let mut items = match kind {
                Kind::Replace => {
                    take(container, name);
                    Vec::new()
                }
                _ => take_items(container, name),
            };
            add_items(target, &mut items, new)?;
            put_items(container, name, items);
        }
        (None, false) => match target.element(value)? {
            None => {
                take(container, name);
            }
            Some(Value::Object(new)) => {
                let bare = !value.is_object();
                let mut current = match take(container, name) {
                    Some(Value::Object(object)) if !bare => object,
                    _ => Map::new(),
                };
                merge(&mut current, new);
                put_unless_empty(container, name, Value::Object(current));
            }
            Some(new) => put(container, name, new),
        },
    }
    Ok(())
}

/// Sets (or with null unassigns) one sub-attribute of a complex value.
fn set_sub(
    item: &mut Value,
    target: &Target<'_>,
    sub: &str,
    new: &Value,
) -> Result<(), PatchError> {
    let Value::Object(object) = item else {
        return Err(PatchError::invalid_path(format!(
            "the values of '{}' are not complex: they have no '{sub}'",
            target.name
        )));
    };
    if new.is_null() {
        take(object, sub);
    } else {
        put(object, sub, new.clone());
    }
    Ok(())
}

/// Appends `new` to `items`, skipping values already there and merging into the same value.
fn add_items(
    target: &Target<'_>,
    items: &mut Vec<Value>,
    new: Vec<Value>,
) -> Result<(), PatchError> {
    let mut winners = Vec::new();
    for value in new {
        let stripped = strip_nulls(value.clone());
        let index = match items
            .iter()
            .position(|item| target.same_value(item, &stripped))
        {
            Some(i) => {
                if let (Some(Value::Object(current)), Value::Object(update)) =
                    (items.get_mut(i), value)
                {
                    merge(current, update);
                }
                i
            }
            None => {
                if is_empty_object(&stripped) {
                    continue;
                }
                items.push(stripped);
                items.len() - 1
            }
        };
        if items.get(index).is_some_and(|item| target.is_primary(item)) {
            winners.push(index);
        }
    }
    target.settle_primary(items, &winners)
}

/// A value that is about to be appended carries no nulls: they only mean "unassign" in a merge.
fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            Value::Object(object.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

/// add/replace with a value filter (`emails[type eq "work"]`, `…].value`).
fn set_filtered(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    filter: &Filter,
    sub: Option<&str>,
    value: &Value,
) -> Result<(), PatchError> {
    let name = target.name.as_str();
    let mut items = take_items(container, name);
    let matched = matching(target, filter, &items)?;
    if matched.is_empty() {
        let Some(mut created) = creatable(target, filter) else {
            put_items(container, name, items);
            return Err(PatchError::no_target(format!(
                "no value of '{name}' matches the filter"
            )));
        };
        match sub {
            Some(sub) => {
                let new = target.scalar(Some(sub), value)?;
                if new.is_null() {
                    put_items(container, name, items);
                    return Ok(());
                }
                put(&mut created, sub, new);
            }
            None => match target.element(value)? {
                Some(Value::Object(update)) => merge(&mut created, update),
                Some(_) => {
                    return Err(PatchError::invalid_value(format!(
                        "'{name}' values are complex; give an object of sub-attributes"
                    )));
                }
                None => {
                    put_items(container, name, items);
                    return Ok(());
                }
            },
        }
        items.push(Value::Object(created));
        let winners: Vec<usize> = items
            .last()
            .filter(|item| target.is_primary(item))
            .map(|_| items.len() - 1)
            .into_iter()
            .collect();
        target.settle_primary(&mut items, &winners)?;
        put_items(container, name, items);
        return Ok(());
    }
    let writes_primary = match sub {
        Some(sub) => sub.eq_ignore_ascii_case("primary"),
        None => value
            .as_object()
            .is_some_and(|o| get_ci(o, "primary").is_some()),
    };
    let mut dropped = Vec::new();
    for &i in &matched {
        let Some(item) = items.get_mut(i) else {
            continue;
        };
        match sub {
            Some(sub) => {
                let new = target.scalar(Some(sub), value)?;
                set_sub(item, target, sub, &new)?;
            }
            None => match (target.element(value)?, &mut *item) {
                (None, _) => dropped.push(i),
                (Some(Value::Object(update)), Value::Object(current)) => merge(current, update),
                (Some(new), item) => *item = new,
            },
        }
        if is_empty_object(item) {
            dropped.push(i);
        }
    }
    let winners: Vec<usize> = if writes_primary {
        matched
            .iter()
            .copied()
            .filter(|&i| {
                !dropped.contains(&i) && items.get(i).is_some_and(|v| target.is_primary(v))
            })
            .collect()
    } else {
        Vec::new()
    };
    target.settle_primary(&mut items, &winners)?;
    let items = items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, v)| v)
        .collect();
    put_items(container, name, items);
    Ok(())
}

/// The value a filter of `eq` conditions describes, when it names a `type`: Entra ID replaces
/// `emails[type eq "work"].value` on users that have no work email yet.
fn creatable(target: &Target<'_>, filter: &Filter) -> Option<Map<String, Value>> {
    fn collect(target: &Target<'_>, filter: &Filter, out: &mut Map<String, Value>) -> bool {
        match filter {
            Filter::And(a, b) => collect(target, a, out) && collect(target, b, out),
            Filter::Compare {
                path,
                op: Op::Eq,
                value,
            } if path.schema.is_none() && path.sub.is_none() => {
                let json = value.to_json();
                let Some(sub) = target.sub_name(&path.attr) else {
                    return false;
                };
                if json.is_null() {
                    return false;
                }
                put(out, &sub, json);
                true
            }
            _ => false,
        }
    }
    let mut out = Map::new();
    let type_key = target.sub_name("type")?;
    (collect(target, filter, &mut out) && out.contains_key(&type_key)).then_some(out)
}

fn matching(
    target: &Target<'_>,
    filter: &Filter,
    items: &[Value],
) -> Result<Vec<usize>, PatchError> {
    let mut matched = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let hit =
            filter::evaluate_value(filter, target.path, item, target.schema).map_err(|e| {
                PatchError::invalid_path(format!("invalid filter in path: {}", e.message))
            })?;
        if hit {
            matched.push(i);
        }
    }
    Ok(matched)
}

/// remove without a value filter.
fn remove_plain(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    sub: Option<&str>,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let name = target.name.as_str();
    match (sub, target.multi, value) {
        (Some(sub), true, _) => {
            let mut items = take_items(container, name);
            for item in &mut items {
                if let Value::Object(object) = item {
                    take(object, sub);
                }
            }
            items.retain(|item| !is_empty_object(item));
            put_items(container, name, items);
        }
        (Some(sub), false, _) => {
            if let Some(mut current) = take(container, name) {
                if let Value::Object(object) = &mut current {
                    take(object, sub);
                }
                put_unless_empty(container, name, current);
            }
        }
        // Azure AD removes group members by listing them in "value" instead of filtering.
        (None, true, Some(value)) if !value.is_null() => {
            let doomed = target.elements(value)?;
            let mut items = take_items(container, name);
            items.retain(|item| !doomed.iter().any(|d| removes(target, d, item)));
            put_items(container, name, items);
        }
        (None, _, _) => {
            take(container, name);
        }
    }
    Ok(())
}

/// Whether the value `doomed`, given in a remove, designates `item`: by its `value` when given
/// one, otherwise by equality.
fn removes(target: &Target<'_>, doomed: &Value, item: &Value) -> bool {
    match (doomed, item) {
        (Value::Object(d), Value::Object(i)) => match (get_ci(d, "value"), get_ci(i, "value")) {
            (Some(dv), Some(iv)) => target.equal(Some("value"), dv, iv),
            (Some(_), None) => false,
            (None, _) => strip_nulls(doomed.clone()) == *item,
        },
        _ => target.equal(None, doomed, item),
    }
}

fn remove_filtered(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    filter: &Filter,
    sub: Option<&str>,
) -> Result<(), PatchError> {
    let name = target.name.as_str();
    let items = take_items(container, name);
    let matched = matching(target, filter, &items)?;
    let mut kept = Vec::with_capacity(items.len());
    for (i, mut item) in items.into_iter().enumerate() {
        if matched.contains(&i) {
            let Some(sub) = sub else { continue };
            if let Value::Object(object) = &mut item {
                take(object, sub);
            }
            if is_empty_object(&item) {
                continue;
            }
        }
        kept.push(item);
    }
    put_items(container, name, kept);
    Ok(())
}

/// add/replace/remove of `schemas` itself: the server keeps it in step with the extension
/// objects, so a client may only declare extensions, or restate what is there.
fn patch_schemas(work: &mut Value, kind: Kind, value: Option<&Value>) -> Result<(), PatchError> {
    let Some(top) = work.as_object_mut() else {
        return Ok(());
    };
    if kind == Kind::Remove {
        return Err(PatchError::mutability(
            "'schemas' cannot be removed; remove the extension's attributes instead",
        ));
    }
    let given: Vec<&str> = match value {
        Some(Value::Array(items)) => {
            let mut given = Vec::with_capacity(items.len());
            for item in items {
                let Some(urn) = item.as_str() else {
                    return Err(PatchError::invalid_value(
                        "'schemas' must be an array of URNs",
                    ));
                };
                given.push(urn);
            }
            given
        }
        Some(Value::String(urn)) => vec![urn.as_str()],
        _ => {
            return Err(PatchError::invalid_value(
                "'schemas' must be an array of URNs",
            ));
        }
    };
    let mut current: Vec<String> = match get_ci(top, "schemas") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    for urn in &given {
        if !current.iter().any(|c| c.eq_ignore_ascii_case(urn)) {
            if is_core_schema(urn) {
                return Err(PatchError::mutability(format!(
                    "the core schema of a resource cannot change (asked to add '{}')",
                    shorten(urn)
                )));
            }
            current.push((*urn).to_string());
        }
    }
    if kind == Kind::Replace {
        let mut kept = Vec::with_capacity(current.len());
        for urn in current {
            if given.iter().any(|g| g.eq_ignore_ascii_case(&urn)) {
                kept.push(urn);
            } else if is_core_schema(&urn) || get_ci(top, &urn).is_some_and(filter::is_present) {
                return Err(PatchError::mutability(format!(
                    "'schemas' must keep '{}': remove that schema's attributes instead",
                    shorten(&urn)
                )));
            }
        }
        current = kept;
    }
    put(
        top,
        "schemas",
        Value::Array(current.into_iter().map(Value::String).collect()),
    );
    Ok(())
}

/// The object holding the attributes of `extension` (or the top level for core attributes),
/// created when `create`.
fn container<'a>(
    work: &'a mut Value,
    extension: Option<&str>,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let top = work.as_object_mut()?;
    let Some(urn) = extension else {
        return Some(top);
    };
    let key = match find_key(top, urn) {
        Some(key) => key,
        // A client may spell the URN in any case; the one already in "schemas" wins.
        None if create => match get_ci(top, "schemas") {
            Some(Value::Array(listed)) => listed
                .iter()
                .filter_map(Value::as_str)
                .find(|s| s.eq_ignore_ascii_case(urn))
                .unwrap_or(urn)
                .to_string(),
            _ => urn.to_string(),
        },
        None => return None,
    };
    let slot = top.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        if !create {
            return None;
        }
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

fn extension_in_use(work: &Value, urn: &str) -> bool {
    work.as_object()
        .and_then(|top| get_ci(top, urn))
        .is_some_and(filter::is_present)
}

/// Keeps `schemas` and the extension object in step after an operation on its attributes.
fn settle_extension(work: &mut Value, urn: &str, had: bool) {
    let in_use = extension_in_use(work, urn);
    let Some(top) = work.as_object_mut() else {
        return;
    };
    if !in_use {
        take(top, urn);
    }
    let Some(Value::Array(schemas)) = find_key(top, "schemas").and_then(|k| top.get_mut(&k)) else {
        return;
    };
    let listed = schemas
        .iter()
        .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)));
    if in_use && !listed {
        schemas.push(Value::String(urn.to_string()));
    } else if had && !in_use {
        schemas.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)));
    }
}

/// Removes a whole extension object named by its schema URN; false when there is none.
fn remove_extension(work: &mut Value, urn: &str) -> bool {
    if work.as_object().and_then(|top| get_ci(top, urn)).is_none() {
        return false;
    }
    let had = extension_in_use(work, urn);
    if let Some(top) = work.as_object_mut() {
        take(top, urn);
    }
    settle_extension(work, urn, had);
    true
}

// ---------------------------------------------------------------------------------------------
// Map helpers: resources may hold a key in any case; writes leave it in canonical spelling.

fn find_key(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_string());
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Removes every spelling of `name`, returning the value.
fn take(map: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let exact = map.remove(name);
    let others: Vec<String> = map
        .keys()
        .filter(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    let mut found = exact;
    for key in others {
        let value = map.remove(&key);
        if found.is_none() {
            found = value;
        }
    }
    found
}

fn put(map: &mut Map<String, Value>, name: &str, value: Value) {
    take(map, name);
    map.insert(name.to_string(), value);
}

fn put_unless_empty(map: &mut Map<String, Value>, name: &str, value: Value) {
    if filter::is_present(&value) {
        put(map, name, value);
    } else {
        take(map, name);
    }
}

/// The values of a multi-valued attribute, removed from the map for editing.
fn take_items(map: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    match take(map, name) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(single) => vec![single],
    }
}

/// Stores edited values back; no values means unassigned.
fn put_items(map: &mut Map<String, Value>, name: &str, items: Vec<Value>) {
    if items.is_empty() {
        take(map, name);
    } else {
        put(map, name, Value::Array(items));
    }
}

/// Merges sub-attributes into a complex value; a null unassigns.
fn merge(current: &mut Map<String, Value>, update: Map<String, Value>) {
    for (key, value) in update {
        if value.is_null() {
            take(current, &key);
        } else {
            put(current, &key, value);
        }
    }
}

fn is_empty_object(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.values().all(Value::is_null))
}

/// A User/Group schema (RFC 7643 §4, §8.7) for the tests of the scim modules.
#[cfg(test)]
pub(crate) mod test_schema {
    use super::Schema;
    use crate::scim::filter::Attributes;

    pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
    pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    /// A made-up extension with a number, a boolean and a multi-valued string.
    pub const TEST_EXT: &str = "urn:example:scim:schemas:extension:test:2.0:User";

    #[derive(Clone, Copy)]
    struct Sub {
        name: &'static str,
        read_only: bool,
        boolean: bool,
        case_exact: bool,
    }

    const fn s(name: &'static str) -> Sub {
        Sub {
            name,
            read_only: false,
            boolean: false,
            case_exact: false,
        }
    }
    const fn exact(name: &'static str) -> Sub {
        Sub {
            name,
            read_only: false,
            boolean: false,
            case_exact: true,
        }
    }
    const fn ro(name: &'static str) -> Sub {
        Sub {
            name,
            read_only: true,
            boolean: false,
            case_exact: false,
        }
    }
    const fn b(name: &'static str) -> Sub {
        Sub {
            name,
            read_only: false,
            boolean: true,
            case_exact: false,
        }
    }

    struct Def {
        name: &'static str,
        multi: bool,
        read_only: bool,
        boolean: bool,
        case_exact: bool,
        subs: &'static [Sub],
    }

    const fn simple(name: &'static str) -> Def {
        Def {
            name,
            multi: false,
            read_only: false,
            boolean: false,
            case_exact: false,
            subs: &[],
        }
    }
    const fn complex(name: &'static str, subs: &'static [Sub]) -> Def {
        Def {
            name,
            multi: false,
            read_only: false,
            boolean: false,
            case_exact: false,
            subs,
        }
    }
    const fn multi(name: &'static str, subs: &'static [Sub]) -> Def {
        Def {
            name,
            multi: true,
            read_only: false,
            boolean: false,
            case_exact: false,
            subs,
        }
    }

    const PLURAL: &[Sub] = &[s("value"), s("display"), s("type"), b("primary")];
    const REF_PLURAL: &[Sub] = &[exact("value"), exact("$ref"), s("display"), s("type")];
    const META: &[Sub] = &[
        exact("resourceType"),
        s("created"),
        s("lastModified"),
        exact("location"),
        exact("version"),
    ];
    const COMMON: &[Def] = &[
        Def {
            read_only: true,
            case_exact: true,
            ..simple("id")
        },
        Def {
            case_exact: true,
            ..simple("externalId")
        },
        Def {
            read_only: true,
            ..complex("meta", META)
        },
        Def {
            multi: true,
            case_exact: true,
            ..simple("schemas")
        },
    ];
    const USER_ATTRS: &[Def] = &[
        simple("userName"),
        complex(
            "name",
            &[
                s("formatted"),
                s("familyName"),
                s("givenName"),
                s("middleName"),
                s("honorificPrefix"),
                s("honorificSuffix"),
            ],
        ),
        simple("displayName"),
        simple("nickName"),
        Def {
            case_exact: true,
            ..simple("profileUrl")
        },
        simple("title"),
        simple("userType"),
        simple("preferredLanguage"),
        simple("locale"),
        simple("timezone"),
        Def {
            boolean: true,
            ..simple("active")
        },
        Def {
            case_exact: true,
            ..simple("password")
        },
        multi("emails", PLURAL),
        multi("phoneNumbers", PLURAL),
        multi("ims", PLURAL),
        multi("photos", PLURAL),
        multi(
            "addresses",
            &[
                s("formatted"),
                s("streetAddress"),
                s("locality"),
                s("region"),
                s("postalCode"),
                s("country"),
                s("type"),
                b("primary"),
            ],
        ),
        Def {
            read_only: true,
            ..multi("groups", REF_PLURAL)
        },
        multi("entitlements", PLURAL),
        multi("roles", PLURAL),
        multi("x509Certificates", PLURAL),
    ];
    const ENTERPRISE_ATTRS: &[Def] = &[
        simple("employeeNumber"),
        simple("costCenter"),
        simple("organization"),
        simple("division"),
        simple("department"),
        complex(
            "manager",
            &[exact("value"), exact("$ref"), ro("displayName")],
        ),
    ];
    const TEST_ATTRS: &[Def] = &[
        simple("level"),
        Def {
            boolean: true,
            ..simple("vip")
        },
        Def {
            multi: true,
            ..simple("tags")
        },
    ];
    const GROUP_ATTRS: &[Def] = &[simple("displayName"), multi("members", REF_PLURAL)];

    /// Core attributes may be written with or without their schema URN; extension attributes
    /// need theirs.
    pub struct TestSchema {
        core_urn: &'static str,
        core: &'static [Def],
        extensions: &'static [(&'static str, &'static [Def])],
    }

    pub const USERS: TestSchema = TestSchema {
        core_urn: USER,
        core: USER_ATTRS,
        extensions: &[(ENTERPRISE, ENTERPRISE_ATTRS), (TEST_EXT, TEST_ATTRS)],
    };
    pub const GROUPS: TestSchema = TestSchema {
        core_urn: GROUP,
        core: GROUP_ATTRS,
        extensions: &[],
    };

    impl TestSchema {
        fn def(&self, schema: Option<&str>, attr: &str) -> Option<&'static Def> {
            let find =
                |defs: &'static [Def]| defs.iter().find(|d| d.name.eq_ignore_ascii_case(attr));
            match schema {
                None => find(COMMON).or_else(|| find(self.core)),
                Some(urn) if urn.eq_ignore_ascii_case(self.core_urn) => {
                    find(COMMON).or_else(|| find(self.core))
                }
                Some(urn) => self
                    .extensions
                    .iter()
                    .find(|(u, _)| u.eq_ignore_ascii_case(urn))
                    .and_then(|(_, defs)| find(defs)),
            }
        }

        fn sub(&self, schema: Option<&str>, attr: &str, sub: &str) -> Option<&'static Sub> {
            self.def(schema, attr)?
                .subs
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(sub))
        }
    }

    impl Attributes for TestSchema {
        fn case_exact(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> Option<bool> {
            match sub {
                None => self.def(schema, attr).map(|d| d.case_exact),
                Some(sub) => self.sub(schema, attr, sub).map(|s| s.case_exact),
            }
        }
    }

    impl Schema for TestSchema {
        fn multi_valued(&self, schema: Option<&str>, attr: &str) -> bool {
            self.def(schema, attr).is_some_and(|d| d.multi)
        }

        fn read_only(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> bool {
            match sub {
                None => self.def(schema, attr).is_some_and(|d| d.read_only),
                Some(sub) => self.sub(schema, attr, sub).is_some_and(|s| s.read_only),
            }
        }

        fn canonical(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> Option<String> {
            match sub {
                None => self.def(schema, attr).map(|d| d.name.to_string()),
                Some(sub) => self.sub(schema, attr, sub).map(|s| s.name.to_string()),
            }
        }

        fn boolean(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> bool {
            match sub {
                None => self.def(schema, attr).is_some_and(|d| d.boolean),
                Some(sub) => self.sub(schema, attr, sub).is_some_and(|s| s.boolean),
            }
        }
    }

    /// RFC 7643 §8.2's full User, with its enterprise extension and a short userName.
    pub fn bjensen() -> serde_json::Value {
        serde_json::json!({
            "schemas": [USER, ENTERPRISE],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "701984",
            "userName": "bjensen",
            "name": {
                "formatted": "Ms. Barbara J Jensen, III",
                "familyName": "Jensen",
                "givenName": "Barbara",
                "middleName": "Jane",
                "honorificPrefix": "Ms.",
                "honorificSuffix": "III"
            },
            "displayName": "Babs Jensen",
            "nickName": "Babs",
            "profileUrl": "https://login.example.com/bjensen",
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "addresses": [
                {
                    "type": "work",
                    "streetAddress": "100 Universal City Plaza",
                    "locality": "Hollywood",
                    "region": "CA",
                    "postalCode": "91608",
                    "country": "USA",
                    "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA",
                    "primary": true
                },
                {
                    "type": "home",
                    "streetAddress": "456 Hollywood Blvd",
                    "locality": "Hollywood",
                    "region": "CA",
                    "postalCode": "91608",
                    "country": "USA",
                    "formatted": "456 Hollywood Blvd\nHollywood, CA 91608 USA"
                }
            ],
            "phoneNumbers": [
                {"value": "555-555-5555", "type": "work"},
                {"value": "555-555-4444", "type": "mobile"}
            ],
            "ims": [{"value": "someaimhandle", "type": "aim"}],
            "userType": "Employee",
            "title": "Tour Guide",
            "preferredLanguage": "en-US",
            "locale": "en-US",
            "timezone": "America/Los_Angeles",
            "active": true,
            "groups": [
                {
                    "value": "e9e30dba-f08f-4109-8486-d5c6a331660a",
                    "$ref": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
                    "display": "Tour Guides"
                }
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "costCenter": "4130",
                "organization": "Universal Studios",
                "division": "Theme Park",
                "department": "Tour Operations",
                "manager": {
                    "value": "26118915-6090-4610-87e4-49d8ca9f808d",
                    "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
                    "displayName": "John Smith"
                }
            },
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"a330bc54f0671c9\"",
                "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"
            }
        })
    }

    /// RFC 7644 §3.5.2's group, with one member.
    pub fn tour_guides() -> serde_json::Value {
        serde_json::json!({
            "schemas": [GROUP],
            "id": "acbf3ae7-8463-4692-b4fd-9b4da3f908ce",
            "displayName": "Tour Guides",
            "members": [
                {
                    "value": "2819c223-7f76-453a-919d-413861904646",
                    "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
                    "display": "Babs Jensen"
                }
            ],
            "meta": {"resourceType": "Group", "created": "2010-01-23T04:56:22Z",
                     "lastModified": "2011-05-13T04:42:34Z"}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::test_schema::{
        ENTERPRISE, GROUPS, TEST_EXT, TestSchema, USER, USERS, bjensen, tour_guides,
    };
    use super::*;
    use serde_json::json;

    fn body(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP_URN], "Operations": ops})
    }

    fn patched_with(schema: &TestSchema, resource: &Value, ops: Value) -> Value {
        let mut out = resource.clone();
        if let Err(e) = apply(&mut out, &body(ops.clone()), schema) {
            panic!("{ops}: {e}");
        }
        out
    }

    fn patched(resource: &Value, ops: Value) -> Value {
        patched_with(&USERS, resource, ops)
    }

    fn group_patched(ops: Value) -> Value {
        patched_with(&GROUPS, &tour_guides(), ops)
    }

    fn failure_with(schema: &TestSchema, resource: &Value, request: Value) -> PatchError {
        let mut out = resource.clone();
        match apply(&mut out, &request, schema) {
            Ok(()) => panic!("{request} succeeded: {out}"),
            Err(e) => {
                assert_eq!(
                    &out, resource,
                    "a failed PATCH must leave the resource as it was"
                );
                e
            }
        }
    }

    fn failure(ops: Value) -> PatchError {
        failure_with(&USERS, &bjensen(), body(ops))
    }

    fn assert_failure(ops: Value, scim_type: &str, needle: &str) {
        let e = failure(ops.clone());
        assert_eq!(e.scim_type, scim_type, "{ops}: {e}");
        assert!(e.message.contains(needle), "{ops}: {e}");
    }

    const BABS: &str = "2819c223-7f76-453a-919d-413861904646";
    const SMITH: &str = "08e1d05d-121c-4561-8b96-473d93df9210";

    fn babs() -> Value {
        json!({
            "display": "Babs Jensen",
            "$ref": format!("https://example.com/v2/Users/{BABS}"),
            "value": BABS
        })
    }

    fn smith() -> Value {
        json!({
            "display": "James Smith",
            "$ref": format!("https://example.com/v2/Users/{SMITH}"),
            "value": SMITH
        })
    }

    fn member_ids(group: &Value) -> Vec<String> {
        group["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|v| v["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn ext(user: &Value) -> &Value {
        &user[ENTERPRISE]
    }

    // ---- RFC 7644 §3.5.2.1 add ---------------------------------------------------------------

    #[test]
    fn rfc_add_member_to_group() {
        let mut group = tour_guides();
        group["members"] = json!([smith()]);
        let out = patched_with(
            &GROUPS,
            &group,
            json!([{"op": "add", "path": "members", "value": [babs()]}]),
        );
        assert_eq!(out["members"], json!([smith(), babs()]));
        // "If the user was already a member of this group, no changes should be made".
        let again = patched_with(
            &GROUPS,
            &out,
            json!([{"op": "add", "path": "members", "value": [babs()]}]),
        );
        assert_eq!(again, out);
    }

    #[test]
    fn rfc_add_without_path() {
        let mut user = bjensen();
        user["emails"] = json!([{"value": "bjensen@example.com", "type": "work", "primary": true}]);
        if let Some(top) = user.as_object_mut() {
            top.remove("nickName");
        }
        // Verbatim from the RFC, which spells nickName "nickname".
        let ops = json!([{
            "op": "add",
            "value": {
                "emails": [{"value": "babs@jensen.org", "type": "home"}],
                "nickname": "Babs"
            }
        }]);
        let out = patched(&user, ops.clone());
        assert_eq!(out, bjensen());
        assert!(out.get("nickname").is_none());
        // Applied again nothing changes: the email is there, the nickname replaced by itself.
        assert_eq!(patched(&out, ops), out);
        let out = patched(
            &out,
            json!([{"op": "add", "value": {"nickname": "Barbie"}}]),
        );
        // "If the resource already has an existing "nickname", the value is replaced".
        assert_eq!(out["nickName"], "Barbie");
    }

    #[test]
    fn add_sets_absent_and_single_valued_attributes() {
        let out = patched(
            &bjensen(),
            json!([
                {"op": "add", "path": "title", "value": "Manager"},
                {"op": "add", "path": "photos", "value": [{"value": "https://photos.example.com/1.jpg", "type": "photo"}]},
                {"op": "add", "path": "name", "value": {"givenName": "Barb", "middleName": null}}
            ]),
        );
        assert_eq!(out["title"], "Manager");
        assert_eq!(
            out["photos"],
            json!([{"value": "https://photos.example.com/1.jpg", "type": "photo"}])
        );
        // Complex single-valued: sub-attributes merge, null unassigns.
        assert_eq!(out["name"]["givenName"], "Barb");
        assert_eq!(out["name"]["familyName"], "Jensen");
        assert!(out["name"].get("middleName").is_none());
    }

    // ---- RFC 7644 §3.5.2.2 remove ------------------------------------------------------------

    #[test]
    fn rfc_remove_single_member() {
        let mut group = tour_guides();
        group["members"] = json!([babs(), smith()]);
        let out = patched_with(
            &GROUPS,
            &group,
            json!([{
                "op": "remove",
                "path": format!("members[value eq \"{BABS}\"]")
            }]),
        );
        assert_eq!(member_ids(&out), vec![SMITH]);
    }

    #[test]
    fn rfc_remove_all_members() {
        let out = group_patched(json!([{"op": "remove", "path": "members"}]));
        assert!(out.get("members").is_none());
        assert_eq!(out["displayName"], "Tour Guides");
    }

    #[test]
    fn rfc_remove_multi_valued_values_by_filter() {
        let mut user = bjensen();
        user["emails"] = json!([
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"},
            {"value": "b@mail.example.com", "type": "work"}
        ]);
        let out = patched(
            &user,
            json!([{
                "op": "remove",
                "path": "emails[type eq \"work\" and value ew \"example.com\"]"
            }]),
        );
        assert_eq!(
            out["emails"],
            json!([{"value": "babs@jensen.org", "type": "home"}])
        );
        // Removing the last value unassigns the attribute.
        let out = patched(
            &out,
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        );
        assert!(out.get("emails").is_none());
    }

    #[test]
    fn rfc_replace_all_members_by_remove_then_add() {
        let out = group_patched(json!([
            {"op": "remove", "path": "members"},
            {"op": "add", "path": "members", "value": [babs(), smith()]}
        ]));
        assert_eq!(out["members"], json!([babs(), smith()]));
    }

    #[test]
    fn remove_cases() {
        let out = patched(
            &bjensen(),
            json!([
                {"op": "remove", "path": "title"},
                {"op": "remove", "path": "name.middleName"},
                {"op": "remove", "path": "emails[type eq \"work\"].primary"},
                {"op": "remove", "path": "phoneNumbers.type"}
            ]),
        );
        assert!(out.get("title").is_none());
        assert!(out["name"].get("middleName").is_none());
        assert_eq!(out["name"]["givenName"], "Barbara");
        assert_eq!(
            out["emails"][0],
            json!({"value": "bjensen@example.com", "type": "work"})
        );
        assert_eq!(
            out["phoneNumbers"],
            json!([{"value": "555-555-5555"}, {"value": "555-555-4444"}])
        );
        // Removing what is not there succeeds without change, filter or no filter.
        let user = bjensen();
        let same = patched(
            &user,
            json!([
                {"op": "remove", "path": "photos"},
                {"op": "remove", "path": "emails[type eq \"other\"]"},
                {"op": "remove", "path": "emails[type eq \"other\"].value"},
                {"op": "remove", "path": "x509Certificates[value eq \"x\"]"},
                {"op": "remove", "path": format!("{TEST_EXT}:level")}
            ]),
        );
        assert_eq!(same, user);
        // The last sub-attribute removed unassigns the complex attribute.
        let mut user = bjensen();
        user["name"] = json!({"givenName": "B"});
        let out = patched(&user, json!([{"op": "remove", "path": "name.givenName"}]));
        assert!(out.get("name").is_none());
    }

    #[test]
    fn remove_needs_a_path() {
        assert_failure(json!([{"op": "remove"}]), "noTarget", "needs a 'path'");
        assert_failure(
            json!([{"op": "remove", "path": ""}]),
            "noTarget",
            "needs a 'path'",
        );
        assert_failure(
            json!([{"op": "remove", "value": {"title": "x"}}]),
            "noTarget",
            "needs a 'path'",
        );
    }

    // ---- RFC 7644 §3.5.2.3 replace -----------------------------------------------------------

    #[test]
    fn rfc_replace_all_members() {
        let out = group_patched(
            json!([{"op": "replace", "path": "members", "value": [babs(), smith()]}]),
        );
        assert_eq!(out["members"], json!([babs(), smith()]));
        let out = group_patched(json!([{"op": "replace", "path": "members", "value": [smith()]}]));
        assert_eq!(out["members"], json!([smith()]));
        let out = group_patched(json!([{"op": "replace", "path": "members", "value": []}]));
        assert!(out.get("members").is_none());
    }

    #[test]
    fn rfc_replace_work_address() {
        let out = patched(
            &bjensen(),
            json!([{
                "op": "replace",
                "path": "addresses[type eq \"work\"]",
                "value": {
                    "type": "work",
                    "streetAddress": "911 Universal City Plaza",
                    "locality": "Hollywood",
                    "region": "CA",
                    "postalCode": "91608",
                    "country": "US",
                    "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
                    "primary": true
                }
            }]),
        );
        assert_eq!(
            out["addresses"][0]["streetAddress"],
            "911 Universal City Plaza"
        );
        assert_eq!(out["addresses"][0]["country"], "US");
        assert_eq!(out["addresses"][0]["primary"], true);
        assert_eq!(out["addresses"][1]["streetAddress"], "456 Hollywood Blvd");
    }

    #[test]
    fn replacing_a_primary_value_demotes_the_others() {
        // RFC 7644 §3.5.2: primary true on one value sets it false on the others.
        let out = patched(
            &bjensen(),
            json!([{
                "op": "replace",
                "path": "addresses[type eq \"home\"]",
                "value": {"primary": true}
            }]),
        );
        assert_eq!(out["addresses"][0]["primary"], false);
        assert_eq!(out["addresses"][1]["primary"], true);
        assert_eq!(out["addresses"][1]["streetAddress"], "456 Hollywood Blvd");
        let out = patched(
            &bjensen(),
            json!([
                {"op": "add", "path": "emails", "value": [{"value": "new@x.org", "type": "other", "primary": "True"}]}
            ]),
        );
        assert_eq!(out["emails"][0]["primary"], false);
        assert_eq!(
            out["emails"][2],
            json!({"value": "new@x.org", "type": "other", "primary": true})
        );
        assert_failure(
            json!([{"op": "replace", "path": "emails", "value": [
                {"value": "a@x.org", "primary": true}, {"value": "b@x.org", "primary": true}
            ]}]),
            "invalidValue",
            "more than one value of 'emails' would be primary",
        );
    }

    #[test]
    fn rfc_replace_work_street_address() {
        let out = patched(
            &bjensen(),
            json!([{
                "op": "replace",
                "path": "addresses[type eq \"work\"].streetAddress",
                "value": "1010 Broadway Ave"
            }]),
        );
        assert_eq!(out["addresses"][0]["streetAddress"], "1010 Broadway Ave");
        assert_eq!(out["addresses"][0]["locality"], "Hollywood");
        assert_eq!(out["addresses"][1]["streetAddress"], "456 Hollywood Blvd");
    }

    #[test]
    fn rfc_replace_without_path() {
        let mut user = bjensen();
        user["emails"] = json!([{"value": "old@example.com", "type": "other"}]);
        user["nickName"] = json!("Bee");
        let out = patched(
            &user,
            json!([{
                "op": "replace",
                "value": {
                    "emails": [
                        {"value": "bjensen@example.com", "type": "work", "primary": true},
                        {"value": "babs@jensen.org", "type": "home"}
                    ],
                    "nickname": "Babs"
                }
            }]),
        );
        assert_eq!(out, bjensen());
        let out = patched(
            &bjensen(),
            json!([{
                "op": "replace",
                "value": {"emails": [{"value": "only@x.org", "type": "work"}], "nickName": "B"}
            }]),
        );
        assert_eq!(
            out["emails"],
            json!([{"value": "only@x.org", "type": "work"}])
        );
        assert_eq!(out["nickName"], "B");
    }

    #[test]
    fn replace_with_a_filter_that_matches_nothing() {
        // RFC 7644 §3.5.2.3: noTarget, unless the filter is a type and the value can be created.
        assert_failure(
            json!([{"op": "replace", "path": "emails[value eq \"none@x.org\"].type", "value": "home"}]),
            "noTarget",
            "no value of 'emails' matches the filter",
        );
        assert_failure(
            json!([{"op": "replace", "path": "emails[type eq \"other\" or type eq \"x\"].value", "value": "a"}]),
            "noTarget",
            "no value of 'emails' matches",
        );
        assert_failure(
            json!([{"op": "replace", "path": "emails[type ne \"work\" and type ne \"home\"]", "value": {"value": "a"}}]),
            "noTarget",
            "no value of 'emails' matches",
        );
        let e = failure_with(
            &GROUPS,
            &tour_guides(),
            body(json!([{
                "op": "replace", "path": format!("members[value eq \"{SMITH}\"].display"), "value": "James"
            }])),
        );
        assert_eq!(e.scim_type, "noTarget");
        let out = patched(
            &bjensen(),
            json!([
                {"op": "replace", "path": "phoneNumbers[type eq \"fax\"].value", "value": "555-555-0000"},
                {"op": "add", "path": "ims[type eq \"xmpp\" and primary eq false]", "value": {"value": "b@jabber.org"}},
                {"op": "replace", "path": "photos[type eq \"thumbnail\"].value", "value": null}
            ]),
        );
        assert_eq!(
            out["phoneNumbers"][2],
            json!({"type": "fax", "value": "555-555-0000"})
        );
        assert_eq!(
            out["ims"][1],
            json!({"type": "xmpp", "primary": false, "value": "b@jabber.org"})
        );
        assert!(out.get("photos").is_none());
    }

    #[test]
    fn add_and_replace_with_filters_that_match() {
        let out = patched(
            &bjensen(),
            json!([
                {"op": "add", "path": "emails[type eq \"home\"].display", "value": "Home"},
                {"op": "replace", "path": "phoneNumbers[type eq \"mobile\"]", "value": "555-555-9999"},
                {"op": "replace", "path": "emails[value co \"@\"].type", "value": "other"}
            ]),
        );
        assert_eq!(out["emails"][1]["display"], "Home");
        // A bare value for a complex value means its "value".
        assert_eq!(
            out["phoneNumbers"][1],
            json!({"value": "555-555-9999", "type": "mobile"})
        );
        assert_eq!(out["emails"][0]["type"], "other");
        assert_eq!(out["emails"][1]["type"], "other");
        // Null through a filter unassigns the selected values (or their sub-attribute).
        let out = patched(
            &bjensen(),
            json!([
                {"op": "replace", "path": "emails[type eq \"home\"]", "value": null},
                {"op": "replace", "path": "phoneNumbers[type eq \"work\"].type", "value": null}
            ]),
        );
        assert_eq!(
            out["emails"],
            json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
        );
        assert_eq!(out["phoneNumbers"][0], json!({"value": "555-555-5555"}));
        assert_failure(
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "maybe"}]),
            "invalidValue",
            "'emails.primary' is a boolean",
        );
        assert_failure(
            json!([{"op": "replace", "path": "emails[type pr].primary", "value": true}]),
            "invalidValue",
            "more than one value of 'emails' would be primary",
        );
    }

    #[test]
    fn replace_sets_single_valued_attributes() {
        let out = patched(
            &bjensen(),
            json!([
                {"op": "replace", "path": "name", "value": {"givenName": "Barb", "honorificSuffix": null}},
                {"op": "replace", "path": "title", "value": null},
                {"op": "replace", "path": "locale", "value": "fr-FR"}
            ]),
        );
        assert_eq!(out["name"]["givenName"], "Barb");
        assert_eq!(out["name"]["familyName"], "Jensen");
        assert!(out["name"].get("honorificSuffix").is_none());
        assert!(out.get("title").is_none());
        assert_eq!(out["locale"], "fr-FR");
    }

    // ---- What identity providers send ---------------------------------------------------------

    #[test]
    fn entra_disable_user() {
        // Entra ID before its 2020 fixes: capitalised op, boolean as a string.
        let out = patched(
            &bjensen(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        );
        assert_eq!(out["active"], false);
        let out = patched(
            &out,
            json!([{"op": "replace", "path": "active", "value": "true"}]),
        );
        assert_eq!(out["active"], true);
        let out = patched(
            &out,
            json!([{"op": "replace", "path": "active", "value": false}]),
        );
        assert_eq!(out["active"], false);
        assert_failure(
            json!([{"op": "replace", "path": "active", "value": "no"}]),
            "invalidValue",
            "'active' is a boolean",
        );
        assert_failure(
            json!([{"op": "replace", "path": "active", "value": 0}]),
            "invalidValue",
            "'active' is a boolean",
        );
    }

    #[test]
    fn entra_update_user_attributes_one_by_one() {
        let out = patched(
            &bjensen(),
            json!([
                {"op": "Replace", "path": "displayName", "value": "Pvlo"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "TestBcwqnm@test.microsoft.com"},
                {"op": "Replace", "path": "emails[type eq \"work\"].primary", "value": "True"},
                {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
                {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
                {"op": "Replace", "path": "externalId", "value": "Eqpj"},
                {"op": "Replace", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "Eqpj"},
                {"op": "Add", "path": "nickName", "value": "Babs"}
            ]),
        );
        assert_eq!(out["displayName"], "Pvlo");
        assert_eq!(
            out["emails"][0],
            json!({"value": "TestBcwqnm@test.microsoft.com", "type": "work", "primary": true})
        );
        assert_eq!(out["name"]["givenName"], "Gtfd");
        assert_eq!(out["name"]["familyName"], "Pkqf");
        assert_eq!(out["externalId"], "Eqpj");
        assert_eq!(ext(&out)["employeeNumber"], "Eqpj");
        assert_eq!(ext(&out)["department"], "Tour Operations");
    }

    #[test]
    fn entra_update_user_attributes_in_one_value() {
        // Entra ID after its 2020 fixes: one path-less replace whose keys are paths.
        let out = patched(
            &bjensen(),
            json!([{
                "op": "replace",
                "value": {
                    "displayName": "Pvlo",
                    "emails[type eq \"work\"].value": "TestBcwqnm@test.microsoft.com",
                    "name.givenName": "Gtfd",
                    "name.familyName": "Pkqf",
                    "externalId": "Eqpj",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Eqpj",
                    "active": false
                }
            }]),
        );
        assert_eq!(out["displayName"], "Pvlo");
        assert_eq!(out["emails"][0]["value"], "TestBcwqnm@test.microsoft.com");
        assert_eq!(out["emails"][0]["type"], "work");
        assert_eq!(out["name"]["givenName"], "Gtfd");
        assert_eq!(out["name"]["familyName"], "Pkqf");
        assert_eq!(out["externalId"], "Eqpj");
        assert_eq!(ext(&out)["employeeNumber"], "Eqpj");
        assert_eq!(out["active"], false);
    }

    #[test]
    fn entra_work_email_for_a_user_without_one() {
        let mut user = bjensen();
        user["emails"] = json!([{"value": "babs@jensen.org", "type": "home"}]);
        let out = patched(
            &user,
            json!([
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "babs@work.example"},
                {"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true}
            ]),
        );
        assert_eq!(
            out["emails"],
            json!([
                {"value": "babs@jensen.org", "type": "home"},
                {"type": "work", "value": "babs@work.example", "primary": true}
            ])
        );
        let mut user = bjensen();
        if let Some(top) = user.as_object_mut() {
            top.remove("emails");
        }
        let out = patched(
            &user,
            json!([
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@b.c"}
            ]),
        );
        assert_eq!(out["emails"], json!([{"type": "work", "value": "a@b.c"}]));
    }

    #[test]
    fn entra_group_membership() {
        // Add with the "$ref": null Entra ID sends.
        let out = group_patched(json!([{
            "op": "Add", "path": "members", "value": [{"$ref": null, "value": SMITH}]
        }]));
        assert_eq!(out["members"], json!([babs(), {"value": SMITH}]));
        let out2 = group_patched(json!([{
            "op": "Add", "path": "members", "value": [{"unlisted": null, "value": SMITH}]
        }]));
        assert_eq!(out2, out);
        // Remove by listing the members in "value".
        let out = patched_with(
            &GROUPS,
            &out,
            json!([{
                "op": "Remove", "path": "members", "value": [{"value": BABS}]
            }]),
        );
        assert_eq!(out["members"], json!([{"value": SMITH}]));
        // Removing a member that is not there is not an error.
        let same = patched_with(
            &GROUPS,
            &out,
            json!([{
                "op": "Remove", "path": "members", "value": [{"value": "not-a-member"}]
            }]),
        );
        assert_eq!(same, out);
        let out = patched_with(
            &GROUPS,
            &out,
            json!([{
                "op": "Remove", "path": "members", "value": [{"value": SMITH}]
            }]),
        );
        assert!(out.get("members").is_none());
        let out =
            group_patched(json!([{"op": "Replace", "path": "displayName", "value": "Renamed"}]));
        assert_eq!(out["displayName"], "Renamed");
        // An empty list of members to remove removes none.
        let out = group_patched(json!([{"op": "Remove", "path": "members", "value": []}]));
        assert_eq!(out, tour_guides());
    }

    #[test]
    fn entra_manager() {
        let out = patched(
            &bjensen(),
            json!([{
                "op": "Add",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "value": SMITH
            }]),
        );
        assert_eq!(ext(&out)["manager"], json!({"value": SMITH}));
        let out = patched(
            &bjensen(),
            json!([{
                "op": "replace",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "value": {"value": SMITH}
            }]),
        );
        assert_eq!(ext(&out)["manager"]["value"], SMITH);
        let out = patched(
            &bjensen(),
            json!([{
                "op": "replace",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                "value": SMITH
            }]),
        );
        assert_eq!(ext(&out)["manager"]["value"], SMITH);
        let out = patched(
            &bjensen(),
            json!([{
                "op": "Remove",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"
            }]),
        );
        assert!(ext(&out).get("manager").is_none());
        assert_eq!(ext(&out)["department"], "Tour Operations");
    }

    #[test]
    fn okta_user_updates() {
        let out = patched(
            &bjensen(),
            json!([{"op": "replace", "value": {"active": false}}]),
        );
        assert_eq!(out["active"], false);
        let out = patched(
            &bjensen(),
            json!([{"op": "replace", "value": {"password": "t1meMa$heen"}}]),
        );
        assert_eq!(out["password"], "t1meMa$heen");
        let out = patched(
            &bjensen(),
            json!([{"op": "replace", "value": {
                "name": {"givenName": "Barbara", "familyName": "Smith"},
                "emails": [{"primary": true, "value": "barbara@example.com", "type": "work"}],
                "displayName": "Barbara Smith"
            }}]),
        );
        assert_eq!(out["name"]["familyName"], "Smith");
        assert_eq!(out["name"]["middleName"], "Jane");
        assert_eq!(
            out["emails"],
            json!([{"primary": true, "value": "barbara@example.com", "type": "work"}])
        );
    }

    #[test]
    fn okta_group_updates() {
        let id = "acbf3ae7-8463-4692-b4fd-9b4da3f908ce";
        // Okta repeats the group's id in a rename; unchanged, it is accepted.
        let out = group_patched(
            json!([{"op": "replace", "value": {"id": id, "displayName": "Test SCIMv2"}}]),
        );
        assert_eq!(out["displayName"], "Test SCIMv2");
        assert_eq!(out["id"], id);
        let out = group_patched(json!([{
            "op": "add", "path": "members", "value": [{"value": SMITH, "display": "test.user@okta.local"}]
        }]));
        assert_eq!(member_ids(&out), vec![BABS, SMITH]);
        let out = patched_with(
            &GROUPS,
            &out,
            json!([{
                "op": "remove", "path": format!("members[value eq \"{BABS}\"]")
            }]),
        );
        assert_eq!(
            out["members"],
            json!([{"value": SMITH, "display": "test.user@okta.local"}])
        );
        // Re-adding a member with a display merges rather than duplicating.
        let out = group_patched(json!([{
            "op": "add", "path": "members", "value": [{"value": BABS, "display": "Barbara"}]
        }]));
        assert_eq!(member_ids(&out), vec![BABS]);
        assert_eq!(out["members"][0]["display"], "Barbara");
    }

    #[test]
    fn extension_objects_and_schemas() {
        let mut user = bjensen();
        if let Some(top) = user.as_object_mut() {
            top.remove(ENTERPRISE);
            top.insert("schemas".into(), json!([USER]));
        }
        // Okta and the RFC put extension attributes in an object under the schema URN.
        let out = patched(
            &user,
            json!([{"op": "add", "value": {
                ENTERPRISE: {"department": "Sales", "manager": {"value": SMITH, "displayName": "James"}}
            }}]),
        );
        assert_eq!(out["schemas"], json!([USER, ENTERPRISE]));
        // The manager's displayName is read-only: dropped, as in a POST.
        assert_eq!(
            ext(&out),
            &json!({"department": "Sales", "manager": {"value": SMITH}})
        );
        // The URN may also be the path.
        let out2 = patched(
            &user,
            json!([{"op": "replace", "path": ENTERPRISE, "value": {"department": "Sales"}}]),
        );
        assert_eq!(ext(&out2), &json!({"department": "Sales"}));
        assert_eq!(out2["schemas"], json!([USER, ENTERPRISE]));
        // Removing the last extension attribute drops the object and its URN.
        let out3 = patched(
            &out2,
            json!([{"op": "remove", "path": format!("{ENTERPRISE}:department")}]),
        );
        assert!(out3.get(ENTERPRISE).is_none());
        assert_eq!(out3["schemas"], json!([USER]));
        let out4 = patched(&out, json!([{"op": "remove", "path": ENTERPRISE}]));
        assert_eq!(out4, user);
        let mut declared = user.clone();
        declared["schemas"] = json!([USER, ENTERPRISE]);
        let out5 = patched(
            &declared,
            json!([{"op": "add", "path": format!("{}:department", ENTERPRISE.to_uppercase()), "value": "D"}]),
        );
        assert_eq!(ext(&out5), &json!({"department": "D"}));
        assert_eq!(out5["schemas"], json!([USER, ENTERPRISE]));
        // Restating the schemas is fine; naming an extension adds it; changing the core is not.
        let same = patched(
            &bjensen(),
            json!([{"op": "replace", "value": {"schemas": [USER, ENTERPRISE]}}]),
        );
        assert_eq!(same, bjensen());
        let out = patched(
            &bjensen(),
            json!([{"op": "add", "path": "schemas", "value": [TEST_EXT]}]),
        );
        assert_eq!(out["schemas"], json!([USER, ENTERPRISE, TEST_EXT]));
        assert_failure(
            json!([{"op": "replace", "path": "schemas", "value": [USER]}]),
            "mutability",
            "must keep",
        );
        assert_failure(
            json!([{"op": "add", "value": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]}}]),
            "mutability",
            "core schema",
        );
        assert_failure(
            json!([{"op": "remove", "path": "schemas"}]),
            "mutability",
            "cannot be removed",
        );
        assert_failure(
            json!([{"op": "add", "path": "schemas", "value": [1]}]),
            "invalidValue",
            "URNs",
        );
    }

    #[test]
    fn urn_prefixed_core_attributes() {
        let out = patched(
            &bjensen(),
            json!([
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:userName", "value": "babs"},
                {"op": "replace", "value": {"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName": "B"}}
            ]),
        );
        assert_eq!(out["userName"], "babs");
        assert_eq!(out["name"]["givenName"], "B");
        assert!(
            out.get("urn:ietf:params:scim:schemas:core:2.0:User")
                .is_none()
        );
    }

    #[test]
    fn names_in_any_case_are_stored_canonically() {
        let mut user = bjensen();
        if let Some(top) = user.as_object_mut() {
            let title = top.remove("title").unwrap_or_default();
            top.insert("TITLE".into(), title);
        }
        let out = patched(
            &user,
            json!([
                {"op": "REPLACE", "path": "USERNAME", "value": "babs"},
                {"op": "rePlace", "path": "Name.GivenName", "value": "B"},
                {"op": "add", "path": "EMAILS[TYPE EQ \"work\"].VALUE", "value": "w@x.org"},
                {"op": "add", "path": "title", "value": "Boss"},
                {"op": "add", "value": {"NickName": "N", "PHONENUMBERS": [{"VALUE": "1", "Type": "fax"}]}},
                {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:ENTERPRISE:2.0:User:DEPARTMENT", "value": "D"}
            ]),
        );
        assert_eq!(out["userName"], "babs");
        assert_eq!(out["name"]["givenName"], "B");
        assert_eq!(out["emails"][0]["value"], "w@x.org");
        assert_eq!(out["title"], "Boss");
        assert!(out.get("TITLE").is_none());
        assert_eq!(out["nickName"], "N");
        assert_eq!(out["phoneNumbers"][2], json!({"value": "1", "type": "fax"}));
        assert_eq!(ext(&out)["department"], "D");
        let keys: Vec<&String> = out
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert!(
            !keys
                .iter()
                .any(|k| k.as_str() == "USERNAME" || k.as_str() == "NickName")
        );
        // Member names of the request are matched in any case too.
        let mut out = bjensen();
        let request = json!({"Schemas": [PATCH_OP_URN], "operations": [{"OP": "add", "Path": "title", "Value": "X"}]});
        assert_eq!(apply(&mut out, &request, &USERS), Ok(()));
        assert_eq!(out["title"], "X");
    }

    #[test]
    fn read_only_attributes() {
        assert_failure(
            json!([{"op": "replace", "path": "id", "value": "other"}]),
            "mutability",
            "'id' is read-only",
        );
        assert_failure(
            json!([{"op": "remove", "path": "id"}]),
            "mutability",
            "'id' is read-only",
        );
        assert_failure(
            json!([{"op": "replace", "value": {"id": "other"}}]),
            "mutability",
            "'id' is read-only",
        );
        assert_failure(
            json!([{"op": "add", "path": "groups", "value": [{"value": "g2"}]}]),
            "mutability",
            "'groups' is read-only",
        );
        assert_failure(
            json!([{"op": "replace", "path": "meta.lastModified", "value": "2020-01-01T00:00:00Z"}]),
            "mutability",
            "'meta.lastModified' is read-only",
        );
        assert_failure(
            json!([{"op": "replace", "value": {"meta": {"version": "W/\"1\""}}}]),
            "mutability",
            "'meta' is read-only",
        );
        assert_failure(
            json!([{"op": "replace", "path": format!("{ENTERPRISE}:manager.displayName"), "value": "X"}]),
            "mutability",
            "'manager.displayName' is read-only",
        );
        // Unchanged values pass.
        let user = bjensen();
        let same = patched(
            &user,
            json!([
                {"op": "replace", "path": "id", "value": "2819c223-7f76-453a-919d-413861904646"},
                {"op": "add", "value": {"meta": {"resourceType": "User"}}},
                {"op": "remove", "path": "groups[value eq \"nope\"]"}
            ]),
        );
        assert_eq!(same, user);
    }

    #[test]
    fn request_errors() {
        let user = bjensen();
        let fail = |request: Value, scim_type: &str, needle: &str| {
            let e = failure_with(&USERS, &user, request.clone());
            assert_eq!(e.scim_type, scim_type, "{request}: {e}");
            assert!(e.message.contains(needle), "{request}: {e}");
        };
        fail(json!([]), "invalidSyntax", "PatchOp JSON object");
        fail(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []}),
            "invalidSyntax",
            "'schemas' must be",
        );
        fail(
            json!({"schemas": [PATCH_OP_URN]}),
            "invalidSyntax",
            "needs an 'Operations' array",
        );
        fail(
            json!({"schemas": [PATCH_OP_URN], "Operations": {}}),
            "invalidSyntax",
            "must be an array",
        );
        fail(
            json!({"schemas": [PATCH_OP_URN], "Operations": []}),
            "invalidSyntax",
            "is empty",
        );
        fail(
            body(json!(["add"])),
            "invalidSyntax",
            "Operations[0]: an operation must be a JSON object",
        );
        fail(
            body(json!([{"path": "title", "value": "x"}])),
            "invalidSyntax",
            "missing 'op'",
        );
        fail(
            body(json!([{"op": "move", "path": "title"}])),
            "invalidSyntax",
            "unknown op 'move'",
        );
        fail(
            body(json!([{"op": 1, "path": "title"}])),
            "invalidSyntax",
            "'op' must be a string",
        );
        fail(
            body(json!([{"op": "add", "path": "title"}])),
            "invalidValue",
            "'add' needs a 'value'",
        );
        fail(
            body(json!([{"op": "replace"}])),
            "invalidValue",
            "'replace' needs a 'value'",
        );
        fail(
            body(json!([{"op": "add", "value": "x"}])),
            "invalidValue",
            "must be an object of attributes",
        );
        fail(
            body(json!([{"op": "add", "path": 7, "value": "x"}])),
            "invalidPath",
            "'path' must be a string",
        );
        fail(
            body(json!([{"op": "add", "path": "emails[type eq", "value": "x"}])),
            "invalidPath",
            "never closed",
        );
        fail(
            body(json!([{"op": "add", "path": "nosuch", "value": "x"}])),
            "invalidPath",
            "unknown attribute 'nosuch'",
        );
        fail(
            body(json!([{"op": "add", "path": "name.nosuch", "value": "x"}])),
            "invalidPath",
            "'name' has no sub-attribute 'nosuch'",
        );
        fail(
            body(json!([{"op": "add", "value": {"nosuch": "x"}}])),
            "invalidPath",
            "unknown attribute 'nosuch'",
        );
        fail(
            body(json!([{"op": "add", "value": {"name.": "x"}}])),
            "invalidPath",
            "value key 'name.'",
        );
        fail(
            body(json!([{"op": "add", "path": "urn:example:nope:User", "value": {"a": 1}}])),
            "invalidPath",
            "unknown attribute",
        );
        fail(
            body(json!([{"op": "remove", "path": "urn:example:nope:User"}])),
            "invalidPath",
            "unknown attribute",
        );
        fail(
            body(
                json!([{"op": "add", "path": "emails[nosuch eq \"x\"]", "value": {"value": "a"}}]),
            ),
            "invalidPath",
            "unknown attribute 'emails.nosuch'",
        );
        fail(
            body(json!([{"op": "add", "path": "name[givenName eq \"x\"]", "value": {}}])),
            "invalidPath",
            "'name' is single-valued",
        );
        fail(
            body(json!([{"op": "add", "path": "emails", "value": [{"nosuch": "x"}]}])),
            "invalidValue",
            "'emails' has no sub-attribute 'nosuch'",
        );
        fail(
            body(json!([{"op": "add", "path": "emails", "value": [["nested"]]}])),
            "invalidValue",
            "cannot be an array",
        );
        fail(
            body(json!([{"op": "add", "path": "title", "value": ["a"]}])),
            "invalidValue",
            "cannot be an array",
        );
        fail(
            body(json!([{"op": "add", "path": "title", "value": {"x": 1}}])),
            "invalidValue",
            "'title' has no sub-attribute 'x'",
        );
        fail(
            body(json!([{"op": "add", "path": "emails[value eq \"x\"]", "value": "a@b"}])),
            "noTarget",
            "no value",
        );
        fail(
            body(json!([{"op": "add", "value": {ENTERPRISE: {"userName": "x"}}}])),
            "invalidPath",
            "unknown attribute",
        );
        fail(
            body(json!([{"op": "add", "value": {ENTERPRISE: {"urn:example:other:x": "x"}}}])),
            "invalidPath",
            "names another schema",
        );
        fail(
            body(json!([{"op": "add", "path": "addresses[type eq \"home\"]", "value": [1]}])),
            "invalidValue",
            "cannot be an array",
        );
    }

    #[test]
    fn patches_are_atomic_and_sequential() {
        // The third operation fails: nothing of the first two stays.
        let e = failure(json!([
            {"op": "replace", "path": "title", "value": "Changed"},
            {"op": "remove", "path": "emails"},
            {"op": "replace", "path": "id", "value": "other"}
        ]));
        assert_eq!(e.scim_type, "mutability");
        assert!(e.message.starts_with("Operations[2]: "), "{e}");
        // Each operation sees the result of the previous ones.
        let out = patched(
            &bjensen(),
            json!([
                {"op": "remove", "path": "emails"},
                {"op": "add", "path": "emails", "value": {"value": "a@x.org", "type": "work"}},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x.org"}
            ]),
        );
        assert_eq!(out["emails"], json!([{"value": "b@x.org", "type": "work"}]));
    }

    #[test]
    fn add_and_replace_on_multi_valued_simple_attributes() {
        let user = bjensen();
        let tags = format!("{TEST_EXT}:tags");
        let out = patched(
            &user,
            json!([
                {"op": "add", "path": tags, "value": ["a", "b"]},
                {"op": "add", "path": tags, "value": ["B", "c"]},
                {"op": "replace", "path": format!("{tags}[value eq \"c\"]"), "value": "d"},
                {"op": "add", "path": format!("{TEST_EXT}:vip"), "value": "TRUE"},
                {"op": "add", "path": format!("{TEST_EXT}:level"), "value": 3}
            ]),
        );
        assert_eq!(
            out[TEST_EXT],
            json!({"tags": ["a", "b", "d"], "vip": true, "level": 3})
        );
        assert_eq!(out["schemas"], json!([USER, ENTERPRISE, TEST_EXT]));
        let out = patched(
            &out,
            json!([
                {"op": "remove", "path": format!("{tags}[value sw \"a\" or value eq \"D\"]")},
                {"op": "remove", "path": tags, "value": "b"}
            ]),
        );
        assert!(out[TEST_EXT].get("tags").is_none());
        assert_eq!(out[TEST_EXT]["level"], 3);
    }

    #[test]
    fn sub_attribute_of_every_value() {
        let out = patched(
            &bjensen(),
            json!([{"op": "replace", "path": "phoneNumbers.type", "value": "other"}]),
        );
        assert_eq!(out["phoneNumbers"][0]["type"], "other");
        assert_eq!(out["phoneNumbers"][1]["type"], "other");
        let out = patched(
            &bjensen(),
            json!([{"op": "add", "path": "photos.value", "value": "https://x/p.jpg"}]),
        );
        assert_eq!(out["photos"], json!([{"value": "https://x/p.jpg"}]));
        assert_failure(
            json!([{"op": "replace", "path": "addresses.primary", "value": true}]),
            "invalidValue",
            "would be primary",
        );
    }

    #[test]
    fn fuzz_apply_does_not_panic() {
        let paths = [
            "members",
            "emails",
            "emails.value",
            "emails[type eq \"work\"]",
            "emails[type eq \"work\"].value",
            "emails[value co \"@\"].primary",
            "name",
            "name.givenName",
            "active",
            "id",
            "meta",
            "schemas",
            "groups",
            "photos[type eq \"x\"]",
            "addresses[type eq \"home\" and primary eq true].locality",
            ENTERPRISE,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "urn:example:scim:schemas:extension:test:2.0:User:tags[value eq \"a\"]",
            "",
            "[",
            "a.b.c",
            "emails[type eq \"work\"].",
            "nosuch",
        ];
        let values = [
            json!(null),
            json!("x"),
            json!("True"),
            json!(false),
            json!(3),
            json!([]),
            json!({}),
            json!([{"value": "a", "primary": true}, {"value": "b", "primary": "true"}]),
            json!({"value": "v", "type": "work", "primary": true}),
            json!({"givenName": null}),
            json!([1, [2], {"value": null}]),
            json!({ENTERPRISE: {"manager": "m"}, "emails[type eq \"work\"].value": "w", "name.familyName": 1}),
            json!({"schemas": [USER]}),
            json!(["x", "y"]),
        ];
        let ops = [
            json!("add"),
            json!("Replace"),
            json!("REMOVE"),
            json!("move"),
            json!(null),
        ];
        let mut rng = super::super::filter::tests::Lcg(0xfeed_beef);
        let resources = [
            bjensen(),
            tour_guides(),
            json!({}),
            json!({"emails": "odd", "name": [1]}),
        ];
        for round in 0..4_000 {
            let n = 1 + rng.below(4);
            let operations: Vec<Value> = (0..n)
                .map(|_| {
                    let mut op = Map::new();
                    op.insert("op".into(), ops[rng.below(ops.len())].clone());
                    if rng.below(5) > 0 {
                        op.insert("path".into(), json!(paths[rng.below(paths.len())]));
                    }
                    if rng.below(5) > 0 {
                        op.insert("value".into(), values[rng.below(values.len())].clone());
                    }
                    Value::Object(op)
                })
                .collect();
            let schema = if round % 2 == 0 { &USERS } else { &GROUPS };
            let mut resource = resources[rng.below(resources.len())].clone();
            let before = resource.clone();
            if apply(&mut resource, &body(Value::Array(operations)), schema).is_err() {
                assert_eq!(resource, before);
            }
        }
    }
}
