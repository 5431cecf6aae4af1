//! Who a meter belongs to, and the stable text key its counter is stored under.

use std::fmt;

/// One governed object whose usage is metered. Ids are the stable ids of the store (for a
/// key, its key id — never the secret or its hash, which change on regeneration).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Key(String),
    User(String),
    Team(String),
    TeamMember { team: String, user: String },
    Org(String),
    EndUser(String),
}

impl Subject {
    /// The counter's key in the store: `key:<id>`, `user:<id>`, `team:<id>`,
    /// `member:<team length>:<team>/<user>`, `org:<id>`, `end_user:<id>`. The member form
    /// carries the team id's byte length, so ids containing `/` or `:` cannot collide.
    pub fn storage_key(&self) -> String {
        match self {
            Subject::Key(id) => format!("key:{id}"),
            Subject::User(id) => format!("user:{id}"),
            Subject::Team(id) => format!("team:{id}"),
            Subject::TeamMember { team, user } => format!("member:{}:{team}/{user}", team.len()),
            Subject::Org(id) => format!("org:{id}"),
            Subject::EndUser(id) => format!("end_user:{id}"),
        }
    }

    /// The inverse of [`Subject::storage_key`]; `None` for anything it did not produce.
    pub fn from_storage_key(text: &str) -> Option<Subject> {
        let (kind, rest) = text.split_once(':')?;
        let id = rest.to_string();
        Some(match kind {
            "key" => Subject::Key(id),
            "user" => Subject::User(id),
            "team" => Subject::Team(id),
            "org" => Subject::Org(id),
            "end_user" => Subject::EndUser(id),
            "member" => {
                let (len, tail) = rest.split_once(':')?;
                // Digits only: `usize::from_str` would also accept a leading `+`.
                if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let len: usize = len.parse().ok()?;
                let team = tail.get(..len)?;
                let user = tail.get(len..)?.strip_prefix('/')?;
                Subject::TeamMember {
                    team: team.to_string(),
                    user: user.to_string(),
                }
            }
            _ => return None,
        })
    }

    /// The level's name as refusals and alerts report it.
    pub fn level_name(&self) -> &'static str {
        match self {
            Subject::Key(_) => "key",
            Subject::User(_) => "user",
            Subject::Team(_) => "team",
            Subject::TeamMember { .. } => "team_member",
            Subject::Org(_) => "organization",
            Subject::EndUser(_) => "end_user",
        }
    }

    /// The object's id as a person would name it (`<team>/<user>` for a team member).
    pub fn id(&self) -> String {
        match self {
            Subject::Key(id)
            | Subject::User(id)
            | Subject::Team(id)
            | Subject::Org(id)
            | Subject::EndUser(id) => id.clone(),
            Subject::TeamMember { team, user } => format!("{team}/{user}"),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.level_name(), self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Subject> {
        vec![
            Subject::Key("k1".into()),
            Subject::User("a/b:c".into()),
            Subject::Team("".into()),
            Subject::TeamMember {
                team: "t/x".into(),
                user: "u".into(),
            },
            Subject::TeamMember {
                team: "t".into(),
                user: "x/u".into(),
            },
            Subject::TeamMember {
                team: "é:/".into(),
                user: "".into(),
            },
            Subject::Org("o".into()),
            Subject::EndUser("customer 7".into()),
        ]
    }

    #[test]
    fn storage_keys_round_trip_and_do_not_collide() {
        let subjects = all();
        let keys: Vec<String> = subjects.iter().map(Subject::storage_key).collect();
        for (s, k) in subjects.iter().zip(&keys) {
            assert_eq!(Subject::from_storage_key(k).as_ref(), Some(s), "{k}");
        }
        let unique: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(subjects[3].storage_key(), "member:3:t/x/u");
        assert_eq!(subjects[4].storage_key(), "member:1:t/x/u");
    }

    #[test]
    fn foreign_keys_are_rejected() {
        for bad in [
            "",
            "key",
            "nope:x",
            "member:x",
            "member:+1:t/u",
            "member:9:t/u",
            "member:1:tu",
            "member:1:é/u",
        ] {
            assert_eq!(Subject::from_storage_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn level_names() {
        let names: Vec<&str> = all().iter().map(Subject::level_name).collect();
        assert_eq!(
            names,
            [
                "key",
                "user",
                "team",
                "team_member",
                "team_member",
                "team_member",
                "organization",
                "end_user"
            ]
        );
    }
}
