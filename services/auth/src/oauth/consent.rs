//! The consent step: sign-in with the same rules as gRPC `Login`, then an authorization code
//! and a recorded grant.
//!
//! The password check is [`Auth::check_password`] itself (attempts counted per account and per
//! source before checking, dummy hash for unknown users, lockout, disabled accounts), the
//! second factor is the same TOTP / recovery-code check, and the account counter resets only
//! after both passed. Scopes above the user's role are not granted (see `scope.rs`).

use std::net::IpAddr;

use super::authorize::AuthorizeRequest;
use super::clients;
use super::codes::{self, NewCode};
use super::grants;
use crate::account::{SecondFactor, limiter_error};
use crate::error::AuthError;
use crate::login::LOGIN_ACCOUNT_LIMIT;
use crate::password::Password;
use crate::service::Auth;
use crate::store;

/// What the user typed into the form.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub email: &'a str,
    pub password: &'a str,
    /// TOTP or recovery code; empty when the user left it out.
    pub second_factor: &'a str,
}

/// A successful consent.
#[derive(Debug)]
pub enum ConsentOutcome {
    /// The authorization code to send to the client.
    Code(tucdesk_crypto::SecretString),
    /// The password was right; the account needs its second factor too.
    SecondFactorRequired,
}

/// A consent that did not produce a code.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// Sign-in failed (shown on the page again).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The user may not grant this request (sent back to the client as `access_denied`).
    #[error("{0}")]
    Denied(&'static str),
}

impl Auth {
    /// Signs the user in and, if they may grant the request, issues a code for it.
    pub(crate) async fn oauth_consent(
        &self,
        request: &AuthorizeRequest,
        credentials: &Credentials<'_>,
        source: Option<IpAddr>,
    ) -> Result<ConsentOutcome, ConsentError> {
        if credentials.password.len() > crate::password::MAX_PASSWORD_BYTES {
            return Err(AuthError::InvalidCredentials.into());
        }
        let email =
            store::normalize_email(credentials.email).map_err(|_| AuthError::InvalidCredentials)?;
        let password = Password::new(credentials.password.to_owned());
        let user = self.check_password(&email, &password, source).await?;

        let mut tx = self.db().begin().await.map_err(AuthError::from)?;
        if user.totp_enabled {
            if credentials.second_factor.trim().is_empty() {
                self.metrics().login("totp_required");
                return Ok(ConsentOutcome::SecondFactorRequired);
            }
            match self
                .use_second_factor(&mut tx, &user, credentials.second_factor.trim())
                .await?
            {
                SecondFactor::Totp => {}
                SecondFactor::RecoveryCode { remaining } => {
                    let record =
                        Auth::user_event(&user.team_id, "auth.totp_recovery_code_used", &user.id)
                            .target(format!("user:{}", user.id))
                            .context("outcome", "success")
                            .context("remaining", remaining);
                    self.audit(&mut tx, record).await?;
                }
                SecondFactor::Refused(reason) => {
                    drop(tx);
                    self.metrics().login("totp_invalid");
                    self.audit_login_failure(&user.team_id, Some(&user), &email, reason, source)
                        .await?;
                    return Err(AuthError::TotpInvalid.into());
                }
            }
        }
        self.inner
            .limiter
            .reset(&email, &LOGIN_ACCOUNT_LIMIT)
            .await
            .map_err(limiter_error)?;

        // Only a fully signed-in user learns whether they may grant the request.
        let client = &request.client;
        if !client.usable_by_team(&user.team_id)
            || clients::revoked_for_team(self.db(), &client.client_id, &user.team_id).await?
        {
            return Err(ConsentError::Denied(
                "this client is not allowed in your team",
            ));
        }
        let scopes = request.scopes.grantable_by(user.role()?);
        if scopes.is_empty() {
            return Err(ConsentError::Denied(
                "your role does not allow any of the requested scopes",
            ));
        }

        let scope = scopes.to_string();
        let code = codes::insert(
            &mut tx,
            &NewCode {
                client_id: &client.client_id,
                user_id: &user.id,
                team_id: &user.team_id,
                redirect_uri: &request.redirect_uri,
                code_challenge: &request.code_challenge,
                scope: &scope,
            },
        )
        .await?;
        let grant_id =
            grants::upsert(&mut tx, &client.client_id, &user.id, &user.team_id, &scope).await?;
        store::record_login(&mut tx, &user.id).await?;
        let mut record = Auth::user_event(&user.team_id, "auth.oauth_grant", &user.id)
            .actor_display(&user.email)
            .target(format!("oauth_client:{}", client.client_id))
            .context("outcome", "success")
            .context("principal", "user")
            .context("client_id", client.client_id.as_str())
            .context("client_name", client.name.as_str())
            .context("scope", scope.as_str())
            .context("grant_id", grant_id.as_str());
        if let Some(addr) = source {
            record = record.context("client_ip", addr.to_string());
        }
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.metrics().login("success");
        Ok(ConsentOutcome::Code(code.into()))
    }
}
