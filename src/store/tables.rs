//! Every redb table, in one place. Names carry a version: a new record layout is a new table
//! plus a numbered migration, never an in-place reinterpretation.

use redb::TableDefinition;

/// `format` → b"portcullis", `schema_version` → u32 little-endian.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Schema 1's keys (sha256 hex → `KeyRecordV1`); emptied and dropped by migration 2.
pub const KEYS_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("keys_v1");
/// Schemas 1–2: sequence number → encoded `audit::EntryV1`. Never written again (each entry's
/// hash is of its stored bytes, so old entries stay exactly as they were); later entries
/// continue the same chain in `audit_v2`, and retention prunes both.
pub const AUDIT_V1: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_v1");
/// sequence number → encoded `audit::Entry` (with its scope), from schema 3 on.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_v2");
/// `pruned` → encoded `audit_rows::Checkpoint`: where the chain continues after retention
/// removed its oldest entries.
pub const AUDIT_CHECKPOINT: TableDefinition<&str, &[u8]> =
    TableDefinition::new("audit_checkpoint_v1");
/// sequence number → hex sha256 of that entry (the chain head is the last row).
pub const AUDIT_HASHES: TableDefinition<u64, &str> = TableDefinition::new("audit_hashes_v1");
/// key alias → sha256 hex of the key: aliases are unique and deletable by name.
pub const KEY_ALIASES: TableDefinition<&str, &str> = TableDefinition::new("key_aliases_v1");
/// sha256 hex of the key → encoded `KeyRecord` (schema 2: stable key id, organisation,
/// allowed routes, key type). Replaces `keys_v1` through migration 2.
pub const KEYS_V2: TableDefinition<&str, &[u8]> = TableDefinition::new("keys_v2");
/// Schemas 1–3: user id → encoded `UserRecordV1`; converted into `users_v2` by migration 4.
pub const USERS_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("users_v1");
/// Schema 4: user id → encoded `UserRecordV2` (with its SCIM state); emptied and dropped by
/// migration 5.
pub const USERS_V2: TableDefinition<&str, &[u8]> = TableDefinition::new("users_v2");
/// user id → encoded `UserRecord` (schema 5: its SCIM state records the roles SCIM granted).
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users_v3");
/// lower-cased SCIM `userName` → user id: a userName names at most one user.
pub const SCIM_USER_NAMES: TableDefinition<&str, &str> = TableDefinition::new("scim_user_names_v1");
/// `<lower-cased email>\n<user id>` → user id: every email of every SCIM user (several users
/// may list the same address), so `emails.value eq` is a range read.
pub const SCIM_EMAILS: TableDefinition<&str, &str> = TableDefinition::new("scim_emails_v1");
/// `(externalId, user id)` → nothing: every user's `externalId` exactly as given (RFC 7643:
/// case-exact; several users may carry the same one), so `externalId eq` is a range read
/// (schema 6; built from the users by migration 6).
pub const USER_EXTERNAL_IDS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("user_external_ids_v1");
/// lower-cased email → user id: an email names at most one user.
pub const USER_EMAILS: TableDefinition<&str, &str> = TableDefinition::new("user_emails_v1");
/// Schemas 1–3: team id → encoded `TeamRecordV1`; emptied and dropped by migration 4.
pub const TEAMS_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("teams_v1");
/// team id → encoded `TeamRecord` (its members included; schema 4: with its SCIM state).
pub const TEAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("teams_v2");
/// organisation id → encoded `OrgRecord` (its members included).
pub const ORGS: TableDefinition<&str, &[u8]> = TableDefinition::new("organizations_v1");
/// end-user (customer) id → encoded `CustomerRecord`.
pub const CUSTOMERS: TableDefinition<&str, &[u8]> = TableDefinition::new("customers_v1");
/// meter subject (`key:<id>`, `user:<id>`, ...) → encoded spend counter of the current period.
pub const SPEND_COUNTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("spend_counters_v1");
/// (start time ms, sequence) → encoded spend log row, so a time range is a range scan.
pub const SPEND_LOGS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("spend_logs_v1");

/// sha256 hex of a browser session's cookie → encoded `SessionRecord` (OIDC login). The cookie
/// itself is never stored.
pub const SSO_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sso_sessions_v1");
/// `<issuer>\n<subject>` → encoded `SsoIdentity`: which user an identity-provider account is,
/// and what its group mappings granted.
pub const SSO_IDENTITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("sso_identities_v1");

/// Creates every current table, so readers never meet a missing one.
pub fn create_all(txn: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(KEYS_V2)?;
    txn.open_table(KEY_ALIASES)?;
    txn.open_table(AUDIT)?;
    txn.open_table(AUDIT_HASHES)?;
    txn.open_table(AUDIT_CHECKPOINT)?;
    txn.open_table(USERS)?;
    txn.open_table(USER_EMAILS)?;
    txn.open_table(SCIM_USER_NAMES)?;
    txn.open_table(SCIM_EMAILS)?;
    txn.open_table(USER_EXTERNAL_IDS)?;
    txn.open_table(TEAMS)?;
    txn.open_table(ORGS)?;
    txn.open_table(CUSTOMERS)?;
    txn.open_table(SPEND_COUNTERS)?;
    txn.open_table(SPEND_LOGS)?;
    txn.open_table(SSO_SESSIONS)?;
    txn.open_table(SSO_IDENTITIES)?;
    Ok(())
}
