//! The audit vocabulary: who changed what. Pure data; the store writes it in the same
//! transaction as the change it describes, and nothing else may create entries.

use serde::{Deserialize, Serialize};

/// Who made a change. Secrets never appear here: keys are named by their hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// The master key (proxy admin).
    MasterKey,
    /// A virtual key, by its sha256 hex.
    Key(String),
    /// The server itself (start-up, expiry sweeps).
    System,
    /// A user, through one of its keys (by hash) or a session; with the role it acted in.
    User {
        user_id: String,
        key: Option<String>,
        role: String,
    },
    /// A SCIM client, by the id of its token (`scim:<id>`).
    Scim(String),
    /// A bearer JWT, by `jwt:<iss>|<sub>` (never the token; shown as `changed_by_api_key`),
    /// with the user it named, if any, and the role it acted in. Appended last: earlier entries
    /// decode unchanged.
    Jwt {
        subject: String,
        user_id: Option<String>,
        role: String,
    },
    /// A browser login through the OIDC provider, by `oidc:<iss>|<sub>` (never a token), with
    /// the user it signs in as once known. Appended last: earlier entries decode unchanged.
    Sso {
        subject: String,
        user_id: Option<String>,
    },
}

impl Actor {
    /// LiteLLM's `changed_by`: the user id, or who else acted.
    pub fn changed_by(&self) -> String {
        match self {
            Actor::User { user_id, .. }
            | Actor::Jwt {
                user_id: Some(user_id),
                ..
            }
            | Actor::Sso {
                user_id: Some(user_id),
                ..
            } => user_id.clone(),
            other => other.label(),
        }
    }

    /// LiteLLM's `changed_by_api_key`: the hash of the key used, if one was.
    pub fn api_key(&self) -> Option<&str> {
        match self {
            Actor::Key(hash) => Some(hash),
            Actor::User { key, .. } => key.as_deref(),
            Actor::Jwt { subject, .. } => Some(subject),
            Actor::MasterKey | Actor::System | Actor::Scim(_) | Actor::Sso { .. } => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Actor::MasterKey => "master_key".to_string(),
            Actor::Key(hash) => format!("key:{hash}"),
            Actor::System => "system".to_string(),
            Actor::User { user_id, .. } => format!("user:{user_id}"),
            Actor::Scim(id) => format!("scim:{id}"),
            Actor::Jwt { subject, .. } | Actor::Sso { subject, .. } => subject.clone(),
        }
    }

    /// The role the actor acted in, where it had one.
    pub fn role(&self) -> Option<&str> {
        match self {
            Actor::User { role, .. } => Some(role),
            Actor::Jwt { role, .. } if !role.is_empty() => Some(role),
            Actor::MasterKey => Some("proxy_admin"),
            Actor::Key(_)
            | Actor::System
            | Actor::Scim(_)
            | Actor::Jwt { .. }
            | Actor::Sso { .. } => None,
        }
    }
}

/// Where a request came from, recorded with every change it causes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub request_id: String,
    pub source_ip: String,
    pub user_agent: String,
}

/// One change, as the caller describes it. The store adds the sequence number, time and hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// LiteLLM's verbs: `created`, `updated`, `deleted`, `blocked`, `unblocked`, `rotated`.
    pub action: String,
    /// The object type, as LiteLLM names its tables (`LiteLLM_VerificationToken` is `key` here).
    pub table_name: String,
    pub object_id: String,
    /// JSON text with secrets masked; empty when there was nothing before.
    pub before_value: String,
    pub updated_values: String,
    /// The organisations and teams the object belongs to, before or after the change. The store
    /// turns them into the entry's scope; they are not stored themselves (so this record encodes
    /// exactly as it did before scopes existed).
    #[serde(skip)]
    pub within: Within,
}

/// Where an object sits in the tenancy tree, as its change names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Within {
    pub orgs: Vec<String>,
    pub teams: Vec<String>,
}

impl Within {
    pub fn add_org(&mut self, org: Option<&str>) {
        if let Some(o) = org.filter(|o| !o.is_empty())
            && !self.orgs.iter().any(|x| x == o)
        {
            self.orgs.push(o.to_string());
        }
    }

    pub fn add_team(&mut self, team: Option<&str>) {
        if let Some(t) = team.filter(|t| !t.is_empty())
            && !self.teams.iter().any(|x| x == t)
        {
            self.teams.push(t.to_string());
        }
    }
}

/// A committed audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub timestamp_ms: i64,
    pub actor: Actor,
    pub origin: Origin,
    pub change: Change,
    /// Hex sha256 of the previous entry (all zeros for the first): the chain that makes
    /// rewriting history detectable.
    pub prev_hash: String,
    /// Every organisation the changed object sat in, with all their ancestors (root first):
    /// an organisation's admins read the entries whose scope names it. Empty for proxy-level
    /// objects and for entries written before scopes existed (schema < 3).
    pub scope: Vec<String>,
}

/// An entry as schema 1 and 2 stored it (no scope). Old entries are read, never re-encoded:
/// each one's hash is of its stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryV1 {
    pub seq: u64,
    pub timestamp_ms: i64,
    pub actor: Actor,
    pub origin: Origin,
    pub change: Change,
    pub prev_hash: String,
}

impl From<EntryV1> for Entry {
    fn from(e: EntryV1) -> Entry {
        Entry {
            seq: e.seq,
            timestamp_ms: e.timestamp_ms,
            actor: e.actor,
            origin: e.origin,
            change: e.change,
            prev_hash: e.prev_hash,
            scope: Vec::new(),
        }
    }
}
