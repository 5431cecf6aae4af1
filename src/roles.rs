//! The role vocabulary, with LiteLLM's names so its users' scripts keep working. Pure data:
//! what each role may do is decided in `rbac`, not here.

use serde::{Deserialize, Serialize};

/// A user's proxy-wide role (`user_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GlobalRole {
    ProxyAdmin,
    ProxyAdminViewer,
    InternalUser,
    InternalUserViewer,
}

/// A user's role inside one organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrgRole {
    /// Governs the organisation's whole subtree.
    OrgAdmin,
    InternalUser,
    InternalUserViewer,
}

/// A user's role inside one team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TeamRole {
    Admin,
    User,
}

macro_rules! named {
    ($t:ty, $what:literal, $($v:ident => $s:literal),+ $(,)?) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$(<$t>::$v),+];
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),+ }
            }
            pub fn parse(text: &str) -> Option<$t> {
                match text { $($s => Some(<$t>::$v),)+ _ => None }
            }
            /// The accepted names, for error messages.
            pub fn names() -> String {
                [$($s),+].join(", ")
            }
            pub const KIND: &'static str = $what;
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named!(GlobalRole, "user_role",
    ProxyAdmin => "proxy_admin",
    ProxyAdminViewer => "proxy_admin_viewer",
    InternalUser => "internal_user",
    InternalUserViewer => "internal_user_viewer",
);
named!(OrgRole, "organization role",
    OrgAdmin => "org_admin",
    InternalUser => "internal_user",
    InternalUserViewer => "internal_user_viewer",
);
named!(TeamRole, "team role",
    Admin => "admin",
    User => "user",
);

impl GlobalRole {
    /// Roles that may change nothing at all (their own password included).
    pub fn read_only(self) -> bool {
        matches!(
            self,
            GlobalRole::ProxyAdminViewer | GlobalRole::InternalUserViewer
        )
    }
}

/// What a key may be used for (LiteLLM's `key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// LLM calls and whatever management its owner may do.
    Default,
    /// LLM calls only (plus reading its own key info).
    LlmApi,
    /// Management routes only; no LLM calls.
    Management,
    /// Reading management routes only.
    ReadOnly,
}

named!(KeyType, "key_type",
    Default => "default",
    LlmApi => "llm_api",
    Management => "management",
    ReadOnly => "read_only",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in GlobalRole::ALL {
            assert_eq!(GlobalRole::parse(r.as_str()), Some(*r));
        }
        for r in OrgRole::ALL {
            assert_eq!(OrgRole::parse(r.as_str()), Some(*r));
        }
        assert_eq!(TeamRole::parse("admin"), Some(TeamRole::Admin));
        assert_eq!(KeyType::parse("read_only"), Some(KeyType::ReadOnly));
        assert_eq!(GlobalRole::parse("root"), None);
    }
}
