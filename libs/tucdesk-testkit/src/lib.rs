//! TucDesk test harness, for tests and load tools only: the auth and rendezvous services
//! in-process on port 0 against the real Postgres, Redis and NATS of the machine or on the
//! embedded backends, people with device keys and tokens, and simulated agents that speak the
//! real protocol (registration proofs, signed handshake answers).
//!
//! Nothing here fakes a service: every call goes through the real gRPC servers.
#![forbid(unsafe_code)]

pub mod agent;
pub mod auth;
pub mod operator;
pub mod relay;
pub mod relay_node;
pub mod rendezvous;

pub use agent::{AgentLinkConn, SimAgent};
pub use auth::TestAuth;
pub use operator::Operator;
pub use rendezvous::{Deployment, TestRendezvous};

/// Which backends a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Postgres, Redis and NATS on this machine (production shape).
    Real,
    /// SQLite, in-process cache and bus (the standalone shape).
    Embedded,
}

/// Runs each named scenario against both backends, as two tests each.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Real).await;
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Embedded).await;
                }
            )*
        }
    };
}

/// The `RejectReason` a status carries.
pub fn reason(status: &tonic::Status) -> tucdesk_proto::v1::RejectReason {
    let detail: tucdesk_proto::v1::ErrorDetail =
        prost::Message::decode(status.details()).unwrap_or_default();
    tucdesk_proto::v1::RejectReason::try_from(detail.reason)
        .unwrap_or(tucdesk_proto::v1::RejectReason::Unspecified)
}

/// The `ErrorDetail` a status carries.
pub fn detail(status: &tonic::Status) -> tucdesk_proto::v1::ErrorDetail {
    prost::Message::decode(status.details()).unwrap_or_default()
}

/// Polls `check` every 50 ms until it is true or `timeout` passes; returns whether it became
/// true. For state that settles asynchronously (presence, delivery), never as a timing test.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
