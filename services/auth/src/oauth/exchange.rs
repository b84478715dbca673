//! What the token endpoint does: exchange a code (with its PKCE verifier) for an AI agent's
//! tokens, and rotate an AI agent's refresh token.
//!
//! AI agents hold no device key. Their access tokens carry `client_id` and `scp` instead of
//! `cnf`, so every method that demands a device proof refuses them; their refresh families
//! are bound to [`NO_DEVICE_KEY`], which no proof's thumbprint ever equals, so gRPC
//! `Refresh` refuses their refresh tokens too, and this endpoint refuses every family that is
//! not the presenting client's. Rotation and reuse detection are the users' (`refresh.rs`).

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tucdesk_svc::sql::{Database, Tx, now_ms};
use tucdesk_token::{AccessClaims, Role};

use super::clients;
use super::codes::{self, CodeRow, Presented};
use super::error::OAuthError;
use super::grants;
use super::scope::Scopes;
use crate::error::AuthError;
use crate::login::now_secs;
use crate::refresh::{self, IssuedRefresh, NewFamily, Rotation};
use crate::service::Auth;
use crate::store::{self, UserRow, base64_url};

/// The device-key thumbprint of OAuth families: none (see the module docs).
pub const NO_DEVICE_KEY: &str = "";

/// RFC 7636 §4.1: a verifier is 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub const MIN_VERIFIER_LEN: usize = 43;
pub const MAX_VERIFIER_LEN: usize = 128;

/// Tokens for an AI agent.
#[derive(Debug)]
pub struct AgentTokens {
    pub access_token: tucdesk_crypto::SecretString,
    pub expires_in: u64,
    pub refresh: IssuedRefresh,
    pub scope: String,
}

/// The parameters of an authorization-code exchange.
#[derive(Debug, Clone, Copy)]
pub struct CodeExchange<'a> {
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub client_id: &'a str,
    pub code_verifier: &'a str,
}

/// The client of the family a refresh token belongs to (`None` for users' families and
/// unknown tokens). A family's client never changes, so reading it outside the rotating
/// transaction is safe.
async fn family_client(db: &Database, token: &str) -> Result<Option<String>, AuthError> {
    if token.is_empty() || token.len() > refresh::MAX_TOKEN_LEN {
        return Ok(None);
    }
    let client: Option<Option<String>> = tucdesk_svc::on_pool!(db, |pool| {
        sqlx::query_scalar(
            "SELECT f.client_id FROM refresh_tokens t \
             JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = $1",
        )
        .bind(refresh::hash_token(token))
        .fetch_optional(pool)
        .await?
    });
    Ok(client.flatten())
}

/// Whether a verifier has the RFC 7636 length and alphabet.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (MIN_VERIFIER_LEN..=MAX_VERIFIER_LEN).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6: BASE64URL(SHA-256(verifier)) equals the challenge, compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = base64_url(&Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

fn invalid_code() -> OAuthError {
    OAuthError::invalid_grant("the authorization code is invalid, expired or was already used")
}

impl Auth {
    /// `grant_type=authorization_code`.
    pub(crate) async fn exchange_code(
        &self,
        request: &CodeExchange<'_>,
    ) -> Result<AgentTokens, OAuthError> {
        if !is_valid_verifier(request.code_verifier) {
            return Err(OAuthError::invalid_request(
                "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            ));
        }
        let now = now_ms();
        let mut tx = self.db().begin().await.map_err(AuthError::from)?;
        let code = match codes::present(&mut tx, request.code, now).await? {
            None => return Err(invalid_code()),
            Some(Presented::Reused(code)) => {
                // A second presentation: someone else has the code. Revoke what it bought.
                grants::revoke_code_family(&mut tx, code.family_id.as_deref()).await?;
                let record =
                    Auth::user_event(&code.team_id, "auth.oauth_code_reused", &code.user_id)
                        .target(format!("oauth_client:{}", code.client_id))
                        .context("outcome", "denied")
                        .context("principal", "ai_agent")
                        .context("client_id", code.client_id.as_str())
                        .context("family_id", code.family_id.clone().unwrap_or_default());
                self.audit(&mut tx, record).await?;
                self.commit(tx).await?;
                self.metrics().refresh_reuse.inc();
                return Err(invalid_code());
            }
            Some(Presented::Fresh(code)) => code,
        };
        // The code is spent whatever follows: one presentation per code.
        let refusal = if code.expires_at_ms <= now {
            Some("expired")
        } else if code.client_id != request.client_id {
            Some("client_mismatch")
        } else if code.redirect_uri != request.redirect_uri {
            Some("redirect_uri_mismatch")
        } else if !pkce_matches(request.code_verifier, &code.code_challenge) {
            Some("pkce_mismatch")
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.audit_token_failure(&mut tx, &code, reason).await?;
            self.commit(tx).await?;
            return Err(invalid_code());
        }
        let Some((user, scopes, role)) = self
            .agent_principal(&mut tx, &code.user_id, &code.client_id, &code.scope)
            .await?
        else {
            self.audit_token_failure(&mut tx, &code, "grant_revoked")
                .await?;
            self.commit(tx).await?;
            return Err(OAuthError::invalid_grant("the grant was revoked"));
        };
        let scope = scopes.to_string();
        let family = refresh::start_family(
            &mut tx,
            &NewFamily {
                user_id: &user.id,
                team_id: &user.team_id,
                device_jkt: NO_DEVICE_KEY,
                client_id: Some(&code.client_id),
                scope: Some(&scope),
                lifetime: self.config().refresh_lifetime,
            },
        )
        .await?;
        codes::set_family(&mut tx, request.code, &family.family_id).await?;
        let (access_token, expires_in) =
            self.sign_agent_token(&user, role, &code.client_id, &scope)?;
        let record = Auth::user_event(&user.team_id, "auth.oauth_token", &user.id)
            .target(format!("refresh_family:{}", family.family_id))
            .context("outcome", "success")
            .context("principal", "ai_agent")
            .context("grant_type", "authorization_code")
            .context("client_id", code.client_id.as_str())
            .context("scope", scope.as_str())
            .context("family_id", family.family_id.as_str());
        self.commit_issued_pair(tx, record).await?;
        Ok(AgentTokens {
            access_token: access_token.into(),
            expires_in,
            refresh: family,
            scope,
        })
    }

    /// `grant_type=refresh_token`: rotates the client's refresh token; `scope` may narrow
    /// the new access token (RFC 6749 §6), never widen it.
    pub(crate) async fn refresh_agent(
        &self,
        token: &str,
        client_id: &str,
        scope: Option<&str>,
    ) -> Result<AgentTokens, OAuthError> {
        let invalid =
            || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
        let requested = scope
            .map(Scopes::parse)
            .transpose()
            .map_err(|err| OAuthError::invalid_scope(err.to_string()))?;
        // Another client's (or a user's device-bound) token is refused without spending it.
        // Read before the transaction: on SQLite a transaction that reads before it writes
        // cannot take the write lock once another connection has written.
        if family_client(self.db(), token).await?.as_deref() != Some(client_id) {
            return Err(invalid());
        }
        let mut tx = self.db().begin().await.map_err(AuthError::from)?;
        let (family, next) = match refresh::rotate(&mut tx, token, now_ms()).await? {
            Rotation::Reused { family } => {
                let record =
                    Auth::user_event(&family.team_id, "auth.refresh_reused", &family.user_id)
                        .target(format!("refresh_family:{}", family.id))
                        .context("outcome", "denied")
                        .context("reason", "TOKEN_REUSED")
                        .context("principal", "ai_agent")
                        .context("client_id", client_id)
                        .context("family_id", family.id.as_str());
                self.audit(&mut tx, record).await?;
                self.commit(tx).await?;
                self.metrics().refresh_reuse.inc();
                return Err(invalid());
            }
            Rotation::Rotated { family, next } => (family, next),
        };
        let granted = family.scope.clone().unwrap_or_default();
        let Some((user, mut scopes, mut role)) = self
            .agent_principal(&mut tx, &family.user_id, client_id, &granted)
            .await?
        else {
            return Err(invalid());
        };
        if let Some(requested) = requested {
            if !requested.is_subset_of(&scopes) || requested.is_empty() {
                return Err(OAuthError::invalid_scope("scope may only narrow the grant"));
            }
            role = requested.token_role().unwrap_or(role);
            scopes = requested;
        }
        let scope = scopes.to_string();
        let (access_token, expires_in) = self.sign_agent_token(&user, role, client_id, &scope)?;
        let record = Auth::user_event(&user.team_id, "auth.refresh", &user.id)
            .target(format!("refresh_family:{}", family.id))
            .context("outcome", "success")
            .context("principal", "ai_agent")
            .context("client_id", client_id)
            .context("scope", scope.as_str())
            .context("generation", family.generation);
        self.commit_issued_pair(tx, record).await?;
        Ok(AgentTokens {
            access_token: access_token.into(),
            expires_in,
            refresh: next,
            scope,
        })
    }

    /// The user an AI agent acts for, if the user, the client and the grant all still stand,
    /// with the granted scopes the user's current role still allows and the token role.
    async fn agent_principal(
        &self,
        tx: &mut Tx,
        user_id: &str,
        client_id: &str,
        scope: &str,
    ) -> Result<Option<(UserRow, Scopes, Role)>, AuthError> {
        let Some(user) = store::find_user(self.db(), user_id)
            .await?
            .filter(|user| !user.disabled)
        else {
            return Ok(None);
        };
        let client_usable = match clients::find(self.db(), client_id).await? {
            Some(client) => {
                client.usable_by_team(&user.team_id)
                    && !clients::revoked_for_team(self.db(), client_id, &user.team_id).await?
            }
            None => false,
        };
        if !client_usable || !grants::is_live(tx, user_id, client_id).await? {
            return Ok(None);
        }
        let scopes = Scopes::parse(scope)
            .unwrap_or_default()
            .grantable_by(user.role()?);
        Ok(scopes.token_role().map(|role| (user, scopes, role)))
    }

    /// Signs an AI agent's access token; returns it and its lifetime in seconds.
    fn sign_agent_token(
        &self,
        user: &UserRow,
        role: Role,
        client_id: &str,
        scope: &str,
    ) -> Result<(String, u64), AuthError> {
        let now = now_secs();
        let mut claims: AccessClaims = self.access_claims(
            &user.id,
            &user.team_id,
            Some(&user.email),
            role,
            NO_DEVICE_KEY,
            now,
        )?;
        // No device key: the client and its scope take the place of the `cnf` binding.
        claims.cnf = None;
        claims.client_id = Some(client_id.to_owned());
        claims.scp = Some(scope.to_owned());
        let token = self.sign_access(&claims)?;
        Ok((token, claims.exp.saturating_sub(now)))
    }

    async fn audit_token_failure(
        &self,
        tx: &mut Tx,
        code: &CodeRow,
        reason: &str,
    ) -> Result<(), AuthError> {
        let record = Auth::user_event(&code.team_id, "auth.oauth_token_failed", &code.user_id)
            .target(format!("oauth_client:{}", code.client_id))
            .context("outcome", "denied")
            .context("principal", "ai_agent")
            .context("grant_type", "authorization_code")
            .context("client_id", code.client_id.as_str())
            .context("reason", reason);
        self.audit(tx, record).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_valid_verifier(verifier));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches(challenge, challenge), "plain is not S256");
    }

    #[test]
    fn verifiers_are_checked_for_length_and_alphabet() {
        assert!(!is_valid_verifier(&"a".repeat(MIN_VERIFIER_LEN - 1)));
        assert!(is_valid_verifier(&"a".repeat(MIN_VERIFIER_LEN)));
        assert!(is_valid_verifier(&"~._-".repeat(32)));
        assert!(!is_valid_verifier(&"a".repeat(MAX_VERIFIER_LEN + 1)));
        assert!(!is_valid_verifier(&format!(
            "{}+",
            "a".repeat(MIN_VERIFIER_LEN)
        )));
        assert!(!is_valid_verifier(&format!(
            "{} ",
            "a".repeat(MIN_VERIFIER_LEN)
        )));
    }
}
