//! Who is calling, and may they: the checks every authenticated `AuthService` method runs.
//!
//! - [`Auth::caller`]: a valid access token (signature, issuer, audience, expiry) whose user
//!   still exists, belongs to the token's team and is enabled. `team_id` comes from here only.
//! - [`Auth::sensitive_caller`]: the same plus a device proof for this exact request by the key
//!   the token is bound to (`cnf.jkt`), so a stolen access token alone cannot change anything.
//! - [`require_role`]: the caller's role is at least `min`.

use tonic::Request;
use tucdesk_crypto::DeviceProofContext;
use tucdesk_proto::v1::DeviceProof;
use tucdesk_token::{AccessClaims, Role};

use crate::error::AuthError;
use crate::grpc::bearer;
use crate::service::Auth;
use crate::store::{self, UserRow};

/// A verified caller: token claims and the current user record.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: AccessClaims,
    pub user: UserRow,
}

impl Caller {
    pub fn team_id(&self) -> &str {
        &self.claims.team_id
    }

    pub fn user_id(&self) -> &str {
        &self.claims.sub
    }

    /// The role as stored now (a demotion takes effect before the token expires).
    pub fn role(&self) -> Result<Role, AuthError> {
        self.user.role()
    }
}

/// The request fields a device proof covers, per method (see `docs/protocol.md`).
#[derive(Debug, Clone, Copy)]
pub struct ProofScope<'a> {
    /// Full gRPC method path, e.g. `/tucdesk.v1.AuthService/DisableUser`.
    pub method: &'a str,
    pub target: &'a str,
    pub binding: &'a [u8],
}

impl Auth {
    /// The authenticated caller of `request`.
    pub async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, AuthError> {
        let claims = self.authenticate(bearer(request)?)?;
        let user = self.whoami(&claims).await?;
        Ok(Caller { claims, user })
    }

    /// The authenticated caller, who also proved possession of the token's device key for
    /// this request.
    pub async fn sensitive_caller<T>(
        &self,
        request: &Request<T>,
        proof: Option<&DeviceProof>,
        scope: ProofScope<'_>,
    ) -> Result<Caller, AuthError> {
        let caller = self.caller(request).await?;
        let bound = caller
            .claims
            .cnf
            .as_ref()
            .map(|cnf| cnf.jkt.clone())
            .ok_or(AuthError::DeviceKeyMismatch)?;
        let challenge = proof.map(|p| p.challenge.as_slice()).unwrap_or_default();
        let ctx = DeviceProofContext {
            method: scope.method,
            target: scope.target,
            session_id: "",
            binding: scope.binding,
            challenge,
        };
        self.verify_device_proof(proof, &ctx, Some(&bound)).await?;
        Ok(caller)
    }

    /// A user of the caller's team, or "not found" (a foreign team's user is never
    /// "forbidden": its existence is not revealed).
    pub async fn team_user(&self, caller: &Caller, user_id: &str) -> Result<UserRow, AuthError> {
        store::find_user(self.db(), user_id)
            .await?
            .filter(|user| user.team_id == caller.team_id())
            .ok_or(AuthError::NotFound("user"))
    }
}

/// Refuses callers below `min`.
pub fn require_role(caller: &Caller, min: Role) -> Result<(), AuthError> {
    if caller.role()?.at_least(min) {
        Ok(())
    } else {
        Err(AuthError::PermissionDenied("your role does not allow this"))
    }
}
