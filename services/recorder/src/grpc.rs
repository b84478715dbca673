//! The tonic service: a thin adapter from gRPC to [`Recorder`] methods. Upload and
//! GetUploadStatus are authenticated by the agent's signatures inside the request; List and
//! Get by an access token. Errors map to `Status` in one place ([`RecorderError`]).

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};
use tucdesk_proto::v1::recorder_service_server::{RecorderService, RecorderServiceServer};
use tucdesk_proto::v1::*;

use crate::caller::AccessVerifier;
use crate::error::{RecorderError, reason_label};
use crate::service::Recorder;

/// The RecorderService implementation.
#[derive(Debug, Clone)]
pub struct RecorderGrpc {
    recorder: Recorder,
    access: AccessVerifier,
    shutdown: CancellationToken,
}

type GrpcResult<T> = Result<Response<T>, Status>;

impl RecorderGrpc {
    pub fn new(recorder: Recorder, access: AccessVerifier, shutdown: CancellationToken) -> Self {
        Self {
            recorder,
            access,
            shutdown,
        }
    }

    /// The tonic server, with request size bounded.
    pub fn into_server(self) -> RecorderServiceServer<Self> {
        RecorderServiceServer::new(self)
            .max_decoding_message_size(tucdesk_proto::limits::MAX_GRPC_MESSAGE_LEN)
    }

    /// Runs `call`, counts the outcome.
    async fn counted<R, Fut>(&self, method: &'static str, call: Fut) -> GrpcResult<R>
    where
        Fut: Future<Output = Result<R, RecorderError>>,
    {
        let outcome = call.await;
        let label = match &outcome {
            Ok(_) => "ok".to_owned(),
            Err(err) => reason_label(err.reason()),
        };
        self.recorder
            .metrics()
            .requests
            .with_label_values(&[method, &label])
            .inc();
        outcome.map(Response::new).map_err(Status::from)
    }
}

#[tonic::async_trait]
impl RecorderService for RecorderGrpc {
    async fn upload(
        &self,
        request: Request<Streaming<UploadRequest>>,
    ) -> GrpcResult<UploadResponse> {
        let stream = request.into_inner();
        let recorder = self.recorder.clone();
        self.counted("upload", async move {
            let outcome = recorder.upload(stream).await;
            let label = match &outcome {
                Ok(done) if done.complete => "complete".to_owned(),
                Ok(_) => "partial".to_owned(),
                Err(err) => reason_label(err.reason()),
            };
            recorder
                .metrics()
                .uploads
                .with_label_values(&[&label])
                .inc();
            outcome
        })
        .await
    }

    async fn get_upload_status(
        &self,
        request: Request<GetUploadStatusRequest>,
    ) -> GrpcResult<UploadStatus> {
        let body = request.into_inner();
        self.counted("get_upload_status", self.recorder.upload_status(&body))
            .await
    }

    async fn list(
        &self,
        request: Request<ListRecordingsRequest>,
    ) -> GrpcResult<ListRecordingsResponse> {
        self.counted("list", async {
            let caller = crate::caller::caller(&self.access, &request).await?;
            self.recorder.list(&caller, request.get_ref()).await
        })
        .await
    }

    async fn get(
        &self,
        request: Request<GetRecordingRequest>,
    ) -> GrpcResult<BoxStream<GetRecordingResponse>> {
        self.counted("get", async {
            let caller = crate::caller::caller(&self.access, &request).await?;
            self.recorder
                .get(&caller, request.get_ref(), self.shutdown.clone())
                .await
                .map(|stream| Box::pin(stream) as BoxStream<GetRecordingResponse>)
        })
        .await
    }
}
