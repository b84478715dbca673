//! OAuth public clients (RFC 7591 metadata): validation, storage and lookup.
//!
//! Clients are public (`token_endpoint_auth_method = none`): nothing secret is issued, the
//! registered redirect URIs and PKCE are what protect a client's codes. Registrations are
//! bounded (≤ [`MAX_REDIRECT_URIS`] URIs, each ≤ 512 bytes, a name ≤ 128 bytes, scopes from
//! the fixed set) and a dynamic registration never used within [`UNUSED_CLIENT_RETENTION`]
//! is deleted, so anonymous registrations cannot grow the table for ever.

use std::time::Duration;

use serde::Deserialize;
use tucdesk_svc::on_pool;
use tucdesk_svc::sql::{Database, Tx, now_ms};

use super::error::OAuthError;
use super::redirect::{self, RedirectUriError};
use super::scope::Scopes;
use crate::error::AuthError;

/// Most redirect URIs per client.
pub const MAX_REDIRECT_URIS: usize = 5;

/// Longest client name.
pub const MAX_CLIENT_NAME_LEN: usize = 128;

/// Longest client id accepted on the wire (ours are 36-character UUIDs).
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// A dynamic registration with no code, grant or token after this long is deleted.
pub const UNUSED_CLIENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The only client authentication method: public clients (RFC 7591 §2).
pub const AUTH_METHOD_NONE: &str = "none";

/// Grant and response types every client gets.
pub const GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];
pub const RESPONSE_TYPES: [&str; 1] = ["code"];

/// The registration request (RFC 7591 §2). Members we do not use (logo, contacts, …) are
/// ignored, as §2 requires for unknown ones.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientMetadata {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub scope: Option<String>,
}

/// Metadata that passed validation.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Scopes,
}

/// Checks registration metadata; errors are RFC 7591 §3.2.2 codes.
pub fn validate(meta: &ClientMetadata) -> Result<NewClient, OAuthError> {
    if let Some(method) = meta.token_endpoint_auth_method.as_deref()
        && method != AUTH_METHOD_NONE
    {
        return Err(OAuthError::invalid_client_metadata(
            "only public clients are supported: token_endpoint_auth_method must be \"none\"",
        ));
    }
    if let Some(types) = &meta.grant_types
        && (types.iter().any(|t| !GRANT_TYPES.contains(&t.as_str()))
            || !types.iter().any(|t| t == GRANT_TYPES[0]))
    {
        return Err(OAuthError::invalid_client_metadata(
            "grant_types must include authorization_code and may include refresh_token only",
        ));
    }
    if let Some(types) = &meta.response_types
        && types.iter().any(|t| !RESPONSE_TYPES.contains(&t.as_str()))
    {
        return Err(OAuthError::invalid_client_metadata(
            "response_types may only contain \"code\"",
        ));
    }
    let name = meta.client_name.clone().unwrap_or_default();
    if name.len() > MAX_CLIENT_NAME_LEN
        || name.chars().any(|c| c.is_control() || is_bidi_control(c))
    {
        return Err(OAuthError::invalid_client_metadata(format!(
            "client_name must be at most {MAX_CLIENT_NAME_LEN} bytes without control characters"
        )));
    }
    let scopes = match meta.scope.as_deref() {
        None => Scopes::all(),
        Some(text) => Scopes::parse(text)
            .map_err(|err| OAuthError::invalid_client_metadata(err.to_string()))?,
    };
    if scopes.is_empty() {
        return Err(OAuthError::invalid_client_metadata("scope names no scope"));
    }
    if meta.redirect_uris.is_empty() || meta.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::invalid_redirect_uri(format!(
            "redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs"
        )));
    }
    for uri in &meta.redirect_uris {
        redirect::validate(uri)
            .map_err(|err: RedirectUriError| OAuthError::invalid_redirect_uri(err.to_string()))?;
    }
    let mut seen = std::collections::HashSet::new();
    let redirect_uris = meta
        .redirect_uris
        .iter()
        .filter(|uri| seen.insert(uri.as_str()))
        .cloned()
        .collect();
    Ok(NewClient {
        name,
        redirect_uris,
        scopes,
    })
}

/// Bidirectional-text controls: the consent page shows the name to the user, and these
/// could make it read as another (e.g. reversing part of it). Also refused in support
/// technicians' names, which the host's consent prompt shows.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A stored client.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    /// JSON array of strings.
    pub redirect_uris: String,
    /// Space-separated scopes.
    pub scopes: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub team_id: Option<String>,
    pub created_by: Option<String>,
}

impl ClientRow {
    /// The registered redirect URIs; a row that does not parse matches nothing.
    pub fn redirect_uris(&self) -> Vec<String> {
        serde_json::from_str(&self.redirect_uris).unwrap_or_default()
    }

    /// The scopes the client registered for (the most it may ask for).
    pub fn scopes(&self) -> Scopes {
        Scopes::parse(&self.scopes).unwrap_or_default()
    }

    /// Whether `requested` matches one of the registered redirect URIs.
    pub fn allows_redirect(&self, requested: &str) -> bool {
        self.redirect_uris()
            .iter()
            .any(|registered| redirect::matches(registered, requested))
    }

    /// Whether users of `team_id` may use the client (not revoked, not another team's).
    pub fn usable_by_team(&self, team_id: &str) -> bool {
        self.revoked_at_ms.is_none() && self.team_id.as_deref().is_none_or(|team| team == team_id)
    }
}

const CLIENT_COLUMNS: &str = "client_id, name, redirect_uris, scopes, created_at_ms, \
     revoked_at_ms, team_id, created_by";

/// Stores a new client; `owner` is (team, user) for clients an admin registered.
pub async fn insert(
    tx: &mut Tx,
    new: &NewClient,
    owner: Option<(&str, &str)>,
) -> Result<ClientRow, AuthError> {
    let row = ClientRow {
        client_id: uuid::Uuid::now_v7().to_string(),
        name: new.name.clone(),
        redirect_uris: serde_json::to_string(&new.redirect_uris)
            .map_err(|err| AuthError::internal("encoding redirect URIs", err))?,
        scopes: new.scopes.to_string(),
        created_at_ms: now_ms(),
        revoked_at_ms: None,
        team_id: owner.map(|(team, _)| team.to_owned()),
        created_by: owner.map(|(_, user)| user.to_owned()),
    };
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO oauth_clients (client_id, name, redirect_uris, scopes, created_at_ms, \
             team_id, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.client_id)
        .bind(&row.name)
        .bind(&row.redirect_uris)
        .bind(&row.scopes)
        .bind(row.created_at_ms)
        .bind(&row.team_id)
        .bind(&row.created_by)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(row)
}

/// A client by id; ids longer than any we issue are not looked up.
pub async fn find(db: &Database, client_id: &str) -> Result<Option<ClientRow>, AuthError> {
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_LEN {
        return Ok(None);
    }
    let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(client_id)
            .fetch_optional(pool)
            .await?
    }))
}

/// Whether a team revoked a (dynamic) client for itself.
pub async fn revoked_for_team(
    db: &Database,
    client_id: &str,
    team_id: &str,
) -> Result<bool, AuthError> {
    let found: Option<i64> = on_pool!(db, |pool| {
        sqlx::query_scalar(
            "SELECT revoked_at_ms FROM oauth_client_revocations \
             WHERE client_id = $1 AND team_id = $2",
        )
        .bind(client_id)
        .bind(team_id)
        .fetch_optional(pool)
        .await?
    });
    Ok(found.is_some())
}

/// Deletes dynamic registrations that were never used and are older than the retention.
pub async fn delete_unused(tx: &mut Tx) -> Result<u64, AuthError> {
    let cutoff = now_ms()
        .saturating_sub(i64::try_from(UNUSED_CLIENT_RETENTION.as_millis()).unwrap_or(i64::MAX));
    Ok(tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "DELETE FROM oauth_clients WHERE team_id IS NULL AND created_at_ms < $1 \
             AND NOT EXISTS (SELECT 1 FROM oauth_codes c WHERE c.client_id = oauth_clients.client_id) \
             AND NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.client_id = oauth_clients.client_id) \
             AND NOT EXISTS (SELECT 1 FROM oauth_client_revocations r \
                             WHERE r.client_id = oauth_clients.client_id) \
             AND NOT EXISTS (SELECT 1 FROM refresh_families f \
                             WHERE f.client_id = oauth_clients.client_id)",
        )
        .bind(cutoff)
        .execute(conn)
        .await?
        .rows_affected()
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta(uris: &[&str]) -> ClientMetadata {
        ClientMetadata {
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            client_name: Some("Agent".into()),
            ..ClientMetadata::default()
        }
    }

    #[test]
    fn public_clients_with_bounded_metadata_only() {
        let ok = validate(&meta(&["http://127.0.0.1:9/cb"])).unwrap();
        assert_eq!(ok.scopes, Scopes::all());

        let mut secret = meta(&["http://127.0.0.1:9/cb"]);
        secret.token_endpoint_auth_method = Some("client_secret_basic".into());
        assert_eq!(
            validate(&secret).unwrap_err().code,
            "invalid_client_metadata"
        );

        let mut implicit = meta(&["http://127.0.0.1:9/cb"]);
        implicit.response_types = Some(vec!["token".into()]);
        assert!(validate(&implicit).is_err());

        let mut credentials = meta(&["http://127.0.0.1:9/cb"]);
        credentials.grant_types = Some(vec!["client_credentials".into()]);
        assert!(validate(&credentials).is_err());

        let mut long_name = meta(&["http://127.0.0.1:9/cb"]);
        long_name.client_name = Some("n".repeat(MAX_CLIENT_NAME_LEN + 1));
        assert!(validate(&long_name).is_err());

        let mut spoofing = meta(&["http://127.0.0.1:9/cb"]);
        spoofing.client_name = Some("Claude \u{202E}tnega".into());
        assert!(validate(&spoofing).is_err());

        let mut bad_scope = meta(&["http://127.0.0.1:9/cb"]);
        bad_scope.scope = Some("admin".into());
        assert!(validate(&bad_scope).is_err());
    }

    #[test]
    fn redirect_uris_are_required_bounded_and_checked() {
        assert_eq!(
            validate(&meta(&[])).unwrap_err().code,
            "invalid_redirect_uri"
        );
        let six = ["https://a.example/1"; MAX_REDIRECT_URIS + 1];
        assert_eq!(
            validate(&meta(&six)).unwrap_err().code,
            "invalid_redirect_uri"
        );
        assert_eq!(
            validate(&meta(&["http://evil.example/cb"]))
                .unwrap_err()
                .code,
            "invalid_redirect_uri"
        );
    }
}
