//! `AuthInternal`: calls from other TucDesk services, authenticated by a service assertion
//! (never by a user's token). Today: `MintSessionToken` for rendezvous.

use std::time::Duration;

use subtle::ConstantTimeEq as _;
use tonic::{Request, Response, Status};
use tucdesk_proto::v1::auth_internal_server::AuthInternal;
use tucdesk_proto::v1::{
    ActorKind, MintSessionTokenRequest, MintSessionTokenResponse, SessionKind as ProtoKind,
};
use tucdesk_svc::audit_events::AuditRecord;
use tucdesk_token::{Audience, Cnf, RelayTicketClaims, SessionClaims, SessionKind, Side};

use crate::error::AuthError;
use crate::login::now_secs;
use crate::service::Auth;
use crate::store::{self, timestamp};
use crate::support_codes::principals::{Inactive, is_support_subject};

/// The only service allowed to mint session tokens.
pub const SESSION_MINTER: &str = "rendezvous";

/// This service's name as the audience of service assertions.
pub const SERVICE_NAME: &str = "auth";

/// Longest id accepted in a mint request (session, team, agent, user, relay node).
const MAX_ID_LEN: usize = 128;

/// Length of an RFC 7638 thumbprint (base64url of SHA-256).
const THUMBPRINT_LEN: usize = 43;

/// X25519 public key length.
const X25519_LEN: usize = 32;

/// Who a session token is minted for, as auth checked it.
#[derive(Debug)]
struct SessionOperator {
    /// The session token's `sub`: a user id or a support principal id.
    id: String,
    /// Audit label: `user` (people, and AI agents acting for their user) or `support`.
    kind: &'static str,
    /// The technician's name for support principals (shown on the host), else empty.
    display_name: String,
    support_code_id: Option<String>,
    /// Unix seconds the session token must not outlive (a support principal's access).
    not_after: Option<u64>,
}

/// A refused mint: the audited reason (none for a backend failure, which decided nothing
/// about the operator) and the error the caller gets.
#[derive(Debug)]
struct MintRefusal {
    reason: Option<&'static str>,
    error: AuthError,
}

impl MintRefusal {
    fn new(reason: &'static str, error: AuthError) -> Self {
        Self {
            reason: Some(reason),
            error,
        }
    }
}

impl From<AuthError> for MintRefusal {
    fn from(error: AuthError) -> Self {
        Self {
            reason: None,
            error,
        }
    }
}

fn request_kind_label(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Shell => "shell",
        SessionKind::Exec => "exec",
    }
}

#[derive(Debug, Clone)]
pub struct AuthInternalGrpc {
    auth: Auth,
}

impl AuthInternalGrpc {
    pub fn new(auth: Auth) -> Self {
        Self { auth }
    }
}

fn check_id(name: &'static str, value: &str) -> Result<(), AuthError> {
    if value.is_empty() || value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        return Err(AuthError::InvalidArgument(format!(
            "{name} must be 1..={MAX_ID_LEN} printable bytes"
        )));
    }
    Ok(())
}

impl Auth {
    /// Verifies the caller's service assertion; returns the calling service's name.
    pub fn authenticate_service<T>(&self, request: &Request<T>) -> Result<String, AuthError> {
        let token = request
            .metadata()
            .get(tucdesk_proto::metadata::SERVICE_ASSERTION)
            .and_then(|value| value.to_str().ok())
            .ok_or(AuthError::ServiceAssertionInvalid)?;
        let claims = self
            .inner
            .service_keys
            .verify(token, SERVICE_NAME, now_secs())
            .map_err(|err| {
                tracing::warn!(error = %err, "service assertion refused");
                AuthError::ServiceAssertionInvalid
            })?;
        Ok(claims.iss)
    }

    /// Mints the session token and both relay tickets for a session rendezvous authorized.
    pub async fn mint_session_token(
        &self,
        caller: &str,
        request: &MintSessionTokenRequest,
    ) -> Result<MintSessionTokenResponse, AuthError> {
        if caller != SESSION_MINTER {
            return Err(AuthError::PermissionDenied(
                "only rendezvous mints session tokens",
            ));
        }
        for (name, value) in [
            ("session_id", &request.session_id),
            ("team_id", &request.team_id),
            ("agent_id", &request.agent_id),
            ("user_id", &request.user_id),
            ("relay_node_id", &request.relay_node_id),
            ("rendezvous_audience", &request.rendezvous_audience),
        ] {
            check_id(name, value)?;
        }
        if request.device_key_thumbprint.len() != THUMBPRINT_LEN {
            return Err(AuthError::InvalidArgument(
                "device_key_thumbprint must be an RFC 7638 thumbprint".into(),
            ));
        }
        if request.e_op_pub.len() != X25519_LEN {
            return Err(AuthError::InvalidArgument(
                "e_op_pub must be 32 bytes".into(),
            ));
        }
        let kind = match ProtoKind::try_from(request.kind) {
            Ok(ProtoKind::Shell) => SessionKind::Shell,
            Ok(ProtoKind::Exec) => SessionKind::Exec,
            _ => {
                return Err(AuthError::InvalidArgument(
                    "kind must be shell or exec".into(),
                ));
            }
        };
        let max_ttl = self.config().session_ttl.as_secs().max(1);
        let ttl = match u64::from(request.ttl_seconds) {
            0 => max_ttl,
            requested => requested.min(max_ttl),
        };
        let now = now_secs();
        // Defence in depth: rendezvous checked the operator's token, but the operator must
        // still exist, belong to the team and be allowed to act when the token is minted.
        let operator = match self.session_operator(request, kind, now).await {
            Ok(operator) => operator,
            Err(refusal) => {
                if let Some(reason) = refusal.reason {
                    self.audit_mint_refusal(caller, request, reason).await?;
                }
                return Err(refusal.error);
            }
        };
        // A support principal's session token never outlives its access.
        let exp = operator
            .not_after
            .map_or(now + ttl, |end| end.min(now + ttl));
        let ttl = exp.saturating_sub(now);
        let jti = || {
            tucdesk_token::new_jti().map_err(|err| AuthError::internal("token id generation", err))
        };
        let session = SessionClaims {
            iss: self.config().issuer.clone(),
            sub: operator.id.clone(),
            aud: Audience::Many(vec![
                request.agent_id.clone(),
                request.rendezvous_audience.clone(),
            ]),
            team_id: request.team_id.clone(),
            sid: request.session_id.clone(),
            agent_id: request.agent_id.clone(),
            kind,
            cnf: Cnf::jkt(request.device_key_thumbprint.clone()),
            ekh: tucdesk_token::ekh(&request.e_op_pub),
            iat: now,
            exp,
            jti: jti()?,
        };
        let ticket = |side| -> Result<RelayTicketClaims, AuthError> {
            Ok(RelayTicketClaims {
                iss: self.config().issuer.clone(),
                aud: Audience::One(request.relay_node_id.clone()),
                sid: request.session_id.clone(),
                side,
                team_id: request.team_id.clone(),
                iat: now,
                exp,
                jti: jti()?,
            })
        };
        let session_token = self.sign_with_current(tucdesk_token::SESSION_TOKEN_TYP, &session)?;
        let operator_ticket =
            self.sign_with_current(tucdesk_token::RELAY_TICKET_TYP, &ticket(Side::Operator)?)?;
        let agent_ticket =
            self.sign_with_current(tucdesk_token::RELAY_TICKET_TYP, &ticket(Side::Agent)?)?;

        let mut tx = self.db().begin().await?;
        let record = AuditRecord::new(
            &request.team_id,
            "auth.session_token_minted",
            ActorKind::Service,
            caller,
        )
        .target(format!("agent:{}", request.agent_id))
        .session(request.session_id.clone())
        .context("outcome", "success")
        .context("operator", operator.id.as_str())
        .context("principal", operator.kind)
        .context("kind", request_kind_label(kind))
        .context("relay_node_id", request.relay_node_id.as_str())
        .context("ttl_seconds", ttl);
        let record = match &operator.support_code_id {
            Some(code_id) => record
                .context("support_code", code_id.as_str())
                .context("operator_display_name", operator.display_name.as_str()),
            None => record,
        };
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.metrics().issued("session");
        self.metrics()
            .tokens_issued
            .with_label_values(&["relay"])
            .inc_by(2);

        let expires_at = timestamp(i64::try_from(exp).unwrap_or(i64::MAX).saturating_mul(1000));
        Ok(MintSessionTokenResponse {
            session_token,
            expires_at: Some(expires_at),
            operator_relay_ticket: operator_ticket,
            agent_relay_ticket: agent_ticket,
            relay_tickets_expire_at: Some(expires_at),
            operator_display_name: operator.display_name,
        })
    }

    /// The operator a session token may be minted for: an enabled user of the team, or a
    /// support principal of the team that still may act, with the device key that redeemed
    /// the code, for a kind (and, for an agent-scoped code, the agent) the code allows. A
    /// tag-scoped code's tags are rendezvous's to check: auth does not know agents' tags.
    async fn session_operator(
        &self,
        request: &MintSessionTokenRequest,
        kind: SessionKind,
        now_secs: u64,
    ) -> Result<SessionOperator, MintRefusal> {
        if !is_support_subject(&request.user_id) {
            let user = store::find_user(self.db(), &request.user_id)
                .await?
                .filter(|user| user.team_id == request.team_id)
                .ok_or(MintRefusal::new(
                    "unknown_operator",
                    AuthError::NotFound("user"),
                ))?;
            if user.disabled {
                return Err(MintRefusal::new("disabled", AuthError::Disabled));
            }
            return Ok(SessionOperator {
                id: user.id,
                kind: "user",
                display_name: String::new(),
                support_code_id: None,
                not_after: None,
            });
        }
        let support = self
            .support_principal(&request.team_id, &request.user_id)
            .await?
            .ok_or(MintRefusal::new(
                "unknown_operator",
                AuthError::NotFound("support principal"),
            ))?;
        let now_ms = i64::try_from(now_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        if let Some(inactive) = support.inactive(now_ms) {
            return Err(MintRefusal::new(inactive.label(), inactive.error()));
        }
        let same_key: bool = support
            .principal
            .device_jkt
            .as_bytes()
            .ct_eq(request.device_key_thumbprint.as_bytes())
            .into();
        if !same_key {
            return Err(MintRefusal::new(
                "device_key_mismatch",
                AuthError::PermissionDenied(
                    "the handshake key is not the device key that redeemed the support code",
                ),
            ));
        }
        if !support.code.kinds()?.contains(&kind) {
            return Err(MintRefusal::new(
                "kind_not_allowed",
                AuthError::PermissionDenied("the support code does not allow this kind of session"),
            ));
        }
        if let Some(agent_id) = &support.code.agent_id
            && *agent_id != request.agent_id
        {
            return Err(MintRefusal::new(
                "out_of_scope",
                AuthError::PermissionDenied("the agent is outside the support code's scope"),
            ));
        }
        let not_after = u64::try_from(support.principal.expires_at_ms / 1000).unwrap_or(0);
        if not_after <= now_secs {
            return Err(MintRefusal::new(
                Inactive::Expired.label(),
                Inactive::Expired.error(),
            ));
        }
        Ok(SessionOperator {
            id: support.principal.id,
            kind: "support",
            display_name: support.principal.display_name,
            support_code_id: Some(support.code.id),
            not_after: Some(not_after),
        })
    }

    /// Records a refused mint (the operator may not act now): actor the calling service, the
    /// operator and why in the context.
    async fn audit_mint_refusal(
        &self,
        caller: &str,
        request: &MintSessionTokenRequest,
        reason: &'static str,
    ) -> Result<(), AuthError> {
        let principal = if is_support_subject(&request.user_id) {
            "support"
        } else {
            "user"
        };
        let record = AuditRecord::new(
            &request.team_id,
            "auth.session_token_refused",
            ActorKind::Service,
            caller,
        )
        .target(format!("agent:{}", request.agent_id))
        .session(request.session_id.clone())
        .context("outcome", "denied")
        .context("reason", reason)
        .context("operator", request.user_id.as_str())
        .context("principal", principal);
        let mut tx = self.db().begin().await?;
        self.audit(&mut tx, record).await?;
        self.commit(tx).await
    }

    /// Longest session-token lifetime this service issues.
    pub fn session_ttl(&self) -> Duration {
        self.config().session_ttl
    }
}

#[tonic::async_trait]
impl AuthInternal for AuthInternalGrpc {
    async fn mint_session_token(
        &self,
        request: Request<MintSessionTokenRequest>,
    ) -> Result<Response<MintSessionTokenResponse>, Status> {
        let caller = self.auth.authenticate_service(&request)?;
        let response = self
            .auth
            .mint_session_token(&caller, request.get_ref())
            .await?;
        Ok(Response::new(response))
    }
}
