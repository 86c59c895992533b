//! The gRPC face of the revocation service: requests in, [`Registry`] decides,
//! statuses out.
//!
//! Kept thin on purpose: the logic lives in [`crate::registry`], errors become
//! statuses only through [`Error::into_status`] (the runtime's mapping, plus
//! OUT_OF_RANGE), and the call's deadline is handed to the identity call it waits on.

use std::sync::Arc;

use citypass_proto::v1::TargetKind;
use citypass_proto::v1::revocation_service_server::{RevocationService, RevocationServiceServer};
use citypass_proto::v1::{
    ListRequest, ListResponse, ReinstateRequest, ReinstateResponse, RevokeRequest, RevokeResponse,
    SnapshotRequest, SnapshotResponse, WatchRequest,
};
use citypass_runtime::{Caller, Deadline, Principal, Role};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::Error;
use crate::registry::{Registry, WatchStream};

/// `citypass.v1.RevocationService` over [`Registry`].
#[derive(Debug, Clone)]
pub struct RevocationApi {
    revocations: Arc<Registry>,
}

impl RevocationApi {
    /// The service for `revocations`.
    pub fn new(revocations: Arc<Registry>) -> Self {
        RevocationApi { revocations }
    }

    /// The logic behind the service.
    pub fn revocations(&self) -> &Arc<Registry> {
        &self.revocations
    }

    /// The generated tonic server, ready for `citypass_runtime::Server::add_service`.
    pub fn into_server(self) -> RevocationServiceServer<RevocationApi> {
        RevocationServiceServer::new(self)
    }
}

/// The audit actor of a write: the authenticated operator (`operator:alice`), who must
/// hold `role`. The authorisation layer admitted the call for some role of the table;
/// a key revocation needs `key-admin`, the rest `revoker`.
fn operator_with<T>(request: &Request<T>, role: Role) -> Result<String, Status> {
    let principal = Caller::of(request).and_then(|caller| caller.principal.as_deref());
    match principal {
        Some(principal @ Principal::Operator { roles, .. }) if roles.contains(&role) => {
            Ok(principal.to_string())
        }
        Some(principal) => Err(Status::permission_denied(format!(
            "{principal} lacks the {role} role this target needs"
        ))),
        None => Err(Status::unauthenticated("an operator certificate is needed")),
    }
}

#[tonic::async_trait]
impl RevocationService for RevocationApi {
    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let deadline = Deadline::of(&request);
        let needed = if request.get_ref().target_kind == TargetKind::Key as i32 {
            Role::KeyAdmin
        } else {
            Role::Revoker
        };
        let actor = operator_with(&request, needed)?;
        let revoked = self
            .revocations
            .revoke(request.get_ref(), actor, deadline)
            .await
            .map_err(Error::into_status)?;
        Ok(Response::new(RevokeResponse {
            entry: Some(convert::entry(&revoked.entry)),
            cascaded: revoked.cascaded.iter().map(convert::entry).collect(),
        }))
    }

    async fn reinstate(
        &self,
        request: Request<ReinstateRequest>,
    ) -> Result<Response<ReinstateResponse>, Status> {
        let actor = operator_with(&request, Role::Revoker)?;
        let record = self
            .revocations
            .reinstate(request.get_ref(), actor)
            .await
            .map_err(Error::into_status)?;
        Ok(Response::new(ReinstateResponse {
            entry: Some(convert::entry(&record)),
        }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        self.revocations
            .list(request.get_ref())
            .await
            .map(Response::new)
            .map_err(Error::into_status)
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.revocations
            .watch(request.get_ref().since_epoch)
            .await
            .map(Response::new)
            .map_err(Error::into_status)
    }

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<SnapshotResponse>, Status> {
        self.revocations
            .snapshot(request.get_ref())
            .await
            .map(Response::new)
            .map_err(Error::into_status)
    }
}
