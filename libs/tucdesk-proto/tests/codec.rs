//! Codec properties of the messages that cross trust boundaries: every
//! `Frame` and `AgentMessage` survives encode/decode unchanged, and decoding
//! arbitrary bytes returns an error or a value but never panics.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use prost::Message;
use tucdesk_proto::v1::{
    self, AgentMessage, Frame, RelayHello, ServerMessage, agent_message, frame, offer_answer,
    session_signal,
};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn fixed(len: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), len)
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(".{{0,{max}}}")).expect("valid regex")
}

/// Any enum value, including ones this build does not know (proto3 enums
/// are open: unknown values must survive a roundtrip).
fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![0..4i32, any::<i32>()]
}

fn exec_spec() -> impl Strategy<Value = v1::ExecSpec> {
    (
        vec(text(16), 0..4),
        btree_map(text(8), text(16), 0..4),
        text(16),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(argv, env, cwd, timeout_ms, pty)| v1::ExecSpec {
            argv,
            env: env.into_iter().collect(),
            cwd,
            timeout_ms,
            pty,
        })
}

fn frame_kind() -> impl Strategy<Value = frame::Kind> {
    prop_oneof![
        (
            any::<u32>(),
            enum_value(),
            enum_value(),
            any::<u32>(),
            vec(text(8), 0..3),
            bytes(64)
        )
            .prop_map(
                |(protocol_version, side, path, max_frame_len, features, conf)| {
                    frame::Kind::Hello(v1::Hello {
                        protocol_version,
                        side,
                        path,
                        max_frame_len,
                        features,
                        transcript_confirmation: conf,
                    })
                }
            ),
        (any::<u64>(), bytes(256))
            .prop_map(|(seq, data)| frame::Kind::Output(v1::Output { seq, data })),
        bytes(256).prop_map(|data| frame::Kind::Input(v1::Input { data })),
        (any::<u32>(), any::<u32>())
            .prop_map(|(cols, rows)| frame::Kind::Resize(v1::Resize { cols, rows })),
        (any::<Option<i32>>(), any::<Option<i32>>())
            .prop_map(|(exit_code, signal)| frame::Kind::Exit(v1::Exit { exit_code, signal })),
        bytes(32).prop_map(|nonce| frame::Kind::Ping(v1::Ping { nonce })),
        bytes(32).prop_map(|nonce| frame::Kind::Pong(v1::Pong { nonce })),
        (proptest::option::of(exec_spec()), bytes(64), any::<bool>()).prop_map(
            |(spec, stdin, stdin_eof)| {
                frame::Kind::ExecRequest(v1::ExecRequest {
                    spec,
                    stdin,
                    stdin_eof,
                })
            }
        ),
        (enum_value(), any::<u64>(), bytes(128)).prop_map(|(stream, seq, data)| {
            frame::Kind::ExecOutput(v1::ExecOutput { stream, seq, data })
        }),
        (
            any::<Option<i32>>(),
            any::<Option<i32>>(),
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            text(16),
            any::<u64>()
        )
            .prop_map(
                |(exit_code, signal, timed_out, trunc, out, err, error, dur)| {
                    frame::Kind::ExecResult(v1::ExecResult {
                        exit_code,
                        signal,
                        timed_out,
                        output_truncated: trunc,
                        stdout_bytes: out,
                        stderr_bytes: err,
                        error,
                        duration_ms: dur,
                    })
                }
            ),
        any::<u64>()
            .prop_map(|last_output_seq| frame::Kind::Resume(v1::Resume { last_output_seq })),
        (enum_value(), text(32))
            .prop_map(|(reason, message)| frame::Kind::Close(v1::Close { reason, message })),
        any::<u64>().prop_map(|seq| frame::Kind::OutputAck(v1::OutputAck { seq })),
        (bytes(64), any::<bool>())
            .prop_map(|(data, eof)| frame::Kind::ExecStdin(v1::ExecStdin { data, eof })),
        (any::<u64>(), any::<bool>()).prop_map(|(first_seq, truncated)| {
            frame::Kind::Resumed(v1::Resumed {
                first_seq,
                truncated,
            })
        }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    proptest::option::of(frame_kind()).prop_map(|kind| Frame { kind })
}

fn registration_proof() -> impl Strategy<Value = v1::RegistrationProof> {
    (fixed(32), fixed(32), any::<u64>(), fixed(64), text(32)).prop_map(
        |(agent_pubkey, nonce, timestamp_ms, signature, audience)| v1::RegistrationProof {
            agent_pubkey,
            nonce,
            timestamp_ms,
            signature,
            audience,
        },
    )
}

fn host_info() -> impl Strategy<Value = v1::HostInfo> {
    (text(16), text(16), text(16), vec(text(16), 0..3)).prop_map(
        |(hostname, version, os_release, addresses)| v1::HostInfo {
            hostname,
            agent: Some(v1::SoftwareInfo {
                name: "tucdesk-agent".into(),
                version,
                os: "linux".into(),
                arch: "x86_64".into(),
            }),
            os_release,
            kernel: String::new(),
            addresses,
        },
    )
}

fn session_report() -> impl Strategy<Value = v1::SessionReport> {
    (
        enum_value(),
        enum_value(),
        any::<u64>(),
        any::<u64>(),
        enum_value(),
        any::<u64>(),
    )
        .prop_map(|(kind, path, to_agent, to_op, close_reason, duration_ms)| {
            v1::SessionReport {
                kind,
                path,
                bytes_to_agent: to_agent,
                bytes_to_operator: to_op,
                close_reason,
                message: String::new(),
                duration_ms,
                recorded: false,
            }
        })
}

fn agent_message_kind() -> impl Strategy<Value = agent_message::Kind> {
    let signal = prop_oneof![
        (enum_value(), text(64)).prop_map(|(r#type, sdp)| {
            session_signal::Signal::Description(v1::SessionDescription { r#type, sdp })
        }),
        (text(64), text(4), any::<u32>()).prop_map(|(candidate, sdp_mid, idx)| {
            session_signal::Signal::Candidate(v1::IceCandidate {
                candidate,
                sdp_mid,
                sdp_mline_index: idx,
                username_fragment: String::new(),
            })
        }),
        any::<bool>().prop_map(session_signal::Signal::EndOfCandidates),
    ];
    let answer = prop_oneof![
        (fixed(32), fixed(64)).prop_map(|(e_ag_pub, sig)| {
            offer_answer::Result::Accepted(v1::HandshakeReply {
                e_ag_pub,
                transcript_signature: sig,
            })
        }),
        (enum_value(), text(32)).prop_map(|(reason, message)| {
            offer_answer::Result::Refused(v1::OfferRefusal { reason, message })
        }),
    ];
    prop_oneof![
        (
            any::<u32>(),
            proptest::option::of(registration_proof()),
            proptest::option::of(host_info()),
            vec(text(36), 0..3),
            any::<u64>()
        )
            .prop_map(|(protocol_version, proof, host, active, config_version)| {
                agent_message::Kind::Register(v1::Register {
                    protocol_version,
                    proof,
                    host,
                    active_session_ids: active,
                    config_version,
                })
            }),
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(sent_at_ms, active, load)| {
            agent_message::Kind::Heartbeat(v1::Heartbeat {
                sent_at_ms,
                active_sessions: active,
                load_centi: load,
            })
        }),
        (text(36), proptest::option::of(answer)).prop_map(|(session_id, result)| {
            agent_message::Kind::OfferAnswer(v1::OfferAnswer { session_id, result })
        }),
        (text(36), proptest::option::of(signal)).prop_map(|(session_id, signal)| {
            agent_message::Kind::Signal(v1::SessionSignal { session_id, signal })
        }),
        (text(36), enum_value()).prop_map(|(session_id, stage)| {
            agent_message::Kind::OfferProgress(v1::OfferProgress { session_id, stage })
        }),
        (text(36), proptest::option::of(session_report())).prop_map(|(session_id, report)| {
            agent_message::Kind::SessionEvent(v1::SessionEvent { session_id, report })
        }),
        bytes(32).prop_map(|nonce| agent_message::Kind::Pong(v1::AgentPong { nonce })),
        any::<u64>().prop_map(|config_version| {
            agent_message::Kind::ConfigAck(v1::ConfigAck { config_version })
        }),
    ]
}

fn agent_message() -> impl Strategy<Value = AgentMessage> {
    proptest::option::of(agent_message_kind()).prop_map(|kind| AgentMessage { kind })
}

fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M) {
    let encoded = msg.encode_to_vec();
    assert_eq!(encoded.len(), msg.encoded_len());
    let decoded = M::decode(encoded.as_slice()).expect("own encoding decodes");
    assert_eq!(&decoded, msg);
    // Re-encoding is stable, so signatures over encoded bytes can be checked
    // by re-encoding a decoded message of this build.
    assert_eq!(decoded.encode_to_vec(), encoded);
}

/// Decodes `data` as `M`; any `Ok` value must re-encode and decode again.
fn decode_never_panics<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(msg) = M::decode(data) {
        let again = M::decode(msg.encode_to_vec().as_slice()).expect("re-encoding decodes");
        assert_eq!(again, msg);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn frame_roundtrips(msg in frame()) {
        roundtrip(&msg);
    }

    #[test]
    fn agent_message_roundtrips(msg in agent_message()) {
        roundtrip(&msg);
    }

    #[test]
    fn decoding_random_bytes_never_panics(data in bytes(2048)) {
        decode_never_panics::<Frame>(&data);
        decode_never_panics::<AgentMessage>(&data);
        decode_never_panics::<ServerMessage>(&data);
        decode_never_panics::<RelayHello>(&data);
        decode_never_panics::<v1::RelayControl>(&data);
        decode_never_panics::<v1::UploadRequest>(&data);
        decode_never_panics::<v1::RecordingManifest>(&data);
        decode_never_panics::<v1::AuditEvent>(&data);
        decode_never_panics::<v1::RelayHeartbeat>(&data);
    }

    /// Mutating a valid encoding (the realistic attack: a well-formed message
    /// with a few bytes flipped) also never panics.
    #[test]
    fn decoding_corrupted_messages_never_panics(
        msg in agent_message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut data = msg.encode_to_vec();
        if !data.is_empty() {
            for (index, byte) in flips {
                let i = index.index(data.len());
                data[i] ^= byte;
            }
        }
        decode_never_panics::<AgentMessage>(&data);
        decode_never_panics::<Frame>(&data);
    }
}

#[test]
fn a_register_without_a_version_decodes_as_zero_and_gets_update_required() {
    // What a pre-versioning agent sends: a Register without field 1.
    let old = AgentMessage {
        kind: Some(agent_message::Kind::Register(v1::Register {
            protocol_version: 0,
            ..v1::Register::default()
        })),
    };
    let decoded = AgentMessage::decode(old.encode_to_vec().as_slice()).expect("decodes");
    let Some(agent_message::Kind::Register(register)) = decoded.kind else {
        panic!("expected Register");
    };
    let err = tucdesk_proto::check_peer_version(
        register.protocol_version,
        tucdesk_proto::MIN_AGENT_PROTOCOL_VERSION,
    )
    .expect_err("version 0 is below every floor")
    .detail();
    assert_eq!(err.reason(), v1::RejectReason::UpdateRequired);
    assert_eq!(
        err.min_protocol_version,
        tucdesk_proto::MIN_AGENT_PROTOCOL_VERSION
    );
}

#[test]
fn unknown_fields_from_a_newer_peer_are_ignored() {
    let frame = Frame {
        kind: Some(frame::Kind::Input(v1::Input {
            data: b"ls\n".to_vec(),
        })),
    };
    let mut data = frame.encode_to_vec();
    // Field 99, varint 7: something a future version might add.
    data.extend_from_slice(&[0x98, 0x06, 0x07]);
    assert_eq!(Frame::decode(data.as_slice()).expect("decodes"), frame);
}

#[test]
fn an_unknown_frame_kind_decodes_as_empty_and_is_rejectable() {
    // A future Frame variant (field 100, length-delimited, empty): the
    // receiver sees `kind: None` and closes with PROTOCOL_ERROR rather than
    // guessing.
    let data = [0xa2, 0x06, 0x00];
    assert_eq!(Frame::decode(&data[..]).expect("decodes").kind, None);
}

#[test]
fn frame_at_the_output_limit_fits_the_frame_bound() {
    let frame = Frame {
        kind: Some(frame::Kind::Output(v1::Output {
            seq: u64::MAX,
            data: vec![0xff; tucdesk_proto::limits::MAX_OUTPUT_CHUNK_LEN],
        })),
    };
    assert!(frame.encoded_len() <= tucdesk_proto::limits::MAX_FRAME_LEN);
}

#[test]
fn register_encoding_matches_the_fixed_vector() {
    // Byte-exact encoding of a small Register: guards field numbers and wire
    // types of the one message every agent version must be able to send.
    let msg = AgentMessage {
        kind: Some(agent_message::Kind::Register(v1::Register {
            protocol_version: 1,
            proof: Some(v1::RegistrationProof {
                agent_pubkey: vec![0x11; 2],
                nonce: vec![0x22; 2],
                timestamp_ms: 1,
                signature: vec![0x33; 2],
                audience: "a".into(),
            }),
            host: None,
            active_session_ids: vec![],
            config_version: 0,
        })),
    };
    let expected: &[u8] = &[
        0x0a, 0x15, // AgentMessage.register (1, LEN 21)
        0x08, 0x01, // Register.protocol_version (1) = 1
        0x12, 0x11, // Register.proof (2, LEN 17)
        0x0a, 0x02, 0x11, 0x11, // agent_pubkey (1)
        0x12, 0x02, 0x22, 0x22, // nonce (2)
        0x18, 0x01, // timestamp_ms (3) = 1
        0x22, 0x02, 0x33, 0x33, // signature (4)
        0x2a, 0x01, b'a', // audience (5)
    ];
    assert_eq!(msg.encode_to_vec(), expected);
}
