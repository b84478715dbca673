//! `RedeemSupportCode`: proof, limits counted first, one atomic consume, then the support
//! principal's access token.

use std::net::IpAddr;

use tucdesk_crypto::{CodeKind, DeviceProofContext, SupportCode};
use tucdesk_proto::limits::MAX_NAME_LEN;
use tucdesk_proto::v1::{RedeemSupportCodeRequest, SupportCodeState};
use tucdesk_svc::audit_events::{ANONYMOUS, SYSTEM_TEAM};
use tucdesk_svc::ratelimit::{Decision, source_key};
use tucdesk_svc::sql::now_ms;

use super::principals::{self, SupportPrincipalRow};
use super::store::{self, SupportCodeRow};
use super::{
    MAX_SUPPORT_TOKEN_TTL, REDEEM_METHOD, REDEEM_SOURCE_LIMIT, REDEEM_TEAM_LIMIT,
    RedeemedSupportCode, SUPPORT_ROLE, UNKNOWN_SOURCE, invalid, limiter_error, redeem_binding,
    validate_text,
};
use crate::error::AuthError;
use crate::oauth::clients::is_bidi_control;
use crate::service::Auth;

/// Who tried, for the audit log of every outcome.
struct Attempt<'a> {
    display_name: &'a str,
    source: Option<IpAddr>,
    device_jkt: &'a str,
}

/// The audited reason a found code was refused.
fn refusal_reason(state: SupportCodeState) -> &'static str {
    match state {
        SupportCodeState::Used => "used_up",
        SupportCodeState::Expired => "expired",
        SupportCodeState::Revoked => "revoked",
        SupportCodeState::Active | SupportCodeState::Unspecified => "invalid_code",
    }
}

impl Auth {
    /// Redeems a code for an access token of a support principal bound to the caller's device
    /// key. Unauthenticated: every refusal of a well-formed, proven attempt is counted and
    /// audited, and all of them look the same to the caller (`SUPPORT_CODE_INVALID`), except
    /// a lockout, which says when to retry.
    pub async fn redeem_support_code(
        &self,
        request: &RedeemSupportCodeRequest,
        source: Option<IpAddr>,
    ) -> Result<RedeemedSupportCode, AuthError> {
        crate::error::check_client_version(request.protocol_version)?;
        let display_name = validate_text(&request.display_name, MAX_NAME_LEN, "display_name")?;
        if display_name.is_empty() {
            return Err(invalid("display_name is required"));
        }
        // The host's consent prompt shows the name: nothing that makes it read as another.
        if display_name.chars().any(is_bidi_control) {
            return Err(invalid(
                "display_name must not contain bidirectional-text controls",
            ));
        }
        // Malformed input (length, alphabet) matches no code and cannot be proven: refuse
        // before any work.
        let code = SupportCode::parse(&request.code).map_err(|_| AuthError::SupportCodeInvalid)?;

        // The proof binds the attempt to a device key, this code and a fresh server
        // challenge: every guess costs a round trip, and a captured request cannot be
        // replayed.
        let binding = redeem_binding(&code);
        let challenge = request
            .device_proof
            .as_ref()
            .map(|proof| proof.challenge.as_slice())
            .unwrap_or_default();
        let ctx = DeviceProofContext {
            method: REDEEM_METHOD,
            target: "",
            session_id: "",
            binding: &binding,
            challenge,
        };
        let device_jkt = self
            .verify_device_proof(request.device_proof.as_ref(), &ctx, None)
            .await?;
        self.inner.challenges.redeem(challenge, now_ms()).await?;
        let attempt = Attempt {
            display_name,
            source,
            device_jkt: &device_jkt,
        };

        // Count first, before the lookup: concurrent guesses cannot overshoot, and a locked
        // source learns nothing, not even about the right code.
        let source_id = source.map_or_else(|| UNKNOWN_SOURCE.to_owned(), source_key);
        let by_source = self
            .inner
            .limiter
            .record_failure(&source_id, &REDEEM_SOURCE_LIMIT)
            .await
            .map_err(limiter_error)?;
        if let Decision::Locked { retry_after } = by_source {
            self.audit_redeem_failure(&attempt, None, "locked").await?;
            return Err(AuthError::Locked { retry_after });
        }

        let hash = code
            .hash(&self.code_hash_key()?, CodeKind::Support)
            .map_err(|err| AuthError::internal("support code hashing", err))?
            .to_bytes();
        // An exact lookup of a keyed hash: its timing reveals nothing about codes, since
        // nobody without the KEK can choose a hash.
        let Some(found) = store::find_by_hash(self.db(), &hash).await? else {
            self.audit_redeem_failure(&attempt, None, "invalid_code")
                .await?;
            return Err(AuthError::SupportCodeInvalid);
        };
        let state = found.state(now_ms());
        if state != SupportCodeState::Active {
            self.audit_redeem_failure(&attempt, Some(&found), refusal_reason(state))
                .await?;
            return Err(AuthError::SupportCodeInvalid);
        }
        let by_team = self
            .inner
            .limiter
            .record_failure(&found.team_id, &REDEEM_TEAM_LIMIT)
            .await
            .map_err(limiter_error)?;
        if let Decision::Locked { retry_after } = by_team {
            self.audit_redeem_failure(&attempt, Some(&found), "team_locked")
                .await?;
            return Err(AuthError::Locked { retry_after });
        }

        let now = now_ms();
        let mut tx = self.db().begin().await?;
        let Some(row) = store::consume(&mut tx, &hash, now).await? else {
            // Another redemption took the last use first, or the code was revoked or expired
            // since the lookup.
            drop(tx);
            let reason = store::find_by_hash(self.db(), &hash)
                .await?
                .map_or("invalid_code", |row| refusal_reason(row.state(now)));
            self.audit_redeem_failure(&attempt, Some(&found), reason)
                .await?;
            return Err(AuthError::SupportCodeInvalid);
        };
        let (access_token, expires_at_ms, principal) =
            self.support_token(&row, &device_jkt, now)?;
        // Remembered so that later calls can tell whether this principal still may act, with
        // which key, and under which name.
        principals::insert(
            &mut tx,
            &SupportPrincipalRow {
                id: principal.clone(),
                code_id: row.id.clone(),
                team_id: row.team_id.clone(),
                display_name: display_name.to_owned(),
                device_jkt: device_jkt.clone(),
                created_at_ms: now,
                expires_at_ms,
            },
        )
        .await?;
        let mut record = Auth::user_event(&row.team_id, "auth.support_code_redeemed", &principal)
            .actor_display(display_name)
            .target(format!("support_code:{}", row.id))
            .context("outcome", "success")
            .context("principal", "support")
            .context("scope", row.scope_claim())
            .context("session_kinds", row.session_kinds.as_str())
            .context("uses", row.uses)
            .context("token_expires_at_ms", expires_at_ms)
            .context("device_key_thumbprint", device_jkt.as_str());
        if let Some(addr) = source {
            record = record.context("client_ip", addr.to_string());
        }
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(RedeemedSupportCode {
            access_token: access_token.into(),
            expires_at_ms,
            info: row,
        })
    }

    /// Signs the support principal's access token; returns it, its expiry (ms) and `sub`.
    fn support_token(
        &self,
        row: &SupportCodeRow,
        device_jkt: &str,
        now_ms: i64,
    ) -> Result<(String, i64, String), AuthError> {
        let now_secs = u64::try_from(now_ms / 1000).unwrap_or(0);
        // One principal per use, traceable to the code without storing anything more.
        let principal = format!(
            "{}{}:{}",
            principals::SUPPORT_SUBJECT_PREFIX,
            row.id,
            row.uses
        );
        let mut claims = self.access_claims(
            &principal,
            &row.team_id,
            None,
            SUPPORT_ROLE,
            device_jkt,
            now_secs,
        )?;
        // No later than the code (rounded up to JWT's whole seconds; the consume saw the code
        // unexpired, so this is after `iat`) and never over an hour.
        let code_expiry_secs = u64::try_from(row.expires_at_ms).unwrap_or(0).div_ceil(1000);
        claims.exp = now_secs
            .saturating_add(MAX_SUPPORT_TOKEN_TTL.as_secs())
            .min(code_expiry_secs);
        claims.scp = Some(row.scope_claim());
        claims.kinds = Some(row.kinds()?);
        let token = self.sign_access(&claims)?;
        let expires_at_ms = i64::try_from(claims.exp)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        Ok((token, expires_at_ms, principal))
    }

    async fn audit_redeem_failure(
        &self,
        attempt: &Attempt<'_>,
        code: Option<&SupportCodeRow>,
        reason: &str,
    ) -> Result<(), AuthError> {
        // An unknown code names no team: such attempts go to the system team.
        let team_id = code.map_or(SYSTEM_TEAM, |code| code.team_id.as_str());
        let mut record = Auth::user_event(team_id, "auth.support_code_failed", ANONYMOUS)
            .actor_display(attempt.display_name)
            .context("outcome", "failure")
            .context("reason", reason)
            .context("principal", "support")
            .context("device_key_thumbprint", attempt.device_jkt);
        if let Some(code) = code {
            record = record.target(format!("support_code:{}", code.id));
        }
        if let Some(addr) = attempt.source {
            record = record.context("client_ip", addr.to_string());
        }
        let mut tx = self.db().begin().await?;
        self.audit(&mut tx, record).await?;
        self.commit(tx).await
    }
}
