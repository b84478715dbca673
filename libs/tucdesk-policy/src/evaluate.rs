//! Evaluation: the request model, the decision, and the decision procedure.
//!
//! 1. Every rule whose matchers all match the request is a matching rule.
//! 2. Any matching `deny` rule denies; the first in document order decides. Order never lets an
//!    allow rule beat a deny rule.
//! 3. Otherwise the first matching `allow` rule allows, or else the mode decides
//!    ([`DEFAULT_RULE`]).
//! 4. If allowed and a `require_approval` rule matches, the first such rule asks for approval. It
//!    never grants access itself.
//! 5. Otherwise the request is allowed.

use std::time::Duration;

use crate::matcher::{Facts, Matchers};
use crate::names::{Effect, Mode, Outcome, Principal, Role, SessionKind};

/// Name reported as the deciding rule when no rule decided (the mode did).
pub const DEFAULT_RULE: &str = "default";

/// Reason given when `mode: allow` lets a request through that no rule allowed.
const DEFAULT_ALLOW_REASON: &str = "no rule matched and the policy allows by default";

/// Reason given when `mode: deny` refuses a request that no rule allowed.
const DEFAULT_DENY_REASON: &str = "no rule allows this and the policy denies by default";

/// Everything the policy can look at about a session request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The caller's user id (exact match against `users` entries without `@`).
    pub user_id: &'a str,
    /// The caller's email, if known (ASCII case-insensitive match against entries with `@`).
    pub email: Option<&'a str>,
    /// The caller's role in the team.
    pub role: Role,
    /// How the caller authenticated.
    pub principal: Principal,
    /// The target agent's id.
    pub agent_id: &'a str,
    /// The target agent's name (what `agents` globs match).
    pub agent_name: &'a str,
    /// The target agent's tags, e.g. `env=prod`.
    pub agent_tags: &'a [String],
    /// Shell or exec.
    pub kind: SessionKind,
    /// argv of an exec request (None for shell).
    pub exec_argv: Option<&'a [String]>,
    /// Evaluation instant, Unix milliseconds UTC (the caller's clock; lets ExplainPolicy ask "what at time T").
    pub at_unix_ms: i64,
}

/// The outcome of an evaluation and what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow, deny, or allow after approval.
    pub outcome: Outcome,
    /// Deciding rule name, or DEFAULT_RULE.
    pub rule: String,
    /// Human-readable reason: the rule's `reason`, or one generated from rule and effect.
    pub reason: String,
    /// Non-empty only for ApprovalRequired.
    pub approver_roles: Vec<Role>,
    /// Meaningful only for ApprovalRequired (zero otherwise).
    pub approval_timeout: Duration,
}

/// A validated rule, ready to match.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub name: String,
    pub effect: Effect,
    /// The rule's `reason`, or the generated one.
    pub reason: String,
    pub matchers: Matchers,
    /// The rule's own `approvers` (require_approval rules only).
    pub approvers: Option<Vec<Role>>,
}

/// The reason a rule gives when the document does not say.
pub(crate) fn generated_reason(effect: Effect, name: &str) -> String {
    match effect {
        Effect::Allow => format!("allowed by rule \"{name}\""),
        Effect::Deny => format!("denied by rule \"{name}\""),
        Effect::RequireApproval => format!("approval required by rule \"{name}\""),
    }
}

/// Decides a request; see the module documentation for the procedure.
pub(crate) fn evaluate(
    rules: &[Rule],
    mode: Mode,
    default_approvers: &[Role],
    approval_timeout: Duration,
    request: &Request<'_>,
) -> Decision {
    let facts = Facts::new(request);
    let mut first_allow: Option<&Rule> = None;
    let mut first_approval: Option<&Rule> = None;
    for rule in rules {
        // Only the first match of allow and require_approval rules matters, so later ones need
        // not be matched; every deny rule must be, since a deny anywhere wins.
        let already_decided = match rule.effect {
            Effect::Deny => false,
            Effect::Allow => first_allow.is_some(),
            Effect::RequireApproval => first_approval.is_some(),
        };
        if already_decided || !rule.matchers.matches(&facts) {
            continue;
        }
        match rule.effect {
            // Scanning in document order, the first matching deny is the deciding one.
            Effect::Deny => return decision(Outcome::Deny, &rule.name, &rule.reason),
            Effect::Allow => first_allow = Some(rule),
            Effect::RequireApproval => first_approval = Some(rule),
        }
    }
    let allowed_by = match (first_allow, mode) {
        (Some(rule), _) => decision(Outcome::Allow, &rule.name, &rule.reason),
        (None, Mode::Allow) => decision(Outcome::Allow, DEFAULT_RULE, DEFAULT_ALLOW_REASON),
        (None, Mode::Deny) => return decision(Outcome::Deny, DEFAULT_RULE, DEFAULT_DENY_REASON),
    };
    match first_approval {
        Some(rule) => Decision {
            approver_roles: rule
                .approvers
                .as_deref()
                .unwrap_or(default_approvers)
                .to_vec(),
            approval_timeout,
            ..decision(Outcome::ApprovalRequired, &rule.name, &rule.reason)
        },
        None => allowed_by,
    }
}

fn decision(outcome: Outcome, rule: &str, reason: &str) -> Decision {
    Decision {
        outcome,
        rule: rule.to_owned(),
        reason: reason.to_owned(),
        approver_roles: Vec::new(),
        approval_timeout: Duration::ZERO,
    }
}
