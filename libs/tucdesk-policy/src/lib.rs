//! TucDesk session policy (SPEC §4): parsing and evaluation. See `docs/policy.md`.
//!
//! A team stores one YAML policy document; the rendezvous service evaluates it before every
//! session. [`Policy::parse`] validates and compiles a document (reporting every problem with
//! its line), [`Policy::evaluate`] decides a [`Request`]. Evaluation is pure: no I/O, no clock
//! (the caller passes the instant), so the same document and request always give the same
//! [`Decision`]. Deny rules always win; the decision names the deciding rule and a reason.
//!
//! ```
//! use tucdesk_policy::{Outcome, Policy, Principal, Request, Role, SessionKind};
//!
//! let parsed = Policy::parse(
//!     "version: 1\nmode: allow\nrules:\n  - name: no-ai-shells\n    effect: deny\n    roles: [ai_agent]\n    kinds: [shell]\n",
//! )?;
//! let request = Request {
//!     user_id: "0190a1b2-0000-7000-8000-000000000001",
//!     email: None,
//!     role: Role::AiAgent,
//!     principal: Principal::AiAgent,
//!     agent_id: "agent-1",
//!     agent_name: "web-1",
//!     agent_tags: &[],
//!     kind: SessionKind::Shell,
//!     exec_argv: None,
//!     at_unix_ms: 1_750_000_000_000,
//! };
//! let decision = parsed.policy.evaluate(&request);
//! assert_eq!(decision.outcome, Outcome::Deny);
//! assert_eq!(decision.rule, "no-ai-shells");
//! # Ok::<(), tucdesk_policy::PolicyErrors>(())
//! ```
#![forbid(unsafe_code)]

mod bounded;
mod compile;
mod document;
mod duration;
mod evaluate;
pub mod limits;
mod locate;
mod matcher;
mod names;
mod pattern;
mod rule;
mod warnings;
mod window;

use std::fmt;
use std::time::Duration;

pub use evaluate::{DEFAULT_RULE, Decision, Request};
pub use limits::{MAX_DOCUMENT_BYTES, MAX_ISSUE_MESSAGE_BYTES, MAX_RULES};
pub use names::{Effect, Mode, Outcome, Principal, Role, SessionKind, UnknownName};

/// One problem (or warning) in a document, at a 1-based line and column (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// 1-based line, 0 if unknown.
    pub line: u32,
    /// 1-based column, 0 if unknown.
    pub column: u32,
    /// What is wrong, for a person.
    pub message: String,
}

impl Issue {
    /// An issue at `line`/`column`, its message made safe to print: display controls replaced
    /// (line breaks kept, for regex error diagrams) and cut to [`MAX_ISSUE_MESSAGE_BYTES`].
    pub(crate) fn new(line: u32, column: u32, message: &str) -> Issue {
        const ELLIPSIS: char = '…';
        let mut text: String = message
            .chars()
            .map(|c| if c == '\n' { c } else { names::displayable(c) })
            .collect();
        if text.len() > MAX_ISSUE_MESSAGE_BYTES {
            let mut cut = MAX_ISSUE_MESSAGE_BYTES - ELLIPSIS.len_utf8();
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push(ELLIPSIS);
        }
        Issue {
            line,
            column,
            message: text,
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => f.write_str(&self.message),
            (line, 0) => write!(f, "line {line}: {}", self.message),
            (line, column) => write!(f, "line {line}, column {column}: {}", self.message),
        }
    }
}

/// Why a document was refused: every problem found, in document order where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the policy document is invalid ({} problem(s))", .errors.len())]
pub struct PolicyErrors {
    /// At least one problem.
    pub errors: Vec<Issue>,
}

/// A successful parse: the policy and any non-fatal warnings about it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The validated, compiled policy.
    pub policy: Policy,
    /// Rules that cannot do what they appear to (see docs/policy.md, "Warnings").
    pub warnings: Vec<Issue>,
}

/// A parsed, validated, compiled document. Cheap to share (the service keeps it in an Arc).
#[derive(Debug, Clone)]
pub struct Policy {
    mode: Mode,
    approval_timeout: Duration,
    default_approvers: Vec<Role>,
    rules: Vec<evaluate::Rule>,
}

/// The YAML of [`Policy::builtin_default`].
const BUILTIN_DEFAULT_YAML: &str = "\
# TucDesk built-in policy: in force while the team has not saved a policy of its own.
# It allows every session. Saving a policy replaces it; see docs/policy.md for the language.
version: 1
# allow: a session is allowed unless a deny rule matches (deny: only allow rules let it in).
mode: allow
approval:
  # How long a require_approval request waits for an approver.
  timeout: 15m
  # Who may approve when a require_approval rule names nobody itself.
  approvers: [owner, admin]
# Rules are checked in order; any matching deny rule wins. None yet.
rules: []
";

impl Policy {
    /// Parses and validates a YAML document (checks MAX_DOCUMENT_BYTES first).
    pub fn parse(yaml: &str) -> Result<Parsed, PolicyErrors> {
        if yaml.len() > MAX_DOCUMENT_BYTES {
            return Err(single_error(format!(
                "the document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                yaml.len()
            )));
        }
        let raw = document::parse_raw(yaml).map_err(|error| syntax_error(&error))?;
        match compile::compile(yaml, raw) {
            Ok((policy, warnings)) => Ok(Parsed { policy, warnings }),
            Err(errors) => Err(PolicyErrors { errors }),
        }
    }

    /// The built-in policy of a team that never stored one: `version: 1, mode: allow`, no rules
    /// (15m approval timeout, approvers owner+admin).
    pub fn builtin_default() -> Policy {
        Policy {
            mode: Mode::Allow,
            approval_timeout: limits::DEFAULT_APPROVAL_TIMEOUT,
            default_approvers: compile::DEFAULT_APPROVERS.to_vec(),
            rules: Vec::new(),
        }
    }

    /// The YAML text of the built-in default (for GetPolicy when nothing is stored), commented.
    pub fn builtin_default_yaml() -> &'static str {
        BUILTIN_DEFAULT_YAML
    }

    /// Default-allow or default-deny.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How long an approval request waits (`approval.timeout`).
    pub fn approval_timeout(&self) -> Duration {
        self.approval_timeout
    }

    /// Approver roles of require_approval rules that name none (`approval.approvers`).
    pub fn default_approvers(&self) -> &[Role] {
        &self.default_approvers
    }

    /// Rule names in document order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|rule| rule.name.as_str())
    }

    /// Decides a request. Pure and deterministic.
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        evaluate::evaluate(
            &self.rules,
            self.mode,
            &self.default_approvers,
            self.approval_timeout,
            request,
        )
    }
}

fn single_error(message: String) -> PolicyErrors {
    PolicyErrors {
        errors: vec![Issue::new(0, 0, &message)],
    }
}

/// A YAML syntax or shape error, with yaml_serde's position moved from the message into the
/// issue's fields.
fn syntax_error(error: &yaml_serde::Error) -> PolicyErrors {
    let mut message = error.to_string();
    let (line, column) = match error.location() {
        Some(location) => {
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
            let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            (to_u32(location.line()), to_u32(location.column()))
        }
        None => (0, 0),
    };
    PolicyErrors {
        errors: vec![Issue::new(line, column, &message)],
    }
}
