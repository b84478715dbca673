//! Negotiation of a session's DataChannel: the offer/answer and the trickled candidates over
//! [`Signaling`], all under one deadline.

use std::sync::Arc;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use tucdesk_proto::v1::session_signal::Signal;
use tucdesk_proto::v1::{
    IceCandidate, IceConfig, Path, SdpType, SessionDescription, SessionSignal,
};
use webrtc::data_channel::{
    DataChannel, DataChannelEvent, RTCDataChannelInit, RTCDataChannelMessage,
};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCIceCandidateInit, RTCIceTransportPolicy,
    RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

use crate::config::rtc_configuration;
use crate::handler::{Handler, Local, LocalSignal};
use crate::path::{relay_address, selected_path};
use crate::signaling::{Checked, Inbound, Signaling, SignalingError};
use crate::{DATA_CHANNEL_LABEL, DEFAULT_MAX_MESSAGE_LEN, P2pError, P2pOptions, P2pPipe};

/// What the SCTP layer carries at most, advertised in the SDP (`a=max-message-size`).
const SCTP_MAX_MESSAGE_SIZE: u32 = DEFAULT_MAX_MESSAGE_LEN as u32;

/// Connects as the operator side of `session_id`: creates the offer and the session's
/// DataChannel, trickles candidates over `signaling`, and returns the open pipe — or an error
/// once [`P2pOptions::connect_deadline`] has passed, so the caller can fall back.
pub async fn dial<S>(
    session_id: &str,
    ice: &IceConfig,
    options: &P2pOptions,
    signaling: &mut S,
) -> Result<P2pPipe, P2pError>
where
    S: Signaling + ?Sized,
{
    negotiate(Role::Offerer, session_id, ice, options, signaling).await
}

/// Connects as the agent side of `session_id`: waits for the operator's offer on `signaling`,
/// answers, trickles candidates, and returns the pipe once the operator's DataChannel is open
/// (or an error at the deadline).
pub async fn accept<S>(
    session_id: &str,
    ice: &IceConfig,
    options: &P2pOptions,
    signaling: &mut S,
) -> Result<P2pPipe, P2pError>
where
    S: Signaling + ?Sized,
{
    negotiate(Role::Answerer, session_id, ice, options, signaling).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Offerer,
    Answerer,
}

fn check_options(options: &P2pOptions) -> Result<(), P2pError> {
    if options.connect_deadline.is_zero() {
        return Err(P2pError::Config("the connect deadline is zero"));
    }
    if options.udp_addrs.is_empty() {
        return Err(P2pError::Config("no local UDP address to bind"));
    }
    // 0 would mean "unbounded" to the WebRTC stack.
    if options.send_buffer_limit == 0 {
        return Err(P2pError::Config("the send buffer limit is zero"));
    }
    if options.max_message_len == 0 || options.max_message_len > DEFAULT_MAX_MESSAGE_LEN {
        return Err(P2pError::Config(
            "the message limit must be 1 byte to one sealed frame",
        ));
    }
    Ok(())
}

async fn negotiate<S>(
    role: Role,
    session_id: &str,
    ice: &IceConfig,
    options: &P2pOptions,
    signaling: &mut S,
) -> Result<P2pPipe, P2pError>
where
    S: Signaling + ?Sized,
{
    let configuration = rtc_configuration(ice)?;
    check_options(options)?;
    let (handler, mut local) = Handler::new(role);
    let relay_only = configuration.ice_transport_policy() == RTCIceTransportPolicy::Relay;
    let mut settings = SettingEngineBuilder::new()
        // No mDNS: no multicast socket, and `.local` candidates from the peer are dropped.
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(SCTP_MAX_MESSAGE_SIZE));
    if relay_only {
        // ICE holds a relayed pair back ~2 s in case a direct one turns up; with relay-only
        // candidates none can.
        settings = settings.with_relay_acceptance_min_wait(Some(std::time::Duration::ZERO));
    }
    let settings = settings.build();
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(settings)
            .with_handler(Arc::new(handler))
            .with_udp_addrs(options.udp_addrs.clone())
            .with_data_channel_send_buffer_limit(options.send_buffer_limit)
            .build()
            .await?,
    );
    let state = local.state.clone();
    let attempt = run(role, session_id, &pc, &mut local, signaling);
    let outcome = tokio::time::timeout(options.connect_deadline, attempt).await;
    match outcome {
        Ok(Ok((channel, path, early))) => {
            tracing::info!(
                path = tucdesk_transport::path_name(path),
                "peer-to-peer path open"
            );
            Ok(P2pPipe::new(pc, channel, path, state, options, early))
        }
        Ok(Err(err)) => {
            let _ = pc.close().await;
            Err(err)
        }
        Err(_) => {
            let _ = pc.close().await;
            Err(P2pError::Deadline(options.connect_deadline))
        }
    }
}

fn signal(session_id: &str, signal: Signal) -> SessionSignal {
    SessionSignal {
        session_id: session_id.to_owned(),
        signal: Some(signal),
    }
}

fn to_proto(init: RTCIceCandidateInit) -> IceCandidate {
    IceCandidate {
        candidate: init.candidate,
        sdp_mid: init.sdp_mid.unwrap_or_default(),
        sdp_mline_index: init.sdp_mline_index.map(u32::from).unwrap_or_default(),
        username_fragment: init.username_fragment.unwrap_or_default(),
    }
}

fn from_proto(candidate: IceCandidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: Some(candidate.sdp_mid),
        // Checked ≤ u16::MAX by `Inbound`.
        sdp_mline_index: u16::try_from(candidate.sdp_mline_index).ok(),
        username_fragment: (!candidate.username_fragment.is_empty())
            .then_some(candidate.username_fragment),
        url: None,
    }
}

/// The operator's channel must be the one a session uses: ordered and fully reliable.
async fn check_channel(channel: &Arc<dyn DataChannel>) -> Result<(), P2pError> {
    let label = channel.label().await?;
    let ordered = channel.ordered().await?;
    let retransmits = channel.max_retransmits().await?;
    let lifetime = channel.max_packet_life_time().await?;
    if label != DATA_CHANNEL_LABEL || !ordered || retransmits.is_some() || lifetime.is_some() {
        return Err(P2pError::Protocol(
            "the peer opened a channel that is not the session's",
        ));
    }
    Ok(())
}

/// Waits until the channel `channel` reports open (offering side).
/// Messages accepted before the channel reports open (the peer sends one, its Hello).
const MAX_EARLY_MESSAGES: usize = 16;

async fn opened(
    channel: Option<&Arc<dyn DataChannel>>,
    early: &mut Vec<RTCDataChannelMessage>,
) -> Result<(), P2pError> {
    let Some(channel) = channel else {
        return std::future::pending().await;
    };
    loop {
        match channel.poll().await {
            Some(DataChannelEvent::OnOpen) => return Ok(()),
            // The peer's first message can be reported before the open (its channel opened
            // first and it sent at once); it is the session's first frame, so keep it.
            Some(DataChannelEvent::OnMessage(message)) => {
                if early.len() >= MAX_EARLY_MESSAGES {
                    return Err(P2pError::Protocol(
                        "too many messages before the channel opened",
                    ));
                }
                early.push(message);
            }
            Some(DataChannelEvent::OnClose | DataChannelEvent::OnError) | None => {
                return Err(P2pError::Failed);
            }
            Some(_) => continue,
        }
    }
}

/// The negotiation proper; the caller applies the deadline and closes `pc` on error.
async fn run<S>(
    role: Role,
    session_id: &str,
    pc: &Arc<dyn PeerConnection>,
    local: &mut Local,
    signaling: &mut S,
) -> Result<(Arc<dyn DataChannel>, Path, Vec<RTCDataChannelMessage>), P2pError>
where
    S: Signaling + ?Sized,
{
    let expected = match role {
        Role::Offerer => SdpType::Answer,
        Role::Answerer => SdpType::Offer,
    };
    let mut inbound = Inbound::new(session_id, expected);
    // Messages the peer sent before our channel reported open (offerer only).
    let mut early = Vec::new();
    let mut offered = None;
    if role == Role::Offerer {
        let init = RTCDataChannelInit {
            ordered: true,
            max_retransmits: None,
            max_packet_life_time: None,
            ..Default::default()
        };
        offered = Some(
            pc.create_data_channel(DATA_CHANNEL_LABEL, Some(init))
                .await?,
        );
        let offer = pc.create_offer(None).await?;
        let sdp = offer.sdp.clone();
        pc.set_local_description(offer).await?;
        let description = SessionDescription {
            r#type: SdpType::Offer as i32,
            sdp,
        };
        signaling
            .send(signal(session_id, Signal::Description(description)))
            .await?;
    }

    let mut described = false;
    let mut pending: Vec<IceCandidate> = Vec::new();
    let mut remote_relays: Vec<(String, u16)> = Vec::new();
    let mut signaling_open = true;
    let mut state = local.state.clone();
    loop {
        tokio::select! {
            Some(local_signal) = local.signals.recv() => {
                let outgoing = match local_signal {
                    LocalSignal::Candidate(init) => Signal::Candidate(to_proto(init)),
                    LocalSignal::GatheringComplete => Signal::EndOfCandidates(true),
                };
                if signaling_open
                    && let Err(err) = signaling.send(signal(session_id, outgoing)).await
                {
                    // Candidates already exchanged may still connect; the deadline decides.
                    tracing::debug!(error = %err, "signaling closed while trickling");
                    signaling_open = false;
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return Err(P2pError::Failed);
                }
                let current = *state.borrow_and_update();
                if matches!(current, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) {
                    return Err(P2pError::Failed);
                }
            }
            received = signaling.recv(), if signaling_open => {
                let received = match received {
                    Ok(Some(received)) => received,
                    // Once both descriptions are in, the candidates exchanged so far may
                    // still connect: stop reading and let the deadline decide.
                    Ok(None) | Err(_) if described => {
                        tracing::debug!("signaling ended after the descriptions");
                        signaling_open = false;
                        continue;
                    }
                    Ok(None) => return Err(SignalingError::Closed.into()),
                    Err(err) => return Err(err.into()),
                };
                match inbound.check(received)? {
                    Checked::Foreign | Checked::EndOfCandidates => {}
                    Checked::Candidate(candidate) => {
                        if let Some(relay) = relay_address(&candidate.candidate) {
                            remote_relays.push(relay);
                        }
                        if described {
                            add_candidate(pc, candidate).await;
                        } else {
                            // Bounded by `Inbound`'s candidate count.
                            pending.push(candidate);
                        }
                    }
                    Checked::Description(sdp) => {
                        apply_description(role, session_id, pc, sdp, signaling).await?;
                        described = true;
                        for candidate in pending.drain(..) {
                            add_candidate(pc, candidate).await;
                        }
                    }
                }
            }
            open = opened(offered.as_ref(), &mut early) => {
                open?;
                let channel = offered.take().ok_or(P2pError::Failed)?;
                return Ok((channel, selected_path(pc, &remote_relays).await, early));
            }
            channel = &mut local.channel, if role == Role::Answerer => {
                let channel = channel.map_err(|_| P2pError::Failed)?;
                check_channel(&channel).await?;
                return Ok((channel, selected_path(pc, &remote_relays).await, Vec::new()));
            }
        }
    }
}

/// Applies the peer's offer (and answers it) or its answer.
async fn apply_description<S>(
    role: Role,
    session_id: &str,
    pc: &Arc<dyn PeerConnection>,
    sdp: String,
    signaling: &mut S,
) -> Result<(), P2pError>
where
    S: Signaling + ?Sized,
{
    match role {
        Role::Offerer => {
            pc.set_remote_description(RTCSessionDescription::answer(sdp)?)
                .await?;
        }
        Role::Answerer => {
            pc.set_remote_description(RTCSessionDescription::offer(sdp)?)
                .await?;
            let answer = pc.create_answer(None).await?;
            let sdp = answer.sdp.clone();
            pc.set_local_description(answer).await?;
            let description = SessionDescription {
                r#type: SdpType::Answer as i32,
                sdp,
            };
            signaling
                .send(signal(session_id, Signal::Description(description)))
                .await?;
        }
    }
    Ok(())
}

/// Adds a peer candidate; one the stack cannot use (another transport, an mDNS name) is
/// skipped — the others may still connect.
async fn add_candidate(pc: &Arc<dyn PeerConnection>, candidate: IceCandidate) {
    if let Err(err) = pc.add_ice_candidate(from_proto(candidate)).await {
        tracing::debug!(error = %err, "peer ICE candidate skipped");
    }
}
