//! A verified token as a governed caller. The token gets key-like entries — one per team it
//! names, or one without a team — so the chain every virtual key passes (user → team →
//! organisations, models, budgets, limits, spend) applies to it unchanged. These entries are
//! never stored and carry no limits of their own: a token's limits are its user's, team's and
//! organisations'.

use super::JwtError;
use super::claims::Mapped;
use crate::config::JwtRole;
use crate::limits::{Limits, Meter, Subject};
use crate::roles::{GlobalRole, KeyType};
use crate::store::{Budget, KeyRecord};
use crate::tenancy::{Directory, KeyEntry, ModelSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What one verified token stands for; cached until the token expires.
pub struct JwtGrant {
    /// `<iss>|<sub>`: the audit actor and the spend logs' `api_key` say `jwt:<subject>`.
    pub subject: String,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    /// The role the token gives, overriding the stored user's; `None`: the stored role.
    pub role: Option<GlobalRole>,
    /// `(team id, its entry)` for each team the token names, in the token's order.
    teams: Vec<(String, Arc<KeyEntry>)>,
    required_team: bool,
    /// The entry without a team (for a token whose teams all are unknown here).
    personal: Arc<KeyEntry>,
    /// An end user the token names (`end_user_id_jwt_field`), which wins over the request's.
    pub end_user: Option<String>,
    /// Until when (ms since the epoch, clock skew included) the token is accepted.
    pub valid_until_ms: i64,
    /// The token's user was found (or made) on a use of this token: if it is gone later, it
    /// was deleted, and this token does not make it again (`user_id_upsert` creates a user on
    /// a token's first use, not back after an administrator deleted it).
    user_seen: AtomicBool,
}

impl std::fmt::Debug for JwtGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtGrant")
            .field("subject", &self.subject)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

fn entry(subject: &str, m: &Mapped, user: Option<&str>, team: Option<&str>) -> Arc<KeyEntry> {
    let id = format!("jwt:{subject}");
    let now = crate::types::now_ms();
    let record = KeyRecord {
        token: id.clone(),
        key_id: id.clone(),
        key_name: "jwt".into(),
        key_alias: None,
        models: Vec::new(),
        expires_ms: None,
        metadata_json: "{}".into(),
        user_id: user.map(str::to_string),
        team_id: team.map(str::to_string),
        organization_id: m.org_id.clone(),
        budget: Budget::default(),
        allowed_routes: Vec::new(),
        key_type: KeyType::Default,
        blocked: false,
        created_at_ms: now,
        updated_at_ms: now,
        created_by: "jwt".into(),
        updated_by: "jwt".into(),
        grace_tokens: Vec::new(),
    };
    Arc::new(KeyEntry {
        record,
        models: ModelSet::Any,
        limits: Limits::default(),
        // Its own meter, outside the ledger: nothing about it is persisted or limited.
        meter: Arc::new(Meter::new(Subject::Key(id))),
    })
}

impl JwtGrant {
    pub fn new(m: Mapped, leeway_ms: i64) -> JwtGrant {
        let user = m.user_id.as_deref();
        let teams = m
            .teams
            .iter()
            .map(|t| (t.clone(), entry(&m.subject, &m, user, Some(t))))
            .collect();
        let role = match m.role {
            Some(JwtRole::Global(r)) => Some(r),
            Some(JwtRole::Team) | None => None,
        };
        JwtGrant {
            personal: entry(&m.subject, &m, user, None),
            teams,
            required_team: m.required_team,
            role,
            valid_until_ms: m.expires_s.saturating_mul(1000).saturating_add(leeway_ms),
            subject: m.subject,
            user_id: m.user_id,
            user_email: m.user_email,
            end_user: m.end_user,
            user_seen: AtomicBool::new(false),
        }
    }

    /// Records that the token's user exists (see the field).
    pub fn saw_user(&self) {
        self.user_seen.store(true, Ordering::Release);
    }

    /// Whether the token's user existed on an earlier use.
    pub fn user_was_seen(&self) -> bool {
        self.user_seen.load(Ordering::Acquire)
    }

    /// The token's entry without a team.
    pub fn entry(&self) -> &Arc<KeyEntry> {
        &self.personal
    }

    /// The role the caller acts in: the token's, else its stored user's.
    pub fn acting_role(&self, dir: &Directory) -> Option<GlobalRole> {
        self.role.or_else(|| {
            self.user_id
                .as_deref()
                .and_then(|u| dir.user(u))
                .map(|u| u.record.user_role)
        })
    }

    /// The entries to try for a request, best first; never empty. With `x-litellm-team-id`
    /// only that team, which the token must name. Otherwise the team of `team_id_jwt_field`
    /// (which must exist), else every named team that exists here (the caller picks the first
    /// that allows the call), else the entry without a team.
    pub fn candidates(
        &self,
        dir: &Directory,
        header_team: Option<&str>,
    ) -> Result<Vec<&Arc<KeyEntry>>, JwtError> {
        let exists = |t: &str| dir.team(t).is_some();
        if let Some(h) = header_team.map(str::trim).filter(|h| !h.is_empty()) {
            let (id, key) = self
                .teams
                .iter()
                .find(|(t, _)| t == h)
                .ok_or_else(|| JwtError::TeamNotInToken(h.chars().take(128).collect()))?;
            return if exists(id) {
                Ok(vec![key])
            } else {
                Err(JwtError::UnknownTeam(id.clone()))
            };
        }
        if self.required_team
            && let Some((id, key)) = self.teams.first()
        {
            return if exists(id) {
                Ok(vec![key])
            } else {
                Err(JwtError::UnknownTeam(id.clone()))
            };
        }
        let known: Vec<&Arc<KeyEntry>> = self
            .teams
            .iter()
            .filter(|(t, _)| exists(t))
            .map(|(_, k)| k)
            .collect();
        if !known.is_empty() {
            return Ok(known);
        }
        let r = &self.personal.record;
        if r.user_id.is_none() && r.organization_id.is_none() && self.role.is_none() {
            // Only team names, none of them a team here: nobody to act for.
            return Err(match self.teams.first() {
                Some((t, _)) => JwtError::UnknownTeam(t.clone()),
                None => JwtError::NoIdentity,
            });
        }
        Ok(vec![&self.personal])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Ledger;
    use crate::store::TeamRecord;

    fn mapped(teams: &[&str], required: bool, user: Option<&str>) -> Mapped {
        Mapped {
            subject: "iss|sub".into(),
            user_id: user.map(str::to_string),
            user_email: None,
            role: None,
            teams: teams.iter().map(|t| t.to_string()).collect(),
            required_team: required,
            org_id: None,
            end_user: None,
            expires_s: 100,
        }
    }

    fn dir_with(teams: &[&str]) -> Directory {
        let dir = Directory::new(Arc::new(Ledger::new()), Default::default(), &[]);
        for t in teams {
            dir.upsert_team(TeamRecord {
                team_id: t.to_string(),
                team_alias: None,
                organization_id: None,
                models: Vec::new(),
                budget: Budget::default(),
                members: Vec::new(),
                blocked: false,
                metadata_json: "{}".into(),
                external_id: None,
                created_at_ms: 0,
                updated_at_ms: 0,
                created_by: String::new(),
                updated_by: String::new(),
                scim: None,
            });
        }
        dir
    }

    fn team_of(keys: &[&Arc<KeyEntry>]) -> Vec<Option<String>> {
        keys.iter().map(|k| k.record.team_id.clone()).collect()
    }

    #[test]
    fn the_header_picks_one_of_the_tokens_teams_and_nothing_else() {
        let dir = dir_with(&["a", "b"]);
        let g = JwtGrant::new(mapped(&["a", "b", "ghost"], false, Some("u")), 60_000);
        assert_eq!(g.valid_until_ms, 160_000);
        assert_eq!(
            team_of(&g.candidates(&dir, Some("b")).unwrap()),
            [Some("b".into())]
        );
        assert_eq!(
            g.candidates(&dir, Some("c")).err(),
            Some(JwtError::TeamNotInToken("c".into()))
        );
        assert_eq!(
            g.candidates(&dir, Some("ghost")).err(),
            Some(JwtError::UnknownTeam("ghost".into()))
        );
        let all = g.candidates(&dir, None).unwrap();
        assert_eq!(team_of(&all), [Some("a".into()), Some("b".into())]);
        assert_eq!(all[0].record.user_id.as_deref(), Some("u"));
        assert_eq!(all[0].record.token, "jwt:iss|sub");
    }

    #[test]
    fn a_required_team_must_exist_and_unknown_groups_fall_back_to_the_user() {
        let dir = dir_with(&["a"]);
        let g = JwtGrant::new(mapped(&["ghost", "a"], true, Some("u")), 0);
        assert_eq!(
            g.candidates(&dir, None).err(),
            Some(JwtError::UnknownTeam("ghost".into()))
        );
        let g = JwtGrant::new(mapped(&["x", "y"], false, Some("u")), 0);
        assert_eq!(team_of(&g.candidates(&dir, None).unwrap()), [None]);
        let g = JwtGrant::new(mapped(&["x"], false, None), 0);
        assert_eq!(
            g.candidates(&dir, None).err(),
            Some(JwtError::UnknownTeam("x".into()))
        );
    }
}
