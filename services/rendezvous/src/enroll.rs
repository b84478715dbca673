//! Enrollment: an agent binds its public key to a team once, with a single-use token an admin
//! created, plus a registration proof that it holds the key.

use std::net::IpAddr;

use tucdesk_crypto::{CodeKind, SupportCode};
use tucdesk_proto::limits::{MAX_HOST_ADDRESSES, MAX_HOST_FIELD_LEN, MAX_TAGS};
use tucdesk_proto::v1::{EnrollRequest, EnrollResponse, HostInfo, RejectReason};
use tucdesk_proto::validate;
use tucdesk_svc::sql::now_ms;

use crate::error::RendezvousError;
use crate::registration::{Attempt, ENROLL_FAILED};
use crate::service::Rendezvous;
use crate::store::agents::{self, AgentRow, STATUS_ACTIVE};
use crate::store::enrollment;

/// Checks the descriptive host facts (display only, but bounded like everything else).
pub fn check_host(host: &HostInfo) -> Result<(), RendezvousError> {
    let bad = |what: &str| Err(RendezvousError::InvalidArgument(format!("host: {what}")));
    let strings = [&host.hostname, &host.os_release, &host.kernel];
    if strings.iter().any(|s| s.len() > MAX_HOST_FIELD_LEN) {
        return bad("each field must be at most 255 bytes");
    }
    if host.addresses.len() > MAX_HOST_ADDRESSES
        || host.addresses.iter().any(|a| a.len() > MAX_HOST_FIELD_LEN)
    {
        return bad("at most 16 addresses of at most 255 bytes");
    }
    if let Some(agent) = &host.agent {
        let fields = [&agent.name, &agent.version, &agent.os, &agent.arch];
        if fields.iter().any(|s| s.len() > 128) {
            return bad("agent software fields must be at most 128 bytes");
        }
    }
    let has_control = |s: &String| s.chars().any(char::is_control);
    if strings.into_iter().any(has_control) || host.addresses.iter().any(has_control) {
        return bad("fields must not contain control characters");
    }
    Ok(())
}

impl Rendezvous {
    pub async fn enroll(
        &self,
        request: &EnrollRequest,
        source: Option<IpAddr>,
    ) -> Result<EnrollResponse, RendezvousError> {
        let attempt = Attempt {
            action: ENROLL_FAILED,
            source,
            protocol_version: request.protocol_version,
        };
        self.check_source(source).await?;
        let claimed = request
            .proof
            .as_ref()
            .and_then(|p| tucdesk_crypto::PublicKey::from_slice(&p.agent_pubkey).ok())
            .map(|key| key.agent_id());
        match self.enroll_checked(request).await {
            Ok(response) => {
                self.metrics()
                    .enrollments
                    .with_label_values(&["enrolled"])
                    .inc();
                Ok(response)
            }
            Err(err @ (RendezvousError::Internal(_) | RendezvousError::Unavailable(_))) => Err(err),
            Err(err) => Err(self.reject(attempt, claimed.as_deref(), None, err).await),
        }
    }

    async fn enroll_checked(
        &self,
        request: &EnrollRequest,
    ) -> Result<EnrollResponse, RendezvousError> {
        let proof = self
            .verify_registration(request.protocol_version, request.proof.as_ref())
            .await?;
        let host = request.host.clone().unwrap_or_default();
        check_host(&host)?;
        let name = if request.name.is_empty() {
            if host.hostname.is_empty() {
                format!("agent-{}", &proof.agent_id[..8])
            } else {
                host.hostname.clone()
            }
        } else {
            request.name.clone()
        };
        validate::name("name", &name).map_err(RendezvousError::invalid)?;
        let host_tags =
            validate::tags("tags", &request.tags, MAX_TAGS).map_err(RendezvousError::invalid)?;
        // A malformed code is as invalid as an unknown one, and says nothing more.
        let code = SupportCode::parse(&request.enrollment_token)
            .map_err(|_| RendezvousError::EnrollmentTokenInvalid)?;
        let code_hash = code
            .hash(&self.inner.code_key, CodeKind::Enrollment)
            .map_err(|err| RendezvousError::internal("hashing an enrollment code", err))?;

        let now = now_ms();
        let mut tx = self.db().begin().await?;
        // Checked before the token is consumed: an already enrolled key must not burn a token.
        if let Some(existing) = agents::find_tx(&mut tx, &proof.agent_id).await? {
            return Err(if existing.is_revoked() {
                RendezvousError::Registration {
                    reason: RejectReason::AgentRevoked,
                    message: "this key was revoked; reinstall the agent to get a new identity",
                }
            } else {
                RendezvousError::AlreadyExists("this key is already enrolled")
            });
        }
        let token = enrollment::consume(&mut tx, &code_hash.to_bytes(), &proof.agent_id, now)
            .await?
            .ok_or(RendezvousError::EnrollmentTokenInvalid)?;
        let mut tags = token.tag_list();
        if token.allow_host_tags {
            tags.extend(host_tags);
        }
        let tags = validate::tags("tags", &tags, MAX_TAGS).map_err(|_| {
            RendezvousError::InvalidArgument("the token's and the host's tags exceed 32".into())
        })?;
        let row = AgentRow {
            agent_id: proof.agent_id.clone(),
            team_id: token.team_id.clone(),
            public_key: proof.agent_key.to_bytes().to_vec(),
            name: name.clone(),
            hostname: host.hostname.clone(),
            status: STATUS_ACTIVE.to_owned(),
            enrollment_token_id: token.id.clone(),
            enrolled_at_ms: now,
            revoked_at_ms: None,
            host: Some(prost::Message::encode_to_vec(&host)),
            protocol_version: i32::try_from(request.protocol_version).unwrap_or(i32::MAX),
            last_seen_at_ms: None,
        };
        agents::insert(&mut tx, &row, &tags).await?;
        let record = Rendezvous::agent_event(&token.team_id, "agent.enrolled", &proof.agent_id)
            .actor_display(&name)
            .context("outcome", "success")
            .context("enrollment_token_id", token.id.as_str())
            .context("fingerprint", proof.agent_key.fingerprint())
            .context("tags", tags.clone())
            .context("created_by", token.created_by.as_str());
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        tracing::info!(agent_id = %proof.agent_id, team_id = %token.team_id, "agent enrolled");
        Ok(EnrollResponse {
            agent_id: proof.agent_id,
            fingerprint: proof.agent_key.fingerprint(),
            team_id: token.team_id,
            name,
            tags,
        })
    }
}
