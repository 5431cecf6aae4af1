//! Discovery (RFC 7644 §4): what this service provider supports — exactly what works.

use super::schema::{self, ENTERPRISE, GROUP, USER};
use super::{Base, ScimCaller, ScimError, reply};
use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

/// Resources per page, at most (`count` above it is capped).
pub const MAX_RESULTS: usize = 1000;

pub async fn service_provider_config(
    State(app): State<crate::app::AppState>,
    _: ScimCaller,
    base: Base,
) -> Response {
    reply(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/portcullis/portcullis/blob/main/docs/scim.md",
            "patch": {"supported": true},
            // The limits `bulk` enforces, from the same constants.
            "bulk": {
                "supported": true,
                "maxOperations": super::bulk::MAX_OPERATIONS,
                "maxPayloadSize": super::bulk::max_payload(&app),
            },
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": false},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "A Portcullis SCIM token: a virtual key with allowed_routes [\"/scim/*\"], sent as Authorization: Bearer <key>.",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{}/ServiceProviderConfig", base.0),
            },
        }),
    )
}

fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account (a Portcullis user)",
            "schema": USER,
            "schemaExtensions": [{"schema": ENTERPRISE, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group (a Portcullis team)",
            "schema": GROUP,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [schema::LIST],
        "totalResults": resources.len(),
        "itemsPerPage": resources.len(),
        "startIndex": 1,
        "Resources": resources,
    })
}

pub async fn resource_types_list(_: ScimCaller, base: Base) -> Response {
    reply(StatusCode::OK, &list(resource_types(&base.0)))
}

pub async fn resource_type(
    _: ScimCaller,
    base: Base,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    resource_types(&base.0)
        .into_iter()
        .find(|r| r["id"].as_str() == Some(id.as_str()))
        .map(|r| reply(StatusCode::OK, &r))
        .ok_or_else(|| ScimError::not_found(format!("No resource type {id}.")))
}

pub async fn schemas_list(_: ScimCaller, base: Base) -> Response {
    reply(StatusCode::OK, &list(schema::all_documents(&base.0)))
}

pub async fn schema_one(
    _: ScimCaller,
    base: Base,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    schema::document(&id, &base.0)
        .map(|d| reply(StatusCode::OK, &d))
        .ok_or_else(|| ScimError::not_found(format!("No schema {id}.")))
}
