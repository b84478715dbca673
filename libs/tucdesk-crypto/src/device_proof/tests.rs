#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::registration::MAX_CLOCK_SKEW;
use zeroize::Zeroizing;

const NOW: u64 = 1_767_225_600_000;
const NONCE: [u8; 24] = [0x5a; 24];

fn skew_ms() -> u64 {
    u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap()
}

fn ctx() -> DeviceProofContext<'static> {
    DeviceProofContext {
        method: "/tucdesk.v1.OperatorService/RevokeAgent",
        target: "agent-1",
        session_id: "sess-1",
        binding: b"binding-bytes",
        challenge: b"challenge-bytes",
    }
}

fn identity(seed: u8) -> Identity {
    Identity::from_seed(&Zeroizing::new([seed; 32]))
}

#[test]
fn valid_proof_verifies_with_and_without_thumbprint() {
    let id = identity(1);
    let proof = DeviceProof::sign(&id, &ctx(), NOW, &NONCE).unwrap();
    proof.verify(&ctx(), NOW, None).unwrap();
    let jkt = id.public_key().jwk_thumbprint();
    proof.verify(&ctx(), NOW, Some(&jkt)).unwrap();
    let fresh = DeviceProof::create(&id, &ctx(), NOW).unwrap();
    assert_eq!(fresh.nonce.len(), DEFAULT_NONCE_LEN);
    fresh.verify(&ctx(), NOW, Some(&jkt)).unwrap();
}

#[test]
fn message_layout_matches_the_documented_bytes() {
    let c = DeviceProofContext {
        method: "m",
        target: "tg",
        session_id: "",
        binding: &[0xb1],
        challenge: &[],
    };
    let nonce = [0xaa; 16];
    let mut expected = b"tucdesk-device-proof-v1".to_vec();
    expected.extend_from_slice(&[0, 0, 0, 1, b'm']);
    expected.extend_from_slice(&[0, 0, 0, 2, b't', b'g']);
    expected.extend_from_slice(&[0, 0, 0, 0]);
    expected.extend_from_slice(&[0, 0, 0, 1, 0xb1]);
    expected.extend_from_slice(&[0, 0, 0, 0]);
    expected.extend_from_slice(&NOW.to_be_bytes());
    expected.extend_from_slice(&[0, 0, 0, 16]);
    expected.extend_from_slice(&nonce);
    assert_eq!(device_proof_message(&c, NOW, &nonce).unwrap(), expected);

    // The signature is plain Ed25519 over exactly those bytes, checked
    // with the primitive directly rather than through our own verifier.
    let id = identity(2);
    let proof = DeviceProof::sign(&id, &c, NOW, &nonce).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(id.public_key().as_bytes()).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&proof.signature.to_bytes());
    vk.verify_strict(&expected, &sig).unwrap();
}

#[test]
fn every_context_field_is_bound_into_the_signature() {
    let id = identity(3);
    let base = ctx();
    let proof = DeviceProof::sign(&id, &base, NOW, &NONCE).unwrap();
    let variants = [
        DeviceProofContext {
            method: "/tucdesk.v1.OperatorService/TagAgent",
            ..base
        },
        DeviceProofContext {
            target: "agent-2",
            ..base
        },
        DeviceProofContext {
            session_id: "sess-2",
            ..base
        },
        DeviceProofContext {
            binding: b"binding-bytez",
            ..base
        },
        DeviceProofContext {
            challenge: b"challenge-bytez",
            ..base
        },
        DeviceProofContext {
            challenge: b"",
            ..base
        },
    ];
    for other in variants {
        assert_eq!(
            proof.verify(&other, NOW, None),
            Err(DeviceProofError::BadSignature),
            "{other:?}"
        );
    }
}

#[test]
fn timestamp_nonce_and_key_are_bound_into_the_signature() {
    let id = identity(4);
    let proof = DeviceProof::sign(&id, &ctx(), NOW, &NONCE).unwrap();

    let mut p = proof.clone();
    p.timestamp_ms += 1;
    assert_eq!(
        p.verify(&ctx(), NOW, None),
        Err(DeviceProofError::BadSignature)
    );

    let mut p = proof.clone();
    p.nonce[0] ^= 1;
    assert_eq!(
        p.verify(&ctx(), NOW, None),
        Err(DeviceProofError::BadSignature)
    );

    let mut p = proof.clone();
    let mut sig = p.signature.to_bytes();
    sig[10] ^= 1;
    p.signature = Signature::from_bytes(sig);
    assert_eq!(
        p.verify(&ctx(), NOW, None),
        Err(DeviceProofError::BadSignature)
    );

    // Swapping in another key without a thumbprint check still fails on
    // the signature.
    let mut p = proof;
    p.public_key = identity(5).public_key();
    assert_eq!(
        p.verify(&ctx(), NOW, None),
        Err(DeviceProofError::BadSignature)
    );
}

#[test]
fn length_prefixes_keep_adjacent_fields_apart() {
    let a = DeviceProofContext {
        target: "ab",
        session_id: "c",
        ..ctx()
    };
    let b = DeviceProofContext {
        target: "a",
        session_id: "bc",
        ..ctx()
    };
    assert_ne!(
        device_proof_message(&a, NOW, &NONCE).unwrap(),
        device_proof_message(&b, NOW, &NONCE).unwrap()
    );
    let id = identity(6);
    let proof = DeviceProof::sign(&id, &a, NOW, &NONCE).unwrap();
    assert_eq!(
        proof.verify(&b, NOW, None),
        Err(DeviceProofError::BadSignature)
    );
}

#[test]
fn wrong_thumbprint_is_a_key_mismatch() {
    let id = identity(7);
    let proof = DeviceProof::sign(&id, &ctx(), NOW, &NONCE).unwrap();
    let other = identity(8).public_key().jwk_thumbprint();
    assert_eq!(
        proof.verify(&ctx(), NOW, Some(&other)),
        Err(DeviceProofError::KeyMismatch)
    );
    assert_eq!(
        proof.verify(&ctx(), NOW, Some("")),
        Err(DeviceProofError::KeyMismatch)
    );
    // The key itself (agent_id form) is not its thumbprint.
    assert_eq!(
        proof.verify(&ctx(), NOW, Some(&id.agent_id())),
        Err(DeviceProofError::KeyMismatch)
    );
}

#[test]
fn timestamp_must_be_within_the_clock_skew() {
    let id = identity(9);
    let proof = DeviceProof::sign(&id, &ctx(), NOW, &NONCE).unwrap();
    let skew = skew_ms();
    proof.verify(&ctx(), NOW + skew, None).unwrap();
    proof.verify(&ctx(), NOW - skew, None).unwrap();
    assert_eq!(
        proof.verify(&ctx(), NOW + skew + 1, None),
        Err(DeviceProofError::Expired)
    );
    assert_eq!(
        proof.verify(&ctx(), NOW - skew - 1, None),
        Err(DeviceProofError::FromTheFuture)
    );
}

#[test]
fn nonce_length_is_bounded() {
    let id = identity(10);
    for len in [0, MIN_NONCE_LEN - 1, MAX_NONCE_LEN + 1] {
        let nonce = vec![1u8; len];
        assert_eq!(
            DeviceProof::sign(&id, &ctx(), NOW, &nonce),
            Err(DeviceProofError::BadNonceLength)
        );
        assert_eq!(
            DeviceProof::from_parts(id.public_key().as_bytes(), NOW, &nonce, &[0; 64]),
            Err(DeviceProofError::BadNonceLength)
        );
    }
    for len in [MIN_NONCE_LEN, MAX_NONCE_LEN] {
        let proof = DeviceProof::sign(&id, &ctx(), NOW, &vec![1u8; len]).unwrap();
        proof.verify(&ctx(), NOW, None).unwrap();
    }
    // A nonce truncated after signing is rejected before any crypto.
    let mut p = DeviceProof::sign(&id, &ctx(), NOW, &NONCE).unwrap();
    p.nonce.truncate(MIN_NONCE_LEN - 1);
    assert_eq!(
        p.verify(&ctx(), NOW, None),
        Err(DeviceProofError::BadNonceLength)
    );
}

#[test]
fn context_fields_are_length_capped() {
    let id = identity(11);
    let long = "x".repeat(MAX_TARGET_LEN + 1);
    let long_bytes = vec![0u8; MAX_BINDING_LEN + 1];
    let long_method = format!("/{}", "m".repeat(MAX_METHOD_LEN));
    let cases = [
        (
            DeviceProofContext {
                method: &long_method,
                ..ctx()
            },
            ProofField::Method,
        ),
        (
            DeviceProofContext {
                method: "",
                ..ctx()
            },
            ProofField::Method,
        ),
        (
            DeviceProofContext {
                target: &long,
                ..ctx()
            },
            ProofField::Target,
        ),
        (
            DeviceProofContext {
                session_id: &long,
                ..ctx()
            },
            ProofField::SessionId,
        ),
        (
            DeviceProofContext {
                binding: &long_bytes,
                ..ctx()
            },
            ProofField::Binding,
        ),
        (
            DeviceProofContext {
                challenge: &long_bytes,
                ..ctx()
            },
            ProofField::Challenge,
        ),
    ];
    let good = DeviceProof::sign(&id, &ctx(), NOW, &NONCE).unwrap();
    for (c, field) in cases {
        assert_eq!(
            DeviceProof::sign(&id, &c, NOW, &NONCE),
            Err(DeviceProofError::FieldLength(field))
        );
        assert_eq!(
            good.verify(&c, NOW, None),
            Err(DeviceProofError::FieldLength(field))
        );
    }
    // Exactly at the caps is fine.
    let at_cap_str = "y".repeat(MAX_TARGET_LEN);
    let at_cap_bytes = vec![7u8; MAX_CHALLENGE_LEN];
    let method = "z".repeat(MAX_METHOD_LEN);
    let c = DeviceProofContext {
        method: &method,
        target: &at_cap_str,
        session_id: &at_cap_str,
        binding: &at_cap_bytes,
        challenge: &at_cap_bytes,
    };
    DeviceProof::sign(&id, &c, NOW, &NONCE)
        .unwrap()
        .verify(&c, NOW, None)
        .unwrap();
}

#[test]
fn from_parts_checks_key_and_signature_encoding() {
    let id = identity(12);
    let proof = DeviceProof::sign(&id, &ctx(), NOW, &NONCE).unwrap();
    let rebuilt = DeviceProof::from_parts(
        id.public_key().as_bytes(),
        proof.timestamp_ms,
        &proof.nonce,
        &proof.signature.to_bytes(),
    )
    .unwrap();
    assert_eq!(rebuilt, proof);
    rebuilt.verify(&ctx(), NOW, None).unwrap();

    assert_eq!(
        DeviceProof::from_parts(&[1u8; 31], NOW, &NONCE, &[0; 64]),
        Err(DeviceProofError::InvalidPublicKey)
    );
    // The identity point is a small-order ("weak") key.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    assert_eq!(
        DeviceProof::from_parts(&weak, NOW, &NONCE, &[0; 64]),
        Err(DeviceProofError::InvalidPublicKey)
    );
    assert_eq!(
        DeviceProof::from_parts(id.public_key().as_bytes(), NOW, &NONCE, &[0; 63]),
        Err(DeviceProofError::BadSignatureLength)
    );
}

#[test]
fn replay_key_depends_on_key_and_nonce_only() {
    let id = identity(13);
    let a = DeviceProof::sign(&id, &ctx(), NOW, &NONCE).unwrap();
    let other_ctx = DeviceProofContext {
        method: "/tucdesk.v1.AuthService/Logout",
        ..ctx()
    };
    let same_nonce = DeviceProof::sign(&id, &other_ctx, NOW + 5, &NONCE).unwrap();
    assert_eq!(a.replay_key(), same_nonce.replay_key());

    let other_nonce = DeviceProof::sign(&id, &ctx(), NOW, &[0x5b; 24]).unwrap();
    assert_ne!(a.replay_key(), other_nonce.replay_key());
    let other_key = DeviceProof::sign(&identity(14), &ctx(), NOW, &NONCE).unwrap();
    assert_ne!(a.replay_key(), other_key.replay_key());

    let mut expected = Sha256::new();
    expected.update(id.public_key().as_bytes());
    expected.update(NONCE);
    assert_eq!(a.replay_key(), hex::encode(expected.finalize()));
}
