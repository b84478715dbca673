//! Who is calling List or Get, and which recordings they may see.
//!
//! A caller presents an access token from auth (signature against auth's JWKS, issuer,
//! audience, expiry) bound to a device key (`cnf.jkt`). `team_id` comes from these claims and
//! nowhere else. Owners, admins and auditors see every recording of their team; everyone else
//! sees the recordings of the sessions they opened themselves.

use tonic::Request;
use tucdesk_svc::access::AccessError;
use tucdesk_token::{AccessClaims, Role};

use crate::error::RecorderError;

pub use tucdesk_svc::access::AccessVerifier;

/// Roles that see every recording of their team.
pub const TEAM_READER_ROLES: [Role; 3] = [Role::Owner, Role::Admin, Role::Auditor];

impl From<AccessError> for RecorderError {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Expired => RecorderError::TokenExpired,
            other => RecorderError::Unauthenticated(other.message()),
        }
    }
}

/// The verified caller of a gRPC `request` (a device-bound access token).
pub async fn caller<T>(
    access: &AccessVerifier,
    request: &Request<T>,
) -> Result<Caller, RecorderError> {
    Ok(Caller {
        claims: access.verify_request(request).await?,
    })
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

    /// A person (not an AI agent or a support principal) with a team-wide reading role.
    pub fn sees_whole_team(&self) -> bool {
        self.claims.client_id.is_none()
            && self.claims.scp.is_none()
            && TEAM_READER_ROLES.contains(&self.role())
    }

    /// The operator whose recordings this caller is limited to (`None`: the whole team).
    pub fn only_operator(&self) -> Option<&str> {
        (!self.sees_whole_team()).then(|| self.user_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, client_id: Option<&str>) -> Caller {
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
                cnf: Some(tucdesk_token::Cnf::jkt("thumbprint")),
                client_id: client_id.map(str::to_owned),
                scp: None,
                kinds: None,
            },
        }
    }

    #[test]
    fn owners_admins_and_auditors_see_the_team_others_their_own() {
        for role in TEAM_READER_ROLES {
            assert_eq!(caller(role, None).only_operator(), None);
        }
        for role in [Role::Operator, Role::Viewer, Role::AiAgent] {
            assert_eq!(caller(role, None).only_operator(), Some("user-1"));
        }
        assert_eq!(
            caller(Role::Admin, Some("mcp-client")).only_operator(),
            Some("user-1"),
            "an AI agent acting with an admin's role still sees only its own sessions"
        );
    }
}
