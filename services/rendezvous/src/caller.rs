//! Who is calling OperatorService, and may they.
//!
//! - [`Rendezvous::caller`]: a valid access token from auth (signature against auth's JWKS,
//!   issuer, audience, expiry). `team_id` comes from these claims and nowhere else.
//! - [`Rendezvous::sensitive_caller`]: the same plus a device proof for this exact request by
//!   the key the token is bound to (`cnf.jkt`), so a stolen access token alone changes nothing.
//! - [`Caller::require`]: the caller's role is one of those an action allows.

use subtle::ConstantTimeEq as _;
use tonic::Request;
use tucdesk_crypto::{DeviceProof as CryptoProof, DeviceProofContext, DeviceProofError};
use tucdesk_proto::v1::{DeviceProof, OperatorIdentity, PrincipalKind, Role as WireRole};
use tucdesk_token::{AccessClaims, RequireCnf, Role, TokenError};

use crate::error::RendezvousError;
use crate::service::Rendezvous;

/// Longest `authorization` header accepted ("Bearer " + a token).
const MAX_BEARER_LEN: usize = tucdesk_proto::limits::MAX_TOKEN_LEN + 16;

/// Prefix of support principals' subject (`support:<code id>:<use>`), as auth issues them.
const SUPPORT_SUBJECT_PREFIX: &str = "support:";

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: AccessClaims,
    pub principal: PrincipalKind,
}

/// What a support code reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupportScope<'a> {
    Agent(&'a str),
    Tag(&'a str),
    /// A scope this build does not understand: reaches nothing (fail closed).
    Nothing,
}

/// The request fields a device proof covers, per method (`docs/protocol.md`, "Device proofs").
#[derive(Debug, Clone, Copy)]
pub struct ProofScope<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub session_id: &'a str,
    pub binding: &'a [u8],
}

impl Caller {
    pub fn team_id(&self) -> &str {
        &self.claims.team_id
    }

    pub fn user_id(&self) -> &str {
        &self.claims.sub
    }

    pub fn role(&self) -> Role {
        self.claims.role
    }

    /// The device key thumbprint the token is bound to (absent for AI agents, which prove
    /// their client instead).
    pub fn device_jkt(&self) -> Option<&str> {
        self.claims.cnf.as_ref().map(|cnf| cnf.jkt.as_str())
    }

    /// A human, logged in with email, password and device key (only humans approve).
    pub fn is_human_user(&self) -> bool {
        self.principal == PrincipalKind::User && self.role() != Role::AiAgent
    }

    /// Whether the caller may decide approval requests at all (the request's approver roles
    /// decide the rest): a human, and not an auditor, who only reads.
    pub fn may_decide_approvals(&self) -> bool {
        self.is_human_user() && self.role() != Role::Auditor
    }

    /// Refuses callers whose role is not in `allowed`.
    pub fn require(&self, allowed: &[Role]) -> Result<(), RendezvousError> {
        if allowed.contains(&self.role()) {
            Ok(())
        } else {
            Err(RendezvousError::PermissionDenied(
                "your role does not allow this",
            ))
        }
    }

    /// Whether the caller administers the team.
    pub fn is_admin(&self) -> bool {
        matches!(self.role(), Role::Owner | Role::Admin)
    }

    /// The caller as agents, approvers and the audit log see them (from claims only). A
    /// support principal has no email: `client_id` is its code id and the display name says
    /// which code until auth names the technician (`MintSessionToken`, before the offer).
    pub fn identity(&self) -> OperatorIdentity {
        let (display_name, client_id) = match self.support_code_id() {
            Some(code_id) => (format!("support code {code_id}"), code_id.to_owned()),
            None => (
                self.claims.email.clone().unwrap_or_default(),
                self.claims.client_id.clone().unwrap_or_default(),
            ),
        };
        OperatorIdentity {
            user_id: self.user_id().to_owned(),
            email: self.claims.email.clone().unwrap_or_default(),
            display_name,
            role: wire_role(self.role()) as i32,
            device_key_thumbprint: self.device_jkt().unwrap_or_default().to_owned(),
            principal_kind: self.principal as i32,
            client_id,
        }
    }

    /// For a support principal, the id of the code it redeemed (its subject is
    /// `support:<code id>:<use>`); `None` for everyone else.
    pub fn support_code_id(&self) -> Option<&str> {
        if self.principal != PrincipalKind::Support {
            return None;
        }
        self.user_id()
            .strip_prefix(SUPPORT_SUBJECT_PREFIX)
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(code_id, _use)| code_id)
    }

    /// For a support principal, the agents its code reaches (`agent:<id>` or `tag:<tag>`);
    /// `None` for everyone else. Outside it, agents do not exist for the caller.
    pub fn support_scope(&self) -> Option<SupportScope<'_>> {
        if self.principal != PrincipalKind::Support {
            return None;
        }
        let scope = self.claims.scp.as_deref().unwrap_or_default();
        Some(if let Some(agent_id) = scope.strip_prefix("agent:") {
            SupportScope::Agent(agent_id)
        } else if let Some(tag) = scope.strip_prefix("tag:") {
            SupportScope::Tag(tag)
        } else {
            SupportScope::Nothing
        })
    }

    /// Whether the caller may see this agent at all (support principals: only within scope).
    pub fn sees_agent(&self, agent_id: &str, tags: &[String]) -> bool {
        match self.support_scope() {
            None => true,
            Some(SupportScope::Agent(id)) => id == agent_id,
            Some(SupportScope::Tag(tag)) => tags.iter().any(|t| t == tag),
            Some(SupportScope::Nothing) => false,
        }
    }

    /// The audit label of the principal kind.
    pub fn principal_label(&self) -> &'static str {
        match self.principal {
            PrincipalKind::Support => "support",
            PrincipalKind::AiAgent => "ai_agent",
            _ => "user",
        }
    }
}

/// The wire form of a role.
pub fn wire_role(role: Role) -> WireRole {
    match role {
        Role::Owner => WireRole::Owner,
        Role::Admin => WireRole::Admin,
        Role::Operator => WireRole::Operator,
        Role::Viewer => WireRole::Viewer,
        Role::AiAgent => WireRole::AiAgent,
        Role::Auditor => WireRole::Auditor,
    }
}

/// The bearer token of a request.
pub fn bearer<T>(request: &Request<T>) -> Result<&str, RendezvousError> {
    let value = request
        .metadata()
        .get(tucdesk_proto::metadata::AUTHORIZATION)
        .ok_or(RendezvousError::Unauthenticated(
            "an access token is required",
        ))?
        .to_str()
        .map_err(|_| RendezvousError::Unauthenticated("malformed authorization header"))?;
    if value.len() > MAX_BEARER_LEN {
        return Err(RendezvousError::Unauthenticated(
            "authorization header too long",
        ));
    }
    value
        .strip_prefix("Bearer ")
        .ok_or(RendezvousError::Unauthenticated("expected a Bearer token"))
}

fn principal_of(claims: &AccessClaims) -> PrincipalKind {
    if claims.sub.starts_with(SUPPORT_SUBJECT_PREFIX) && claims.scp.is_some() {
        PrincipalKind::Support
    } else if claims.client_id.is_some() {
        PrincipalKind::AiAgent
    } else {
        PrincipalKind::User
    }
}

impl Rendezvous {
    /// The authenticated caller of `request`.
    pub async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, RendezvousError> {
        let token = bearer(request)?;
        let verify = || {
            self.inner.auth.verifier().verify_access(
                token,
                tucdesk_token::unix_now(),
                RequireCnf::No,
            )
        };
        let claims = match verify() {
            Err(TokenError::UnknownKey) => {
                // Auth may have rotated its key since our last fetch.
                self.inner.auth.refresh_for_unknown_kid().await;
                verify()
            }
            other => other,
        }
        .map_err(|err| match err {
            TokenError::Expired => RendezvousError::TokenExpired,
            _ => RendezvousError::Unauthenticated("the access token is invalid"),
        })?;
        let principal = principal_of(&claims);
        // Every principal but an AI agent is bound to a device key.
        if principal != PrincipalKind::AiAgent && claims.cnf.is_none() {
            return Err(RendezvousError::Unauthenticated(
                "the access token is not bound to a device key",
            ));
        }
        Ok(Caller { claims, principal })
    }

    /// The authenticated caller, who also proved possession of the token's device key for
    /// this request.
    pub async fn sensitive_caller<T>(
        &self,
        request: &Request<T>,
        proof: Option<&DeviceProof>,
        scope: ProofScope<'_>,
    ) -> Result<Caller, RendezvousError> {
        let caller = self.caller(request).await?;
        let bound = caller
            .device_jkt()
            .ok_or(RendezvousError::PermissionDenied(
                "this action needs a person's device key",
            ))?
            .to_owned();
        let ctx = DeviceProofContext {
            method: scope.method,
            target: scope.target,
            session_id: scope.session_id,
            binding: scope.binding,
            challenge: b"",
        };
        self.verify_device_proof(proof, &ctx, &bound).await?;
        Ok(caller)
    }

    /// Verifies a device proof for `ctx` by the key with thumbprint `expected_jkt`, once.
    async fn verify_device_proof(
        &self,
        proof: Option<&DeviceProof>,
        ctx: &DeviceProofContext<'_>,
        expected_jkt: &str,
    ) -> Result<(), RendezvousError> {
        let proof = proof.ok_or(RendezvousError::ProofInvalid("a device proof is required"))?;
        let parsed = CryptoProof::from_parts(
            &proof.public_key,
            proof.timestamp_ms,
            &proof.nonce,
            &proof.signature,
        )
        .map_err(|_| RendezvousError::ProofInvalid("malformed proof"))?;
        let now = u64::try_from(tucdesk_svc::sql::now_ms()).unwrap_or(0);
        parsed
            .verify(ctx, now, Some(expected_jkt))
            .map_err(|err| match err {
                DeviceProofError::KeyMismatch => RendezvousError::DeviceKeyMismatch,
                _ => RendezvousError::ProofInvalid("signature, clock or fields do not verify"),
            })?;
        let fresh = self
            .inner
            .replay
            .insert_if_absent(&parsed.replay_key(), tucdesk_crypto::REPLAY_WINDOW)
            .await
            .map_err(|err| RendezvousError::internal("proof replay cache", err))?;
        if !fresh {
            return Err(RendezvousError::ProofInvalid("proof was replayed"));
        }
        Ok(())
    }
}

/// Constant-time equality of two thumbprints.
pub fn same_thumbprint(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(sub: &str, scp: Option<&str>, client_id: Option<&str>) -> Caller {
        let claims = AccessClaims {
            iss: "https://auth".into(),
            sub: sub.into(),
            aud: tucdesk_token::Audience::One("tucdesk".into()),
            team_id: "team".into(),
            email: None,
            role: Role::Viewer,
            iat: 0,
            exp: 1,
            nbf: None,
            jti: "j".into(),
            cnf: Some(tucdesk_token::Cnf::jkt("thumbprint")),
            client_id: client_id.map(str::to_owned),
            scp: scp.map(str::to_owned),
            kinds: None,
        };
        let principal = principal_of(&claims);
        Caller { claims, principal }
    }

    #[test]
    fn a_support_principal_is_shown_with_its_code() {
        let code = "0193a8c4-0000-7000-8000-000000000001";
        let tech = caller(&format!("support:{code}:2"), Some("tag:kiosk"), None);
        assert_eq!(tech.principal, PrincipalKind::Support);
        assert_eq!(tech.support_code_id(), Some(code));
        assert_eq!(tech.support_scope(), Some(SupportScope::Tag("kiosk")));
        let identity = tech.identity();
        assert_eq!(identity.client_id, code);
        assert_eq!(identity.display_name, format!("support code {code}"));
        assert_eq!(identity.principal_kind, PrincipalKind::Support as i32);
        assert!(tech.sees_agent("a", &["kiosk".into()]));
        assert!(!tech.sees_agent("a", &["db".into()]));

        // Without a scope it is not a support principal, and people have no code.
        let odd = caller(&format!("support:{code}:2"), None, None);
        assert_eq!(odd.principal, PrincipalKind::User);
        assert_eq!(odd.support_code_id(), None);
        let agent = caller("user-1", Some("sessions:exec"), Some("client-1"));
        assert_eq!(agent.support_code_id(), None);
        assert_eq!(agent.identity().client_id, "client-1");
    }

    #[test]
    fn auditors_read_agents_but_open_approve_and_administer_nothing() {
        let mut auditor = caller("user-a", None, None);
        auditor.claims.role = Role::Auditor;
        assert_eq!(wire_role(Role::Auditor), WireRole::Auditor);
        assert!(auditor.is_human_user());
        assert!(!auditor.may_decide_approvals());
        assert!(!auditor.is_admin());
        assert!(auditor.require(crate::agents_api::AGENT_READERS).is_ok());
        assert!(auditor.require(crate::agents_api::READERS).is_err());
        assert!(auditor.require(crate::agents_api::ADMINS).is_err());
        let viewer = caller("user-v", None, None);
        assert!(viewer.may_decide_approvals());
        // Every role has a wire value of its own.
        let wire: std::collections::BTreeSet<i32> =
            Role::ALL.into_iter().map(|r| wire_role(r) as i32).collect();
        assert_eq!(wire.len(), Role::ALL.len());
    }
}
