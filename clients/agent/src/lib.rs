//! `tucdesk-agent`, the program on every managed host (SPEC §2, §4, §5).
//!
//! It holds the host's Ed25519 identity ([`state`]), enrolls once ([`enroll`]), keeps a link
//! to rendezvous ([`link`]), checks every offer itself ([`offer`], [`consent`]) and serves the
//! accepted sessions end-to-end encrypted over the relay ([`session`], [`shell`], [`exec`]),
//! keeping shells across path drops ([`resume`]),
//! recording shells when the team asks for it ([`recording`], [`upload`]).
#![forbid(unsafe_code)]

pub mod cli;
pub mod consent;
pub mod enroll;
pub mod exec;
pub mod link;
pub mod offer;
pub mod paths;
pub mod recording;
pub mod resume;
pub mod session;
pub mod shell;
pub mod state;
pub mod upload;

pub use link::{Agent, AgentOptions};
pub use state::{Enrollment, LocalLimits, StateDir};
