//! Our tokens are standard JWTs: an independent implementation (PyJWT with
//! the `cryptography` backend) verifies an issued access token from the
//! JWKS JSON alone, and our verifier accepts a token PyJWT signed.
//!
//! Needs a python3 with `jwt` (PyJWT ≥ 2) and `cryptography`. The test looks
//! at `$TUCDESK_PYTHON`, then `python3` on PATH, then `/usr/bin/python3`
//! (Debian's `python3-jwt` and `python3-cryptography`), and fails, never
//! skips, when none has them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};
use tucdesk_token::*;

const INSTALL_HINT: &str = "the interop test needs an independent JWT implementation: \
     install PyJWT and cryptography for python3 \
     (`pip install pyjwt cryptography`, or `apt-get install python3-jwt python3-cryptography`), \
     or set TUCDESK_PYTHON to an interpreter that has them";

/// The independent side. Reads one JSON request on stdin, prints one JSON
/// answer. It gets the JWKS document, never our key objects.
const PYTHON: &str = r#"
import json, sys
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

req = json.load(sys.stdin)
jwks = jwt.PyJWKSet.from_json(req["jwks"])
key = jwks[req["kid"]].key
opts = {"require": ["exp", "iat", "iss", "aud", "jti"]}
out = {
    "version": jwt.__version__,
    "header": jwt.get_unverified_header(req["token"]),
    "claims": jwt.decode(req["token"], key=key, algorithms=["EdDSA"],
                         audience=req["aud"], issuer=req["iss"], options=opts),
}
for name in ("tampered", "other_aud"):
    try:
        jwt.decode(req[name], key=key, algorithms=["EdDSA"], audience=req["aud"],
                   issuer=req["iss"], options=opts)
        out[name] = "accepted"
    except jwt.InvalidTokenError as e:
        out[name] = type(e).__name__
sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(req["seed_hex"]))
out["py_token"] = jwt.encode(req["py_claims"], sk, algorithm="EdDSA",
                             headers={"kid": req["kid"], "typ": "at+jwt"})
print(json.dumps(out))
"#;

fn python() -> String {
    tucdesk_svc::testing::python_with(&["jwt", "cryptography"])
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

fn run_python(request: &Value) -> Value {
    let mut child = Command::new(python())
        .args(["-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(INSTALL_HINT);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyJWT side failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn pyjwt_verifies_our_access_token_from_the_jwks_and_we_verify_pyjwt_tokens() {
    let issuer = issuer();
    let jwks = Jwks {
        keys: vec![issuer.jwk().unwrap()],
    }
    .to_json()
    .unwrap();
    let now = unix_now();
    let jkt = device_jkt();
    let claims = access_claims(&jkt, now);
    let token = issuer.issue_access(&claims).unwrap();

    let (h, _, s) = parts(&token);
    let mut tampered_claims = claims.clone();
    tampered_claims.role = Role::Owner;
    let tampered = format!(
        "{h}.{}.{s}",
        b64(serde_json::to_vec(&tampered_claims).unwrap())
    );
    let mut other = access_claims(&jkt, now);
    other.aud = "someone-else".into();
    let other_aud = issuer.issue_access(&other).unwrap();

    let py_claims = access_claims(&jkt, now);
    let seed_hex: String = SEED.iter().map(|b| format!("{b:02x}")).collect();
    let answer = run_python(&json!({
        "jwks": jwks,
        "kid": KID,
        "iss": ISS,
        "aud": API,
        "token": token,
        "tampered": tampered,
        "other_aud": other_aud,
        "seed_hex": seed_hex,
        "py_claims": py_claims,
    }));

    // PyJWT accepted our token and read exactly our claims and header.
    assert_eq!(answer["claims"], serde_json::to_value(&claims).unwrap());
    assert_eq!(
        answer["header"],
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": KID})
    );
    // …and it really verifies: tampering and a foreign audience fail there.
    assert_eq!(
        answer["tampered"], "InvalidSignatureError",
        "PyJWT {}",
        answer["version"]
    );
    assert_eq!(answer["other_aud"], "InvalidAudienceError");

    // The other direction: a token PyJWT signed with the issuer key passes
    // our strict verifier with the same claims.
    let py_token = answer["py_token"].as_str().unwrap();
    let got = verifier()
        .verify_access(py_token, now, RequireCnf::Thumbprint(&jkt))
        .unwrap();
    assert_eq!(got, py_claims);
}
