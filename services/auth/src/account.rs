//! Account self-service: password change, TOTP enrolment with recovery codes
//! ([`totp_enrollment`]), and moving the device-key binding to a new key.
//!
//! Every change needs the caller's access token *and* a device proof by the key that token is
//! bound to, targeting the caller's own user id (`docs/protocol.md`, "Device proofs"): a stolen
//! access token alone changes nothing. Only a person's own login qualifies; tokens of AI
//! agents and support principals are refused.

mod totp_enrollment;

use sha2::{Digest as _, Sha256};
use tonic::Request;
use tucdesk_crypto::DeviceProofContext;
use tucdesk_proto::v1::{BindDeviceKeyRequest, ChangePasswordRequest, DeviceProof};
use tucdesk_svc::ratelimit::Decision;
use tucdesk_svc::sql::{Tx, now_ms};

use crate::authz::{Caller, ProofScope};
use crate::error::AuthError;
use crate::grpc::bearer;
use crate::login::{IssuedTokens, LOGIN_ACCOUNT_LIMIT, now_secs};
use crate::password::{self, MAX_PASSWORD_BYTES, Password};
use crate::refresh::{self, NewFamily};
use crate::service::Auth;
use crate::store::{self, UserRow};

pub(crate) use totp_enrollment::SecondFactor;
pub use totp_enrollment::{
    BEGIN_TOTP_METHOD, DISABLE_TOTP_METHOD, RECOVERY_CODE_COUNT, RECOVERY_CODE_LEN,
    TOTP_CODE_LIMIT, TOTP_ENROLLMENT_TTL, TotpEnrollment,
};

pub const CHANGE_PASSWORD_METHOD: &str = "/tucdesk.v1.AuthService/ChangePassword";
pub const BIND_DEVICE_KEY_METHOD: &str = "/tucdesk.v1.AuthService/BindDeviceKey";

/// Why refresh families were revoked, as stored and audited.
pub const REVOKED_PASSWORD_CHANGED: &str = "password_changed";
pub const REVOKED_DEVICE_KEY_MOVED: &str = "device_key_moved";

pub(crate) fn limiter_error(err: impl std::fmt::Display) -> AuthError {
    // Unknown whether the caller is over the limit: fail closed.
    AuthError::internal("rate limiter", err)
}

/// Refuses tokens that do not stand for a person's own login (AI agents, support principals):
/// credentials and users are managed by people only.
pub(crate) fn require_person(caller: &Caller) -> Result<(), AuthError> {
    if caller.claims.client_id.is_some() || caller.claims.scp.is_some() {
        return Err(AuthError::PermissionDenied(
            "only a person's own login can manage accounts",
        ));
    }
    Ok(())
}

impl Auth {
    /// The caller, proven by a device proof of the token's key that targets the caller's own
    /// user id.
    async fn proven_self<T>(
        &self,
        request: &Request<T>,
        proof: Option<&DeviceProof>,
        method: &str,
        binding: &[u8],
    ) -> Result<Caller, AuthError> {
        let claims = self.authenticate(bearer(request)?)?;
        let scope = ProofScope {
            method,
            target: &claims.sub,
            binding,
        };
        let caller = self.sensitive_caller(request, proof, scope).await?;
        require_person(&caller)?;
        Ok(caller)
    }
    /// Revokes the user's live refresh families bound to `device_jkt` (`same_device`) or to
    /// any other key (`!same_device`).
    async fn revoke_families_by_device(
        tx: &mut Tx,
        user_id: &str,
        device_jkt: &str,
        same_device: bool,
        reason: &str,
    ) -> Result<u64, AuthError> {
        let sql = if same_device {
            "UPDATE refresh_families SET revoked_at_ms = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND device_jkt = $4 AND revoked_at_ms IS NULL"
        } else {
            "UPDATE refresh_families SET revoked_at_ms = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND device_jkt <> $4 AND revoked_at_ms IS NULL"
        };
        Ok(tucdesk_svc::on_tx!(tx, |conn| {
            sqlx::query(sql)
                .bind(now_ms())
                .bind(reason)
                .bind(user_id)
                .bind(device_jkt)
                .execute(conn)
                .await?
                .rows_affected()
        }))
    }

    /// Sets a new password after checking the current one (counted like a login attempt),
    /// and signs out every other device: a password change is what people do when they
    /// suspect someone else has it.
    pub async fn change_password(
        &self,
        request: &Request<ChangePasswordRequest>,
    ) -> Result<(), AuthError> {
        let body = request.get_ref();
        if body.current_password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::InvalidArgument(format!(
                "current_password must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let new = Password::new(body.new_password.clone());
        password::check_policy(&new).map_err(|v| AuthError::InvalidArgument(v.to_string()))?;
        if body.new_password == body.current_password {
            return Err(AuthError::InvalidArgument(
                "new_password must differ from current_password".into(),
            ));
        }
        let caller = self
            .proven_self(request, body.proof.as_ref(), CHANGE_PASSWORD_METHOD, b"")
            .await?;
        let user = &caller.user;

        // Count first, then check, exactly like a login: the same account limit bounds
        // guesses through either door.
        let limiter = &self.inner.limiter;
        let decision = limiter
            .record_failure(&user.email, &LOGIN_ACCOUNT_LIMIT)
            .await
            .map_err(limiter_error)?;
        if let Decision::Locked { retry_after } = decision {
            self.metrics()
                .lockouts
                .with_label_values(&["account"])
                .inc();
            self.audit_password_failure(user, "locked").await?;
            return Err(AuthError::Locked { retry_after });
        }
        let current = Password::new(body.current_password.clone());
        let matched = self
            .inner
            .passwords
            .verify(user.password_hash.as_deref(), &current)
            .await
            .map_err(|err| AuthError::internal("password verification", err))?;
        if !matched {
            self.audit_password_failure(user, "invalid_credentials")
                .await?;
            return Err(AuthError::InvalidCredentials);
        }
        limiter
            .reset(&user.email, &LOGIN_ACCOUNT_LIMIT)
            .await
            .map_err(limiter_error)?;
        let phc = self
            .inner
            .passwords
            .hash(&new)
            .await
            .map_err(|err| match err {
                password::PasswordError::Policy(v) => AuthError::InvalidArgument(v.to_string()),
                other => AuthError::internal("password hashing", other),
            })?;

        let device_jkt = caller_jkt(&caller)?;
        let mut tx = self.db().begin().await?;
        store::set_password(&mut tx, &user.id, &phc).await?;
        let revoked = Self::revoke_families_by_device(
            &mut tx,
            &user.id,
            device_jkt,
            false,
            REVOKED_PASSWORD_CHANGED,
        )
        .await?;
        let record = Auth::user_event(&user.team_id, "auth.password_changed", &user.id)
            .actor_display(&user.email)
            .target(format!("user:{}", user.id))
            .context("outcome", "success")
            .context("other_families_revoked", revoked);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await
    }

    async fn audit_password_failure(&self, user: &UserRow, reason: &str) -> Result<(), AuthError> {
        let record = Auth::user_event(&user.team_id, "auth.password_change_failed", &user.id)
            .target(format!("user:{}", user.id))
            .context("outcome", "failure")
            .context("reason", reason);
        let mut tx = self.db().begin().await?;
        self.audit(&mut tx, record).await?;
        self.commit(tx).await
    }
    /// Moves the caller's binding to a new device key: a proof by the current key covering
    /// the new key, and a challenge-signed proof by the new key. The old key's refresh
    /// families are revoked and a new family bound to the new key starts.
    pub async fn bind_device_key(
        &self,
        request: &Request<BindDeviceKeyRequest>,
    ) -> Result<IssuedTokens, AuthError> {
        let body = request.get_ref();
        let new_proof = body
            .new_proof
            .as_ref()
            .ok_or(AuthError::ProofInvalid("new_proof is required"))?;
        if new_proof.public_key.len() != tucdesk_proto::limits::ED25519_PUBLIC_KEY_LEN {
            return Err(AuthError::InvalidArgument(
                "new_proof.public_key must be a 32-byte Ed25519 key".into(),
            ));
        }
        let binding = Sha256::digest(&new_proof.public_key);
        let caller = self
            .proven_self(
                request,
                body.current_proof.as_ref(),
                BIND_DEVICE_KEY_METHOD,
                &binding,
            )
            .await?;
        let old_jkt = caller_jkt(&caller)?;
        let user = &caller.user;
        let ctx = DeviceProofContext {
            method: BIND_DEVICE_KEY_METHOD,
            target: &user.id,
            session_id: "",
            binding: b"",
            challenge: &new_proof.challenge,
        };
        let new_jkt = self
            .verify_device_proof(Some(new_proof), &ctx, None)
            .await?;
        self.inner
            .challenges
            .redeem(&new_proof.challenge, now_ms())
            .await?;
        if new_jkt == old_jkt {
            return Err(AuthError::InvalidArgument(
                "the new device key is the one already bound".into(),
            ));
        }

        let mut tx = self.db().begin().await?;
        let revoked = Self::revoke_families_by_device(
            &mut tx,
            &user.id,
            old_jkt,
            true,
            REVOKED_DEVICE_KEY_MOVED,
        )
        .await?;
        let refresh = refresh::start_family(
            &mut tx,
            &NewFamily {
                user_id: &user.id,
                team_id: &user.team_id,
                device_jkt: &new_jkt,
                client_id: None,
                scope: None,
                lifetime: self.config().refresh_lifetime,
            },
        )
        .await?;
        let claims = self.access_claims(
            &user.id,
            &user.team_id,
            Some(&user.email),
            user.role()?,
            &new_jkt,
            now_secs(),
        )?;
        let access_token = self.sign_access(&claims)?;
        let record = Auth::user_event(&user.team_id, "auth.device_key_bound", &user.id)
            .actor_display(&user.email)
            .target(format!("user:{}", user.id))
            .context("outcome", "success")
            .context("old_device_key_thumbprint", old_jkt)
            .context("device_key_thumbprint", new_jkt.as_str())
            .context("families_revoked", revoked)
            .context("family_id", refresh.family_id.as_str());
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.metrics().issued("access");
        self.metrics().issued("refresh");
        Ok(IssuedTokens {
            access_token: access_token.into(),
            access_expires_at_ms: i64::try_from(claims.exp).unwrap_or(i64::MAX) * 1000,
            refresh,
            user: caller.user,
        })
    }
}

/// The device-key thumbprint the caller's token is bound to.
fn caller_jkt(caller: &Caller) -> Result<&str, AuthError> {
    caller
        .claims
        .cnf
        .as_ref()
        .map(|cnf| cnf.jkt.as_str())
        .ok_or(AuthError::DeviceKeyMismatch)
}
