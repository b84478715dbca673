//! `POST /oauth/token` (RFC 6749 §3.2, §4.1.3, §6; OAuth 2.1 public clients).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::clients::MAX_CLIENT_ID_LEN;
use super::codes::MAX_CODE_LEN;
use super::error::{OAuthError, json_no_store};
use super::exchange::{AgentTokens, CodeExchange, MAX_VERIFIER_LEN};
use super::form::Params;
use super::redirect::MAX_REDIRECT_URI_LEN;
use super::scope::MAX_SCOPE_LEN;
use crate::refresh::MAX_TOKEN_LEN;
use crate::service::Auth;

/// The successful response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: &'a str,
    scope: &'a str,
}

/// `POST /oauth/token`.
pub(crate) async fn token(State(auth): State<Auth>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&auth, &headers, &body).await {
        Ok(tokens) => json_no_store(
            StatusCode::OK,
            &TokenResponse {
                access_token: &tokens.access_token,
                token_type: "Bearer",
                expires_in: tokens.expires_in,
                refresh_token: &tokens.refresh.token,
                scope: &tokens.scope,
            },
        ),
        Err(err) => err.into_response(),
    }
}

async fn handle(auth: &Auth, headers: &HeaderMap, body: &[u8]) -> Result<AgentTokens, OAuthError> {
    let params = Params::from_form(headers, body)?;
    // Public clients only: a client that authenticates is not one of ours.
    if headers.contains_key(header::AUTHORIZATION) || params.get("client_secret").is_some() {
        return Err(OAuthError::invalid_client(
            "clients are public: send client_id and no secret",
        ));
    }
    match params.get("grant_type") {
        Some("authorization_code") => {
            let exchange = CodeExchange {
                code: params.required("code", MAX_CODE_LEN)?,
                redirect_uri: params.required("redirect_uri", MAX_REDIRECT_URI_LEN)?,
                client_id: params.required("client_id", MAX_CLIENT_ID_LEN)?,
                code_verifier: params.required("code_verifier", MAX_VERIFIER_LEN)?,
            };
            auth.exchange_code(&exchange).await
        }
        Some("refresh_token") => {
            let token = params.required("refresh_token", MAX_TOKEN_LEN)?;
            let client_id = params.required("client_id", MAX_CLIENT_ID_LEN)?;
            let scope = params.optional("scope", MAX_SCOPE_LEN)?;
            auth.refresh_agent(token, client_id, scope).await
        }
        Some(_) => Err(OAuthError::unsupported_grant_type()),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}
