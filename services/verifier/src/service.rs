//! The gRPC face of the verifier: requests in, [`Verifier`] decides, answers out.
//!
//! Thin on purpose: messages become [`crate::model`] types and back in
//! [`crate::convert`], the decision lives in [`crate::verify`], errors become statuses
//! only through `citypass_runtime::to_status`. The gate comes from the authenticated
//! certificate (the authorisation table admits only gates), never from the request
//! alone. Spans carry the gate, the scene, the decision and the reason: never the
//! code's text or anything about its holder.

use std::pin::Pin;
use std::sync::Arc;

use citypass_proto::v1 as pb;
use citypass_proto::v1::verifier_service_server::{VerifierService, VerifierServiceServer};
use citypass_proto::v1::{
    ListFraudSignalsRequest, ListFraudSignalsResponse, ScanError, UploadOfflineScansRequest,
    UploadOfflineScansResponse, VerifyRequest, VerifyResponse, VerifyStreamRequest,
    VerifyStreamResponse,
};
use citypass_runtime::{Caller, Deadline, IntoStatus, Principal, ServiceError as _, to_status};
use futures::StreamExt as _;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::convert;
use crate::error::VerifierError;
use crate::fraud::FraudError;
use crate::upload::Uploads;
use crate::verify::Verifier;

/// How many scans of one stream are decided at once.
pub const STREAM_CONCURRENCY: usize = 32;

/// The VerifyStream response stream.
pub type VerifyResponses = Pin<Box<dyn Stream<Item = Result<VerifyStreamResponse, Status>> + Send>>;

/// `citypass.v1.VerifierService` over a [`Verifier`].
#[derive(Debug, Clone)]
pub struct VerifierApi {
    verifier: Arc<Verifier>,
    uploads: Arc<Uploads>,
}

impl VerifierApi {
    /// The service for `verifier` and offline gates' `uploads`.
    pub fn new(verifier: Verifier, uploads: Uploads) -> Self {
        VerifierApi {
            verifier: Arc::new(verifier),
            uploads: Arc::new(uploads),
        }
    }

    /// The logic behind the service.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The generated tonic server, ready for `citypass_runtime::Server::add_service`.
    pub fn into_server(self) -> VerifierServiceServer<VerifierApi> {
        VerifierServiceServer::new(self)
    }
}

/// The authenticated gate of a call.
fn gate_of<T>(request: &Request<T>) -> Result<String, VerifierError> {
    match Caller::of(request).and_then(|caller| caller.principal.as_deref()) {
        Some(Principal::Gate(id)) => Ok(id.clone()),
        _ => Err(VerifierError::NotAGate),
    }
}

/// One scan, decided and answered, in a span of its own.
async fn decide(
    verifier: &Verifier,
    gate: &str,
    request: VerifyRequest,
    deadline: Option<Deadline>,
) -> Result<VerifyResponse, VerifierError> {
    let span = tracing::info_span!(
        "verify",
        gate.id = gate,
        scene = tracing::field::Empty,
        decision = tracing::field::Empty,
        reason = tracing::field::Empty,
        idempotent_replay = tracing::field::Empty,
    );
    async {
        let scan = convert::scan(request)?;
        let span = tracing::Span::current();
        span.record("scene", scan.scene.name());
        let answer = verifier.verify(gate, &scan, deadline).await?;
        span.record("decision", if answer.allowed() { "allow" } else { "deny" });
        if let Some(refusal) = &answer.refusal {
            span.record("reason", refusal.code());
        }
        span.record("idempotent_replay", answer.idempotent_replay);
        Ok(convert::response(&answer, &scan.scan_id))
    }
    .instrument(span)
    .await
}

/// The stream's answer for a scan Verify would have refused with `err`: the same code,
/// reason and message, as data, so that the stream goes on.
fn unanswered(scan_id: String, err: &VerifierError) -> VerifyStreamResponse {
    let status = to_status(err);
    VerifyStreamResponse {
        response: None,
        error: Some(ScanError {
            scan_id,
            code: status.code() as i32,
            reason: err.reason().to_owned(),
            message: status.message().to_owned(),
        }),
    }
}

#[tonic::async_trait]
impl VerifierService for VerifierApi {
    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let deadline = Deadline::of(&request);
        let gate = gate_of(&request).map_err(IntoStatus::into_status)?;
        decide(&self.verifier, &gate, request.into_inner(), deadline)
            .await
            .map(Response::new)
            .map_err(IntoStatus::into_status)
    }

    type VerifyStreamStream = VerifyResponses;

    async fn verify_stream(
        &self,
        request: Request<Streaming<VerifyStreamRequest>>,
    ) -> Result<Response<Self::VerifyStreamStream>, Status> {
        let gate = Arc::<str>::from(gate_of(&request).map_err(IntoStatus::into_status)?);
        let verifier = self.verifier.clone();
        let responses = request
            .into_inner()
            .map(move |message| {
                let (verifier, gate) = (verifier.clone(), gate.clone());
                async move {
                    // A broken stream ends it; a bad scan is answered and the rest go on.
                    let Some(request) = message?.request else {
                        return Ok(unanswered(String::new(), &VerifierError::MissingRequest));
                    };
                    let scan_id = convert::echoed_scan_id(&request.scan_id);
                    // Each scan is bounded by the replay store's own timeout; the
                    // stream's deadline is the stream's, not a scan's.
                    Ok(match decide(&verifier, &gate, request, None).await {
                        Ok(response) => VerifyStreamResponse {
                            response: Some(response),
                            error: None,
                        },
                        Err(err) => unanswered(scan_id, &err),
                    })
                }
            })
            .buffer_unordered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(responses)))
    }

    async fn upload_offline_scans(
        &self,
        request: Request<UploadOfflineScansRequest>,
    ) -> Result<Response<UploadOfflineScansResponse>, Status> {
        let deadline = Deadline::of(&request);
        let gate = gate_of(&request).map_err(IntoStatus::into_status)?;
        let span = tracing::info_span!("upload", gate.id = %gate, scans = tracing::field::Empty);
        async {
            let upload = convert::upload(request.into_inner())?;
            tracing::Span::current().record("scans", upload.scans.len());
            let results = self.uploads.upload(&gate, upload, deadline).await?;
            Ok(convert::upload_response(results))
        }
        .instrument(span)
        .await
        .map(Response::new)
        .map_err(|err: VerifierError| err.into_status())
    }

    async fn list_fraud_signals(
        &self,
        request: Request<ListFraudSignalsRequest>,
    ) -> Result<Response<ListFraudSignalsResponse>, Status> {
        let (size, token) =
            convert::signal_page(request.into_inner()).map_err(IntoStatus::into_status)?;
        match self.uploads.fraud().list(size, token).await {
            Ok(page) => Ok(Response::new(convert::signals_response(page))),
            Err(FraudError::BadPageToken) => Err(VerifierError::BadPageToken.into_status()),
            Err(err) => {
                tracing::warn!(error = %err, "fraud log unreadable");
                Err(VerifierError::FraudLogUnavailable.into_status())
            }
        }
    }

    async fn void_scan(
        &self,
        request: Request<pb::VoidScanRequest>,
    ) -> Result<Response<pb::VoidScanResponse>, Status> {
        let deadline = Deadline::of(&request);
        let gate = gate_of(&request).map_err(IntoStatus::into_status)?;
        let span =
            tracing::info_span!("void", gate.id = %gate, trip_voided = tracing::field::Empty);
        async {
            let void = convert::void_scan(request.into_inner())?;
            let voided = crate::void::void(&self.verifier, &gate, &void, deadline).await?;
            tracing::Span::current().record("trip_voided", voided.trip_voided);
            Ok(convert::void_response(voided))
        }
        .instrument(span)
        .await
        .map(Response::new)
        .map_err(|err: VerifierError| err.into_status())
    }
}
