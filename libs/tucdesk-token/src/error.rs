//! Errors. Each rejection reason is its own variant so services can count
//! and audit it, and tests can assert it; messages never echo token content.

use tucdesk_crypto::jws::JwsError;

/// Which session/ticket binding did not match what the verifier expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `sid` is not the session being set up.
    SessionId,
    /// `agent_id` is not the verifying agent.
    AgentId,
    /// `team_id` is not the agent's team.
    TeamId,
    /// `kind` is not the offered session kind.
    Kind,
    /// `ekh` is not the hash of the offered ephemeral key.
    HandshakeKey,
    /// `side` is not the side that presented the ticket.
    Side,
}

/// Why a token was not issued or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than the cap; checked before any decoding.
    #[error("token exceeds {max} bytes")]
    TooLarge {
        /// The cap that was applied.
        max: usize,
    },
    /// Not a strict compact JWS (parts, base64url, header members, lengths).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Header `alg` is not `EdDSA` (`none`, `HS256`, `RS256`, …). Rejected
    /// before any key lookup.
    #[error("unsupported alg (only EdDSA is accepted)")]
    UnsupportedAlgorithm,
    /// Header `typ` is not this kind of token.
    #[error("wrong token type (expected {expected})")]
    WrongType {
        /// The `typ` this verification required.
        expected: &'static str,
    },
    /// Header `kid` is not in the key set.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// The payload is not this kind's claim set (missing, unknown,
    /// duplicate or mistyped members).
    #[error("token claims do not match the expected claim set")]
    ClaimsMalformed,
    /// A claim value is empty, too long or otherwise invalid.
    #[error("invalid claim: {0}")]
    InvalidClaim(&'static str),
    /// `iss` is not the trusted issuer.
    #[error("token from another issuer")]
    WrongIssuer,
    /// `aud` does not contain this verifier's audience.
    #[error("token is for another audience")]
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `iat` or `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp ≤ iat`, or the lifetime exceeds this kind's maximum.
    #[error("token lifetime out of bounds")]
    BadLifetime,
    /// A device-key binding was required but the token has no `cnf.jkt`.
    #[error("token is not bound to a device key")]
    CnfMissing,
    /// `cnf.jkt` is not the presented device key's thumbprint.
    #[error("token is bound to another device key")]
    CnfMismatch,
    /// A session or ticket binding does not match.
    #[error("token binding mismatch: {0:?}")]
    BindingMismatch(Binding),
    /// Serialising or signing failed while issuing.
    #[error("cannot serialise token")]
    Serialize,
    /// The OS RNG failed while drawing a token id.
    #[error("OS random number generator failed")]
    Rng,
}

impl From<JwsError> for TokenError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::TooLarge { max } => TokenError::TooLarge { max },
            JwsError::Malformed(what) => TokenError::Malformed(what),
            JwsError::UnsupportedAlgorithm => TokenError::UnsupportedAlgorithm,
            JwsError::BadSignature => TokenError::BadSignature,
            JwsError::Serialize => TokenError::Serialize,
        }
    }
}

impl From<tucdesk_crypto::RngError> for TokenError {
    fn from(_: tucdesk_crypto::RngError) -> Self {
        TokenError::Rng
    }
}
