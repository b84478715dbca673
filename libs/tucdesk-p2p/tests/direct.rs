//! The direct path between two in-process peers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tucdesk_p2p::{IceConfig, P2pError, P2pOptions, TrySendError};
use tucdesk_proto::limits::{MAX_ICE_CANDIDATES_PER_SIDE, MAX_SDP_LEN, MAX_SEALED_FRAME_LEN};
use tucdesk_proto::v1::session_signal::Signal;
use tucdesk_proto::v1::{IceCandidate, Path, SdpType, SessionDescription, SessionSignal};
use tucdesk_transport::{MessagePipe, PipeError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_path_carries_messages_both_ways_in_order() {
    let (operator, agent) = connect_direct().await;
    assert_eq!(operator.path(), Path::Direct);
    assert_eq!(agent.path(), Path::Direct);

    const COUNT: u64 = 300;
    // Sizes from 8 bytes to a full sealed frame.
    let size =
        |seq: u64| (8 + (seq as usize * 7919) % MAX_SEALED_FRAME_LEN).min(MAX_SEALED_FRAME_LEN);
    let send_all = |pipe: Arc<tucdesk_p2p::P2pPipe>| async move {
        for seq in 0..COUNT {
            pipe.send(numbered(seq, size(seq))).await.unwrap();
        }
    };
    let recv_all = |pipe: Arc<tucdesk_p2p::P2pPipe>| async move {
        for expected in 0..COUNT {
            let message = pipe.recv().await.unwrap().expect("message");
            assert_eq!(message.len(), size(expected));
            assert_eq!(check_numbered(&message), expected);
        }
    };
    tokio::time::timeout(GUARD, async {
        tokio::join!(
            tokio::spawn(send_all(operator.clone())),
            tokio::spawn(send_all(agent.clone())),
            tokio::spawn(recv_all(operator.clone())),
            tokio::spawn(recv_all(agent.clone())),
        )
    })
    .await
    .map(|(a, b, c, d)| {
        a.unwrap();
        b.unwrap();
        c.unwrap();
        d.unwrap();
    })
    .expect("transfer guard");
    operator.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_frame_passes_and_a_larger_one_is_refused_by_the_sender() {
    let (operator, agent) = connect_direct().await;
    let largest = numbered(7, MAX_SEALED_FRAME_LEN);
    operator.send(largest.clone()).await.unwrap();
    let received = tokio::time::timeout(GUARD, agent.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(received, largest);

    let err = operator
        .send(vec![0; MAX_SEALED_FRAME_LEN + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(err, PipeError::TooLarge { len, max } if len == MAX_SEALED_FRAME_LEN + 1 && max == MAX_SEALED_FRAME_LEN),
        "{err:?}"
    );
    operator.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_refuses_a_message_above_its_limit() {
    let small = P2pOptions {
        max_message_len: 1024,
        ..loopback_options()
    };
    let ice = IceConfig::default();
    let (operator, agent) = connect(&ice, &ice, &loopback_options(), &small).await;
    operator.send(numbered(1, 1024)).await.unwrap();
    operator.send(numbered(2, 1025)).await.unwrap();
    let first = tokio::time::timeout(GUARD, agent.recv()).await.unwrap();
    assert_eq!(check_numbered(&first.unwrap().unwrap()), 1);
    let second = tokio::time::timeout(GUARD, agent.recv()).await.unwrap();
    assert!(
        matches!(
            second,
            Err(PipeError::TooLarge {
                len: 1025,
                max: 1024
            })
        ),
        "{second:?}"
    );
    operator.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_bounds_what_the_sender_buffers() {
    const LIMIT: usize = 256 * 1024;
    const MESSAGE: usize = 16 * 1024;
    // What the receiving side may hold without reading, by webrtc-rs's own bounds: its SCTP
    // receive window (1 MiB), and 256 messages in each of three queues (the DataChannel's
    // event queue, one drained batch retained by the driver, the core's read backlog), plus
    // a MiB of slack. An unbounded sender passes this long before the loop below gives up.
    const RECEIVER_HOLDS: usize = 1024 * 1024 + 3 * 256 * MESSAGE + 1024 * 1024;
    const BOUND: usize = LIMIT + MESSAGE + RECEIVER_HOLDS;
    let bounded = P2pOptions {
        send_buffer_limit: LIMIT,
        ..loopback_options()
    };
    let ice = IceConfig::default();
    let (operator, agent) = connect(&ice, &ice, &bounded, &loopback_options()).await;
    assert_eq!(operator.send_buffer_limit(), LIMIT);

    // The agent does not read. The operator sends until the buffer stays full.
    let mut accepted: u64 = 0;
    let mut refused_in_a_row = 0;
    let mut full_seen = false;
    while (accepted as usize) * MESSAGE <= BOUND {
        match operator.try_send(numbered(accepted, MESSAGE)).await {
            Ok(()) => {
                accepted += 1;
                refused_in_a_row = 0;
                let buffered = operator.buffered_amount().await;
                assert!(
                    buffered <= LIMIT + MESSAGE,
                    "{buffered} bytes buffered above the limit"
                );
            }
            Err(TrySendError::Full) => {
                full_seen = true;
                refused_in_a_row += 1;
                // No progress for a while: the receiver's window is closed.
                if refused_in_a_row >= 100 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(TrySendError::Pipe(err)) => panic!("{err}"),
        }
    }
    assert!(full_seen, "the sender was never held back");
    let sent_bytes = accepted as usize * MESSAGE;
    assert!(
        sent_bytes <= BOUND,
        "{sent_bytes} bytes accepted while the receiver read nothing (bound {BOUND})"
    );

    // A blocking send waits now, and completes once the receiver drains.
    let blocked = {
        let operator = operator.clone();
        tokio::spawn(async move { operator.send(numbered(accepted, MESSAGE)).await })
    };
    for expected in 0..=accepted {
        let message = tokio::time::timeout(GUARD, agent.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(check_numbered(&message), expected);
    }
    tokio::time::timeout(GUARD, blocked)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    operator.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_fails_at_the_deadline_when_the_agent_never_answers() {
    let (mut to_agent, mut silent_agent) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    let options = P2pOptions {
        connect_deadline: Duration::from_millis(1500),
        ..loopback_options()
    };
    let result = tokio::time::timeout(
        GUARD,
        tucdesk_p2p::dial(SESSION, &IceConfig::default(), &options, &mut to_agent),
    )
    .await
    .unwrap();
    assert!(is_deadline(&result), "{result:?}");
    // The offer did go out, for this session.
    let offer = next_signal(&mut silent_agent).await;
    assert_eq!(offer.session_id, SESSION);
    assert!(matches!(
        offer.signal,
        Some(Signal::Description(SessionDescription { r#type, .. })) if r#type == SdpType::Offer as i32
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_fails_at_the_deadline_without_an_offer() {
    let (_operator, mut to_operator) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    let options = P2pOptions {
        connect_deadline: Duration::from_millis(500),
        ..loopback_options()
    };
    let result = tokio::time::timeout(
        GUARD,
        tucdesk_p2p::accept(SESSION, &IceConfig::default(), &options, &mut to_operator),
    )
    .await
    .unwrap();
    assert!(is_deadline(&result), "{result:?}");
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("no direct or TURN connection"),
        "{message}"
    );
}

/// Signals naming another session, including an answer that would break the connection if it
/// were applied and candidates that would use up the peer's budget.
fn foreign_signals() -> VecDeque<SessionSignal> {
    let mut signals = VecDeque::new();
    for session_id in ["another-session", ""] {
        signals.push_back(SessionSignal {
            session_id: session_id.into(),
            signal: Some(Signal::Description(SessionDescription {
                r#type: SdpType::Answer as i32,
                sdp: "not an sdp".into(),
            })),
        });
        for _ in 0..MAX_ICE_CANDIDATES_PER_SIDE {
            signals.push_back(SessionSignal {
                session_id: session_id.into(),
                signal: Some(Signal::Candidate(IceCandidate {
                    candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host".into(),
                    ..Default::default()
                })),
            });
        }
    }
    signals.truncate(tucdesk_p2p::signaling::MAX_FOREIGN_SIGNALS);
    signals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_for_another_session_are_ignored() {
    let (to_agent, mut to_operator) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    let mut injecting = Injecting {
        inner: to_agent,
        injected: foreign_signals(),
    };
    let ice = IceConfig::default();
    let options = loopback_options();
    let (dialed, accepted) = tokio::time::timeout(GUARD, async {
        tokio::join!(
            tucdesk_p2p::dial(SESSION, &ice, &options, &mut injecting),
            tucdesk_p2p::accept(SESSION, &ice, &options, &mut to_operator),
        )
    })
    .await
    .unwrap();
    let (operator, agent) = (dialed.unwrap(), accepted.unwrap());
    assert_eq!(operator.path(), Path::Direct);
    operator.send(b"still ours".to_vec()).await.unwrap();
    let received = tokio::time::timeout(GUARD, agent.recv()).await.unwrap();
    assert_eq!(received.unwrap().unwrap(), b"still ours");
    operator.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_foreign_signals_end_the_attempt() {
    let (to_agent, _agent) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    let mut flooding = Injecting {
        inner: to_agent,
        injected: (0..=tucdesk_p2p::signaling::MAX_FOREIGN_SIGNALS)
            .map(|_| SessionSignal {
                session_id: "another-session".into(),
                signal: Some(Signal::EndOfCandidates(true)),
            })
            .collect(),
    };
    let result = tucdesk_p2p::dial(
        SESSION,
        &IceConfig::default(),
        &loopback_options(),
        &mut flooding,
    )
    .await;
    assert!(matches!(result, Err(P2pError::Protocol(_))), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_is_refused() {
    let (mut to_agent, mut fake_agent) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    let fake = async move {
        let _offer = next_signal(&mut fake_agent).await;
        push_signal(
            &mut fake_agent,
            SessionSignal {
                session_id: SESSION.into(),
                signal: Some(Signal::Description(SessionDescription {
                    r#type: SdpType::Answer as i32,
                    sdp: "a".repeat(MAX_SDP_LEN + 1),
                })),
            },
        )
        .await;
        fake_agent
    };
    let (ice, options) = (IceConfig::default(), loopback_options());
    let (result, _fake) = tokio::time::timeout(GUARD, async {
        tokio::join!(
            tucdesk_p2p::dial(SESSION, &ice, &options, &mut to_agent),
            fake
        )
    })
    .await
    .unwrap();
    assert!(matches!(result, Err(P2pError::Protocol(_))), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_65th_candidate_is_refused() {
    let (to_operator, mut fake_operator) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    let mut agent_side = to_operator;
    // A genuine offer from a real operator peer, then a flood of candidates.
    let (mut offer_out, mut offer_in) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    let options = P2pOptions {
        connect_deadline: Duration::from_secs(2),
        ..loopback_options()
    };
    let operator = tokio::spawn({
        let options = options.clone();
        async move {
            let _ =
                tucdesk_p2p::dial(SESSION, &IceConfig::default(), &options, &mut offer_out).await;
        }
    });
    let offer = next_signal(&mut offer_in).await;
    push_signal(&mut fake_operator, offer).await;
    // All pointing at the loopback discard port: nothing leaves the machine.
    for _ in 0..=MAX_ICE_CANDIDATES_PER_SIDE {
        push_signal(
            &mut fake_operator,
            SessionSignal {
                session_id: SESSION.into(),
                signal: Some(Signal::Candidate(IceCandidate {
                    candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host".into(),
                    ..Default::default()
                })),
            },
        )
        .await;
    }
    let result =
        tucdesk_p2p::accept(SESSION, &IceConfig::default(), &options, &mut agent_side).await;
    assert!(
        matches!(
            result,
            Err(P2pError::Protocol("more than 64 ICE candidates"))
        ),
        "{result:?}"
    );
    operator.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_idempotent_and_ends_the_peer() {
    let (operator, agent) = connect_direct().await;
    operator.close().await;
    operator.close().await;
    assert!(matches!(
        operator.send(b"late".to_vec()).await,
        Err(PipeError::Closed { .. })
    ));
    assert!(matches!(operator.recv().await, Ok(None)));
    // The agent sees a clean end of stream, as after a WebSocket close.
    let end = tokio::time::timeout(GUARD, agent.recv()).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_sent_before_close_still_arrives() {
    let (operator, agent) = connect_direct().await;
    // A burst, then close at once: the last message (a session's exit status, say) must not
    // be cut off by the close.
    for seq in 0..50 {
        agent.send(numbered(seq, 32 * 1024)).await.unwrap();
    }
    agent.close().await;
    for seq in 0..50 {
        let message = tokio::time::timeout(GUARD, operator.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before message {seq}"));
        assert_eq!(check_numbered(&message), seq);
    }
    let end = tokio::time::timeout(GUARD, operator.recv()).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    operator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_blocked_on_a_full_buffer_is_released_when_the_peer_goes() {
    let bounded = P2pOptions {
        send_buffer_limit: 64 * 1024,
        ..loopback_options()
    };
    let ice = IceConfig::default();
    let (operator, agent) = connect(&ice, &ice, &bounded, &loopback_options()).await;
    let sender = {
        let operator = operator.clone();
        tokio::spawn(async move {
            // The agent never reads: this ends only with an error.
            let mut seq = 0;
            loop {
                if let Err(err) = operator.send(numbered(seq, 16 * 1024)).await {
                    return err;
                }
                seq += 1;
            }
        })
    };
    // Wait until the sender is held back, then take the agent away.
    while operator.buffered_amount().await < 64 * 1024 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.close().await;
    let err = tokio::time::timeout(GUARD, sender).await.unwrap().unwrap();
    assert!(
        matches!(err, PipeError::Closed { .. } | PipeError::Io(_)),
        "{err:?}"
    );
    operator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_options_are_refused_before_any_network_use() {
    let (mut a, _b) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    for options in [
        P2pOptions {
            send_buffer_limit: 0,
            ..loopback_options()
        },
        P2pOptions {
            max_message_len: MAX_SEALED_FRAME_LEN + 1,
            ..loopback_options()
        },
        P2pOptions {
            udp_addrs: Vec::new(),
            ..loopback_options()
        },
    ] {
        let result = tucdesk_p2p::dial(SESSION, &IceConfig::default(), &options, &mut a).await;
        assert!(matches!(result, Err(P2pError::Config(_))), "{result:?}");
    }
}
