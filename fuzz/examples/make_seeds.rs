//! Writes the committed seed inputs under `fuzz/seeds/<target>/`, all derived
//! from `libs/tucdesk-crypto/tests/vectors.json` or built here with the
//! public API, so they are reproducible:
//!
//! ```text
//! cargo +nightly run --manifest-path fuzz/Cargo.toml --example make_seeds
//! ```
//!
//! Seeds are small valid inputs the fuzzer starts from; the corpus it grows
//! goes to `fuzz/corpus/` (not committed).

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message;
use serde_json::Value;
use tucdesk_crypto::Identity;
use tucdesk_crypto::assertion::ServiceSigner;
use tucdesk_fuzz::{hex, vector, vector_bytes, vector_str, wire_message_selector};
use tucdesk_proto::v1;
use zeroize::Zeroizing;

struct Seeds {
    dir: PathBuf,
}

impl Seeds {
    fn target(root: &Path, name: &str) -> Self {
        let dir = root.join(name);
        // Start clean so a renamed seed does not linger.
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("remove old seeds");
        }
        fs::create_dir_all(&dir).expect("create seed dir");
        Self { dir }
    }

    fn put(&self, name: &str, bytes: impl AsRef<[u8]>) {
        fs::write(self.dir.join(name), bytes).expect("write seed");
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn array(pointer: &str) -> &'static [Value] {
    vector(pointer).as_array().expect("array")
}

fn registration_proof() -> v1::RegistrationProof {
    let seed: [u8; 32] = vector_bytes("/registration/agent_seed_hex")
        .try_into()
        .expect("seed");
    let agent = Identity::from_seed(&Zeroizing::new(seed));
    v1::RegistrationProof {
        agent_pubkey: agent.public_key().to_bytes().to_vec(),
        nonce: vector_bytes("/registration/nonce_hex"),
        timestamp_ms: vector("/registration/timestamp_ms").as_u64().expect("ts"),
        signature: vector_bytes("/registration/signature_hex"),
        audience: vector_str("/registration/audience").to_owned(),
    }
}

fn handshake_init() -> v1::HandshakeInit {
    let seed: [u8; 32] = vector_bytes("/handshake/operator_seed_hex")
        .try_into()
        .expect("seed");
    v1::HandshakeInit {
        operator_key: Identity::from_seed(&Zeroizing::new(seed))
            .public_key()
            .to_bytes()
            .to_vec(),
        e_op_pub: vector_bytes("/handshake/e_op_public_hex"),
        offer_signature: vector_bytes("/handshake/offer_signature_hex"),
    }
}

fn handshake_reply() -> v1::HandshakeReply {
    v1::HandshakeReply {
        e_ag_pub: vector_bytes("/handshake/e_ag_public_hex"),
        transcript_signature: vector_bytes("/handshake/answer_signature_hex"),
    }
}

fn session_id() -> String {
    vector_str("/handshake/session_id").to_owned()
}

fn offer() -> v1::Offer {
    v1::Offer {
        session_id: session_id(),
        kind: 1,
        handshake: Some(handshake_init()),
        session_token: "eyJ.session.token".into(),
        reason: "incident INC-1234".into(),
        answer_deadline_ms: 1_767_225_630_000,
        initial_size: Some(v1::TerminalSize { cols: 80, rows: 24 }),
        ..Default::default()
    }
}

fn proto_seeds(s: &Seeds) {
    let put = |name: &str, msg_name: &str, bytes: Vec<u8>| {
        s.put(name, cat(&[&[wire_message_selector(msg_name)], &bytes]));
    };
    put(
        "agent_register",
        "AgentMessage",
        v1::AgentMessage {
            kind: Some(v1::agent_message::Kind::Register(v1::Register {
                protocol_version: 1,
                proof: Some(registration_proof()),
                host: Some(v1::HostInfo {
                    hostname: "db-1".into(),
                    addresses: vec!["10.0.0.7".into()],
                    agent: Some(v1::SoftwareInfo {
                        name: "tucdesk-agent".into(),
                        version: "0.1.0".into(),
                        os: "linux".into(),
                        arch: "x86_64".into(),
                    }),
                    ..Default::default()
                }),
                active_session_ids: vec![session_id()],
                config_version: 3,
            })),
        }
        .encode_to_vec(),
    );
    put(
        "agent_offer_answer",
        "AgentMessage",
        v1::AgentMessage {
            kind: Some(v1::agent_message::Kind::OfferAnswer(v1::OfferAnswer {
                session_id: session_id(),
                result: Some(v1::offer_answer::Result::Accepted(handshake_reply())),
            })),
        }
        .encode_to_vec(),
    );
    put(
        "server_offer",
        "ServerMessage",
        v1::ServerMessage {
            kind: Some(v1::server_message::Kind::Offer(offer())),
        }
        .encode_to_vec(),
    );
    put(
        "frame_output",
        "Frame",
        v1::Frame {
            kind: Some(v1::frame::Kind::Output(v1::Output {
                seq: 7,
                data: b"total 0\r\n".to_vec(),
            })),
        }
        .encode_to_vec(),
    );
    put(
        "frame_hello",
        "Frame",
        v1::Frame {
            kind: Some(v1::frame::Kind::Hello(v1::Hello {
                protocol_version: 1,
                side: 1,
                path: 2,
                max_frame_len: 65_536,
                features: vec!["resume".into()],
                transcript_confirmation: vec![0xab; 64],
            })),
        }
        .encode_to_vec(),
    );
    put(
        "frame_exec",
        "Frame",
        v1::Frame {
            kind: Some(v1::frame::Kind::ExecRequest(v1::ExecRequest {
                spec: Some(v1::ExecSpec {
                    argv: vec!["uptime".into()],
                    env: [("LANG".to_owned(), "C".to_owned())].into_iter().collect(),
                    cwd: "/".into(),
                    timeout_ms: 5_000,
                    pty: false,
                }),
                stdin: Vec::new(),
                stdin_eof: true,
            })),
        }
        .encode_to_vec(),
    );
    put(
        "handshake_init",
        "HandshakeInit",
        handshake_init().encode_to_vec(),
    );
    put(
        "handshake_reply",
        "HandshakeReply",
        handshake_reply().encode_to_vec(),
    );
    put(
        "registration_proof",
        "RegistrationProof",
        registration_proof().encode_to_vec(),
    );
    put(
        "relay_heartbeat",
        "RelayHeartbeat",
        v1::RelayHeartbeat {
            node_id: "relay-eu-1".into(),
            region: "eu-west-1".into(),
            stun_urls: vec!["stun:relay-eu-1.example:3478".into()],
            turn_urls: vec!["turn:relay-eu-1.example:3478?transport=udp".into()],
            ws_url: "wss://relay-eu-1.example/ws".into(),
            active_sessions: 12,
            capacity_sessions: 1_000,
            protocol_version: 1,
            version: "0.1.0".into(),
            sent_at_ms: 1_767_225_600_000,
            heartbeat_interval_ms: 5_000,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    put(
        "relay_hello",
        "RelayHello",
        v1::RelayHello {
            protocol_version: 1,
            session_id: session_id(),
            side: 2,
            ticket: "eyJ.relay.ticket".into(),
        }
        .encode_to_vec(),
    );
    let entry = &array("/audit_chain/entries")[2];
    let event = v1::AuditEvent {
        event_id: entry["event"]["event_id"].as_str().expect("id").into(),
        team_id: "team-vectors".into(),
        actor: Some(v1::Actor {
            kind: 2,
            id: entry["event"]["actor"]["id"]
                .as_str()
                .expect("actor")
                .into(),
            display: String::new(),
        }),
        action: "session.end".into(),
        target: "agent:x".into(),
        occurred_at_ms: 1_717_171_901_000,
        session_id: session_id(),
        policy_result: None,
        context_json: serde_json::to_string(&entry["event"]["context"]).expect("context"),
    };
    put("audit_event", "AuditEvent", event.encode_to_vec());
    put(
        "audit_entry",
        "AuditEntry",
        v1::AuditEntry {
            event: Some(event),
            seq: 3,
            prev_hash: hex(entry["prev_hash_hex"].as_str().expect("prev")),
            hash: hex(entry["hash_hex"].as_str().expect("hash")),
            signature: hex(entry["sig_hex"].as_str().expect("sig")),
            key_id: "SHA256:Vkdap1RjR0wChd9dvyvKtz2mUTWIOem3dIGy6rEHcIw".into(),
        }
        .encode_to_vec(),
    );
    let manifest = v1::RecordingManifest {
        format_version: 1,
        session_id: session_id(),
        agent_id: "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg".into(),
        team_id: "team-vectors".into(),
        kind: 1,
        started_at_ms: 1_767_225_600_000,
        ended_at_ms: 1_767_225_660_000,
        plaintext_size: 4_096,
        plaintext_sha256: vec![1; 32],
        ciphertext_size: 4_300,
        ciphertext_sha256: vec![2; 32],
        age_recipients: vec!["age1qqqq".into()],
        cast_format: "asciinema-v2".into(),
        agent_version: "0.1.0".into(),
        ..Default::default()
    };
    put(
        "recording_manifest",
        "RecordingManifest",
        manifest.encode_to_vec(),
    );
    put(
        "upload_start",
        "UploadRequest",
        v1::UploadRequest {
            kind: Some(v1::upload_request::Kind::Start(v1::UploadStart {
                protocol_version: 1,
                manifest: Some(v1::SignedRecordingManifest {
                    manifest: manifest.encode_to_vec(),
                    signature: vec![3; 64],
                }),
                offset: 0,
                proof: Some(v1::UploadProof {
                    timestamp_ms: 1_767_225_661_000,
                    nonce: vec![4; 32],
                    signature: vec![5; 64],
                }),
            })),
        }
        .encode_to_vec(),
    );
    put(
        "upload_chunk",
        "UploadRequest",
        v1::UploadRequest {
            kind: Some(v1::upload_request::Kind::Chunk(
                b"age-encryption.org/v1\n".to_vec(),
            )),
        }
        .encode_to_vec(),
    );
    put(
        "create_session_request",
        "CreateSessionRequest",
        v1::CreateSessionRequest {
            protocol_version: 1,
            agent_id: "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg".into(),
            kind: 1,
            handshake: Some(handshake_init()),
            session_id: session_id(),
            reason: "debug".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
}

fn registration_seeds(s: &Seeds) {
    let proof = registration_proof().encode_to_vec();
    s.put("vector_valid", cat(&[&[0, 0, 0], &proof]));
    s.put("vector_expired", cat(&[&[0, 0x07, 0x54], &proof])); // +1876 × 16 ms
    s.put("honest_signer", cat(&[&[2, 0, 0], &proof]));
    s.put("honest_own_audience", cat(&[&[3, 0xf8, 0xad], &proof])); // −1875 × 16 ms
}

fn handshake_seeds(s: &Seeds) {
    s.put("agent_offer", cat(&[&[0], &offer().encode_to_vec()]));
    let response = v1::CreateSessionResponse {
        result: Some(v1::create_session_response::Result::Accepted(
            v1::SessionAccepted {
                session_id: session_id(),
                agent_id: "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg".into(),
                agent_pubkey: vector_bytes("/identity/0/public_key_hex"),
                handshake: Some(handshake_reply()),
                ..Default::default()
            },
        )),
    };
    s.put("operator_answer", cat(&[&[1], &response.encode_to_vec()]));
    let e_op = vector_bytes("/handshake/e_op_secret_hex");
    let e_ag = vector_bytes("/handshake/e_ag_secret_hex");
    let sid = session_id();
    s.put(
        "honest_untampered",
        cat(&[&[2], &e_op, &e_ag, &[0; 96], sid.as_bytes()]),
    );
    let mut mask = [0u8; 96];
    mask[40] = 1;
    s.put(
        "honest_tampered",
        cat(&[&[2], &e_op, &e_ag, &mask, sid.as_bytes()]),
    );
}

fn resume_seeds(s: &Seeds) {
    let offer = v1::ResumeHandshake {
        kind: Some(v1::resume_handshake::Kind::Offer(v1::ResumeOffer {
            epoch: 3,
            e_op_pub: vector_bytes("/handshake/e_op_public_hex"),
            signature: vector_bytes("/handshake/offer_signature_hex"),
        })),
    };
    s.put("agent_offer", cat(&[&[0, 1], &offer.encode_to_vec()]));
    s.put("agent_stale_offer", cat(&[&[0, 9], &offer.encode_to_vec()]));
    let answer = v1::ResumeHandshake {
        kind: Some(v1::resume_handshake::Kind::Answer(v1::ResumeAnswer {
            e_ag_pub: vector_bytes("/handshake/e_ag_public_hex"),
            signature: vector_bytes("/handshake/answer_signature_hex"),
        })),
    };
    s.put("operator_answer", cat(&[&[1, 1], &answer.encode_to_vec()]));
    s.put("honest_untampered", cat(&[&[2], &[0, 0, 0, 7], &[0; 96]]));
    let mut mask = [0u8; 96];
    mask[40] = 1;
    s.put("honest_tampered", cat(&[&[2], &[0, 0, 0, 7], &mask]));
}

fn agent_id_seeds(s: &Seeds) {
    for (i, id) in array("/identity").iter().enumerate() {
        let agent_id = id["agent_id"].as_str().expect("agent_id");
        s.put(&format!("agent_id_{i}"), cat(&[&[0], agent_id.as_bytes()]));
        let key = hex(id["public_key_hex"].as_str().expect("key"));
        s.put(&format!("public_key_{i}"), cat(&[&[1], &key]));
    }
}

fn jws_seeds(s: &Seeds) {
    let token = vector_str("/service_assertion/token");
    s.put("vector_token", cat(&[&[0], token.as_bytes()]));
    let mut parts = token.split('.');
    let header = URL_SAFE_NO_PAD
        .decode(parts.next().expect("header"))
        .expect("b64");
    let payload = URL_SAFE_NO_PAD
        .decode(parts.next().expect("payload"))
        .expect("b64");
    let len = u8::try_from(header.len()).expect("short header");
    s.put("signed_vector_claims", cat(&[&[1, len], &header, &payload]));
    let at = br#"{"alg":"EdDSA","typ":"at+jwt","kid":"auth-1"}"#;
    let len = u8::try_from(at.len()).expect("short header");
    s.put(
        "signed_access_token_typ",
        cat(&[&[1, len], at, br#"{"sub":"u1","exp":1767225700}"#]),
    );
}

fn audit_entry_seeds(s: &Seeds) {
    for (i, e) in array("/audit_chain/entries").iter().enumerate() {
        let line = e["export_line"].as_str().expect("line");
        s.put(&format!("entry_{}", i + 1), cat(&[&[0], line.as_bytes()]));
    }
    let checkpoint = serde_json::to_string(vector("/merkle/checkpoint/signed")).expect("json");
    s.put("checkpoint", cat(&[&[1], checkpoint.as_bytes()]));
}

fn canonical_json_seeds(s: &Seeds) {
    for (i, e) in array("/audit_chain/entries").iter().enumerate() {
        let context = serde_json::to_string(&e["event"]["context"]).expect("json");
        s.put(&format!("context_{}", i + 1), context);
    }
    s.put(
        "numbers",
        r#"{"a":1.5,"b":-0.0,"c":1e21,"d":1e-7,"e":9007199254740991,"f":-12,"g":0.1}"#,
    );
    s.put(
        "strings",
        "{\"\\u00e9\":\"\\u0001\\n\\\"x\\\\\",\"\u{1f600}\":\"\u{fffd}\",\"\u{e000}\":[]}",
    );
    let deep = format!("{}{}", r#"{"a":"#.repeat(31) + "1", "}".repeat(31));
    s.put("deep", format!("{{\"d\":{deep}}}"));
}

fn merkle_seeds(s: &Seeds) {
    // Deterministic pseudo-random bytes: a tree and a few checks each.
    let mut x: u32 = 0x7c2e_7d1a;
    for (i, len) in [48usize, 96, 160, 256].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        s.put(&format!("random_{i}"), bytes);
    }
    // Seven leaves (the vectors' tree size), then one honest check of each kind.
    s.put(
        "seven_leaves",
        [
            7, 0, 1, 2, 3, 0, 1, 2, 0, 3, 2, 2, 0, 0, 0, 1, 7, 3, 0, 0, 0, 0,
        ],
    );
}

fn frame_open_seeds(s: &Seeds) {
    for (i, f) in array("/frames").iter().enumerate() {
        let frame = hex(f["frame_hex"].as_str().expect("frame"));
        let len = u16::try_from(frame.len())
            .expect("short frame")
            .to_be_bytes();
        s.put(&format!("vector_frame_{i}"), cat(&[&len, &frame]));
    }
}

fn assertion_seeds(s: &Seeds) {
    s.put("vector_token", vector_str("/service_assertion/token"));
    // The token the target's keyring accepts (same construction as the target).
    let id = Identity::from_seed(&Zeroizing::new([7u8; 32]));
    let signer = ServiceSigner::new("rendezvous", "k1", id).expect("signer");
    let good = signer
        .issue_with("auth", 1_767_225_600, 30, "jti")
        .expect("issue");
    s.put("accepted_token", good);
}

fn code_seeds(s: &Seeds) {
    for (i, c) in array("/codes/cases").iter().enumerate() {
        s.put(&format!("case_{i}"), c["input"].as_str().expect("input"));
    }
    for (i, c) in array("/codes/invalid_inputs").iter().enumerate() {
        if let Some(text) = c.as_str().or_else(|| c["input"].as_str()) {
            s.put(&format!("invalid_{i}"), text);
        }
    }
}

/// The complete example policies of `docs/policy.md` (each fenced `yaml` block with a
/// top-level `version:`), plus the built-in default.
fn policy_seeds(s: &Seeds) {
    s.put("builtin_default", tucdesk_policy::Policy::builtin_default_yaml());
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy.md");
    let text = fs::read_to_string(docs).expect("docs/policy.md");
    let mut in_block = false;
    let mut block = String::new();
    let mut n = 0;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            if in_block && block.lines().any(|l| l.starts_with("version:")) {
                s.put(&format!("doc_example_{n}"), &block);
                n += 1;
            }
            in_block = line.trim() == "```yaml";
            block.clear();
        } else if in_block {
            block.push_str(line);
            block.push('\n');
        }
    }
}

fn validation_seeds(s: &Seeds) {
    s.put("uuid", cat(&[&[0], b"0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"]));
    s.put("agent_id", cat(&[&[1], b"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]));
    s.put("name", cat(&[&[2], b"web-1"]));
    s.put("message", cat(&[&[3], b"change CHG-1234\nreviewed"]));
    s.put("tag", cat(&[&[4], b"env=prod"]));
    let exec = v1::ExecSpec {
        argv: vec!["systemctl".into(), "status".into(), "nginx".into()],
        env: [("LANG".to_owned(), "C".to_owned())].into_iter().collect(),
        cwd: "/".into(),
        timeout_ms: 10_000,
        pty: false,
    };
    s.put("exec_spec", cat(&[&[5], &exec.encode_to_vec()]));
    let size = v1::TerminalSize { cols: 80, rows: 24 };
    s.put("terminal_size", cat(&[&[6], &size.encode_to_vec()]));
    s.put("tags", cat(&[&[7], b"web\0env=prod\0web"]));
}

fn stun_seeds(s: &Seeds) {
    s.put("binding", cat(&[&[0], &tucdesk_stun::binding_request([1; 12], false)]));
    s.put("binding_fingerprint", cat(&[&[0], &tucdesk_stun::binding_request([2; 12], true)]));
    let request = tucdesk_stun::parse_binding_request(&tucdesk_stun::binding_request([3; 12], true))
        .expect("a request we built parses");
    let peer = "[2001:db8::1]:3478".parse().expect("fixed address");
    s.put("binding_answer", cat(&[&[0], &tucdesk_stun::binding_success(&request, peer)]));
    let challenge = tucdesk_stun::turn::Builder::new(tucdesk_stun::turn::ALLOCATE_ERROR, [4; 12])
        .attribute(tucdesk_stun::turn::ATTR_ERROR_CODE, &[0, 0, 4, 1, b'U', b'n', b'a', b'u'])
        .attribute(tucdesk_stun::turn::ATTR_REALM, b"tucdesk")
        .attribute(tucdesk_stun::turn::ATTR_NONCE, b"0123456789abcdef");
    s.put("turn_401", cat(&[&[1], challenge.bytes()]));
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    stun_seeds(&Seeds::target(&root, "stun_parse"));
    policy_seeds(&Seeds::target(&root, "policy_parse"));
    validation_seeds(&Seeds::target(&root, "request_validation"));
    proto_seeds(&Seeds::target(&root, "proto_decode"));
    registration_seeds(&Seeds::target(&root, "registration_verify"));
    handshake_seeds(&Seeds::target(&root, "handshake"));
    agent_id_seeds(&Seeds::target(&root, "agent_id_parse"));
    jws_seeds(&Seeds::target(&root, "jws_decode"));
    audit_entry_seeds(&Seeds::target(&root, "audit_entry_json"));
    canonical_json_seeds(&Seeds::target(&root, "audit_canonical_json"));
    merkle_seeds(&Seeds::target(&root, "merkle_proofs"));
    frame_open_seeds(&Seeds::target(&root, "frame_open"));
    assertion_seeds(&Seeds::target(&root, "service_assertion_parse"));
    code_seeds(&Seeds::target(&root, "code_normalize"));
    resume_seeds(&Seeds::target(&root, "resume_handshake"));
    println!("seeds written to {}", root.display());
}
