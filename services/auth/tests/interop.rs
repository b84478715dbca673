//! The service's tokens are standard: PyJWT (an independent implementation) verifies an access
//! token the running service issued, using nothing but the JWKS document it serves over HTTP.
//! Fails, never skips, when no python3 with PyJWT and cryptography is found.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::TestAuth;
use tucdesk_crypto::Identity;

const VERIFY: &str = r#"
import json, sys
import jwt
req = json.load(sys.stdin)
jwks = jwt.PyJWKSet.from_json(req["jwks"])
header = jwt.get_unverified_header(req["token"])
claims = jwt.decode(req["token"], key=jwks[header["kid"]].key, algorithms=["EdDSA"],
                    audience="tucdesk", issuer=req["iss"],
                    options={"require": ["exp", "iat", "iss", "aud", "jti", "sub"]})
print(json.dumps({"typ": header["typ"], "claims": claims}))
"#;

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

async fn pyjwt_verifies_a_service_issued_access_token(t: TestAuth) {
    let python = tucdesk_svc::testing::python_with(&["jwt", "cryptography"]).expect(
        "install PyJWT and cryptography for python3 (apt-get install python3-jwt \
         python3-cryptography) or set TUCDESK_PYTHON",
    );
    let (team_id, user_id) = t.owner("owner@acme.example").await;
    let tokens = t
        .tokens(&Identity::generate().unwrap(), "owner@acme.example")
        .await;
    let jwks = http_get(t.http_addr, "/.well-known/jwks.json").await;
    let request = serde_json::json!({
        "jwks": jwks,
        "token": tokens.access_token,
        "iss": t.auth.config().issuer,
    });
    let mut child = Command::new(python)
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "PyJWT refused our token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["typ"], "at+jwt");
    assert_eq!(answer["claims"]["sub"], user_id.as_str());
    assert_eq!(answer["claims"]["team_id"], team_id.as_str());
    assert!(answer["claims"]["cnf"]["jkt"].is_string());
    t.stop().await;
}

on_both_engines!(pyjwt_verifies_a_service_issued_access_token);
