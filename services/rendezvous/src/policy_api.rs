//! OperatorService policy methods: get (operator and up), put (admin, device proof,
//! compare-and-swap on the version), validate, explain.

use sha2::{Digest as _, Sha256};
use tonic::Request;
use tucdesk_policy::{Issue, Policy};
use tucdesk_proto::limits::MAX_POLICY_YAML_LEN;
use tucdesk_proto::v1::{
    ExplainPolicyRequest, GetPolicyRequest, Policy as WirePolicy, PolicyIssue, PolicyResult,
    PutPolicyRequest, PutPolicyResponse, SessionKind, ValidatePolicyRequest,
    ValidatePolicyResponse,
};
use tucdesk_proto::validate;
use tucdesk_svc::sql::now_ms;
use tucdesk_token::{AccessClaims, Role};

use crate::agents_api::ADMINS;
use crate::caller::{Caller, ProofScope};
use crate::error::RendezvousError;
use crate::policy::{SessionAsk, audit_policy_result, evaluate, policy_result};
use crate::service::Rendezvous;
use crate::sessions::user_event;
use crate::store::policies::{self, PolicyRow};
use crate::store::{agents, timestamp, timestamp_ms};

pub use tucdesk_crypto::proof_scopes::{PUT_POLICY as PUT_METHOD, PUT_POLICY_TARGET as PUT_TARGET};

/// Roles that may read the policy.
const POLICY_READERS: &[Role] = &[Role::Owner, Role::Admin, Role::Operator];

pub use tucdesk_crypto::proof_scopes::put_policy_binding as put_binding;

fn issues(list: &[Issue]) -> Vec<PolicyIssue> {
    list.iter()
        .map(|issue| {
            let mut message = issue.message.clone();
            message.truncate(tucdesk_proto::limits::MAX_MESSAGE_LEN);
            PolicyIssue {
                line: issue.line,
                column: issue.column,
                message,
            }
        })
        .collect()
}

fn check_size(yaml: &str) -> Result<(), RendezvousError> {
    if yaml.len() > MAX_POLICY_YAML_LEN {
        return Err(RendezvousError::InvalidArgument(
            "the policy document is larger than 256 KiB".into(),
        ));
    }
    Ok(())
}

impl Rendezvous {
    pub async fn get_policy(
        &self,
        request: &Request<GetPolicyRequest>,
    ) -> Result<WirePolicy, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(POLICY_READERS)?;
        Ok(
            match policies::current(self.db(), caller.team_id()).await? {
                Some(row) => WirePolicy {
                    yaml: row.yaml,
                    version: u64::try_from(row.version).unwrap_or(0),
                    updated_at: Some(timestamp(row.updated_at_ms)),
                    updated_by: row.updated_by,
                },
                None => WirePolicy {
                    yaml: Policy::builtin_default_yaml().to_owned(),
                    version: 0,
                    updated_at: None,
                    updated_by: String::new(),
                },
            },
        )
    }

    pub async fn put_policy(
        &self,
        request: &Request<PutPolicyRequest>,
    ) -> Result<PutPolicyResponse, RendezvousError> {
        let body = request.get_ref();
        check_size(&body.yaml)?;
        let binding = put_binding(body.expected_version, &body.yaml);
        let caller = self
            .sensitive_caller(
                request,
                body.proof.as_ref(),
                ProofScope {
                    method: PUT_METHOD,
                    target: PUT_TARGET,
                    session_id: "",
                    binding: &binding,
                },
            )
            .await?;
        caller.require(ADMINS)?;
        let parsed = Policy::parse(&body.yaml).map_err(|err| {
            let first = err
                .errors
                .first()
                .map(|i| format!("line {}: {}", i.line, i.message))
                .unwrap_or_default();
            RendezvousError::InvalidArgument(format!(
                "the policy is invalid ({} problem(s); ValidatePolicy lists them): {first}",
                err.errors.len()
            ))
        })?;
        let mut tx = self.db().begin().await?;
        let current = policies::current_version(&mut tx, caller.team_id()).await?;
        let current_u64 = u64::try_from(current).unwrap_or(0);
        if current_u64 != body.expected_version {
            return Err(RendezvousError::VersionConflict {
                current: current_u64,
            });
        }
        let version = current + 1;
        let row = PolicyRow {
            team_id: caller.team_id().to_owned(),
            version,
            yaml: body.yaml.clone(),
            updated_at_ms: now_ms(),
            updated_by: caller.user_id().to_owned(),
        };
        if !policies::insert(&mut tx, &row).await? {
            return Err(RendezvousError::VersionConflict {
                current: current_u64 + 1,
            });
        }
        let record = user_event(&caller, "policy.updated")
            .target("policy")
            .context("outcome", "success")
            .context("policy_version", version)
            .context("previous_version", current)
            .context("sha256", hex(&Sha256::digest(body.yaml.as_bytes())))
            .context("rules", parsed.policy.rule_names().count());
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(PutPolicyResponse {
            version: u64::try_from(version).unwrap_or(0),
            warnings: issues(&parsed.warnings),
        })
    }

    pub async fn validate_policy(
        &self,
        request: &Request<ValidatePolicyRequest>,
    ) -> Result<ValidatePolicyResponse, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(POLICY_READERS)?;
        let yaml = &request.get_ref().yaml;
        check_size(yaml)?;
        Ok(match Policy::parse(yaml) {
            Ok(parsed) => ValidatePolicyResponse {
                valid: true,
                errors: Vec::new(),
                warnings: issues(&parsed.warnings),
            },
            Err(err) => ValidatePolicyResponse {
                valid: false,
                errors: issues(&err.errors),
                warnings: Vec::new(),
            },
        })
    }

    /// What the policy in force would decide for a request, without opening anything.
    pub async fn explain_policy(
        &self,
        request: &Request<ExplainPolicyRequest>,
    ) -> Result<PolicyResult, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(POLICY_READERS)?;
        let body = request.get_ref();
        validate::agent_id("agent_id", &body.agent_id).map_err(RendezvousError::invalid)?;
        let kind = match SessionKind::try_from(body.kind) {
            Ok(SessionKind::Exec) => {
                let exec = body
                    .exec
                    .as_ref()
                    .ok_or_else(|| RendezvousError::InvalidArgument("exec is required".into()))?;
                validate::exec_spec(exec).map_err(RendezvousError::invalid)?;
                SessionKind::Exec
            }
            Ok(SessionKind::Shell) => SessionKind::Shell,
            _ => {
                return Err(RendezvousError::InvalidArgument(
                    "kind must be shell or exec".into(),
                ));
            }
        };
        // Asking about someone else is an admin's question, and only about the caller's team.
        // Without the other user's token we know only their id: they are evaluated with the
        // caller's role and principal, which the result says.
        let subject = if body.user_id.is_empty() || body.user_id == caller.user_id() {
            caller.clone()
        } else {
            if !caller.is_admin() {
                return Err(RendezvousError::PermissionDenied(
                    "only admins may ask about other users",
                ));
            }
            if body.user_id.len() > 128 {
                return Err(RendezvousError::InvalidArgument(
                    "user_id: at most 128 bytes".into(),
                ));
            }
            Caller {
                claims: AccessClaims {
                    sub: body.user_id.clone(),
                    email: None,
                    ..caller.claims.clone()
                },
                principal: caller.principal,
            }
        };
        let agent = agents::find_in_team(self.db(), caller.team_id(), &body.agent_id)
            .await?
            .ok_or(RendezvousError::NotFound("agent"))?;
        let at_ms = body.at.as_ref().map_or_else(now_ms, timestamp_ms);
        let team_policy = self.team_policy(caller.team_id()).await?;
        let decision = evaluate(
            &team_policy.policy,
            &SessionAsk {
                caller: &subject,
                agent: &agent,
                kind,
                exec: body.exec.as_ref(),
                at_ms,
            },
        );
        let result = policy_result(&decision, team_policy.version);
        let record = user_event(&caller, "policy.explained")
            .target(format!("agent:{}", agent.row.agent_id))
            .policy_result(audit_policy_result(&result))
            .context("subject", subject.user_id())
            .context("at_ms", at_ms);
        self.audit_alone(record).await?;
        Ok(result)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
