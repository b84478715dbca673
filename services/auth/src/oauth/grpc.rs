//! The `AuthService` OAuth methods (`grpc.rs` delegates here): admins register, list and
//! revoke clients for their team; users list and revoke their grants, admins any grant of
//! their team. Only a person's own login may call them (not an AI agent's token), and
//! another team's grant or client is NOT_FOUND.

use sha2::{Digest as _, Sha256};
use tonic::Request;
use tucdesk_proto::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use tucdesk_proto::v1::{
    ListOAuthClientsRequest, ListOAuthClientsResponse, ListOAuthGrantsRequest,
    ListOAuthGrantsResponse, OAuthClient, OAuthGrant, PageRequest, PageResponse,
    RegisterOAuthClientRequest, RevokeOAuthClientRequest, RevokeOAuthGrantRequest,
};
use tucdesk_svc::on_pool;
use tucdesk_svc::sql::now_ms;
use tucdesk_token::Role;

use super::clients::{
    self, AUTH_METHOD_NONE, ClientMetadata, ClientRow, GRANT_TYPES, RESPONSE_TYPES,
};
use super::grants::{self, GrantRow};
use crate::account::require_person;
use crate::authz::{Caller, ProofScope, require_role};
use crate::error::AuthError;
use crate::service::Auth;
use crate::store::timestamp;

pub const REGISTER_METHOD: &str = "/tucdesk.v1.AuthService/RegisterOAuthClient";
pub const REVOKE_CLIENT_METHOD: &str = "/tucdesk.v1.AuthService/RevokeOAuthClient";

/// Longest id accepted in a request or page token (ours are 36-character UUIDs).
const MAX_ID_LEN: usize = 64;

fn id_arg(id: &str, what: &'static str) -> Result<(), AuthError> {
    let plausible = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if plausible {
        Ok(())
    } else {
        Err(AuthError::NotFound(what))
    }
}

/// (page size, id to start after) of a keyset page; the token is the last id of the
/// previous page, and the query is scoped to the caller's team whatever it says.
fn page_args(page: Option<&PageRequest>) -> Result<(u32, String), AuthError> {
    let page = page.cloned().unwrap_or_default();
    let size = match page.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    };
    if !page.page_token.is_empty() {
        id_arg(&page.page_token, "page").map_err(|_| {
            AuthError::InvalidArgument("page_token is not one this server issued".into())
        })?;
    }
    Ok((size, page.page_token))
}

/// Truncates a page fetched with one extra row and returns the next token.
fn next_page<T>(rows: &mut Vec<T>, size: u32, id: impl Fn(&T) -> &str) -> Option<PageResponse> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let next_page_token = if rows.len() > size {
        rows.truncate(size);
        rows.last()
            .map(|row| id(row).to_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    Some(PageResponse { next_page_token })
}

fn client_proto(row: &ClientRow) -> OAuthClient {
    OAuthClient {
        client_id: row.client_id.clone(),
        redirect_uris: row.redirect_uris(),
        token_endpoint_auth_method: AUTH_METHOD_NONE.into(),
        grant_types: GRANT_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        response_types: RESPONSE_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        client_name: row.name.clone(),
        scope: row.scopes().to_string(),
        client_id_issued_at: Some(timestamp(row.created_at_ms)),
        created_by: row.created_by.clone().unwrap_or_default(),
        revoked_at: row.revoked_at_ms.map(timestamp),
        ..OAuthClient::default()
    }
}

fn grant_proto(row: &GrantRow) -> OAuthGrant {
    OAuthGrant {
        grant_id: row.id.clone(),
        client_id: row.client_id.clone(),
        client_name: row.name_or_id().to_owned(),
        user_id: row.user_id.clone(),
        scope: row.scope.clone(),
        created_at: Some(timestamp(row.created_at_ms)),
        last_used_at: row.last_used_at_ms.map(timestamp),
        expires_at: row.expires_at_ms.map(timestamp),
        revoked_at: row.revoked_at_ms.map(timestamp),
    }
}

impl GrantRow {
    fn name_or_id(&self) -> &str {
        if self.client_name.is_empty() {
            &self.client_id
        } else {
            &self.client_name
        }
    }
}

/// `list(xs) = u32be(count) ‖ lp(x1) ‖ …` (docs/protocol.md, device proofs).
fn list_binding(items: &[String]) -> Vec<u8> {
    let mut out = u32::try_from(items.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    for item in items {
        out.extend_from_slice(&u32::try_from(item.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(item.as_bytes());
    }
    out
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

impl Auth {
    /// A caller who is a person (not an AI agent or support principal).
    async fn oauth_caller<T>(&self, request: &Request<T>) -> Result<Caller, AuthError> {
        let caller = self.caller(request).await?;
        require_person(&caller)?;
        Ok(caller)
    }

    /// `RegisterOAuthClient` (sensitive, admins): a client owned by the caller's team.
    pub async fn register_oauth_client(
        &self,
        request: &Request<RegisterOAuthClientRequest>,
    ) -> Result<OAuthClient, AuthError> {
        let body = request.get_ref();
        let meta = body.metadata.clone().unwrap_or_default();
        let binding = Sha256::digest(list_binding(&meta.redirect_uris));
        let scope = ProofScope {
            method: REGISTER_METHOD,
            target: &meta.client_name,
            binding: &binding,
        };
        let caller = self
            .sensitive_caller(request, body.proof.as_ref(), scope)
            .await?;
        require_person(&caller)?;
        require_role(&caller, Role::Admin)?;
        let metadata = ClientMetadata {
            redirect_uris: meta.redirect_uris.clone(),
            token_endpoint_auth_method: non_empty(&meta.token_endpoint_auth_method),
            grant_types: (!meta.grant_types.is_empty()).then(|| meta.grant_types.clone()),
            response_types: (!meta.response_types.is_empty()).then(|| meta.response_types.clone()),
            client_name: non_empty(&meta.client_name),
            scope: non_empty(&meta.scope),
        };
        let new = clients::validate(&metadata)
            .map_err(|err| AuthError::InvalidArgument(err.description))?;
        let mut tx = self.db().begin().await?;
        let client =
            clients::insert(&mut tx, &new, Some((caller.team_id(), caller.user_id()))).await?;
        let record = Auth::user_event(
            caller.team_id(),
            "auth.oauth_client_registered",
            caller.user_id(),
        )
        .actor_display(&caller.user.email)
        .target(format!("oauth_client:{}", client.client_id))
        .context("outcome", "success")
        .context("client_id", client.client_id.as_str())
        .context("client_name", client.name.as_str())
        .context("redirect_uris", new.redirect_uris.clone())
        .context("scope", client.scopes.as_str());
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(client_proto(&client))
    }

    /// `ListOAuthClients` (admins): clients the team owns, has grants for or revoked.
    pub async fn list_oauth_clients(
        &self,
        request: &Request<ListOAuthClientsRequest>,
    ) -> Result<ListOAuthClientsResponse, AuthError> {
        let body = request.get_ref();
        let (size, after) = page_args(body.page.as_ref())?;
        let caller = self.oauth_caller(request).await?;
        require_role(&caller, Role::Admin)?;
        // A team's own revocation shows as the client's revocation time.
        let sql = "SELECT c.client_id, c.name, c.redirect_uris, c.scopes, c.created_at_ms, \
             COALESCE(c.revoked_at_ms, r.revoked_at_ms) AS revoked_at_ms, c.team_id, c.created_by \
             FROM oauth_clients c \
             LEFT JOIN oauth_client_revocations r ON r.client_id = c.client_id AND r.team_id = $1 \
             WHERE (c.team_id = $1 \
                    OR EXISTS (SELECT 1 FROM oauth_grants g \
                               WHERE g.client_id = c.client_id AND g.team_id = $1) \
                    OR r.client_id IS NOT NULL) \
             AND c.client_id > $2 \
             AND ($3 OR (c.revoked_at_ms IS NULL AND r.client_id IS NULL)) \
             ORDER BY c.client_id LIMIT $4";
        let mut rows: Vec<ClientRow> = on_pool!(self.db(), |pool| {
            sqlx::query_as(sql)
                .bind(caller.team_id())
                .bind(&after)
                .bind(body.include_revoked)
                .bind(i64::from(size) + 1)
                .fetch_all(pool)
                .await?
        });
        let page = next_page(&mut rows, size, |row| &row.client_id);
        Ok(ListOAuthClientsResponse {
            clients: rows.iter().map(client_proto).collect(),
            page,
        })
    }

    /// `RevokeOAuthClient` (sensitive, admins): for a client the team owns, everywhere; for
    /// a dynamically registered one, for this team.
    pub async fn revoke_oauth_client(
        &self,
        request: &Request<RevokeOAuthClientRequest>,
    ) -> Result<OAuthClient, AuthError> {
        let body = request.get_ref();
        let scope = ProofScope {
            method: REVOKE_CLIENT_METHOD,
            target: &body.client_id,
            binding: b"",
        };
        let caller = self
            .sensitive_caller(request, body.proof.as_ref(), scope)
            .await?;
        require_person(&caller)?;
        require_role(&caller, Role::Admin)?;
        id_arg(&body.client_id, "OAuth client")?;
        let client = clients::find(self.db(), &body.client_id)
            .await?
            .filter(|client| {
                client
                    .team_id
                    .as_deref()
                    .is_none_or(|team| team == caller.team_id())
            })
            .ok_or(AuthError::NotFound("OAuth client"))?;
        let owned = client.team_id.is_some();
        let mut tx = self.db().begin().await?;
        let families = grants::revoke_client(
            &mut tx,
            &client.client_id,
            caller.team_id(),
            owned,
            caller.user_id(),
        )
        .await?;
        let record = Auth::user_event(
            caller.team_id(),
            "auth.oauth_client_revoked",
            caller.user_id(),
        )
        .actor_display(&caller.user.email)
        .target(format!("oauth_client:{}", client.client_id))
        .context("outcome", "success")
        .context("client_id", client.client_id.as_str())
        .context(
            "scope_of_revocation",
            if owned { "everywhere" } else { "team" },
        )
        .context("families_revoked", families);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(client_proto(&ClientRow {
            revoked_at_ms: client.revoked_at_ms.or(Some(now_ms())),
            ..client
        }))
    }

    /// `ListOAuthGrants`: the caller's own grants, or (admins) another team member's.
    pub async fn list_oauth_grants(
        &self,
        request: &Request<ListOAuthGrantsRequest>,
    ) -> Result<ListOAuthGrantsResponse, AuthError> {
        let body = request.get_ref();
        let (size, after) = page_args(body.page.as_ref())?;
        let caller = self.oauth_caller(request).await?;
        let user_id = if body.user_id.is_empty() || body.user_id == caller.user_id() {
            caller.user_id().to_owned()
        } else {
            require_role(&caller, Role::Admin)?;
            id_arg(&body.user_id, "user")?;
            self.team_user(&caller, &body.user_id).await?.id
        };
        let mut rows = grants::list(
            self.db(),
            caller.team_id(),
            Some(&user_id),
            &after,
            size + 1,
        )
        .await?;
        let page = next_page(&mut rows, size, |row| &row.id);
        Ok(ListOAuthGrantsResponse {
            grants: rows.iter().map(grant_proto).collect(),
            page,
        })
    }

    /// `RevokeOAuthGrant`: the grant and every refresh family it produced.
    pub async fn revoke_oauth_grant(
        &self,
        request: &Request<RevokeOAuthGrantRequest>,
    ) -> Result<OAuthGrant, AuthError> {
        let body = request.get_ref();
        let caller = self.oauth_caller(request).await?;
        id_arg(&body.grant_id, "OAuth grant")?;
        let is_admin = caller.role()?.at_least(Role::Admin);
        // Another team's grant, or (for non-admins) another user's, is not found.
        let grant = grants::find(self.db(), &body.grant_id)
            .await?
            .filter(|grant| grant.team_id == caller.team_id())
            .filter(|grant| is_admin || grant.user_id == caller.user_id())
            .ok_or(AuthError::NotFound("OAuth grant"))?;
        let mut tx = self.db().begin().await?;
        let families = grants::revoke(&mut tx, &grant).await?;
        let record = Auth::user_event(
            caller.team_id(),
            "auth.oauth_grant_revoked",
            caller.user_id(),
        )
        .actor_display(&caller.user.email)
        .target(format!("oauth_grant:{}", grant.id))
        .context("outcome", "success")
        .context("client_id", grant.client_id.as_str())
        .context("user_id", grant.user_id.as_str())
        .context("families_revoked", families);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(grant_proto(&GrantRow {
            revoked_at_ms: grant.revoked_at_ms.or(Some(now_ms())),
            ..grant
        }))
    }
}
