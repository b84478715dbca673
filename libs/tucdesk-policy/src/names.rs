//! The closed vocabularies of the policy language. Each name is spelled exactly as in YAML
//! (lowercase, `snake_case`), and `FromStr` accepts nothing else: a near-miss like `Admin` or
//! `admins` must be an error, not a rule that silently never matches.

use std::fmt;
use std::str::FromStr;

/// A name that is not one of a vocabulary's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {vocabulary} `{value}` (expected one of: {expected})")]
pub struct UnknownName {
    /// Which vocabulary was asked, e.g. "role".
    pub vocabulary: &'static str,
    /// The rejected input (cut to a bounded length, since it may come from a large document).
    pub value: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

/// Longest slice of a rejected value repeated in an error message.
const MAX_ECHOED_VALUE_CHARS: usize = 64;

/// Cuts a document value repeated in a message to a readable length, with characters that
/// could disturb the reader's display replaced.
pub(crate) fn clip(value: &str) -> String {
    value
        .chars()
        .take(MAX_ECHOED_VALUE_CHARS)
        .map(displayable)
        .collect()
}

/// Whether a character can change how surrounding text is displayed: C0/C1 controls (terminal
/// escape sequences) and the bidirectional formatting characters that reorder text
/// ("Trojan Source"). Text that reaches a person's screen must not carry them.
pub(crate) fn is_display_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `c`, or U+FFFD if it is a display control.
pub(crate) fn displayable(c: char) -> char {
    if is_display_control(c) { '\u{FFFD}' } else { c }
}

fn unknown(vocabulary: &'static str, value: &str, expected: &'static str) -> UnknownName {
    UnknownName {
        vocabulary,
        value: clip(value),
        expected,
    }
}

/// Defines a fieldless enum with its YAML spelling, `as_str`, `Display` and `FromStr`.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The YAML spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err(unknown($what, value, concat!($($text, ", "),+).trim_end_matches(", "))),
                }
            }
        }
    };
}

vocabulary! {
    /// The caller's role in the team.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    Role, "role", {
        /// Manages the team.
        Owner => "owner",
        /// Manages users, agents and policy.
        Admin => "admin",
        /// Opens sessions.
        Operator => "operator",
        /// Read-only access.
        Viewer => "viewer",
        /// An AI agent (MCP client).
        AiAgent => "ai_agent",
    }
}

vocabulary! {
    /// How the caller authenticated.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    Principal, "principal", {
        /// A team member with their own credentials.
        User => "user",
        /// Vendor support acting on the team's behalf.
        Support => "support",
        /// An AI agent with an OAuth grant.
        AiAgent => "ai_agent",
    }
}

vocabulary! {
    /// What the session does on the agent.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    SessionKind, "session kind", {
        /// Interactive PTY shell.
        Shell => "shell",
        /// One command (argv).
        Exec => "exec",
    }
}

vocabulary! {
    /// What happens to a request no rule allows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    Mode, "mode", {
        /// Default-allow: only deny rules restrict.
        Allow => "allow",
        /// Default-deny: a request needs a matching allow rule.
        Deny => "deny",
    }
}

vocabulary! {
    /// The result of an evaluation.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    Outcome, "outcome", {
        /// The session may start.
        Allow => "allow",
        /// The session must not start.
        Deny => "deny",
        /// The session may start once an approver accepts it.
        ApprovalRequired => "approval_required",
    }
}

vocabulary! {
    /// What a rule does when it matches.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    Effect, "effect", {
        /// Grants access (needed in `mode: deny`).
        Allow => "allow",
        /// Refuses access; beats every other rule.
        Deny => "deny",
        /// Asks an approver before an allowed session starts.
        RequireApproval => "require_approval",
    }
}

impl Role {
    /// Whether the role may approve sessions: viewers cannot act and an AI agent must never
    /// approve its own (or another agent's) access.
    pub fn can_approve(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Operator)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_name_roundtrips() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), *role);
        }
        for principal in Principal::ALL {
            assert_eq!(principal.as_str().parse::<Principal>().unwrap(), *principal);
        }
        for kind in SessionKind::ALL {
            assert_eq!(kind.as_str().parse::<SessionKind>().unwrap(), *kind);
        }
        for effect in Effect::ALL {
            assert_eq!(effect.as_str().parse::<Effect>().unwrap(), *effect);
        }
    }

    #[test]
    fn near_misses_are_rejected_with_the_expected_names() {
        for bad in ["Admin", "admins", " admin", "", "AI_AGENT", "ai-agent"] {
            let error = bad.parse::<Role>().unwrap_err();
            assert_eq!(error.vocabulary, "role");
            assert_eq!(error.expected, "owner, admin, operator, viewer, ai_agent");
        }
    }

    #[test]
    fn echoed_values_cannot_carry_display_controls() {
        assert_eq!(
            clip("a\u{1b}[2Jb\u{202E}c\u{85}"),
            "a\u{FFFD}[2Jb\u{FFFD}c\u{FFFD}"
        );
        assert_eq!(clip("Europe/Berlin ü"), "Europe/Berlin ü");
    }

    #[test]
    fn long_rejected_values_are_cut_in_messages() {
        let error = "x".repeat(10_000).parse::<Mode>().unwrap_err();
        assert_eq!(error.value.len(), MAX_ECHOED_VALUE_CHARS);
    }
}
