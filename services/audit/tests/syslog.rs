//! The syslog push (`--syslog-url`): octet-counted RFC 5424 messages for every appended entry in
//! seq order with its structured data, checkpoints after the entries they cover, no gap across
//! a collector restart (at-least-once, repeating at most the unconfirmed batch), TLS trusting
//! a CA file (and refusing a collector it does not trust), OCSF bodies, ingest that does not
//! wait for a collector that is down, and the documented least-privilege Postgres grants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fixture, SETTLE, event, team};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tucdesk_audit::store::syslog as cursors;
use tucdesk_audit::syslog::SyslogFormat;
use tucdesk_audit::syslog::message::MAX_MESSAGE_LEN;
use tucdesk_audit::{Audit, AuditConfig, Backends};
use tucdesk_crypto::audit::Entry;
use tucdesk_crypto::merkle::SignedCheckpoint;
use tucdesk_testkit::{Backend, on_both_backends};

on_both_backends!(
    entries_and_checkpoints_arrive_octet_counted_in_seq_order_with_structured_data,
    a_restarted_collector_gets_everything_after_the_last_confirmed_batch,
    tls_with_a_ca_file_carries_ocsf_bodies_and_an_untrusted_collector_gets_nothing,
    a_collector_that_is_down_does_not_hold_up_ingest,
);

/// One RFC 5424 message as a collector parsed it.
#[derive(Debug, Clone)]
struct Message {
    pri: u8,
    version: String,
    timestamp: String,
    hostname: String,
    app: String,
    msgid: String,
    sd_id: String,
    params: HashMap<String, String>,
    bom: bool,
    body: String,
}

impl Message {
    fn is_checkpoint(&self) -> bool {
        self.msgid == "audit.checkpoint"
    }

    fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
    }

    fn seq(&self) -> u64 {
        self.param("seq").parse().unwrap()
    }
}

/// Parses `<PRI>1 TS HOST APP PROCID MSGID [SD-ID name="value"…] BODY`.
fn parse(msg: &[u8]) -> Message {
    let text = std::str::from_utf8(msg).expect("messages are UTF-8");
    let mut fields = text.splitn(7, ' ');
    let mut next = || fields.next().expect("a header field").to_owned();
    let pri_version = next();
    let (pri, version) = pri_version
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .expect("<PRI>VERSION");
    let (timestamp, hostname, app, _procid, msgid) = (next(), next(), next(), next(), next());
    let rest = next();
    let mut chars = rest.strip_prefix('[').expect("structured data").chars();
    let sd_id: String = chars.by_ref().take_while(|c| *c != ' ').collect();
    let mut params = HashMap::new();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        loop {
            match chars.next().expect("a closed value") {
                '\\' => value.push(chars.next().unwrap()),
                '"' => break,
                c => value.push(c),
            }
        }
        params.insert(name, value);
        match chars.next() {
            Some(' ') => {}
            Some(']') => break,
            other => panic!("unexpected {other:?} in structured data"),
        }
    }
    assert_eq!(chars.next(), Some(' '));
    let body: String = chars.collect();
    let (bom, body) = match body.strip_prefix('\u{feff}') {
        Some(body) => (true, body.to_owned()),
        None => (false, body),
    };
    Message {
        pri: pri.parse().unwrap(),
        version: version.to_owned(),
        timestamp,
        hostname,
        app,
        msgid,
        sd_id,
        params,
        bom,
        body,
    }
}

/// Reads octet-counted frames (`<len> <msg>`) until the peer goes away.
async fn read_frames(
    mut stream: impl AsyncRead + Unpin,
    received: Arc<Mutex<Vec<Message>>>,
    close_after: Option<usize>,
) {
    let mut count = 0usize;
    loop {
        let mut len = 0usize;
        let mut digits = 0;
        loop {
            let Ok(byte) = stream.read_u8().await else {
                return;
            };
            match byte {
                b'0'..=b'9' if digits < 10 => {
                    len = len * 10 + usize::from(byte - b'0');
                    digits += 1;
                }
                b' ' if digits > 0 => break,
                other => panic!("not an octet count: {other}"),
            }
        }
        assert!(len <= MAX_MESSAGE_LEN, "{len}");
        let mut msg = vec![0u8; len];
        if stream.read_exact(&mut msg).await.is_err() {
            return;
        }
        received.lock().unwrap().push(parse(&msg));
        count += 1;
        if close_after.is_some_and(|n| count >= n) {
            return;
        }
    }
}

/// A syslog collector on a port of its own, plain or TLS; stopping it closes every
/// connection.
struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Message>>>,
    task: JoinHandle<()>,
}

impl Collector {
    /// Listens on `addr` (port 0: any); with `close_after`, the first connection is closed
    /// (and the listener stopped) after that many messages, as a collector that dies mid-batch.
    async fn start(
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        close_after: Option<usize>,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let sink = sink.clone();
                let tls = tls.clone();
                let reader = async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                read_frames(stream, sink, close_after).await;
                            }
                        }
                        None => read_frames(tcp, sink, close_after).await,
                    }
                };
                if close_after.is_some() {
                    reader.await;
                    return;
                }
                connections.spawn(reader);
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    fn messages(&self) -> Vec<Message> {
        self.received.lock().unwrap().clone()
    }

    fn entries(&self, team: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| !m.is_checkpoint() && m.param("team") == team)
            .collect()
    }

    /// Waits until `team` has an entry with seq `last`; panics after [`SETTLE`].
    async fn wait_for_seq(&self, team: &str, last: u64) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let entries = self.entries(team);
            if entries.iter().any(|m| m.seq() == last) {
                return entries;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "seq {last} of {team} not pushed in time; got {:?}",
                entries.iter().map(Message::seq).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A running pusher.
struct Pusher {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Pusher {
    fn start(audit: &Audit) -> Self {
        let pusher = audit
            .syslog_pusher()
            .unwrap()
            .expect("syslog push is configured");
        let stop = CancellationToken::new();
        let task = tokio::spawn(pusher.run(stop.clone()));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the pusher stops")
            .unwrap();
    }
}

fn syslog_config(config: &mut AuditConfig, url: String) {
    config.syslog_url = Some(url.parse().unwrap());
    config.syslog_hostname = Some("audit-host".into());
}

async fn wait_for_cursor(fixture: &Fixture, team: &str, last_seq: u64) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    while cursors::cursor(&fixture.db, team).await.unwrap().last_seq < last_seq {
        assert!(tokio::time::Instant::now() < deadline, "cursor of {team}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn entries_and_checkpoints_arrive_octet_counted_in_seq_order_with_structured_data(
    backend: Backend,
) {
    let collector = Collector::start("127.0.0.1:0".parse().unwrap(), None, None).await;
    let url = format!("tcp://{}", collector.addr);
    let fixture = Fixture::with(backend, |c| {
        syslog_config(c, url);
        c.checkpoint_every = 3;
    })
    .await;
    let (a, b) = (team("sys-a"), team("sys-b"));
    let actions = [
        "auth.login",
        "auth.login_failed",
        "auth.refresh_reused",
        "session.start",
        "agent.renamed",
    ];
    for action in actions {
        fixture.publish(&event(&a, action, "u-1")).await;
    }
    // An action with characters the structured data must escape cannot exist (actions are
    // [a-z0-9_.]); a team id can carry none either, so escaping is covered by the unit tests.
    fixture.publish(&event(&b, "auth.logout", "u-2")).await;
    let running = fixture.start().await;
    let pusher = Pusher::start(&running.audit);

    let chain = fixture.wait_for(&a, 5).await;
    let got = collector.wait_for_seq(&a, 5).await;
    collector.wait_for_seq(&b, 1).await;
    assert_eq!(
        got.iter().map(Message::seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "entries in seq order, once each"
    );
    for (message, entry) in got.iter().zip(&chain) {
        assert_eq!(message.version, "1");
        assert_eq!(message.app, "tucdesk-audit");
        assert_eq!(message.hostname, "audit-host");
        assert_eq!(message.sd_id, "tucdesk@32473");
        assert_eq!(message.pri >> 3, 16, "facility local0");
        assert_eq!(message.msgid, entry.event.action);
        assert_eq!(message.param("team"), a);
        assert_eq!(message.param("event_id"), entry.event.event_id);
        assert_eq!(message.param("hash"), hex::encode(entry.hash));
        assert!(message.timestamp.ends_with('Z') && message.timestamp.len() == 24);
        assert!(message.bom, "UTF-8 bodies start with a BOM by default");
        let pushed = Entry::from_json_line(&message.body).unwrap();
        assert_eq!(&pushed, entry, "the body is the stored, signed entry");
    }
    let severities: Vec<u8> = got.iter().map(|m| m.pri & 7).collect();
    assert_eq!(
        severities,
        vec![6, 5, 3, 6, 6],
        "severity from the OCSF severity"
    );

    // The count-triggered checkpoint at 3 follows entry 3 and precedes entry 4.
    let all: Vec<Message> = collector
        .messages()
        .into_iter()
        .filter(|m| m.param("team") == a)
        .collect();
    let at = all
        .iter()
        .position(|m| m.is_checkpoint() && m.param("tree_size") == "3")
        .expect("checkpoint 3 pushed");
    assert_eq!(all[at - 1].seq(), 3);
    assert_eq!(all[at + 1].seq(), 4);
    let signed = SignedCheckpoint::from_json(&all[at].body).unwrap();
    assert!(signed.verify(&fixture.key().verifying_key()).is_ok());
    assert_eq!(
        all[at].param("root_hash"),
        hex::encode(signed.checkpoint.root_hash)
    );

    wait_for_cursor(&fixture, &a, 5).await;
    wait_for_cursor(&fixture, &b, 1).await;
    // Counted once confirmed (just after the cursors move).
    let metrics = running.audit.metrics();
    let deadline = tokio::time::Instant::now() + SETTLE;
    while metrics.syslog_pushed.with_label_values(&["entry"]).get() < 6
        || metrics
            .syslog_pushed
            .with_label_values(&["checkpoint"])
            .get()
            < 1
    {
        assert!(tokio::time::Instant::now() < deadline, "pushes are counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pusher.stop().await;
    running.stop().await;
    collector.stop().await;
    fixture.cleanup().await;
}

async fn a_restarted_collector_gets_everything_after_the_last_confirmed_batch(backend: Backend) {
    let first = Collector::start("127.0.0.1:0".parse().unwrap(), None, None).await;
    let addr = first.addr;
    let fixture = Fixture::with(backend, |c| syslog_config(c, format!("tcp://{addr}"))).await;
    let t = team("sys-restart");
    let running = fixture.start().await;
    let pusher = Pusher::start(&running.audit);
    for i in 0..3 {
        fixture
            .publish(&event(&t, "auth.login", &format!("u-{i}")))
            .await;
    }
    first.wait_for_seq(&t, 3).await;
    wait_for_cursor(&fixture, &t, 3).await;
    let mut seen: Vec<u64> = first.entries(&t).iter().map(Message::seq).collect();
    first.stop().await;

    // The next collector dies after two messages, in the middle of what was sent to it.
    let dying = Collector::start(addr, None, Some(2)).await;
    for i in 3..6 {
        fixture
            .publish(&event(&t, "auth.login", &format!("u-{i}")))
            .await;
    }
    fixture.wait_for(&t, 6).await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    while dying.messages().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dying collector got two"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen.extend(dying.entries(&t).iter().map(Message::seq));
    dying.stop().await;
    // Nothing listens for a while: the pusher backs off and retries.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let confirmed = cursors::cursor(&fixture.db, &t).await.unwrap().last_seq;
    assert!((3..6).contains(&confirmed), "confirmed {confirmed}");

    let last = Collector::start(addr, None, None).await;
    let resent: Vec<u64> = last
        .wait_for_seq(&t, 6)
        .await
        .iter()
        .map(Message::seq)
        .collect();
    assert_eq!(
        resent,
        (confirmed + 1..=6).collect::<Vec<_>>(),
        "after the reconnect: everything from the confirmed cursor, in order, once"
    );
    // No gap: every seq reached some collector; the only repeats are of the batch that was
    // not confirmed.
    seen.extend(&resent);
    for seq in 1..=6 {
        assert!(seen.contains(&seq), "seq {seq} never pushed: {seen:?}");
    }
    assert!(
        running
            .audit
            .metrics()
            .syslog_errors
            .with_label_values(&["connect"])
            .get()
            + running
                .audit
                .metrics()
                .syslog_errors
                .with_label_values(&["closed"])
                .get()
            >= 1
    );
    wait_for_cursor(&fixture, &t, 6).await;
    pusher.stop().await;
    running.stop().await;
    last.stop().await;
    fixture.cleanup().await;
}

/// A throwaway self-signed certificate for `localhost`, made with the openssl CLI.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        // An end-entity certificate (rustls refuses a CA certificate serving as one).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(status.success());
    (cert, key)
}

fn acceptor(cert: &std::path::Path, key: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn tls_with_a_ca_file_carries_ocsf_bodies_and_an_untrusted_collector_gets_nothing(
    backend: Backend,
) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let collector = Collector::start(
        "127.0.0.1:0".parse().unwrap(),
        Some(acceptor(&cert, &key)),
        None,
    )
    .await;
    let url = format!("tls://localhost:{}", collector.addr.port());
    let fixture = Fixture::with(backend, |c| {
        syslog_config(c, url);
        c.syslog_format = SyslogFormat::Ocsf;
        c.checkpoint_every = 2;
    })
    .await;
    let t = team("sys-tls");
    let running = fixture.start().await;

    // Trusting another certificate only, the pusher refuses the collector: nothing is sent.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = certificate(other.path());
    let mut untrusting = fixture.config.clone();
    untrusting.syslog_ca_file = Some(other_cert);
    let backends = Backends {
        db: fixture.db.clone(),
        bus: fixture.bus.clone(),
    };
    let stranger = Audit::new(untrusting, backends, fixture.key())
        .await
        .unwrap();
    let refused = Pusher::start(&stranger);
    for i in 0..2 {
        fixture
            .publish(&event(&t, "auth.login", &format!("u-{i}")))
            .await;
    }
    fixture.wait_for(&t, 2).await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    while stranger
        .metrics()
        .syslog_errors
        .with_label_values(&["tls"])
        .get()
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handshake fails"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    refused.stop().await;
    assert!(collector.messages().is_empty());
    assert_eq!(cursors::cursor(&fixture.db, &t).await.unwrap().last_seq, 0);

    // With the CA file: TLS, OCSF bodies.
    let mut trusting = fixture.config.clone();
    trusting.syslog_ca_file = Some(cert.clone());
    let backends = Backends {
        db: fixture.db.clone(),
        bus: fixture.bus.clone(),
    };
    let audit = Audit::new(trusting, backends, fixture.key()).await.unwrap();
    let pusher = Pusher::start(&audit);
    let got = collector.wait_for_seq(&t, 2).await;
    assert_eq!(got.iter().map(Message::seq).collect::<Vec<_>>(), vec![1, 2]);
    for message in &got {
        let ocsf: Value = serde_json::from_str(&message.body).unwrap();
        assert_eq!(ocsf["class_uid"], 3002, "auth.login is Authentication");
        assert_eq!(ocsf["metadata"]["sequence"], message.seq());
        assert_eq!(ocsf["metadata"]["uid"], message.param("event_id"));
    }
    let checkpoint = collector
        .messages()
        .into_iter()
        .find(Message::is_checkpoint)
        .expect("the checkpoint at 2 is pushed");
    let ocsf: Value = serde_json::from_str(&checkpoint.body).unwrap();
    assert_eq!(ocsf["class_uid"], 1008);
    assert_eq!(checkpoint.param("tree_size"), "2");
    pusher.stop().await;
    running.stop().await;
    collector.stop().await;
    fixture.cleanup().await;
}

async fn a_collector_that_is_down_does_not_hold_up_ingest(backend: Backend) {
    // A port nothing listens on.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let fixture = Fixture::with(backend, |c| syslog_config(c, format!("tcp://{addr}"))).await;
    let t = team("sys-down");
    let running = fixture.start().await;
    let pusher = Pusher::start(&running.audit);
    for i in 0..20 {
        fixture
            .publish(&event(&t, "auth.login", &format!("u-{i}")))
            .await;
    }
    fixture.wait_for(&t, 20).await;
    let metrics = running.audit.metrics();
    let deadline = tokio::time::Instant::now() + SETTLE;
    while metrics.syslog_lag.get() < 20
        || metrics.syslog_errors.with_label_values(&["connect"]).get() == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lag and errors are counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metrics.syslog_connected.get(), 0);
    assert_eq!(cursors::cursor(&fixture.db, &t).await.unwrap().last_seq, 0);
    pusher.stop().await;
    running.stop().await;
    fixture.cleanup().await;
}

/// The serving role of docs/audit.md ("Database roles"), with the syslog tables' grants, is
/// enough to push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_privilege_role_pushes_with_the_documented_grants() {
    use tucdesk_svc::sql::{Database, PoolSettings};
    let collector = Collector::start("127.0.0.1:0".parse().unwrap(), None, None).await;
    let url = format!("tcp://{}", collector.addr);
    let f = Fixture::with(Backend::Real, |c| syslog_config(c, url)).await;
    let schema = f.schema().unwrap().to_owned();
    let role = tucdesk_svc::testing::unique_name("tucdesk_audit_push_");
    f.exec(&format!(
        "CREATE ROLE {role} LOGIN; \
         GRANT USAGE ON SCHEMA \"{schema}\" TO {role}; \
         GRANT SELECT, INSERT ON audit_entries, audit_checkpoints, audit_signing_keys, \
               audit_rejected TO {role}; \
         GRANT SELECT, INSERT, UPDATE ON audit_heads TO {role}; \
         GRANT SELECT, INSERT, UPDATE ON audit_syslog_cursor, audit_syslog_lease TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO {role}; \
         GRANT USAGE ON SEQUENCE outbox_id_seq TO {role};"
    ))
    .await
    .unwrap();
    let db_url =
        format!("postgres://{role}@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}");
    let limited = Database::connect(&db_url, &PoolSettings::default())
        .await
        .unwrap();
    let mut config = f.config.clone();
    config.migrate = false;
    let backends = Backends {
        db: limited.clone(),
        bus: f.bus.clone(),
    };
    let audit = Audit::new(config, backends, f.key()).await.unwrap();
    let t = team("sys-least");
    for i in 0..3 {
        f.publish(&event(&t, "auth.login", &format!("u-{i}"))).await;
    }
    let stop = CancellationToken::new();
    let ingest = tokio::spawn(audit.open_ingest().await.unwrap().run(stop.clone()));
    let pusher = Pusher::start(&audit);
    collector.wait_for_seq(&t, 3).await;
    wait_for_cursor(&f, &t, 3).await;
    pusher.stop().await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), ingest)
        .await
        .unwrap()
        .unwrap();
    collector.stop().await;
    limited.close().await;
    f.exec(&format!(
        "REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role};"
    ))
    .await
    .unwrap();
    f.cleanup().await;
}
