//! The HTTP export (`GET /v1/audit/export`): an NDJSON body that the offline verifier accepts as
//! it is, resumable by seq; OCSF lines that a SIEM ingests as they are; the caller's team only;
//! the gRPC API's tokens and roles; strict query parsing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{Fixture, Running, event, team};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tucdesk_audit::AccessVerifier;
use tucdesk_crypto::Identity;
use tucdesk_crypto::audit::export::verify_export;
use tucdesk_crypto::merkle::SignedCheckpoint;
use tucdesk_testkit::{Backend, on_both_backends};
use tucdesk_token::{AccessClaims, Cnf, KeySet, Role, TokenIssuer, TokenVerifier};

on_both_backends!(
    ndjson_export_verifies_offline_and_resumes_exactly_by_seq,
    ocsf_lines_parse_and_carry_class_and_seq,
    callers_are_authenticated_and_queries_are_strict,
);

const ISS: &str = "https://auth.audit-http.test";
const AUD: &str = "tucdesk";

struct Api {
    f: Fixture,
    running: Running,
    http: SocketAddr,
    issuer: TokenIssuer,
    shutdown: CancellationToken,
}

impl Api {
    async fn start(f: Fixture) -> Self {
        let issuer = TokenIssuer::new(ISS, "k1", Identity::generate().unwrap()).unwrap();
        let keys = KeySet::from_keys([(issuer.kid().to_owned(), issuer.public_key())]).unwrap();
        let access = AccessVerifier::fixed(TokenVerifier::new(keys, ISS, AUD));
        let running = f.start().await;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(tucdesk_audit::serve_api(
            running.audit.clone(),
            access.clone(),
            grpc,
            shutdown.clone(),
        ));
        tokio::spawn(tucdesk_audit::serve_http(
            running.audit.clone(),
            access,
            http,
            shutdown.clone(),
        ));
        Self {
            f,
            running,
            http: http_addr,
            issuer,
            shutdown,
        }
    }

    fn token_with(&self, team: &str, role: Role, cnf: bool) -> String {
        let now = tucdesk_token::unix_now();
        let claims = AccessClaims {
            iss: ISS.into(),
            sub: format!("user-{}", role.as_str()),
            aud: AUD.into(),
            team_id: team.into(),
            email: Some("siem@example.com".into()),
            role,
            iat: now,
            exp: now + 300,
            nbf: None,
            jti: tucdesk_token::new_jti().unwrap(),
            cnf: cnf.then(|| Cnf::jkt("device-thumbprint")),
            client_id: None,
            scp: None,
            kinds: None,
        };
        self.issuer.issue_access(&claims).unwrap()
    }

    fn token(&self, team: &str, role: Role) -> String {
        self.token_with(team, role, true)
    }

    async fn get(&self, target: &str, token: Option<&str>) -> HttpResponse {
        request(self.http, "GET", target, token).await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.running.stop().await;
        self.f.cleanup().await;
    }
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The chunked body ended with its terminating chunk (not cut short).
    complete: bool,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn lines(&self) -> Vec<&str> {
        self.text().lines().collect()
    }

    fn json_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn error(&self) -> String {
        let body: Value = serde_json::from_slice(&self.body).unwrap();
        assert!(body["message"].is_string(), "{body}");
        body["error"].as_str().unwrap().to_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection; a chunked body is decoded.
async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
) -> HttpResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(common::SETTLE, stream.read_to_end(&mut raw))
        .await
        .expect("the response ends")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let (body, complete) = if chunked {
        dechunk(rest)
    } else {
        (rest.to_vec(), true)
    };
    HttpResponse {
        status,
        headers,
        body,
        complete,
    }
}

fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = std::str::from_utf8(&raw[..end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[end + 2..];
        if size == 0 {
            return (body, true);
        }
        if raw.len() < size + 2 {
            body.extend_from_slice(&raw[..raw.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

async fn ndjson_export_verifies_offline_and_resumes_exactly_by_seq(backend: Backend) {
    let f = Fixture::with(backend, |c| c.checkpoint_every = 4).await;
    let (a, b) = (team("http-a"), team("http-b"));
    for i in 0..7 {
        f.publish(&event(&a, "exec.command", &format!("u{i}")))
            .await;
    }
    for i in 0..3 {
        f.publish(&event(&b, "auth.login", &format!("v{i}"))).await;
    }
    let api = Api::start(f).await;
    let chain = api.f.wait_for(&a, 7).await;
    api.f.wait_for(&b, 3).await;
    let key = api.f.key().verifying_key();
    let token = api.token(&a, Role::Auditor);

    let full = api.get("/v1/audit/export", Some(&token)).await;
    assert_eq!(full.status, 200, "{}", full.text());
    assert_eq!(full.header("content-type"), Some("application/x-ndjson"));
    assert!(full.complete, "the chunked body ends with its terminator");
    // The body is an export `tucdesk audit verify` accepts as it is.
    let body = full.body.clone();
    let summary = verify_export(|| Ok(std::io::Cursor::new(body.clone())), &key).unwrap();
    assert_eq!(summary.team_id, a);
    assert_eq!(summary.entries, 7);
    assert_eq!(summary.checkpointed, 7);
    // Entry lines are exactly `Entry::to_json_line()`, in seq order; a covering checkpoint ends it.
    let lines = full.lines();
    let expected: Vec<String> = chain.iter().map(|e| e.to_json_line().unwrap()).collect();
    let entry_lines: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("{\"seq\""))
        .collect();
    assert_eq!(entry_lines, expected);
    let last = SignedCheckpoint::from_json(lines.last().unwrap()).unwrap();
    last.verify(&key).unwrap();
    assert_eq!(last.checkpoint.tree_size, 7);
    assert_eq!(last.checkpoint.team_id, a);

    // Resuming from the last seq stored + 1 gives exactly the rest, then the checkpoint.
    let rest = api
        .get("/v1/audit/export?since=5&format=ndjson", Some(&token))
        .await;
    assert_eq!(rest.status, 200);
    let rest_lines = rest.lines();
    assert_eq!(rest_lines.len(), 4);
    assert_eq!(&rest_lines[..3], &expected[4..]);
    assert_eq!(
        SignedCheckpoint::from_json(rest_lines[3])
            .unwrap()
            .checkpoint
            .tree_size,
        7
    );
    // The first page plus the resumed rest is the whole, verifiable chain.
    let mut joined: Vec<u8> = expected[..4].join("\n").into_bytes();
    joined.push(b'\n');
    joined.extend_from_slice(&rest.body);
    let summary = verify_export(|| Ok(std::io::Cursor::new(joined.clone())), &key).unwrap();
    assert_eq!(summary.entries, 7);
    // Nothing new: only the newest checkpoint.
    let none = api.get("/v1/audit/export?since=8", Some(&token)).await;
    assert_eq!(none.status, 200);
    assert_eq!(none.lines().len(), 1);
    assert!(none.lines()[0].starts_with("{\"checkpoint\""));

    // Another team's reader sees only that team.
    let other = api
        .get("/v1/audit/export", Some(&api.token(&b, Role::Owner)))
        .await;
    let summary = verify_export(|| Ok(std::io::Cursor::new(other.body.clone())), &key).unwrap();
    assert_eq!((summary.team_id.as_str(), summary.entries), (b.as_str(), 3));
    assert!(!other.text().contains(&a));
    assert!(!full.text().contains(&b));

    // Every HTTP export is itself an audit event of the reader's team.
    let recorded: Vec<String> = tucdesk_svc::on_pool!(&api.f.db, |pool| {
        sqlx::query_scalar("SELECT subject FROM outbox WHERE team_id = $1")
            .bind(&a)
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(recorded.len(), 3);
    assert!(
        recorded
            .iter()
            .all(|s| *s == format!("audit.{a}.audit.export"))
    );
    api.stop().await;
}

async fn ocsf_lines_parse_and_carry_class_and_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let t = team("http-ocsf");
    let actions = [
        "auth.login",
        "session.start",
        "policy.decision",
        "exec.command",
    ];
    for action in actions {
        f.publish(&event(&t, action, "u1")).await;
    }
    f.publish(&event(&team("http-ocsf-other"), "auth.login", "u9"))
        .await;
    let api = Api::start(f).await;
    let chain = api.f.wait_for(&t, 4).await;
    let token = api.token(&t, Role::Admin);

    let response = api.get("/v1/audit/export?format=ocsf", Some(&token)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/x-ndjson")
    );
    let objects = response.json_lines();
    assert_eq!(objects.len(), 5, "four entries and the checkpoint");
    let (entries, checkpoint) = objects.split_at(4);
    for ((object, entry), expected_class) in
        entries.iter().zip(&chain).zip([3002, 6003, 3003, 6003])
    {
        assert_eq!(object["class_uid"], expected_class, "{object}");
        assert_eq!(
            object["type_uid"],
            object["class_uid"].as_u64().unwrap() * 100 + object["activity_id"].as_u64().unwrap()
        );
        assert_eq!(object["metadata"]["sequence"], entry.seq);
        assert_eq!(object["metadata"]["uid"], entry.event.event_id.as_str());
        assert_eq!(object["metadata"]["tenant_uid"], t.as_str());
        assert_eq!(
            object["metadata"]["event_code"],
            entry.event.action.as_str()
        );
        assert_eq!(object["time"], entry.event.occurred_at);
        assert_eq!(object["unmapped"]["chain"]["hash"], hex(&entry.hash));
        assert_eq!(object["unmapped"]["chain"]["sig"], hex(&entry.sig));
    }
    // The unknown action is kept, as API Activity "Other".
    assert_eq!(entries[3]["activity_id"], 99);
    // The checkpoint travels too, as the signed head a verifier can check.
    assert_eq!(checkpoint[0]["class_uid"], 1008);
    let head = serde_json::to_string(&checkpoint[0]["unmapped"]["checkpoint"]).unwrap();
    let head = SignedCheckpoint::from_json(&head).unwrap();
    head.verify(&api.f.key().verifying_key()).unwrap();
    assert_eq!(head.checkpoint.tree_size, 4);

    let resumed = api
        .get("/v1/audit/export?format=ocsf&since=3", Some(&token))
        .await
        .json_lines();
    let seqs: Vec<&Value> = resumed
        .iter()
        .filter(|o| o["class_uid"] != 1008)
        .map(|o| &o["metadata"]["sequence"])
        .collect();
    assert_eq!(seqs, [3, 4]);
    api.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn callers_are_authenticated_and_queries_are_strict(backend: Backend) {
    let f = Fixture::new(backend).await;
    let t = team("http-deny");
    f.publish(&event(&t, "auth.login", "u1")).await;
    let api = Api::start(f).await;
    api.f.wait_for(&t, 1).await;
    let path = "/v1/audit/export";

    let none = api.get(path, None).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.error(), "token_invalid");
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(api.get(path, Some("not.a.token")).await.status, 401);
    let unbound = api.token_with(&t, Role::Owner, false);
    assert_eq!(api.get(path, Some(&unbound)).await.status, 401);
    for role in [Role::Viewer, Role::Operator, Role::AiAgent] {
        let response = api.get(path, Some(&api.token(&t, role))).await;
        assert_eq!(response.status, 403, "{role}");
        assert_eq!(response.error(), "permission_denied");
    }

    let owner = api.token(&t, Role::Owner);
    for query in [
        "?since=0",
        "?since=-1",
        "?since=abc",
        "?since=1&since=2",
        "?format=csv",
        "?team=other",
        "?since=1&limit=5",
    ] {
        let response = api.get(&format!("{path}{query}"), Some(&owner)).await;
        assert_eq!(response.status, 400, "{query}");
        assert_eq!(response.error(), "invalid_argument");
    }
    assert_eq!(api.get("/v1/audit/other", Some(&owner)).await.status, 404);
    let post = request(api.http, "POST", path, Some(&owner)).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));

    // A reader of a team with no entries gets an empty export, never anyone else's.
    let empty = api
        .get(path, Some(&api.token(&team("http-empty"), Role::Owner)))
        .await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.is_empty(), "{}", empty.text());
    // Refused requests are not recorded as reads; the owner's one good read is not made here.
    let recorded: i64 = tucdesk_svc::on_pool!(&api.f.db, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE team_id = $1")
            .bind(&t)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(recorded, 0);
    api.stop().await;
}
