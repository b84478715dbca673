//! Support codes (SPEC §3): an admin creates a short code scoped to one agent or a tag; a
//! technician types it into their client and gets a short-lived access token for a *support
//! principal*.
//!
//! - **At rest.** Codes are 12 Crockford base32 symbols, 60 bits (`tucdesk_crypto::codes`),
//!   stored only as `HMAC-SHA256(KEK subkey "support-code-hash", domain ‖ 0 ‖ normalized)`:
//!   without the KEK a leaked table cannot be guessed offline. The code is shown once.
//! - **Who manages them.** Admins and owners (`auth.proto`: "admin creates"). A code hands
//!   session access to someone outside the team, an administrative decision, not an
//!   operator's. Create and revoke are sensitive (device proof); list is team-scoped.
//! - **Redemption** (unauthenticated): a proof by the technician's device key over a fresh
//!   challenge and the normalized code, then the rate limits, counted first, then one
//!   conditional UPDATE that consumes a use (two concurrent redeemers of a single-use code:
//!   exactly one wins).
//! - **What it yields.** An access token, no refresh token: `sub` `support:<code id>:<use>`,
//!   no `email`, role `viewer`, `scp` `agent:<id>` or `tag:<tag>`, `kinds`, `cnf.jkt` of the
//!   redeeming device key, expiring at the earlier of one hour and the code's expiry. It has
//!   no user row, so every user method of this service refuses it; the redemption is kept in
//!   `support_principals` ([`principals`]), which `WhoAmI` and `MintSessionToken` check.
//!
//! Rate limits: [`REDEEM_SOURCE_LIMIT`] counts every proven attempt per source before the
//! code is looked up (the brute-force guard); [`REDEEM_TEAM_LIMIT`] counts, per team, attempts
//! that found a live code of the team before it is consumed. See `docs/auth.md`.

pub mod principals;
mod redeem;
mod store;

use std::time::Duration;

use tonic::Request;
use tucdesk_crypto::{CodeHashKey, CodeKind, SupportCode};
use tucdesk_proto::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_TOKEN_LEN, MAX_TAG_LEN};
use tucdesk_proto::v1::{
    CreateSupportCodeRequest, ListSupportCodesRequest, RevokeSupportCodeRequest,
    SessionKind as ProtoKind, SupportCodeState, create_support_code_request::Scope,
};
use tucdesk_svc::ratelimit::LimitPolicy;
use tucdesk_svc::sql::now_ms;
use tucdesk_token::{Role, SessionKind};

pub use store::{SupportCodeRow, kind_to_proto};

use crate::authz::{ProofScope, require_role};
use crate::error::AuthError;
use crate::secrets::Purpose;
use crate::service::Auth;

/// The gRPC methods device proofs are bound to.
pub const CREATE_METHOD: &str = tucdesk_crypto::proof_scopes::CREATE_SUPPORT_CODE;
pub const REVOKE_METHOD: &str = "/tucdesk.v1.AuthService/RevokeSupportCode";
pub const REDEEM_METHOD: &str = tucdesk_crypto::proof_scopes::REDEEM_SUPPORT_CODE;

/// Lowest role that creates, lists and revokes codes.
pub const MANAGE_ROLE: Role = Role::Admin;

/// Role of a support principal: the lowest with any session meaning, so a check that forgets
/// `scp` still ranks it below every operator; services grant it sessions only within `scp`
/// and `kinds`.
pub const SUPPORT_ROLE: Role = Role::Viewer;

/// Code lifetime when the request says 0 (`auth.proto`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// Longest code lifetime (`auth.proto`).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Uses when the request says 0: single use (SPEC §3).
pub const DEFAULT_MAX_USES: u32 = 1;
/// Most uses of one code (`auth.proto`).
pub const MAX_USES: u32 = 10;
/// Longest note, in bytes.
pub const MAX_NOTE_LEN: usize = 256;
/// Longest support-principal access token (`auth.proto`; tucdesk-token's cap).
pub const MAX_SUPPORT_TOKEN_TTL: Duration =
    Duration::from_secs(tucdesk_token::MAX_ACCESS_TOKEN_LIFETIME_SECS);

/// Redemption attempts per source address (IPv6 by /64), counted before the code is looked
/// up, successes included, and never reset by a success (an attacker could otherwise reset
/// it with a code of their own). Generous enough for a support desk behind one NAT; at this
/// rate one address needs ~10^12 years for an even chance at one 60-bit code.
pub const REDEEM_SOURCE_LIMIT: LimitPolicy = LimitPolicy {
    name: "support-redeem-source",
    max_failures: 20,
    window: Duration::from_secs(15 * 60),
    lockout: Duration::from_secs(15 * 60),
};

/// Attempts on live codes of one team. A wrong guess names no team, so this cannot count
/// guesses; it bounds how fast a team's codes can be turned into support principals (a
/// leaked batch, a compromised admin), and since only live codes count, someone holding a
/// spent or revoked code cannot use it to lock the team out.
pub const REDEEM_TEAM_LIMIT: LimitPolicy = LimitPolicy {
    name: "support-redeem-team",
    max_failures: 60,
    window: Duration::from_secs(15 * 60),
    lockout: Duration::from_secs(15 * 60),
};

/// Limiter key shared by callers whose address is unknown (in-process use): they share one
/// budget rather than escape the limit.
const UNKNOWN_SOURCE: &str = "unknown-source";

/// Codes drawn before giving up on hash collisions (each has probability ~ n / 2^60).
const MAX_GENERATION_ATTEMPTS: usize = 3;

/// A code just created: the secret, in display form, shown once, and its metadata.
pub struct CreatedSupportCode {
    pub code: tucdesk_crypto::SecretString,
    pub info: SupportCodeRow,
}

impl std::fmt::Debug for CreatedSupportCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedSupportCode")
            .field("code", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

/// One page of `ListSupportCodes`; states are computed at `now_ms`.
#[derive(Debug)]
pub struct SupportCodePage {
    pub codes: Vec<SupportCodeRow>,
    pub next_page_token: String,
    pub now_ms: i64,
}

/// A successful redemption.
pub struct RedeemedSupportCode {
    pub access_token: tucdesk_crypto::SecretString,
    pub expires_at_ms: i64,
    pub info: SupportCodeRow,
}

impl std::fmt::Debug for RedeemedSupportCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedeemedSupportCode")
            .field("access_token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("info", &self.info)
            .finish()
    }
}

/// What a support code grants access to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CodeScope {
    Agent(String),
    Tag(String),
}

/// The device-proof target of `CreateSupportCode`: `agent:<id>` or `tag:<tag>` as sent.
pub fn create_target(scope: Option<&Scope>) -> String {
    match scope {
        Some(Scope::AgentId(agent)) => format!("agent:{agent}"),
        Some(Scope::Tag(tag)) => format!("tag:{tag}"),
        None => String::new(),
    }
}

pub use tucdesk_crypto::proof_scopes::{redeem_binding, support_code_binding as create_binding};

fn invalid(message: &str) -> AuthError {
    AuthError::InvalidArgument(message.to_owned())
}

fn validate_scope(scope: Option<&Scope>) -> Result<CodeScope, AuthError> {
    match scope {
        Some(Scope::AgentId(agent)) if tucdesk_crypto::PublicKey::from_agent_id(agent).is_ok() => {
            Ok(CodeScope::Agent(agent.clone()))
        }
        Some(Scope::AgentId(_)) => Err(invalid("agent_id is not a valid agent id")),
        Some(Scope::Tag(tag)) if valid_tag(tag) => Ok(CodeScope::Tag(tag.clone())),
        Some(Scope::Tag(_)) => Err(invalid(
            "tag must be 1..=64 bytes of a-z, 0-9 and _ . : = / -",
        )),
        None => Err(invalid("a support code needs an agent_id or a tag")),
    }
}

/// The tag alphabet of agent tags (`docs/protocol.md`).
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:=/-".contains(&b))
}

/// Wire kinds → the token's kinds, de-duplicated in order; none means shell only.
fn validate_kinds(kinds: &[i32]) -> Result<Vec<SessionKind>, AuthError> {
    let mut out = Vec::new();
    for kind in kinds {
        let kind = match ProtoKind::try_from(*kind) {
            Ok(ProtoKind::Shell) => SessionKind::Shell,
            Ok(ProtoKind::Exec) => SessionKind::Exec,
            _ => return Err(invalid("allowed_kinds must be SHELL or EXEC")),
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if out.is_empty() {
        out.push(SessionKind::Shell);
    }
    Ok(out)
}

fn validate_ttl(ttl_seconds: u32) -> Result<Duration, AuthError> {
    let ttl = match ttl_seconds {
        0 => DEFAULT_TTL,
        secs => Duration::from_secs(u64::from(secs)),
    };
    if ttl > MAX_TTL {
        return Err(invalid("ttl_seconds must be at most 86400 (24 h)"));
    }
    Ok(ttl)
}

fn validate_max_uses(max_uses: u32) -> Result<i32, AuthError> {
    let uses = if max_uses == 0 {
        DEFAULT_MAX_USES
    } else {
        max_uses
    };
    if uses > MAX_USES {
        return Err(invalid("max_uses must be at most 10"));
    }
    i32::try_from(uses).map_err(|_| invalid("max_uses is out of range"))
}

/// Free text shown to people and written to the audit log: bounded, no control characters
/// (which could forge lines in a log or a terminal).
fn validate_text<'a>(text: &'a str, max: usize, what: &str) -> Result<&'a str, AuthError> {
    let text = text.trim();
    if text.len() > max || text.chars().any(char::is_control) {
        return Err(AuthError::InvalidArgument(format!(
            "{what} must be at most {max} bytes without control characters"
        )));
    }
    Ok(text)
}

fn limiter_error(err: impl std::fmt::Display) -> AuthError {
    // Unknown whether the caller is over the limit: fail closed.
    AuthError::internal("rate limiter", err)
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Auth {
    /// The HMAC key of code hashes, derived from the KEK for this purpose only.
    fn code_hash_key(&self) -> Result<CodeHashKey, AuthError> {
        CodeHashKey::from_slice(self.inner.kek.subkey(Purpose::SupportCodeHash).as_slice())
            .map_err(|err| AuthError::internal("support code key", err))
    }

    /// Creates a code (admin, sensitive). The code is returned here once and never stored.
    pub async fn create_support_code(
        &self,
        request: &Request<CreateSupportCodeRequest>,
    ) -> Result<CreatedSupportCode, AuthError> {
        let body = request.get_ref();
        let target = create_target(body.scope.as_ref());
        let binding = create_binding(body.ttl_seconds, body.max_uses, &body.allowed_kinds);
        let scope = ProofScope {
            method: CREATE_METHOD,
            target: &target,
            binding: &binding,
        };
        let caller = self
            .sensitive_caller(request, body.proof.as_ref(), scope)
            .await?;
        require_role(&caller, MANAGE_ROLE)?;

        let code_scope = validate_scope(body.scope.as_ref())?;
        let kinds = validate_kinds(&body.allowed_kinds)?;
        let ttl = validate_ttl(body.ttl_seconds)?;
        let max_uses = validate_max_uses(body.max_uses)?;
        let note = validate_text(&body.note, MAX_NOTE_LEN, "note")?;
        let now = now_ms();
        let (agent_id, tag) = match code_scope {
            CodeScope::Agent(agent) => (Some(agent), None),
            CodeScope::Tag(tag) => (None, Some(tag)),
        };
        let row = SupportCodeRow {
            id: uuid::Uuid::now_v7().to_string(),
            team_id: caller.team_id().to_owned(),
            agent_id,
            tag,
            session_kinds: store::kinds_to_stored(&kinds),
            created_by: caller.user_id().to_owned(),
            note: note.to_owned(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(ms(ttl)),
            max_uses,
            uses: 0,
            revoked_at_ms: None,
        };

        let key = self.code_hash_key()?;
        for _ in 0..MAX_GENERATION_ATTEMPTS {
            let code = SupportCode::generate()
                .map_err(|err| AuthError::internal("support code generation", err))?;
            let hash = code
                .hash(&key, CodeKind::Support)
                .map_err(|err| AuthError::internal("support code hashing", err))?;
            let mut tx = self.db().begin().await?;
            if !store::insert(&mut tx, &row, &hash.to_bytes()).await? {
                continue;
            }
            let record =
                Auth::user_event(&row.team_id, "auth.support_code_created", &row.created_by)
                    .actor_display(&caller.user.email)
                    .target(format!("support_code:{}", row.id))
                    .context("outcome", "success")
                    .context("scope", row.scope_claim())
                    .context("session_kinds", row.session_kinds.as_str())
                    .context("max_uses", row.max_uses)
                    .context("expires_at_ms", row.expires_at_ms)
                    .context("note", row.note.as_str());
            self.audit(&mut tx, record).await?;
            self.commit(tx).await?;
            return Ok(CreatedSupportCode {
                code: code.display().into(),
                info: row,
            });
        }
        Err(AuthError::internal(
            "support code generation",
            "repeated hash collisions",
        ))
    }

    /// The caller's team's codes (admin), newest first, optionally of one state.
    pub async fn list_support_codes(
        &self,
        request: &Request<ListSupportCodesRequest>,
    ) -> Result<SupportCodePage, AuthError> {
        let caller = self.caller(request).await?;
        require_role(&caller, MANAGE_ROLE)?;
        let body = request.get_ref();
        let state = SupportCodeState::try_from(body.state)
            .map_err(|_| invalid("state is not a SupportCodeState"))?;
        let page = body.page.clone().unwrap_or_default();
        let size = match page.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        // The page token is the last code id of the previous page, compared in canonical form.
        let after = match page.page_token.as_str() {
            "" => None,
            token if token.len() <= MAX_PAGE_TOKEN_LEN => match uuid::Uuid::parse_str(token) {
                Ok(id) => Some(id.to_string()),
                Err(_) => return Err(invalid("page_token is not one this service issued")),
            },
            _ => return Err(invalid("page_token is not one this service issued")),
        };
        let now = now_ms();
        // One row more than asked tells whether another page follows.
        let mut codes = store::list(
            self.db(),
            caller.team_id(),
            state,
            after.as_deref(),
            now,
            i64::from(size) + 1,
        )
        .await?;
        let more = codes.len() > usize::try_from(size).unwrap_or(usize::MAX);
        codes.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let next_page_token = match codes.last() {
            Some(last) if more => last.id.clone(),
            _ => String::new(),
        };
        Ok(SupportCodePage {
            codes,
            next_page_token,
            now_ms: now,
        })
    }

    /// Revokes a code of the caller's team (admin, sensitive); revoking twice is a no-op. A
    /// foreign team's code is "not found". Tokens already issued stay valid until they expire
    /// (at most one hour, never past the code's expiry).
    pub async fn revoke_support_code(
        &self,
        request: &Request<RevokeSupportCodeRequest>,
    ) -> Result<SupportCodeRow, AuthError> {
        let body = request.get_ref();
        let scope = ProofScope {
            method: REVOKE_METHOD,
            target: &body.code_id,
            binding: b"",
        };
        let caller = self
            .sensitive_caller(request, body.proof.as_ref(), scope)
            .await?;
        require_role(&caller, MANAGE_ROLE)?;
        if uuid::Uuid::parse_str(&body.code_id).is_err() {
            return Err(AuthError::NotFound("support code"));
        }
        let mut tx = self.db().begin().await?;
        let changed = store::revoke(&mut tx, caller.team_id(), &body.code_id, now_ms()).await?;
        if changed {
            let record = Auth::user_event(
                caller.team_id(),
                "auth.support_code_revoked",
                caller.user_id(),
            )
            .actor_display(&caller.user.email)
            .target(format!("support_code:{}", body.code_id))
            .context("outcome", "success");
            self.audit(&mut tx, record).await?;
        }
        self.commit(tx).await?;
        store::find_in_team(self.db(), caller.team_id(), &body.code_id)
            .await?
            .ok_or(AuthError::NotFound("support code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_one_valid_agent_id_or_one_tag() {
        let agent = tucdesk_crypto::Identity::generate()
            .map(|id| id.agent_id())
            .unwrap_or_default();
        assert_eq!(
            validate_scope(Some(&Scope::AgentId(agent.clone()))).ok(),
            Some(CodeScope::Agent(agent))
        );
        assert!(validate_scope(Some(&Scope::AgentId("nope".into()))).is_err());
        assert!(validate_scope(Some(&Scope::Tag("site:paris/floor-2".into()))).is_ok());
        for bad in [
            "",
            "Upper",
            "sp ace",
            "new\nline",
            &"t".repeat(MAX_TAG_LEN + 1),
        ] {
            assert!(
                validate_scope(Some(&Scope::Tag(bad.into()))).is_err(),
                "{bad:?}"
            );
        }
        assert!(validate_scope(None).is_err());
    }

    #[test]
    fn kinds_default_to_shell_and_are_deduplicated() {
        let (shell, exec) = (ProtoKind::Shell as i32, ProtoKind::Exec as i32);
        assert_eq!(validate_kinds(&[]).ok(), Some(vec![SessionKind::Shell]));
        assert_eq!(
            validate_kinds(&[exec, shell, exec]).ok(),
            Some(vec![SessionKind::Exec, SessionKind::Shell])
        );
        assert!(validate_kinds(&[ProtoKind::Unspecified as i32]).is_err());
        assert!(validate_kinds(&[99]).is_err());
    }

    #[test]
    fn lifetime_and_uses_have_defaults_and_caps() {
        assert_eq!(validate_ttl(0).ok(), Some(DEFAULT_TTL));
        assert_eq!(validate_ttl(86_400).ok(), Some(MAX_TTL));
        assert!(validate_ttl(86_401).is_err());
        assert_eq!(validate_max_uses(0).ok(), Some(1));
        assert_eq!(validate_max_uses(10).ok(), Some(10));
        assert!(validate_max_uses(11).is_err());
    }

    #[test]
    fn notes_are_bounded_and_free_of_control_characters() {
        assert_eq!(
            validate_text("  ticket 42 ", 256, "note").ok(),
            Some("ticket 42")
        );
        assert!(validate_text(&"n".repeat(257), 256, "note").is_err());
        assert!(validate_text("a\u{1b}[2J", 256, "note").is_err());
    }

    #[test]
    fn the_create_binding_is_ttl_uses_and_kinds_big_endian() {
        assert_eq!(
            create_binding(600, 2, &[1, 2]),
            [0, 0, 2, 88, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]
        );
        assert_eq!(
            create_target(Some(&Scope::Tag("lab".into()))),
            "tag:lab".to_owned()
        );
    }
}
