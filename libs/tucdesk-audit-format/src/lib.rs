//! Audit formats shared by the audit service and its clients (the `tucdesk audit` commands,
//! SIEM tooling): the one-to-one mapping between the wire messages of `audit.proto` and the
//! hashed forms of `tucdesk_crypto::audit` ([`convert`]), and the OCSF events SIEMs ingest
//! ([`ocsf`]). Pure: no I/O.
#![forbid(unsafe_code)]

pub mod convert;
pub mod ocsf;
