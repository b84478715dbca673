//! `POST /oauth/register`: RFC 7591 dynamic registration of public clients, rate limited per
//! source address (valid registrations are counted before anything is stored).

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tucdesk_svc::audit_events::{ANONYMOUS, SYSTEM_TEAM};
use tucdesk_svc::ratelimit::{Decision, LimitPolicy, source_key};

use super::clients::{
    self, AUTH_METHOD_NONE, ClientMetadata, ClientRow, GRANT_TYPES, RESPONSE_TYPES,
};
use super::error::{OAuthError, json_no_store};
use super::peer::PeerAddr;
use crate::account::limiter_error;
use crate::service::Auth;

/// Registrations allowed per source address (IPv6 by /64): an MCP client registers once
/// per installation, so a few per hour is plenty and bounds what one host can store.
pub const REGISTER_SOURCE_LIMIT: LimitPolicy = LimitPolicy {
    name: "oauth-register-source",
    max_failures: 10,
    window: Duration::from_secs(60 * 60),
    lockout: Duration::from_secs(60 * 60),
};

/// The registration response (RFC 7591 §3.2.1); no secret, public clients have none.
#[derive(Debug, Serialize)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_id_issued_at: i64,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: [&'static str; 2],
    pub response_types: [&'static str; 1],
    pub token_endpoint_auth_method: &'static str,
    pub scope: String,
}

impl From<&ClientRow> for RegisteredClient {
    fn from(row: &ClientRow) -> Self {
        Self {
            client_id: row.client_id.clone(),
            client_id_issued_at: row.created_at_ms.div_euclid(1000),
            client_name: row.name.clone(),
            redirect_uris: row.redirect_uris(),
            grant_types: GRANT_TYPES,
            response_types: RESPONSE_TYPES,
            token_endpoint_auth_method: AUTH_METHOD_NONE,
            scope: row.scopes().to_string(),
        }
    }
}

/// `POST /oauth/register`.
pub(crate) async fn register(
    State(auth): State<Auth>,
    PeerAddr(source): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&auth, source, &headers, &body).await {
        Ok(client) => json_no_store(StatusCode::CREATED, &RegisteredClient::from(&client)),
        Err(err) => err.into_response(),
    }
}

async fn handle(
    auth: &Auth,
    source: Option<IpAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ClientRow, OAuthError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(OAuthError::invalid_client_metadata(
            "the body must be application/json",
        ));
    }
    let metadata: ClientMetadata = serde_json::from_slice(body).map_err(|_| {
        OAuthError::invalid_client_metadata("the body is not a JSON client metadata object")
    })?;
    let new = clients::validate(&metadata)?;
    // Counted once valid, before anything is stored: a refused registration stores nothing,
    // and every stored one counts, concurrent ones included.
    if let Some(addr) = source
        && let Decision::Locked { retry_after } = auth
            .inner
            .limiter
            .record_failure(&source_key(addr), &REGISTER_SOURCE_LIMIT)
            .await
            .map_err(limiter_error)?
    {
        return Err(OAuthError::rate_limited(retry_after));
    }
    let mut tx = auth.db().begin().await.map_err(crate::AuthError::from)?;
    clients::delete_unused(&mut tx).await?;
    let client = clients::insert(&mut tx, &new, None).await?;
    let mut record = Auth::user_event(SYSTEM_TEAM, "auth.oauth_client_registered", ANONYMOUS)
        .target(format!("oauth_client:{}", client.client_id))
        .context("outcome", "success")
        .context("client_id", client.client_id.as_str())
        .context("client_name", client.name.as_str())
        .context("redirect_uris", new.redirect_uris.clone())
        .context("scope", client.scopes.as_str());
    if let Some(addr) = source {
        record = record.context("client_ip", addr.to_string());
    }
    auth.audit(&mut tx, record).await?;
    auth.commit(tx).await?;
    Ok(client)
}
