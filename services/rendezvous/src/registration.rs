//! Checking an agent's registration proof (SPEC §2), shared by Enroll and Connect.
//!
//! Order, cheapest and least revealing first: source rate limit, protocol version floor
//! (explicit UPDATE_REQUIRED), field shapes, audience, clock skew (±30 s), replay cache
//! (`insert_if_absent(nonce)`, shared by every replica through Redis), signature; then the
//! caller checks enrollment. The nonce is claimed before the signature is checked so a replay
//! costs no signature verification; junk nonces cannot crowd out real ones in Redis (it keeps
//! every key for its TTL) and in the in-process cache the per-source limit keeps the rate of
//! any one source far below its capacity.
//!
//! Every rejection is counted by reason and recorded against the source; a source with too
//! many rejections is locked out for a while, and only rejections that still count are
//! audited, so a flood cannot flood the audit log.

use std::net::IpAddr;
use std::time::Duration;

use tucdesk_crypto::registration::{RegistrationError, RegistrationProof as CryptoProof};
use tucdesk_crypto::{PublicKey, Signature};
use tucdesk_proto::limits::{
    ED25519_PUBLIC_KEY_LEN, ED25519_SIGNATURE_LEN, REGISTRATION_NONCE_LEN,
};
use tucdesk_proto::v1::{RegistrationProof, RejectReason};
use tucdesk_svc::audit_events::{ANONYMOUS, AuditRecord, SYSTEM_TEAM};
use tucdesk_svc::ratelimit::{Decision, LimitPolicy, source_key};

use crate::error::RendezvousError;
use crate::metrics::reason_label;
use crate::service::Rendezvous;

/// Rejected registrations and enrollments a source may cause before it is locked out.
pub const REJECTIONS_PER_SOURCE: LimitPolicy = LimitPolicy {
    name: "registration-rejected",
    max_failures: 60,
    window: Duration::from_secs(60),
    lockout: Duration::from_secs(5 * 60),
};

/// Key of a source without an address (in-process transports): one shared bucket.
const UNKNOWN_SOURCE: &str = "unknown-source";

/// A proof that passed every check; the key is the agent's identity.
#[derive(Debug, Clone)]
pub struct VerifiedProof {
    pub agent_key: PublicKey,
    pub agent_id: String,
}

/// Where a registration attempt came from and what it claimed, for rejection records.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// `agent.enroll_failed` or `agent.registration_rejected`.
    pub action: &'static str,
    pub source: Option<IpAddr>,
    pub protocol_version: u32,
}

pub fn source_of(source: Option<IpAddr>) -> String {
    source.map_or_else(|| UNKNOWN_SOURCE.to_owned(), source_key)
}

impl Rendezvous {
    /// Refuses a source that caused too many rejections lately.
    pub async fn check_source(&self, source: Option<IpAddr>) -> Result<(), RendezvousError> {
        let decision = self
            .inner
            .limiter
            .check(&source_of(source), &REJECTIONS_PER_SOURCE)
            .await
            .map_err(|err| RendezvousError::internal("registration rate limiter", err))?;
        match decision {
            Decision::Allowed { .. } => Ok(()),
            Decision::Locked { retry_after } => {
                self.metrics()
                    .registrations
                    .with_label_values(&["rate_limited"])
                    .inc();
                Err(RendezvousError::RateLimited { retry_after })
            }
        }
    }

    /// Verifies `proof` in the documented order. `Err` carries the reject reason; the caller
    /// passes it to [`Rendezvous::reject`].
    pub async fn verify_registration(
        &self,
        protocol_version: u32,
        proof: Option<&RegistrationProof>,
    ) -> Result<VerifiedProof, RendezvousError> {
        let refuse = |reason, message| Err(RendezvousError::Registration { reason, message });
        let min = self.config().min_agent_version;
        if protocol_version < min {
            return Err(RendezvousError::UpdateRequired {
                got: protocol_version,
                min,
            });
        }
        let Some(proof) = proof else {
            return refuse(
                RejectReason::InvalidArgument,
                "a registration proof is required",
            );
        };
        if proof.agent_pubkey.len() != ED25519_PUBLIC_KEY_LEN
            || proof.nonce.len() != REGISTRATION_NONCE_LEN
            || proof.signature.len() != ED25519_SIGNATURE_LEN
            || proof.audience.is_empty()
            || proof.audience.len() > tucdesk_proto::limits::MAX_AUDIENCE_LEN
        {
            return refuse(
                RejectReason::InvalidArgument,
                "the proof's key, nonce, signature or audience has the wrong length",
            );
        }
        let Ok(agent_key) = PublicKey::from_slice(&proof.agent_pubkey) else {
            return refuse(
                RejectReason::InvalidArgument,
                "the agent key is not a valid Ed25519 key",
            );
        };
        if proof.audience != self.config().audience {
            return refuse(
                RejectReason::AudienceMismatch,
                "the proof was made for another deployment",
            );
        }
        let now = u64::try_from(tucdesk_svc::sql::now_ms()).unwrap_or(0);
        if let Err(err) = tucdesk_crypto::check_clock_skew(proof.timestamp_ms, now) {
            let message = match err {
                RegistrationError::FromTheFuture => {
                    "the proof's timestamp is in the future; check the host clock"
                }
                _ => "the proof's timestamp is too old; check the host clock",
            };
            return refuse(RejectReason::ClockSkew, message);
        }
        let nonce_key = format!("reg:{}", hex(&proof.nonce));
        let fresh = self
            .inner
            .replay
            .insert_if_absent(&nonce_key, tucdesk_crypto::REPLAY_WINDOW)
            .await
            .map_err(|err| RendezvousError::internal("registration replay cache", err))?;
        if !fresh {
            return refuse(
                RejectReason::NonceReplayed,
                "the proof's nonce was already used",
            );
        }
        let mut nonce = [0u8; REGISTRATION_NONCE_LEN];
        nonce.copy_from_slice(&proof.nonce);
        let Some(signature) = Signature::from_slice(&proof.signature) else {
            return refuse(
                RejectReason::SignatureInvalid,
                "the proof's signature does not verify",
            );
        };
        let parsed = CryptoProof {
            audience: proof.audience.clone(),
            agent_key,
            nonce,
            timestamp_ms: proof.timestamp_ms,
            signature,
        };
        if parsed.verify(&self.config().audience, now).is_err() {
            return refuse(
                RejectReason::SignatureInvalid,
                "the proof's signature does not verify",
            );
        }
        Ok(VerifiedProof {
            agent_id: agent_key.agent_id(),
            agent_key,
        })
    }

    /// Counts, rate-limits and audits a rejected registration or enrollment; returns the
    /// error to give the agent (RATE_LIMITED once the source is locked).
    ///
    /// `team` is the agent's team when the proof verified (revoked agents), else `None`: an
    /// unverified claim must not let anyone write into a team's audit log.
    pub async fn reject(
        &self,
        attempt: Attempt,
        claimed_agent: Option<&str>,
        team: Option<&str>,
        err: RendezvousError,
    ) -> RendezvousError {
        let reason = err.reason();
        let label = reason_label(reason);
        let counter = if attempt.action == ENROLL_FAILED {
            &self.metrics().enrollments
        } else {
            &self.metrics().registrations
        };
        counter.with_label_values(&[&label]).inc();
        let recorded = self
            .inner
            .limiter
            .record_failure(&source_of(attempt.source), &REJECTIONS_PER_SOURCE)
            .await;
        let still_counted = match recorded {
            Ok(Decision::Allowed { .. }) => true,
            Ok(Decision::Locked { .. }) => false,
            Err(limit_err) => {
                tracing::error!(error = %limit_err, "recording a registration rejection failed");
                false
            }
        };
        if still_counted {
            let mut record = AuditRecord::new(
                team.unwrap_or(SYSTEM_TEAM),
                attempt.action,
                tucdesk_proto::v1::ActorKind::Agent,
                claimed_agent.unwrap_or(ANONYMOUS),
            )
            .context("outcome", "denied")
            .context("reason", reason.as_str_name())
            .context("protocol_version", attempt.protocol_version);
            if let Some(agent) = claimed_agent {
                record = record.target(format!("agent:{agent}"));
            }
            if let Some(ip) = attempt.source {
                record = record.context("client_ip", ip.to_string());
            }
            if let Err(audit_err) = self.audit_alone(record).await {
                tracing::error!(error = %audit_err, "auditing a registration rejection failed");
            }
        }
        tracing::info!(reason = %label, source = ?attempt.source, "agent registration refused");
        err
    }
}

/// Audit action of a failed enrollment.
pub const ENROLL_FAILED: &str = "agent.enroll_failed";
/// Audit action of a refused registration.
pub const REGISTRATION_REJECTED: &str = "agent.registration_rejected";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
