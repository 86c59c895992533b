//! The gRPC face of the revocation service: requests in, [`Registry`] decides,
//! statuses out.
//!
//! Kept thin on purpose: messages become [`crate::model`] types and back in
//! [`crate::convert`] (which checks their shape), the logic lives in
//! [`crate::registry`], errors become statuses only through
//! [`IntoStatus::into_status`] (the runtime's mapping, plus OUT_OF_RANGE), the call's
//! deadline is handed to the identity call it waits on, and Watch's model events are
//! turned into messages (and its ending error into a status) as they are sent.

use std::pin::Pin;
use std::sync::Arc;

use citypass_proto::v1::TargetKind;
use citypass_proto::v1::revocation_service_server::{RevocationService, RevocationServiceServer};
use citypass_proto::v1::{
    GetRevocationSnapshotRequest, GetRevocationSnapshotResponse, ListRevocationsRequest,
    ListRevocationsResponse, ReinstateRequest, ReinstateResponse, RevokeRequest, RevokeResponse,
    WatchRevocationsRequest, WatchRevocationsResponse,
};
use citypass_runtime::{Caller, Deadline, IntoStatus, Principal, Role};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::registry::Registry;

/// A Watch stream's messages, as tonic sends them.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchRevocationsResponse, Status>> + Send>>;

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

/// The view of the log `request`'s caller gets: audit fields only for operators who
/// answer for the log (`auditor`, `revoker`); services and gates get the minimal view.
fn view_of<T>(request: &Request<T>) -> convert::View {
    let principal = Caller::of(request).and_then(|caller| caller.principal.as_deref());
    match principal {
        Some(Principal::Operator { roles, .. })
            if roles.contains(&Role::Auditor) || roles.contains(&Role::Revoker) =>
        {
            convert::View::Audit
        }
        _ => convert::View::Minimal,
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
        let request =
            convert::revoke_request(request.into_inner()).map_err(IntoStatus::into_status)?;
        self.revocations
            .revoke(request, actor, deadline)
            .await
            .map(|revoked| Response::new(convert::revoke_response(&revoked)))
            .map_err(IntoStatus::into_status)
    }

    async fn reinstate(
        &self,
        request: Request<ReinstateRequest>,
    ) -> Result<Response<ReinstateResponse>, Status> {
        let actor = operator_with(&request, Role::Revoker)?;
        let request =
            convert::reinstate_request(request.into_inner()).map_err(IntoStatus::into_status)?;
        self.revocations
            .reinstate(request, actor)
            .await
            .map(|record| Response::new(convert::reinstate_response(&record)))
            .map_err(IntoStatus::into_status)
    }

    async fn list_revocations(
        &self,
        request: Request<ListRevocationsRequest>,
    ) -> Result<Response<ListRevocationsResponse>, Status> {
        let view = view_of(&request);
        let query = convert::list_query(request.get_ref()).map_err(IntoStatus::into_status)?;
        self.revocations
            .list(query)
            .await
            .map(|page| Response::new(convert::list_response(&page, view)))
            .map_err(IntoStatus::into_status)
    }

    type WatchRevocationsStream = WatchStream;

    async fn watch_revocations(
        &self,
        request: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let view = view_of(&request);
        let events = self
            .revocations
            .watch(request.get_ref().since_epoch)
            .await
            .map_err(IntoStatus::into_status)?;
        let messages = events.map(move |event| {
            event
                .map(|event| convert::watch_response(&event, view))
                .map_err(IntoStatus::into_status)
        });
        Ok(Response::new(Box::pin(messages)))
    }

    async fn get_revocation_snapshot(
        &self,
        request: Request<GetRevocationSnapshotRequest>,
    ) -> Result<Response<GetRevocationSnapshotResponse>, Status> {
        let kinds = convert::snapshot_kinds(request.get_ref()).map_err(IntoStatus::into_status)?;
        self.revocations
            .snapshot(kinds)
            .await
            .map(|snapshot| Response::new(convert::snapshot_response(snapshot)))
            .map_err(IntoStatus::into_status)
    }
}
