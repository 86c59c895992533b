//! Stand-ins for the `TransitTaps` seam: what `build` wires when no `payments:` is
//! configured (every tap unavailable, so metro and bus gates follow their fail mode,
//! never a silent allow), and a fixed one for tests and benches that exercise the
//! decision at transit gates without a payments service. Neither charges anyone.

use std::sync::Mutex;

use citypass_proto::v1::{ChargeStatus, FareClass};
use citypass_runtime::Deadline;
use futures::future::BoxFuture;

use crate::transit::{
    Tap, TapKind, TapRefused, Tapped, TransitError, TransitTaps, Trip, TripState, Void,
};

/// No payments configured: every tap is [`TransitError::Unavailable`] (`closed`:
/// SERVICE_UNAVAILABLE; `open`: allowed, marked `fail_open`, nothing charged).
#[derive(Debug, Default, Clone, Copy)]
pub struct UnavailableTaps;

impl TransitTaps for UnavailableTaps {
    fn tap_in(&self, _: Tap, _: Deadline) -> BoxFuture<'_, Result<Tapped, TransitError>> {
        Box::pin(std::future::ready(Err(TransitError::Unavailable)))
    }

    fn tap_out(&self, _: Tap, _: Deadline) -> BoxFuture<'_, Result<Trip, TransitError>> {
        Box::pin(std::future::ready(Err(TransitError::Unavailable)))
    }

    fn void(&self, _: Void, _: Deadline) -> BoxFuture<'_, Result<Trip, TransitError>> {
        Box::pin(std::future::ready(Err(TransitError::Unavailable)))
    }

    fn late_tap(&self, _: Tap, _: Deadline) -> BoxFuture<'_, Result<Tapped, TransitError>> {
        Box::pin(std::future::ready(Err(TransitError::Unavailable)))
    }
}

/// Tests and benches only: every tap is recorded and answered with a trip at a fixed
/// fare (entries open at zero), unless a refusal or an outage is set; no ledger, no
/// idempotency beyond what the verifier's marks give.
#[derive(Debug)]
pub struct FixedTaps {
    fare_minor_units: i64,
    answer: Mutex<Result<Option<TapRefused>, TransitError>>,
    taps: Mutex<Vec<Tap>>,
}

impl Default for FixedTaps {
    fn default() -> Self {
        FixedTaps::new(300)
    }
}

impl FixedTaps {
    /// Most taps kept for [`FixedTaps::taps`] (a bench taps millions of times).
    pub const KEPT: usize = 10_000;

    /// Trips priced at `fare_minor_units` CNY fen.
    pub fn new(fare_minor_units: i64) -> Self {
        FixedTaps {
            fare_minor_units,
            answer: Mutex::new(Ok(None)),
            taps: Mutex::new(Vec::new()),
        }
    }

    /// From now on TapIn refuses every rider with `refusal` (`None`: records again).
    pub fn refuse(&self, refusal: Option<TapRefused>) {
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = Ok(refusal);
    }

    /// From now on every tap fails with `err`.
    pub fn fail(&self, err: TransitError) {
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = Err(err);
    }

    /// The taps received, oldest first (the first [`FixedTaps::KEPT`]).
    pub fn taps(&self) -> Vec<Tap> {
        self.taps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn answer(&self, tap: Tap) -> Result<Tapped, TransitError> {
        let answer = self
            .answer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let refusal = answer?;
        let (status, fare) = match tap.kind {
            TapKind::MetroEntry => (TripState::Open, 0),
            TapKind::MetroExit | TapKind::Bus => (TripState::Closed, self.fare_minor_units),
        };
        let trip = Trip {
            trip_id: format!("fixed-{}-{}", tap.gate_id, tap.scan_id),
            status,
            fare_minor_units: fare,
            currency_code: "CNY".to_owned(),
            charge_status: if fare == 0 {
                ChargeStatus::NotRequired
            } else {
                ChargeStatus::Pending
            },
            fare_class: tap.fare_class,
        };
        let mut taps = self.taps.lock().unwrap_or_else(|e| e.into_inner());
        if taps.len() < Self::KEPT {
            taps.push(tap.clone());
        }
        drop(taps);
        match refusal {
            Some(refusal) if tap.kind != TapKind::MetroExit => Ok(Tapped::Refused(refusal)),
            _ => Ok(Tapped::Trip(trip)),
        }
    }
}

impl TransitTaps for FixedTaps {
    fn tap_in(&self, tap: Tap, _: Deadline) -> BoxFuture<'_, Result<Tapped, TransitError>> {
        Box::pin(std::future::ready(self.answer(tap)))
    }

    fn late_tap(&self, tap: Tap, _: Deadline) -> BoxFuture<'_, Result<Tapped, TransitError>> {
        Box::pin(std::future::ready(self.answer(tap)))
    }

    fn tap_out(&self, tap: Tap, _: Deadline) -> BoxFuture<'_, Result<Trip, TransitError>> {
        let answer = self.answer(tap).and_then(|tapped| match tapped {
            Tapped::Trip(trip) => Ok(trip),
            Tapped::Refused(_) => Err(TransitError::Unavailable),
        });
        Box::pin(std::future::ready(answer))
    }

    fn void(&self, void: Void, _: Deadline) -> BoxFuture<'_, Result<Trip, TransitError>> {
        let failed = self
            .answer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .err();
        if let Some(err) = failed {
            return Box::pin(std::future::ready(Err(err)));
        }
        Box::pin(std::future::ready(Ok(Trip {
            trip_id: format!("fixed-{}-{}", void.gate_id, void.scan_id),
            status: TripState::Voided,
            fare_minor_units: 0,
            currency_code: "CNY".to_owned(),
            charge_status: ChargeStatus::NotRequired,
            fare_class: FareClass::Unspecified,
        })))
    }
}
