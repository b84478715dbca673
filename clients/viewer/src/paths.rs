//! Choosing the session's path on the viewer (SPEC §5 step 5): a DataChannel over ICE first
//! (direct when the NATs allow it, else through the relay's TURN server), signaled through
//! rendezvous; the WebSocket relay when that does not connect within the deadline. `--path`
//! forces one path, and then a failure is an error instead of a fallback.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tucdesk_p2p::{Signaling, SignalingError};
use tucdesk_proto::v1::{ConnectivityInfo, IceConfig, Path, SessionSignal, Side};
use tucdesk_transport::MessagePipe;

use crate::api::Api;
use crate::open::{OpenError, SessionSpec};

/// Signals queued towards rendezvous (one description, at most 64 candidates, the end).
const OUTBOUND_SIGNALS: usize = 80;

type SignalCall =
    Pin<Box<dyn Future<Output = Result<Streaming<SessionSignal>, tonic::Status>> + Send>>;

/// The viewer's end of ICE signaling: OperatorService.SessionSignals. Rendezvous answers the
/// call only after the first signal (which names the session), so the call is awaited on the
/// first send.
struct RendezvousSignaling {
    outbound: mpsc::Sender<SessionSignal>,
    call: Option<SignalCall>,
    inbound: Option<Streaming<SessionSignal>>,
}

#[async_trait::async_trait]
impl Signaling for RendezvousSignaling {
    async fn send(&mut self, signal: SessionSignal) -> Result<(), SignalingError> {
        self.outbound
            .send(signal)
            .await
            .map_err(|_| SignalingError::Closed)?;
        if let Some(call) = self.call.take() {
            let stream = call
                .await
                .map_err(|status| SignalingError::Failed(status.message().to_owned()))?;
            self.inbound = Some(stream);
        }
        Ok(())
    }

    async fn recv(&mut self) -> Result<Option<SessionSignal>, SignalingError> {
        match self.inbound.as_mut() {
            Some(stream) => stream
                .message()
                .await
                .map_err(|status| SignalingError::Failed(status.message().to_owned())),
            // Nothing sent yet, so nothing can come back.
            None => std::future::pending().await,
        }
    }
}

/// The ICE configuration for the requested path: forcing `direct` drops the TURN servers so
/// only host and server-reflexive candidates exist (rendezvous already restricts a forced
/// `turn` to relay candidates).
fn ice_for(path: Path, ice: &IceConfig) -> IceConfig {
    let mut ice = ice.clone();
    if path == Path::Direct {
        ice.servers.retain(|server| {
            server
                .urls
                .iter()
                .all(|url| !url.starts_with("turn:") && !url.starts_with("turns:"))
        });
    }
    ice
}

/// Connects the session's pipe over the path `spec` asks for; `progress` tells the user when
/// `auto` falls back.
pub async fn connect(
    api: &mut Api,
    session_id: &str,
    connectivity: &ConnectivityInfo,
    spec: &SessionSpec,
    progress: &impl Fn(&str),
) -> Result<Arc<dyn MessagePipe>, OpenError> {
    let wanted = spec.path;
    if matches!(wanted, Path::Unspecified | Path::Direct | Path::Turn) {
        match try_ice(api, session_id, connectivity, spec).await {
            Ok(pipe) => return Ok(pipe),
            Err(why) if wanted == Path::Unspecified => {
                progress(&format!(
                    "no direct or TURN connection ({why}); using the WebSocket relay"
                ));
            }
            Err(why) => {
                return Err(OpenError::Transport(format!(
                    "the {} path did not connect: {why}",
                    tucdesk_transport::path_name(wanted)
                )));
            }
        }
    }
    let relay = connectivity
        .relay
        .as_ref()
        .ok_or_else(|| OpenError::Transport("rendezvous named no relay".into()))?;
    let pipe = tucdesk_transport::dial_relay(relay, session_id, Side::Operator, &spec.dial)
        .await
        .map_err(|err| OpenError::Transport(format!("WebSocket relay: {err}")))?;
    Ok(Arc::new(pipe))
}

async fn try_ice(
    api: &mut Api,
    session_id: &str,
    connectivity: &ConnectivityInfo,
    spec: &SessionSpec,
) -> Result<Arc<dyn MessagePipe>, String> {
    let ice = connectivity
        .ice
        .as_ref()
        .ok_or("rendezvous sent no ICE configuration")?;
    let ice = ice_for(spec.path, ice);
    let (outbound, queued) = mpsc::channel(OUTBOUND_SIGNALS);
    let mut request = api
        .request(ReceiverStream::new(queued))
        .await
        .map_err(|err| err.to_string())?;
    request.set_timeout(spec.p2p.connect_deadline);
    let mut client = api.rendezvous();
    let call: SignalCall = Box::pin(async move {
        client
            .session_signals(request)
            .await
            .map(tonic::Response::into_inner)
    });
    let mut signaling = RendezvousSignaling {
        outbound,
        call: Some(call),
        inbound: None,
    };
    let pipe = tucdesk_p2p::dial(session_id, &ice, &spec.p2p, &mut signaling)
        .await
        .map_err(|err| err.to_string())?;
    if spec.path == Path::Direct && pipe.path() != Path::Direct {
        return Err("connected only through TURN".into());
    }
    Ok(Arc::new(pipe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tucdesk_proto::v1::IceServer;

    #[test]
    fn forcing_direct_drops_turn_servers_only() {
        let server = |url: &str| IceServer {
            urls: vec![url.to_owned()],
            ..Default::default()
        };
        let ice = IceConfig {
            servers: vec![
                server("stun:127.0.0.1:7421"),
                server("turn:127.0.0.1:3478?transport=udp"),
                server("turns:relay.example:5349"),
            ],
            ..Default::default()
        };
        let direct = ice_for(Path::Direct, &ice);
        assert_eq!(direct.servers.len(), 1);
        assert_eq!(direct.servers[0].urls[0], "stun:127.0.0.1:7421");
        assert_eq!(ice_for(Path::Unspecified, &ice).servers.len(), 3);
        assert_eq!(ice_for(Path::Turn, &ice).servers.len(), 3);
    }
}
