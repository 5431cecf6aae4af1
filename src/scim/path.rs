//! PATCH operation paths (RFC 7644 §3.5.2): `PATH = attrPath / valuePath [subAttr]`.
//!
//! Examples: `members`, `name.givenName`, `emails[type eq "work"].value`,
//! `members[value eq "2819c223-…"]`,
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.

use std::fmt;

use super::filter::{self, AttrPath, Filter, MAX_FILTER_LEN, shorten};

/// A parsed PATCH path.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute; `attr.sub` is set for the plain `name.givenName` form only.
    pub attr: AttrPath,
    /// The value selection filter of `attr[filter]`, paths relative to each value.
    pub filter: Option<Filter>,
    /// The sub-attribute of `attr[filter].sub`.
    pub sub_after_filter: Option<String>,
}

impl PatchPath {
    /// The sub-attribute the path ends in, whichever form spelled it.
    pub fn sub(&self) -> Option<&str> {
        self.attr
            .sub
            .as_deref()
            .or(self.sub_after_filter.as_deref())
    }
}

/// A path that cannot be parsed: SCIM answers 400 with scimType `invalidPath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub message: String,
}

impl PathError {
    fn new(message: impl Into<String>) -> PathError {
        PathError {
            message: message.into(),
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PathError {}

/// Parses a PATCH `path`. Surrounding whitespace is ignored.
pub fn parse_path(text: &str) -> Result<PatchPath, PathError> {
    if text.len() > MAX_FILTER_LEN {
        return Err(PathError::new(format!(
            "path is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
            text.len()
        )));
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(PathError::new("path is empty"));
    }
    let shown = shorten(text);
    let Some(open) = text.find('[') else {
        let attr = filter::parse_attr_path(text)
            .map_err(|m| PathError::new(format!("invalid path: {m}")))?;
        return Ok(PatchPath {
            attr,
            filter: None,
            sub_after_filter: None,
        });
    };
    let head = text.get(..open).unwrap_or_default().trim_end();
    let attr = filter::parse_attr_path(head)
        .map_err(|m| PathError::new(format!("invalid path '{shown}': {m}")))?;
    if attr.sub.is_some() {
        return Err(PathError::new(format!(
            "invalid path '{shown}': '[' must follow a multi-valued attribute, not the \
             sub-attribute '{head}'"
        )));
    }
    let close = closing_bracket(text, open)?;
    let inner = text.get(open + 1..close).unwrap_or_default();
    let parsed = filter::parse_value_filter(inner)
        .map_err(|e| PathError::new(format!("invalid filter in path '{shown}': {}", e.message)))?;
    let tail = text.get(close + 1..).unwrap_or_default();
    let sub_after_filter = if tail.is_empty() {
        None
    } else {
        let Some(sub) = tail.strip_prefix('.') else {
            return Err(PathError::new(format!(
                "invalid path '{shown}': only '.subAttribute' may follow ']'"
            )));
        };
        let checked = filter::parse_attr_path(sub)
            .ok()
            .filter(|p| p.schema.is_none() && p.sub.is_none());
        if checked.is_none() {
            return Err(PathError::new(format!(
                "invalid path '{shown}': '{}' after ']' is not a sub-attribute name",
                shorten(sub)
            )));
        }
        Some(sub.to_string())
    };
    Ok(PatchPath {
        attr,
        filter: Some(parsed),
        sub_after_filter,
    })
}

/// Byte offset of the `]` matching the `[` at `open`, skipping string literals.
fn closing_bracket(text: &str, open: usize) -> Result<usize, PathError> {
    let shown = shorten(text);
    let bytes = text.as_bytes();
    let mut i = open + 1;
    let mut in_string = false;
    while let Some(&b) = bytes.get(i) {
        match (in_string, b) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_string = false,
            (false, b'"') => in_string = true,
            (false, b'[') => {
                return Err(PathError::new(format!(
                    "invalid path '{shown}': value filters cannot be nested"
                )));
            }
            (false, b']') => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    Err(PathError::new(format!(
        "invalid path '{shown}': '[' is never closed by ']'"
    )))
}

#[cfg(test)]
mod tests {
    use super::super::filter::{CompValue, Op};
    use super::super::patch::test_schema::ENTERPRISE;
    use super::*;

    fn ok(text: &str) -> PatchPath {
        match parse_path(text) {
            Ok(p) => p,
            Err(e) => panic!("{text}: {}", e.message),
        }
    }

    fn err(text: &str) -> String {
        match parse_path(text) {
            Ok(p) => panic!("{text} parsed as {p:?}"),
            Err(e) => e.message,
        }
    }

    fn attr(schema: Option<&str>, attr: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            schema: schema.map(str::to_string),
            attr: attr.to_string(),
            sub: sub.map(str::to_string),
        }
    }

    fn eq(name: &str, value: &str) -> Filter {
        Filter::Compare {
            path: attr(None, name, None),
            op: Op::Eq,
            value: CompValue::Str(value.to_string()),
        }
    }

    // RFC 7644 §3.5.2, Figure 8, and the paths of the §3.5.2.x examples.
    #[test]
    fn rfc_examples() {
        assert_eq!(
            ok("members"),
            PatchPath {
                attr: attr(None, "members", None),
                filter: None,
                sub_after_filter: None
            }
        );
        assert_eq!(
            ok("name.familyName"),
            PatchPath {
                attr: attr(None, "name", Some("familyName")),
                filter: None,
                sub_after_filter: None
            }
        );
        assert_eq!(
            ok(r#"addresses[type eq "work"]"#),
            PatchPath {
                attr: attr(None, "addresses", None),
                filter: Some(eq("type", "work")),
                sub_after_filter: None
            }
        );
        let id = "2819c223-7f76-453a-919d-413861904646";
        assert_eq!(
            ok(&format!(r#"members[value eq "{id}"]"#)),
            PatchPath {
                attr: attr(None, "members", None),
                filter: Some(eq("value", id)),
                sub_after_filter: None
            }
        );
        assert_eq!(
            ok(&format!(r#"members[value eq "{id}"].displayName"#)),
            PatchPath {
                attr: attr(None, "members", None),
                filter: Some(eq("value", id)),
                sub_after_filter: Some("displayName".into())
            }
        );
        let both = ok(r#"emails[type eq "work" and value ew "example.com"]"#);
        assert!(matches!(both.filter, Some(Filter::And(..))));
        let street = ok(r#"addresses[type eq "work"].streetAddress"#);
        assert_eq!(street.sub_after_filter.as_deref(), Some("streetAddress"));
        assert_eq!(street.sub(), Some("streetAddress"));
        assert_eq!(ok("name.givenName").sub(), Some("givenName"));
        assert_eq!(ok("members").sub(), None);
    }

    #[test]
    fn urn_paths() {
        assert_eq!(
            ok(&format!("{ENTERPRISE}:manager")),
            PatchPath {
                attr: attr(Some(ENTERPRISE), "manager", None),
                filter: None,
                sub_after_filter: None
            }
        );
        assert_eq!(
            ok(&format!("{ENTERPRISE}:manager.value")).attr,
            attr(Some(ENTERPRISE), "manager", Some("value"))
        );
        assert_eq!(
            ok("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").attr,
            attr(
                Some("urn:ietf:params:scim:schemas:core:2.0:User"),
                "name",
                Some("givenName")
            )
        );
        let filtered =
            ok(r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"].value"#);
        assert_eq!(
            filtered.attr,
            attr(
                Some("urn:ietf:params:scim:schemas:core:2.0:User"),
                "emails",
                None
            )
        );
        assert_eq!(filtered.sub_after_filter.as_deref(), Some("value"));
        // A bare extension URN splits like any URN path; PATCH recognises it as a schema.
        assert_eq!(
            ok(ENTERPRISE).attr,
            attr(
                Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0"),
                "User",
                None
            )
        );
    }

    #[test]
    fn idp_paths() {
        // Entra ID, Okta, OneLogin.
        let work = ok(r#"emails[type eq "work"].value"#);
        assert_eq!(work.attr, attr(None, "emails", None));
        assert_eq!(work.filter, Some(eq("type", "work")));
        assert_eq!(work.sub_after_filter.as_deref(), Some("value"));
        assert_eq!(
            ok(r#"phoneNumbers[type eq "mobile"].value"#).sub(),
            Some("value")
        );
        assert_eq!(
            ok(r#"emails[type eq "work"].primary"#).sub(),
            Some("primary")
        );
        assert_eq!(ok("active").attr, attr(None, "active", None));
        assert_eq!(
            ok(r#"members[value eq "89bb1940-b905-4575-9e7f-6f887cfb368e"]"#).filter,
            Some(eq("value", "89bb1940-b905-4575-9e7f-6f887cfb368e"))
        );
        assert_eq!(ok(" EMAILS[TYPE EQ \"work\"].VALUE ").sub(), Some("VALUE"));
        assert_eq!(
            ok(r#"members[display eq "a]b[c"]"#).filter,
            Some(eq("display", "a]b[c"))
        );
        assert_eq!(
            ok(r#"members[display eq "q\"]"]"#).filter,
            Some(eq("display", "q\"]"))
        );
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str)] = &[
            ("", "path is empty"),
            ("  ", "path is empty"),
            ("a.b.c", "more than one '.'"),
            ("first name", "contains ' '"),
            ("emails[", "never closed"),
            (r#"emails[type eq "work""#, "never closed"),
            (
                r#"emails[type eq "work"]x"#,
                "only '.subAttribute' may follow ']'",
            ),
            (
                r#"emails[type eq "work"].value.x"#,
                "is not a sub-attribute name",
            ),
            (r#"emails[type eq "work"]."#, "is not a sub-attribute name"),
            (
                r#"emails[type eq "work"][value eq "x"]"#,
                "only '.subAttribute' may follow ']'",
            ),
            (r#"emails[type[value eq "x"]]"#, "cannot be nested"),
            (
                r#"name.givenName[value eq "x"]"#,
                "must follow a multi-valued attribute",
            ),
            (
                r#"emails[emails.type eq "work"]"#,
                "name a sub-attribute of the filtered attribute alone",
            ),
            (r#"emails[type eq]"#, "expected a value after 'eq'"),
            ("emails[]", "filter is empty"),
            (r#"[type eq "work"]"#, "empty attribute path"),
            ("foo:bar", "only a schema URN"),
            ("9lives", "not a valid attribute name"),
        ];
        for (text, expected) in cases {
            let message = err(text);
            assert!(message.contains(expected), "{text}: {message}");
        }
        let long = format!("a{}", "b".repeat(MAX_FILTER_LEN));
        assert!(err(&long).contains("at most 4096"));
        let message = err(&format!("{}x y", "a".repeat(300)));
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn fuzz_parse_path_does_not_panic() {
        let tricky = [
            r#"members[value eq "2819c223-7f76-453a-919d-413861904646"].displayName"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"#,
            r#"emails[type eq "wo\"rk]" and not (value co "é")].primary"#,
            r#"a[[b]]].c.d:"e\"#,
        ];
        for text in tricky {
            for (i, _) in text.char_indices() {
                let _ = parse_path(text.get(..i).unwrap_or_default());
                let _ = parse_path(text.get(i..).unwrap_or_default());
            }
        }
        let pieces = [
            "emails", "members", "[", "]", ".", ":", "urn:", "value", "type", " eq ", "\"",
            "\"w\"", "\\", " ", "é", "and", "not (", ")", "$ref",
        ];
        let mut state: u64 = 0x9a7c_0ffe;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = 1 + (state >> 60) as usize;
            let mut text = String::new();
            let mut s = state;
            for _ in 0..n {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(pieces[((s >> 33) % pieces.len() as u64) as usize]);
            }
            let _ = parse_path(&text);
        }
    }
}
