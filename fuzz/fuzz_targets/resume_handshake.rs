//! Session resume (docs/networking.md, "Session resume"): the `ResumeHandshake` message each
//! side reads first on a resumed pipe, fed with bytes from the network.
//!
//! The first byte picks a side, the second is the agent's last accepted epoch, the rest is
//! the input:
//! - 0, agent: an encoded `ResumeHandshake`. An offer is converted with exact lengths and
//!   must be refused: `StaleResume` for an epoch not above the last one, otherwise
//!   `BadOfferSignature` (the fuzzer cannot sign as the session's operator).
//! - 1, operator: an encoded `ResumeHandshake` answering an honest offer; it must be refused
//!   with `BadAnswerSignature` (the fuzzer cannot sign as the pinned agent).
//! - 2, both sides honest with a fuzzed epoch, then a fuzzed XOR mask over
//!   `(e_pub ‖ signature)` of the offer and of the answer: honest runs agree on keys, any
//!   change is refused.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tucdesk_crypto::handshake::resume::{
    OperatorResume, ResumeAnswer, ResumeContext, ResumeOffer, agent_resume,
};
use tucdesk_crypto::{EphemeralPublic, HandshakeError, Identity, Signature, hazmat};
use tucdesk_fuzz::{MASK_LEN, masked};
use tucdesk_proto::v1;
use zeroize::Zeroizing;

struct Fixture {
    agent: Identity,
    operator: Identity,
    context: ResumeContext,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let agent = Identity::from_seed(&Zeroizing::new([0x11; 32]));
        let operator = Identity::from_seed(&Zeroizing::new([0x22; 32]));
        let context = ResumeContext {
            session_id: "6f1c5e0a-8a47-4b52-9d6a-0c6a3b1f2e11".into(),
            agent_key: agent.public_key(),
            operator_key: operator.public_key(),
        };
        Fixture {
            agent,
            operator,
            context,
        }
    })
}

fn decoded(body: &[u8]) -> Option<v1::resume_handshake::Kind> {
    v1::ResumeHandshake::decode(body).ok()?.kind
}

fn agent_side(last_epoch: u32, body: &[u8]) {
    let fx = fixture();
    let Some(v1::resume_handshake::Kind::Offer(offer)) = decoded(body) else {
        return;
    };
    let (Some(e_op_pub), Some(signature)) = (
        EphemeralPublic::from_slice(&offer.e_op_pub),
        Signature::from_slice(&offer.signature),
    ) else {
        return;
    };
    let offer = ResumeOffer {
        epoch: offer.epoch,
        e_op_pub,
        signature,
    };
    let refused = agent_resume(&fx.agent, &fx.context, last_epoch, &offer)
        .err()
        .expect("an offer the fuzzer made up was answered");
    if offer.epoch <= last_epoch {
        assert_eq!(refused, HandshakeError::StaleResume);
    } else {
        assert_eq!(refused, HandshakeError::BadOfferSignature);
    }
}

fn operator_side(epoch: u32, body: &[u8]) {
    let fx = fixture();
    let Some(v1::resume_handshake::Kind::Answer(answer)) = decoded(body) else {
        return;
    };
    let (Some(e_ag_pub), Some(signature)) = (
        EphemeralPublic::from_slice(&answer.e_ag_pub),
        Signature::from_slice(&answer.signature),
    ) else {
        return;
    };
    let (pending, _) =
        OperatorResume::start(&fx.operator, fx.context.clone(), epoch).expect("honest offer");
    let refused = pending
        .finish(&ResumeAnswer {
            e_ag_pub,
            signature,
        })
        .err()
        .expect("an answer the fuzzer made up was accepted");
    assert_eq!(refused, HandshakeError::BadAnswerSignature);
}

fn honest(body: &[u8]) {
    let fx = fixture();
    let mut u = Unstructured::new(body);
    let (Ok(epoch), Ok(mask)) = (u.arbitrary::<u32>(), u.arbitrary::<[u8; MASK_LEN]>()) else {
        return;
    };
    let epoch = epoch.max(1);
    let (pending, offer) =
        OperatorResume::start(&fx.operator, fx.context.clone(), epoch).expect("honest offer");
    let (answer, agent_keys) =
        agent_resume(&fx.agent, &fx.context, epoch - 1, &offer).expect("honest offer accepted");
    let operator_keys = pending.finish(&answer).expect("honest answer accepted");
    assert_eq!(
        operator_keys.transcript_hash(),
        agent_keys.transcript_hash()
    );
    assert_eq!(
        hazmat::session_key_bytes(&operator_keys),
        hazmat::session_key_bytes(&agent_keys)
    );
    // The same offer again is a replay.
    assert_eq!(
        agent_resume(&fx.agent, &fx.context, epoch, &offer).err(),
        Some(HandshakeError::StaleResume)
    );
    if mask.iter().all(|&m| m == 0) {
        return;
    }
    let (e_op_pub, signature) = masked(&offer.e_op_pub, &offer.signature, &mask);
    let bad_offer = ResumeOffer {
        epoch,
        e_op_pub,
        signature,
    };
    assert_eq!(
        agent_resume(&fx.agent, &fx.context, epoch - 1, &bad_offer).err(),
        Some(HandshakeError::BadOfferSignature)
    );
    let (e_ag_pub, signature) = masked(&answer.e_ag_pub, &answer.signature, &mask);
    let (pending, _) =
        OperatorResume::start(&fx.operator, fx.context.clone(), epoch).expect("honest offer");
    assert_eq!(
        pending
            .finish(&ResumeAnswer {
                e_ag_pub,
                signature
            })
            .err(),
        Some(HandshakeError::BadAnswerSignature)
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&epoch, body)) = rest.split_first() else {
        return;
    };
    match mode % 3 {
        0 => agent_side(u32::from(epoch), body),
        1 => operator_side(u32::from(epoch).max(1), body),
        _ => honest(rest),
    }
});
