//! STUN and TURN messages as TucDesk relay nodes need them, with no I/O:
//!
//! - [`binding`]: RFC 8489 Binding — the relay's STUN server parses requests and builds the
//!   smallest correct answer.
//! - [`turn`]: the Allocate and Refresh messages of a minimal TURN (RFC 8656) client with the
//!   long-term credential mechanism, and the parsing of coturn's answers — the relay's coturn
//!   health check.
//!
//! Every parser here reads bytes from the network and is fuzzed (`fuzz/fuzz_targets/stun_parse.rs`).
#![forbid(unsafe_code)]

pub mod binding;
pub mod turn;

pub use binding::*;
