//! The whole per-request governance decision, as the gateway makes it, against a realistic
//! directory: 100k keys, 10k users, 1k teams, a 5-level organisation tree. One iteration =
//! authenticate the key → resolve its chain (user, team, member, organisations, end user)
//! → route gate (key type, allowed routes, role) → model rules at every level → admit against
//! every budget and limit level → settle the cost.
//!
//! `cargo bench --bench governance`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::auth::{Authenticator, KeyCache, Principal, generate_key, hash_key};
use portcullis::config::RolePermission;
use portcullis::limits::Ledger;
use portcullis::roles::{GlobalRole, KeyType, OrgRole, TeamRole};
use portcullis::store::{
    Budget, KeyRecord, OrgMember, OrgMembership, OrgRecord, TeamMember, TeamRecord,
    TenancySnapshot, UserRecord,
};
use portcullis::tenancy::Directory;
use portcullis::tenancy::access::{self, RouteClass};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

const KEYS: usize = 100_000;
const USERS: usize = 10_000;
const TEAMS: usize = 1_000;
const ORG_DEPTH: usize = 5;

fn budget(max: f64) -> Budget {
    Budget {
        max_budget: Some(max),
        soft_budget: Some(max / 2.0),
        budget_duration: Some("30d".into()),
        tpm_limit: Some(u64::MAX / 4),
        rpm_limit: Some(u64::MAX / 4),
        max_parallel_requests: Some(1_000_000),
    }
}

fn org(id: usize, parent: Option<usize>) -> OrgRecord {
    OrgRecord {
        organization_id: format!("org-{id}"),
        organization_alias: format!("Org {id}"),
        parent_id: parent.map(|p| format!("org-{p}")),
        models: vec!["gpt-4o".into(), "gpt-4o-mini".into(), "openai/*".into()],
        budget: budget(1e12),
        members: vec![OrgMember {
            user_id: "user-0".into(),
            role: OrgRole::OrgAdmin,
        }],
        metadata_json: "{}".into(),
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: String::new(),
        updated_by: String::new(),
    }
}

/// The directory, the authenticator and the secret of a key deep in it.
fn world() -> (Directory, Authenticator, String) {
    let dir = Directory::new(
        Arc::new(Ledger::new()),
        HashMap::new(),
        &[RolePermission {
            role: GlobalRole::InternalUser,
            models: vec!["gpt-4o".into(), "gpt-4o-mini".into(), "openai/*".into()],
            routes: vec!["llm_api_routes".into(), "info_routes".into()],
        }],
    );
    // A chain of five organisations, each with fan-out siblings, teams spread over the leaves.
    let mut orgs = Vec::new();
    for level in 0..ORG_DEPTH {
        for sibling in 0..4 {
            let id = level * 4 + sibling;
            let parent = (level > 0).then(|| (level - 1) * 4);
            orgs.push(org(id, parent));
        }
    }
    let deepest = (ORG_DEPTH - 1) * 4;
    let teams: Vec<TeamRecord> = (0..TEAMS)
        .map(|t| TeamRecord {
            team_id: format!("team-{t}"),
            team_alias: None,
            organization_id: Some(format!("org-{}", if t % 2 == 0 { deepest } else { t % 20 })),
            models: vec!["gpt-4o".into(), "gpt-4o-mini".into()],
            budget: budget(1e11),
            members: (0..USERS / TEAMS)
                .map(|m| TeamMember {
                    user_id: format!("user-{}", t * (USERS / TEAMS) + m),
                    role: if m == 0 {
                        TeamRole::Admin
                    } else {
                        TeamRole::User
                    },
                    budget: budget(1e10),
                })
                .collect(),
            blocked: false,
            metadata_json: "{}".into(),
            external_id: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: String::new(),
            updated_by: String::new(),
            scim: None,
        })
        .collect();
    let users: Vec<UserRecord> = (0..USERS)
        .map(|u| UserRecord {
            user_id: format!("user-{u}"),
            user_email: Some(format!("user-{u}@example.com")),
            user_alias: None,
            user_role: GlobalRole::InternalUser,
            password_hash: None,
            models: Vec::new(),
            budget: budget(1e10),
            teams: vec![format!("team-{}", u / (USERS / TEAMS))],
            organizations: vec![OrgMembership {
                organization_id: format!("org-{deepest}"),
                role: OrgRole::InternalUser,
            }],
            metadata_json: "{}".into(),
            blocked: false,
            sso_user_id: None,
            external_id: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: String::new(),
            updated_by: String::new(),
            scim: None,
        })
        .collect();
    dir.load(TenancySnapshot {
        users,
        teams,
        orgs,
        customers: Vec::new(),
    });
    let cache = KeyCache::default();
    let mut probe = String::new();
    for k in 0..KEYS {
        let secret = generate_key().unwrap();
        let user = k % USERS;
        let record = KeyRecord {
            token: hex::encode(hash_key(&secret)),
            key_id: format!("key-{k}"),
            key_name: "sk-...abcd".into(),
            key_alias: None,
            models: vec!["gpt-4o".into(), "gpt-4o-mini".into()],
            expires_ms: None,
            metadata_json: "{}".into(),
            user_id: Some(format!("user-{user}")),
            team_id: Some(format!("team-{}", user / (USERS / TEAMS))),
            organization_id: None,
            budget: budget(1e9),
            allowed_routes: Vec::new(),
            key_type: KeyType::Default,
            blocked: false,
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: String::new(),
            updated_by: String::new(),
            grace_tokens: Vec::new(),
        };
        cache.upsert(dir.key_entry(record));
        // An even team: its organisation is the deepest, so the chain is the longest.
        if k == 2 * (USERS / TEAMS) * 7 {
            probe = secret;
        }
    }
    let auth = Authenticator::new(None, cache);
    (dir, auth, probe)
}

fn decision(c: &mut Criterion) {
    let (dir, auth, probe) = world();
    let now = portcullis::types::now_ms();
    let mut g =
        c.benchmark_group("governance decision (100k keys, 10k users, 1k teams, 5-level orgs)");
    g.bench_function(
        "authenticate → chain → route → models → admit → settle",
        |b| {
            b.iter(|| {
                let Principal::Key(key) = auth.authenticate_secret(black_box(&probe)).unwrap()
                else {
                    unreachable!()
                };
                let chain = access::chain(&dir, &key, None).unwrap();
                let role = chain.user.as_ref().map(|u| u.record.user_role);
                access::check_route(&dir, &key, role, RouteClass::Llm, "/v1/chat/completions")
                    .unwrap();
                access::check_model(&dir, &chain, black_box("gpt-4o-mini")).unwrap();
                assert_eq!(chain.orgs.len(), ORG_DEPTH);
                let admission = dir
                    .ledger()
                    .admit(&access::levels(&chain), 0.001, now)
                    .unwrap();
                admission.settle_at(0.0005, 100, now)
            })
        },
    );
    g.bench_function("chain + models only (no metering)", |b| {
        let Principal::Key(key) = auth.authenticate_secret(&probe).unwrap() else {
            unreachable!()
        };
        b.iter(|| {
            let chain = access::chain(&dir, black_box(&key), None).unwrap();
            access::check_model(&dir, &chain, black_box("gpt-4o-mini")).is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
