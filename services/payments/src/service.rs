//! The gRPC face of the payments service: requests in, [`Payments`] decides, statuses
//! out. Kept thin: messages become model types and back in [`crate::convert`], errors
//! become statuses only through [`IntoStatus::into_status`] (with their ErrorInfo
//! reason).
//!
//! Built in this increment: TapIn and TapOut, for the verifier. The citizen's calls
//! (LinkAccount, UnlinkAccount, GetLink, GetTrips, GetArrears, RepayArrears) must be
//! signed by the citizen's bound device and mapped from the device to its transit
//! account at identity; until that check is built they answer UNIMPLEMENTED, whatever
//! the request (the logic behind them, [`Payments`], is built and tested).

use citypass_proto::v1;
use citypass_proto::v1::payments_service_server::{PaymentsService, PaymentsServiceServer};
use citypass_runtime::IntoStatus;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::payments::{Payments, Tapped};

/// `citypass.v1.PaymentsService` over [`Payments`].
#[derive(Clone)]
pub struct PaymentsApi {
    payments: Payments,
    max_clock_skew: std::time::Duration,
}

impl PaymentsApi {
    /// The service for `payments`.
    /// Taps whose `tapped_at` is more than `max_clock_skew` from the server's clock
    /// are refused.
    pub fn new(payments: Payments, max_clock_skew: std::time::Duration) -> Self {
        PaymentsApi {
            payments,
            max_clock_skew,
        }
    }

    /// The logic behind the service.
    pub fn payments(&self) -> &Payments {
        &self.payments
    }

    /// The generated tonic server, ready for `citypass_runtime::Server::add_service`.
    pub fn into_server(self) -> PaymentsServiceServer<PaymentsApi> {
        PaymentsServiceServer::new(self)
    }
}

fn citizen_calls_not_built() -> Status {
    Status::unimplemented(
        "citizen calls to the payments service (device-signed) are not built yet: link, trips and arrears come in the next increment",
    )
}

#[tonic::async_trait]
impl PaymentsService for PaymentsApi {
    async fn tap_in(
        &self,
        request: Request<v1::TapInRequest>,
    ) -> Result<Response<v1::TapInResponse>, Status> {
        let clock = convert::Clock::now(self.max_clock_skew);
        let tap = convert::tap_in(request.into_inner(), &clock).map_err(IntoStatus::into_status)?;
        let response = match self
            .payments
            .tap_in(tap)
            .await
            .map_err(IntoStatus::into_status)?
        {
            Tapped::Trip(trip) => {
                let view = self
                    .payments
                    .trip_view(*trip)
                    .await
                    .map_err(IntoStatus::into_status)?;
                v1::TapInResponse {
                    trip: Some(convert::trip(&view).map_err(IntoStatus::into_status)?),
                    refusal: v1::TapRefusal::Unspecified as i32,
                }
            }
            Tapped::Refused(refusal) => v1::TapInResponse {
                trip: None,
                refusal: convert::refusal(refusal) as i32,
            },
        };
        Ok(Response::new(response))
    }

    async fn tap_out(
        &self,
        request: Request<v1::TapOutRequest>,
    ) -> Result<Response<v1::TapOutResponse>, Status> {
        let clock = convert::Clock::now(self.max_clock_skew);
        let tap =
            convert::tap_out(request.into_inner(), &clock).map_err(IntoStatus::into_status)?;
        let trip = self
            .payments
            .tap_out(tap)
            .await
            .map_err(IntoStatus::into_status)?;
        let view = self
            .payments
            .trip_view(trip)
            .await
            .map_err(IntoStatus::into_status)?;
        Ok(Response::new(v1::TapOutResponse {
            trip: Some(convert::trip(&view).map_err(IntoStatus::into_status)?),
        }))
    }

    async fn link_account(
        &self,
        _request: Request<v1::LinkAccountRequest>,
    ) -> Result<Response<v1::LinkAccountResponse>, Status> {
        Err(citizen_calls_not_built())
    }

    async fn unlink_account(
        &self,
        _request: Request<v1::UnlinkAccountRequest>,
    ) -> Result<Response<v1::UnlinkAccountResponse>, Status> {
        Err(citizen_calls_not_built())
    }

    async fn get_link(
        &self,
        _request: Request<v1::GetLinkRequest>,
    ) -> Result<Response<v1::GetLinkResponse>, Status> {
        Err(citizen_calls_not_built())
    }

    async fn get_trips(
        &self,
        _request: Request<v1::GetTripsRequest>,
    ) -> Result<Response<v1::GetTripsResponse>, Status> {
        Err(citizen_calls_not_built())
    }

    async fn get_arrears(
        &self,
        _request: Request<v1::GetArrearsRequest>,
    ) -> Result<Response<v1::GetArrearsResponse>, Status> {
        Err(citizen_calls_not_built())
    }

    async fn repay_arrears(
        &self,
        _request: Request<v1::RepayArrearsRequest>,
    ) -> Result<Response<v1::RepayArrearsResponse>, Status> {
        Err(citizen_calls_not_built())
    }
}
