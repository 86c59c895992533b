//! Payments' TapIn, TapOut, RecordOfflineTap and VoidTap as [`TransitTaps`]: the verifier's calls to
//! payments, over the runtime's upstream channel with the verifier's own certificate
//! (payments serves the four to `service:verifier` only).
//!
//! Each call carries what is left of the scene's deadline (`grpc-timeout`) and the
//! trace context, and is bounded by it here too. UNAVAILABLE, DEADLINE_EXCEEDED and
//! the like, and an answer that breaks the API, are [`TransitError::Unavailable`];
//! any other status is [`TransitError::Rejected`] with payments' reason. Logged
//! without the transit account.

use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::payments_service_client::PaymentsServiceClient;
use citypass_proto::v1::{self as pb, ChargeStatus, FareClass};
use citypass_runtime::{Deadline, InjectTraceContext, reason_of};
use futures::future::BoxFuture;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{Tap, TapKind, TapRefused, Tapped, TransitError, TransitTaps, Trip, TripState, Void};

/// The gRPC client of payments' taps.
#[derive(Debug, Clone)]
pub struct PaymentsTaps {
    client: PaymentsServiceClient<InjectTraceContext<Channel>>,
}

impl PaymentsTaps {
    /// Over `channel` (`UpstreamConfig::channel` of `payments:` with the verifier's
    /// server TLS identity).
    pub fn new(channel: Channel) -> Self {
        PaymentsTaps {
            client: PaymentsServiceClient::new(InjectTraceContext::new(channel)),
        }
    }
}

fn timestamp(unix: u64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: i64::try_from(unix).unwrap_or(i64::MAX),
        nanos: 0,
    })
}

fn request<T>(message: T, deadline: Deadline) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    deadline.apply(&mut request);
    request
}

/// A failed call as the seam's error.
/// The answer of one call awaited within `deadline`: a late call is unavailable, a
/// failed one read by [`failed`].
async fn answered<T>(
    rpc: &'static str,
    deadline: Deadline,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, TransitError> {
    match deadline.run(call).await {
        Err(_) => Err(TransitError::Unavailable),
        Ok(Err(status)) => Err(failed(rpc, &status)),
        Ok(Ok(answer)) => Ok(answer.into_inner()),
    }
}

fn failed(rpc: &'static str, status: &Status) -> TransitError {
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal
        | Code::ResourceExhausted
        | Code::Aborted => {
            tracing::warn!(rpc, code = ?status.code(), "payments unavailable");
            TransitError::Unavailable
        }
        code => {
            let reason = reason_of(status).unwrap_or_else(|| format!("{code:?}"));
            tracing::error!(rpc, code = ?code, reason, "payments rejected the verifier's request");
            TransitError::Rejected { reason }
        }
    }
}

fn broken(rpc: &'static str, what: &'static str) -> TransitError {
    tracing::warn!(rpc, what, "payments answered outside its API");
    TransitError::Unavailable
}

/// Payments' trip as the seam's.
fn trip(rpc: &'static str, trip: Option<pb::Trip>) -> Result<Trip, TransitError> {
    let Some(trip) = trip else {
        return Err(broken(rpc, "no trip"));
    };
    let status = match pb::TripStatus::try_from(trip.status) {
        Ok(pb::TripStatus::Open) => TripState::Open,
        Ok(pb::TripStatus::Closed) => TripState::Closed,
        Ok(pb::TripStatus::Unmatched) => TripState::Unmatched,
        Ok(pb::TripStatus::Voided) => TripState::Voided,
        _ => return Err(broken(rpc, "trip status")),
    };
    if trip.trip_id.is_empty() {
        return Err(broken(rpc, "trip id"));
    }
    let fare = trip.fare.unwrap_or_default();
    Ok(Trip {
        trip_id: trip.trip_id,
        status,
        fare_minor_units: fare.minor_units,
        currency_code: fare.currency_code,
        charge_status: ChargeStatus::try_from(trip.charge_status)
            .unwrap_or(ChargeStatus::Unspecified),
        fare_class: FareClass::try_from(trip.fare_class).unwrap_or(FareClass::Unspecified),
    })
}

/// A tap's answer: payments' refusal of the rider, or the trip.
fn tapped(
    rpc: &'static str,
    refusal: i32,
    answer: Option<pb::Trip>,
) -> Result<Tapped, TransitError> {
    let refused = match pb::TapRefusal::try_from(refusal) {
        Ok(pb::TapRefusal::Unspecified) => None,
        Ok(pb::TapRefusal::NoPaymentLink) => Some(TapRefused::NoPaymentLink),
        Ok(pb::TapRefusal::Arrears) => Some(TapRefused::Arrears),
        Ok(pb::TapRefusal::TripAlreadyOpen) => Some(TapRefused::TripAlreadyOpen),
        Err(_) => return Err(broken(rpc, "refusal")),
    };
    match refused {
        Some(refusal) => Ok(Tapped::Refused(refusal)),
        None => trip(rpc, answer).map(Tapped::Trip),
    }
}

impl TransitTaps for PaymentsTaps {
    fn tap_in(&self, tap: Tap, deadline: Deadline) -> BoxFuture<'_, Result<Tapped, TransitError>> {
        Box::pin(async move {
            const RPC: &str = "TapIn";
            let scene = match tap.kind {
                TapKind::Bus => pb::Scene::Bus,
                TapKind::MetroEntry | TapKind::MetroExit => pb::Scene::Metro,
            };
            let message = pb::TapInRequest {
                transit_account: tap.transit_account,
                scene: scene as i32,
                gate_id: tap.gate_id,
                station_id: tap.station_id,
                scan_id: tap.scan_id,
                tapped_at: timestamp(tap.tapped_at),
                fare_class: tap.fare_class as i32,
            };
            let mut client = self.client.clone();
            let call = client.tap_in(request(message, deadline));
            let answer = answered(RPC, deadline, call).await?;
            tapped(RPC, answer.refusal, answer.trip)
        })
    }

    fn late_tap(
        &self,
        tap: Tap,
        deadline: Deadline,
    ) -> BoxFuture<'_, Result<Tapped, TransitError>> {
        Box::pin(async move {
            const RPC: &str = "RecordOfflineTap";
            let kind = match tap.kind {
                TapKind::MetroEntry => pb::OfflineTapKind::MetroEntry,
                TapKind::MetroExit => pb::OfflineTapKind::MetroExit,
                TapKind::Bus => pb::OfflineTapKind::Bus,
            };
            let message = pb::RecordOfflineTapRequest {
                transit_account: tap.transit_account,
                kind: kind as i32,
                gate_id: tap.gate_id,
                station_id: tap.station_id,
                scan_id: tap.scan_id,
                tapped_at: timestamp(tap.tapped_at),
                fare_class: tap.fare_class as i32,
            };
            let mut client = self.client.clone();
            let call = client.record_offline_tap(request(message, deadline));
            let answer = answered(RPC, deadline, call).await?;
            tapped(RPC, answer.refusal, answer.trip)
        })
    }

    fn tap_out(&self, tap: Tap, deadline: Deadline) -> BoxFuture<'_, Result<Trip, TransitError>> {
        Box::pin(async move {
            const RPC: &str = "TapOut";
            let message = pb::TapOutRequest {
                transit_account: tap.transit_account,
                gate_id: tap.gate_id,
                station_id: tap.station_id,
                scan_id: tap.scan_id,
                tapped_at: timestamp(tap.tapped_at),
                fare_class: tap.fare_class as i32,
            };
            let mut client = self.client.clone();
            let call = client.tap_out(request(message, deadline));
            trip(RPC, answered(RPC, deadline, call).await?.trip)
        })
    }

    fn void(&self, void: Void, deadline: Deadline) -> BoxFuture<'_, Result<Trip, TransitError>> {
        Box::pin(async move {
            const RPC: &str = "VoidTap";
            let message = pb::VoidTapRequest {
                transit_account: void.transit_account,
                gate_id: void.gate_id,
                scan_id: void.scan_id,
                voided_at: timestamp(void.voided_at),
            };
            let mut client = self.client.clone();
            let call = client.void_tap(request(message, deadline));
            trip(RPC, answered(RPC, deadline, call).await?.trip)
        })
    }
}
