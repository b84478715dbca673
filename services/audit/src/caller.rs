//! Who is calling AuditService or the HTTP export, and may they read the log.
//!
//! A caller presents an access token from auth (signature against auth's JWKS, issuer,
//! audience, expiry), bound to a device key (`cnf.jkt`), of a person (not an AI agent or a
//! support principal) whose role is owner, admin or auditor. `team_id` comes from these claims
//! and nowhere else: every read is of the caller's own team.

use tonic::Request;
use tucdesk_svc::access::AccessError;
use tucdesk_token::{AccessClaims, Role};

use crate::error::AuditError;

pub use tucdesk_svc::access::AccessVerifier;

/// Roles that may read their team's audit log.
pub const READER_ROLES: [Role; 3] = [Role::Owner, Role::Admin, Role::Auditor];

impl From<AccessError> for AuditError {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Expired => AuditError::TokenExpired,
            other => AuditError::Unauthenticated(other.message()),
        }
    }
}

/// The verified caller of a gRPC `request`, allowed to read the audit log.
pub async fn caller<T>(
    access: &AccessVerifier,
    request: &Request<T>,
) -> Result<Caller, AuditError> {
    reader(access.verify_request(request).await?)
}

/// The verified caller presenting the `authorization` header `value` (an HTTP header), allowed
/// to read the audit log.
pub async fn caller_from_authorization(
    access: &AccessVerifier,
    value: Option<&str>,
) -> Result<Caller, AuditError> {
    reader(access.verify_authorization(value).await?)
}

fn reader(claims: AccessClaims) -> Result<Caller, AuditError> {
    let caller = Caller { claims };
    caller.require_reader()?;
    Ok(caller)
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
