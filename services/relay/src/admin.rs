//! RelayAdmin: status and drain of one node, for operations tooling holding a service
//! assertion addressed to this node's id (never a user's token).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tucdesk_proto::v1::relay_admin_server::RelayAdmin;
use tucdesk_proto::v1::{DrainRequest, RelayStatus, RelayStatusRequest};

use crate::service::Relay;

/// Drain deadline when the request names none.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(10 * 60);
/// Longest drain deadline accepted.
pub const MAX_DRAIN_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone)]
pub struct RelayAdminGrpc {
    relay: Relay,
}

impl RelayAdminGrpc {
    pub fn new(relay: Relay) -> Self {
        Self { relay }
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let token = request
            .metadata()
            .get(tucdesk_proto::metadata::SERVICE_ASSERTION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("a service assertion is required"))?;
        self.relay
            .inner
            .service_keys
            .verify(
                token,
                &self.relay.config().node_id,
                tucdesk_token::unix_now(),
            )
            .map(|claims| claims.iss)
            .map_err(|err| {
                tracing::warn!(error = %err, "relay admin assertion refused");
                Status::unauthenticated("the service assertion is invalid")
            })
    }

    fn status(&self) -> RelayStatus {
        RelayStatus {
            heartbeat: Some(self.relay.heartbeat(0, 0)),
            drain_deadline_ms: self.relay.inner.drain_deadline_ms.load(Ordering::Relaxed),
            rejected_connections: self.relay.stats().rejected.load(Ordering::Relaxed),
        }
    }
}

#[tonic::async_trait]
impl RelayAdmin for RelayAdminGrpc {
    async fn status(
        &self,
        request: Request<RelayStatusRequest>,
    ) -> Result<Response<RelayStatus>, Status> {
        self.authenticate(&request)?;
        Ok(Response::new(self.status()))
    }

    async fn drain(&self, request: Request<DrainRequest>) -> Result<Response<RelayStatus>, Status> {
        let caller = self.authenticate(&request)?;
        let body = request.get_ref();
        if !body.drain {
            return Err(Status::failed_precondition(
                "a node that started draining restarts to serve again",
            ));
        }
        let deadline = match body.deadline_seconds {
            0 => DEFAULT_DRAIN_DEADLINE,
            secs => Duration::from_secs(u64::from(secs)).min(MAX_DRAIN_DEADLINE),
        };
        tracing::info!(
            caller,
            deadline_secs = deadline.as_secs(),
            "drain requested"
        );
        self.relay.drain(deadline);
        Ok(Response::new(self.status()))
    }
}
