//! TucDesk crypto core: everything SPEC §2, §3, §5 and §6 define as bytes.
//!
//! Every other crate builds on these primitives; nothing else in the workspace
//! touches raw key material or constructs signed byte strings itself.
//!
//! | module | construction |
//! |---|---|
//! | [`identity`], [`keyfile`] | Ed25519 identities, `agent_id`, fingerprint, JWK thumbprint, 0600 key files |
//! | [`registration`] | registration proof (`tucdesk-register-v1`) and clock-skew rules |
//! | [`handshake`] | X25519 + transcript hash + HKDF session keys, offer/answer signatures |
//! | [`frame`] | AES-256-GCM frames with strictly increasing counters |
//! | [`codes`] | support/enrollment codes: Crockford base32, keyed hash |
//! | [`device_proof`] | operator device-key proofs over a request context (`tucdesk-device-proof-v1`) |
//! | [`jws`], [`assertion`] | strict EdDSA compact JWS; service-to-service assertions |
//! | [`turn`] | TURN REST credentials for coturn (`use-auth-secret`) |
//! | [`recording`] | recording manifest signatures and upload proofs (`tucdesk-recording-*-v1`) |
//! | [`hazmat`] | fixed-key constructors for vectors, fuzzing and benches only |
//!
//! The byte layouts are documented in each module and in the crate README;
//! `tests/vectors.json` holds fixed vectors for other implementations.
#![forbid(unsafe_code)]

pub mod audit;
pub mod merkle;

pub mod assertion;
pub mod codes;
pub mod device_proof;
pub mod frame;
pub mod handshake;
pub mod hazmat;
pub mod identity;
pub mod json;
pub mod jws;
pub mod keyfile;
pub mod proof_scopes;
pub mod recording;
pub mod registration;
pub mod rng;
pub mod secret;
pub mod turn;

pub use assertion::{ServiceClaims, ServiceKeyring, ServiceSigner};
pub use codes::{CodeHash, CodeHashKey, CodeKind, SupportCode};
pub use device_proof::{DeviceProof, DeviceProofContext, DeviceProofError};
pub use frame::{Direction, FrameError, FrameOpener, FrameSealer, MAX_FRAME_LEN};
pub use handshake::{
    EphemeralPublic, EphemeralSecret, HandshakeError, OperatorHandshake, SessionAnswer,
    SessionKeys, SessionOffer, agent_respond,
};
pub use identity::{Identity, IdentityError, PublicKey, Signature};
pub use keyfile::KeyFileError;
pub use registration::{
    MAX_CLOCK_SKEW, REPLAY_WINDOW, RegistrationError, RegistrationProof, check_clock_skew,
};
pub use rng::RngError;
pub use secret::SecretString;
