//! Record layouts of earlier schemas, kept only so migrations (and `verify`, which reads files
//! of any schema it knows) can decode them. Never written: each is converted into the next
//! layout by its numbered migration (`migrate.rs`). bincode is not self-describing, so each
//! struct here must stay exactly as that schema wrote it — field order and types included.

use super::budget::Budget;
use super::tenancy::{OrgMembership, ScimGrants, ScimUser, TeamMember, TeamRecord, UserRecord};
use crate::roles::GlobalRole;
use serde::{Deserialize, Serialize};

/// Schemas 1–3's user (no SCIM state); read by migration 4 only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecordV1 {
    pub user_id: String,
    pub user_email: Option<String>,
    pub user_alias: Option<String>,
    pub user_role: GlobalRole,
    pub password_hash: Option<String>,
    pub models: Vec<String>,
    pub budget: Budget,
    pub teams: Vec<String>,
    pub organizations: Vec<OrgMembership>,
    pub metadata_json: String,
    pub blocked: bool,
    pub sso_user_id: Option<String>,
    pub external_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
    pub updated_by: String,
}

impl From<UserRecordV1> for UserRecordV2 {
    fn from(u: UserRecordV1) -> UserRecordV2 {
        UserRecordV2 {
            user_id: u.user_id,
            user_email: u.user_email,
            user_alias: u.user_alias,
            user_role: u.user_role,
            password_hash: u.password_hash,
            models: u.models,
            budget: u.budget,
            teams: u.teams,
            organizations: u.organizations,
            metadata_json: u.metadata_json,
            blocked: u.blocked,
            sso_user_id: u.sso_user_id,
            external_id: u.external_id,
            created_at_ms: u.created_at_ms,
            updated_at_ms: u.updated_at_ms,
            created_by: u.created_by,
            updated_by: u.updated_by,
            scim: None,
        }
    }
}

/// Schemas 1–3's team (no SCIM state); read by migration 4 only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRecordV1 {
    pub team_id: String,
    pub team_alias: Option<String>,
    pub organization_id: Option<String>,
    pub models: Vec<String>,
    pub budget: Budget,
    pub members: Vec<TeamMember>,
    pub blocked: bool,
    pub metadata_json: String,
    pub external_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
    pub updated_by: String,
}

impl From<TeamRecordV1> for TeamRecord {
    fn from(t: TeamRecordV1) -> TeamRecord {
        TeamRecord {
            team_id: t.team_id,
            team_alias: t.team_alias,
            organization_id: t.organization_id,
            models: t.models,
            budget: t.budget,
            members: t.members,
            blocked: t.blocked,
            metadata_json: t.metadata_json,
            external_id: t.external_id,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
            created_by: t.created_by,
            updated_by: t.updated_by,
            scim: None,
        }
    }
}

/// Schema 4's SCIM state of a user (no roles granted from groups yet); read by migration 5 only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScimUserV1 {
    pub user_name: String,
    pub active: bool,
    pub attributes_json: String,
    pub version: u64,
    pub provisioned_by: String,
}

/// Schema 4's user (`users_v2`); read by migration 5 only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecordV2 {
    pub user_id: String,
    pub user_email: Option<String>,
    pub user_alias: Option<String>,
    pub user_role: GlobalRole,
    pub password_hash: Option<String>,
    pub models: Vec<String>,
    pub budget: Budget,
    pub teams: Vec<String>,
    pub organizations: Vec<OrgMembership>,
    pub metadata_json: String,
    pub blocked: bool,
    pub sso_user_id: Option<String>,
    pub external_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
    pub updated_by: String,
    pub scim: Option<ScimUserV1>,
}

impl From<UserRecordV2> for UserRecord {
    fn from(u: UserRecordV2) -> UserRecord {
        UserRecord {
            user_id: u.user_id,
            user_email: u.user_email,
            user_alias: u.user_alias,
            user_role: u.user_role,
            password_hash: u.password_hash,
            models: u.models,
            budget: u.budget,
            teams: u.teams,
            organizations: u.organizations,
            metadata_json: u.metadata_json,
            blocked: u.blocked,
            sso_user_id: u.sso_user_id,
            external_id: u.external_id,
            created_at_ms: u.created_at_ms,
            updated_at_ms: u.updated_at_ms,
            created_by: u.created_by,
            updated_by: u.updated_by,
            // Nothing was granted from groups before schema 5.
            scim: u.scim.map(|s| ScimUser {
                user_name: s.user_name,
                active: s.active,
                attributes_json: s.attributes_json,
                version: s.version,
                provisioned_by: s.provisioned_by,
                grants: ScimGrants::default(),
            }),
        }
    }
}
