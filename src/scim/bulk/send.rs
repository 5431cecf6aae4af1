//! Sending one bulk operation through the SCIM router as the request it stands for, with the
//! outer request's credential, Host, peer and request id, and turning the answer into the
//! operation's result.

use super::refs::{REF, substitute};
use super::request::{Op, Parsed};
use super::{conflict, entry};
use crate::api::PeerAddr;
use crate::scim::error::{CONTENT_TYPE, ScimError};
use axum::body::Body;
use axum::extract::Request;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::Value;
use std::collections::HashMap;
use tower::ServiceExt;

/// The outer request's headers an operation is sent with: its credential, Host and the like,
/// without those that describe the outer body or its preconditions.
pub(super) fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for h in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
        header::EXPECT,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
    ] {
        out.remove(h);
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    out
}

/// Sends operations through the SCIM router, as the outer request's caller.
pub(super) struct Sender {
    pub router: axum::Router,
    pub headers: HeaderMap,
    pub peer: Option<PeerAddr>,
    pub request_id: String,
    pub base: String,
}

impl Sender {
    /// One operation, its references resolved: its status, its result, and the id of what it
    /// created.
    pub(super) async fn perform(
        &self,
        p: &Parsed,
        op: &Op,
        created: &HashMap<String, String>,
        declared: &HashMap<String, usize>,
    ) -> (StatusCode, Value, Option<String>) {
        let fail = |e: ScimError, location: Option<String>| {
            (
                e.status,
                entry(p, e.status, location, None, Some(e.body())),
                None,
            )
        };
        if let Some(r) = op.refs.iter().find(|r| !created.contains_key(*r)) {
            let e = if declared.contains_key(r) {
                conflict(format!(
                    "{REF}{r} was not created: the operation that creates it failed."
                ))
            } else {
                conflict(format!("{REF}{r} names no POST of this request."))
            };
            return fail(e, None);
        }
        let path = match op.path.rsplit_once('/') {
            Some((head, id)) if id.starts_with(REF) => {
                let id = id.strip_prefix(REF).and_then(|r| created.get(r));
                format!("{head}/{}", id.map_or("", String::as_str))
            }
            _ => op.path.clone(),
        };
        // RFC 7644 §3.7.3: every result but a failed POST's names its resource.
        let here = (op.method != Method::POST).then(|| format!("{}{path}", self.base));
        let mut data = op.data.clone();
        if let Some(d) = data.as_mut() {
            substitute(d, created);
        }
        let resp = match self.request(op, &path, data) {
            Ok(req) => match self.router.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            Err(e) => return fail(e, here),
        };
        let status = resp.status();
        let etag = resp
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // The SCIM handlers' own answer, already in memory: it needs no cap.
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null);
        if !status.is_success() {
            let response = if body.is_object() {
                body
            } else {
                ScimError::new(status, None, format!("{} {path} failed.", op.method)).body()
            };
            return (status, entry(p, status, here, None, Some(response)), None);
        }
        let id = body["id"].as_str().map(str::to_string);
        let location = here.or_else(|| body["meta"]["location"].as_str().map(str::to_string));
        let version = etag.or_else(|| body["meta"]["version"].as_str().map(str::to_string));
        let created_id = id.filter(|_| op.method == Method::POST);
        (
            status,
            entry(p, status, location, version, None),
            created_id,
        )
    }

    fn request(&self, op: &Op, path: &str, data: Option<Value>) -> Result<Request, ScimError> {
        let body = data.map_or_else(Body::empty, |d| Body::from(d.to_string()));
        let mut req = http::Request::builder()
            .method(op.method.clone())
            .uri(format!("/scim/v2{path}"))
            .body(body)
            .map_err(|_| ScimError::bad("invalidValue", format!("{path} is not a URI path.")))?;
        *req.headers_mut() = self.headers.clone();
        if let Some(v) = &op.version {
            let v = HeaderValue::from_str(v)
                .map_err(|_| ScimError::bad("invalidValue", "`version` is not a valid ETag."))?;
            req.headers_mut().insert(header::IF_MATCH, v);
        }
        req.extensions_mut()
            .insert(crate::api::RequestId(self.request_id.clone()));
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(peer);
        }
        Ok(req)
    }
}
