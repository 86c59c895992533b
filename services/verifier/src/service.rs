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

use crate::batch;
use crate::convert;
use crate::error::VerifierError;
use crate::fraud::FraudError;
use crate::model::{Answer, Scan};
use crate::upload::Uploads;
use crate::verify::{ReadScan, Verifier};

/// How many scans of one stream are decided at once (their signatures are batched
/// before, [`batch::MAX_BATCH`] at most at a time).
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

/// The span of one scan: the gate, and once known the scene, decision and reason.
fn scan_span(gate: &str) -> tracing::Span {
    tracing::info_span!(
        "verify",
        gate.id = gate,
        scene = tracing::field::Empty,
        decision = tracing::field::Empty,
        reason = tracing::field::Empty,
        idempotent_replay = tracing::field::Empty,
    )
}

/// The first half of one scan, in `span`: the request read and the code read up to
/// its signature ([`Verifier::read`]).
fn read(
    verifier: &Verifier,
    gate: &str,
    request: VerifyRequest,
    span: &tracing::Span,
) -> Result<(Scan, ReadScan), VerifierError> {
    let _in_span = span.enter();
    let scan = convert::scan(request)?;
    // At once, not with the decision: the lines logged while the scan is decided, and
    // a scan whose call is dropped half-way, carry it too.
    span.record("scene", scan.scene.name());
    let read = verifier.read(gate, &scan)?;
    Ok((scan, read))
}

/// The second half ([`Verifier::conclude`]) and the answer, in `span`.
async fn answer(
    verifier: &Verifier,
    scan: Scan,
    read: ReadScan,
    deadline: Option<Deadline>,
    span: tracing::Span,
) -> Result<VerifyResponse, VerifierError> {
    async {
        let answer = verifier.conclude(&scan, read, deadline).await?;
        record_decision(&tracing::Span::current(), &answer);
        Ok(convert::response(&answer, &scan.scan_id))
    }
    .instrument(span)
    .await
}

/// The decision's fields on the scan's span, in one record (each record costs every
/// layer a pass over the span's fields: `citypass_runtime::span_fields`).
fn record_decision(span: &tracing::Span, answer: &Answer) {
    let decision = if answer.allowed() { "allow" } else { "deny" };
    let reason = answer.refusal.as_ref().map(|refusal| refusal.code());
    citypass_runtime::span_fields::record(
        span,
        [
            ("decision", Some(&decision)),
            (
                "reason",
                reason.as_ref().map(|reason| reason as &dyn tracing::Value),
            ),
            ("idempotent_replay", Some(&answer.idempotent_replay)),
        ],
    );
}

/// One scan of a stream, between its batch and its answer.
enum Pending {
    /// The stream broke: it ends here.
    Broken(Status),
    /// Answered without a decision (what Verify would have refused).
    Unanswered(VerifyStreamResponse),
    /// Read, its signature possibly decided in the batch; the rest is to come.
    Read {
        scan: Scan,
        read: ReadScan,
        scan_id: String,
        span: tracing::Span,
    },
}

impl Pending {
    /// A stream message, read (see [`read`]).
    fn of(verifier: &Verifier, gate: &str, message: Result<VerifyStreamRequest, Status>) -> Self {
        let request = match message {
            Err(status) => return Pending::Broken(status),
            Ok(VerifyStreamRequest { request: None }) => {
                return Pending::Unanswered(unanswered(
                    String::new(),
                    &VerifierError::MissingRequest,
                ));
            }
            Ok(VerifyStreamRequest {
                request: Some(request),
            }) => request,
        };
        let scan_id = convert::echoed_scan_id(&request.scan_id);
        let span = scan_span(gate);
        match read(verifier, gate, request, &span) {
            Ok((scan, read)) => Pending::Read {
                scan,
                read,
                scan_id,
                span,
            },
            Err(err) => Pending::Unanswered(unanswered(scan_id, &err)),
        }
    }

    fn read_mut(&mut self) -> Option<&mut ReadScan> {
        match self {
            Pending::Read { read, .. } => Some(read),
            _ => None,
        }
    }

    /// The stream's answer.
    async fn answer(self, verifier: &Verifier) -> Result<VerifyStreamResponse, Status> {
        match self {
            Pending::Broken(status) => Err(status),
            Pending::Unanswered(response) => Ok(response),
            // Each scan is bounded by the replay store's own timeout; the stream's
            // deadline is the stream's, not a scan's.
            Pending::Read {
                scan,
                read,
                scan_id,
                span,
            } => Ok(match answer(verifier, scan, read, None, span).await {
                Ok(response) => VerifyStreamResponse {
                    response: Some(response),
                    error: None,
                },
                Err(err) => unanswered(scan_id, &err),
            }),
        }
    }
}

/// The messages that were waiting together on a stream, read, with their issuer
/// signatures decided as one batch ([`crate::batch`]).
fn read_batch(
    verifier: &Verifier,
    gate: &str,
    messages: Vec<Result<VerifyStreamRequest, Status>>,
) -> Vec<Pending> {
    let mut pending: Vec<Pending> = messages
        .into_iter()
        .map(|message| Pending::of(verifier, gate, message))
        .collect();
    batch::check_signatures(verifier, pending.iter_mut().filter_map(Pending::read_mut));
    pending
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
        let span = scan_span(&gate);
        let (scan, read) = read(&self.verifier, &gate, request.into_inner(), &span)
            .map_err(IntoStatus::into_status)?;
        answer(&self.verifier, scan, read, deadline, span)
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
        let concluding = self.verifier.clone();
        // `ready_chunks` hands over what is already waiting (never waits for more): a
        // batch under load, a lone scan at low load. A broken stream ends it; a bad
        // scan is answered and the rest go on.
        let responses = request
            .into_inner()
            .ready_chunks(batch::MAX_BATCH)
            .flat_map(move |messages| futures::stream::iter(read_batch(&verifier, &gate, messages)))
            .map(move |pending| {
                let verifier = concluding.clone();
                async move { pending.answer(&verifier).await }
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

    async fn verify_face(
        &self,
        request: Request<pb::VerifyFaceRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let deadline = Deadline::of(&request);
        let gate = gate_of(&request).map_err(IntoStatus::into_status)?;
        // The gate, the decision and the reason: never a score or the rider.
        let span = tracing::info_span!(
            "verify_face",
            gate.id = %gate,
            decision = tracing::field::Empty,
            reason = tracing::field::Empty,
            idempotent_replay = tracing::field::Empty,
        );
        async {
            let scan = convert::face_scan(request.into_inner())?;
            let answer = self.verifier.verify_face(&gate, &scan, deadline).await?;
            record_decision(&tracing::Span::current(), &answer);
            Ok(convert::response(&answer, &scan.scan_id))
        }
        .instrument(span)
        .await
        .map(Response::new)
        .map_err(|err: VerifierError| err.into_status())
    }
}
