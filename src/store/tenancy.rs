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

/// A user as SCIM provisioned it: the IdP's view, beside the gateway's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScimUser {
    /// As the IdP wrote it; unique case-insensitively (`scim_user_names_v1`).
    pub user_name: String,
    /// `false`: deactivated through SCIM — every key and session of the user is refused.
    /// Independent of `blocked` (an administrator's), so reactivation restores exactly what SCIM
    /// took away.
    pub active: bool,
    /// The resource's other attributes (name, emails, enterprise extension...) as JSON text.
    pub attributes_json: String,
    /// Bumped on every change: the resource's `meta.version` (ETag).
    pub version: u64,
    /// The key id of the SCIM token that created it.
    pub provisioned_by: String,
    /// Roles the user holds because of its SCIM groups (schema 5).
    pub grants: ScimGrants,
}

/// What SCIM granted a user because of its groups (`general_settings.scim_group_roles`), each
/// grant with the role it replaced: leaving the group takes back exactly this, never a role an
/// administrator gave. An administrator setting the role by hand takes it over (the grant is
/// forgotten, so a later removal from the group leaves it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScimGrants {
    /// The proxy-wide role SCIM set (`proxy_admin`, `proxy_admin_viewer`).
    pub user_role: Option<RoleGrant>,
    /// The organisations in which SCIM made the user an org admin.
    pub org_admin: Vec<OrgAdminGrant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub granted: GlobalRole,
    /// The role the user had before; restored when the grant is taken back.
    pub replaced: GlobalRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgAdminGrant {
    pub organization_id: String,
    /// The user's role in the organisation before; restored when the grant is taken back.
    pub replaced: OrgRole,
}

impl ScimGrants {
    pub fn is_empty(&self) -> bool {
        self.user_role.is_none() && self.org_admin.is_empty()
    }

    pub fn org(&self, org_id: &str) -> Option<&OrgAdminGrant> {
        self.org_admin.iter().find(|g| g.organization_id == org_id)
    }
}

/// A team as SCIM provisioned it (a SCIM Group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScimGroup {
    pub display_name: String,
    pub version: u64,
    pub provisioned_by: String,
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
    /// Present when SCIM provisioned the user.
    pub scim: Option<ScimUser>,
}

impl ScimUser {
    /// Every email address the IdP gave, lower-cased.
    pub fn emails(&self) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&self.attributes_json).unwrap_or_default();
        let mut out: Vec<String> = v["emails"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| e["value"].as_str())
                    .map(|e| e.trim().to_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }
}

/// The `scim_emails_v1` key of one of a user's addresses.
pub(super) fn email_key(email: &str, user_id: &str) -> String {
    format!("{email}\n{user_id}")
}

impl UserRecord {
    /// Refused everywhere: blocked by an administrator, or deactivated through SCIM.
    pub fn disabled(&self) -> bool {
        self.blocked || self.scim.as_ref().is_some_and(|s| !s.active)
    }

    /// What SCIM granted the user because of its groups (nothing for a user SCIM never wrote).
    pub fn scim_grants(&self) -> Option<&ScimGrants> {
        self.scim.as_ref().map(|s| &s.grants)
    }

    /// An administrator set the proxy-wide role by hand: it is theirs from now on, and leaving
    /// a SCIM group no longer takes it back.
    pub fn take_over_role(&mut self) {
        if let Some(s) = self.scim.as_mut() {
            s.grants.user_role = None;
        }
    }

    /// An administrator set or removed the user's membership of `org_id` by hand (or the
    /// organisation went): SCIM's org-admin grant there is forgotten.
    pub fn take_over_org_role(&mut self, org_id: &str) {
        if let Some(s) = self.scim.as_mut() {
            s.grants.org_admin.retain(|g| g.organization_id != org_id);
        }
    }
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
    /// Present when SCIM provisioned the team (as a Group).
    pub scim: Option<ScimGroup>,
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

    /// Inserts or replaces a user, keeping the indexes in step. The caller checks that a new
    /// email or userName is free.
    ///
    /// An index is only written where the user's entry in it changes: a write dirties the
    /// B-tree pages on its path, and every dirty page is written out and synced by the durable
    /// commit — a group's 20 membership changes would otherwise rewrite 20 leaves of each index.
    pub fn put_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        let old = self.get_user(&user.user_id)?;
        let lower = |s: Option<&String>| s.map(|s| s.to_lowercase());
        let (before, after) = (
            lower(old.as_ref().and_then(|u| u.user_email.as_ref())),
            lower(user.user_email.as_ref()),
        );
        if before != after {
            let mut emails = self.txn.open_table(tables::USER_EMAILS)?;
            if let Some(old) = &before {
                emails.remove(old.as_str())?;
            }
            if let Some(new) = &after {
                emails.insert(new.as_str(), user.user_id.as_str())?;
            }
        }
        let (before, after) = (
            lower(
                old.as_ref()
                    .and_then(|u| u.scim.as_ref())
                    .map(|s| &s.user_name),
            ),
            lower(user.scim.as_ref().map(|s| &s.user_name)),
        );
        if before != after {
            let mut names = self.txn.open_table(tables::SCIM_USER_NAMES)?;
            if let Some(old) = &before {
                names.remove(old.as_str())?;
            }
            if let Some(new) = &after {
                names.insert(new.as_str(), user.user_id.as_str())?;
            }
        }
        self.index_scim_emails(old.as_ref(), Some(user))?;
        self.index_external_id(old.as_ref(), Some(user))?;
        self.put_record(tables::USERS, &user.user_id, user)
    }

    pub fn delete_user(&mut self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let removed: Option<UserRecord> = self.remove_record(tables::USERS, id)?;
        if let Some(email) = removed.as_ref().and_then(|u| u.user_email.as_ref()) {
            self.txn
                .open_table(tables::USER_EMAILS)?
                .remove(email.to_lowercase().as_str())?;
        }
        if let Some(scim) = removed.as_ref().and_then(|u| u.scim.as_ref()) {
            self.txn
                .open_table(tables::SCIM_USER_NAMES)?
                .remove(scim.user_name.to_lowercase().as_str())?;
        }
        self.index_scim_emails(removed.as_ref(), None)?;
        self.index_external_id(removed.as_ref(), None)?;
        Ok(removed)
    }

    /// Keeps `user_external_ids_v1` in step when a user goes from `old` to `new`.
    fn index_external_id(
        &mut self,
        old: Option<&UserRecord>,
        new: Option<&UserRecord>,
    ) -> Result<(), StoreError> {
        fn row(u: Option<&UserRecord>) -> Option<(&str, &str)> {
            u.and_then(|u| Some((u.external_id.as_deref()?, u.user_id.as_str())))
        }
        let (before, after) = (row(old), row(new));
        if before == after {
            return Ok(());
        }
        let mut t = self.txn.open_table(tables::USER_EXTERNAL_IDS)?;
        if let Some(k) = before {
            t.remove(k)?;
        }
        if let Some(k) = after {
            t.insert(k, ())?;
        }
        Ok(())
    }

    /// Keeps `scim_emails_v1` in step when a user goes from `old` to `new`.
    fn index_scim_emails(
        &mut self,
        old: Option<&UserRecord>,
        new: Option<&UserRecord>,
    ) -> Result<(), StoreError> {
        let emails = |u: Option<&UserRecord>| -> Vec<(String, String)> {
            u.and_then(|u| u.scim.as_ref().map(|s| (u, s)))
                .map(|(u, s)| {
                    s.emails()
                        .into_iter()
                        .map(|e| (email_key(&e, &u.user_id), u.user_id.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (before, after) = (emails(old), emails(new));
        if before == after {
            return Ok(());
        }
        let mut t = self.txn.open_table(tables::SCIM_EMAILS)?;
        for (k, _) in before.iter().filter(|x| !after.contains(x)) {
            t.remove(k.as_str())?;
        }
        for (k, id) in after.iter().filter(|x| !before.contains(x)) {
            t.insert(k.as_str(), id.as_str())?;
        }
        Ok(())
    }

    /// The user a SCIM `userName` names (case-insensitively).
    pub fn user_by_scim_name(&self, user_name: &str) -> Result<Option<UserRecord>, StoreError> {
        let id = {
            let t = self.txn.open_table(tables::SCIM_USER_NAMES)?;
            let found = t.get(user_name.to_lowercase().as_str())?;
            found.map(|v| v.value().to_string())
        };
        match id {
            Some(id) => self.get_user(&id),
            None => Ok(None),
        }
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

    /// The users a SCIM `userName` (case-insensitively; also an administrator-made user's email
    /// or id, which is its userName) or an email names — by index, not by a scan.
    pub fn find_users_by_name_or_email(
        &self,
        value: &str,
        by_name: bool,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let txn = self.read()?;
        let lower = value.to_lowercase();
        let mut ids: Vec<String> = Vec::new();
        if by_name {
            let names = txn.open_table(tables::SCIM_USER_NAMES)?;
            if let Some(v) = names.get(lower.as_str())? {
                ids.push(v.value().to_string());
            }
            ids.push(value.to_string());
        }
        let emails = txn.open_table(tables::USER_EMAILS)?;
        if let Some(v) = emails.get(lower.as_str())? {
            ids.push(v.value().to_string());
        }
        drop(emails);
        if !by_name {
            // Every address SCIM users listed, not only their primary one.
            let all = txn.open_table(tables::SCIM_EMAILS)?;
            let (from, to) = (format!("{lower}\n"), format!("{lower}\u{b}"));
            for row in all.range(from.as_str()..to.as_str())? {
                ids.push(row?.1.value().to_string());
            }
        }
        ids.sort();
        ids.dedup();
        let users = txn.open_table(tables::USERS)?;
        let mut out: Vec<UserRecord> = Vec::new();
        for id in ids {
            if out.iter().any(|u| u.user_id == id) {
                continue;
            }
            if let Some(v) = users.get(id.as_str())? {
                out.push(super::codec::decode(v.value())?);
            }
        }
        Ok(out)
    }

    /// The users whose `externalId` is exactly `value` (it is case-exact) — by index.
    pub fn find_users_by_external_id(&self, value: &str) -> Result<Vec<UserRecord>, StoreError> {
        let txn = self.read()?;
        let index = txn.open_table(tables::USER_EXTERNAL_IDS)?;
        let mut ids: Vec<String> = Vec::new();
        for row in index.range((value, "")..)? {
            let (k, _) = row?;
            let (x, id) = k.value();
            if x != value {
                break;
            }
            ids.push(id.to_string());
        }
        drop(index);
        let users = txn.open_table(tables::USERS)?;
        let mut out: Vec<UserRecord> = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = users.get(id.as_str())? {
                out.push(super::codec::decode(v.value())?);
            }
        }
        Ok(out)
    }

    pub fn read_user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read_record(tables::USERS, id)
    }
}
