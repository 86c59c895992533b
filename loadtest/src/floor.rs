//! The floor: what the transit workload cannot avoid per allowed scan, measured as a
//! second verify ceiling beside the bare verify server.
//!
//! Every allowed scan at a bus reader or metro gate makes one outbound TapIn call to
//! payments over mutual TLS; the bare verify server makes none, so the verifier's CPU
//! per request over the bare server's mixes what the verifier does itself with what
//! any outbound unary call costs its caller (a TLS record each way, HTTP/2 frames, a
//! wake-up or two). The floor server is the bare verify server ([`crate::ceiling`])
//! plus, for each code whose signature verifies, ONE unary `TapIn` over mutual TLS (with
//! the verifier's own certificate, as the verifier calls payments) to the trivial taps
//! server here: payments' API and authorisation table behind the same
//! `citypass_runtime::Server`, whose TapIn answers a priced bus trip at once (no
//! store, no fare, no lock). The verifier's CPU over the floor's is then what the
//! verifier does beyond the signature and the one call it cannot avoid.
//!
//! The bare server checks no expiry and keeps no replay marks, so it calls out for
//! expired and replayed codes too: play a mix with neither (`fresh=90,forged=5,
//! garbled=5`) when the floor is to make exactly the verifier's calls.
//!
//! The shared store is a floor's too (`--floor-scripts N`, [`FloorScripts`]): single
//! use across every verifier pod needs the mark in Redis, and a scene with a policy
//! makes more steps there (the scan-id claim, the mark, the policy's own, the settled
//! answer: four at a scenic gate, each a one-key script on its own key, so that a
//! Redis Cluster spreads them). The floor then also runs N trivial one-key scripts per
//! verified code on the run's Redis, one after the other as the verifier's are, and,
//! with `--floor-no-tap`, makes no TapIn (a scenic gate's policy calls nobody).

use std::sync::Arc;

use citypass_proto::prost_types::Timestamp;
use citypass_proto::v1::payments_service_client::PaymentsServiceClient;
use citypass_proto::v1::payments_service_server::PaymentsService;
use citypass_proto::v1::{self as pb, DenyReason};
use citypass_runtime::{Tls, UpstreamConfig};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::error::LoadError;

/// The floor's script: one key written with an expiry, as every step of the
/// verifier's replay and venue stores is at least.
const FLOOR_SCRIPT: &str = "redis.call('SET', KEYS[1], ARGV[1], 'PX', 60000) return 1";

/// The floor's shared-store steps per verified code: `count` one-key scripts on Redis.
#[derive(Clone)]
pub struct FloorScripts {
    connection: redis::aio::ConnectionManager,
    count: u8,
}

impl FloorScripts {
    /// Connects to the Redis at `url` (the run's `--redis`).
    pub async fn connect(url: &str, count: u8) -> Result<FloorScripts, LoadError> {
        let client = redis::Client::open(url)?;
        let connection = client.get_connection_manager().await?;
        Ok(FloorScripts { connection, count })
    }

    /// The steps for the scan `scan_id`, one after the other; SERVICE_UNAVAILABLE
    /// when one fails (the verifier refuses the scan the same way).
    pub async fn run(&self, scan_id: &str) -> Result<(), DenyReason> {
        let mut connection = self.connection.clone();
        for step in 0..self.count {
            let mut command = redis::cmd("EVAL");
            command
                .arg(FLOOR_SCRIPT)
                .arg(1)
                .arg(format!("citypass:floor:{{{step}:{scan_id}}}"))
                .arg(scan_id);
            let _: i64 = command
                .query_async(&mut connection)
                .await
                .map_err(|_| DenyReason::ServiceUnavailable)?;
        }
        Ok(())
    }

    /// The sign floor's one step per checked proof ([`crate::bare_sign`]): the
    /// nonce's first use, one `SET NX` with an expiry on a key hashed from the device
    /// and the nonce, as the issuer's nonce store makes it; UNAUTHENTICATED for a nonce
    /// seen before, UNAVAILABLE when Redis fails (as the issuer answers).
    pub async fn first_use(&self, device: &str, nonce: &[u8]) -> Result<(), tonic::Status> {
        let mut connection = self.connection.clone();
        let mut input = Vec::with_capacity(device.len() + nonce.len());
        input.extend_from_slice(device.as_bytes());
        input.extend_from_slice(nonce);
        let set: Option<String> = redis::cmd("SET")
            .arg(format!(
                "citypass:floor:nonce:{}",
                hex::encode(citypass_token::sha256(&input))
            ))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut connection)
            .await
            .map_err(|_| tonic::Status::unavailable("the floor's Redis"))?;
        match set {
            Some(_) => Ok(()),
            None => Err(tonic::Status::unauthenticated("nonce reused")),
        }
    }
}

/// The stop every floor tap names.
const STOP: &str = "1";
/// The fare every trivial trip carries (minor units, CNY), a bus fare.
const FARE_FEN: i64 = 200;

/// The floor's one outbound call per verified code: TapIn at the trivial taps server.
#[derive(Clone)]
pub struct FloorTap {
    client: PaymentsServiceClient<Channel>,
}

impl FloorTap {
    /// Calls the taps server at `url` with `tls` (the verifier's own identity: the
    /// payments table serves TapIn to `service:verifier` only).
    pub fn new(url: &str, tls: &Arc<Tls>) -> Result<FloorTap, LoadError> {
        let channel = UpstreamConfig::new(url).channel(Some(tls))?;
        Ok(FloorTap {
            client: PaymentsServiceClient::new(channel),
        })
    }

    /// One TapIn for the scan `scan_id` at `gate_id`; SERVICE_UNAVAILABLE when it
    /// fails or answers without a trip (a verifier refuses the scan the same way).
    pub async fn tap(&self, gate_id: &str, scan_id: &str) -> Result<(), DenyReason> {
        let request = pb::TapInRequest {
            // Not a rider's: the trivial server reads nothing of it.
            transit_account: "floor".to_owned(),
            scene: pb::Scene::Bus as i32,
            gate_id: gate_id.to_owned(),
            station_id: STOP.to_owned(),
            scan_id: scan_id.to_owned(),
            tapped_at: Some(now()),
            fare_class: pb::FareClass::Adult as i32,
        };
        let answer = self
            .client
            .clone()
            .tap_in(request)
            .await
            .map_err(|_| DenyReason::ServiceUnavailable)?
            .into_inner();
        match answer.trip {
            Some(_) if answer.refusal == pb::TapRefusal::Unspecified as i32 => Ok(()),
            _ => Err(DenyReason::ServiceUnavailable),
        }
    }
}

fn now() -> Timestamp {
    Timestamp {
        seconds: i64::try_from(citypass_token::unix_now()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// The trivial taps server: TapIn answers a closed, priced bus trip at once; every
/// other RPC is UNIMPLEMENTED.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrivialTaps;

fn only_tap_in<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "the trivial taps server only taps in",
    ))
}

#[tonic::async_trait]
impl PaymentsService for TrivialTaps {
    async fn tap_in(
        &self,
        request: Request<pb::TapInRequest>,
    ) -> Result<Response<pb::TapInResponse>, Status> {
        let tap = request.into_inner();
        Ok(Response::new(pb::TapInResponse {
            trip: Some(pb::Trip {
                trip_id: format!("{}/{}", tap.gate_id, tap.scan_id),
                transit_account: tap.transit_account,
                scene: tap.scene,
                status: pb::TripStatus::Closed as i32,
                fare_class: tap.fare_class,
                entry_station_id: tap.station_id,
                entry_gate_id: tap.gate_id,
                entered_at: tap.tapped_at,
                fare: Some(pb::Money {
                    minor_units: FARE_FEN,
                    currency_code: "CNY".to_owned(),
                }),
                ..pb::Trip::default()
            }),
            refusal: pb::TapRefusal::Unspecified as i32,
        }))
    }

    async fn link_account(
        &self,
        _: Request<pb::LinkAccountRequest>,
    ) -> Result<Response<pb::LinkAccountResponse>, Status> {
        only_tap_in()
    }

    async fn unlink_account(
        &self,
        _: Request<pb::UnlinkAccountRequest>,
    ) -> Result<Response<pb::UnlinkAccountResponse>, Status> {
        only_tap_in()
    }

    async fn get_link(
        &self,
        _: Request<pb::GetLinkRequest>,
    ) -> Result<Response<pb::GetLinkResponse>, Status> {
        only_tap_in()
    }

    async fn tap_out(
        &self,
        _: Request<pb::TapOutRequest>,
    ) -> Result<Response<pb::TapOutResponse>, Status> {
        only_tap_in()
    }

    async fn record_offline_tap(
        &self,
        _: Request<pb::RecordOfflineTapRequest>,
    ) -> Result<Response<pb::RecordOfflineTapResponse>, Status> {
        only_tap_in()
    }

    async fn get_trips(
        &self,
        _: Request<pb::GetTripsRequest>,
    ) -> Result<Response<pb::GetTripsResponse>, Status> {
        only_tap_in()
    }

    async fn get_arrears(
        &self,
        _: Request<pb::GetArrearsRequest>,
    ) -> Result<Response<pb::GetArrearsResponse>, Status> {
        only_tap_in()
    }

    async fn repay_arrears(
        &self,
        _: Request<pb::RepayArrearsRequest>,
    ) -> Result<Response<pb::RepayArrearsResponse>, Status> {
        only_tap_in()
    }

    async fn void_tap(
        &self,
        _: Request<pb::VoidTapRequest>,
    ) -> Result<Response<pb::VoidTapResponse>, Status> {
        only_tap_in()
    }

    async fn get_settlement(
        &self,
        _: Request<pb::GetSettlementRequest>,
    ) -> Result<Response<pb::GetSettlementResponse>, Status> {
        only_tap_in()
    }

    async fn notify_charge(
        &self,
        _: Request<pb::NotifyChargeRequest>,
    ) -> Result<Response<pb::NotifyChargeResponse>, Status> {
        only_tap_in()
    }
}
