//! Numbered migrations: each takes a file from schema N-1 to N inside the transaction that
//! opens it, so an interrupted upgrade leaves the old file untouched.

use super::keys::{KeyRecord, KeyRecordV1};
use super::{SCHEMA_VERSION, StoreError, codec, tables};
use redb::{ReadableTable, WriteTransaction};

/// Brings a file at schema `found` up to [`SCHEMA_VERSION`].
pub fn run(txn: &WriteTransaction, found: u32) -> Result<(), StoreError> {
    if found < 2 {
        to_2(txn)?;
    }
    // 3: audit entries gain a scope. Old entries stay in `audit_v1` byte for byte (their
    // hashes are of those bytes); new ones continue the chain in `audit_v2`, which
    // `create_all` makes. Nothing to convert.
    if found < SCHEMA_VERSION {
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "data file migrated to the current schema"
        );
        txn.open_table(tables::META)?
            .insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
    }
    Ok(())
}

/// 2: keys gain a stable id, an organisation, allowed routes and a key type.
fn to_2(txn: &WriteTransaction) -> Result<(), StoreError> {
    let old: Vec<(String, Vec<u8>)> = {
        let t = txn.open_table(tables::KEYS_V1)?;
        let mut rows = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            rows.push((k.value().to_string(), v.value().to_vec()));
        }
        rows
    };
    {
        let mut new = txn.open_table(tables::KEYS_V2)?;
        for (token, bytes) in &old {
            let record: KeyRecord = codec::decode::<KeyRecordV1>(bytes)?.into();
            new.insert(token.as_str(), codec::encode(&record)?.as_slice())?;
        }
    }
    txn.delete_table(tables::KEYS_V1)?;
    Ok(())
}
