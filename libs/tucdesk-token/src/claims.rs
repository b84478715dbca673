//! Claim sets of the three token kinds and the small enums they use.
//!
//! Every claim struct rejects unknown members (`deny_unknown_fields`): a claim
//! a verifier does not understand may be a restriction it would otherwise
//! ignore (the `crit` argument of RFC 7515), so verifiers are updated before
//! the issuer starts emitting a new claim. Duplicate members are rejected by
//! serde as well, so a token cannot carry two different `aud` values.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A principal's role (SPEC §3). `Auditor` (`ROLE_AUDITOR` on the wire)
/// reads the team's audit log and lists agents; it grants no session,
/// approval or administration rights anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the team, including other owners.
    Owner,
    /// Manages users, agents and policy; cannot touch owners.
    Admin,
    /// Opens sessions on agents (a person).
    Operator,
    /// Read-only access to sessions and agents.
    Viewer,
    /// An AI agent (MCP client) authenticated with OAuth 2.1 + PKCE.
    AiAgent,
    /// Reserved: read-only access to the audit log.
    Auditor,
}

impl Role {
    /// Every role, highest rank first.
    pub const ALL: [Role; 6] = [
        Role::Owner,
        Role::Admin,
        Role::Operator,
        Role::AiAgent,
        Role::Viewer,
        Role::Auditor,
    ];

    /// Privilege rank for "at least" checks (policy role requirements,
    /// [`Role::can_grant`]). A total order: owner 50 > admin 40 >
    /// operator 30 > ai_agent 20 > viewer 10 > auditor 0. An AI agent can run
    /// sessions like an operator but ranks below every human who can, so a
    /// rule requiring `operator` never admits it; the auditor has
    /// no session rights and ranks last.
    pub fn rank(self) -> u8 {
        match self {
            Role::Owner => 50,
            Role::Admin => 40,
            Role::Operator => 30,
            Role::AiAgent => 20,
            Role::Viewer => 10,
            Role::Auditor => 0,
        }
    }

    /// `true` when `self.rank() >= other.rank()`.
    pub fn at_least(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }

    /// Whether a principal with role `self` may give `other` to someone (or
    /// change the role of someone who holds `other`). Owners grant anything;
    /// admins grant anything but owner ("only owners manage owners"); no
    /// other role grants roles.
    pub fn can_grant(&self, other: &Role) -> bool {
        match self {
            Role::Owner => true,
            Role::Admin => *other != Role::Owner,
            Role::Operator | Role::Viewer | Role::AiAgent | Role::Auditor => false,
        }
    }

    /// The claim value (`"owner"`, `"ai_agent"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::AiAgent => "ai_agent",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unknown role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRole)
    }
}

/// Session kind, as in `SessionKind` of `common.proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// Interactive PTY shell.
    Shell,
    /// One command.
    Exec,
}

/// Side of a session a relay ticket admits (`Side` in `common.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The viewer (person or AI agent).
    Operator,
    /// The tucdesk-agent on the managed host.
    Agent,
}

/// Confirmation claim (RFC 7800): the token is bound to a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cnf {
    /// RFC 7638 thumbprint of the operator device key.
    pub jkt: String,
}

impl Cnf {
    /// Binds to a key thumbprint.
    pub fn jkt(thumbprint: impl Into<String>) -> Self {
        Self {
            jkt: thumbprint.into(),
        }
    }
}

/// The `aud` claim: one string or an array (RFC 7519 §4.1.3). Issued as a
/// string when there is one audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences; the token is for each of them.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `ours` is among the audiences (exact match).
    pub fn contains(&self, ours: &str) -> bool {
        match self {
            Audience::One(a) => a == ours,
            Audience::Many(v) => v.iter().any(|a| a == ours),
        }
    }

    /// Number of audiences.
    pub fn len(&self) -> usize {
        match self {
            Audience::One(_) => 1,
            Audience::Many(v) => v.len(),
        }
    }

    /// `true` for an empty array (never valid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&str> for Audience {
    fn from(a: &str) -> Self {
        Audience::One(a.to_owned())
    }
}

impl From<String> for Audience {
    fn from(a: String) -> Self {
        Audience::One(a)
    }
}

impl From<Vec<String>> for Audience {
    fn from(v: Vec<String>) -> Self {
        Audience::Many(v)
    }
}

/// Access token claims (`typ` = `at+jwt`; `auth.proto` top comment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessClaims {
    /// Issuer: the auth deployment's URL or id.
    pub iss: String,
    /// Subject: user id (or support principal id).
    pub sub: String,
    /// Audience(s).
    pub aud: Audience,
    /// The caller's team. Services take the team from here only, never from
    /// a request body or URL (SPEC §3).
    pub team_id: String,
    /// The user's email. Absent for support principals, who have no
    /// account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Role.
    pub role: Role,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Unique token id.
    pub jti: String,
    /// Device key binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Cnf>,
    /// OAuth client id (AI agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Scope: support principals `agent:<id>` or `tag:<tag>`; AI agents the
    /// OAuth scope (space-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    /// Session kinds a support principal may open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<SessionKind>>,
}

/// Session token claims (`typ` = `tucdesk-session+jwt`; `auth.proto`,
/// `MintSessionTokenResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionClaims {
    /// Issuer.
    pub iss: String,
    /// The operator (user id).
    pub sub: String,
    /// `[agent_id, rendezvous audience]`.
    pub aud: Audience,
    /// Team of the session.
    pub team_id: String,
    /// Session id.
    pub sid: String,
    /// The agent the session is for.
    pub agent_id: String,
    /// Shell or exec.
    pub kind: SessionKind,
    /// The operator device key (its thumbprint must match the key that
    /// signed the offer).
    pub cnf: Cnf,
    /// `b64url(SHA-256(e_op_pub))`: binds the token to this handshake.
    pub ekh: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds (≤ 5 min after `iat`).
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
}

/// Relay ticket claims (`typ` = `tucdesk-relay+jwt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayTicketClaims {
    /// Issuer.
    pub iss: String,
    /// The relay node id.
    pub aud: Audience,
    /// Session id.
    pub sid: String,
    /// Which side this ticket admits.
    pub side: Side,
    /// Team of the session.
    pub team_id: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Unique ticket id; the relay admits one live connection per ticket.
    pub jti: String,
}

/// The `ekh` claim for an operator ephemeral X25519 key:
/// `b64url(SHA-256(e_op_pub))`.
pub fn ekh(e_op_pub: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(e_op_pub))
}

/// A fresh random token id: a UUIDv4 (122 random bits) drawn from the OS
/// CSPRNG through tucdesk-crypto, so an RNG failure is an error, not the
/// panic `Uuid::new_v4` would raise.
pub fn new_jti() -> Result<String, tucdesk_crypto::RngError> {
    let bytes = tucdesk_crypto::rng::random_array::<16>()?;
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string())
}
