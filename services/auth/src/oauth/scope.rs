//! The fixed set of OAuth scopes an AI agent can ask for, and the role each one needs.
//!
//! A scope is granted only to the extent the consenting user holds it: each scope has a
//! minimum role, scopes above the user's role are dropped at consent (RFC 6749 §3.3 lets the
//! server grant less than asked) and again at every refresh, so a demotion takes effect. The
//! access token's `role` is the highest minimum role among the granted scopes — `ai_agent`
//! as soon as the agent may act on hosts, `viewer` for read-only grants — and therefore never
//! above the user's own role.

use tucdesk_token::Role;

/// Longest `scope` parameter accepted (space-separated names).
pub const MAX_SCOPE_LEN: usize = 512;

/// One scope of the fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// List the team's agents and their status.
    AgentsRead,
    /// List sessions and watch them without input.
    SessionsRead,
    /// Run non-interactive commands on agents.
    SessionsExec,
    /// Open interactive shells on agents.
    SessionsShell,
}

impl Scope {
    /// Every scope, in display order.
    pub const ALL: [Scope; 4] = [
        Scope::AgentsRead,
        Scope::SessionsRead,
        Scope::SessionsExec,
        Scope::SessionsShell,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentsRead => "agents:read",
            Self::SessionsRead => "sessions:read",
            Self::SessionsExec => "sessions:exec",
            Self::SessionsShell => "sessions:shell",
        }
    }

    /// What the consent page tells the user this scope allows.
    pub fn description(self) -> &'static str {
        match self {
            Self::AgentsRead => "See your team's agents and whether they are online",
            Self::SessionsRead => "See sessions and watch them, without typing into them",
            Self::SessionsExec => "Run commands on agents you may access",
            Self::SessionsShell => "Open interactive shells on agents you may access",
        }
    }

    /// The lowest user role that may grant this scope, and the token role it implies.
    pub fn min_role(self) -> Role {
        match self {
            Self::AgentsRead | Self::SessionsRead => Role::Viewer,
            Self::SessionsExec | Self::SessionsShell => Role::AiAgent,
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == name)
    }
}

/// A set of scopes, kept sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

/// A scope string that is too long or names an unknown scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "scope must be space-separated names from: agents:read sessions:read sessions:exec sessions:shell"
)]
pub struct InvalidScope;

impl Scopes {
    /// Every scope of the fixed set.
    pub fn all() -> Self {
        Self(Scope::ALL.to_vec())
    }

    /// Parses a space-separated scope string (RFC 6749 §3.3); unknown names are refused.
    pub fn parse(text: &str) -> Result<Self, InvalidScope> {
        if text.len() > MAX_SCOPE_LEN {
            return Err(InvalidScope);
        }
        let mut scopes = text
            .split(' ')
            .filter(|name| !name.is_empty())
            .map(|name| Scope::parse(name).ok_or(InvalidScope))
            .collect::<Result<Vec<_>, _>>()?;
        scopes.sort();
        scopes.dedup();
        Ok(Self(scopes))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.0.iter().all(|scope| other.0.contains(scope))
    }

    /// The scopes a user with `role` may grant.
    pub fn grantable_by(&self, role: Role) -> Self {
        Self(
            self.0
                .iter()
                .copied()
                .filter(|scope| role.at_least(scope.min_role()))
                .collect(),
        )
    }

    /// The access token's role for these scopes (see the module docs); `None` when empty.
    pub fn token_role(&self) -> Option<Role> {
        self.0
            .iter()
            .map(|scope| scope.min_role())
            .max_by_key(|role| role.rank())
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|scope| scope.as_str()).collect();
        f.write_str(&names.join(" "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scope_strings_parse_sorted_and_deduplicated() {
        let scopes = Scopes::parse("sessions:shell  agents:read sessions:shell").unwrap();
        assert_eq!(scopes.to_string(), "agents:read sessions:shell");
        assert!(Scopes::parse("").unwrap().is_empty());
        assert_eq!(Scopes::parse("admin"), Err(InvalidScope));
        assert_eq!(
            Scopes::parse("agents:read\tsessions:read"),
            Err(InvalidScope)
        );
        assert_eq!(
            Scopes::parse(&"agents:read ".repeat(60)),
            Err(InvalidScope),
            "over the length cap"
        );
    }

    #[test]
    fn token_role_is_ai_agent_only_with_acting_scopes_and_never_above_the_user() {
        let all = Scopes::all();
        assert_eq!(all.token_role(), Some(Role::AiAgent));
        assert_eq!(
            Scopes::parse("agents:read sessions:read")
                .unwrap()
                .token_role(),
            Some(Role::Viewer)
        );
        for role in Role::ALL {
            let granted = all.grantable_by(role);
            if let Some(token_role) = granted.token_role() {
                assert!(role.at_least(token_role), "{role} granted {token_role}");
            }
        }
        assert_eq!(
            all.grantable_by(Role::Viewer).to_string(),
            "agents:read sessions:read"
        );
        assert!(all.grantable_by(Role::Auditor).is_empty());
        assert_eq!(all.grantable_by(Role::Operator), all);
    }
}
