//! Users, teams, organisations and end users, and the memberships between them.
//!
//! A membership is stored on both sides (the team lists its members, the user lists its teams)
//! so either direction is one read; the methods here change both sides in the same
//! transaction, and nothing else writes them.

use super::budget::Budget;
use super::{Store, StoreError, Tx, tables};
use crate::roles::{GlobalRole, OrgRole, TeamRole};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgMembership {
    pub organization_id: String,
    pub role: OrgRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub user_id: String,
    pub user_email: Option<String>,
    pub user_alias: Option<String>,
    pub user_role: GlobalRole,
    /// argon2 PHC string; never leaves the server.
    pub password_hash: Option<String>,
    pub models: Vec<String>,
    pub budget: Budget,
    pub teams: Vec<String>,
    pub organizations: Vec<OrgMembership>,
    pub metadata_json: String,
    /// A blocked (deactivated) user's keys stop working at once.
    pub blocked: bool,
    pub sso_user_id: Option<String>,
    pub external_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamMember {
    pub user_id: String,
    pub role: TeamRole,
    /// The member's own budget inside this team (`max_budget_in_team`, ...).
    pub budget: Budget,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRecord {
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgMember {
    pub user_id: String,
    pub role: OrgRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub organization_id: String,
    pub organization_alias: String,
    pub parent_id: Option<String>,
    pub models: Vec<String>,
    pub budget: Budget,
    pub members: Vec<OrgMember>,
    pub metadata_json: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
    pub updated_by: String,
}

/// An end user of an application (`user` in a request body, or `x-litellm-end-user-id`),
/// LiteLLM's "customer".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerRecord {
    pub user_id: String,
    pub alias: Option<String>,
    pub blocked: bool,
    pub budget: Budget,
    pub metadata_json: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Tx {
    pub fn get_user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.get_record(tables::USERS, id)
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let id = {
            let t = self.txn.open_table(tables::USER_EMAILS)?;
            let found = t.get(email.to_lowercase().as_str())?;
            found.map(|v| v.value().to_string())
        };
        match id {
            Some(id) => self.get_user(&id),
            None => Ok(None),
        }
    }

    /// Inserts or replaces a user, keeping the email index in step. The caller checks that a
    /// new email is free.
    pub fn put_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        let old_email = self.get_user(&user.user_id)?.and_then(|u| u.user_email);
        {
            let mut emails = self.txn.open_table(tables::USER_EMAILS)?;
            if let Some(old) = old_email {
                emails.remove(old.to_lowercase().as_str())?;
            }
            if let Some(new) = &user.user_email {
                emails.insert(new.to_lowercase().as_str(), user.user_id.as_str())?;
            }
        }
        self.put_record(tables::USERS, &user.user_id, user)
    }

    pub fn delete_user(&mut self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let removed: Option<UserRecord> = self.remove_record(tables::USERS, id)?;
        if let Some(email) = removed.as_ref().and_then(|u| u.user_email.as_ref()) {
            self.txn
                .open_table(tables::USER_EMAILS)?
                .remove(email.to_lowercase().as_str())?;
        }
        Ok(removed)
    }

    pub fn all_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.all_records(tables::USERS)
    }

    pub fn get_team(&self, id: &str) -> Result<Option<TeamRecord>, StoreError> {
        self.get_record(tables::TEAMS, id)
    }

    pub fn put_team(&mut self, team: &TeamRecord) -> Result<(), StoreError> {
        self.put_record(tables::TEAMS, &team.team_id, team)
    }

    pub fn delete_team(&mut self, id: &str) -> Result<Option<TeamRecord>, StoreError> {
        self.remove_record(tables::TEAMS, id)
    }

    pub fn all_teams(&self) -> Result<Vec<TeamRecord>, StoreError> {
        self.all_records(tables::TEAMS)
    }

    pub fn get_org(&self, id: &str) -> Result<Option<OrgRecord>, StoreError> {
        self.get_record(tables::ORGS, id)
    }

    pub fn put_org(&mut self, org: &OrgRecord) -> Result<(), StoreError> {
        self.put_record(tables::ORGS, &org.organization_id, org)
    }

    pub fn delete_org(&mut self, id: &str) -> Result<Option<OrgRecord>, StoreError> {
        self.remove_record(tables::ORGS, id)
    }

    pub fn all_orgs(&self) -> Result<Vec<OrgRecord>, StoreError> {
        self.all_records(tables::ORGS)
    }

    pub fn get_customer(&self, id: &str) -> Result<Option<CustomerRecord>, StoreError> {
        self.get_record(tables::CUSTOMERS, id)
    }

    pub fn put_customer(&mut self, c: &CustomerRecord) -> Result<(), StoreError> {
        self.put_record(tables::CUSTOMERS, &c.user_id, c)
    }

    pub fn delete_customer(&mut self, id: &str) -> Result<Option<CustomerRecord>, StoreError> {
        self.remove_record(tables::CUSTOMERS, id)
    }
}

/// Everything the in-memory directory is built from, read in one transaction so it is
/// consistent.
pub struct TenancySnapshot {
    pub users: Vec<UserRecord>,
    pub teams: Vec<TeamRecord>,
    pub orgs: Vec<OrgRecord>,
    pub customers: Vec<CustomerRecord>,
}

impl Store {
    pub fn tenancy_snapshot(&self) -> Result<TenancySnapshot, StoreError> {
        let txn = self.read()?;
        Ok(TenancySnapshot {
            users: super::records::decode_table(&txn, tables::USERS)?,
            teams: super::records::decode_table(&txn, tables::TEAMS)?,
            orgs: super::records::decode_table(&txn, tables::ORGS)?,
            customers: super::records::decode_table(&txn, tables::CUSTOMERS)?,
        })
    }

    pub fn read_user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read_record(tables::USERS, id)
    }
}
