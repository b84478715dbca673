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

mod input;

use tonic::Request;
use tucdesk_proto::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use tucdesk_proto::v1::{
    CreateUserRequest, DeviceProof, GetUserRequest, ListUsersRequest, SetUserDisabledRequest,
    SetUserRoleRequest,
};
use tucdesk_svc::sql::{Tx, now_ms};
use tucdesk_token::Role;

use crate::account::require_person;
use crate::authz::{Caller, ProofScope, require_role};
use crate::error::AuthError;
use crate::refresh;
use crate::service::Auth;
use crate::store::{self, UserRow};
pub use input::{DEFAULT_INVITE_TTL, MAX_INVITE_TTL, MAX_QUERY_LEN, MAX_REASON_LEN};
use input::{
    decode_page_token, display_name_arg, encode_page_token, invite_ttl_ms, like_pattern,
    person_role, reason_arg, role_binding, user_id_arg,
};

pub const CREATE_USER_METHOD: &str = "/tucdesk.v1.AuthService/CreateUser";
pub const DISABLE_USER_METHOD: &str = "/tucdesk.v1.AuthService/DisableUser";
pub const ENABLE_USER_METHOD: &str = "/tucdesk.v1.AuthService/EnableUser";
pub const SET_USER_ROLE_METHOD: &str = "/tucdesk.v1.AuthService/SetUserRole";

/// Why a disabled user's refresh families were revoked, as stored.
pub const REVOKED_USER_DISABLED: &str = "user_disabled";

/// A user created by an admin, with the invite shown once.
#[derive(Debug)]
pub struct CreatedUser {
    pub user: UserRow,
    pub invite_token: tucdesk_crypto::SecretString,
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
            invite_token: invite_token.into(),
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
