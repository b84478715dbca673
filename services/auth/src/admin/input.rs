//! Request fields of the user-administration RPCs, bounded and parsed before anything else
//! runs (clear `INVALID_ARGUMENT` messages), and the `ListUsers` page token.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tucdesk_proto::limits::{MAX_MESSAGE_LEN, MAX_NAME_LEN, MAX_PAGE_TOKEN_LEN, UUID_LEN};
use tucdesk_token::Role;

use crate::error::AuthError;

/// Invite lifetime when `invite_ttl_seconds` is 0.
pub const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(72 * 60 * 60);

/// Longest invite lifetime accepted.
pub const MAX_INVITE_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Longest `ListUsersRequest.query`, in bytes.
pub const MAX_QUERY_LEN: usize = 128;

/// Longest disable/enable reason, in bytes (audited verbatim).
pub const MAX_REASON_LEN: usize = MAX_MESSAGE_LEN;

/// A role a person may be given, from its wire value.
pub(super) fn person_role(value: i32) -> Result<Role, AuthError> {
    use tucdesk_proto::v1::Role as P;
    match P::try_from(value) {
        Ok(P::Owner) => Ok(Role::Owner),
        Ok(P::Admin) => Ok(Role::Admin),
        Ok(P::Operator) => Ok(Role::Operator),
        Ok(P::Viewer) => Ok(Role::Viewer),
        // Reads the audit log only; who may grant it is `Role::can_grant` (owners, admins).
        Ok(P::Auditor) => Ok(Role::Auditor),
        Ok(P::AiAgent) => Err(AuthError::InvalidArgument(
            "role ai_agent belongs to OAuth clients, not to people".into(),
        )),
        Ok(P::Unspecified) | Err(_) => Err(AuthError::InvalidArgument(
            "role must be one of owner, admin, operator, viewer, auditor".into(),
        )),
    }
}

/// The proof binding of a role parameter: `u32be(role)` of the wire value.
pub(super) fn role_binding(value: i32) -> [u8; 4] {
    u32::try_from(value).unwrap_or(0).to_be_bytes()
}

pub(super) fn user_id_arg(user_id: &str) -> Result<&str, AuthError> {
    if user_id.len() != UUID_LEN || uuid::Uuid::parse_str(user_id).is_err() {
        return Err(AuthError::InvalidArgument(
            "user_id must be a canonical UUID".into(),
        ));
    }
    Ok(user_id)
}

pub(super) fn display_name_arg(name: &str) -> Result<&str, AuthError> {
    let name = name.trim();
    if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(AuthError::InvalidArgument(format!(
            "display_name must be at most {MAX_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(name)
}

pub(super) fn invite_ttl_ms(seconds: u32) -> Result<i64, AuthError> {
    let ttl = match seconds {
        0 => DEFAULT_INVITE_TTL,
        s => Duration::from_secs(u64::from(s)),
    };
    if ttl > MAX_INVITE_TTL {
        return Err(AuthError::InvalidArgument(format!(
            "invite_ttl_seconds must be at most {} (30 days)",
            MAX_INVITE_TTL.as_secs()
        )));
    }
    Ok(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn reason_arg(reason: &str) -> Result<&str, AuthError> {
    if reason.len() > MAX_REASON_LEN {
        return Err(AuthError::InvalidArgument(format!(
            "reason must be at most {MAX_REASON_LEN} bytes"
        )));
    }
    Ok(reason.trim())
}

/// Page token ↔ the last user id of the previous page (keyset paging: stable while users
/// are added or removed). Scoped to the caller's team by the query itself, so a forged
/// token can only move the cursor within that team.
pub(super) fn decode_page_token(token: &str) -> Result<String, AuthError> {
    if token.is_empty() {
        return Ok(String::new());
    }
    let invalid = || AuthError::InvalidArgument("page_token is not one this server issued".into());
    if token.len() > MAX_PAGE_TOKEN_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let after = String::from_utf8(bytes).map_err(|_| invalid())?;
    user_id_arg(&after).map_err(|_| invalid())?;
    Ok(after)
}

pub(super) fn encode_page_token(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

/// A `LIKE` pattern matching `query` as a case-insensitive substring (`\` escapes).
pub(super) fn like_pattern(query: &str) -> Result<String, AuthError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(AuthError::InvalidArgument(format!(
            "query must be at most {MAX_QUERY_LEN} bytes"
        )));
    }
    let mut pattern = String::with_capacity(query.len() * 2 + 2);
    pattern.push('%');
    for c in query.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    Ok(pattern)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn people_get_people_roles_only() {
        use tucdesk_proto::v1::Role as P;
        assert_eq!(person_role(P::Admin as i32).unwrap(), Role::Admin);
        assert_eq!(person_role(P::Auditor as i32).unwrap(), Role::Auditor);
        for bad in [P::Unspecified as i32, P::AiAgent as i32, 99, -1] {
            assert!(person_role(bad).is_err(), "{bad}");
        }
        assert_eq!(role_binding(P::Owner as i32), [0, 0, 0, 1]);
    }

    #[test]
    fn invite_ttl_defaults_and_is_capped() {
        assert_eq!(invite_ttl_ms(0).unwrap(), 72 * 3600 * 1000);
        assert_eq!(invite_ttl_ms(60).unwrap(), 60_000);
        assert!(invite_ttl_ms(30 * 24 * 3600).is_ok());
        assert!(invite_ttl_ms(30 * 24 * 3600 + 1).is_err());
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(decode_page_token(&encode_page_token(&id)).unwrap(), id);
        assert_eq!(decode_page_token("").unwrap(), "");
        for bad in ["!!", "bm90LWEtdXVpZA", &"A".repeat(MAX_PAGE_TOKEN_LEN + 1)] {
            assert!(decode_page_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_wildcards_are_escaped_and_bounded() {
        assert_eq!(like_pattern("").unwrap(), "%%");
        assert_eq!(like_pattern(" Bob_50% ").unwrap(), "%bob\\_50\\%%");
        assert!(like_pattern(&"x".repeat(MAX_QUERY_LEN + 1)).is_err());
    }
}
