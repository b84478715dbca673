//! `AuthInternal`: calls from other TucDesk services, authenticated by a service assertion
//! (never by a user's token). Today: `MintSessionToken` for rendezvous.

use std::time::Duration;

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
        // Defence in depth: rendezvous checked the operator's token, but the operator must
        // still exist, belong to the team and be enabled when the token is minted.
        let user = store::find_user(self.db(), &request.user_id)
            .await?
            .filter(|user| user.team_id == request.team_id)
            .ok_or(AuthError::NotFound("user"))?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }

        let now = now_secs();
        let exp = now + ttl;
        let jti = || {
            tucdesk_token::new_jti().map_err(|err| AuthError::internal("token id generation", err))
        };
        let session = SessionClaims {
            iss: self.config().issuer.clone(),
            sub: user.id.clone(),
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
        .context("operator", user.id.as_str())
        .context("relay_node_id", request.relay_node_id.as_str())
        .context("ttl_seconds", ttl);
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
        })
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
