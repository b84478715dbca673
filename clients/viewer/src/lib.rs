//! `tucdesk`, the native viewer and CLI (SPEC §2, §3, §5): device key and tokens
//! ([`config`], [`api`]), pinned agent keys ([`pins`]), sessions opened end to end
//! ([`open`]) and used interactively ([`terminal`]) or for one command ([`exec`]), and
//! verified download and playback of session recordings ([`recordings`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod exec;
pub mod open;
pub mod paths;
pub mod pins;
pub mod recordings;
pub mod resume;
pub mod terminal;
