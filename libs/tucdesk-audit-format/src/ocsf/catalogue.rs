//! Which OCSF class and activity each audit action maps to: one row per action the services
//! emit (the catalogue of docs/protocol.md §11 as implemented; docs/audit.md lists the producer
//! and the context keys of each). An action not in [`ACTIONS`] maps to [`FALLBACK`].

/// The OCSF event classes audit entries map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// 3001: a user account was created, enabled, disabled or changed (password, MFA, role).
    AccountChange,
    /// 3002: a logon or logoff (people, AI agents, support principals, agents), token refresh
    /// and reuse detection.
    Authentication,
    /// 3003: privileges granted (or refused) to a session: policy decisions, approvals,
    /// session tokens, OAuth grants.
    AuthorizeSession,
    /// 3004: a managed object was created, read, changed or revoked (agents, enrollment tokens,
    /// the policy, OAuth clients and grants, support codes, signing keys).
    EntityManagement,
    /// 6003: anything else (session lifecycle, reads of the audit log, unknown actions).
    ApiActivity,
    /// 1008: the log itself; used for signed checkpoints, not for entries.
    EventLogActivity,
}

impl Class {
    pub const fn uid(self) -> u32 {
        match self {
            Self::AccountChange => 3001,
            Self::Authentication => 3002,
            Self::AuthorizeSession => 3003,
            Self::EntityManagement => 3004,
            Self::ApiActivity => 6003,
            Self::EventLogActivity => 1008,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::AccountChange => "Account Change",
            Self::Authentication => "Authentication",
            Self::AuthorizeSession => "Authorize Session",
            Self::EntityManagement => "Entity Management",
            Self::ApiActivity => "API Activity",
            Self::EventLogActivity => "Event Log Activity",
        }
    }

    pub const fn category_uid(self) -> u32 {
        match self {
            Self::AccountChange
            | Self::Authentication
            | Self::AuthorizeSession
            | Self::EntityManagement => 3,
            Self::ApiActivity => 6,
            Self::EventLogActivity => 1,
        }
    }

    pub const fn category_name(self) -> &'static str {
        match self.category_uid() {
            3 => "Identity & Access Management",
            6 => "Application Activity",
            _ => "System Activity",
        }
    }

    /// Classes of the Identity & Access Management category that name the `user` concerned.
    pub const fn has_user(self) -> bool {
        matches!(
            self,
            Self::AccountChange | Self::Authentication | Self::AuthorizeSession
        )
    }
}

/// An OCSF activity of a class: its id and name. Id 99 ("Other") carries a TucDesk-specific
/// name, as OCSF prescribes for unmapped activities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Activity {
    pub id: u32,
    pub name: &'static str,
}

/// OCSF `activity_id` 99: the activity has no OCSF value.
pub const OTHER_ACTIVITY_ID: u32 = 99;

const fn other(name: &'static str) -> Activity {
    Activity {
        id: OTHER_ACTIVITY_ID,
        name,
    }
}

const fn act(id: u32, name: &'static str) -> Activity {
    Activity { id, name }
}

// Authentication (3002).
const LOGON: Activity = act(1, "Logon");
const LOGOFF: Activity = act(2, "Logoff");
// Account Change (3001).
const ACCOUNT_CREATE: Activity = act(1, "Create");
const ACCOUNT_ENABLE: Activity = act(2, "Enable");
const PASSWORD_CHANGE: Activity = act(3, "Password Change");
const ACCOUNT_DISABLE: Activity = act(5, "Disable");
const ATTACH_POLICY: Activity = act(7, "Attach Policy");
const MFA_ENABLE: Activity = act(10, "MFA Factor Enable");
const MFA_DISABLE: Activity = act(11, "MFA Factor Disable");
// Authorize Session (3003).
const ASSIGN_PRIVILEGES: Activity = act(1, "Assign Privileges");
// Entity Management (3004).
const ENTITY_CREATE: Activity = act(1, "Create");
const ENTITY_READ: Activity = act(2, "Read");
const ENTITY_UPDATE: Activity = act(3, "Update");
const ENTITY_MOVE: Activity = act(5, "Move");
const ENROLL: Activity = act(6, "Enroll");
const UNENROLL: Activity = act(7, "Unenroll");
const ENTITY_DISABLE: Activity = act(9, "Disable");
// API Activity (6003).
const API_CREATE: Activity = act(1, "Create");
const API_READ: Activity = act(2, "Read");
const API_UPDATE: Activity = act(3, "Update");
const API_DELETE: Activity = act(4, "Delete");

/// OCSF `severity_id`: how much attention an event deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
}

impl Severity {
    pub const fn id(self) -> u32 {
        match self {
            Self::Informational => 1,
            Self::Low => 2,
            Self::Medium => 3,
            Self::High => 4,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Informational => "Informational",
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
        }
    }
}

/// How one action maps. `severity` is the base; a failed or denied event is at least
/// [`Severity::Low`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActionMapping {
    pub action: &'static str,
    pub class: Class,
    pub activity: Activity,
    pub severity: Severity,
}

const fn row(
    action: &'static str,
    class: Class,
    activity: Activity,
    severity: Severity,
) -> ActionMapping {
    ActionMapping {
        action,
        class,
        activity,
        severity,
    }
}

/// An action the catalogue does not know: API Activity, "Other". Never dropped.
pub const FALLBACK: ActionMapping = row(
    "",
    Class::ApiActivity,
    other("Other"),
    Severity::Informational,
);

use Class::{
    AccountChange as ACC, ApiActivity as API, Authentication as AUTHN, AuthorizeSession as AUTHZ,
    EntityManagement as ENT,
};
use Severity::{High, Informational as Info, Low, Medium};

/// Every action the services emit, with its class and activity.
pub const ACTIONS: &[ActionMapping] = &[
    // auth: logons, logoffs, tokens.
    row("auth.login", AUTHN, LOGON, Info),
    row("auth.login_failed", AUTHN, LOGON, Low),
    row("auth.logout", AUTHN, LOGOFF, Info),
    row("auth.refresh", AUTHN, other("Token Refresh"), Info),
    row("auth.refresh_failed", AUTHN, other("Token Refresh"), Low),
    row(
        "auth.refresh_reused",
        AUTHN,
        other("Refresh Token Reuse"),
        High,
    ),
    row("auth.oauth_token", AUTHN, LOGON, Info),
    row("auth.oauth_token_failed", AUTHN, LOGON, Low),
    row(
        "auth.oauth_code_reused",
        AUTHN,
        other("Authorization Code Reuse"),
        High,
    ),
    row(
        "auth.totp_recovery_code_used",
        AUTHN,
        other("Recovery Code Use"),
        Low,
    ),
    row("auth.support_code_redeemed", AUTHN, LOGON, Info),
    row("auth.support_code_failed", AUTHN, LOGON, Low),
    // auth: accounts.
    row("auth.bootstrap", ACC, ACCOUNT_CREATE, Info),
    row("auth.user_created", ACC, ACCOUNT_CREATE, Info),
    row("auth.invite_accepted", ACC, ACCOUNT_ENABLE, Info),
    row("auth.user_enabled", ACC, ACCOUNT_ENABLE, Info),
    row("auth.user_disabled", ACC, ACCOUNT_DISABLE, Info),
    row("auth.password_changed", ACC, PASSWORD_CHANGE, Info),
    row("auth.password_change_failed", ACC, PASSWORD_CHANGE, Low),
    row(
        "auth.totp_enrollment_started",
        ACC,
        other("MFA Enrollment Start"),
        Info,
    ),
    row("auth.totp_enabled", ACC, MFA_ENABLE, Info),
    row("auth.totp_disabled", ACC, MFA_DISABLE, Low),
    row("auth.totp_disable_failed", ACC, MFA_DISABLE, Low),
    row("auth.role_changed", ACC, ATTACH_POLICY, Info),
    row(
        "auth.device_key_bound",
        ACC,
        other("Device Key Change"),
        Info,
    ),
    // auth: privileges for sessions and AI agents.
    row("auth.session_token_minted", AUTHZ, ASSIGN_PRIVILEGES, Info),
    row("auth.session_token_refused", AUTHZ, ASSIGN_PRIVILEGES, Low),
    row("auth.oauth_grant", AUTHZ, ASSIGN_PRIVILEGES, Info),
    // auth: managed objects.
    row("auth.oauth_client_registered", ENT, ENTITY_CREATE, Info),
    row("auth.oauth_client_revoked", ENT, ENTITY_DISABLE, Info),
    row("auth.oauth_grant_revoked", ENT, ENTITY_DISABLE, Info),
    row("auth.support_code_created", ENT, ENTITY_CREATE, Info),
    row("auth.support_code_revoked", ENT, ENTITY_DISABLE, Info),
    row("auth.signing_key_rotated", ENT, ENTITY_CREATE, Info),
    // rendezvous: agents' connections.
    row("agent.registered", AUTHN, LOGON, Info),
    row("agent.registration_rejected", AUTHN, LOGON, Low),
    row("agent.disconnected", AUTHN, LOGOFF, Info),
    // rendezvous: agents, enrollment tokens, the policy.
    row("agent.enrolled", ENT, ENROLL, Info),
    row("agent.enroll_failed", ENT, ENROLL, Low),
    row("agent.renamed", ENT, ENTITY_MOVE, Info),
    row("agent.tags_changed", ENT, ENTITY_UPDATE, Info),
    row("agent.revoked", ENT, UNENROLL, Info),
    row("enrollment_token.created", ENT, ENTITY_CREATE, Info),
    row("enrollment_token.revoked", ENT, ENTITY_DISABLE, Info),
    row("policy.updated", ENT, ENTITY_UPDATE, Info),
    row("policy.explained", ENT, ENTITY_READ, Info),
    row("recording.settings.updated", ENT, ENTITY_UPDATE, Info),
    // rendezvous: authorizing sessions.
    row("policy.decision", AUTHZ, other("Policy Decision"), Info),
    row("session.requested", AUTHZ, other("Session Request"), Info),
    row("session.offered", AUTHZ, other("Session Offer"), Info),
    row("session.accepted", AUTHZ, other("Session Accept"), Info),
    row("session.refused", AUTHZ, other("Session Refusal"), Low),
    row("approval.requested", AUTHZ, other("Approval Request"), Info),
    row("approval.approved", AUTHZ, other("Approval Grant"), Info),
    row("approval.denied", AUTHZ, other("Approval Denial"), Info),
    row("approval.expired", AUTHZ, other("Approval Expiry"), Info),
    row(
        "approval.self_approval_refused",
        AUTHZ,
        other("Self-Approval Refusal"),
        Medium,
    ),
    // rendezvous: the session's life.
    row("session.start", API, API_CREATE, Info),
    row("session.path_changed", API, API_UPDATE, Info),
    row("session.connectivity_renewed", API, API_UPDATE, Info),
    row("session.end", API, API_DELETE, Info),
    row("session.terminated", API, API_DELETE, Info),
    // recorder: recordings stored and read.
    row("recording.upload", API, API_CREATE, Info),
    row("recording.upload_rejected", API, API_CREATE, Medium),
    row("recording.download", API, API_READ, Info),
    // audit: reads of the log.
    row("audit.query", API, API_READ, Info),
    row("audit.export", API, API_READ, Info),
];

/// The catalogue row of `action`, if it has one.
pub fn lookup(action: &str) -> Option<&'static ActionMapping> {
    ACTIONS.iter().find(|row| row.action == action)
}

/// How `action` maps: its catalogue row, or [`FALLBACK`].
pub fn mapping(action: &str) -> &'static ActionMapping {
    lookup(action).unwrap_or(&FALLBACK)
}
