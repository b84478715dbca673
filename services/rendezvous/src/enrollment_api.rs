//! OperatorService enrollment-token methods (admin): create, list, revoke.

use std::time::Duration;

use tonic::Request;
use tucdesk_crypto::{CodeKind, SupportCode};
use tucdesk_proto::limits::MAX_TAGS;
use tucdesk_proto::v1::{
    CreateEnrollmentTokenRequest, CreateEnrollmentTokenResponse, EnrollmentToken,
    EnrollmentTokenState, ListEnrollmentTokensRequest, ListEnrollmentTokensResponse,
    RevokeEnrollmentTokenRequest,
};
use tucdesk_proto::validate;
use tucdesk_svc::sql::now_ms;

use crate::agents_api::ADMINS;
use crate::caller::ProofScope;
use crate::error::RendezvousError;
use crate::service::Rendezvous;
use crate::sessions::{created_cursor, user_event};
use crate::store::enrollment::{self, TokenRow};
use crate::store::paging;

pub const CREATE_METHOD: &str = tucdesk_crypto::proof_scopes::CREATE_ENROLLMENT_TOKEN;
pub const REVOKE_METHOD: &str = "/tucdesk.v1.OperatorService/RevokeEnrollmentToken";

/// Lifetime of a token created with `ttl_seconds = 0`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Longest lifetime a token may have.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Longest token description.
const MAX_DESCRIPTION_LEN: usize = 256;

pub use tucdesk_crypto::proof_scopes::enrollment_token_binding as create_binding;

impl Rendezvous {
    pub async fn create_enrollment_token(
        &self,
        request: &Request<CreateEnrollmentTokenRequest>,
    ) -> Result<CreateEnrollmentTokenResponse, RendezvousError> {
        let body = request.get_ref();
        let tags =
            validate::tags("tags", &body.tags, MAX_TAGS).map_err(RendezvousError::invalid)?;
        if body.description.len() > MAX_DESCRIPTION_LEN
            || body.description.chars().any(char::is_control)
        {
            return Err(RendezvousError::InvalidArgument(
                "description: at most 256 bytes without control characters".into(),
            ));
        }
        let ttl = match body.ttl_seconds {
            0 => DEFAULT_TOKEN_TTL,
            secs => Duration::from_secs(u64::from(secs)),
        };
        if ttl > MAX_TOKEN_TTL || ttl < Duration::from_secs(60) {
            return Err(RendezvousError::InvalidArgument(
                "ttl_seconds must be between 60 s and 7 days".into(),
            ));
        }
        let binding = create_binding(&body.tags, body.allow_host_tags, body.ttl_seconds);
        let caller = self
            .sensitive_caller(
                request,
                body.proof.as_ref(),
                ProofScope {
                    method: CREATE_METHOD,
                    target: "",
                    session_id: "",
                    binding: &binding,
                },
            )
            .await?;
        caller.require(ADMINS)?;
        let code = SupportCode::generate()
            .map_err(|err| RendezvousError::internal("generating an enrollment code", err))?;
        let hash = code
            .hash(&self.inner.code_key, CodeKind::Enrollment)
            .map_err(|err| RendezvousError::internal("hashing an enrollment code", err))?;
        let now = now_ms();
        let row = TokenRow {
            id: uuid::Uuid::new_v4().to_string(),
            team_id: caller.team_id().to_owned(),
            description: body.description.clone(),
            tags: serde_json::to_string(&tags)
                .map_err(|err| RendezvousError::internal("encoding tags", err))?,
            allow_host_tags: body.allow_host_tags,
            created_by: caller.user_id().to_owned(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            used_at_ms: None,
            used_by_agent_id: None,
            revoked_at_ms: None,
        };
        let mut tx = self.db().begin().await?;
        enrollment::insert(&mut tx, &row, &hash.to_bytes()).await?;
        let record = user_event(&caller, "enrollment_token.created")
            .target(format!("enrollment_token:{}", row.id))
            .context("outcome", "success")
            .context("tags", tags)
            .context("allow_host_tags", body.allow_host_tags)
            .context("expires_at_ms", row.expires_at_ms);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(CreateEnrollmentTokenResponse {
            token: code.display().as_str().to_owned(),
            info: Some(row.to_proto(now)),
        })
    }

    pub async fn list_enrollment_tokens(
        &self,
        request: &Request<ListEnrollmentTokensRequest>,
    ) -> Result<ListEnrollmentTokensResponse, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(ADMINS)?;
        let body = request.get_ref();
        let wanted = EnrollmentTokenState::try_from(body.state)
            .ok()
            .filter(|s| *s != EnrollmentTokenState::Unspecified);
        let fingerprint = paging::fingerprint(&[&body.state.to_be_bytes()]);
        let after = created_cursor(paging::cursor(body.page.as_ref(), &fingerprint)?)?;
        let size = paging::page_size(body.page.as_ref());
        let rows = enrollment::list(
            self.db(),
            caller.team_id(),
            after.as_ref().map(|(ms, id)| (*ms, id.as_str())),
            size,
        )
        .await?;
        let now = now_ms();
        // The state depends on the clock, so it is filtered here; a filtered page may hold
        // fewer rows than asked for, and paging goes on from the last row looked at.
        let tokens: Vec<EnrollmentToken> = rows
            .iter()
            .filter(|row| wanted.is_none_or(|state| row.state(now) == state))
            .map(|row| row.to_proto(now))
            .collect();
        let page = paging::created_page(&fingerprint, &rows, size, |row| {
            (row.created_at_ms, &row.id)
        });
        Ok(ListEnrollmentTokensResponse {
            tokens,
            page: Some(page),
        })
    }

    pub async fn revoke_enrollment_token(
        &self,
        request: &Request<RevokeEnrollmentTokenRequest>,
    ) -> Result<EnrollmentToken, RendezvousError> {
        let body = request.get_ref();
        validate::uuid("token_id", &body.token_id).map_err(RendezvousError::invalid)?;
        let caller = self
            .sensitive_caller(
                request,
                body.proof.as_ref(),
                ProofScope {
                    method: REVOKE_METHOD,
                    target: &body.token_id,
                    session_id: "",
                    binding: b"",
                },
            )
            .await?;
        caller.require(ADMINS)?;
        let now = now_ms();
        let mut tx = self.db().begin().await?;
        if enrollment::revoke(&mut tx, caller.team_id(), &body.token_id, now).await? {
            let record = user_event(&caller, "enrollment_token.revoked")
                .target(format!("enrollment_token:{}", body.token_id))
                .context("outcome", "success");
            self.audit(&mut tx, record).await?;
        }
        self.commit(tx).await?;
        let row = enrollment::find_in_team(self.db(), caller.team_id(), &body.token_id)
            .await?
            .ok_or(RendezvousError::NotFound("enrollment token"))?;
        Ok(row.to_proto(now))
    }
}
