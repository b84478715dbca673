//! Teams, users and invites in the auth database.

use sha2::{Digest as _, Sha256};
use tucdesk_svc::on_pool;
use tucdesk_svc::sql::{Database, Tx, now_ms};
use zeroize::Zeroizing;

use crate::error::AuthError;

/// Longest email accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// Longest team or display name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Bytes of randomness in invite and setup tokens.
const INVITE_TOKEN_BYTES: usize = 32;

pub use tucdesk_token::Role;

/// The wire form of a role.
pub fn role_to_proto(role: Role) -> tucdesk_proto::v1::Role {
    use tucdesk_proto::v1::Role as P;
    match role {
        Role::Owner => P::Owner,
        Role::Admin => P::Admin,
        Role::Operator => P::Operator,
        Role::Viewer => P::Viewer,
        Role::AiAgent => P::AiAgent,
        Role::Auditor => P::Auditor,
    }
}

/// A role from its stored or wire name.
pub fn parse_role(text: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|role| role.as_str() == text)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub team_id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub totp_secret: Option<Vec<u8>>,
    pub totp_enabled: bool,
    pub totp_last_step: Option<i64>,
    pub created_at_ms: i64,
    pub last_login_at_ms: Option<i64>,
}

impl UserRow {
    pub fn role(&self) -> Result<Role, AuthError> {
        parse_role(&self.role)
            .ok_or_else(|| AuthError::internal("stored role is unknown", &self.role))
    }

    pub fn to_proto(&self) -> tucdesk_proto::v1::User {
        tucdesk_proto::v1::User {
            user_id: self.id.clone(),
            team_id: self.team_id.clone(),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: parse_role(&self.role).map_or(0, |role| role_to_proto(role) as i32),
            disabled: self.disabled,
            totp_enabled: self.totp_enabled,
            created_at: Some(timestamp(self.created_at_ms)),
            last_login_at: self.last_login_at_ms.map(timestamp),
            invite_pending: self.password_hash.is_none(),
        }
    }
}

/// Unix ms → protobuf timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// Lowercases and bounds an email; the one form stored and compared.
pub fn normalize_email(email: &str) -> Result<String, AuthError> {
    let email = email.trim().to_lowercase();
    let plausible = email.len() <= MAX_EMAIL_LEN
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.starts_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if plausible {
        Ok(email)
    } else {
        Err(AuthError::InvalidArgument(
            "email is not a valid address".into(),
        ))
    }
}

const USER_COLUMNS: &str = "id, team_id, email, display_name, role, password_hash, disabled, \
     totp_secret, totp_enabled, totp_last_step, created_at_ms, last_login_at_ms";

pub async fn find_user_by_email(db: &Database, email: &str) -> Result<Option<UserRow>, AuthError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(email)
            .fetch_optional(pool)
            .await?
    }))
}

pub async fn find_user(db: &Database, user_id: &str) -> Result<Option<UserRow>, AuthError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user_id)
            .fetch_optional(pool)
            .await?
    }))
}

pub async fn count_teams(db: &Database) -> Result<i64, AuthError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM teams")
            .fetch_one(pool)
            .await?
    }))
}

/// Creates a team and its first owner (no password yet); returns (team id, user id).
pub async fn create_team_with_owner(
    tx: &mut Tx,
    team_name: &str,
    email: &str,
) -> Result<(String, String), AuthError> {
    let team_name = team_name.trim();
    if team_name.is_empty() || team_name.len() > MAX_NAME_LEN {
        return Err(AuthError::InvalidArgument(format!(
            "team name must be 1..={MAX_NAME_LEN} bytes"
        )));
    }
    let email = normalize_email(email)?;
    let team_id = uuid::Uuid::now_v7().to_string();
    let user_id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let inserted = tucdesk_svc::on_tx!(tx, |conn| {
        let team = sqlx::query("INSERT INTO teams (id, name, created_at_ms) VALUES ($1, $2, $3)")
            .bind(&team_id)
            .bind(team_name)
            .bind(now)
            .execute(&mut *conn)
            .await;
        match team {
            Ok(_) => sqlx::query(
                "INSERT INTO users (id, team_id, email, role, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(&user_id)
            .bind(&team_id)
            .bind(&email)
            .bind(Role::Owner.as_str())
            .bind(now)
            .execute(conn)
            .await
            .map(|_| ()),
            Err(err) => Err(err),
        }
    });
    match inserted {
        Ok(()) => Ok((team_id, user_id)),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(
            AuthError::AlreadyExists("a team with that name or a user with that email"),
        ),
        Err(err) => Err(err.into()),
    }
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a single-use invite (or setup) token for `user_id`; returns the token, which is
/// stored only as its SHA-256.
pub async fn create_invite(
    tx: &mut Tx,
    user_id: &str,
    ttl_ms: i64,
) -> Result<(Zeroizing<String>, i64), AuthError> {
    let bytes = tucdesk_crypto::rng::random_secret::<INVITE_TOKEN_BYTES>()
        .map_err(|err| AuthError::internal("invite token generation", err))?;
    let token = Zeroizing::new(base64_url(bytes.as_slice()));
    let expires_at = now_ms().saturating_add(ttl_ms);
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO invites (token_hash, user_id, expires_at_ms) VALUES ($1, $2, $3)")
            .bind(token_hash(&token))
            .bind(user_id)
            .bind(expires_at)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok((token, expires_at))
}

/// Consumes an invite atomically: of concurrent callers at most one gets the user id.
pub async fn consume_invite(tx: &mut Tx, token: &str) -> Result<String, AuthError> {
    let now = now_ms();
    let user: Option<String> = tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "UPDATE invites SET used_at_ms = $1 \
             WHERE token_hash = $2 AND used_at_ms IS NULL AND expires_at_ms > $1 \
             RETURNING user_id",
        )
        .bind(now)
        .bind(token_hash(token))
        .fetch_optional(conn)
        .await?
    });
    user.ok_or(AuthError::TokenInvalid)
}

pub async fn set_password(tx: &mut Tx, user_id: &str, phc: &str) -> Result<(), AuthError> {
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query("UPDATE users SET password_hash = $1, updated_at_ms = $2 WHERE id = $3")
            .bind(phc)
            .bind(now_ms())
            .bind(user_id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

pub async fn record_login(tx: &mut Tx, user_id: &str) -> Result<(), AuthError> {
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query("UPDATE users SET last_login_at_ms = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(user_id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

pub async fn set_totp_last_step(tx: &mut Tx, user_id: &str, step: i64) -> Result<bool, AuthError> {
    // Only moves forward: a concurrent login with the same code loses here.
    let updated = tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE users SET totp_last_step = $1 \
             WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(updated == 1)
}

pub fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            normalize_email(" Alice@Example.COM ").ok().as_deref(),
            Some("alice@example.com")
        );
        for bad in ["", "no-at", "@x.org", "a@", "a b@x.org", "a@.x"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert!(normalize_email(&format!("{}@x.org", "a".repeat(300))).is_err());
    }

    #[test]
    fn every_role_has_a_wire_value_of_its_own() {
        let wire: std::collections::BTreeSet<i32> = Role::ALL
            .into_iter()
            .map(|role| role_to_proto(role) as i32)
            .collect();
        assert_eq!(wire.len(), Role::ALL.len());
        assert!(!wire.contains(&(tucdesk_proto::v1::Role::Unspecified as i32)));
        assert_eq!(
            role_to_proto(Role::Auditor),
            tucdesk_proto::v1::Role::Auditor
        );
    }

    #[test]
    fn stored_role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(parse_role(role.as_str()), Some(role));
        }
        assert_eq!(parse_role("root"), None);
    }

    #[test]
    fn timestamps_convert_negative_and_positive_ms() {
        assert_eq!(timestamp(1_500).seconds, 1);
        assert_eq!(timestamp(1_500).nanos, 500_000_000);
        assert_eq!(timestamp(-1).seconds, -1);
    }
}
