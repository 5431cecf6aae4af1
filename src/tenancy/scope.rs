//! Who a management caller is, and how far its reach goes over each object. One ordered
//! [`Reach`] per object answers every route: `Hidden` objects answer 404 (their existence is
//! not disclosed), a reach below what a route needs answers 403.

use super::{Directory, KeyEntry, OrgEntry, TeamEntry, UserEntry};
use crate::roles::{GlobalRole, KeyType, OrgRole, TeamRole};
use crate::store::{KeyRecord, TeamRecord, UserRecord};
use std::sync::Arc;

/// How far a caller reaches over one object, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Not visible: 404.
    Hidden,
    /// May read it.
    Read,
    /// Its owner: may change what an owner may (own key, own password).
    Owner,
    /// Manages its members and keys (team admin; org admin on its own organisation).
    Members,
    /// Full control, budgets and models included (proxy admin; org admin below its org).
    Manage,
}

/// The caller of a management route.
#[derive(Clone)]
pub enum Identity {
    /// The master key.
    Master,
    /// A user, through one of its keys or a JWT. `role` is the role a JWT gives, which
    /// overrides the stored user's own (`None` for keys).
    User {
        user: Arc<UserEntry>,
        key: Option<Arc<KeyEntry>>,
        role: Option<GlobalRole>,
    },
    /// A key that belongs to no user (a team's service account, or a bare key), or a JWT that
    /// names no user; such a JWT may carry a proxy-wide role (`role`, `None` for keys).
    Service {
        key: Arc<KeyEntry>,
        role: Option<GlobalRole>,
    },
}

impl Identity {
    pub fn role(&self) -> Option<GlobalRole> {
        match self {
            Identity::Master => Some(GlobalRole::ProxyAdmin),
            Identity::User { user, role, .. } => Some(role.unwrap_or(user.record.user_role)),
            Identity::Service { role, .. } => *role,
        }
    }

    pub fn key(&self) -> Option<&Arc<KeyEntry>> {
        match self {
            Identity::Master => None,
            Identity::User { key, .. } => key.as_ref(),
            Identity::Service { key, .. } => Some(key),
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        match self {
            Identity::User { user, .. } => Some(&user.record.user_id),
            _ => None,
        }
    }

    pub fn is_proxy_admin(&self) -> bool {
        self.role() == Some(GlobalRole::ProxyAdmin)
    }

    /// Proxy admins and their viewers see every object.
    pub fn sees_everything(&self) -> bool {
        matches!(
            self.role(),
            Some(GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer)
        )
    }

    /// May change nothing: a viewer role, or a `read_only` key.
    pub fn read_only(&self) -> bool {
        self.role().is_some_and(GlobalRole::read_only)
            || self
                .key()
                .is_some_and(|k| k.record.key_type == KeyType::ReadOnly)
    }

    /// A short label for audit entries and logs.
    pub fn label(&self) -> String {
        match self {
            Identity::Master => "master_key".into(),
            Identity::User { user, .. } => format!("user:{}", user.record.user_id),
            Identity::Service { key, .. } => format!("key:{}", key.record.token),
        }
    }

    fn org_role(&self, org_id: &str) -> Option<OrgRole> {
        match self {
            Identity::User { user, .. } => user
                .record
                .organizations
                .iter()
                .find(|m| m.organization_id == org_id)
                .map(|m| m.role),
            _ => None,
        }
    }

    /// The organisations this caller administers.
    pub fn admin_orgs(&self) -> Vec<&str> {
        match self {
            Identity::User { user, .. } => user
                .record
                .organizations
                .iter()
                .filter(|m| m.role == OrgRole::OrgAdmin)
                .map(|m| m.organization_id.as_str())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `org_id` lies in the subtree of an organisation this caller administers.
    pub fn governs_org(&self, dir: &Directory, org_id: &str) -> bool {
        self.admin_orgs()
            .iter()
            .any(|admin| dir.org_within(org_id, admin))
    }

    fn team_role(&self, team: &TeamRecord) -> Option<TeamRole> {
        let me = self.user_id()?;
        team.members
            .iter()
            .find(|m| m.user_id == me)
            .map(|m| m.role)
    }

    /// The reach that applies to everything for proxy admins and viewers.
    fn global(&self) -> Option<Reach> {
        match self.role() {
            Some(GlobalRole::ProxyAdmin) => Some(Reach::Manage),
            Some(GlobalRole::ProxyAdminViewer) => Some(Reach::Read),
            _ => None,
        }
    }

    pub fn org_reach(&self, dir: &Directory, org: &OrgEntry) -> Reach {
        if let Some(r) = self.global() {
            return r;
        }
        let id = org.record.organization_id.as_str();
        let own_admin = self.org_role(id) == Some(OrgRole::OrgAdmin);
        // Below an administered organisation: full control. The administered one itself only
        // for its members — its own budget and models are set from above.
        let parent_governed = org
            .record
            .parent_id
            .as_deref()
            .is_some_and(|p| self.governs_org(dir, p));
        if parent_governed {
            Reach::Manage
        } else if own_admin {
            Reach::Members
        } else if self.org_role(id).is_some() {
            Reach::Read
        } else {
            Reach::Hidden
        }
    }

    pub fn team_reach(&self, dir: &Directory, team: &TeamRecord) -> Reach {
        if let Some(r) = self.global() {
            return r;
        }
        if team
            .organization_id
            .as_deref()
            .is_some_and(|o| self.governs_org(dir, o))
        {
            return Reach::Manage;
        }
        match self.team_role(team) {
            Some(TeamRole::Admin) => Reach::Members,
            Some(TeamRole::User) => Reach::Read,
            None => Reach::Hidden,
        }
    }

    pub fn user_reach(&self, dir: &Directory, target: &UserRecord) -> Reach {
        if let Some(r) = self.global() {
            return r;
        }
        if self.user_id() == Some(target.user_id.as_str()) {
            return Reach::Owner;
        }
        // Proxy admins and their viewers stand above every organisation: nobody below a proxy
        // admin may change them (or mint keys that act as them), wherever they are members.
        let above_orgs = matches!(
            target.user_role,
            GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer
        );
        // Every organisation the user is in, directly or through a team; a team outside any
        // organisation counts as an organisation nobody here governs.
        let mut orgs: Vec<Option<String>> = target
            .organizations
            .iter()
            .map(|m| Some(m.organization_id.clone()))
            .collect();
        let mut team_admin = false;
        for t in &target.teams {
            if let Some(team) = dir.team(t) {
                orgs.push(team.record.organization_id.clone());
                team_admin |= self.team_role(&team.record) == Some(TeamRole::Admin);
            }
        }
        let governed = orgs
            .iter()
            .filter(|o| o.as_deref().is_some_and(|o| self.governs_org(dir, o)))
            .count();
        // An org admin changes a user only when all of that user is inside its subtree: a
        // user shared with another organisation is that organisation's business too.
        if governed > 0 && governed == orgs.len() && !above_orgs {
            Reach::Manage
        } else if governed > 0 || team_admin {
            Reach::Read
        } else {
            Reach::Hidden
        }
    }

    pub fn key_reach(&self, dir: &Directory, key: &KeyRecord) -> Reach {
        if let Some(r) = self.global() {
            return r;
        }
        let team = key.team_id.as_deref().and_then(|t| dir.team(t));
        let mut reach = Reach::Hidden;
        if let Some(team) = &team {
            reach = reach.max(match self.team_reach(dir, &team.record) {
                Reach::Manage => Reach::Manage,
                Reach::Members => Reach::Members,
                _ => Reach::Hidden,
            });
        }
        if let Some(org) = &key.organization_id
            && self.governs_org(dir, org)
        {
            reach = Reach::Manage;
        }
        if let Some(owner) = key.user_id.as_deref() {
            if self.user_id() == Some(owner) {
                reach = reach.max(Reach::Owner);
            } else if let Some(u) = dir.user(owner)
                && self.user_reach(dir, &u.record) == Reach::Manage
            {
                reach = Reach::Manage;
            }
        }
        if let Some(k) = self.key()
            && k.record.key_id == key.key_id
        {
            reach = reach.max(Reach::Read);
        }
        // A proxy admin's (or viewer's) keys are never managed from below.
        if let Some(owner) = key.user_id.as_deref()
            && self.user_id() != Some(owner)
            && dir.user(owner).is_some_and(|u| {
                matches!(
                    u.record.user_role,
                    GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer
                )
            })
        {
            reach = reach.min(Reach::Read);
        }
        reach
    }

    /// Whether a team is one this caller belongs to (any team role).
    pub fn in_team(&self, team: &TeamEntry) -> bool {
        self.team_role(&team.record).is_some()
    }
}
