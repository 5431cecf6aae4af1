//! Virtual key records. A key is stored under the sha256 hex of its secret (LiteLLM's `token`),
//! so the secret itself never touches the disk and imported LiteLLM hashes keep working.

use super::budget::Budget;
use super::{Store, StoreError, Tx, codec, tables};
use crate::roles::KeyType;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// sha256 hex of the secret key.
    pub token: String,
    /// Stays the same across regenerations: what spend and limits are counted against.
    pub key_id: String,
    /// The masked display form, `sk-...abcd`.
    pub key_name: String,
    pub key_alias: Option<String>,
    pub models: Vec<String>,
    pub expires_ms: Option<i64>,
    /// JSON object text (bincode cannot store a free-form JSON value).
    pub metadata_json: String,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub budget: Budget,
    /// Routes (paths or route classes) the key is limited to; empty means its role decides.
    pub allowed_routes: Vec<String>,
    pub key_type: KeyType,
    pub blocked: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
    pub updated_by: String,
    /// Hashes of secrets this key replaced that still authenticate until the given time
    /// (the grace period of a regeneration).
    pub grace_tokens: Vec<(String, i64)>,
}

/// The schema-1 layout of a key, read only by migration 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyRecordV1 {
    pub token: String,
    pub key_name: String,
    pub key_alias: Option<String>,
    pub models: Vec<String>,
    pub expires_ms: Option<i64>,
    pub metadata_json: String,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
    pub blocked: bool,
    pub spend: f64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
    pub updated_by: String,
    pub grace_tokens: Vec<(String, i64)>,
}

impl From<KeyRecordV1> for KeyRecord {
    fn from(v: KeyRecordV1) -> Self {
        KeyRecord {
            key_id: v.token.clone(),
            token: v.token,
            key_name: v.key_name,
            key_alias: v.key_alias,
            models: v.models,
            expires_ms: v.expires_ms,
            metadata_json: v.metadata_json,
            user_id: v.user_id,
            team_id: v.team_id,
            organization_id: None,
            budget: Budget {
                max_budget: v.max_budget,
                soft_budget: v.soft_budget,
                budget_duration: v.budget_duration,
                tpm_limit: v.tpm_limit,
                rpm_limit: v.rpm_limit,
                max_parallel_requests: v.max_parallel_requests,
            },
            allowed_routes: Vec::new(),
            key_type: KeyType::Default,
            blocked: v.blocked,
            created_at_ms: v.created_at_ms,
            updated_at_ms: v.updated_at_ms,
            created_by: v.created_by,
            updated_by: v.updated_by,
            grace_tokens: v.grace_tokens,
        }
    }
}

impl Tx {
    pub fn get_key(&self, token: &str) -> Result<Option<KeyRecord>, StoreError> {
        let table = self.txn.open_table(tables::KEYS_V2)?;
        let found = table.get(token)?;
        found.map(|v| codec::decode(v.value())).transpose()
    }

    /// The key holding `alias`, if any.
    pub fn key_by_alias(&self, alias: &str) -> Result<Option<KeyRecord>, StoreError> {
        let token = {
            let aliases = self.txn.open_table(tables::KEY_ALIASES)?;
            let found = aliases.get(alias)?;
            found.map(|t| t.value().to_string())
        };
        match token {
            Some(t) => self.get_key(&t),
            None => Ok(None),
        }
    }

    /// Inserts or replaces a key, keeping the alias index in step. The caller checks that a
    /// new alias is free.
    pub fn put_key(&mut self, record: &KeyRecord) -> Result<(), StoreError> {
        let old_alias = self.get_key(&record.token)?.and_then(|r| r.key_alias);
        let bytes = codec::encode(record)?;
        self.txn
            .open_table(tables::KEYS_V2)?
            .insert(record.token.as_str(), bytes.as_slice())?;
        let mut aliases = self.txn.open_table(tables::KEY_ALIASES)?;
        if let Some(old) = old_alias.filter(|a| Some(a) != record.key_alias.as_ref()) {
            aliases.remove(old.as_str())?;
        }
        if let Some(alias) = &record.key_alias {
            aliases.insert(alias.as_str(), record.token.as_str())?;
        }
        self.dirty = true;
        Ok(())
    }

    pub fn delete_key(&mut self, token: &str) -> Result<Option<KeyRecord>, StoreError> {
        let removed = self
            .txn
            .open_table(tables::KEYS_V2)?
            .remove(token)?
            .map(|v| v.value().to_vec());
        let Some(bytes) = removed else {
            return Ok(None);
        };
        let record: KeyRecord = codec::decode(&bytes)?;
        if let Some(alias) = &record.key_alias {
            self.txn
                .open_table(tables::KEY_ALIASES)?
                .remove(alias.as_str())?;
        }
        self.dirty = true;
        Ok(Some(record))
    }
}

impl Tx {
    /// Every key, as this transaction sees them.
    pub fn all_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.all_records(tables::KEYS_V2)
    }
}

impl Store {
    pub fn read_key(&self, token: &str) -> Result<Option<KeyRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(tables::KEYS_V2)?;
        let found = table.get(token)?;
        found.map(|v| codec::decode(v.value())).transpose()
    }

    /// Every key: loaded once at start-up into the in-memory cache that serves authentication.
    pub fn all_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(tables::KEYS_V2)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(codec::decode(v.value())?);
        }
        Ok(out)
    }
}
