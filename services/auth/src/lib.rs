//! TucDesk auth service (SPEC §3): users, teams and roles, password + TOTP login, EdDSA access
//! tokens bound to device keys, refresh-token families, support codes, session tokens for
//! rendezvous, and OAuth 2.1 + PKCE for AI agents.
//!
//! Library first: [`serve`] builds the gRPC and HTTP routers on given listeners, so tests and
//! `tucdesk-standalone` run the service in-process exactly as `main.rs` does.
#![forbid(unsafe_code)]

pub mod password;
pub mod totp;
