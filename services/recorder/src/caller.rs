//! Who is calling List or Get, and which recordings they may see.
//!
//! A caller presents an access token from auth (signature against auth's JWKS, issuer,
//! audience, expiry) bound to a device key (`cnf.jkt`). `team_id` comes from these claims and
//! nowhere else. Owners, admins and auditors see every recording of their team; everyone else
//! sees the recordings of the sessions they opened themselves.

use tokio_util::sync::CancellationToken;
use tonic::Request;
use tucdesk_svc::auth_keys::AuthKeys;
use tucdesk_token::{AccessClaims, RequireCnf, Role, TokenError, TokenVerifier};

use crate::error::RecorderError;

/// Roles that see every recording of their team.
pub const TEAM_READER_ROLES: [Role; 3] = [Role::Owner, Role::Admin, Role::Auditor];

/// Longest `authorization` header accepted ("Bearer " + a token).
const MAX_BEARER_LEN: usize = tucdesk_proto::limits::MAX_TOKEN_LEN + 16;

/// Verifies access tokens: against auth's keys (followed and refreshed), or a fixed key set.
#[derive(Debug, Clone)]
pub struct AccessVerifier {
    verifier: TokenVerifier,
    keys: Option<AuthKeys>,
}

impl AccessVerifier {
    pub fn from_auth(keys: AuthKeys, audience: &str) -> Self {
        Self {
            verifier: keys.verifier(audience),
            keys: Some(keys),
        }
    }

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

    /// The verified caller of a gRPC `request`.
    pub async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, RecorderError> {
        let value = request
            .metadata()
            .get(tucdesk_proto::metadata::AUTHORIZATION)
            .map(|value| {
                value
                    .to_str()
                    .map_err(|_| RecorderError::Unauthenticated("malformed authorization header"))
            })
            .transpose()?;
        let value = value.ok_or(RecorderError::Unauthenticated(
            "an access token is required",
        ))?;
        if value.len() > MAX_BEARER_LEN {
            return Err(RecorderError::Unauthenticated(
                "authorization header too long",
            ));
        }
        let token = value
            .strip_prefix("Bearer ")
            .ok_or(RecorderError::Unauthenticated("expected a Bearer token"))?;
        let verify = || {
            self.verifier
                .verify_access(token, tucdesk_token::unix_now(), RequireCnf::No)
        };
        let claims = match (verify(), &self.keys) {
            (Err(TokenError::UnknownKey), Some(keys)) => {
                keys.refresh_for_unknown_kid().await;
                verify()
            }
            (other, _) => other,
        }
        .map_err(|err| match err {
            TokenError::Expired => RecorderError::TokenExpired,
            _ => RecorderError::Unauthenticated("the access token is invalid"),
        })?;
        if claims.cnf.is_none() {
            return Err(RecorderError::Unauthenticated(
                "the access token is not bound to a device key",
            ));
        }
        Ok(Caller { claims })
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
