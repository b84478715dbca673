//! gRPC adapter: turns `AuthService` calls into [`Auth`] operations. Methods not listed here
//! answer UNIMPLEMENTED (generated default stubs) until their issue lands.

use std::net::IpAddr;

use tonic::{Request, Response, Status};
use tucdesk_proto::v1::auth_service_server::AuthService;
use tucdesk_proto::v1::{
    AcceptInviteRequest, AcceptInviteResponse, BeginDeviceBindingRequest,
    BeginDeviceBindingResponse, GetJwksRequest, Jwk as ProtoJwk, Jwks as ProtoJwks, LoginRequest,
    LoginResponse, LogoutRequest, LogoutResponse, PrincipalInfo, RefreshRequest, TokenPair,
    TotpRequired, User, WhoAmIRequest, WhoAmIResponse, login_response,
};
use tucdesk_token::AccessClaims;

use crate::error::AuthError;
use crate::login::{IssuedTokens, LoginOutcome};
use crate::password::Password;
use crate::service::Auth;
use crate::store::{role_to_proto, timestamp};
use crate::support_codes::principals::is_support_principal;

/// Longest `authorization` header value accepted.
const MAX_BEARER_LEN: usize = 8 * 1024;

/// The tonic service; wrap with `AuthServiceServer::new`.
#[derive(Debug, Clone)]
pub struct AuthGrpc {
    auth: Auth,
}

impl AuthGrpc {
    pub fn new(auth: Auth) -> Self {
        Self { auth }
    }

    fn claims<T>(&self, request: &Request<T>) -> Result<AccessClaims, AuthError> {
        let bearer = bearer(request)?;
        self.auth.authenticate(bearer)
    }
}

/// The access token from `authorization: Bearer …`.
pub fn bearer<T>(request: &Request<T>) -> Result<&str, AuthError> {
    let value = request
        .metadata()
        .get(tucdesk_proto::metadata::AUTHORIZATION)
        .ok_or(AuthError::Unauthenticated("an access token is required"))?
        .to_str()
        .map_err(|_| AuthError::Unauthenticated("malformed authorization header"))?;
    if value.len() > MAX_BEARER_LEN {
        return Err(AuthError::Unauthenticated("authorization header too long"));
    }
    value
        .strip_prefix("Bearer ")
        .ok_or(AuthError::Unauthenticated("expected a Bearer token"))
}

fn source<T>(request: &Request<T>) -> Option<IpAddr> {
    request.remote_addr().map(|addr| addr.ip())
}

fn token_pair(tokens: IssuedTokens) -> TokenPair {
    TokenPair {
        access_token: tokens.access_token.expose().to_owned(),
        access_token_expires_at: Some(timestamp(tokens.access_expires_at_ms)),
        refresh_token: tokens.refresh.token.to_string(),
        refresh_token_expires_at: Some(timestamp(tokens.refresh.expires_at_ms)),
        user: Some(tokens.user.to_proto()),
    }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn get_jwks(
        &self,
        _request: Request<GetJwksRequest>,
    ) -> Result<Response<ProtoJwks>, Status> {
        let ring = self.auth.keys().ring();
        let keys = ring
            .published
            .iter()
            .map(|key| ProtoJwk {
                kid: key.kid.clone(),
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: key.public_key.jwk_x(),
                alg: "EdDSA".into(),
                r#use: "sig".into(),
                not_before: Some(timestamp(key.created_at_ms)),
                not_after: key.published_until_ms.map(timestamp),
            })
            .collect();
        Ok(Response::new(ProtoJwks { keys }))
    }

    async fn begin_device_binding(
        &self,
        request: Request<BeginDeviceBindingRequest>,
    ) -> Result<Response<BeginDeviceBindingResponse>, Status> {
        let (challenge, expires_at_ms) = self
            .auth
            .begin_device_binding_from(source(&request))
            .await?;
        Ok(Response::new(BeginDeviceBindingResponse {
            challenge,
            expires_at: Some(timestamp(expires_at_ms)),
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let source = source(&request);
        let result = match self.auth.login(request.get_ref(), source).await? {
            LoginOutcome::Tokens(tokens) => login_response::Result::Tokens(token_pair(*tokens)),
            LoginOutcome::TotpRequired => login_response::Result::TotpRequired(TotpRequired {}),
        };
        Ok(Response::new(LoginResponse {
            result: Some(result),
        }))
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        let request = request.into_inner();
        let tokens = self
            .auth
            .refresh(&request.refresh_token, request.device_proof.as_ref())
            .await?;
        Ok(Response::new(token_pair(tokens)))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let request = request.into_inner();
        self.auth
            .logout(&request.refresh_token, request.all_devices)
            .await?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let claims = self.claims(&request)?;
        let device_key_thumbprint = claims
            .cnf
            .as_ref()
            .map(|cnf| cnf.jkt.clone())
            .unwrap_or_default();
        let (user, principal) = if is_support_principal(&claims) {
            // No account: a synthetic user record naming the technician, and the code id.
            let support = self.auth.whoami_support(&claims).await?;
            let user = User {
                user_id: support.principal.id.clone(),
                team_id: support.principal.team_id.clone(),
                display_name: support.principal.display_name.clone(),
                role: role_to_proto(claims.role) as i32,
                created_at: Some(timestamp(support.principal.created_at_ms)),
                ..Default::default()
            };
            let principal = PrincipalInfo {
                kind: "support".into(),
                device_key_thumbprint,
                scope: claims.scp.clone().unwrap_or_default(),
                client_id: support.code.id,
            };
            (user, principal)
        } else {
            let user = self.auth.whoami(&claims).await?;
            let principal = PrincipalInfo {
                kind: if claims.client_id.is_some() {
                    "ai_agent"
                } else {
                    "user"
                }
                .into(),
                device_key_thumbprint,
                scope: claims.scp.clone().unwrap_or_default(),
                client_id: claims.client_id.clone().unwrap_or_default(),
            };
            (user.to_proto(), principal)
        };
        Ok(Response::new(WhoAmIResponse {
            user: Some(user),
            principal: Some(principal),
            expires_at: Some(timestamp(
                i64::try_from(claims.exp)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000),
            )),
        }))
    }

    async fn accept_invite(
        &self,
        request: Request<AcceptInviteRequest>,
    ) -> Result<Response<AcceptInviteResponse>, Status> {
        let request = request.into_inner();
        let user = self
            .auth
            .accept_invite(&request.invite_token, Password::new(request.password))
            .await?;
        Ok(Response::new(AcceptInviteResponse {
            user: Some(user.to_proto()),
        }))
    }

    // -- account self-service (password, TOTP enrolment, device key): account.rs --

    async fn change_password(
        &self,
        request: Request<tucdesk_proto::v1::ChangePasswordRequest>,
    ) -> Result<Response<tucdesk_proto::v1::ChangePasswordResponse>, Status> {
        self.auth.change_password(&request).await?;
        Ok(Response::new(tucdesk_proto::v1::ChangePasswordResponse {}))
    }

    async fn begin_totp_enrollment(
        &self,
        request: Request<tucdesk_proto::v1::BeginTotpEnrollmentRequest>,
    ) -> Result<Response<tucdesk_proto::v1::BeginTotpEnrollmentResponse>, Status> {
        let enrollment = self.auth.begin_totp_enrollment(&request).await?;
        Ok(Response::new(
            tucdesk_proto::v1::BeginTotpEnrollmentResponse {
                secret_base32: enrollment.secret_base32.to_string(),
                otpauth_uri: enrollment.otpauth_uri.to_string(),
                expires_at: Some(timestamp(enrollment.expires_at_ms)),
            },
        ))
    }

    async fn confirm_totp_enrollment(
        &self,
        request: Request<tucdesk_proto::v1::ConfirmTotpEnrollmentRequest>,
    ) -> Result<Response<tucdesk_proto::v1::ConfirmTotpEnrollmentResponse>, Status> {
        let codes = self.auth.confirm_totp_enrollment(&request).await?;
        Ok(Response::new(
            tucdesk_proto::v1::ConfirmTotpEnrollmentResponse {
                recovery_codes: codes.iter().map(|code| code.to_string()).collect(),
            },
        ))
    }

    async fn disable_totp(
        &self,
        request: Request<tucdesk_proto::v1::DisableTotpRequest>,
    ) -> Result<Response<tucdesk_proto::v1::DisableTotpResponse>, Status> {
        self.auth.disable_totp(&request).await?;
        Ok(Response::new(tucdesk_proto::v1::DisableTotpResponse {}))
    }

    async fn bind_device_key(
        &self,
        request: Request<tucdesk_proto::v1::BindDeviceKeyRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        let tokens = self.auth.bind_device_key(&request).await?;
        Ok(Response::new(token_pair(tokens)))
    }

    // -- user administration: admin.rs --

    async fn create_user(
        &self,
        request: Request<tucdesk_proto::v1::CreateUserRequest>,
    ) -> Result<Response<tucdesk_proto::v1::CreateUserResponse>, Status> {
        let created = self.auth.create_user(&request).await?;
        Ok(Response::new(tucdesk_proto::v1::CreateUserResponse {
            user: Some(created.user.to_proto()),
            invite_token: created.invite_token.to_string(),
            invite_expires_at: Some(timestamp(created.invite_expires_at_ms)),
        }))
    }

    async fn list_users(
        &self,
        request: Request<tucdesk_proto::v1::ListUsersRequest>,
    ) -> Result<Response<tucdesk_proto::v1::ListUsersResponse>, Status> {
        let page = self.auth.list_users(&request).await?;
        Ok(Response::new(tucdesk_proto::v1::ListUsersResponse {
            users: page.users.iter().map(|user| user.to_proto()).collect(),
            page: Some(tucdesk_proto::v1::PageResponse {
                next_page_token: page.next_page_token,
            }),
        }))
    }

    async fn get_user(
        &self,
        request: Request<tucdesk_proto::v1::GetUserRequest>,
    ) -> Result<Response<tucdesk_proto::v1::User>, Status> {
        let user = self.auth.get_user(&request).await?;
        Ok(Response::new(user.to_proto()))
    }

    async fn disable_user(
        &self,
        request: Request<tucdesk_proto::v1::SetUserDisabledRequest>,
    ) -> Result<Response<tucdesk_proto::v1::User>, Status> {
        let user = self.auth.set_user_disabled(&request, true).await?;
        Ok(Response::new(user.to_proto()))
    }

    async fn enable_user(
        &self,
        request: Request<tucdesk_proto::v1::SetUserDisabledRequest>,
    ) -> Result<Response<tucdesk_proto::v1::User>, Status> {
        let user = self.auth.set_user_disabled(&request, false).await?;
        Ok(Response::new(user.to_proto()))
    }

    async fn set_user_role(
        &self,
        request: Request<tucdesk_proto::v1::SetUserRoleRequest>,
    ) -> Result<Response<tucdesk_proto::v1::User>, Status> {
        let user = self.auth.set_user_role(&request).await?;
        Ok(Response::new(user.to_proto()))
    }

    // -- support codes: support_codes.rs --

    async fn create_support_code(
        &self,
        request: Request<tucdesk_proto::v1::CreateSupportCodeRequest>,
    ) -> Result<Response<tucdesk_proto::v1::CreateSupportCodeResponse>, Status> {
        let created = self.auth.create_support_code(&request).await?;
        Ok(Response::new(
            tucdesk_proto::v1::CreateSupportCodeResponse {
                code: created.code.to_string(),
                info: Some(created.info.to_proto(tucdesk_svc::sql::now_ms())),
            },
        ))
    }

    async fn list_support_codes(
        &self,
        request: Request<tucdesk_proto::v1::ListSupportCodesRequest>,
    ) -> Result<Response<tucdesk_proto::v1::ListSupportCodesResponse>, Status> {
        let page = self.auth.list_support_codes(&request).await?;
        Ok(Response::new(tucdesk_proto::v1::ListSupportCodesResponse {
            codes: page
                .codes
                .iter()
                .map(|code| code.to_proto(page.now_ms))
                .collect(),
            page: Some(tucdesk_proto::v1::PageResponse {
                next_page_token: page.next_page_token,
            }),
        }))
    }

    async fn revoke_support_code(
        &self,
        request: Request<tucdesk_proto::v1::RevokeSupportCodeRequest>,
    ) -> Result<Response<tucdesk_proto::v1::SupportCode>, Status> {
        let code = self.auth.revoke_support_code(&request).await?;
        Ok(Response::new(code.to_proto(tucdesk_svc::sql::now_ms())))
    }

    async fn redeem_support_code(
        &self,
        request: Request<tucdesk_proto::v1::RedeemSupportCodeRequest>,
    ) -> Result<Response<tucdesk_proto::v1::RedeemSupportCodeResponse>, Status> {
        let source = source(&request);
        let redeemed = self
            .auth
            .redeem_support_code(request.get_ref(), source)
            .await?;
        Ok(Response::new(
            tucdesk_proto::v1::RedeemSupportCodeResponse {
                access_token: redeemed.access_token.expose().to_owned(),
                expires_at: Some(timestamp(redeemed.expires_at_ms)),
                team_id: redeemed.info.team_id.clone(),
                info: Some(redeemed.info.to_proto(tucdesk_svc::sql::now_ms())),
            },
        ))
    }

    // -- OAuth clients and grants: oauth.rs --

    async fn register_o_auth_client(
        &self,
        request: Request<tucdesk_proto::v1::RegisterOAuthClientRequest>,
    ) -> Result<Response<tucdesk_proto::v1::OAuthClient>, Status> {
        Ok(Response::new(
            self.auth.register_oauth_client(&request).await?,
        ))
    }

    async fn list_o_auth_clients(
        &self,
        request: Request<tucdesk_proto::v1::ListOAuthClientsRequest>,
    ) -> Result<Response<tucdesk_proto::v1::ListOAuthClientsResponse>, Status> {
        Ok(Response::new(self.auth.list_oauth_clients(&request).await?))
    }

    async fn revoke_o_auth_client(
        &self,
        request: Request<tucdesk_proto::v1::RevokeOAuthClientRequest>,
    ) -> Result<Response<tucdesk_proto::v1::OAuthClient>, Status> {
        Ok(Response::new(
            self.auth.revoke_oauth_client(&request).await?,
        ))
    }

    async fn list_o_auth_grants(
        &self,
        request: Request<tucdesk_proto::v1::ListOAuthGrantsRequest>,
    ) -> Result<Response<tucdesk_proto::v1::ListOAuthGrantsResponse>, Status> {
        Ok(Response::new(self.auth.list_oauth_grants(&request).await?))
    }

    async fn revoke_o_auth_grant(
        &self,
        request: Request<tucdesk_proto::v1::RevokeOAuthGrantRequest>,
    ) -> Result<Response<tucdesk_proto::v1::OAuthGrant>, Status> {
        Ok(Response::new(self.auth.revoke_oauth_grant(&request).await?))
    }
}
