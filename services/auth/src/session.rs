//! Refresh, logout and "who am I" for a logged-in device.

use sha2::{Digest as _, Sha256};
use tucdesk_crypto::DeviceProofContext;
use tucdesk_proto::v1::DeviceProof;
use tucdesk_svc::sql::now_ms;
use tucdesk_token::{AccessClaims, RequireCnf};

use crate::error::AuthError;
use crate::login::{IssuedTokens, now_secs};
use crate::refresh::{self, REVOKED_LOGOUT, Rotation};
use crate::service::Auth;
use crate::store::{self, UserRow};

pub const REFRESH_METHOD: &str = tucdesk_crypto::proof_scopes::REFRESH;

impl Auth {
    /// Rotates a refresh token. The device proof must come from the key the family is bound
    /// to and covers the presented token (binding = SHA-256 of it).
    pub async fn refresh(
        &self,
        token: &str,
        proof: Option<&DeviceProof>,
    ) -> Result<IssuedTokens, AuthError> {
        let binding = Sha256::digest(token.as_bytes());
        let ctx = DeviceProofContext {
            method: REFRESH_METHOD,
            target: "",
            session_id: "",
            binding: &binding,
            challenge: b"",
        };
        let proven_jkt = self.verify_device_proof(proof, &ctx, None).await?;

        let mut tx = self.db().begin().await?;
        let rotation = refresh::rotate(&mut tx, token, now_ms()).await?;
        let (family, next) = match rotation {
            Rotation::Reused { family } => {
                // Theft detection: commit the revocation and its audit event, then refuse.
                let record =
                    Auth::user_event(&family.team_id, "auth.refresh_reused", &family.user_id)
                        .target(format!("refresh_family:{}", family.id))
                        .context("outcome", "denied")
                        .context("reason", "TOKEN_REUSED")
                        .context("family_id", family.id.as_str());
                self.audit(&mut tx, record).await?;
                self.commit(tx).await?;
                self.metrics().refresh_reuse.inc();
                return Err(AuthError::TokenReused);
            }
            Rotation::Rotated { family, next } => (family, next),
        };
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            family.device_jkt.as_bytes(),
            proven_jkt.as_bytes(),
        )) {
            // A copied refresh token without the device key: refuse (rolling back the
            // rotation) and record it.
            drop(tx);
            let mut tx = self.db().begin().await?;
            let record = Auth::user_event(&family.team_id, "auth.refresh_failed", &family.user_id)
                .target(format!("refresh_family:{}", family.id))
                .context("outcome", "denied")
                .context("reason", "DEVICE_KEY_MISMATCH");
            self.audit(&mut tx, record).await?;
            self.commit(tx).await?;
            return Err(AuthError::DeviceKeyMismatch);
        }
        let user = store::find_user(self.db(), &family.user_id)
            .await?
            .ok_or(AuthError::TokenInvalid)?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        let claims = self.access_claims(
            &user.id,
            &user.team_id,
            Some(&user.email),
            user.role()?,
            &family.device_jkt,
            now_secs(),
        )?;
        let access_token = self.sign_access(&claims)?;
        let record = Auth::user_event(&user.team_id, "auth.refresh", &user.id)
            .target(format!("refresh_family:{}", family.id))
            .context("outcome", "success")
            .context("generation", family.generation);
        self.commit_issued_pair(tx, record).await?;
        Ok(IssuedTokens {
            access_token: access_token.into(),
            access_expires_at_ms: i64::try_from(claims.exp).unwrap_or(i64::MAX) * 1000,
            refresh: next,
            user,
        })
    }

    /// Revokes the family of `token` (or every family of its user). Holding the refresh
    /// token is the authority; an unknown token is not an error (logout is idempotent).
    pub async fn logout(&self, token: &str, all_devices: bool) -> Result<(), AuthError> {
        let mut tx = self.db().begin().await?;
        let Some(family) = refresh::find_family(&mut tx, token).await? else {
            return Ok(());
        };
        if all_devices && family.client_id.is_some() {
            // An AI agent's token speaks for one OAuth grant, not for the user's devices.
            return Err(AuthError::PermissionDenied(
                "an OAuth client's refresh token can only end its own session",
            ));
        }
        let revoked = if all_devices {
            refresh::revoke_user_families(&mut tx, &family.user_id, REVOKED_LOGOUT).await?
        } else {
            refresh::revoke_family(&mut tx, &family.id, REVOKED_LOGOUT).await?;
            1
        };
        let record = Auth::user_event(&family.team_id, "auth.logout", &family.user_id)
            .target(format!("user:{}", family.user_id))
            .context("outcome", "success")
            .context("all_devices", all_devices)
            .context("families_revoked", revoked);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await
    }

    /// Verifies a bearer access token (device binding checked by the caller's proof where a
    /// method needs one).
    pub fn authenticate(&self, bearer: &str) -> Result<AccessClaims, AuthError> {
        self.verifier()
            .verify_access(bearer, now_secs(), RequireCnf::No)
            .map_err(|err| match err {
                tucdesk_token::TokenError::Expired => AuthError::TokenExpired,
                _ => AuthError::TokenInvalid,
            })
    }

    /// The user behind verified claims.
    pub async fn whoami(&self, claims: &AccessClaims) -> Result<UserRow, AuthError> {
        let user = store::find_user(self.db(), &claims.sub)
            .await?
            .filter(|user| user.team_id == claims.team_id)
            .ok_or(AuthError::TokenInvalid)?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        Ok(user)
    }
}
