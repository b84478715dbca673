//! Team policies as the service uses them: the stored document in force (compiled once per
//! version and cached), evaluation of a session request, and the wire `PolicyResult`.

use std::sync::Arc;

use tucdesk_policy::{Decision, Outcome, Policy};
use tucdesk_proto::v1::{
    AuditPolicyResult, ExecSpec, PolicyDecision, PolicyResult, PrincipalKind, Role as WireRole,
    SessionKind,
};
use tucdesk_token::Role;

use crate::caller::Caller;
use crate::error::RendezvousError;
use crate::service::Rendezvous;
use crate::store::{agents::Agent, policies};

/// Compiled policies kept per (team, version); a small team count per replica is the norm,
/// the bound keeps a flood of teams from growing memory.
const POLICY_CACHE_CAPACITY: u64 = 10_000;

/// Compiled policy documents by (team, version). A version never changes once saved, so
/// entries never go stale; a new version is a new key.
#[derive(Debug, Clone)]
pub struct PolicyCache {
    compiled: moka::future::Cache<(String, i64), Arc<Policy>>,
}

impl PolicyCache {
    pub fn new() -> Self {
        Self {
            compiled: moka::future::Cache::new(POLICY_CACHE_CAPACITY),
        }
    }
}

impl Default for PolicyCache {
    fn default() -> Self {
        Self::new()
    }
}

/// The policy in force for a team and its version (0 = the built-in default).
#[derive(Debug, Clone)]
pub struct TeamPolicy {
    pub policy: Arc<Policy>,
    pub version: u64,
}

/// The policy crate's role for a token role (the auditor has no session rights — it is
/// refused before policy — and is evaluated as a viewer, the least privileged role a rule can
/// name, where policy is explained for it).
pub fn policy_role(role: Role) -> tucdesk_policy::Role {
    match role {
        Role::Owner => tucdesk_policy::Role::Owner,
        Role::Admin => tucdesk_policy::Role::Admin,
        Role::Operator => tucdesk_policy::Role::Operator,
        Role::AiAgent => tucdesk_policy::Role::AiAgent,
        Role::Viewer | Role::Auditor => tucdesk_policy::Role::Viewer,
    }
}

/// The wire role of a policy role (approver lists).
pub fn wire_policy_role(role: tucdesk_policy::Role) -> WireRole {
    match role {
        tucdesk_policy::Role::Owner => WireRole::Owner,
        tucdesk_policy::Role::Admin => WireRole::Admin,
        tucdesk_policy::Role::Operator => WireRole::Operator,
        tucdesk_policy::Role::Viewer => WireRole::Viewer,
        tucdesk_policy::Role::AiAgent => WireRole::AiAgent,
    }
}

fn principal(kind: PrincipalKind) -> tucdesk_policy::Principal {
    match kind {
        PrincipalKind::Support => tucdesk_policy::Principal::Support,
        PrincipalKind::AiAgent => tucdesk_policy::Principal::AiAgent,
        _ => tucdesk_policy::Principal::User,
    }
}

/// The wire decision of a policy outcome.
pub fn wire_decision(outcome: Outcome) -> PolicyDecision {
    match outcome {
        Outcome::Allow => PolicyDecision::Allow,
        Outcome::Deny => PolicyDecision::Deny,
        Outcome::ApprovalRequired => PolicyDecision::ApprovalRequired,
    }
}

/// The wire result of a decision under a policy version.
pub fn policy_result(decision: &Decision, version: u64) -> PolicyResult {
    PolicyResult {
        decision: wire_decision(decision.outcome) as i32,
        rule: decision.rule.clone(),
        reason: decision.reason.clone(),
        approver: String::new(),
        approval_id: String::new(),
        policy_version: version,
    }
}

/// The audit form of a wire result.
pub fn audit_policy_result(result: &PolicyResult) -> AuditPolicyResult {
    AuditPolicyResult {
        decision: result.decision,
        rule: result.rule.clone(),
        reason: result.reason.clone(),
        approver: result.approver.clone(),
    }
}

impl Rendezvous {
    /// The team's policy in force, compiled (cached by version).
    pub async fn team_policy(&self, team_id: &str) -> Result<TeamPolicy, RendezvousError> {
        let Some(row) = policies::current(self.db(), team_id).await? else {
            return Ok(TeamPolicy {
                policy: Arc::new(Policy::builtin_default()),
                version: 0,
            });
        };
        let key = (team_id.to_owned(), row.version);
        let policy = match self.inner.policies.compiled.get(&key).await {
            Some(policy) => policy,
            None => {
                let parsed = Policy::parse(&row.yaml).map_err(|err| {
                    // A stored document was valid when saved; failing now means the
                    // language changed under it. Fail closed and say so in the log.
                    RendezvousError::internal("a stored policy no longer parses", err)
                })?;
                let policy = Arc::new(parsed.policy);
                self.inner
                    .policies
                    .compiled
                    .insert(key, policy.clone())
                    .await;
                policy
            }
        };
        Ok(TeamPolicy {
            policy,
            version: u64::try_from(row.version).unwrap_or(0),
        })
    }
}

/// What a session request is, for policy evaluation.
#[derive(Debug, Clone, Copy)]
pub struct SessionAsk<'a> {
    pub caller: &'a Caller,
    pub agent: &'a Agent,
    pub kind: SessionKind,
    pub exec: Option<&'a ExecSpec>,
    pub at_ms: i64,
}

/// Evaluates a session request under a policy (pure).
pub fn evaluate(policy: &Policy, ask: &SessionAsk<'_>) -> Decision {
    let kind = match ask.kind {
        SessionKind::Exec => tucdesk_policy::SessionKind::Exec,
        _ => tucdesk_policy::SessionKind::Shell,
    };
    let request = tucdesk_policy::Request {
        user_id: ask.caller.user_id(),
        email: ask.caller.claims.email.as_deref(),
        role: policy_role(ask.caller.role()),
        principal: principal(ask.caller.principal),
        agent_id: &ask.agent.row.agent_id,
        agent_name: &ask.agent.row.name,
        agent_tags: &ask.agent.tags,
        kind,
        exec_argv: ask.exec.map(|spec| spec.argv.as_slice()),
        at_unix_ms: ask.at_ms,
    };
    policy.evaluate(&request)
}
