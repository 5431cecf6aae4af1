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
}

impl Actor {
    /// LiteLLM's `changed_by`: the user id, or who else acted.
    pub fn changed_by(&self) -> String {
        match self {
            Actor::User { user_id, .. } => user_id.clone(),
            other => other.label(),
        }
    }

    /// LiteLLM's `changed_by_api_key`: the hash of the key used, if one was.
    pub fn api_key(&self) -> Option<&str> {
        match self {
            Actor::Key(hash) => Some(hash),
            Actor::User { key, .. } => key.as_deref(),
            Actor::MasterKey | Actor::System => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Actor::MasterKey => "master_key".to_string(),
            Actor::Key(hash) => format!("key:{hash}"),
            Actor::System => "system".to_string(),
            Actor::User { user_id, .. } => format!("user:{user_id}"),
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// LiteLLM's verbs: `created`, `updated`, `deleted`, `blocked`, `unblocked`, `rotated`.
    pub action: String,
    /// The object type, as LiteLLM names its tables (`LiteLLM_VerificationToken` is `key` here).
    pub table_name: String,
    pub object_id: String,
    /// JSON text with secrets masked; empty when there was nothing before.
    pub before_value: String,
    pub updated_values: String,
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
}
