//! Compiled rule matchers and how each one matches a request.
//!
//! A rule matches when every matcher it has matches (AND). Within a list matcher any entry may
//! match (OR), except `tags`, where the agent must carry every listed tag, like a label
//! selector. An absent matcher matches everything.

use std::cell::OnceCell;

use jiff::Timestamp;
use regex::Regex;

use crate::evaluate::Request;
use crate::names::{Principal, Role, SessionKind};
use crate::window::TimeWindow;

/// One `users` entry. Entries containing `@` name an email, compared ASCII case-insensitively
/// (mail domains are case-insensitive and providers treat local parts so); all others name a
/// user id, compared exactly. Keeping the two apart means an id can never match an email.
#[derive(Debug, Clone)]
pub(crate) enum UserRef {
    Email(String),
    Id(String),
}

impl UserRef {
    pub(crate) fn new(entry: &str) -> UserRef {
        if entry.contains('@') {
            UserRef::Email(entry.to_owned())
        } else {
            UserRef::Id(entry.to_owned())
        }
    }

    fn matches(&self, request: &Request<'_>) -> bool {
        match self {
            UserRef::Email(email) => request
                .email
                .is_some_and(|actual| actual.eq_ignore_ascii_case(email)),
            UserRef::Id(id) => request.user_id == id,
        }
    }
}

/// One `agents` entry: an agent id (exact) or an agent name, where `*` matches any run of
/// characters (including none). No other glob syntax exists, so `?` and `[` are literal.
#[derive(Debug, Clone)]
pub(crate) struct AgentRef(pub String);

impl AgentRef {
    fn matches(&self, request: &Request<'_>) -> bool {
        request.agent_id == self.0 || glob_matches(&self.0, request.agent_name)
    }
}

/// Whether the window must contain the instant (`during`) or must not (`outside`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowSense {
    During,
    Outside,
}

impl WindowSense {
    pub(crate) fn key(self) -> &'static str {
        match self {
            WindowSense::During => "during",
            WindowSense::Outside => "outside",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct WindowMatcher {
    pub sense: WindowSense,
    pub window: TimeWindow,
}

/// The matchers of one rule; `None` = absent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matchers {
    pub users: Option<Vec<UserRef>>,
    pub roles: Option<Vec<Role>>,
    pub principals: Option<Vec<Principal>>,
    pub agents: Option<Vec<AgentRef>>,
    pub tags: Option<Vec<String>>,
    pub kinds: Option<Vec<SessionKind>>,
    pub commands: Option<Vec<Regex>>,
    pub window: Option<WindowMatcher>,
}

/// What one evaluation knows about its request, with the derived values computed at most once.
#[derive(Debug)]
pub(crate) struct Facts<'a, 'r> {
    pub request: &'a Request<'r>,
    pub instant: Timestamp,
    command_line: OnceCell<String>,
}

impl<'a, 'r> Facts<'a, 'r> {
    pub(crate) fn new(request: &'a Request<'r>) -> Self {
        Facts {
            request,
            instant: crate::window::instant_from_unix_ms(request.at_unix_ms),
            command_line: OnceCell::new(),
        }
    }

    /// The exec argv joined with single spaces; an exec request without argv is the empty line.
    fn command_line(&self) -> &str {
        self.command_line.get_or_init(|| {
            self.request
                .exec_argv
                .map(|argv| argv.join(" "))
                .unwrap_or_default()
        })
    }
}

impl Matchers {
    /// Whether the rule has no matcher at all, i.e. matches every request.
    pub(crate) fn is_catch_all(&self) -> bool {
        let Matchers {
            users,
            roles,
            principals,
            agents,
            tags,
            kinds,
            commands,
            window,
        } = self;
        users.is_none()
            && roles.is_none()
            && principals.is_none()
            && agents.is_none()
            && tags.is_none()
            && kinds.is_none()
            && commands.is_none()
            && window.is_none()
    }

    /// Whether every present matcher matches. Cheap comparisons go first; the time zone
    /// conversion and regex searches run only for requests that got that far.
    pub(crate) fn matches(&self, facts: &Facts<'_, '_>) -> bool {
        let request = facts.request;
        any_matches(&self.roles, |role| *role == request.role)
            && any_matches(&self.principals, |principal| {
                *principal == request.principal
            })
            && any_matches(&self.kinds, |kind| *kind == request.kind)
            && any_matches(&self.users, |user| user.matches(request))
            && any_matches(&self.agents, |agent| agent.matches(request))
            && self
                .tags
                .as_ref()
                .is_none_or(|tags| tags.iter().all(|tag| request.agent_tags.contains(tag)))
            && self.window.as_ref().is_none_or(|matcher| {
                matcher.window.contains(facts.instant) == (matcher.sense == WindowSense::During)
            })
            && self.commands.as_ref().is_none_or(|patterns| {
                request.kind == SessionKind::Exec
                    && patterns
                        .iter()
                        .any(|pattern| pattern.is_match(facts.command_line()))
            })
    }
}

/// An absent list matches; a present one when any entry passes `test`.
fn any_matches<T>(list: &Option<Vec<T>>, test: impl Fn(&T) -> bool) -> bool {
    list.as_ref().is_none_or(|list| list.iter().any(test))
}

/// `*`-only glob. Between stars everything is literal, so matching the prefix, then each middle
/// segment at its leftmost occurrence, then the suffix is exact, and linear in the text per
/// segment (`str::find` is two-way): a policy author cannot make evaluation slow with globs.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let Some((head, suffix)) = pattern.rsplit_once('*') else {
        return pattern == text;
    };
    let (prefix, middles) = head.split_once('*').unwrap_or((head, ""));
    let Some(mut rest) = text.strip_prefix(prefix) else {
        return false;
    };
    for segment in middles.split('*').filter(|segment| !segment.is_empty()) {
        match rest.find(segment) {
            Some(at) => rest = &rest[at + segment.len()..],
            None => return false,
        }
    }
    // Checked on what is left, so the suffix cannot overlap the prefix or a middle segment.
    rest.ends_with(suffix)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn glob_star_matches_any_run() {
        for (pattern, text) in [
            ("web-*", "web-1"),
            ("web-*", "web-"),
            ("*", ""),
            ("*", "anything"),
            ("*-prod", "db-prod"),
            ("a*b*c", "aXXbYYc"),
            ("a*b*c", "abc"),
            ("*ab", "aab"),
            ("db-??", "db-??"),
            ("ü*", "über"),
            ("**", "x"),
            ("a*a", "aa"),
            ("*a*b*a*", "xxaxxbxxa"),
        ] {
            assert!(glob_matches(pattern, text), "{pattern} ~ {text}");
        }
    }

    #[test]
    fn glob_without_star_is_exact() {
        for (pattern, text) in [
            ("web-*", "Web-1"),
            ("web-*", "xweb-1"),
            ("*-prod", "db-prod2"),
            ("a*b*c", "acb"),
            ("db-??", "db-01"),
            ("web", "web1"),
            ("", "x"),
            ("[ab]", "a"),
            ("a*a", "a"),
            ("ab*ba", "aba"),
            ("*a*b*a*", "xxbxxaxx"),
        ] {
            assert!(!glob_matches(pattern, text), "{pattern} !~ {text}");
        }
    }

    #[test]
    fn glob_is_fast_on_adversarial_input() {
        let pattern = format!("{}b", "*a".repeat(256));
        let text = "a".repeat(64 * 1024);
        for _ in 0..100 {
            assert!(!glob_matches(&pattern, &text));
        }
    }
}
