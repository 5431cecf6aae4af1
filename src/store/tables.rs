//! Every redb table, in one place. Names carry a version: a new record layout is a new table
//! plus a numbered migration, never an in-place reinterpretation.

use redb::TableDefinition;

/// `format` → b"portcullis", `schema_version` → u32 little-endian.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// sha256 hex of the key → encoded `KeyRecord`.
pub const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys_v1");
/// sequence number → encoded `audit::Entry`.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_v1");
/// sequence number → hex sha256 of that entry (the chain head is the last row).
pub const AUDIT_HASHES: TableDefinition<u64, &str> = TableDefinition::new("audit_hashes_v1");
/// key alias → sha256 hex of the key: aliases are unique and deletable by name.
pub const KEY_ALIASES: TableDefinition<&str, &str> = TableDefinition::new("key_aliases_v1");
