//! What a Group grants, and how a grant is given and taken back, on records alone.

use super::*;
use crate::config::GroupRoles;
use crate::store::{OrgMembership, ScimGroup, ScimUser};

fn roles() -> GroupRoles {
    GroupRoles::new([
        ("Admins".to_string(), GroupRole::ProxyAdmin),
        ("Auditors".to_string(), GroupRole::ProxyAdminViewer),
        ("Leads".to_string(), GroupRole::OrgAdmin),
    ])
}

fn team(name: &str, org: Option<&str>, scim: bool) -> TeamRecord {
    TeamRecord {
        team_id: "t".into(),
        team_alias: Some(name.into()),
        organization_id: org.map(str::to_string),
        models: Vec::new(),
        budget: Default::default(),
        members: Vec::new(),
        blocked: false,
        metadata_json: "{}".into(),
        external_id: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: String::new(),
        updated_by: String::new(),
        scim: scim.then(|| ScimGroup {
            display_name: name.into(),
            version: 1,
            provisioned_by: "scim:tok".into(),
        }),
    }
}

fn scim_user(role: GlobalRole, orgs: &[(&str, OrgRole)]) -> UserRecord {
    let mut u = crate::api::users::blank_user("u", "scim:tok");
    u.user_role = role;
    u.organizations = orgs
        .iter()
        .map(|(o, r)| OrgMembership {
            organization_id: o.to_string(),
            role: *r,
        })
        .collect();
    u.scim = Some(ScimUser {
        user_name: "u".into(),
        active: true,
        attributes_json: "{}".into(),
        version: 1,
        provisioned_by: "scim:tok".into(),
        grants: Default::default(),
    });
    u
}

#[test]
fn where_a_group_sits_decides_what_it_grants() {
    let r = roles();
    let admin = GlobalRole::ProxyAdmin;
    assert_eq!(
        grant_of(&r, &team("admins", None, true)),
        Some(Grant::Global(admin))
    );
    assert_eq!(
        grant_of(&r, &team("AUDITORS", None, true)),
        Some(Grant::Global(GlobalRole::ProxyAdminViewer))
    );
    // In an organisation, never a global role, whatever the config says.
    for name in ["Admins", "Leads"] {
        assert_eq!(
            grant_of(&r, &team(name, Some("A"), true)),
            Some(Grant::OrgAdmin("A".into())),
            "{name}"
        );
    }
    assert_eq!(grant_of(&r, &team("Auditors", Some("A"), true)), None);
    assert_eq!(grant_of(&r, &team("Leads", None, true)), None);
    assert_eq!(grant_of(&r, &team("Engineering", None, true)), None);
    // A team SCIM never wrote grants nothing, however an administrator named it.
    assert_eq!(grant_of(&r, &team("Admins", None, false)), None);
    assert_eq!(
        grant_of(&GroupRoles::default(), &team("Admins", None, true)),
        None
    );
}

#[test]
fn a_global_grant_is_taken_back_to_exactly_what_it_replaced() {
    let mut u = scim_user(GlobalRole::InternalUserViewer, &[]);
    settle_global(&mut u, Some(GlobalRole::ProxyAdmin));
    assert_eq!(u.user_role, GlobalRole::ProxyAdmin);
    let g = u.scim_grants().and_then(|g| g.user_role.clone());
    assert_eq!(
        g,
        Some(RoleGrant {
            granted: GlobalRole::ProxyAdmin,
            replaced: GlobalRole::InternalUserViewer
        })
    );
    // Still in a viewers' group only: down to viewer, still SCIM's.
    settle_global(&mut u, Some(GlobalRole::ProxyAdminViewer));
    assert_eq!(u.user_role, GlobalRole::ProxyAdminViewer);
    settle_global(&mut u, None);
    assert_eq!(u.user_role, GlobalRole::InternalUserViewer);
    assert!(u.scim_grants().is_some_and(|g| g.is_empty()));
}

#[test]
fn a_role_already_held_or_taken_over_is_never_taken_back() {
    // Held before: nothing granted, nothing to take back.
    let mut u = scim_user(GlobalRole::ProxyAdmin, &[]);
    settle_global(&mut u, Some(GlobalRole::ProxyAdminViewer));
    settle_global(&mut u, Some(GlobalRole::ProxyAdmin));
    assert!(u.scim_grants().is_some_and(|g| g.is_empty()));
    settle_global(&mut u, None);
    assert_eq!(u.user_role, GlobalRole::ProxyAdmin);
    // Granted, then set by hand: the administrator's.
    let mut u = scim_user(GlobalRole::InternalUser, &[]);
    settle_global(&mut u, Some(GlobalRole::ProxyAdmin));
    u.take_over_role();
    settle_global(&mut u, None);
    assert_eq!(u.user_role, GlobalRole::ProxyAdmin);
    // Granted, then changed by someone else without taking it over: not SCIM's either.
    let mut u = scim_user(GlobalRole::InternalUser, &[]);
    settle_global(&mut u, Some(GlobalRole::ProxyAdmin));
    u.user_role = GlobalRole::InternalUserViewer;
    settle_global(&mut u, None);
    assert_eq!(u.user_role, GlobalRole::InternalUserViewer);
    // A viewer an administrator made, admin through a group: back to viewer.
    let mut u = scim_user(GlobalRole::ProxyAdminViewer, &[]);
    settle_global(&mut u, Some(GlobalRole::ProxyAdmin));
    settle_global(&mut u, Some(GlobalRole::ProxyAdminViewer));
    assert_eq!(u.user_role, GlobalRole::ProxyAdminViewer);
    assert!(u.scim_grants().is_some_and(|g| g.is_empty()));
}

#[test]
fn org_admin_is_granted_to_members_and_taken_back() {
    let mut u = scim_user(
        GlobalRole::InternalUser,
        &[("A", OrgRole::InternalUserViewer), ("B", OrgRole::OrgAdmin)],
    );
    assert_eq!(settle_org(&mut u, "A", true), Some(OrgRole::OrgAdmin));
    assert_eq!(settle_org(&mut u, "A", true), None, "granted once");
    // B's org admin was an administrator's: no grant, and leaving leaves it.
    assert_eq!(settle_org(&mut u, "B", true), None);
    assert_eq!(settle_org(&mut u, "B", false), None);
    assert_eq!(u.organizations[1].role, OrgRole::OrgAdmin);
    // Not a member of C: nothing to administer.
    assert_eq!(settle_org(&mut u, "C", true), None);
    assert_eq!(
        settle_org(&mut u, "A", false),
        Some(OrgRole::InternalUserViewer)
    );
    assert_eq!(u.organizations[0].role, OrgRole::InternalUserViewer);
    assert!(u.scim_grants().is_some_and(|g| g.is_empty()));
    // Set by hand after SCIM granted it: kept.
    settle_org(&mut u, "A", true);
    u.take_over_org_role("A");
    assert_eq!(settle_org(&mut u, "A", false), None);
    assert_eq!(u.organizations[0].role, OrgRole::OrgAdmin);
    // The global role is never touched by an organisation's slot.
    assert_eq!(u.user_role, GlobalRole::InternalUser);
}
