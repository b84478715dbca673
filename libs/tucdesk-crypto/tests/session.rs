//! End-to-end use of the public API the way the agent, rendezvous and viewer
//! will use it: install, register, handshake, exchange frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use tucdesk_crypto::frame::MAX_FRAME_PLAINTEXT_LEN;
use tucdesk_crypto::{
    FrameError, HandshakeError, Identity, OperatorHandshake, PublicKey, RegistrationError,
    RegistrationProof, agent_respond,
};

const NOW_MS: u64 = 1_767_225_600_000;
const AUDIENCE: &str = "rdv-test";
const SID: &str = "0190f3a4-7c2e-7d1a-9b3c-5e6f7a8b9c0d";

#[test]
fn agent_install_register_and_session_roundtrip() {
    // Install: identity generated on the host, stored 0600, reloaded.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.key");
    Identity::generate().unwrap().save_to_file(&path).unwrap();
    let agent = Identity::load_from_file(&path).unwrap();

    // Connect: registration proof checked by rendezvous.
    let proof = RegistrationProof::create(&agent, AUDIENCE, NOW_MS).unwrap();
    proof.verify(AUDIENCE, NOW_MS + 1_000).unwrap();
    assert_eq!(proof.agent_key.agent_id(), agent.agent_id());

    // The viewer pinned the agent by agent_id (known_agents).
    let pinned = PublicKey::from_agent_id(&agent.agent_id()).unwrap();
    let device = Identity::generate().unwrap();
    let (state, offer) = OperatorHandshake::start(&device, SID, pinned).unwrap();
    // The agent would compare this with the viewer token's cnf.jkt.
    assert_eq!(
        offer.operator_key.jwk_thumbprint(),
        device.public_key().jwk_thumbprint()
    );
    let (answer, agent_keys) = agent_respond(&agent, &offer).unwrap();
    let op_keys = state.finish(&answer).unwrap();

    let (mut op_tx, mut op_rx) = op_keys.into_operator_channel();
    let (mut ag_tx, mut ag_rx) = agent_keys.into_agent_channel();
    for i in 0..10u8 {
        let input = vec![i; usize::from(i) * 10];
        assert_eq!(ag_rx.open(&op_tx.seal(&input).unwrap()).unwrap(), input);
        let output = vec![i ^ 0xff; usize::from(i) * 100];
        assert_eq!(op_rx.open(&ag_tx.seal(&output).unwrap()).unwrap(), output);
    }
}

#[test]
fn registration_replayed_outside_the_window_is_rejected() {
    let agent = Identity::generate().unwrap();
    let proof = RegistrationProof::create(&agent, AUDIENCE, NOW_MS).unwrap();
    let later = NOW_MS + tucdesk_crypto::MAX_CLOCK_SKEW.as_millis() as u64 + 1;
    assert_eq!(
        proof.verify(AUDIENCE, later),
        Err(RegistrationError::Expired)
    );
}

#[test]
fn a_lying_rendezvous_cannot_substitute_the_agent() {
    let agent = Identity::generate().unwrap();
    let impostor = Identity::generate().unwrap();
    let device = Identity::generate().unwrap();
    // Viewer pinned the real agent; rendezvous routes the offer to the impostor.
    let (state, offer) = OperatorHandshake::start(&device, SID, agent.public_key()).unwrap();
    assert_eq!(
        agent_respond(&impostor, &offer).err(),
        Some(HandshakeError::WrongAgent)
    );
    // Impostor answers an offer rewritten for itself: the signature breaks,
    // and the viewer still checks the answer against the pinned key.
    let mut rewritten = offer.clone();
    rewritten.agent_key = impostor.public_key();
    assert!(agent_respond(&impostor, &rewritten).is_err());
    let other_device = Identity::generate().unwrap();
    let (_, impostor_offer) =
        OperatorHandshake::start(&other_device, SID, impostor.public_key()).unwrap();
    let (impostor_answer, _) = agent_respond(&impostor, &impostor_offer).unwrap();
    assert_eq!(
        state.finish(&impostor_answer).err(),
        Some(HandshakeError::BadAnswerSignature)
    );
}

#[test]
fn frames_from_another_session_are_rejected() {
    let agent = Identity::generate().unwrap();
    let device = Identity::generate().unwrap();
    let mk = |sid: &str| {
        let (state, offer) = OperatorHandshake::start(&device, sid, agent.public_key()).unwrap();
        let (answer, agent_keys) = agent_respond(&agent, &offer).unwrap();
        (state.finish(&answer).unwrap(), agent_keys)
    };
    let (op_a, _) = mk("session-a");
    let (_, ag_b) = mk("session-b");
    let (mut tx_a, _) = op_a.into_operator_channel();
    let (_, mut rx_b) = ag_b.into_agent_channel();
    assert_eq!(
        rx_b.open(&tx_a.seal(b"rm -rf /").unwrap()),
        Err(FrameError::Authentication)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn any_payload_sequence_survives_the_full_stack(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..2048), 1..12)
    ) {
        let agent = Identity::generate().unwrap();
        let device = Identity::generate().unwrap();
        let (state, offer) = OperatorHandshake::start(&device, SID, agent.public_key()).unwrap();
        let (answer, agent_keys) = agent_respond(&agent, &offer).unwrap();
        let (mut tx, _) = state.finish(&answer).unwrap().into_operator_channel();
        let (_, mut rx) = agent_keys.into_agent_channel();
        let frames: Vec<Vec<u8>> = msgs.iter().map(|m| tx.seal(m).unwrap()).collect();
        for (f, m) in frames.iter().zip(&msgs) {
            prop_assert!(m.len() <= MAX_FRAME_PLAINTEXT_LEN);
            prop_assert_eq!(&rx.open(f).unwrap(), m);
        }
        // Everything already delivered is now a replay.
        for f in &frames {
            let replayed = matches!(rx.open(f), Err(FrameError::Replayed { .. }));
            prop_assert!(replayed);
        }
    }
}
