//! Messages in, model types out, and back: the request's shape is checked here
//! (INVALID_ARGUMENT naming the field), so the logic never sees a prost type.

use citypass_proto::v1;

use crate::account::TransitAccount;
use crate::charge::ChargeStatus;
use crate::error::Error;
use crate::fare::{FareClass, Mode};
use crate::money::Fen;
use crate::store::TripView;
use crate::tap::{Place, Refusal, TapIn, TapOut};
use crate::trip::{Tap, TripStatus};

/// The currency of every amount.
pub const CURRENCY: &str = "CNY";

/// The transit account of a request.
pub fn account(text: &str) -> Result<TransitAccount, Error> {
    if text.is_empty() {
        return Err(Error::invalid(TransitAccount::FIELD, "is required"));
    }
    TransitAccount::parse(text).ok_or_else(|| {
        Error::invalid(
            TransitAccount::FIELD,
            "must be 32 lower-case hexadecimal characters",
        )
    })
}

/// A fare class; UNSPECIFIED is priced as adult (common.proto).
pub fn fare_class(value: i32) -> Result<FareClass, Error> {
    match v1::FareClass::try_from(value) {
        Ok(v1::FareClass::Unspecified | v1::FareClass::Adult) => Ok(FareClass::Adult),
        Ok(v1::FareClass::Student) => Ok(FareClass::Student),
        Ok(v1::FareClass::Senior) => Ok(FareClass::Senior),
        Ok(v1::FareClass::Disabled) => Ok(FareClass::Disabled),
        Err(_) => Err(Error::invalid("fare_class", "is not a known fare class")),
    }
}

fn fare_class_to_api(class: FareClass) -> v1::FareClass {
    match class {
        FareClass::Adult => v1::FareClass::Adult,
        FareClass::Student => v1::FareClass::Student,
        FareClass::Senior => v1::FareClass::Senior,
        FareClass::Disabled => v1::FareClass::Disabled,
    }
}

/// The server's clock and how far a gate's `tapped_at` may be from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The server's time, Unix seconds.
    pub now: u64,
    /// The largest difference accepted, either way.
    pub max_skew: std::time::Duration,
}

impl Clock {
    /// The server's clock now, with `max_skew`.
    pub fn now(max_skew: std::time::Duration) -> Self {
        Clock {
            now: citypass_token::unix_now(),
            max_skew,
        }
    }

    /// `at` if it is within `max_skew` of `now`, else INVALID_ARGUMENT naming `field`.
    pub fn check(&self, field: &'static str, at: u64) -> Result<u64, Error> {
        if at.abs_diff(self.now) > self.max_skew.as_secs() {
            return Err(Error::invalid(
                field,
                format!(
                    "is more than {} s from the server's clock",
                    self.max_skew.as_secs()
                ),
            ));
        }
        Ok(at)
    }
}

fn tapped_at(at: Option<&citypass_proto::prost_types::Timestamp>) -> Result<u64, Error> {
    let at = at.ok_or_else(|| Error::invalid("tapped_at", "is required"))?;
    if !(0..1_000_000_000).contains(&at.nanos) {
        return Err(Error::invalid(
            "tapped_at",
            "nanos must be 0 to 999 999 999",
        ));
    }
    citypass_proto::time::seconds(at)
        .ok_or_else(|| Error::invalid("tapped_at", "must not be before 1970"))
}

/// A TapIn request: SCENE_METRO (an entry at `station_id`) or SCENE_BUS (a boarding on
/// the route named by `station_id`).
/// `tapped_at` must be within the clock's skew of the server's time.
pub fn tap_in(request: v1::TapInRequest, clock: &Clock) -> Result<TapIn, Error> {
    let place = match v1::Scene::try_from(request.scene) {
        Ok(v1::Scene::Metro) => Place::Metro(request.station_id),
        Ok(v1::Scene::Bus) => Place::Bus(request.station_id),
        _ => return Err(Error::invalid("scene", "must be SCENE_METRO or SCENE_BUS")),
    };
    Ok(TapIn {
        account: account(&request.transit_account)?,
        gate_id: request.gate_id,
        scan_id: request.scan_id,
        place,
        at: clock.check("tapped_at", tapped_at(request.tapped_at.as_ref())?)?,
        fare_class: fare_class(request.fare_class)?,
    })
}

/// A TapOut request; `tapped_at` as for [`tap_in`].
pub fn tap_out(request: v1::TapOutRequest, clock: &Clock) -> Result<TapOut, Error> {
    Ok(TapOut {
        account: account(&request.transit_account)?,
        gate_id: request.gate_id,
        scan_id: request.scan_id,
        station: request.station_id,
        at: clock.check("tapped_at", tapped_at(request.tapped_at.as_ref())?)?,
        fare_class: fare_class(request.fare_class)?,
    })
}

/// An amount in CNY.
pub fn money(amount: Fen) -> v1::Money {
    v1::Money {
        currency_code: CURRENCY.to_owned(),
        // Amounts are bounded by the fare table, far inside i64.
        minor_units: i64::try_from(amount.get()).unwrap_or(i64::MAX),
    }
}

/// A refusal's wire value.
pub fn refusal(refusal: Refusal) -> v1::TapRefusal {
    match refusal {
        Refusal::NoPaymentLink => v1::TapRefusal::NoPaymentLink,
        Refusal::Arrears => v1::TapRefusal::Arrears,
        Refusal::TripAlreadyOpen => v1::TapRefusal::TripAlreadyOpen,
    }
}

fn charge_status(view: &TripView) -> v1::ChargeStatus {
    match view.charge.as_ref().map(|c| c.status) {
        None => v1::ChargeStatus::NotRequired,
        Some(ChargeStatus::Pending) => v1::ChargeStatus::Pending,
        Some(ChargeStatus::Succeeded) => v1::ChargeStatus::Succeeded,
        Some(ChargeStatus::Declined) => v1::ChargeStatus::Declined,
        Some(ChargeStatus::Retrying) => v1::ChargeStatus::Retrying,
        // Not live: never in a view.
        Some(ChargeStatus::Cancelled) => v1::ChargeStatus::NotRequired,
    }
}

/// A trip as the API shows it. A VOIDED trip has no wire status yet:
/// [`Error::TapVoided`] (a tap answered with a voided trip was itself a repeat of the
/// voided tap).
pub fn trip(view: &TripView) -> Result<v1::Trip, Error> {
    let trip = &view.trip;
    let status = match trip.status {
        TripStatus::Open => v1::TripStatus::Open,
        TripStatus::Closed => v1::TripStatus::Closed,
        TripStatus::Unmatched => v1::TripStatus::Unmatched,
        TripStatus::Voided => return Err(Error::TapVoided),
    };
    let place = |tap: &Option<Tap>| tap.as_ref().map(|t| t.place.clone()).unwrap_or_default();
    let gate = |tap: &Option<Tap>| tap.as_ref().map(|t| t.gate_id.clone()).unwrap_or_default();
    let at = |tap: &Option<Tap>| tap.as_ref().map(|t| citypass_proto::time::timestamp(t.at));
    Ok(v1::Trip {
        trip_id: trip.id.to_string(),
        transit_account: trip.account.to_string(),
        scene: match trip.mode {
            Mode::Metro => v1::Scene::Metro,
            Mode::Bus => v1::Scene::Bus,
        } as i32,
        status: status as i32,
        fare_class: fare_class_to_api(trip.fare_class) as i32,
        entry_station_id: place(&trip.entry),
        entry_gate_id: gate(&trip.entry),
        entered_at: at(&trip.entry),
        exit_station_id: place(&trip.exit),
        exit_gate_id: gate(&trip.exit),
        exited_at: at(&trip.exit),
        fare: Some(money(trip.due())),
        charge_status: charge_status(view) as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_proto::prost_types::Timestamp;

    fn request() -> v1::TapInRequest {
        v1::TapInRequest {
            transit_account: "00112233445566778899aabbccddeeff".to_owned(),
            scene: v1::Scene::Metro as i32,
            gate_id: "g".to_owned(),
            station_id: "xidan".to_owned(),
            scan_id: "s".to_owned(),
            tapped_at: Some(Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            fare_class: 0,
        }
    }

    const CLOCK: Clock = Clock {
        now: 1_800_000_000,
        max_skew: std::time::Duration::from_secs(300),
    };

    #[test]
    fn a_time_far_from_the_servers_clock_is_refused() {
        for (offset, ok) in [
            (-301, false),
            (-300, true),
            (0, true),
            (300, true),
            (301, false),
        ] {
            let mut request = request();
            request.tapped_at = Some(Timestamp {
                seconds: 1_800_000_000 + offset,
                nanos: 0,
            });
            let out = v1::TapOutRequest {
                transit_account: request.transit_account.clone(),
                gate_id: "g".to_owned(),
                station_id: "xidan".to_owned(),
                scan_id: "s".to_owned(),
                tapped_at: request.tapped_at,
                fare_class: 0,
            };
            for result in [
                tap_in(request, &CLOCK).map(|t| t.at),
                tap_out(out, &CLOCK).map(|t| t.at),
            ] {
                match result {
                    Ok(at) => assert!(ok && at == 1_800_000_000_u64.saturating_add_signed(offset)),
                    Err(Error::InvalidArgument { field, reason }) => {
                        assert!(!ok, "{offset}");
                        assert_eq!(field, "tapped_at");
                        assert!(reason.contains("server's clock"), "{reason}");
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn each_malformed_field_is_named() {
        let tap = tap_in(request(), &CLOCK).unwrap();
        assert_eq!(tap.place, Place::Metro("xidan".to_owned()));
        assert_eq!(tap.fare_class, FareClass::Adult, "unspecified is adult");
        type Spoil = fn(&mut v1::TapInRequest);
        let cases: [(Spoil, &str); 6] = [
            (|r| r.transit_account.clear(), "transit_account"),
            (|r| r.transit_account = "ABC".to_owned(), "transit_account"),
            (|r| r.scene = v1::Scene::Hospital as i32, "scene"),
            (|r| r.tapped_at = None, "tapped_at"),
            (
                |r| {
                    r.tapped_at = Some(Timestamp {
                        seconds: -1,
                        nanos: 0,
                    })
                },
                "tapped_at",
            ),
            (|r| r.fare_class = 99, "fare_class"),
        ];
        for (spoil, field) in cases {
            let mut request = request();
            spoil(&mut request);
            match tap_in(request, &CLOCK) {
                Err(Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
