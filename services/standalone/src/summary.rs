//! The startup summary printed on stdout: every URL, and on first start how to log in.

use std::fmt::Write as _;

use crate::Standalone;

/// Renders the summary of a started stack.
pub fn render(stack: &Standalone) -> String {
    let (a, u) = (stack.addresses(), stack.urls());
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<22}{value}");
    };
    line("auth gRPC", u.auth.clone());
    line(
        "auth HTTP (issuer)",
        format!("{}  (JWKS {}/.well-known/jwks.json)", u.issuer, u.issuer),
    );
    line("rendezvous", u.rendezvous.clone());
    line(
        "rendezvous internal",
        format!("http://{}  (loopback only)", a.rendezvous_internal),
    );
    line("relay WebSocket", u.relay_ws.clone());
    line("relay STUN (udp)", u.stun.clone());
    match &u.turn {
        Some(turn) => line(
            "TURN (udp, coturn)",
            format!(
                "{turn}  (realm {}, secret made at start; log {})",
                crate::turn::TURN_REALM,
                stack
                    .data_dir()
                    .join(crate::turn::TURN_DIR)
                    .join("turnserver.log")
                    .display()
            ),
        ),
        None => line("TURN", "off (--turn runs coturn)".to_owned()),
    }
    line(
        "relay admin",
        format!("http://{}  (loopback only)", a.relay_admin),
    );
    line(
        "ops",
        format!("http://{}  (/metrics /healthz /readyz)", a.ops),
    );
    line(
        "audit gRPC",
        format!(
            "{}  (signed log in {})",
            u.audit,
            stack.data_dir().join("audit.db").display()
        ),
    );
    line(
        "audit HTTP export",
        format!("{}/v1/audit/export  (NDJSON; ?format=ocsf)", u.audit_http),
    );
    line(
        "recorder gRPC",
        format!(
            "{}  (recordings in {})",
            u.recorder,
            stack.data_dir().join("recordings").display()
        ),
    );
    line(
        "audit public key",
        format!(
            "{}  ({})",
            stack.audit().key().public_key_base64url(),
            stack.audit().key().key_id()
        ),
    );
    line(
        "audit events (NDJSON)",
        stack.audit_log().display().to_string(),
    );
    let mut text = format!(
        "TucDesk standalone {} is running; data in {}\n{out}",
        env!("CARGO_PKG_VERSION"),
        stack.data_dir().display()
    );
    if let Some(first) = stack.first_start() {
        // Rounded to the nearest hour: "24 hours", not "23" a few milliseconds after minting.
        let hours =
            ((first.expires_at_ms - tucdesk_svc::sql::now_ms()).max(0) + 1_800_000) / 3_600_000;
        let _ = write!(
            text,
            "\nFirst start: created team \"{team}\" with owner {email}.\n\
             Set the owner's password and log in with the one-time setup token (valid for \
             {hours} hours, also in {file}):\n\n  \
             tucdesk login --auth {auth} --rendezvous {rdv} --email {email} --setup-token {token}\n",
            team = first.team,
            email = first.email,
            file = first.token_file.display(),
            auth = u.auth,
            rdv = u.rendezvous,
            token = first.setup_token.expose(),
        );
    }
    text
}
