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
    if found < 4 {
        to_4(txn)?;
    }
    if found < 5 {
        to_5(txn)?;
    }
    if found < 6 {
        to_6(txn)?;
    }
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

/// Moves every record of `old` into `new`, converted, and drops `old`.
fn convert<Old, New>(
    txn: &WriteTransaction,
    old: redb::TableDefinition<&str, &[u8]>,
    new: redb::TableDefinition<&str, &[u8]>,
) -> Result<(), StoreError>
where
    Old: serde::de::DeserializeOwned,
    New: serde::Serialize + From<Old>,
{
    let rows: Vec<(String, Vec<u8>)> = match txn.open_table(old) {
        Ok(t) => {
            let mut rows = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                rows.push((k.value().to_string(), v.value().to_vec()));
            }
            rows
        }
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    {
        let mut to = txn.open_table(new)?;
        for (id, bytes) in &rows {
            let record: New = codec::decode::<Old>(bytes)?.into();
            to.insert(id.as_str(), codec::encode(&record)?.as_slice())?;
        }
    }
    txn.delete_table(old)?;
    Ok(())
}

/// 4: users and teams gain their SCIM state (none yet). Users land in schema 4's layout;
/// migration 5 takes them on from there, so each step converts exactly one layout.
fn to_4(txn: &WriteTransaction) -> Result<(), StoreError> {
    use super::legacy::{TeamRecordV1, UserRecordV1, UserRecordV2};
    use super::tenancy::TeamRecord;
    convert::<UserRecordV1, UserRecordV2>(txn, tables::USERS_V1, tables::USERS_V2)?;
    convert::<TeamRecordV1, TeamRecord>(txn, tables::TEAMS_V1, tables::TEAMS)
}

/// 5: a user's SCIM state records the roles SCIM granted it from its groups (none yet).
fn to_5(txn: &WriteTransaction) -> Result<(), StoreError> {
    use super::legacy::UserRecordV2;
    use super::tenancy::UserRecord;
    convert::<UserRecordV2, UserRecord>(txn, tables::USERS_V2, tables::USERS)
}

/// 6: `externalId eq` is answered from an index (`user_external_ids_v1`), built here from the
/// users as they stand (migration 5 has brought them into `users_v3`). The index of every SCIM
/// email (`scim_emails_v1`) is rebuilt with it: schema 4 files written before that index
/// existed lack its rows.
fn to_6(txn: &WriteTransaction) -> Result<(), StoreError> {
    use super::tenancy::{UserRecord, email_key};
    // Built from scratch: what tables of those names held before is not trusted.
    txn.delete_table(tables::USER_EXTERNAL_IDS)?;
    txn.delete_table(tables::SCIM_EMAILS)?;
    let users = txn.open_table(tables::USERS)?;
    let mut external_ids = txn.open_table(tables::USER_EXTERNAL_IDS)?;
    let mut emails = txn.open_table(tables::SCIM_EMAILS)?;
    for row in users.iter()? {
        let (_, v) = row?;
        let user: UserRecord = codec::decode(v.value())?;
        if let Some(x) = &user.external_id {
            external_ids.insert((x.as_str(), user.user_id.as_str()), ())?;
        }
        for e in user.scim.iter().flat_map(|s| s.emails()) {
            let key = email_key(&e, &user.user_id);
            emails.insert(key.as_str(), user.user_id.as_str())?;
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::legacy::{ScimUserV1, TeamRecordV1, UserRecordV1, UserRecordV2};
    use super::super::{Budget, OrgMembership, Store, codec, tables};
    use crate::roles::{GlobalRole, OrgRole};

    #[test]
    fn schema_3_users_and_teams_gain_an_empty_scim_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(tables::META).unwrap();
                meta.insert("format", b"portcullis".as_slice()).unwrap();
                meta.insert("schema_version", 3u32.to_le_bytes().as_slice())
                    .unwrap();
                let user = UserRecordV1 {
                    user_id: "u1".into(),
                    user_email: Some("u1@example.com".into()),
                    user_alias: None,
                    user_role: GlobalRole::InternalUser,
                    password_hash: None,
                    models: vec!["m".into()],
                    budget: Budget::default(),
                    teams: vec!["t1".into()],
                    organizations: Vec::new(),
                    metadata_json: "{}".into(),
                    blocked: true,
                    sso_user_id: None,
                    external_id: Some("x".into()),
                    created_at_ms: 1,
                    updated_at_ms: 2,
                    created_by: "a".into(),
                    updated_by: "b".into(),
                };
                txn.open_table(tables::USERS_V1)
                    .unwrap()
                    .insert("u1", codec::encode(&user).unwrap().as_slice())
                    .unwrap();
                let team = TeamRecordV1 {
                    team_id: "t1".into(),
                    team_alias: Some("T".into()),
                    organization_id: None,
                    models: Vec::new(),
                    budget: Budget::default(),
                    members: Vec::new(),
                    blocked: false,
                    metadata_json: "{}".into(),
                    external_id: None,
                    created_at_ms: 1,
                    updated_at_ms: 1,
                    created_by: String::new(),
                    updated_by: String::new(),
                };
                txn.open_table(tables::TEAMS_V1)
                    .unwrap()
                    .insert("t1", codec::encode(&team).unwrap().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let snap = store.tenancy_snapshot().unwrap();
        assert_eq!(snap.users.len(), 1);
        let u = &snap.users[0];
        assert_eq!(u.user_email.as_deref(), Some("u1@example.com"));
        assert!(u.blocked && u.scim.is_none() && u.disabled());
        assert_eq!(snap.teams.len(), 1);
        assert_eq!(snap.teams[0].team_alias.as_deref(), Some("T"));
        assert!(snap.teams[0].scim.is_none());
        // Taken through schema 4's layout to the current one, leaving no old table behind.
        drop(store);
        let db = redb::Database::open(&path).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        assert!(txn.open_table(tables::USERS_V1).is_err());
        assert!(txn.open_table(tables::USERS_V2).is_err());
    }

    /// A user as schema 4 wrote it (`users_v2`).
    fn schema_4_user(id: &str, scim: Option<ScimUserV1>) -> UserRecordV2 {
        UserRecordV2 {
            user_id: id.into(),
            user_email: Some(format!("{id}@example.com")),
            user_alias: Some("Alias".into()),
            user_role: GlobalRole::ProxyAdminViewer,
            password_hash: None,
            models: vec!["m".into()],
            budget: Budget::default(),
            teams: Vec::new(),
            organizations: vec![OrgMembership {
                organization_id: "o".into(),
                role: OrgRole::OrgAdmin,
            }],
            metadata_json: r#"{"k":1}"#.into(),
            blocked: false,
            sso_user_id: None,
            external_id: Some("ext".into()),
            created_at_ms: 1,
            updated_at_ms: 2,
            created_by: "scim:tok".into(),
            updated_by: "scim:tok".into(),
            scim,
        }
    }

    #[test]
    fn schema_4_users_keep_their_scim_state_and_gain_no_grants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let scim = ScimUserV1 {
            user_name: "Ann@Example.com".into(),
            active: false,
            attributes_json: r#"{"title":"Lead"}"#.into(),
            version: 7,
            provisioned_by: "scim:tok".into(),
        };
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(tables::META).unwrap();
                meta.insert("format", b"portcullis".as_slice()).unwrap();
                meta.insert("schema_version", 4u32.to_le_bytes().as_slice())
                    .unwrap();
                let mut users = txn.open_table(tables::USERS_V2).unwrap();
                for u in [
                    schema_4_user("ann", Some(scim.clone())),
                    schema_4_user("bob", None),
                ] {
                    users
                        .insert(u.user_id.as_str(), codec::encode(&u).unwrap().as_slice())
                        .unwrap();
                }
                let mut emails = txn.open_table(tables::USER_EMAILS).unwrap();
                emails.insert("ann@example.com", "ann").unwrap();
                emails.insert("bob@example.com", "bob").unwrap();
                txn.open_table(tables::SCIM_USER_NAMES)
                    .unwrap()
                    .insert("ann@example.com", "ann")
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        // `verify` reads schema 4's layout as it is.
        let report = crate::store::verify::verify_file(&path).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.schema, 4);
        assert!(report.records.contains(&("users_v2".into(), 2)), "{report}");

        let store = Store::open(&path).unwrap();
        let mut users = store.tenancy_snapshot().unwrap().users;
        users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        assert_eq!(users.len(), 2);
        let ann = &users[0];
        let s = ann.scim.as_ref().unwrap();
        assert_eq!(
            (
                s.user_name.as_str(),
                s.active,
                s.version,
                s.provisioned_by.as_str()
            ),
            ("Ann@Example.com", false, 7, "scim:tok")
        );
        assert_eq!(s.attributes_json, r#"{"title":"Lead"}"#);
        assert!(s.grants.is_empty() && ann.disabled());
        assert_eq!(ann.user_role, GlobalRole::ProxyAdminViewer);
        assert_eq!(ann.organizations[0].role, OrgRole::OrgAdmin);
        assert!(users[1].scim.is_none() && users[1].user_alias.as_deref() == Some("Alias"));
        // The indexes still name them.
        let found = store.find_users_by_name_or_email("ann@example.com", true);
        assert_eq!(found.unwrap().len(), 1);
        // Migration 6 indexed their externalIds (both carry the same one).
        let found = store.find_users_by_external_id("ext").unwrap();
        let mut ids: Vec<&str> = found.iter().map(|u| u.user_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["ann", "bob"]);
        drop(store);

        let report = crate::store::verify::verify_file(&path).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.schema, super::SCHEMA_VERSION);
        assert!(report.records.contains(&("users_v3".into(), 2)), "{report}");
        assert!(
            report.records.contains(&("user_external_ids_v1".into(), 2)),
            "{report}"
        );
        assert!(
            !report.records.iter().any(|(t, _)| t == "users_v2"),
            "{report}"
        );
        // Opening again migrates nothing more.
        let again = Store::open(&path).unwrap();
        assert_eq!(again.tenancy_snapshot().unwrap().users, users);
    }

    /// A file schema 5 wrote (`users_v3`, no externalId index; its SCIM email index short of a
    /// row, as a schema 4 file written before that index existed was).
    #[test]
    fn schema_5_users_get_their_external_ids_and_emails_indexed() {
        use super::super::tenancy::{ScimUser, UserRecord};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let user = |id: &str, external_id: Option<&str>, emails: &str| UserRecord {
            external_id: external_id.map(str::to_string),
            scim: Some(ScimUser {
                user_name: id.into(),
                active: true,
                attributes_json: format!(r#"{{"emails":[{emails}]}}"#),
                version: 1,
                provisioned_by: "scim:tok".into(),
                grants: Default::default(),
            }),
            ..crate::api::users::blank_user(id, "scim:tok")
        };
        let users = [
            user("ann", Some("E-1"), r#"{"value":"Ann@Home.test"}"#),
            user("bob", Some("e-1"), ""),
            user("cy", Some("E-1"), ""),
            user("dee", None, ""),
        ];
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(tables::META).unwrap();
                meta.insert("format", b"portcullis".as_slice()).unwrap();
                meta.insert("schema_version", 5u32.to_le_bytes().as_slice())
                    .unwrap();
                let mut t = txn.open_table(tables::USERS).unwrap();
                let mut names = txn.open_table(tables::SCIM_USER_NAMES).unwrap();
                for u in &users {
                    t.insert(u.user_id.as_str(), codec::encode(u).unwrap().as_slice())
                        .unwrap();
                    names
                        .insert(u.user_id.as_str(), u.user_id.as_str())
                        .unwrap();
                }
                txn.open_table(tables::SCIM_EMAILS).unwrap();
            }
            txn.commit().unwrap();
        }
        // Before the start, `verify` finds the email row missing but does not ask schema 5 for
        // the externalId index.
        let report = crate::store::verify::verify_file(&path).unwrap();
        assert_eq!(report.schema, 5);
        assert_eq!(report.problem_count, 1, "{report}");
        assert!(
            report.problems[0].contains("ann@home.test") && report.problems[0].contains("ann"),
            "{report}"
        );

        let store = Store::open(&path).unwrap();
        let ids = |value: &str| {
            let mut ids: Vec<String> = store
                .find_users_by_external_id(value)
                .unwrap()
                .into_iter()
                .map(|u| u.user_id)
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids("E-1"), ["ann", "cy"]);
        assert_eq!(ids("e-1"), ["bob"]);
        assert!(ids("E-").is_empty() && ids("").is_empty());
        let found = store
            .find_users_by_name_or_email("ann@home.test", false)
            .unwrap();
        assert_eq!(found.len(), 1);
        drop(store);
        let report = crate::store::verify::verify_file(&path).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.schema, super::SCHEMA_VERSION);
        assert!(
            report.records.contains(&("user_external_ids_v1".into(), 3)),
            "{report}"
        );
        assert!(
            report.records.contains(&("scim_emails_v1".into(), 1)),
            "{report}"
        );
    }
}
