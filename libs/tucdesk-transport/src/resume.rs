//! The key exchange that opens a resumed session's pipe (tucdesk-crypto `handshake::resume`):
//! one plaintext `ResumeHandshake` message each way, then the `Hello` frames sealed with the
//! new keys ([`crate::establish`]). A pipe that fails any step is dropped; the session it
//! would have carried is untouched.

use std::sync::Arc;

use prost::Message as _;
use tucdesk_crypto::handshake::resume::{
    self, OperatorResume, ResumeAnswer, ResumeContext, ResumeOffer,
};
use tucdesk_crypto::{EphemeralPublic, Identity, Signature};
use tucdesk_proto::v1::{Side, resume_handshake};

use crate::channel::HELLO_TIMEOUT;
use crate::{ChannelError, Established, MessagePipe, PipeError, establish};

/// Largest `ResumeHandshake` message (two 32/64-byte fields and an epoch; generous).
pub const MAX_RESUME_MESSAGE_LEN: usize = 256;

fn handshake_error(err: impl std::fmt::Display) -> ChannelError {
    ChannelError::Handshake(err.to_string())
}

async fn receive(pipe: &Arc<dyn MessagePipe>) -> Result<resume_handshake::Kind, ChannelError> {
    let message = tokio::time::timeout(HELLO_TIMEOUT, pipe.recv())
        .await
        .map_err(|_| ChannelError::HelloTimeout)??
        .ok_or_else(|| handshake_error("the pipe closed during the resume handshake"))?;
    if message.len() > MAX_RESUME_MESSAGE_LEN {
        return Err(ChannelError::TooLarge(message.len()));
    }
    tucdesk_proto::v1::ResumeHandshake::decode(message.as_slice())
        .ok()
        .and_then(|m| m.kind)
        .ok_or(ChannelError::Malformed)
}

async fn send(pipe: &Arc<dyn MessagePipe>, kind: resume_handshake::Kind) -> Result<(), PipeError> {
    let message = tucdesk_proto::v1::ResumeHandshake { kind: Some(kind) };
    pipe.send(message.encode_to_vec()).await
}

/// Viewer side: offers resume `epoch` on `pipe`, checks the answer with the pinned agent key
/// in `context`, and establishes the channel with the new keys.
pub async fn offer(
    pipe: Arc<dyn MessagePipe>,
    device: &Identity,
    context: ResumeContext,
    epoch: u32,
) -> Result<Established, ChannelError> {
    let (pending, offer) =
        OperatorResume::start(device, context, epoch).map_err(handshake_error)?;
    send(
        &pipe,
        resume_handshake::Kind::Offer(tucdesk_proto::v1::ResumeOffer {
            epoch,
            e_op_pub: offer.e_op_pub.to_bytes().to_vec(),
            signature: offer.signature.to_bytes().to_vec(),
        }),
    )
    .await?;
    let resume_handshake::Kind::Answer(answer) = receive(&pipe).await? else {
        return Err(handshake_error("expected the agent's resume answer"));
    };
    let answer = ResumeAnswer {
        e_ag_pub: EphemeralPublic::from_slice(&answer.e_ag_pub)
            .ok_or_else(|| handshake_error("malformed ephemeral key"))?,
        signature: Signature::from_slice(&answer.signature)
            .ok_or_else(|| handshake_error("malformed signature"))?,
    };
    let keys = pending.finish(&answer).map_err(handshake_error)?;
    establish(pipe, keys.into_operator_channel(), Side::Operator, None).await
}

/// Agent side: waits for a resume offer on `pipe`, accepts it only for an epoch above
/// `last_epoch` signed by the session's operator key, answers, and establishes the channel
/// with the new keys. Returns the channel and the accepted epoch.
pub async fn answer(
    pipe: Arc<dyn MessagePipe>,
    identity: &Identity,
    context: &ResumeContext,
    last_epoch: u32,
) -> Result<(Established, u32), ChannelError> {
    let resume_handshake::Kind::Offer(offer) = receive(&pipe).await? else {
        return Err(handshake_error("expected a resume offer"));
    };
    let offer = ResumeOffer {
        epoch: offer.epoch,
        e_op_pub: EphemeralPublic::from_slice(&offer.e_op_pub)
            .ok_or_else(|| handshake_error("malformed ephemeral key"))?,
        signature: Signature::from_slice(&offer.signature)
            .ok_or_else(|| handshake_error("malformed signature"))?,
    };
    let (answer, keys) =
        resume::agent_resume(identity, context, last_epoch, &offer).map_err(handshake_error)?;
    send(
        &pipe,
        resume_handshake::Kind::Answer(tucdesk_proto::v1::ResumeAnswer {
            e_ag_pub: answer.e_ag_pub.to_bytes().to_vec(),
            signature: answer.signature.to_bytes().to_vec(),
        }),
    )
    .await?;
    let established = establish(pipe, keys.into_agent_channel(), Side::Agent, None).await?;
    Ok((established, offer.epoch))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::channel::tests::pair;
    use tucdesk_proto::v1::{Frame, Output, frame};

    const SID: &str = "6f1c5e0a-8a47-4b52-9d6a-0c6a3b1f2e11";

    fn setup() -> (Identity, Identity, ResumeContext) {
        let agent = Identity::generate().unwrap();
        let operator = Identity::generate().unwrap();
        let context = ResumeContext {
            session_id: SID.into(),
            agent_key: agent.public_key(),
            operator_key: operator.public_key(),
        };
        (agent, operator, context)
    }

    #[tokio::test]
    async fn a_resumed_pipe_carries_frames_under_new_keys() {
        let (agent, operator, context) = setup();
        let (viewer_end, agent_end, _) = pair();
        let agent_context = context.clone();
        let agent_side =
            tokio::spawn(async move { answer(agent_end, &agent, &agent_context, 0).await });
        let mut viewer = offer(viewer_end, &operator, context, 1).await.unwrap();
        let (mut at_agent, epoch) = agent_side.await.unwrap().unwrap();
        assert_eq!(epoch, 1);
        let output = Frame {
            kind: Some(frame::Kind::Output(Output {
                seq: 7,
                data: b"after the drop".to_vec(),
            })),
        };
        at_agent.sender.send(&output).await.unwrap();
        assert_eq!(viewer.receiver.recv().await.unwrap(), Some(output));
    }

    #[tokio::test]
    async fn the_agent_refuses_a_stale_epoch_and_the_viewer_an_impostor() {
        let (agent, operator, context) = setup();
        let (viewer_end, agent_end, _) = pair();
        let agent_context = context.clone();
        let agent_side =
            tokio::spawn(async move { answer(agent_end, &agent, &agent_context, 4).await });
        let viewer = tokio::spawn(async move { offer(viewer_end, &operator, context, 4).await });
        assert!(matches!(
            agent_side.await.unwrap(),
            Err(ChannelError::Handshake(_))
        ));
        // The agent side dropped its end without answering: the viewer gets no channel.
        assert!(viewer.await.unwrap().is_err());

        // Something that is not the pinned agent answers.
        let (_, operator, context) = setup();
        let impostor = Identity::generate().unwrap();
        let impostor_context = ResumeContext {
            agent_key: impostor.public_key(),
            ..context.clone()
        };
        let (viewer_end, impostor_end, _) = pair();
        tokio::spawn(async move {
            let _ = answer(impostor_end, &impostor, &impostor_context, 0).await;
        });
        // The offer is signed for the real agent, so the impostor (checking against its own
        // key) refuses it and the viewer learns nothing; either way no channel results.
        assert!(offer(viewer_end, &operator, context, 1).await.is_err());
    }

    #[tokio::test]
    async fn an_oversized_handshake_message_is_refused_before_decoding() {
        let (agent, _, context) = setup();
        let (viewer_end, agent_end, _) = pair();
        viewer_end.send(vec![0u8; 4096]).await.unwrap();
        assert!(matches!(
            answer(agent_end, &agent, &context, 0).await,
            Err(ChannelError::TooLarge(4096))
        ));
    }
}
