//! First start of a data directory: the first team and its owner are bootstrapped, the setup
//! token lands in `<data-dir>/setup-token` (0600) and logs in end to end through the real
//! gRPC; a restart bootstraps nothing and keeps keys and data; events reach the interim
//! audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt as _;

use support::{accept_setup_token, audit_actions, audit_logged, login, start, stop};
use tucdesk_crypto::Identity;
use tucdesk_standalone::bootstrap::SETUP_TOKEN_FILE;
use tucdesk_standalone::config::{DEFAULT_ADMIN_EMAIL, DEFAULT_TEAM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_bootstraps_once_and_the_setup_token_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = start(&data).await;

    // Bootstrapped: one team, the token on file, owner-only, the same as handed out.
    let first = stack
        .first_start()
        .expect("the first start bootstraps")
        .clone();
    assert_eq!(first.team, DEFAULT_TEAM);
    assert_eq!(first.email, DEFAULT_ADMIN_EMAIL);
    assert_eq!(first.token_file, data.join(SETUP_TOKEN_FILE));
    let mode = std::fs::metadata(&first.token_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the setup token file must be owner-only"
    );
    let on_file = std::fs::read_to_string(&first.token_file).unwrap();
    assert_eq!(on_file.trim_end(), first.setup_token.expose());
    assert_eq!(
        tucdesk_auth::store::count_teams(stack.auth().db())
            .await
            .unwrap(),
        1
    );
    let summary = stack.summary();
    assert!(
        summary.contains(&format!(
            "tucdesk login --auth {} --rendezvous {} --email {DEFAULT_ADMIN_EMAIL} --setup-token {}",
            stack.urls().auth,
            stack.urls().rendezvous,
            first.setup_token.expose()
        )),
        "{summary}"
    );
    let data_mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(data_mode & 0o077, 0, "the data directory must be private");
    let keys_mode = std::fs::metadata(data.join("keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(keys_mode & 0o077, 0, "the key directory must be private");

    // The setup token sets the password; a device-bound login follows, all over gRPC.
    accept_setup_token(&stack, first.setup_token.expose()).await;
    let owner = login(&stack, DEFAULT_ADMIN_EMAIL, Identity::generate().unwrap()).await;
    assert_eq!(owner.team_id, first.team_id);
    assert_eq!(owner.user_id, first.user_id);

    // The services' audit events reach the interim log, one JSON object per line.
    assert!(
        audit_logged(&stack, "auth.bootstrap").await,
        "{:?}",
        audit_actions(&stack)
    );
    assert!(
        audit_logged(&stack, "auth.login").await,
        "{:?}",
        audit_actions(&stack)
    );
    let log_mode = std::fs::metadata(stack.audit_log())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(log_mode & 0o777, 0o600, "the audit log must be owner-only");
    stop(stack).await;

    // A restart of the same data directory: no bootstrap, same team, same keys (the signing
    // keys sealed with the KEK on file open again, so the password login still works).
    let events_before = audit_actions_in(&data);
    let stack = start(&data).await;
    assert!(
        stack.first_start().is_none(),
        "a restart must not bootstrap again"
    );
    assert!(!stack.summary().contains("setup-token"));
    assert_eq!(
        tucdesk_auth::store::count_teams(stack.auth().db())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        std::fs::read_to_string(data.join(SETUP_TOKEN_FILE)).unwrap(),
        on_file,
        "a restart leaves the setup token file alone"
    );
    let again = login(&stack, DEFAULT_ADMIN_EMAIL, Identity::generate().unwrap()).await;
    assert_eq!(again.team_id, first.team_id);
    // The log is appended to, never truncated.
    assert!(
        tucdesk_testkit::eventually(support::WAIT, || async {
            let now = audit_actions(&stack);
            now.len() > events_before.len() && now.starts_with(&events_before)
        })
        .await
    );
    stop(stack).await;
}

fn audit_actions_in(data: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(data.join(tucdesk_standalone::audit_sink::AUDIT_LOG_FILE))
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["action"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}
