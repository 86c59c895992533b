//! The gRPC face of the issuer: requests in, [`Issuance`] decides, statuses out.
//!
//! Kept thin on purpose: messages become [`crate::model`] types and back in
//! [`crate::convert`], the decisions live in [`crate::issuance`], errors become
//! statuses only through `citypass_runtime::to_status`, and the call's deadline (set by
//! the runtime's server stack) is handed to everything the call waits on.

use std::sync::Arc;

use citypass_proto::v1::issuer_service_server::{IssuerService, IssuerServiceServer};
use citypass_proto::v1::{
    GetKeySetRequest, GetKeySetResponse, IssueDeviceCertificateRequest,
    IssueDeviceCertificateResponse, IssueTokenRequest, IssueTokenResponse,
};
use citypass_runtime::{Deadline, IntoStatus};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::issuance::Issuance;

/// `citypass.v1.IssuerService` over an [`Issuance`].
#[derive(Debug, Clone)]
pub struct IssuerApi {
    issuance: Arc<Issuance>,
}

impl IssuerApi {
    /// The service for `issuance`.
    pub fn new(issuance: Issuance) -> Self {
        IssuerApi {
            issuance: Arc::new(issuance),
        }
    }

    /// The logic behind the service (for its keys, in tests and `citypass dev`).
    pub fn issuance(&self) -> &Arc<Issuance> {
        &self.issuance
    }

    /// The generated tonic server, ready for `citypass_runtime::Server::add_service`.
    pub fn into_server(self) -> IssuerServiceServer<IssuerApi> {
        IssuerServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl IssuerService for IssuerApi {
    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        let deadline = Deadline::of(&request);
        let request =
            convert::token_request(request.into_inner()).map_err(IntoStatus::into_status)?;
        self.issuance
            .issue_token(request, deadline)
            .await
            .map(|code| Response::new(convert::token_response(code)))
            .map_err(IntoStatus::into_status)
    }

    async fn issue_device_certificate(
        &self,
        request: Request<IssueDeviceCertificateRequest>,
    ) -> Result<Response<IssueDeviceCertificateResponse>, Status> {
        let deadline = Deadline::of(&request);
        let request =
            convert::certificate_request(request.into_inner()).map_err(IntoStatus::into_status)?;
        self.issuance
            .issue_device_certificate(request, deadline)
            .await
            .map(|certificate| Response::new(convert::certificate_response(certificate)))
            .map_err(IntoStatus::into_status)
    }

    async fn get_key_set(
        &self,
        _request: Request<GetKeySetRequest>,
    ) -> Result<Response<GetKeySetResponse>, Status> {
        Ok(Response::new(self.issuance.keys().current().to_response()))
    }
}
