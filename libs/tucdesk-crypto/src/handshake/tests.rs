#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::hazmat;

fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

const SID: &str = "0190f3a4-7c2e-7d1a-9b3c-5e6f7a8b9c0d";

/// RFC 7748 §5.2: (scalar, u-coordinate, output).
#[test]
fn rfc7748_5_2_scalar_multiplication_through_ephemeral_secret() {
    let cases = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (k, u, out) in cases {
        let secret = hazmat::ephemeral_secret_from_bytes(h32(k));
        let shared = secret
            .diffie_hellman(&EphemeralPublic::from_bytes(h32(u)))
            .unwrap();
        assert_eq!(hex::encode(*shared), out);
    }
}

#[test]
fn rfc7748_5_2_iterated_1_and_1000() {
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    for i in 1..=1000 {
        let out = hazmat::ephemeral_secret_from_bytes(k)
            .diffie_hellman(&EphemeralPublic::from_bytes(u))
            .unwrap();
        u = k;
        k = *out;
        if i == 1 {
            assert_eq!(
                hex::encode(k),
                "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
            );
        }
    }
    assert_eq!(
        hex::encode(k),
        "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"
    );
}

#[test]
fn rfc7748_6_1_diffie_hellman() {
    let alice = hazmat::ephemeral_secret_from_bytes(h32(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ));
    let bob = hazmat::ephemeral_secret_from_bytes(h32(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    ));
    let alice_pub = alice.public_key();
    let bob_pub = bob.public_key();
    assert_eq!(
        hex::encode(alice_pub.to_bytes()),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
    assert_eq!(
        hex::encode(bob_pub.to_bytes()),
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    );
    let k1 = alice.diffie_hellman(&bob_pub).unwrap();
    let k2 = bob.diffie_hellman(&alice_pub).unwrap();
    assert_eq!(*k1, *k2);
    assert_eq!(
        hex::encode(*k1),
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    );
}

/// RFC 5869 Appendix A.1–A.3 (HKDF-SHA256).
#[test]
fn rfc5869_hkdf_sha256_test_cases_1_to_3() {
    let range = |a: u8, b: u8| (a..=b).collect::<Vec<u8>>();
    type Case = (Vec<u8>, Vec<u8>, Vec<u8>, &'static str);
    let cases: [Case; 3] = [
        (
            vec![0x0b; 22],
            range(0x00, 0x0c),
            range(0xf0, 0xf9),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            range(0x00, 0x4f),
            range(0x60, 0xaf),
            range(0xb0, 0xff),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (
            vec![0x0b; 22],
            vec![],
            vec![],
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ];
    for (ikm, salt, info, okm_hex) in cases {
        let mut okm = vec![0u8; okm_hex.len() / 2];
        assert!(hkdf_sha256(&ikm, &salt, &info, &mut okm));
        assert_eq!(hex::encode(okm), okm_hex);
    }
}

#[test]
fn low_order_peer_key_is_refused() {
    // u = 0 and u = 1 are low-order: X25519 yields all zeros.
    for u in [[0u8; 32], {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    }] {
        let secret = EphemeralSecret::generate().unwrap();
        assert_eq!(
            secret.diffie_hellman(&EphemeralPublic::from_bytes(u)).err(),
            Some(HandshakeError::NonContributory)
        );
    }
}

fn full_handshake() -> (
    Identity,
    Identity,
    SessionKeys,
    SessionKeys,
    SessionOffer,
    SessionAnswer,
) {
    let agent = Identity::generate().unwrap();
    let operator = Identity::generate().unwrap();
    let (state, offer) = OperatorHandshake::start(&operator, SID, agent.public_key()).unwrap();
    let (answer, agent_keys) = agent_respond(&agent, &offer).unwrap();
    let op_keys = state.finish(&answer).unwrap();
    (agent, operator, op_keys, agent_keys, offer, answer)
}

#[test]
fn both_sides_derive_the_same_keys_and_frames_flow() {
    let (_, operator, op_keys, agent_keys, offer, _) = full_handshake();
    assert_eq!(op_keys.transcript_hash(), agent_keys.transcript_hash());
    assert_eq!(
        hazmat::session_key_bytes(&op_keys),
        hazmat::session_key_bytes(&agent_keys)
    );
    let (k1, k2) = hazmat::session_key_bytes(&op_keys);
    assert_ne!(k1, k2, "directions must use distinct keys");
    let confirm = op_keys.confirm(&operator);
    agent_keys
        .verify_confirmation(&offer.operator_key, &confirm)
        .unwrap();

    let (mut op_tx, mut op_rx) = op_keys.into_operator_channel();
    let (mut ag_tx, mut ag_rx) = agent_keys.into_agent_channel();
    let f = op_tx.seal(b"ls -la\n").unwrap();
    assert_eq!(ag_rx.open(&f).unwrap(), b"ls -la\n");
    let f = ag_tx.seal(b"total 0\n").unwrap();
    assert_eq!(op_rx.open(&f).unwrap(), b"total 0\n");
    // A frame reflected back to its sender fails (other key and direction).
    let f = op_tx.seal(b"x").unwrap();
    assert!(op_rx.open(&f).is_err());
}

#[test]
fn substituted_agent_answer_is_rejected() {
    // A lying rendezvous answers with its own ephemeral key and signs with
    // its own identity: the operator checks against the pinned agent key.
    let agent = Identity::generate().unwrap();
    let mallory = Identity::generate().unwrap();
    let operator = Identity::generate().unwrap();
    let (state, offer) = OperatorHandshake::start(&operator, SID, agent.public_key()).unwrap();
    let mut forged_offer = offer.clone();
    forged_offer.agent_key = mallory.public_key();
    // Mallory cannot answer the real offer (addressed to the agent)…
    assert_eq!(
        agent_respond(&mallory, &offer).err(),
        Some(HandshakeError::WrongAgent)
    );
    // …and an answer made for a rewritten offer does not pass.
    assert_eq!(
        agent_respond(&mallory, &forged_offer).err(),
        Some(HandshakeError::BadOfferSignature)
    );
    let (mut real_answer, _) = agent_respond(&agent, &offer).unwrap();
    let e_mallory = EphemeralSecret::generate().unwrap();
    real_answer.e_ag_pub = e_mallory.public_key();
    assert_eq!(
        state.finish(&real_answer).err(),
        Some(HandshakeError::BadAnswerSignature)
    );
}

#[test]
fn tampered_offer_fields_are_rejected() {
    let agent = Identity::generate().unwrap();
    let operator = Identity::generate().unwrap();
    let (_, offer) = OperatorHandshake::start(&operator, SID, agent.public_key()).unwrap();
    let mut o = offer.clone();
    o.session_id.push('x');
    assert_eq!(
        agent_respond(&agent, &o).err(),
        Some(HandshakeError::BadOfferSignature)
    );
    let mut o = offer.clone();
    o.e_op_pub = EphemeralSecret::generate().unwrap().public_key();
    assert_eq!(
        agent_respond(&agent, &o).err(),
        Some(HandshakeError::BadOfferSignature)
    );
    let mut o = offer.clone();
    o.operator_key = Identity::generate().unwrap().public_key();
    assert_eq!(
        agent_respond(&agent, &o).err(),
        Some(HandshakeError::BadOfferSignature)
    );
}

#[test]
fn signatures_cannot_be_replayed_across_roles() {
    let (agent, operator, op_keys, agent_keys, offer, answer) = full_handshake();
    // The agent's answer signature is not a valid operator confirmation
    // even when checked against the agent key: the domain tags differ.
    assert_eq!(
        agent_keys
            .verify_confirmation(&agent.public_key(), &answer.signature)
            .err(),
        Some(HandshakeError::BadConfirmation)
    );
    // The operator's offer signature is not a confirmation either.
    assert_eq!(
        op_keys
            .verify_confirmation(&operator.public_key(), &offer.signature)
            .err(),
        Some(HandshakeError::BadConfirmation)
    );
    assert_ne!(OFFER_DOMAIN, ANSWER_DOMAIN);
    assert_ne!(ANSWER_DOMAIN, CONFIRM_DOMAIN);
}

#[test]
fn session_id_is_length_checked() {
    let agent = Identity::generate().unwrap();
    let operator = Identity::generate().unwrap();
    assert_eq!(
        OperatorHandshake::start(&operator, "", agent.public_key()).err(),
        Some(HandshakeError::BadSessionId)
    );
    let long = "s".repeat(MAX_SESSION_ID_LEN + 1);
    assert_eq!(
        OperatorHandshake::start(&operator, &long, agent.public_key()).err(),
        Some(HandshakeError::BadSessionId)
    );
}

#[test]
fn debug_never_prints_session_keys_or_ephemeral_secrets() {
    let (_, _, op_keys, _, _, _) = full_handshake();
    let (k1, k2) = hazmat::session_key_bytes(&op_keys);
    let dbg = format!("{op_keys:?}");
    for k in [k1, k2] {
        assert!(!dbg.contains(&hex::encode(k)));
        assert!(!dbg.contains(&URL_SAFE_NO_PAD.encode(k)));
        assert!(!dbg.contains(&format!("{k:?}")));
    }
    assert!(dbg.contains(SID));
    let bytes = [0x5au8; 32];
    let e = hazmat::ephemeral_secret_from_bytes(bytes);
    let dbg = format!("{e:?}");
    assert!(!dbg.contains(&format!("{bytes:?}")));
    assert!(!dbg.contains(&URL_SAFE_NO_PAD.encode(bytes)));
}
