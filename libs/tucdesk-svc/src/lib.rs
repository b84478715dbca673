//! TucDesk service kit: what every service needs and nothing service-specific.
//!
//! - [`config`], [`telemetry`], [`trace_context`], [`http`], [`shutdown`]: process plumbing.
//! - [`sql`], [`cache`], [`lease`], [`bus`], [`outbox`]: backends chosen by URL, each with a
//!   production implementation and an embedded one behind the same interface.
//! - [`ratelimit`]: per-key attempt limits with lockout (logins, support codes, registrations).
//! - [`audit_events`]: audit events into the outbox, the one way every service records actions.
//! - [`auth_keys`]: the auth service's token signing keys, followed over gRPC.
//! - [`testing`]: isolated real-backend fixtures for every crate's tests.
#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;

pub mod access;
pub mod audit_events;
pub mod auth_keys;
pub mod bus;
pub mod cache;
pub mod lease;
pub mod net;
pub mod outbox;
pub mod ratelimit;
pub mod redact;
pub mod sql;
pub mod status;
pub mod testing;
