//! Relay tickets: verified against auth's keys (EdDSA, `aud` = this node's id, `exp`,
//! `sid` = the session, `side`), and each usable once: its `jti` is remembered until the
//! ticket expires. Tickets name one node, so a node-local memory is enough.

use std::time::{Duration, Instant};

use tucdesk_proto::v1::RejectReason;
use tucdesk_token::{RelayTicketClaims, Side, TokenError, TokenVerifier};

/// Longest a used ticket is remembered: the longest ticket lifetime plus the verifier leeway.
const MAX_REMEMBERED: Duration = Duration::from_secs(
    tucdesk_token::MAX_RELAY_TICKET_LIFETIME_SECS + tucdesk_token::verifier::MAX_LEEWAY.as_secs(),
);
/// Tickets remembered at most (a node pairs far fewer sessions per ticket lifetime).
const CAPACITY: u64 = 1_000_000;

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketRefused {
    #[error("the relay ticket is invalid")]
    Invalid,
    #[error("the relay ticket has expired")]
    Expired,
    #[error("the relay ticket is for another session or side")]
    WrongBinding,
    #[error("the relay ticket was already used")]
    Reused,
}

impl TicketRefused {
    pub fn reason(self) -> RejectReason {
        match self {
            TicketRefused::Expired => RejectReason::TokenExpired,
            TicketRefused::Reused => RejectReason::TokenReused,
            TicketRefused::Invalid | TicketRefused::WrongBinding => RejectReason::TokenInvalid,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TicketRefused::Invalid => "ticket_invalid",
            TicketRefused::Expired => "ticket_expired",
            TicketRefused::WrongBinding => "ticket_binding",
            TicketRefused::Reused => "ticket_reused",
        }
    }
}

/// Expires each remembered ticket when it could no longer verify anyway.
struct UntilExpiry;

impl moka::Expiry<String, Instant> for UntilExpiry {
    fn expire_after_create(
        &self,
        _jti: &String,
        until: &Instant,
        now: Instant,
    ) -> Option<Duration> {
        Some(until.saturating_duration_since(now))
    }
}

/// Verifies tickets for one node.
#[derive(Debug, Clone)]
pub struct Tickets {
    verifier: TokenVerifier,
    used: moka::future::Cache<String, Instant>,
}

impl Tickets {
    /// `verifier` must have this node's id as its audience.
    pub fn new(verifier: TokenVerifier) -> Self {
        Self {
            verifier,
            used: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// Verifies `ticket` for `session_id` and `side` and spends it.
    pub async fn redeem(
        &self,
        ticket: &str,
        session_id: &str,
        side: Side,
    ) -> Result<RelayTicketClaims, TicketRefused> {
        let now_secs = tucdesk_token::unix_now();
        let claims = self
            .verifier
            .verify_relay_ticket(ticket, now_secs, session_id, side)
            .map_err(|err| match err {
                TokenError::Expired => TicketRefused::Expired,
                TokenError::BindingMismatch(_) => TicketRefused::WrongBinding,
                _ => TicketRefused::Invalid,
            })?;
        let remember = Duration::from_secs(claims.exp.saturating_sub(now_secs))
            .saturating_add(self.verifier.leeway())
            .min(MAX_REMEMBERED);
        // `or_insert_with` coalesces concurrent first uses of one jti: exactly one is fresh.
        let entry = self
            .used
            .entry(claims.jti.clone())
            .or_insert_with(async move { Instant::now() + remember })
            .await;
        if entry.is_fresh() {
            Ok(claims)
        } else {
            Err(TicketRefused::Reused)
        }
    }
}
