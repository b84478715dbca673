//! Who is calling AuditService or the HTTP export, and may they read the log.
//!
//! A caller presents an access token from auth (signature against auth's JWKS, issuer,
//! audience, expiry), bound to a device key (`cnf.jkt`), of a person (not an AI agent or a
//! support principal) whose role is owner, admin or auditor. `team_id` comes from these claims
//! and nowhere else: every read is of the caller's own team.

use tokio_util::sync::CancellationToken;
use tonic::Request;
use tucdesk_svc::auth_keys::AuthKeys;
use tucdesk_token::{AccessClaims, RequireCnf, Role, TokenError, TokenVerifier};

use crate::error::AuditError;

/// Roles that may read their team's audit log.
pub const READER_ROLES: [Role; 3] = [Role::Owner, Role::Admin, Role::Auditor];

/// Longest `authorization` header accepted ("Bearer " + a token).
const MAX_BEARER_LEN: usize = tucdesk_proto::limits::MAX_TOKEN_LEN + 16;

/// Verifies access tokens: against auth's keys (followed and refreshed), or a fixed key set
/// (tests and tools).
#[derive(Debug, Clone)]
pub struct AccessVerifier {
    verifier: TokenVerifier,
    keys: Option<AuthKeys>,
}

impl AccessVerifier {
    /// Tokens auth signs for `audience`, its keys followed through `keys`.
    pub fn from_auth(keys: AuthKeys, audience: &str) -> Self {
        Self {
            verifier: keys.verifier(audience),
            keys: Some(keys),
        }
    }

    /// Tokens verified by `verifier` alone.
    pub fn fixed(verifier: TokenVerifier) -> Self {
        Self {
            verifier,
            keys: None,
        }
    }

    /// Refreshes auth's keys periodically until `shutdown` (nothing to do for fixed keys).
    pub async fn run_refresh(&self, shutdown: CancellationToken) {
        if let Some(keys) = &self.keys {
            keys.run_refresh(shutdown).await;
        }
    }

    /// The verified caller of a gRPC `request`, allowed to read the audit log.
    pub async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, AuditError> {
        let value = request
            .metadata()
            .get(tucdesk_proto::metadata::AUTHORIZATION)
            .map(|value| value.to_str().map_err(|_| MALFORMED))
            .transpose()?;
        self.caller_from_authorization(value).await
    }

    /// The verified caller presenting the `authorization` header `value` (gRPC metadata or an
    /// HTTP header), allowed to read the audit log.
    pub async fn caller_from_authorization(
        &self,
        value: Option<&str>,
    ) -> Result<Caller, AuditError> {
        let token = bearer_token(value)?;
        let verify = || {
            self.verifier
                .verify_access(token, tucdesk_token::unix_now(), RequireCnf::No)
        };
        let claims = match (verify(), &self.keys) {
            (Err(TokenError::UnknownKey), Some(keys)) => {
                // Auth may have rotated its key since our last fetch.
                keys.refresh_for_unknown_kid().await;
                verify()
            }
            (other, _) => other,
        }
        .map_err(|err| match err {
            TokenError::Expired => AuditError::TokenExpired,
            _ => AuditError::Unauthenticated("the access token is invalid"),
        })?;
        let caller = Caller { claims };
        caller.require_reader()?;
        Ok(caller)
    }
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: AccessClaims,
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

    /// The device key thumbprint the token is bound to.
    pub fn device_jkt(&self) -> Option<&str> {
        self.claims.cnf.as_ref().map(|cnf| cnf.jkt.as_str())
    }

    /// A person with a device-bound token and a reader role; anyone else is refused.
    pub fn require_reader(&self) -> Result<(), AuditError> {
        if self.claims.cnf.is_none() {
            return Err(AuditError::Unauthenticated(
                "the access token is not bound to a device key",
            ));
        }
        // AI agents (OAuth clients) and support principals (scoped to agents) never read the
        // audit log, whatever role their token names.
        if self.claims.client_id.is_some() || self.claims.scp.is_some() {
            return Err(AuditError::PermissionDenied(
                "only people read the audit log",
            ));
        }
        if !READER_ROLES.contains(&self.role()) {
            return Err(AuditError::PermissionDenied(
                "reading the audit log needs the owner, admin or auditor role",
            ));
        }
        Ok(())
    }
}

const MALFORMED: AuditError = AuditError::Unauthenticated("malformed authorization header");

/// The token of an `authorization` header value (`Bearer <token>`), bounded before use.
pub fn bearer_token(value: Option<&str>) -> Result<&str, AuditError> {
    let value = value.ok_or(AuditError::Unauthenticated("an access token is required"))?;
    if value.len() > MAX_BEARER_LEN {
        return Err(AuditError::Unauthenticated("authorization header too long"));
    }
    value
        .strip_prefix("Bearer ")
        .ok_or(AuditError::Unauthenticated("expected a Bearer token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, cnf: bool, client_id: Option<&str>, scp: Option<&str>) -> Caller {
        Caller {
            claims: AccessClaims {
                iss: "https://auth".into(),
                sub: "user-1".into(),
                aud: tucdesk_token::Audience::One("tucdesk".into()),
                team_id: "team".into(),
                email: None,
                role,
                iat: 0,
                exp: 1,
                nbf: None,
                jti: "j".into(),
                cnf: cnf.then(|| tucdesk_token::Cnf::jkt("thumbprint")),
                client_id: client_id.map(str::to_owned),
                scp: scp.map(str::to_owned),
                kinds: None,
            },
        }
    }

    #[test]
    fn only_device_bound_owners_admins_and_auditors_read() {
        for role in READER_ROLES {
            assert!(caller(role, true, None, None).require_reader().is_ok());
        }
        for role in [Role::Operator, Role::Viewer, Role::AiAgent] {
            assert!(matches!(
                caller(role, true, None, None).require_reader(),
                Err(AuditError::PermissionDenied(_))
            ));
        }
        assert!(matches!(
            caller(Role::Owner, false, None, None).require_reader(),
            Err(AuditError::Unauthenticated(_))
        ));
        assert!(
            caller(Role::Admin, true, Some("c"), None)
                .require_reader()
                .is_err()
        );
        assert!(
            caller(Role::Admin, true, None, Some("tag:x"))
                .require_reader()
                .is_err()
        );
    }
}
