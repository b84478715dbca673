//! The tonic service: a thin adapter from gRPC to [`Audit`] methods. Every call is
//! authenticated first ([`AccessVerifier::caller`]); errors map to `Status` in one place
//! ([`AuditError`] → `Status`).

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use tucdesk_proto::v1::audit_service_server::{AuditService, AuditServiceServer};
use tucdesk_proto::v1::*;

use crate::caller::{AccessVerifier, Caller};
use crate::error::{AuditError, reason_label};
use crate::service::Audit;

/// The AuditService implementation.
#[derive(Debug, Clone)]
pub struct AuditGrpc {
    audit: Audit,
    access: AccessVerifier,
    /// Ends running exports when the server shuts down.
    shutdown: CancellationToken,
}

impl AuditGrpc {
    pub fn new(audit: Audit, access: AccessVerifier, shutdown: CancellationToken) -> Self {
        Self {
            audit,
            access,
            shutdown,
        }
    }

    /// The tonic server, with request size bounded.
    pub fn into_server(self) -> AuditServiceServer<Self> {
        AuditServiceServer::new(self).max_decoding_message_size(crate::MAX_GRPC_MESSAGE)
    }

    /// Authenticates, runs `call`, counts the outcome.
    async fn handle<T, R, F, Fut>(
        &self,
        method: &'static str,
        request: Request<T>,
        call: F,
    ) -> Result<Response<R>, Status>
    where
        F: FnOnce(Caller, T) -> Fut,
        Fut: Future<Output = Result<R, AuditError>>,
    {
        let outcome = async {
            let caller = crate::caller::caller(&self.access, &request).await?;
            call(caller, request.into_inner()).await
        }
        .await;
        let label = match &outcome {
            Ok(_) => "ok".to_owned(),
            Err(err) => reason_label(err.reason()),
        };
        self.audit
            .metrics()
            .requests
            .with_label_values(&[method, &label])
            .inc();
        outcome.map(Response::new).map_err(Status::from)
    }
}

type GrpcResult<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AuditService for AuditGrpc {
    async fn query(&self, request: Request<QueryAuditRequest>) -> GrpcResult<QueryAuditResponse> {
        self.handle("query", request, |caller, req| async move {
            self.audit.query(&caller, &req).await
        })
        .await
    }

    async fn export(
        &self,
        request: Request<ExportAuditRequest>,
    ) -> GrpcResult<BoxStream<ExportItem>> {
        let shutdown = self.shutdown.clone();
        self.handle("export", request, |caller, req| async move {
            self.audit.export(&caller, &req, shutdown).await
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> GrpcResult<Checkpoint> {
        self.handle("get_checkpoint", request, |caller, req| async move {
            self.audit.get_checkpoint(&caller, &req).await
        })
        .await
    }

    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> GrpcResult<ListCheckpointsResponse> {
        self.handle("list_checkpoints", request, |caller, req| async move {
            self.audit.list_checkpoints(&caller, &req).await
        })
        .await
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> GrpcResult<InclusionProof> {
        self.handle("get_inclusion_proof", request, |caller, req| async move {
            self.audit.get_inclusion_proof(&caller, &req).await
        })
        .await
    }

    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> GrpcResult<ConsistencyProof> {
        self.handle("get_consistency_proof", request, |caller, req| async move {
            self.audit.get_consistency_proof(&caller, &req).await
        })
        .await
    }

    async fn list_signing_keys(
        &self,
        request: Request<ListSigningKeysRequest>,
    ) -> GrpcResult<ListSigningKeysResponse> {
        self.handle("list_signing_keys", request, |_caller, _req| async move {
            self.audit.list_signing_keys().await
        })
        .await
    }
}
