//! The governance model in memory: users, teams, organisations (a tree), end users and keys,
//! each compiled once (model rules, limits, its live meter) when it enters the directory, so
//! the request path does map lookups and string compares only — no disk I/O, no global lock.
//!
//! The store is the source of truth; the management API updates the directory after each
//! commit, under the admin write lock, so the two never disagree for longer than one write.

pub mod access;
mod models;
pub mod scope;

pub use models::{ALL_PROXY_MODELS, ALL_TEAM_MODELS, ModelSet, NO_DEFAULT_MODELS, pattern_matches};

use crate::config::RolePermission;
use crate::limits::{Ledger, Limits, Meter, Subject};
use crate::roles::{GlobalRole, TeamRole};
use crate::store::{
    Budget, CustomerRecord, KeyRecord, OrgRecord, TeamRecord, TenancySnapshot, UserRecord,
};
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::Arc;

/// Deeper than any real organisation chart; also what stops a walk up a damaged tree.
pub const MAX_ORG_DEPTH: usize = 32;

pub struct KeyEntry {
    pub record: KeyRecord,
    pub models: ModelSet,
    pub limits: Limits,
    pub meter: Arc<Meter>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a hash, safe to show; nothing else is needed to tell keys apart.
        f.debug_struct("KeyEntry")
            .field("token", &self.record.token)
            .finish_non_exhaustive()
    }
}

pub struct UserEntry {
    pub record: UserRecord,
    pub models: ModelSet,
    pub limits: Limits,
    pub meter: Arc<Meter>,
}

pub struct MemberEntry {
    pub role: TeamRole,
    pub limits: Limits,
    pub meter: Arc<Meter>,
}

pub struct TeamEntry {
    pub record: TeamRecord,
    pub models: ModelSet,
    pub limits: Limits,
    pub meter: Arc<Meter>,
    pub members: HashMap<String, MemberEntry>,
}

pub struct OrgEntry {
    pub record: OrgRecord,
    pub models: ModelSet,
    pub limits: Limits,
    pub meter: Arc<Meter>,
}

pub struct CustomerEntry {
    pub record: CustomerRecord,
    pub limits: Limits,
    pub meter: Arc<Meter>,
}

/// The stored budget fields as live limits. Durations were validated when written.
pub fn limits_of(b: &Budget) -> Limits {
    Limits {
        max_budget: b.max_budget,
        soft_budget: b.soft_budget,
        budget_duration: b
            .budget_duration
            .as_deref()
            .and_then(crate::types::parse_duration),
        rpm_limit: b.rpm_limit,
        tpm_limit: b.tpm_limit,
        max_parallel_requests: b.max_parallel_requests,
    }
}

pub struct Directory {
    users: DashMap<String, Arc<UserEntry>>,
    teams: DashMap<String, Arc<TeamEntry>>,
    orgs: DashMap<String, Arc<OrgEntry>>,
    customers: DashMap<String, Arc<CustomerEntry>>,
    ledger: Arc<Ledger>,
    /// Access group → the model names in it (from `model_info.access_groups`).
    access_groups: HashMap<String, Vec<String>>,
    /// `general_settings.role_permissions`, compiled.
    role_models: HashMap<GlobalRole, ModelSet>,
    role_routes: HashMap<GlobalRole, Vec<String>>,
}

impl Directory {
    pub fn new(
        ledger: Arc<Ledger>,
        access_groups: HashMap<String, Vec<String>>,
        role_permissions: &[RolePermission],
    ) -> Self {
        let mut dir = Directory {
            users: DashMap::new(),
            teams: DashMap::new(),
            orgs: DashMap::new(),
            customers: DashMap::new(),
            ledger,
            access_groups,
            role_models: HashMap::new(),
            role_routes: HashMap::new(),
        };
        for rp in role_permissions {
            if !rp.models.is_empty() {
                let set = dir.compile_models(&rp.models);
                dir.role_models.insert(rp.role, set);
            }
            if !rp.routes.is_empty() {
                dir.role_routes.insert(rp.role, rp.routes.clone());
            }
        }
        dir
    }

    /// The models `role_permissions` allows a role, if it narrows them.
    pub fn role_models(&self, role: GlobalRole) -> Option<&ModelSet> {
        self.role_models.get(&role)
    }

    /// The routes `role_permissions` allows a role, if it narrows them.
    pub fn role_routes(&self, role: GlobalRole) -> Option<&[String]> {
        self.role_routes.get(&role).map(Vec::as_slice)
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    pub fn load(&self, snapshot: TenancySnapshot) {
        for u in snapshot.users {
            self.upsert_user(u);
        }
        for t in snapshot.teams {
            self.upsert_team(t);
        }
        for o in snapshot.orgs {
            self.upsert_org(o);
        }
        for c in snapshot.customers {
            self.upsert_customer(c);
        }
    }

    pub fn compile_models(&self, list: &[String]) -> ModelSet {
        ModelSet::compile(list, |g| {
            self.access_groups
                .get(g)
                .into_iter()
                .flatten()
                .map(String::as_str)
        })
    }

    pub fn key_entry(&self, record: KeyRecord) -> Arc<KeyEntry> {
        Arc::new(KeyEntry {
            models: self.compile_models(&record.models),
            limits: limits_of(&record.budget),
            meter: self.ledger.meter(&Subject::Key(record.key_id.clone())),
            record,
        })
    }

    pub fn user(&self, id: &str) -> Option<Arc<UserEntry>> {
        self.users.get(id).map(|e| e.value().clone())
    }

    pub fn team(&self, id: &str) -> Option<Arc<TeamEntry>> {
        self.teams.get(id).map(|e| e.value().clone())
    }

    pub fn org(&self, id: &str) -> Option<Arc<OrgEntry>> {
        self.orgs.get(id).map(|e| e.value().clone())
    }

    pub fn customer(&self, id: &str) -> Option<Arc<CustomerEntry>> {
        self.customers.get(id).map(|e| e.value().clone())
    }

    pub fn users(&self) -> Vec<Arc<UserEntry>> {
        self.users.iter().map(|e| e.value().clone()).collect()
    }

    pub fn teams(&self) -> Vec<Arc<TeamEntry>> {
        self.teams.iter().map(|e| e.value().clone()).collect()
    }

    pub fn orgs(&self) -> Vec<Arc<OrgEntry>> {
        self.orgs.iter().map(|e| e.value().clone()).collect()
    }

    pub fn customers(&self) -> Vec<Arc<CustomerEntry>> {
        self.customers.iter().map(|e| e.value().clone()).collect()
    }

    pub fn upsert_user(&self, record: UserRecord) {
        let entry = UserEntry {
            models: self.compile_models(&record.models),
            limits: limits_of(&record.budget),
            meter: self.ledger.meter(&Subject::User(record.user_id.clone())),
            record,
        };
        self.users
            .insert(entry.record.user_id.clone(), Arc::new(entry));
    }

    pub fn remove_user(&self, id: &str) {
        self.users.remove(id);
        self.ledger.forget(&Subject::User(id.to_string()));
    }

    pub fn upsert_team(&self, record: TeamRecord) {
        let members = record
            .members
            .iter()
            .map(|m| {
                let entry = MemberEntry {
                    role: m.role,
                    limits: limits_of(&m.budget),
                    meter: self.ledger.meter(&Subject::TeamMember {
                        team: record.team_id.clone(),
                        user: m.user_id.clone(),
                    }),
                };
                (m.user_id.clone(), entry)
            })
            .collect();
        let entry = TeamEntry {
            models: self.compile_models(&record.models),
            limits: limits_of(&record.budget),
            meter: self.ledger.meter(&Subject::Team(record.team_id.clone())),
            members,
            record,
        };
        self.teams
            .insert(entry.record.team_id.clone(), Arc::new(entry));
    }

    pub fn remove_team(&self, id: &str) {
        if let Some((_, team)) = self.teams.remove(id) {
            for m in &team.record.members {
                self.ledger.forget(&Subject::TeamMember {
                    team: id.to_string(),
                    user: m.user_id.clone(),
                });
            }
        }
        self.ledger.forget(&Subject::Team(id.to_string()));
    }

    pub fn upsert_org(&self, record: OrgRecord) {
        let entry = OrgEntry {
            models: self.compile_models(&record.models),
            limits: limits_of(&record.budget),
            meter: self
                .ledger
                .meter(&Subject::Org(record.organization_id.clone())),
            record,
        };
        self.orgs
            .insert(entry.record.organization_id.clone(), Arc::new(entry));
    }

    pub fn remove_org(&self, id: &str) {
        self.orgs.remove(id);
        self.ledger.forget(&Subject::Org(id.to_string()));
    }

    pub fn upsert_customer(&self, record: CustomerRecord) {
        let entry = CustomerEntry {
            limits: limits_of(&record.budget),
            meter: self.ledger.meter(&Subject::EndUser(record.user_id.clone())),
            record,
        };
        self.customers
            .insert(entry.record.user_id.clone(), Arc::new(entry));
    }

    pub fn remove_customer(&self, id: &str) {
        self.customers.remove(id);
        self.ledger.forget(&Subject::EndUser(id.to_string()));
    }

    /// The organisation and its ancestors, nearest first.
    pub fn org_chain(&self, org_id: &str) -> Vec<Arc<OrgEntry>> {
        // Per request on the hot path: each parent id is read from the entry held, not copied.
        let mut out: Vec<Arc<OrgEntry>> = Vec::with_capacity(4);
        let mut next = self.org(org_id);
        while let Some(org) = next {
            if out.len() >= MAX_ORG_DEPTH {
                break;
            }
            next = org.record.parent_id.as_deref().and_then(|p| self.org(p));
            out.push(org);
        }
        out
    }

    /// Whether `org_id` is `ancestor` or lies below it.
    pub fn org_within(&self, org_id: &str, ancestor: &str) -> bool {
        self.org_chain(org_id)
            .iter()
            .any(|o| o.record.organization_id == ancestor)
    }
}
