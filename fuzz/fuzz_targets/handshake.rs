//! The session handshake (SPEC §5 steps 1–3) fed with bytes from the network.
//!
//! The first byte picks a side, the rest is its input:
//! - 0, agent: an encoded `Offer` as rendezvous delivers it. Its
//!   `HandshakeInit` is converted with exact lengths and answered with the
//!   agent key of vectors.json. Only the offer in vectors.json may be
//!   answered (the fuzzer cannot sign), and then with the vectors' answer
//!   and keys; anything else fails with the documented error.
//! - 1, operator: an encoded `CreateSessionResponse`. The operator side is
//!   the vectors' offer; only the vectors' `HandshakeReply` may finish it.
//! - 2, both sides honest: fuzzed session id and ephemeral secrets, then a
//!   fuzzed XOR mask over `(e_pub ‖ signature)` of the offer and of the
//!   answer. Honest runs agree on keys and frames; any change is refused.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tucdesk_crypto::handshake::{MAX_SESSION_ID_LEN, X25519_LEN};
use tucdesk_crypto::{
    EphemeralPublic, HandshakeError, Identity, PublicKey, SessionAnswer, SessionKeys, SessionOffer,
    Signature, hazmat,
};
use tucdesk_fuzz::{MASK_LEN, masked, vector_array, vector_str};
use tucdesk_proto::v1;
use zeroize::Zeroizing;

struct Fixture {
    agent: Identity,
    operator: Identity,
    stranger: PublicKey,
    e_op: [u8; X25519_LEN],
    e_ag: [u8; X25519_LEN],
    offer: SessionOffer,
    answer: SessionAnswer,
    keys: ([u8; 32], [u8; 32]),
}

fn identity(pointer: &str) -> Identity {
    Identity::from_seed(&Zeroizing::new(vector_array(pointer)))
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let agent = identity("/handshake/agent_seed_hex");
        let operator = identity("/handshake/operator_seed_hex");
        let stranger = Identity::from_seed(&Zeroizing::new([0x5a; 32])).public_key();
        let offer = SessionOffer {
            session_id: vector_str("/handshake/session_id").to_owned(),
            agent_key: agent.public_key(),
            operator_key: operator.public_key(),
            e_op_pub: EphemeralPublic::from_bytes(vector_array("/handshake/e_op_public_hex")),
            signature: Signature::from_bytes(vector_array("/handshake/offer_signature_hex")),
        };
        let answer = SessionAnswer {
            e_ag_pub: EphemeralPublic::from_bytes(vector_array("/handshake/e_ag_public_hex")),
            signature: Signature::from_bytes(vector_array("/handshake/answer_signature_hex")),
        };
        Fixture {
            agent,
            operator,
            stranger,
            e_op: vector_array("/handshake/e_op_secret_hex"),
            e_ag: vector_array("/handshake/e_ag_secret_hex"),
            offer,
            answer,
            keys: (
                vector_array("/handshake/key_operator_to_agent_hex"),
                vector_array("/handshake/key_agent_to_operator_hex"),
            ),
        }
    })
}

fn session_id_ok(session_id: &str) -> bool {
    (1..=MAX_SESSION_ID_LEN).contains(&session_id.len())
}

fn ephemeral(bytes: [u8; X25519_LEN]) -> tucdesk_crypto::EphemeralSecret {
    hazmat::ephemeral_secret_from_bytes(bytes)
}

/// Agent side: an `Offer` from rendezvous.
fn agent_side(body: &[u8]) {
    let fx = fixture();
    let Ok(msg) = v1::Offer::decode(body) else {
        return;
    };
    let Some(init) = msg.handshake else {
        return;
    };
    let (Ok(operator_key), Some(e_op_pub), Some(signature)) = (
        PublicKey::from_slice(&init.operator_key),
        EphemeralPublic::from_slice(&init.e_op_pub),
        Signature::from_slice(&init.offer_signature),
    ) else {
        return;
    };
    let offer = SessionOffer {
        session_id: msg.session_id,
        agent_key: fx.agent.public_key(),
        operator_key,
        e_op_pub,
        signature,
    };
    assert_eq!(
        offer.verify(&fx.stranger),
        Err(HandshakeError::WrongAgent),
        "an offer for another agent was not refused first"
    );
    match hazmat::agent_respond_with(&fx.agent, &offer, ephemeral(fx.e_ag)) {
        Ok((answer, keys)) => {
            assert_eq!(offer, fx.offer, "an offer the fuzzer made up was answered");
            assert_eq!(answer, fx.answer);
            assert_eq!(hazmat::session_key_bytes(&keys), fx.keys);
        }
        Err(e) if !session_id_ok(&offer.session_id) => {
            assert_eq!(e, HandshakeError::BadSessionId);
        }
        Err(e) => assert_eq!(e, HandshakeError::BadOfferSignature),
    }
}

/// Operator side: a `CreateSessionResponse` carrying the agent's reply.
fn operator_side(body: &[u8]) {
    let fx = fixture();
    let Ok(msg) = v1::CreateSessionResponse::decode(body) else {
        return;
    };
    let Some(v1::create_session_response::Result::Accepted(accepted)) = msg.result else {
        return;
    };
    let Some(reply) = accepted.handshake else {
        return;
    };
    let (Some(e_ag_pub), Some(signature)) = (
        EphemeralPublic::from_slice(&reply.e_ag_pub),
        Signature::from_slice(&reply.transcript_signature),
    ) else {
        return;
    };
    let answer = SessionAnswer {
        e_ag_pub,
        signature,
    };
    let (op, offer) = hazmat::operator_start_with(
        &fx.operator,
        &fx.offer.session_id,
        fx.agent.public_key(),
        ephemeral(fx.e_op),
    )
    .expect("vector offer");
    assert_eq!(offer, fx.offer);
    match op.finish(&answer) {
        Ok(keys) => {
            assert_eq!(
                answer, fx.answer,
                "an answer the fuzzer made up was accepted"
            );
            assert_eq!(hazmat::session_key_bytes(&keys), fx.keys);
        }
        Err(e) => assert_eq!(e, HandshakeError::BadAnswerSignature),
    }
}

/// Both sides honest with fuzzed inputs, then tampering.
fn honest(body: &[u8]) {
    let fx = fixture();
    let mut u = Unstructured::new(body);
    let (Ok(e_op), Ok(e_ag), Ok(mask)) = (
        u.arbitrary::<[u8; X25519_LEN]>(),
        u.arbitrary::<[u8; X25519_LEN]>(),
        u.arbitrary::<[u8; MASK_LEN]>(),
    ) else {
        return;
    };
    let session_id = String::from_utf8_lossy(u.take_rest()).into_owned();
    let agent_key = fx.agent.public_key();

    let started =
        hazmat::operator_start_with(&fx.operator, &session_id, agent_key, ephemeral(e_op));
    if !session_id_ok(&session_id) {
        assert_eq!(started.err(), Some(HandshakeError::BadSessionId));
        return;
    }
    let (op, offer) = started.expect("valid session id");
    let (answer, agent_keys) =
        hazmat::agent_respond_with(&fx.agent, &offer, ephemeral(e_ag)).expect("honest offer");
    let op_keys = op.finish(&answer).expect("honest answer");
    agree(&op_keys, &agent_keys);

    // Operator confirmation over the full transcript.
    let confirm = op_keys.confirm(&fx.operator);
    agent_keys
        .verify_confirmation(&fx.operator.public_key(), &confirm)
        .expect("honest confirmation");
    let tampered = mask.iter().any(|&m| m != 0);
    let (_, bad_confirm) = masked(&answer.e_ag_pub, &confirm, &mask);
    if bad_confirm != confirm {
        assert_eq!(
            agent_keys.verify_confirmation(&fx.operator.public_key(), &bad_confirm),
            Err(HandshakeError::BadConfirmation)
        );
    }

    // The keys drive working, direction-bound channels.
    let (mut op_tx, mut op_rx) = op_keys.into_operator_channel();
    let (mut ag_tx, mut ag_rx) = agent_keys.into_agent_channel();
    let to_agent = op_tx.seal(session_id.as_bytes()).expect("seal");
    assert_eq!(ag_rx.open(&to_agent).expect("open"), session_id.as_bytes());
    let to_operator = ag_tx.seal(&mask).expect("seal");
    assert!(ag_rx.open(&to_operator).is_err(), "reflected frame opened");
    assert_eq!(op_rx.open(&to_operator).expect("open"), mask);

    if !tampered {
        return;
    }
    // A changed offer is refused by the agent.
    let (e_op_pub, signature) = masked(&offer.e_op_pub, &offer.signature, &mask);
    let bad_offer = SessionOffer {
        e_op_pub,
        signature,
        ..offer.clone()
    };
    assert_eq!(
        hazmat::agent_respond_with(&fx.agent, &bad_offer, ephemeral(e_ag)).err(),
        Some(HandshakeError::BadOfferSignature)
    );
    // A changed answer is refused by the operator.
    let (e_ag_pub, signature) = masked(&answer.e_ag_pub, &answer.signature, &mask);
    let bad_answer = SessionAnswer {
        e_ag_pub,
        signature,
    };
    let (op, _) =
        hazmat::operator_start_with(&fx.operator, &session_id, agent_key, ephemeral(e_op))
            .expect("same offer again");
    assert_eq!(
        op.finish(&bad_answer).err(),
        Some(HandshakeError::BadAnswerSignature)
    );
}

fn agree(op: &SessionKeys, agent: &SessionKeys) {
    assert_eq!(op.session_id(), agent.session_id());
    assert_eq!(op.transcript_hash(), agent.transcript_hash());
    assert_eq!(
        hazmat::session_key_bytes(op),
        hazmat::session_key_bytes(agent)
    );
    let (to_agent, to_operator) = hazmat::session_key_bytes(op);
    assert_ne!(to_agent, to_operator, "both directions share a key");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => agent_side(body),
        1 => operator_side(body),
        _ => honest(body),
    }
});
