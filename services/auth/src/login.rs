//! First owner bootstrap, invite acceptance and password (+ TOTP) login.

use std::net::IpAddr;
use std::time::Duration;

use tucdesk_crypto::{DeviceProof as CryptoProof, DeviceProofContext};
use tucdesk_proto::v1::{DeviceProof, LoginRequest};
use tucdesk_svc::audit_events::{ANONYMOUS, SYSTEM_TEAM};
use tucdesk_svc::ratelimit::{Decision, LimitPolicy, source_key};
use tucdesk_svc::sql::now_ms;

use crate::error::AuthError;
use crate::password::Password;
use crate::refresh::{self, IssuedRefresh, NewFamily};
use crate::service::Auth;
use crate::store::{self, UserRow};

/// Failed logins allowed per account before it is locked (SPEC §3).
pub const LOGIN_ACCOUNT_LIMIT: LimitPolicy = LimitPolicy {
    name: "login-account",
    max_failures: 5,
    window: Duration::from_secs(15 * 60),
    lockout: Duration::from_secs(15 * 60),
};

/// Login attempts allowed per source address (IPv6 by /64); more generous than per account
/// because offices share addresses, and never reset by a success (an attacker could log into
/// an account of their own between guesses).
pub const LOGIN_SOURCE_LIMIT: LimitPolicy = LimitPolicy {
    name: "login-source",
    max_failures: 30,
    window: Duration::from_secs(15 * 60),
    lockout: Duration::from_secs(15 * 60),
};

/// Challenges handed out per source address (IPv6 by /64). Every login, key binding and
/// code redemption needs a fresh one, so this also bounds the work and the audit events one
/// address can cause; an interactive client needs a handful per minute.
pub const CHALLENGE_SOURCE_LIMIT: LimitPolicy = LimitPolicy {
    name: "challenge-source",
    max_failures: 120,
    window: Duration::from_secs(60),
    lockout: Duration::from_secs(60),
};

/// Lifetime of the bootstrap setup token.
pub const SETUP_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The gRPC method names device proofs are bound to.
pub const LOGIN_METHOD: &str = tucdesk_crypto::proof_scopes::LOGIN;

/// What `tucdesk-auth bootstrap` prints.
#[derive(Debug)]
pub struct Bootstrapped {
    pub team_id: String,
    pub user_id: String,
    pub setup_token: tucdesk_crypto::SecretString,
    pub expires_at_ms: i64,
}

/// Tokens handed out by a successful login or refresh.
#[derive(Debug)]
pub struct IssuedTokens {
    pub access_token: tucdesk_crypto::SecretString,
    pub access_expires_at_ms: i64,
    pub refresh: IssuedRefresh,
    pub user: UserRow,
}

/// Outcome of a login attempt that did not fail.
#[derive(Debug)]
pub enum LoginOutcome {
    Tokens(Box<IssuedTokens>),
    /// The password was right; the client must send it again with a TOTP code.
    TotpRequired,
}

pub(crate) fn now_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or(0)
}

fn limiter_error(err: impl std::fmt::Display) -> AuthError {
    // Unknown whether the caller is over the limit: fail closed.
    AuthError::internal("rate limiter", err)
}

impl Auth {
    /// Creates the first team and its owner, once; refuses when any team exists.
    pub async fn bootstrap(&self, team: &str, email: &str) -> Result<Bootstrapped, AuthError> {
        if store::count_teams(self.db()).await? > 0 {
            return Err(AuthError::AlreadyExists(
                "the first team; bootstrap runs only on an empty database",
            ));
        }
        let mut tx = self.db().begin().await?;
        let (team_id, user_id) = store::create_team_with_owner(&mut tx, team, email).await?;
        let ttl = i64::try_from(SETUP_TOKEN_TTL.as_millis()).unwrap_or(i64::MAX);
        let (setup_token, expires_at_ms) = store::create_invite(&mut tx, &user_id, ttl).await?;
        let record = Auth::user_event(&team_id, "auth.bootstrap", "tucdesk-auth-cli")
            .target(format!("user:{user_id}"))
            .context("outcome", "success");
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(Bootstrapped {
            team_id,
            user_id,
            setup_token: setup_token.into(),
            expires_at_ms,
        })
    }

    /// Sets the first password with a setup or invite token (single use).
    pub async fn accept_invite(
        &self,
        token: &str,
        password: Password,
    ) -> Result<UserRow, AuthError> {
        if token.is_empty() || token.len() > 128 {
            return Err(AuthError::TokenInvalid);
        }
        let phc = self
            .inner
            .passwords
            .hash(&password)
            .await
            .map_err(|err| match err {
                crate::password::PasswordError::Policy(violation) => {
                    AuthError::InvalidArgument(violation.to_string())
                }
                other => AuthError::internal("password hashing", other),
            })?;
        let mut tx = self.db().begin().await?;
        let user_id = store::consume_invite(&mut tx, token).await?;
        store::set_password(&mut tx, &user_id, &phc).await?;
        let user = store::find_user(self.db(), &user_id).await?;
        let team_id = user
            .as_ref()
            .map_or(SYSTEM_TEAM, |u| u.team_id.as_str())
            .to_owned();
        let record = Auth::user_event(&team_id, "auth.invite_accepted", &user_id)
            .target(format!("user:{user_id}"))
            .context("outcome", "success");
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        store::find_user(self.db(), &user_id)
            .await?
            .ok_or(AuthError::NotFound("user"))
    }

    /// A fresh single-use challenge for a device proof.
    pub fn begin_device_binding(&self) -> Result<(Vec<u8>, i64), AuthError> {
        self.inner.challenges.issue(now_ms())
    }

    /// A challenge for a caller at `source`, within [`CHALLENGE_SOURCE_LIMIT`].
    pub async fn begin_device_binding_from(
        &self,
        source: Option<IpAddr>,
    ) -> Result<(Vec<u8>, i64), AuthError> {
        if let Some(addr) = source {
            let decision = self
                .inner
                .limiter
                .record_failure(&source_key(addr), &CHALLENGE_SOURCE_LIMIT)
                .await
                .map_err(limiter_error)?;
            if let Decision::Locked { retry_after } = decision {
                return Err(AuthError::RateLimited { retry_after });
            }
        }
        self.begin_device_binding()
    }

    /// Checks a device proof for `ctx`: signature, clock skew, thumbprint when bound, and that
    /// its nonce has not been seen. Returns the proven key's thumbprint (`cnf.jkt`).
    pub(crate) async fn verify_device_proof(
        &self,
        proof: Option<&DeviceProof>,
        ctx: &DeviceProofContext<'_>,
        expected_thumbprint: Option<&str>,
    ) -> Result<String, AuthError> {
        let proof = proof.ok_or(AuthError::ProofInvalid("a device proof is required"))?;
        let parsed = CryptoProof::from_parts(
            &proof.public_key,
            proof.timestamp_ms,
            &proof.nonce,
            &proof.signature,
        )
        .map_err(|_| AuthError::ProofInvalid("malformed proof"))?;
        let now = u64::try_from(now_ms()).unwrap_or(0);
        parsed
            .verify(ctx, now, expected_thumbprint)
            .map_err(|err| match err {
                tucdesk_crypto::DeviceProofError::KeyMismatch => AuthError::DeviceKeyMismatch,
                _ => AuthError::ProofInvalid("signature, clock or fields do not verify"),
            })?;
        let fresh = self
            .inner
            .replay
            .insert_if_absent(&parsed.replay_key(), tucdesk_crypto::REPLAY_WINDOW)
            .await
            .map_err(|err| AuthError::internal("proof replay cache", err))?;
        if !fresh {
            return Err(AuthError::ProofInvalid("proof was replayed"));
        }
        Ok(parsed.public_key.jwk_thumbprint())
    }

    /// Password (+ TOTP) login bound to the caller's device key.
    pub async fn login(
        &self,
        request: &LoginRequest,
        source: Option<IpAddr>,
    ) -> Result<LoginOutcome, AuthError> {
        crate::error::check_client_version(request.protocol_version)?;
        if request.password.len() > crate::password::MAX_PASSWORD_BYTES {
            return Err(AuthError::InvalidCredentials);
        }
        let email =
            store::normalize_email(&request.email).map_err(|_| AuthError::InvalidCredentials)?;

        // The proof binds the attempt to a device key and a fresh server challenge, so a
        // captured login request cannot be replayed.
        let challenge = request
            .device_proof
            .as_ref()
            .map(|proof| proof.challenge.as_slice())
            .unwrap_or_default();
        let ctx = DeviceProofContext {
            method: LOGIN_METHOD,
            target: &email,
            session_id: "",
            binding: b"",
            challenge,
        };
        let device_jkt = self
            .verify_device_proof(request.device_proof.as_ref(), &ctx, None)
            .await?;
        self.inner.challenges.redeem(challenge, now_ms()).await?;

        let password = Password::new(request.password.clone());
        let user = self.check_password(&email, &password, source).await?;
        let limiter = &self.inner.limiter;

        let mut tx = self.db().begin().await?;
        if user.totp_enabled {
            if request.totp_code.trim().is_empty() {
                self.metrics().login("totp_required");
                return Ok(LoginOutcome::TotpRequired);
            }
            match self.check_totp(&mut tx, &user, &request.totp_code).await? {
                crate::account::SecondFactor::Totp => {}
                crate::account::SecondFactor::RecoveryCode { remaining } => {
                    let record =
                        Auth::user_event(&user.team_id, "auth.totp_recovery_code_used", &user.id)
                            .target(format!("user:{}", user.id))
                            .context("outcome", "success")
                            .context("remaining", remaining);
                    self.audit(&mut tx, record).await?;
                }
                crate::account::SecondFactor::Refused(reason) => {
                    drop(tx);
                    self.metrics().login("totp_invalid");
                    self.audit_login_failure(&user.team_id, Some(&user), &email, reason, source)
                        .await?;
                    return Err(AuthError::TotpInvalid);
                }
            }
        }

        limiter
            .reset(&email, &LOGIN_ACCOUNT_LIMIT)
            .await
            .map_err(limiter_error)?;
        let role = user.role()?;
        let refresh = refresh::start_family(
            &mut tx,
            &NewFamily {
                user_id: &user.id,
                team_id: &user.team_id,
                device_jkt: &device_jkt,
                client_id: None,
                scope: None,
                lifetime: self.config().refresh_lifetime,
            },
        )
        .await?;
        store::record_login(&mut tx, &user.id).await?;
        let now = now_secs();
        let claims = self.access_claims(
            &user.id,
            &user.team_id,
            Some(&user.email),
            role,
            &device_jkt,
            now,
        )?;
        let access_token = self.sign_access(&claims)?;
        let mut record = Auth::user_event(&user.team_id, "auth.login", &user.id)
            .actor_display(&user.email)
            .target(format!("user:{}", user.id))
            .context("outcome", "success")
            .context("principal", "user")
            .context("device_key_thumbprint", device_jkt.as_str())
            .context("family_id", refresh.family_id.as_str());
        if let Some(addr) = source {
            record = record.context("client_ip", addr.to_string());
        }
        self.commit_issued_pair(tx, record).await?;
        self.metrics().login("success");
        Ok(LoginOutcome::Tokens(Box::new(IssuedTokens {
            access_token: access_token.into(),
            access_expires_at_ms: i64::try_from(claims.exp).unwrap_or(i64::MAX) * 1000,
            refresh,
            user,
        })))
    }

    /// The password step of every sign-in (gRPC `Login` and the OAuth consent form), for a
    /// normalised email: the attempt is counted against the account and the source *before*
    /// the check, so concurrent guesses cannot overshoot the limits; an unknown user is
    /// checked against a dummy hash (same answer, same cost); a disabled account is refused.
    /// Every failure is audited. The caller resets the account counter once it is done.
    pub(crate) async fn check_password(
        &self,
        email: &str,
        password: &Password,
        source: Option<IpAddr>,
    ) -> Result<UserRow, AuthError> {
        // Count first, then check: concurrent guesses cannot overshoot the limit.
        let limiter = &self.inner.limiter;
        let account = limiter
            .record_failure(email, &LOGIN_ACCOUNT_LIMIT)
            .await
            .map_err(limiter_error)?;
        let by_source = match source {
            Some(addr) => limiter
                .record_failure(&source_key(addr), &LOGIN_SOURCE_LIMIT)
                .await
                .map_err(limiter_error)?,
            None => Decision::Allowed { remaining: 1 },
        };
        let user = store::find_user_by_email(self.db(), email).await?;
        let team_for_audit = user
            .as_ref()
            .map_or(SYSTEM_TEAM, |u| u.team_id.as_str())
            .to_owned();
        for (limit, decision) in [("account", account), ("source", by_source)] {
            if let Decision::Locked { retry_after } = decision {
                self.metrics().login("locked");
                self.metrics().lockouts.with_label_values(&[limit]).inc();
                self.audit_login_failure(&team_for_audit, user.as_ref(), email, "locked", source)
                    .await?;
                return Err(AuthError::Locked { retry_after });
            }
        }

        // Same cost and answer for an unknown user and a wrong password.
        let stored = user.as_ref().and_then(|u| u.password_hash.as_deref());
        let matched = self
            .inner
            .passwords
            .verify(stored, password)
            .await
            .map_err(|err| AuthError::internal("password verification", err))?;
        let Some(user) = user.filter(|_| matched) else {
            self.metrics().login("invalid_credentials");
            self.audit_login_failure(&team_for_audit, None, email, "invalid_credentials", source)
                .await?;
            return Err(AuthError::InvalidCredentials);
        };
        if user.disabled {
            self.metrics().login("disabled");
            self.audit_login_failure(&user.team_id, Some(&user), email, "disabled", source)
                .await?;
            return Err(AuthError::Disabled);
        }
        Ok(user)
    }

    /// Second-factor check for a user with TOTP enabled: a TOTP code (each step once) or an
    /// unused recovery code (consumed atomically), recorded in `tx`.
    async fn check_totp(
        &self,
        tx: &mut tucdesk_svc::sql::Tx,
        user: &UserRow,
        code: &str,
    ) -> Result<crate::account::SecondFactor, AuthError> {
        self.use_second_factor(tx, user, code).await
    }

    pub(crate) async fn audit_login_failure(
        &self,
        team_id: &str,
        user: Option<&UserRow>,
        email: &str,
        reason: &str,
        source: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        let actor = user.map_or(ANONYMOUS, |u| u.id.as_str());
        let mut record = Auth::user_event(team_id, "auth.login_failed", actor)
            .target(format!("email:{email}"))
            .context("outcome", "failure")
            .context("reason", reason);
        if let Some(addr) = source {
            record = record.context("client_ip", addr.to_string());
        }
        let mut tx = self.db().begin().await?;
        self.audit(&mut tx, record).await?;
        self.commit(tx).await
    }
}
