//! gRPC metadata keys that are part of the wire contract (lowercase, as
//! HTTP/2 requires).

/// The caller's [`crate::PROTOCOL_VERSION`] as decimal ASCII, on every call.
/// Missing or unparsable counts as 0, which is below every floor.
pub const PROTOCOL_VERSION: &str = "tucdesk-protocol-version";

/// Service assertion (short-lived EdDSA JWT, `typ` `tucdesk-svc+jwt`, see
/// `tucdesk-crypto::assertion`) required on every call of an internal
/// service (`AuthInternal`, `RendezvousInternal`, `RelayAdmin`).
pub const SERVICE_ASSERTION: &str = "tucdesk-service-assertion";

/// Operator access token, `Bearer <jwt>`.
pub const AUTHORIZATION: &str = "authorization";

/// Session-scoped viewer token on `OperatorService.SessionSignals` (in
/// addition to the access token).
pub const SESSION_TOKEN: &str = "tucdesk-session-token";
