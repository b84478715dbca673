//! `/v1/pipe/{session_id}`: one side of a session presents its ticket in a `RelayHello`, is
//! paired with the other side, and from then on every binary message is a sealed session frame
//! forwarded unchanged. The relay never looks inside a frame.
//!
//! Backpressure: each direction reads the next message only after the previous one was handed
//! to the other socket, whose write buffer is bounded, so a slow reader slows its sender down
//! (through TCP) instead of growing the relay's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use tucdesk_proto::limits::{MAX_RELAY_HELLO_LEN, MAX_SEALED_FRAME_LEN};
use tucdesk_proto::v1::relay_control::Kind;
use tucdesk_proto::v1::{
    RejectReason, RelayCloseCode, RelayControl, RelayHello, RelayPaired, RelayRejected,
    RelayWaiting, Side as WireSide,
};
use tucdesk_token::Side;

use crate::limits::TokenBucket;
use crate::pairing::{Arrival, Joined};
use crate::service::Relay;

/// How long a new connection may take to send its `RelayHello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing a socket may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A refusal before pairing.
struct Refusal {
    code: RelayCloseCode,
    reason: RejectReason,
    message: &'static str,
    min_protocol_version: u32,
}

impl Refusal {
    fn new(code: RelayCloseCode, reason: RejectReason, message: &'static str) -> Self {
        Self {
            code,
            reason,
            message,
            min_protocol_version: 0,
        }
    }
}

fn control(kind: Kind) -> Message {
    Message::Binary(RelayControl { kind: Some(kind) }.encode_to_vec().into())
}

async fn close(socket: &mut WebSocket, code: RelayCloseCode, reason: &str) {
    let frame = CloseFrame {
        code: code as u16,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

async fn refuse(relay: &Relay, mut socket: WebSocket, refusal: Refusal) {
    relay.inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
    relay
        .metrics()
        .rejected
        .with_label_values(&[refusal
            .code
            .as_str_name()
            .trim_start_matches("RELAY_CLOSE_CODE_")])
        .inc();
    let rejected = control(Kind::Rejected(RelayRejected {
        reason: refusal.reason as i32,
        message: refusal.message.to_owned(),
        min_protocol_version: refusal.min_protocol_version,
    }));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(rejected)).await;
    close(&mut socket, refusal.code, refusal.message).await;
}

/// Reads and checks the hello; the side and protocol version it names.
async fn hello(
    relay: &Relay,
    socket: &mut WebSocket,
    session_id: &str,
) -> Result<(Side, u32), Refusal> {
    use RejectReason as R;
    use RelayCloseCode as C;
    let first = tokio::time::timeout(HELLO_TIMEOUT, socket.recv())
        .await
        .map_err(|_| {
            Refusal::new(
                C::ProtocolError,
                R::ProtocolViolation,
                "no RelayHello within 10 s",
            )
        })?;
    let bytes = match first {
        Some(Ok(Message::Binary(bytes))) if bytes.len() <= MAX_RELAY_HELLO_LEN => bytes,
        _ => {
            return Err(Refusal::new(
                C::ProtocolError,
                R::ProtocolViolation,
                "the first message must be a binary RelayHello of at most 8 KiB",
            ));
        }
    };
    let hello = RelayHello::decode(bytes).map_err(|_| {
        Refusal::new(
            C::ProtocolError,
            R::InvalidArgument,
            "RelayHello does not decode",
        )
    })?;
    let (side, floor) = match WireSide::try_from(hello.side) {
        Ok(WireSide::Operator) => (Side::Operator, tucdesk_proto::MIN_CLIENT_PROTOCOL_VERSION),
        Ok(WireSide::Agent) => (Side::Agent, tucdesk_proto::MIN_AGENT_PROTOCOL_VERSION),
        _ => {
            return Err(Refusal::new(
                C::ProtocolError,
                R::InvalidArgument,
                "side must be operator or agent",
            ));
        }
    };
    if hello.protocol_version < floor {
        return Err(Refusal {
            min_protocol_version: floor,
            ..Refusal::new(C::UpdateRequired, R::UpdateRequired, "update required")
        });
    }
    if hello.session_id != session_id {
        return Err(Refusal::new(
            C::ProtocolError,
            R::InvalidArgument,
            "the hello names another session than the URL",
        ));
    }
    if relay.is_draining() {
        return Err(Refusal::new(
            C::Draining,
            R::Unavailable,
            "this relay is draining; use another",
        ));
    }
    // Checked before the ticket is spent, so a side refused for capacity can retry with it.
    let stats = &relay.inner.stats;
    if stats.active_sessions.load(Ordering::Relaxed) >= relay.config().max_sessions
        || stats.waiting.load(Ordering::Relaxed) >= relay.config().max_waiting
    {
        return Err(Refusal::new(
            C::RateLimited,
            R::LimitExceeded,
            "this relay is full; use another",
        ));
    }
    relay
        .inner
        .tickets
        .redeem(&hello.ticket, session_id, side)
        .await
        .map_err(|refused| {
            relay
                .metrics()
                .tickets_refused
                .with_label_values(&[refused.label()])
                .inc();
            Refusal::new(
                C::TicketInvalid,
                refused.reason(),
                "the relay ticket is not valid here",
            )
        })?;
    Ok((side, hello.protocol_version))
}

/// Serves one WebSocket connection to its end.
pub async fn serve(relay: Relay, session_id: String, mut socket: WebSocket) {
    // The phases are boxed so that an established session's task holds only the forwarding
    // state, not the largest of every phase's futures.
    let (side, protocol_version) = match Box::pin(hello(&relay, &mut socket, &session_id)).await {
        Ok(checked) => checked,
        Err(refusal) => return Box::pin(refuse(&relay, socket, refusal)).await,
    };
    let stats = &relay.inner.stats;
    let arrival = Arrival {
        socket,
        side,
        protocol_version,
    };
    match relay.inner.room.join(&session_id, arrival) {
        Joined::Handed => {}
        Joined::Occupied(arrival, message) => {
            let refusal = Refusal::new(
                RelayCloseCode::ProtocolError,
                RejectReason::AlreadyExists,
                message,
            );
            Box::pin(refuse(&relay, arrival.socket, refusal)).await;
        }
        Joined::First { id, peer, own } => {
            stats.waiting.fetch_add(1, Ordering::Relaxed);
            let paired = Box::pin(wait_for_peer(&relay, &session_id, id, peer, *own)).await;
            stats.waiting.fetch_sub(1, Ordering::Relaxed);
            if let Some((first, second)) = paired {
                forward(&relay, &session_id, first, second).await;
                relay.inner.room.end(&session_id);
            }
        }
    }
}

/// Waits (bounded) for the other side; `None` after giving up.
async fn wait_for_peer(
    relay: &Relay,
    session_id: &str,
    id: u64,
    peer: tokio::sync::oneshot::Receiver<Arrival>,
    mut own: Arrival,
) -> Option<(Arrival, Arrival)> {
    let timeout = relay.config().pairing_timeout;
    let waiting = control(Kind::Waiting(RelayWaiting {
        timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
    }));
    if own.socket.send(waiting).await.is_err() {
        relay.inner.room.leave(session_id, id);
        return None;
    }
    let outcome = tokio::select! {
        arrived = peer => arrived.ok(),
        () = tokio::time::sleep(timeout) => None,
        () = relay.inner.draining.cancelled() => None,
        // Before pairing, the only thing a side may send is a close.
        _ = own.socket.recv() => None,
    };
    if outcome.is_none() {
        relay.inner.room.leave(session_id, id);
        let code = if relay.is_draining() {
            RelayCloseCode::Draining
        } else {
            RelayCloseCode::PairingTimeout
        };
        close(&mut own.socket, code, "the other side did not arrive").await;
    }
    outcome.map(|other| (own, other))
}

/// Why forwarding stopped, and who caused it.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// One side closed or vanished.
    Gone,
    TooLarge,
    Flood,
    Idle,
    ProtocolError,
    Draining,
}

impl Stop {
    fn codes(self) -> (RelayCloseCode, RelayCloseCode) {
        // (to the side that caused it, to the other side)
        match self {
            Stop::Gone => (RelayCloseCode::PeerGone, RelayCloseCode::PeerGone),
            Stop::TooLarge => (RelayCloseCode::FrameTooLarge, RelayCloseCode::PeerGone),
            Stop::Flood => (RelayCloseCode::RateLimited, RelayCloseCode::PeerGone),
            Stop::Idle => (RelayCloseCode::IdleTimeout, RelayCloseCode::IdleTimeout),
            Stop::ProtocolError => (RelayCloseCode::ProtocolError, RelayCloseCode::PeerGone),
            Stop::Draining => (RelayCloseCode::Draining, RelayCloseCode::Draining),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Stop::Gone => "peer_gone",
            Stop::TooLarge => "frame_too_large",
            Stop::Flood => "rate_limited",
            Stop::Idle => "idle_timeout",
            Stop::ProtocolError => "protocol_error",
            Stop::Draining => "draining",
        }
    }
}

/// Last activity of a session in ms since its start, shared by both directions (a one-way
/// stream is not idle).
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

async fn forward(relay: &Relay, session_id: &str, first: Arrival, second: Arrival) {
    let stats = &relay.inner.stats;
    stats.active_sessions.fetch_add(1, Ordering::Relaxed);
    relay
        .metrics()
        .sessions
        .with_label_values(&["paired"])
        .inc();
    let (mut a_tx, a_rx) = first.socket.split();
    let (mut b_tx, b_rx) = second.socket.split();
    let to_a = control(Kind::Paired(RelayPaired {
        peer_protocol_version: second.protocol_version,
    }));
    let to_b = control(Kind::Paired(RelayPaired {
        peer_protocol_version: first.protocol_version,
    }));
    let started = a_tx.send(to_a).await.is_ok() && b_tx.send(to_b).await.is_ok();
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    if started {
        tracing::debug!(session_id, "relay session paired");
        let (stop, caused_by_a) = tokio::select! {
            stop = pump(relay, a_rx, &mut b_tx, &activity) => (stop, true),
            stop = pump(relay, b_rx, &mut a_tx, &activity) => (stop, false),
        };
        let (to_culprit, to_other) = stop.codes();
        let (a_code, b_code) = if caused_by_a {
            (to_culprit, to_other)
        } else {
            (to_other, to_culprit)
        };
        let _ = tokio::join!(close_sink(&mut a_tx, a_code), close_sink(&mut b_tx, b_code));
        relay
            .metrics()
            .sessions
            .with_label_values(&[stop.label()])
            .inc();
        tracing::debug!(session_id, reason = stop.label(), "relay session ended");
    }
    stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
}

async fn close_sink(sink: &mut SplitSink<WebSocket, Message>, code: RelayCloseCode) {
    let frame = CloseFrame {
        code: code as u16,
        reason: code.as_str_name().into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

/// Forwards one direction until something stops it.
async fn pump(
    relay: &Relay,
    mut from: SplitStream<WebSocket>,
    to: &mut SplitSink<WebSocket, Message>,
    activity: &Activity,
) -> Stop {
    let config = relay.config();
    let mut bucket = TokenBucket::new(config.session_bytes_per_sec, config.session_burst_bytes);
    let node_limited = config.node_bytes_per_sec > 0;
    let session_limited = config.session_bytes_per_sec > 0;
    let mut throttled_since: Option<Instant> = None;
    let idle = config.idle_timeout;
    // One timer and one drain future for the life of the direction, not one per message: the
    // timer is only re-armed when it fires, to the moment the session would turn idle.
    let idle_check = tokio::time::sleep(idle);
    tokio::pin!(idle_check);
    let drain_deadline = relay.inner.drain_deadline_passed.cancelled();
    tokio::pin!(drain_deadline);
    loop {
        let next = tokio::select! {
            next = from.next() => next,
            () = &mut idle_check => {
                let idle_for = activity.idle_for();
                if idle_for >= idle {
                    return Stop::Idle;
                }
                idle_check.as_mut().reset(tokio::time::Instant::now() + (idle - idle_for));
                continue;
            }
            () = &mut drain_deadline => return Stop::Draining,
        };
        let data = match next {
            Some(Ok(Message::Binary(data))) => data,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                activity.touch();
                continue;
            }
            Some(Ok(Message::Text(_))) => return Stop::ProtocolError,
            Some(Ok(Message::Close(_))) | None => return Stop::Gone,
            Some(Err(err)) => return classify(err),
        };
        // tungstenite already refuses frames larger than the limit from their header, before
        // reading them; this catches a message assembled from fragments.
        if data.len() > MAX_SEALED_FRAME_LEN {
            return Stop::TooLarge;
        }
        activity.touch();
        let len = data.len();
        relay
            .inner
            .stats
            .bytes_in
            .fetch_add(len as u64, Ordering::Relaxed);
        #[cfg(feature = "tap")]
        if let Some(tap) = relay
            .inner
            .tap
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            tap(&data);
        }
        let now = Instant::now();
        // An unlimited bucket is skipped: the node's is shared by every session, and its lock
        // would otherwise be the one point all forwarding goes through.
        let session_wait = if session_limited {
            bucket.take(len, now)
        } else {
            Duration::ZERO
        };
        let node_wait = if node_limited {
            relay.inner.node_bucket.take(len, now)
        } else {
            Duration::ZERO
        };
        let wait = session_wait.max(node_wait);
        if wait.is_zero() {
            throttled_since = None;
        } else {
            let since = *throttled_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= config.flood_grace {
                return Stop::Flood;
            }
            relay.metrics().throttled.inc();
            tokio::time::sleep(wait).await;
        }
        if to.send(Message::Binary(data)).await.is_err() {
            return Stop::Gone;
        }
        relay
            .inner
            .stats
            .bytes_out
            .fetch_add(len as u64, Ordering::Relaxed);
    }
}

fn classify(err: axum::Error) -> Stop {
    // A capacity error is tungstenite refusing a frame or message over the configured maximum
    // (from its header, before reading it); anything else is a broken connection.
    match err
        .into_inner()
        .downcast::<tokio_tungstenite::tungstenite::Error>()
    {
        Ok(inner) if matches!(*inner, tokio_tungstenite::tungstenite::Error::Capacity(_)) => {
            Stop::TooLarge
        }
        _ => Stop::Gone,
    }
}
