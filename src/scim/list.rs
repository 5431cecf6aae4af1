//! Listing (RFC 7644 §3.4.2): filter, sort, `startIndex`/`count` paging and attribute
//! projection, from query parameters (`GET`) or a SearchRequest body (`POST /.search`).

use super::error::ScimError;
use super::filter::{self, Filter};
use super::schema::{self, Attr, Returned};
use serde_json::{Map, Value, json};

/// The parameters of one listing, checked.
pub struct Listing {
    pub filter: Option<Filter>,
    /// 1-based; values below 1 are 1 (RFC 7644 §3.4.2.4).
    pub start: usize,
    /// `None`: as many as allowed; 0: only the total.
    pub count: Option<usize>,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

fn text(v: Option<&Value>, name: &str) -> Result<Option<String>, ScimError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Array(items)) => Ok(Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        )),
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            format!("`{name}` must be a string."),
        )),
    }
}

/// From query parameters or a SearchRequest body: both are a JSON object of strings here.
pub fn listing(params: &Map<String, Value>) -> Result<Listing, ScimError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let filter = match text(get("filter"), "filter")? {
        Some(f) if !f.trim().is_empty() => {
            Some(filter::parse(&f).map_err(|e| ScimError::bad("invalidFilter", e.message))?)
        }
        _ => None,
    };
    let number = |name: &str| -> Result<Option<i64>, ScimError> {
        match text(get(name), name)? {
            None => Ok(None),
            Some(t) if t.trim().is_empty() => Ok(None),
            Some(t) => t.trim().parse::<i64>().map(Some).map_err(|_| {
                ScimError::bad("invalidValue", format!("`{name}` must be an integer."))
            }),
        }
    };
    let start = number("startIndex")?.unwrap_or(1).max(1) as usize;
    let count = number("count")?.map(|c| (c.max(0) as usize).min(super::discovery::MAX_RESULTS));
    let descending = match text(get("sortOrder"), "sortOrder")?.as_deref() {
        None | Some("") => false,
        Some(o) if o.eq_ignore_ascii_case("ascending") => false,
        Some(o) if o.eq_ignore_ascii_case("descending") => true,
        Some(o) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("`sortOrder` must be ascending or descending (got `{o}`)."),
            ));
        }
    };
    let list = |name: &str| -> Result<Vec<String>, ScimError> {
        Ok(text(get(name), name)?
            .map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default())
    };
    Ok(Listing {
        filter,
        start,
        count,
        sort_by: text(get("sortBy"), "sortBy")?.filter(|s| !s.trim().is_empty()),
        descending,
        attributes: list("attributes")?,
        excluded: list("excludedAttributes")?,
    })
}

/// The value `sortBy` names in a resource, for ordering (strings case-insensitively unless the
/// attribute is case-exact; multi-valued attributes by their primary or first value).
fn sort_key(resource: &Value, path: &str) -> Option<String> {
    let (urn, rest) = split_urn(path);
    let mut at = match urn {
        Some(u) if !filter::is_core_schema(u) => get_ci(resource, u)?,
        _ => resource,
    };
    for part in rest.split('.') {
        at = get_ci(at, part)?;
        if let Value::Array(items) = at {
            at = items
                .iter()
                .find(|x| x["primary"].as_bool() == Some(true))
                .or_else(|| items.first())?;
            if let Some(v) = at.get("value") {
                at = v;
            }
        }
    }
    match at {
        Value::String(s) => Some(s.to_lowercase()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// `urn:...:User:name.givenName` → (`urn:...:User`, `name.givenName`).
pub fn split_urn(path: &str) -> (Option<&str>, &str) {
    if path.to_ascii_lowercase().starts_with("urn:")
        && let Some(i) = path.rfind(':')
    {
        return (Some(&path[..i]), &path[i + 1..]);
    }
    (None, path)
}

/// Applies the filter (already evaluated by the caller), sorting, paging and projection to the
/// matching resources, and wraps them in a ListResponse.
pub fn respond(mut matched: Vec<Value>, l: &Listing, attrs: &[Attr], core: &str) -> Value {
    if let Some(by) = &l.sort_by {
        matched.sort_by(|a, b| {
            let (ka, kb) = (sort_key(a, by), sort_key(b, by));
            // Resources without the attribute sort last either way (RFC 7644 §3.4.2.3).
            let o = match (&ka, &kb) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => return std::cmp::Ordering::Greater,
                (Some(_), None) => return std::cmp::Ordering::Less,
                (Some(x), Some(y)) => x.cmp(y),
            };
            if l.descending { o.reverse() } else { o }
        });
    }
    let total = matched.len();
    let count = l.count.unwrap_or(super::discovery::MAX_RESULTS);
    let page: Vec<Value> = matched
        .into_iter()
        .skip(l.start - 1)
        .take(count)
        .map(|r| project(r, &l.attributes, &l.excluded, attrs, core))
        .collect();
    json!({
        "schemas": [schema::LIST],
        "totalResults": total,
        "itemsPerPage": page.len(),
        "startIndex": l.start,
        "Resources": page,
    })
}

/// RFC 7644 §3.4.2.5: only `attributes` (plus those always returned), or all but `excluded`.
pub fn project(
    resource: Value,
    attributes: &[String],
    excluded: &[String],
    attrs: &[Attr],
    core: &str,
) -> Value {
    let Value::Object(mut m) = resource else {
        return resource;
    };
    let always = |k: &str| {
        k == "schemas" || schema::find(attrs, k).is_some_and(|a| a.returned == Returned::Always)
    };
    if !attributes.is_empty() {
        let mut out = Map::new();
        for (k, v) in m {
            if always(&k) {
                out.insert(k, v);
                continue;
            }
            let wanted: Vec<&str> = attributes
                .iter()
                .filter_map(|a| {
                    let (urn, rest) = split_urn(a);
                    let top_matches = match urn {
                        Some(u) if u.eq_ignore_ascii_case(core) || filter::is_core_schema(u) => {
                            rest.split('.')
                                .next()
                                .is_some_and(|t| t.eq_ignore_ascii_case(&k))
                        }
                        Some(u) => u.eq_ignore_ascii_case(&k),
                        None => rest
                            .split('.')
                            .next()
                            .is_some_and(|t| t.eq_ignore_ascii_case(&k)),
                    };
                    top_matches.then_some(a.as_str())
                })
                .collect();
            if wanted.is_empty() {
                continue;
            }
            // `name.givenName` keeps only that sub-attribute; `name` keeps it all.
            let subs: Vec<&str> = wanted
                .iter()
                .filter_map(|a| split_urn(a).1.split_once('.').map(|(_, s)| s))
                .collect();
            let whole = wanted.iter().any(|a| {
                let (urn, rest) = split_urn(a);
                !rest.contains('.') || urn.is_some_and(|u| u.eq_ignore_ascii_case(&k))
            });
            out.insert(k, if whole { v } else { keep_subs(v, &subs) });
        }
        return Value::Object(out);
    }
    for e in excluded {
        let (urn, rest) = split_urn(e);
        let top = match urn {
            Some(u) if !(u.eq_ignore_ascii_case(core) || filter::is_core_schema(u)) => u,
            _ => rest.split('.').next().unwrap_or(rest),
        };
        if always(top) {
            continue;
        }
        let key = m.keys().find(|k| k.eq_ignore_ascii_case(top)).cloned();
        if let Some(key) = key {
            match rest.split_once('.') {
                Some((_, sub)) if urn.is_none() => {
                    if let Some(v) = m.get_mut(&key) {
                        drop_sub(v, sub);
                    }
                }
                _ => {
                    m.remove(&key);
                }
            }
        }
    }
    Value::Object(m)
}

fn keep_subs(v: Value, subs: &[&str]) -> Value {
    let keep = |o: Map<String, Value>| -> Value {
        Value::Object(
            o.into_iter()
                .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .collect(),
        )
    };
    match v {
        Value::Object(o) => keep(o),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|x| match x {
                    Value::Object(o) => keep(o),
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

fn drop_sub(v: &mut Value, sub: &str) {
    match v {
        Value::Object(o) => {
            o.retain(|k, _| !k.eq_ignore_ascii_case(sub));
        }
        Value::Array(items) => {
            for x in items {
                drop_sub(x, sub);
            }
        }
        _ => {}
    }
}

/// A `POST /.search` body (a SearchRequest) as the JSON object [`listing`] reads.
pub async fn search_request(
    app: &crate::app::AppState,
    headers: &http::HeaderMap,
    body: axum::body::Body,
) -> Result<Map<String, Value>, ScimError> {
    match super::json_body(app, headers, body).await? {
        Value::Object(params) => Ok(params),
        _ => Err(ScimError::bad(
            "invalidSyntax",
            "A SearchRequest is a JSON object.",
        )),
    }
}

/// Query parameters as the JSON object [`listing`] reads.
pub fn query_map(pairs: Vec<(String, String)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}
