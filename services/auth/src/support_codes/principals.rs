//! Support principals: one per redemption of a support code (`support:<code id>:<use>`), kept
//! in `support_principals` so that the service can check, long after the redemption, that a
//! principal still may act (its code neither revoked nor expired, its access not over, the
//! same device key) and show the technician's name (`WhoAmI`, the host's consent prompt via
//! `MintSessionToken`).

use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};
use tucdesk_token::AccessClaims;

use super::store::{self, SupportCodeRow};
use crate::error::AuthError;
use crate::service::Auth;

/// Prefix of every support principal's id (the access token's `sub`).
pub const SUPPORT_SUBJECT_PREFIX: &str = "support:";

/// One redemption of a support code.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SupportPrincipalRow {
    /// `support:<code id>:<use number>`, the access token's `sub`.
    pub id: String,
    pub code_id: String,
    pub team_id: String,
    /// The technician's name as given at redemption.
    pub display_name: String,
    /// Thumbprint of the device key that redeemed the code (the token's `cnf.jkt`).
    pub device_jkt: String,
    pub created_at_ms: i64,
    /// When the principal's access token expires; it acts no longer after that.
    pub expires_at_ms: i64,
}

/// A support principal with its code.
#[derive(Debug, Clone)]
pub struct SupportPrincipal {
    pub principal: SupportPrincipalRow,
    pub code: SupportCodeRow,
}

/// Why a support principal may not act any more. The audit log records the label; the
/// caller gets `PERMISSION_DENIED` with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactive {
    /// Its access token's time is over.
    Expired,
    CodeRevoked,
    CodeExpired,
}

impl Inactive {
    pub fn label(self) -> &'static str {
        match self {
            Inactive::Expired => "principal_expired",
            Inactive::CodeRevoked => "code_revoked",
            Inactive::CodeExpired => "code_expired",
        }
    }

    pub fn error(self) -> AuthError {
        AuthError::PermissionDenied(match self {
            Inactive::Expired => "the support access has ended",
            Inactive::CodeRevoked => "the support code was revoked",
            Inactive::CodeExpired => "the support code has expired",
        })
    }
}

impl SupportPrincipal {
    /// Whether the principal may still act at `now_ms`, and if not, why.
    pub fn inactive(&self, now_ms: i64) -> Option<Inactive> {
        if self.code.revoked_at_ms.is_some() {
            Some(Inactive::CodeRevoked)
        } else if self.principal.expires_at_ms <= now_ms {
            Some(Inactive::Expired)
        } else if self.code.expires_at_ms <= now_ms {
            Some(Inactive::CodeExpired)
        } else {
            None
        }
    }
}

/// Whether `sub` names a support principal rather than a user (user ids are UUIDs).
pub fn is_support_subject(sub: &str) -> bool {
    sub.starts_with(SUPPORT_SUBJECT_PREFIX)
}

/// Whether verified access-token claims are a support principal's (as rendezvous decides it:
/// the subject and a scope).
pub fn is_support_principal(claims: &AccessClaims) -> bool {
    is_support_subject(&claims.sub) && claims.scp.is_some()
}

/// Records a redemption in `tx` (the transaction that consumed the use).
pub async fn insert(tx: &mut Tx, row: &SupportPrincipalRow) -> Result<(), AuthError> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO support_principals (id, code_id, team_id, display_name, device_jkt, \
             created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.code_id)
        .bind(&row.team_id)
        .bind(&row.display_name)
        .bind(&row.device_jkt)
        .bind(row.created_at_ms)
        .bind(row.expires_at_ms)
        .execute(conn)
        .await?;
    });
    Ok(())
}

/// The support principal `id` of `team_id`; another team's, like an unknown one, is `None`.
async fn find_in_team(
    db: &Database,
    team_id: &str,
    id: &str,
) -> Result<Option<SupportPrincipalRow>, AuthError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT id, code_id, team_id, display_name, device_jkt, created_at_ms, \
             expires_at_ms FROM support_principals WHERE id = $1 AND team_id = $2",
        )
        .bind(id)
        .bind(team_id)
        .fetch_optional(pool)
        .await?
    }))
}

impl Auth {
    /// The support principal `id` of `team_id` with its code, whatever their state; `None`
    /// when the team has no such principal.
    pub async fn support_principal(
        &self,
        team_id: &str,
        id: &str,
    ) -> Result<Option<SupportPrincipal>, AuthError> {
        if !is_support_subject(id) {
            return Ok(None);
        }
        let Some(principal) = find_in_team(self.db(), team_id, id).await? else {
            return Ok(None);
        };
        let Some(code) = store::find_in_team(self.db(), team_id, &principal.code_id).await? else {
            return Ok(None);
        };
        Ok(Some(SupportPrincipal { principal, code }))
    }

    /// The support principal behind verified access-token claims, for `WhoAmI`: known to the
    /// token's team (else `TOKEN_INVALID`, as for a user who does not exist) and still able
    /// to act (else `PERMISSION_DENIED` saying why, as for a disabled user).
    pub async fn whoami_support(
        &self,
        claims: &AccessClaims,
    ) -> Result<SupportPrincipal, AuthError> {
        let support = self
            .support_principal(&claims.team_id, &claims.sub)
            .await?
            .ok_or(AuthError::TokenInvalid)?;
        match support.inactive(tucdesk_svc::sql::now_ms()) {
            Some(inactive) => Err(inactive.error()),
            None => Ok(support),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(now: i64) -> SupportPrincipal {
        SupportPrincipal {
            principal: SupportPrincipalRow {
                id: "support:c:1".into(),
                code_id: "c".into(),
                team_id: "t".into(),
                display_name: "Tech".into(),
                device_jkt: "j".into(),
                created_at_ms: now - 10,
                expires_at_ms: now + 1_000,
            },
            code: SupportCodeRow {
                id: "c".into(),
                team_id: "t".into(),
                agent_id: None,
                tag: Some("lab".into()),
                session_kinds: "shell".into(),
                created_by: "u".into(),
                note: String::new(),
                created_at_ms: now - 100,
                expires_at_ms: now + 2_000,
                max_uses: 1,
                uses: 1,
                revoked_at_ms: None,
            },
        }
    }

    #[test]
    fn a_used_up_code_still_lets_its_principals_act_until_revoked_or_expired() {
        let now = 1_000_000;
        let live = principal(now);
        assert_eq!(live.inactive(now), None);
        assert_eq!(live.inactive(now + 1_000), Some(Inactive::Expired));
        let mut revoked = principal(now);
        revoked.code.revoked_at_ms = Some(now - 1);
        assert_eq!(revoked.inactive(now), Some(Inactive::CodeRevoked));
        let mut code_expired = principal(now);
        code_expired.code.expires_at_ms = now;
        assert_eq!(code_expired.inactive(now), Some(Inactive::CodeExpired));
    }

    #[test]
    fn only_support_subjects_are_support_principals() {
        assert!(is_support_subject("support:0193a8c4:1"));
        assert!(!is_support_subject("0193a8c4-0000-7000-8000-000000000001"));
    }
}
