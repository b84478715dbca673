//! Fixed cross-implementation vectors in `tests/vectors.json`.
//!
//! Every section this file owns is rebuilt here from fixed inputs and must
//! equal the JSON byte for byte (as JSON values). Where it is cheap, the
//! expected bytes are also rebuilt independently from the documented layout
//! with the raw primitives (sha2, ed25519-dalek, aes-gcm, hmac), so a change
//! to a construction cannot silently "update" its own vector.
//!
//! Regenerate after an intentional format change (bump the domain tag!):
//!
//! ```text
//! cargo test -p tucdesk-crypto --test vectors -- --ignored regenerate_vectors
//! ```
//!
//! which rewrites only this file's top-level keys with a small python3
//! merge, leaving `audit_chain` and `merkle` (owned by the audit module's
//! tests) untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tucdesk_crypto::assertion::{SERVICE_ASSERTION_TYP, ServiceKeyring, ServiceSigner};
use tucdesk_crypto::codes::{CodeHashKey, CodeKind, SupportCode};
use tucdesk_crypto::frame::Direction;
use tucdesk_crypto::handshake::{ANSWER_DOMAIN, CONFIRM_DOMAIN, OFFER_DOMAIN, SESSION_DOMAIN};
use tucdesk_crypto::registration::{REGISTER_DOMAIN, RegistrationProof, registration_message};
use tucdesk_crypto::{Identity, hazmat};
use zeroize::Zeroizing;

/// Top-level keys this file owns (everything except `audit_chain`, `merkle`).
const OWNED_KEYS: [&str; 7] = [
    "_comment",
    "identity",
    "registration",
    "handshake",
    "frames",
    "codes",
    "service_assertion",
];

fn bytes_from(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

fn identity(start: u8) -> Identity {
    Identity::from_seed(&Zeroizing::new(bytes_from(start)))
}

const AGENT_SEED: u8 = 0x00;
const OPERATOR_SEED: u8 = 0x20;
const SERVICE_SEED: u8 = 0x40;
const E_OP_SECRET: u8 = 0x60;
const E_AG_SECRET: u8 = 0x80;
const REG_NONCE: u8 = 0xa0;
const CODE_KEY: u8 = 0xc0;
const AUDIENCE: &str = "rdv.eu-west-1.tucdesk.example";
const TIMESTAMP_MS: u64 = 1_767_225_600_123;
const SESSION_ID: &str = "0190f3a4-7c2e-7d1a-9b3c-5e6f7a8b9c0d";

fn comment() -> Value {
    json!([
        "TucDesk crypto test vectors. All binary values are lowercase hex (*_hex) unless named",
        "agent_id/token/x (unpadded base64url). Seeds and secrets are fixed test values: never use them.",
        "Any implementation must reproduce every value here from the inputs (seeds, secrets, nonces).",
        "identity: Ed25519 seed -> public key; agent_id = b64url(pk); fingerprint = 'SHA256:' + b64std_nopad(sha256(pk));",
        "  jwk_thumbprint = b64url(sha256('{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"<b64url pk>\"}')) (RFC 7638/8037).",
        "registration: msg = 'tucdesk-register-v1' || u16be(len(audience)) || audience || agent_pk(32) || nonce(32) || u64be(timestamp_ms);",
        "  signature = Ed25519(agent_sk, msg).",
        "handshake: offer = 'tucdesk-session-offer-v1' || u16be(len(sid)) || sid || agent_pk || operator_pk || e_op_pub, signed by operator;",
        "  transcript = 'tucdesk-session-v1' || u16be(len(sid)) || sid || agent_pk || operator_pk || e_op_pub || e_ag_pub; th = sha256(transcript);",
        "  shared = X25519(e_op, e_ag_pub); okm = HKDF-SHA256(ikm=shared, salt=th, info='tucdesk-session-v1', L=64);",
        "  key_operator_to_agent = okm[0..32], key_agent_to_operator = okm[32..64];",
        "  answer_signature = Ed25519(agent_sk, 'tucdesk-session-answer-v1' || th); confirm_signature = Ed25519(operator_sk, 'tucdesk-session-confirm-v1' || th).",
        "frames: frame = u64be(counter) || AES-256-GCM(key_dir, nonce = 00000000 || u64be(counter), aad = sid || direction_byte, plaintext) (ciphertext || 16-byte tag);",
        "  direction_byte 0x01 operator->agent, 0x02 agent->operator; keys from the handshake section.",
        "codes: normalize (uppercase; drop '-', ' ', tab; O->0, I/L->1; Crockford base32 alphabet 0-9A-Z minus I L O U; 12 symbols);",
        "  hash = HMAC-SHA256(hash_key, domain || 0x00 || normalized), domain 'tucdesk-support-code-v1' or 'tucdesk-enroll-code-v1'.",
        "service_assertion: compact JWS, header {alg:EdDSA,typ:tucdesk-svc+jwt,kid}, claims {iss,aud,iat,exp,jti}; exp-iat <= 60 s;",
        "  valid at verify_at_secs for audience aud; Ed25519 signature over ASCII(header_b64 '.' payload_b64).",
        "audit_chain and merkle: see the audit/merkle modules of tucdesk-crypto."
    ])
}

fn identity_section() -> Value {
    let ids = [
        ("agent", AGENT_SEED),
        ("operator", OPERATOR_SEED),
        ("service", SERVICE_SEED),
    ];
    Value::Array(
        ids.iter()
            .map(|(name, start)| {
                let id = identity(*start);
                let pk = id.public_key();
                json!({
                    "name": name,
                    "seed_hex": hex::encode(bytes_from(*start)),
                    "public_key_hex": hex::encode(pk.as_bytes()),
                    "agent_id": pk.agent_id(),
                    "fingerprint": pk.fingerprint(),
                    "jwk_thumbprint": pk.jwk_thumbprint(),
                })
            })
            .collect(),
    )
}

fn registration_section() -> Value {
    let agent = identity(AGENT_SEED);
    let nonce = bytes_from(REG_NONCE);
    let proof =
        RegistrationProof::create_with_nonce(&agent, AUDIENCE, nonce, TIMESTAMP_MS).unwrap();
    let msg = registration_message(AUDIENCE, &agent.public_key(), &nonce, TIMESTAMP_MS).unwrap();
    json!({
        "agent_seed_hex": hex::encode(bytes_from(AGENT_SEED)),
        "audience": AUDIENCE,
        "nonce_hex": hex::encode(nonce),
        "timestamp_ms": TIMESTAMP_MS,
        "signed_message_hex": hex::encode(msg),
        "signature_hex": hex::encode(proof.signature.to_bytes()),
    })
}

struct HandshakeOut {
    json: Value,
    k_op_ag: [u8; 32],
    k_ag_op: [u8; 32],
}

fn handshake() -> HandshakeOut {
    let agent = identity(AGENT_SEED);
    let operator = identity(OPERATOR_SEED);
    let e_op = hazmat::ephemeral_secret_from_bytes(bytes_from(E_OP_SECRET));
    let e_ag = hazmat::ephemeral_secret_from_bytes(bytes_from(E_AG_SECRET));
    let e_ag_pub = e_ag.public_key();
    let (state, offer) =
        hazmat::operator_start_with(&operator, SESSION_ID, agent.public_key(), e_op).unwrap();
    let (answer, agent_keys) = hazmat::agent_respond_with(&agent, &offer, e_ag).unwrap();
    let op_keys = state.finish(&answer).unwrap();
    let (k_op_ag, k_ag_op) = hazmat::session_key_bytes(&op_keys);
    assert_eq!((k_op_ag, k_ag_op), hazmat::session_key_bytes(&agent_keys));
    let th = op_keys.transcript_hash();
    let confirm = op_keys.confirm(&operator);
    let shared = hazmat::ephemeral_secret_from_bytes(bytes_from(E_OP_SECRET))
        .diffie_hellman(&e_ag_pub)
        .unwrap();
    let json = json!({
        "session_id": SESSION_ID,
        "agent_seed_hex": hex::encode(bytes_from(AGENT_SEED)),
        "operator_seed_hex": hex::encode(bytes_from(OPERATOR_SEED)),
        "e_op_secret_hex": hex::encode(bytes_from(E_OP_SECRET)),
        "e_op_public_hex": hex::encode(offer.e_op_pub.to_bytes()),
        "e_ag_secret_hex": hex::encode(bytes_from(E_AG_SECRET)),
        "e_ag_public_hex": hex::encode(answer.e_ag_pub.to_bytes()),
        "offer_signature_hex": hex::encode(offer.signature.to_bytes()),
        "transcript_hash_hex": hex::encode(th),
        "shared_secret_hex": hex::encode(*shared),
        "key_operator_to_agent_hex": hex::encode(k_op_ag),
        "key_agent_to_operator_hex": hex::encode(k_ag_op),
        "answer_signature_hex": hex::encode(answer.signature.to_bytes()),
        "confirm_signature_hex": hex::encode(confirm.to_bytes()),
    });
    HandshakeOut {
        json,
        k_op_ag,
        k_ag_op,
    }
}

const FRAME_PLAINTEXTS: [&[u8]; 2] = [b"tucdesk frame 0: ls -la\n", b""];

fn frames_section(hs: &HandshakeOut) -> Value {
    let mut out = Vec::new();
    for (dir, name, key) in [
        (Direction::OperatorToAgent, "operator_to_agent", hs.k_op_ag),
        (Direction::AgentToOperator, "agent_to_operator", hs.k_ag_op),
    ] {
        let mut sealer = hazmat::frame_sealer(&key, SESSION_ID, dir, 0);
        for (counter, pt) in FRAME_PLAINTEXTS.iter().enumerate() {
            let frame = sealer.seal(pt).unwrap();
            out.push(json!({
                "direction": name,
                "direction_byte": dir.as_byte(),
                "counter": counter,
                "plaintext_hex": hex::encode(pt),
                "frame_hex": hex::encode(frame),
            }));
        }
    }
    Value::Array(out)
}

const CODE_CASES: [(&str, CodeKind); 3] = [
    ("k7m2 q9xh 4r1o", CodeKind::Support),
    ("K7M2-Q9XH-4R10", CodeKind::Enrollment),
    ("0000-0000-0000", CodeKind::Support),
];
const INVALID_CODES: [&str; 4] = [
    "K7M2-Q9XH-4RU0",
    "K7M2-Q9XH-4R1",
    "K7M2-Q9XH-4R100",
    "K7M2_Q9XH_4R10",
];

fn codes_section() -> Value {
    let key_bytes = bytes_from(CODE_KEY);
    let key = CodeHashKey::from_slice(&key_bytes).unwrap();
    let cases: Vec<Value> = CODE_CASES
        .iter()
        .map(|(input, kind)| {
            let code = SupportCode::parse(input).unwrap();
            json!({
                "kind": match kind { CodeKind::Support => "support", CodeKind::Enrollment => "enrollment" },
                "input": input,
                "normalized": code.normalized().as_str(),
                "display": code.display().as_str(),
                "hash_hex": hex::encode(code.hash(&key, *kind).unwrap().to_bytes()),
            })
        })
        .collect();
    json!({
        "hash_key_hex": hex::encode(key_bytes),
        "cases": cases,
        "invalid_inputs": INVALID_CODES,
    })
}

const SVC_KID: &str = "rendezvous-2026-01";
const SVC_ISS: &str = "rendezvous";
const SVC_AUD: &str = "auth";
const SVC_IAT: u64 = 1_767_225_600;
const SVC_LIFETIME: u64 = 30;
const SVC_JTI: &str = "AAECAwQFBgcICQoLDA0ODw";

fn service_assertion_section() -> Value {
    let signer = ServiceSigner::new(SVC_ISS, SVC_KID, identity(SERVICE_SEED)).unwrap();
    let token = signer
        .issue_with(SVC_AUD, SVC_IAT, SVC_LIFETIME, SVC_JTI)
        .unwrap();
    json!({
        "seed_hex": hex::encode(bytes_from(SERVICE_SEED)),
        "kid": SVC_KID,
        "iss": SVC_ISS,
        "aud": SVC_AUD,
        "iat": SVC_IAT,
        "exp": SVC_IAT + SVC_LIFETIME,
        "jti": SVC_JTI,
        "verify_at_secs": SVC_IAT + 10,
        "token": token,
    })
}

fn build_owned() -> Vec<(&'static str, Value)> {
    let hs = handshake();
    vec![
        ("_comment", comment()),
        ("identity", identity_section()),
        ("registration", registration_section()),
        ("handshake", hs.json.clone()),
        ("frames", frames_section(&hs)),
        ("codes", codes_section()),
        ("service_assertion", service_assertion_section()),
    ]
}

fn vectors_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors.json")
}

fn load() -> Value {
    serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap()
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn vectors_json_matches_the_implementation() {
    let file = load();
    let built = build_owned();
    assert_eq!(built.len(), OWNED_KEYS.len());
    for (key, value) in built {
        assert_eq!(
            file.get(key),
            Some(&value),
            "vectors.json section {key:?} differs from the implementation; \
             see the header of tests/vectors.rs to regenerate"
        );
    }
}

/// Rebuilds the registration and handshake bytes from the documented
/// layout with raw primitives, independently of the crate's code.
#[test]
fn vectors_agree_with_an_independent_rebuild() {
    use ed25519_dalek::{Signature, SigningKey, Verifier as _};
    use sha2::{Digest as _, Sha256};

    let file = load();
    let reg = &file["registration"];
    let sk = SigningKey::from_bytes(&hx(&reg["agent_seed_hex"]).try_into().unwrap());
    let pk = sk.verifying_key();
    let aud = reg["audience"].as_str().unwrap().as_bytes();
    let mut msg = REGISTER_DOMAIN.to_vec();
    msg.extend_from_slice(&(aud.len() as u16).to_be_bytes());
    msg.extend_from_slice(aud);
    msg.extend_from_slice(pk.as_bytes());
    msg.extend_from_slice(&hx(&reg["nonce_hex"]));
    msg.extend_from_slice(&reg["timestamp_ms"].as_u64().unwrap().to_be_bytes());
    assert_eq!(msg, hx(&reg["signed_message_hex"]));
    let sig = Signature::from_slice(&hx(&reg["signature_hex"])).unwrap();
    pk.verify(&msg, &sig).unwrap();

    let hs = &file["handshake"];
    let agent = SigningKey::from_bytes(&hx(&hs["agent_seed_hex"]).try_into().unwrap());
    let operator = SigningKey::from_bytes(&hx(&hs["operator_seed_hex"]).try_into().unwrap());
    let sid = hs["session_id"].as_str().unwrap().as_bytes();
    let e_op_pub: [u8; 32] = x25519_dalek::x25519(
        hx(&hs["e_op_secret_hex"]).try_into().unwrap(),
        x25519_dalek::X25519_BASEPOINT_BYTES,
    );
    let e_ag_pub: [u8; 32] = x25519_dalek::x25519(
        hx(&hs["e_ag_secret_hex"]).try_into().unwrap(),
        x25519_dalek::X25519_BASEPOINT_BYTES,
    );
    assert_eq!(e_op_pub.to_vec(), hx(&hs["e_op_public_hex"]));
    assert_eq!(e_ag_pub.to_vec(), hx(&hs["e_ag_public_hex"]));
    let lp = |x: &[u8]| {
        let mut v = (x.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(x);
        v
    };
    let mut offer = OFFER_DOMAIN.to_vec();
    offer.extend(lp(sid));
    offer.extend_from_slice(agent.verifying_key().as_bytes());
    offer.extend_from_slice(operator.verifying_key().as_bytes());
    offer.extend_from_slice(&e_op_pub);
    let offer_sig = Signature::from_slice(&hx(&hs["offer_signature_hex"])).unwrap();
    operator.verifying_key().verify(&offer, &offer_sig).unwrap();

    let mut transcript = SESSION_DOMAIN.to_vec();
    transcript.extend(lp(sid));
    transcript.extend_from_slice(agent.verifying_key().as_bytes());
    transcript.extend_from_slice(operator.verifying_key().as_bytes());
    transcript.extend_from_slice(&e_op_pub);
    transcript.extend_from_slice(&e_ag_pub);
    let th: [u8; 32] = Sha256::digest(&transcript).into();
    assert_eq!(th.to_vec(), hx(&hs["transcript_hash_hex"]));

    let shared = x25519_dalek::x25519(hx(&hs["e_op_secret_hex"]).try_into().unwrap(), e_ag_pub);
    assert_eq!(shared.to_vec(), hx(&hs["shared_secret_hex"]));
    let mut okm = [0u8; 64];
    hkdf::Hkdf::<Sha256>::new(Some(&th), &shared)
        .expand(SESSION_DOMAIN, &mut okm)
        .unwrap();
    assert_eq!(okm[..32].to_vec(), hx(&hs["key_operator_to_agent_hex"]));
    assert_eq!(okm[32..].to_vec(), hx(&hs["key_agent_to_operator_hex"]));

    let mut answer = ANSWER_DOMAIN.to_vec();
    answer.extend_from_slice(&th);
    let answer_sig = Signature::from_slice(&hx(&hs["answer_signature_hex"])).unwrap();
    agent.verifying_key().verify(&answer, &answer_sig).unwrap();
    let mut confirm = CONFIRM_DOMAIN.to_vec();
    confirm.extend_from_slice(&th);
    let confirm_sig = Signature::from_slice(&hx(&hs["confirm_signature_hex"])).unwrap();
    operator
        .verifying_key()
        .verify(&confirm, &confirm_sig)
        .unwrap();

    // Frames with raw AES-256-GCM.
    use aes_gcm::{Aes256Gcm, KeyInit as _, aead::Aead as _, aead::Payload};
    for f in file["frames"].as_array().unwrap() {
        let key = if f["direction_byte"] == 1 {
            hx(&hs["key_operator_to_agent_hex"])
        } else {
            hx(&hs["key_agent_to_operator_hex"])
        };
        let counter = f["counter"].as_u64().unwrap();
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        let mut aad = sid.to_vec();
        aad.push(f["direction_byte"].as_u64().unwrap() as u8);
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let pt = hx(&f["plaintext_hex"]);
        let ct = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: &pt,
                    aad: &aad,
                },
            )
            .unwrap();
        let mut frame = counter.to_be_bytes().to_vec();
        frame.extend(ct);
        assert_eq!(frame, hx(&f["frame_hex"]));
    }

    // Code hashes with raw HMAC.
    use hmac::{Hmac, Mac as _};
    let codes = &file["codes"];
    for c in codes["cases"].as_array().unwrap() {
        let domain: &[u8] = match c["kind"].as_str().unwrap() {
            "support" => b"tucdesk-support-code-v1",
            _ => b"tucdesk-enroll-code-v1",
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&hx(&codes["hash_key_hex"])).unwrap();
        mac.update(domain);
        mac.update(&[0]);
        mac.update(c["normalized"].as_str().unwrap().as_bytes());
        assert_eq!(mac.finalize().into_bytes().to_vec(), hx(&c["hash_hex"]));
    }
}

#[test]
fn vectors_verify_through_the_public_api() {
    let file = load();
    let hs = &file["handshake"];
    let sid = hs["session_id"].as_str().unwrap();
    let k_op: [u8; 32] = hx(&hs["key_operator_to_agent_hex"]).try_into().unwrap();
    let k_ag: [u8; 32] = hx(&hs["key_agent_to_operator_hex"]).try_into().unwrap();
    let mut op_to_agent = hazmat::frame_opener(&k_op, sid, Direction::OperatorToAgent);
    let mut agent_to_op = hazmat::frame_opener(&k_ag, sid, Direction::AgentToOperator);
    for f in file["frames"].as_array().unwrap() {
        let opener = if f["direction_byte"] == 1 {
            &mut op_to_agent
        } else {
            &mut agent_to_op
        };
        assert_eq!(
            opener.open(&hx(&f["frame_hex"])).unwrap(),
            hx(&f["plaintext_hex"])
        );
    }

    let sa = &file["service_assertion"];
    let id = Identity::from_seed(&Zeroizing::new(hx(&sa["seed_hex"]).try_into().unwrap()));
    let mut ring = ServiceKeyring::new();
    ring.insert(
        sa["kid"].as_str().unwrap(),
        sa["iss"].as_str().unwrap(),
        id.public_key(),
    )
    .unwrap();
    let token = sa["token"].as_str().unwrap();
    let claims = ring
        .verify(
            token,
            sa["aud"].as_str().unwrap(),
            sa["verify_at_secs"].as_u64().unwrap(),
        )
        .unwrap();
    assert_eq!(claims.jti, sa["jti"].as_str().unwrap());
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], SERVICE_ASSERTION_TYP);

    let codes = &file["codes"];
    for bad in codes["invalid_inputs"].as_array().unwrap() {
        assert!(SupportCode::parse(bad.as_str().unwrap()).is_err());
    }
}

/// Without `TUCDESK_BLESS_VECTORS=1`: this file's sections of `vectors.json` equal what the
/// code generates today. With it: rewrites them, keeping other keys and their order
/// (python3's json preserves insertion order).
#[test]
fn vectors_match_the_generator() {
    // A list of [key, value] pairs keeps the logical section order.
    let generated: Vec<(&str, Value)> = build_owned();
    if std::env::var_os("TUCDESK_BLESS_VECTORS").is_none() {
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
        for (key, value) in &generated {
            assert_eq!(
                &file[*key], value,
                "vectors.json `{key}` is stale; rerun with TUCDESK_BLESS_VECTORS=1 after a deliberate format change"
            );
        }
        return;
    }
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("crypto_vectors.gen.json");
    std::fs::write(&tmp, serde_json::to_vec(&generated).unwrap()).unwrap();
    const MERGE: &str = r#"
import json, sys
path, gen = sys.argv[1], sys.argv[2]
with open(path) as f:
    cur = json.load(f)
with open(gen) as f:
    new = dict(json.load(f))
out = {"_comment": new.pop("_comment")}
for k, v in cur.items():
    if k != "_comment":
        out[k] = new.pop(k) if k in new else v
out.update(new)
with open(path, "w") as f:
    json.dump(out, f, indent=2, ensure_ascii=False)
    f.write("\n")
"#;
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(MERGE)
        .arg(vectors_path())
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(status.success());
}
