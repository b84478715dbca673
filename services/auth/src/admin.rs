//! User administration for admins and owners: invite users, list and read them, disable and
//! enable them, change their role.
//!
//! Rules, checked here for every call:
//! - the caller is an admin or owner of the team in its verified token (`team_id` never comes
//!   from a request), acting with its own login (not an AI agent or support principal);
//! - changes carry a device proof for the exact target and parameters;
//! - `Role::can_grant`: only owners manage owners, so an admin can neither create, raise to,
//!   nor touch an owner; nobody changes their own role or disables themselves;
//! - the team's last enabled owner can be neither disabled nor demoted (checked under a team
//!   lock, so two owners demoting each other at once cannot both win);
//! - a user of another team is NOT_FOUND, never PERMISSION_DENIED.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tonic::Request;
use tucdesk_proto::limits::{
    DEFAULT_PAGE_SIZE, MAX_MESSAGE_LEN, MAX_NAME_LEN, MAX_PAGE_SIZE, MAX_PAGE_TOKEN_LEN, UUID_LEN,
};
use tucdesk_proto::v1::{
    CreateUserRequest, DeviceProof, GetUserRequest, ListUsersRequest, SetUserDisabledRequest,
    SetUserRoleRequest,
};
use tucdesk_svc::sql::{Tx, now_ms};
use tucdesk_token::Role;
use zeroize::Zeroizing;

use crate::account::require_person;
use crate::authz::{Caller, ProofScope, require_role};
use crate::error::AuthError;
use crate::refresh;
use crate::service::Auth;
use crate::store::{self, UserRow};

pub const CREATE_USER_METHOD: &str = "/tucdesk.v1.AuthService/CreateUser";
pub const DISABLE_USER_METHOD: &str = "/tucdesk.v1.AuthService/DisableUser";
pub const ENABLE_USER_METHOD: &str = "/tucdesk.v1.AuthService/EnableUser";
pub const SET_USER_ROLE_METHOD: &str = "/tucdesk.v1.AuthService/SetUserRole";

/// Invite lifetime when `invite_ttl_seconds` is 0.
pub const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(72 * 60 * 60);

/// Longest invite lifetime accepted.
pub const MAX_INVITE_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Longest `ListUsersRequest.query`, in bytes.
pub const MAX_QUERY_LEN: usize = 128;

/// Longest disable/enable reason, in bytes (audited verbatim).
pub const MAX_REASON_LEN: usize = MAX_MESSAGE_LEN;

/// Why a disabled user's refresh families were revoked, as stored.
pub const REVOKED_USER_DISABLED: &str = "user_disabled";

/// A user created by an admin, with the invite shown once.
#[derive(Debug)]
pub struct CreatedUser {
    pub user: UserRow,
    pub invite_token: Zeroizing<String>,
    pub invite_expires_at_ms: i64,
}

/// One page of users.
#[derive(Debug)]
pub struct UserPage {
    pub users: Vec<UserRow>,
    /// Empty when there are no more.
    pub next_page_token: String,
}

const USER_COLUMNS: &str = "id, team_id, email, display_name, role, password_hash, disabled, \
     totp_secret, totp_enabled, totp_last_step, created_at_ms, last_login_at_ms";

/// A role a person may be given, from its wire value.
fn person_role(value: i32) -> Result<Role, AuthError> {
    use tucdesk_proto::v1::Role as P;
    match P::try_from(value) {
        Ok(P::Owner) => Ok(Role::Owner),
        Ok(P::Admin) => Ok(Role::Admin),
        Ok(P::Operator) => Ok(Role::Operator),
        Ok(P::Viewer) => Ok(Role::Viewer),
        Ok(P::AiAgent) => Err(AuthError::InvalidArgument(
            "role ai_agent belongs to OAuth clients, not to people".into(),
        )),
        Ok(P::Unspecified) | Err(_) => Err(AuthError::InvalidArgument(
            "role must be one of owner, admin, operator, viewer".into(),
        )),
    }
}

/// The proof binding of a role parameter: `u32be(role)` of the wire value.
fn role_binding(value: i32) -> [u8; 4] {
    u32::try_from(value).unwrap_or(0).to_be_bytes()
}

fn user_id_arg(user_id: &str) -> Result<&str, AuthError> {
    if user_id.len() != UUID_LEN || uuid::Uuid::parse_str(user_id).is_err() {
        return Err(AuthError::InvalidArgument(
            "user_id must be a canonical UUID".into(),
        ));
    }
    Ok(user_id)
}

fn display_name_arg(name: &str) -> Result<&str, AuthError> {
    let name = name.trim();
    if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(AuthError::InvalidArgument(format!(
            "display_name must be at most {MAX_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(name)
}

fn invite_ttl_ms(seconds: u32) -> Result<i64, AuthError> {
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

fn reason_arg(reason: &str) -> Result<&str, AuthError> {
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
fn decode_page_token(token: &str) -> Result<String, AuthError> {
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

fn encode_page_token(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

/// A `LIKE` pattern matching `query` as a case-insensitive substring (`\` escapes).
fn like_pattern(query: &str) -> Result<String, AuthError> {
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

/// Serialises changes that depend on the team's set of owners: the first statement of the
/// transaction writes the team row, which holds a row lock on Postgres and the write lock
/// on SQLite until commit. Later reads in the transaction see every earlier change.
async fn lock_team(tx: &mut Tx, team_id: &str) -> Result<(), AuthError> {
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query("UPDATE teams SET name = name WHERE id = $1")
            .bind(team_id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

async fn team_user_tx(
    tx: &mut Tx,
    team_id: &str,
    user_id: &str,
) -> Result<Option<UserRow>, AuthError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND team_id = $2");
    Ok(tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user_id)
            .bind(team_id)
            .fetch_optional(conn)
            .await?
    }))
}

/// Enabled owners of the team other than `except`.
async fn other_enabled_owners(tx: &mut Tx, team_id: &str, except: &str) -> Result<i64, AuthError> {
    Ok(tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM users \
             WHERE team_id = $1 AND role = $2 AND disabled = $3 AND id <> $4",
        )
        .bind(team_id)
        .bind(Role::Owner.as_str())
        .bind(false)
        .bind(except)
        .fetch_one(conn)
        .await?
    }))
}

/// Inside the team lock: the caller's current role (a caller demoted or disabled since its
/// request was authenticated acts no more) and the target user.
async fn locked_actor_and_target(
    tx: &mut Tx,
    caller: &Caller,
    user_id: &str,
) -> Result<(Role, UserRow), AuthError> {
    lock_team(tx, caller.team_id()).await?;
    let actor = team_user_tx(tx, caller.team_id(), caller.user_id())
        .await?
        .filter(|actor| !actor.disabled)
        .ok_or(AuthError::Disabled)?;
    let actor_role = actor.role()?;
    if !actor_role.at_least(Role::Admin) {
        return Err(AuthError::PermissionDenied("your role does not allow this"));
    }
    let target = team_user_tx(tx, caller.team_id(), user_id)
        .await?
        .ok_or(AuthError::NotFound("user"))?;
    Ok((actor_role, target))
}

const ONLY_OWNERS_MANAGE_OWNERS: AuthError =
    AuthError::PermissionDenied("only owners manage owners");

const LAST_OWNER: AuthError =
    AuthError::PermissionDenied("the team's last enabled owner cannot be disabled or demoted");

impl Auth {
    /// An admin or owner acting with its own login.
    async fn admin_caller<T>(&self, request: &Request<T>) -> Result<Caller, AuthError> {
        let caller = self.caller(request).await?;
        require_person(&caller)?;
        require_role(&caller, Role::Admin)?;
        Ok(caller)
    }

    /// An admin or owner acting with its own login and a device proof for `scope`.
    async fn sensitive_admin<T>(
        &self,
        request: &Request<T>,
        proof: Option<&DeviceProof>,
        scope: ProofScope<'_>,
    ) -> Result<Caller, AuthError> {
        let caller = self.sensitive_caller(request, proof, scope).await?;
        require_person(&caller)?;
        require_role(&caller, Role::Admin)?;
        Ok(caller)
    }

    /// Creates a user of the caller's team (no password yet) and a single-use invite.
    pub async fn create_user(
        &self,
        request: &Request<CreateUserRequest>,
    ) -> Result<CreatedUser, AuthError> {
        let body = request.get_ref();
        let email = store::normalize_email(&body.email)?;
        let display_name = display_name_arg(&body.display_name)?;
        let role = person_role(body.role)?;
        let ttl_ms = invite_ttl_ms(body.invite_ttl_seconds)?;
        let binding = role_binding(body.role);
        let scope = ProofScope {
            method: CREATE_USER_METHOD,
            target: &email,
            binding: &binding,
        };
        let caller = self
            .sensitive_admin(request, body.proof.as_ref(), scope)
            .await?;
        if !caller.role()?.can_grant(&role) {
            return Err(ONLY_OWNERS_MANAGE_OWNERS);
        }

        let user_id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let mut tx = self.db().begin().await?;
        let inserted = tucdesk_svc::on_tx!(&mut tx, |conn| {
            sqlx::query(
                "INSERT INTO users (id, team_id, email, display_name, role, created_at_ms, \
                 updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(&user_id)
            .bind(caller.team_id())
            .bind(&email)
            .bind(display_name)
            .bind(role.as_str())
            .bind(now)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
        });
        match inserted {
            Ok(_) => {}
            // Emails are unique across teams (login is by email alone).
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(AuthError::AlreadyExists("a user with this email"));
            }
            Err(err) => return Err(err.into()),
        }
        let (invite_token, invite_expires_at_ms) =
            store::create_invite(&mut tx, &user_id, ttl_ms).await?;
        let record = Auth::user_event(caller.team_id(), "auth.user_created", caller.user_id())
            .actor_display(&caller.user.email)
            .target(format!("user:{user_id}"))
            .context("outcome", "success")
            .context("email", email.as_str())
            .context("role", role.as_str())
            .context("invite_expires_at_ms", invite_expires_at_ms);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        let user = store::find_user(self.db(), &user_id)
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        Ok(CreatedUser {
            user,
            invite_token,
            invite_expires_at_ms,
        })
    }

    /// One page of the caller's team, oldest first.
    pub async fn list_users(
        &self,
        request: &Request<ListUsersRequest>,
    ) -> Result<UserPage, AuthError> {
        let body = request.get_ref();
        let page = body.page.clone().unwrap_or_default();
        // Larger sizes are capped, not refused (tucdesk_proto::limits).
        let size = match page.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = decode_page_token(&page.page_token)?;
        let pattern = like_pattern(&body.query)?;
        let caller = self.admin_caller(request).await?;

        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE team_id = $1 AND id > $2 \
             AND (disabled = $3 OR $4) \
             AND (LOWER(email) LIKE $5 ESCAPE '\\' OR LOWER(display_name) LIKE $5 ESCAPE '\\') \
             ORDER BY id LIMIT $6"
        );
        // One extra row says whether another page follows.
        let limit = i64::from(size) + 1;
        let mut users: Vec<UserRow> = tucdesk_svc::on_pool!(self.db(), |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(caller.team_id())
                .bind(&after)
                .bind(false)
                .bind(body.include_disabled)
                .bind(&pattern)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        let next_page_token = if users.len() > size as usize {
            users.truncate(size as usize);
            users
                .last()
                .map(|user| encode_page_token(&user.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(UserPage {
            users,
            next_page_token,
        })
    }

    /// A user of the caller's team.
    pub async fn get_user(&self, request: &Request<GetUserRequest>) -> Result<UserRow, AuthError> {
        let user_id = user_id_arg(&request.get_ref().user_id)?;
        let caller = self.admin_caller(request).await?;
        self.team_user(&caller, user_id).await
    }

    /// Disables (revoking every refresh family of the user in the same transaction) or
    /// enables a user.
    pub async fn set_user_disabled(
        &self,
        request: &Request<SetUserDisabledRequest>,
        disabled: bool,
    ) -> Result<UserRow, AuthError> {
        let body = request.get_ref();
        let user_id = user_id_arg(&body.user_id)?;
        let reason = reason_arg(&body.reason)?;
        let method = if disabled {
            DISABLE_USER_METHOD
        } else {
            ENABLE_USER_METHOD
        };
        let scope = ProofScope {
            method,
            target: user_id,
            binding: b"",
        };
        let caller = self
            .sensitive_admin(request, body.proof.as_ref(), scope)
            .await?;
        if user_id == caller.user_id() {
            return Err(AuthError::PermissionDenied(
                "nobody can disable or enable their own account",
            ));
        }

        let mut tx = self.db().begin().await?;
        let (actor_role, target) = locked_actor_and_target(&mut tx, &caller, user_id).await?;
        if !actor_role.can_grant(&target.role()?) {
            return Err(ONLY_OWNERS_MANAGE_OWNERS);
        }
        if disabled
            && !target.disabled
            && target.role()? == Role::Owner
            && other_enabled_owners(&mut tx, caller.team_id(), user_id).await? == 0
        {
            return Err(LAST_OWNER);
        }
        tucdesk_svc::on_tx!(&mut tx, |conn| {
            sqlx::query("UPDATE users SET disabled = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(disabled)
                .bind(now_ms())
                .bind(user_id)
                .execute(conn)
                .await?
                .rows_affected()
        });
        let action = if disabled {
            "auth.user_disabled"
        } else {
            "auth.user_enabled"
        };
        let mut record = Auth::user_event(caller.team_id(), action, caller.user_id())
            .actor_display(&caller.user.email)
            .target(format!("user:{user_id}"))
            .context("outcome", "success")
            .context("reason", reason)
            .context("was_disabled", target.disabled);
        if disabled {
            // Every device of the user is signed out at once: no refresh token of theirs
            // works after this commit.
            let revoked =
                refresh::revoke_user_families(&mut tx, user_id, REVOKED_USER_DISABLED).await?;
            record = record.context("families_revoked", revoked);
        }
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.team_user(&caller, user_id).await
    }

    /// Changes a user's role (never one's own; only owners give or take the owner role).
    pub async fn set_user_role(
        &self,
        request: &Request<SetUserRoleRequest>,
    ) -> Result<UserRow, AuthError> {
        let body = request.get_ref();
        let user_id = user_id_arg(&body.user_id)?;
        let role = person_role(body.role)?;
        let binding = role_binding(body.role);
        let scope = ProofScope {
            method: SET_USER_ROLE_METHOD,
            target: user_id,
            binding: &binding,
        };
        let caller = self
            .sensitive_admin(request, body.proof.as_ref(), scope)
            .await?;
        if user_id == caller.user_id() {
            return Err(AuthError::PermissionDenied(
                "nobody can change their own role",
            ));
        }

        let mut tx = self.db().begin().await?;
        let (actor_role, target) = locked_actor_and_target(&mut tx, &caller, user_id).await?;
        let current = target.role()?;
        // "An admin cannot raise anyone above itself" and cannot touch an owner.
        if !actor_role.can_grant(&current) || !actor_role.can_grant(&role) {
            return Err(ONLY_OWNERS_MANAGE_OWNERS);
        }
        if current == Role::Owner
            && role != Role::Owner
            && !target.disabled
            && other_enabled_owners(&mut tx, caller.team_id(), user_id).await? == 0
        {
            return Err(LAST_OWNER);
        }
        tucdesk_svc::on_tx!(&mut tx, |conn| {
            sqlx::query("UPDATE users SET role = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(role.as_str())
                .bind(now_ms())
                .bind(user_id)
                .execute(conn)
                .await?
                .rows_affected()
        });
        let record = Auth::user_event(caller.team_id(), "auth.role_changed", caller.user_id())
            .actor_display(&caller.user.email)
            .target(format!("user:{user_id}"))
            .context("outcome", "success")
            .context("from", current.as_str())
            .context("to", role.as_str());
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.team_user(&caller, user_id).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn people_get_people_roles_only() {
        use tucdesk_proto::v1::Role as P;
        assert_eq!(person_role(P::Admin as i32).unwrap(), Role::Admin);
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
