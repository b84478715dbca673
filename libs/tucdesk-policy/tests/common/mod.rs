//! Helpers shared by the integration tests (each test file uses a different subset).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use tucdesk_policy::{Decision, Issue, Outcome, Policy, Principal, Request, Role, SessionKind};

/// Wednesday 2025-06-04 12:00:00 UTC.
pub const WEDNESDAY_NOON_UTC_MS: i64 = 1_749_038_400_000;

/// An owned request, so tests can tweak fields before borrowing a [`Request`].
#[derive(Debug, Clone)]
pub struct Req {
    pub user_id: String,
    pub email: Option<String>,
    pub role: Role,
    pub principal: Principal,
    pub agent_id: String,
    pub agent_name: String,
    pub tags: Vec<String>,
    pub kind: SessionKind,
    pub argv: Option<Vec<String>>,
    pub at_unix_ms: i64,
}

/// An operator (alice) opening a shell on agent `web-1` at Wednesday noon UTC.
pub fn req() -> Req {
    Req {
        user_id: "0190a1b2-0000-7000-8000-00000000a11c".to_owned(),
        email: Some("alice@example.com".to_owned()),
        role: Role::Operator,
        principal: Principal::User,
        agent_id: "3q2agentid0001".to_owned(),
        agent_name: "web-1".to_owned(),
        tags: Vec::new(),
        kind: SessionKind::Shell,
        argv: None,
        at_unix_ms: WEDNESDAY_NOON_UTC_MS,
    }
}

impl Req {
    pub fn request(&self) -> Request<'_> {
        Request {
            user_id: &self.user_id,
            email: self.email.as_deref(),
            role: self.role,
            principal: self.principal,
            agent_id: &self.agent_id,
            agent_name: &self.agent_name,
            agent_tags: &self.tags,
            kind: self.kind,
            exec_argv: self.argv.as_deref(),
            at_unix_ms: self.at_unix_ms,
        }
    }

    /// The same request as an exec of `command` (split on spaces into argv).
    pub fn exec(mut self, command: &str) -> Req {
        self.kind = SessionKind::Exec;
        self.argv = Some(command.split(' ').map(str::to_owned).collect());
        self
    }

    pub fn tags(mut self, tags: &[&str]) -> Req {
        self.tags = tags.iter().map(|tag| (*tag).to_owned()).collect();
        self
    }

    pub fn at(mut self, utc: &str) -> Req {
        let instant: jiff::Timestamp = utc.parse().unwrap();
        self.at_unix_ms = instant.as_millisecond();
        self
    }
}

/// Parses a document that must be valid.
pub fn policy(yaml: &str) -> Policy {
    match Policy::parse(yaml) {
        Ok(parsed) => parsed.policy,
        Err(errors) => panic!("document should be valid, got {:#?}\n{yaml}", errors.errors),
    }
}

pub fn decide(yaml: &str, request: &Req) -> Decision {
    policy(yaml).evaluate(&request.request())
}

/// The errors of a document that must be invalid.
pub fn errors(yaml: &str) -> Vec<Issue> {
    match Policy::parse(yaml) {
        Ok(_) => panic!("document should be invalid:\n{yaml}"),
        Err(errors) => {
            assert!(!errors.errors.is_empty());
            errors.errors
        }
    }
}

/// The warnings of a document that must be valid.
pub fn warnings(yaml: &str) -> Vec<Issue> {
    match Policy::parse(yaml) {
        Ok(parsed) => parsed.warnings,
        Err(errors) => panic!("document should be valid, got {:#?}\n{yaml}", errors.errors),
    }
}

/// A `mode: deny` document whose only rule, `probe`, allows and has the given matcher lines;
/// the request matches the matchers exactly when it is allowed by `probe`.
pub fn probe_document(matcher_lines: &str) -> String {
    let indented: String = matcher_lines
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    format!("version: 1\nmode: deny\nrules:\n  - name: probe\n    effect: allow\n{indented}")
}

pub fn matches(matcher_lines: &str, request: &Req) -> bool {
    let decision = decide(&probe_document(matcher_lines), request);
    match decision.outcome {
        Outcome::Allow => {
            assert_eq!(decision.rule, "probe");
            true
        }
        Outcome::Deny => {
            assert_eq!(decision.rule, tucdesk_policy::DEFAULT_RULE);
            false
        }
        Outcome::ApprovalRequired => panic!("no approval rule in a probe document"),
    }
}

/// Messages of issues, for assertions that print well.
pub fn messages(issues: &[Issue]) -> Vec<&str> {
    issues.iter().map(|issue| issue.message.as_str()).collect()
}

/// A valid document with one rule made of `rule_lines` (each indented under the rule).
pub fn with_rule(rule_lines: &str) -> String {
    let indented: String = rule_lines
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    format!("version: 1\nmode: allow\nrules:\n  - name: r\n{indented}")
}

/// The single error of an invalid document, checked to contain `needle` and sit on `line`.
pub fn single_error(yaml: &str, needle: &str, line: u32) -> Issue {
    let errors = errors(yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = errors.into_iter().next().unwrap();
    assert!(
        error.message.contains(needle),
        "{needle:?} not in {:?}",
        error.message
    );
    assert_eq!(error.line, line, "{error:?}");
    error
}
