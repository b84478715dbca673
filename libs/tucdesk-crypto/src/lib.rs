//! TucDesk crypto core: everything SPEC §2, §3, §5 and §6 define as bytes.
//!
//! Every other crate builds on these primitives; nothing else in the workspace
//! touches raw key material or constructs signed byte strings itself.
#![forbid(unsafe_code)]

pub mod audit;
pub mod merkle;
