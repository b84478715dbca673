//! `GET /oauth/authorize` (the login + consent page) and `POST /oauth/authorize` (its form).
//!
//! Both parse the request the same way (RFC 6749 §4.1.1, RFC 7636): first the client and the
//! redirect URI — if either is wrong the answer is an error page and never a redirect
//! (§4.1.2.1: an unchecked redirect URI would make us an open redirector); after that every
//! error goes back to the client's redirect URI with `error`, `state` and `iss` (RFC 9207).
//! PKCE is mandatory and S256 only: a missing challenge or `plain` is refused.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tucdesk_svc::sql::now_ms;

use super::clients::{self, ClientRow};
use super::consent::{ConsentError, ConsentOutcome, Credentials};
use super::csrf::{self, RedeemError};
use super::form::Params;
use super::page::{self, ConsentPage};
use super::redirect;
use super::scope::Scopes;
use crate::error::AuthError;
use crate::service::Auth;

/// Longest `state` accepted.
pub const MAX_STATE_LEN: usize = 1024;

/// An S256 challenge is base64url(SHA-256(verifier)): exactly 43 characters.
pub const S256_CHALLENGE_LEN: usize = 43;

/// The only PKCE method accepted.
pub const PKCE_METHOD: &str = "S256";

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: ClientRow,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scopes: Scopes,
    pub code_challenge: String,
}

impl AuthorizeRequest {
    /// What the consent form's anti-forgery token is bound to.
    fn binding(&self) -> Vec<u8> {
        csrf::binding(&[
            &self.client.client_id,
            &self.redirect_uri,
            self.state.as_deref().unwrap_or_default(),
            &self.scopes.to_string(),
            &self.code_challenge,
        ])
    }
}

/// A request that cannot go on: shown as a page, or sent back to the client.
#[derive(Debug)]
pub(crate) enum Refusal {
    Page(StatusCode, String),
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl Refusal {
    fn into_response(self, auth: &Auth) -> Response {
        match self {
            Self::Page(status, message) => page::error(status, &message),
            Self::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut params = vec![("error", error), ("error_description", &description)];
                if let Some(state) = state.as_deref() {
                    params.push(("state", state));
                }
                params.push(("iss", &auth.config().issuer));
                redirect_to(&redirect_uri, &params)
            }
        }
    }
}

/// A 303 to the client (the browser follows it with a GET, also after the form's POST).
fn redirect_to(uri: &str, params: &[(&str, &str)]) -> Response {
    let Some(target) = redirect::with_params(uri, params) else {
        return page::error(StatusCode::BAD_REQUEST, "the redirect URI is not valid");
    };
    let Ok(location) = HeaderValue::from_str(&target) else {
        return page::error(StatusCode::BAD_REQUEST, "the redirect URI is not valid");
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    page::insert_security_headers(response.headers_mut());
    response
}

/// Parses and checks an authorization request (query string or form fields).
pub(crate) async fn parse(auth: &Auth, params: &Params) -> Result<AuthorizeRequest, Refusal> {
    let bad_page = |message: &str| Refusal::Page(StatusCode::BAD_REQUEST, message.to_owned());
    let client_id = params
        .required("client_id", clients::MAX_CLIENT_ID_LEN)
        .map_err(|_| bad_page("client_id is missing or too long"))?;
    let client = clients::find(auth.db(), client_id)
        .await
        .map_err(|_| Refusal::Page(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()))?
        .filter(|client| client.revoked_at_ms.is_none())
        .ok_or_else(|| bad_page("unknown or revoked client"))?;
    let redirect_uri = params
        .required("redirect_uri", redirect::MAX_REDIRECT_URI_LEN)
        .map_err(|_| bad_page("redirect_uri is missing or too long"))?;
    if !client.allows_redirect(redirect_uri) {
        return Err(bad_page(
            "redirect_uri is not one of the client's registered redirect URIs",
        ));
    }

    // From here on the redirect URI is trusted: errors go back to the client.
    let state = params.optional("state", MAX_STATE_LEN).ok().flatten();
    let back = |error: &'static str, description: &str| Refusal::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        error,
        description: description.to_owned(),
    };
    if params.get("state").is_some() && state.is_none() {
        return Err(back("invalid_request", "state is too long"));
    }
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(back(
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        None => return Err(back("invalid_request", "response_type is required")),
    }
    match params.get("code_challenge_method") {
        Some(PKCE_METHOD) => {}
        Some(_) => {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
            ));
        }
        None => {
            return Err(back(
                "invalid_request",
                "PKCE is required: code_challenge_method=S256",
            ));
        }
    }
    let code_challenge = params
        .get("code_challenge")
        .filter(|challenge| is_s256_challenge(challenge))
        .ok_or_else(|| {
            back(
                "invalid_request",
                "code_challenge is required: base64url(SHA-256(code_verifier)), 43 characters",
            )
        })?;
    let registered = client.scopes();
    let scopes = match params.get("scope") {
        None => registered.clone(),
        Some(text) => Scopes::parse(text).map_err(|err| back("invalid_scope", &err.to_string()))?,
    };
    if scopes.is_empty() || !scopes.is_subset_of(&registered) {
        return Err(back(
            "invalid_scope",
            "scope must name scopes the client registered for",
        ));
    }
    Ok(AuthorizeRequest {
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        scopes,
        code_challenge: code_challenge.to_owned(),
        client,
    })
}

fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == S256_CHALLENGE_LEN
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The consent page for `request` with a fresh form token.
fn render(
    auth: &Auth,
    request: &AuthorizeRequest,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let token = match auth.issue_form_token(&request.binding(), now_ms()) {
        Ok(token) => token,
        Err(_) => return page::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    page::consent(
        &ConsentPage {
            client_name: &request.client.name,
            client_id: &request.client.client_id,
            redirect_uri: &request.redirect_uri,
            state: request.state.as_deref(),
            scopes: &request.scopes,
            code_challenge: &request.code_challenge,
            form_token: &token,
            error,
        },
        status,
    )
}

/// `GET /oauth/authorize`.
pub(crate) async fn show(State(auth): State<Auth>, RawQuery(query): RawQuery) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(err) => return page::error(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    match parse(&auth, &params).await {
        Ok(request) => render(&auth, &request, StatusCode::OK, None),
        Err(refusal) => refusal.into_response(&auth),
    }
}

/// `POST /oauth/authorize`: the submitted consent form.
pub(crate) async fn submit(
    State(auth): State<Auth>,
    super::peer::PeerAddr(source): super::peer::PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match Params::from_form(&headers, &body) {
        Ok(params) => params,
        Err(err) => return page::error(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let request = match parse(&auth, &params).await {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(&auth),
    };
    let token = params.get("csrf_token").unwrap_or_default();
    match auth
        .redeem_form_token(token, &request.binding(), now_ms())
        .await
    {
        Ok(()) => {}
        Err(RedeemError::Invalid(invalid)) => {
            return render(
                &auth,
                &request,
                StatusCode::BAD_REQUEST,
                Some(&invalid.to_string()),
            );
        }
        Err(RedeemError::Auth(_)) => {
            return page::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    }
    let back = |error: &'static str, description: &str| {
        Refusal::Redirect {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            error,
            description: description.to_owned(),
        }
        .into_response(&auth)
    };
    match params.get("decision") {
        Some("allow") => {}
        Some("deny") => return back("access_denied", "the user denied the request"),
        _ => {
            return render(
                &auth,
                &request,
                StatusCode::BAD_REQUEST,
                Some("Choose Allow or Deny."),
            );
        }
    }
    let credentials = Credentials {
        email: params.get("email").unwrap_or_default(),
        password: params.get("password").unwrap_or_default(),
        second_factor: params.get("totp_code").unwrap_or_default(),
    };
    match auth.oauth_consent(&request, &credentials, source).await {
        Ok(ConsentOutcome::Code(code)) => {
            let mut params = vec![("code", code.as_str())];
            if let Some(state) = request.state.as_deref() {
                params.push(("state", state));
            }
            params.push(("iss", &auth.config().issuer));
            redirect_to(&request.redirect_uri, &params)
        }
        Ok(ConsentOutcome::SecondFactorRequired) => render(
            &auth,
            &request,
            StatusCode::UNAUTHORIZED,
            Some("Enter the code from your authenticator app (or a recovery code)."),
        ),
        Err(ConsentError::Denied(reason)) => back("access_denied", reason),
        Err(ConsentError::Auth(err)) => refused_login(&auth, &request, &err),
    }
}

/// The page again after a failed sign-in, with a message that never says which part was
/// wrong (the same answers as gRPC `Login`).
fn refused_login(auth: &Auth, request: &AuthorizeRequest, err: &AuthError) -> Response {
    let (status, message) = match err {
        AuthError::InvalidCredentials => (StatusCode::UNAUTHORIZED, err.to_string()),
        AuthError::TotpInvalid => (StatusCode::UNAUTHORIZED, err.to_string()),
        AuthError::Locked { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed attempts; try again in {} minutes.",
                retry_after.as_secs().div_ceil(60).max(1)
            ),
        ),
        AuthError::Disabled => (StatusCode::FORBIDDEN, err.to_string()),
        _ => return page::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    render(auth, request, status, Some(&message))
}
