//! The seam between the transit scene (`scene/transit.rs`) and payments: a rider's tap
//! at a metro gate or on a bus, answered with the trip it opened or closed, or with
//! payments' refusal of the rider.
//!
//! The policy, and the upload of offline gates' scans (`upload.rs`, RecordOfflineTap),
//! speak these model types only; [`payments`] is the gRPC client of payments' TapIn,
//! TapOut, RecordOfflineTap and VoidTap (mutual TLS with the verifier's own
//! certificate, as for identity), and `stand_in_transit.rs` holds the stand-ins
//! `build` and the tests use without one. Every tap is keyed by its gate and scan id:
//! payments answers a repeated tap with the same trip and charges once, so a gate's
//! retry, or a policy run again after an unsettled mark, takes no second fare.
//!
//! Errors are of two kinds: [`TransitError::Unavailable`] (the deadline passed, the
//! connection failed, payments answered UNAVAILABLE or broke the API), which the
//! scene's fail mode decides, and [`TransitError::Rejected`], payments refusing the
//! request itself (an unknown station, a tap time it does not accept, a tap repeated
//! with another account): a fault between the verifier's configuration and payments',
//! not a refusal of the rider, logged with payments' reason.

pub mod payments;

use citypass_proto::v1::{ChargeStatus, FareClass};
use citypass_runtime::Deadline;
use futures::future::BoxFuture;

/// Which tap: it decides the RPC and what payments does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapKind {
    /// Into a metro's paid area: TapIn, opens a trip.
    MetroEntry,
    /// Out of it: TapOut, closes and prices the open trip.
    MetroExit,
    /// Boarding a bus: TapIn, a flat-fare trip opened, priced and charged at once.
    Bus,
}

/// One tap, as the verifier allowed the code.
#[derive(Clone, PartialEq, Eq)]
pub struct Tap {
    /// The rider's transit account (identity's transit pseudonym; personal data).
    pub transit_account: String,
    /// Entry, exit or bus.
    pub kind: TapKind,
    /// The gate or bus reader (authenticated).
    pub gate_id: String,
    /// The metro station, or the bus route, from the gate registry.
    pub station_id: String,
    /// The gate's scan id: with `gate_id`, the tap's idempotency key at payments.
    pub scan_id: String,
    /// The verifier's clock at the decision (Unix seconds); an uploaded offline tap's
    /// scan time.
    pub tapped_at: u64,
    /// The rider's fare class (identity's profile).
    pub fare_class: FareClass,
}

impl std::fmt::Debug for Tap {
    /// Without the transit account (personal data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("kind", &self.kind)
            .field("gate_id", &self.gate_id)
            .field("station_id", &self.station_id)
            .field("scan_id", &self.scan_id)
            .field("tapped_at", &self.tapped_at)
            .field("fare_class", &self.fare_class)
            .finish_non_exhaustive()
    }
}

/// A gate's void of its own tap (the turnstile did not turn).
#[derive(Clone, PartialEq, Eq)]
pub struct Void {
    /// The rider's transit account (personal data).
    pub transit_account: String,
    /// The gate that took the tap.
    pub gate_id: String,
    /// The tap's scan id.
    pub scan_id: String,
    /// The verifier's clock at the void (Unix seconds).
    pub voided_at: u64,
}

impl std::fmt::Debug for Void {
    /// Without the transit account (personal data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Void")
            .field("gate_id", &self.gate_id)
            .field("scan_id", &self.scan_id)
            .field("voided_at", &self.voided_at)
            .finish_non_exhaustive()
    }
}

/// A trip as payments answered a tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    /// Opaque id, deterministic in the entry's gate and scan id.
    pub trip_id: String,
    /// Open, closed, unmatched or voided.
    pub status: TripState,
    /// The fare of the trip so far, minor units (zero while open).
    pub fare_minor_units: i64,
    /// ISO 4217 currency of the fare (empty while nothing is priced).
    pub currency_code: String,
    /// The trip's charge.
    pub charge_status: ChargeStatus,
    /// The fare class the trip is priced with (the entry's).
    pub fare_class: FareClass,
}

/// A trip's state at payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripState {
    /// Entered, not exited.
    Open,
    /// Priced (an exit, a bus ride).
    Closed,
    /// Priced at the maximum fare without its matching tap.
    Unmatched,
    /// Voided by its gate: not charged.
    Voided,
}

/// Payments' refusal of the rider: nothing was opened or charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapRefused {
    /// No active payment link.
    NoPaymentLink,
    /// Unpaid arrears.
    Arrears,
    /// A metro entry while a trip is still open.
    TripAlreadyOpen,
}

/// What a tap came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tapped {
    /// Recorded: the trip opened, closed or priced.
    Trip(Trip),
    /// The rider was refused.
    Refused(TapRefused),
}

/// Why payments gave no answer about the rider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitError {
    /// No answer within the deadline, a transport failure, UNAVAILABLE, or an answer
    /// that breaks the API: the scene's fail mode decides.
    #[error("payments unavailable")]
    Unavailable,
    /// Payments refused the request itself (its `google.rpc.ErrorInfo` reason, or the
    /// status code's name): a fault of configuration or of the verifier, not a refusal
    /// of the rider.
    #[error("payments rejected the request ({reason})")]
    Rejected {
        /// Payments' reason, e.g. `UNKNOWN_STATION`.
        reason: String,
    },
}

/// Payments' taps, as the transit scene needs them.
pub trait TransitTaps: Send + Sync + 'static {
    /// A metro entry or a bus boarding (TapIn).
    fn tap_in(&self, tap: Tap, deadline: Deadline) -> BoxFuture<'_, Result<Tapped, TransitError>>;

    /// A metro exit (TapOut): never refused (a rider must be able to leave; an exit
    /// without an entry is priced at the maximum fare).
    fn tap_out(&self, tap: Tap, deadline: Deadline) -> BoxFuture<'_, Result<Trip, TransitError>>;

    /// Voids the gate's tap (VoidTap): the trip as it stands after.
    fn void(&self, void: Void, deadline: Deadline) -> BoxFuture<'_, Result<Trip, TransitError>>;

    /// A tap an offline gate took at `tap.tapped_at` (its scan time), uploaded since
    /// (RecordOfflineTap): it may complete, and re-price, a trip payments priced
    /// without it. Refused only for want of a payment link.
    fn late_tap(&self, tap: Tap, deadline: Deadline)
    -> BoxFuture<'_, Result<Tapped, TransitError>>;

    /// [`TransitTaps::tap_in`] or [`TransitTaps::tap_out`], as `tap.kind` says.
    fn tap(&self, tap: Tap, deadline: Deadline) -> BoxFuture<'_, Result<Tapped, TransitError>> {
        match tap.kind {
            TapKind::MetroEntry | TapKind::Bus => self.tap_in(tap, deadline),
            TapKind::MetroExit => {
                let out = self.tap_out(tap, deadline);
                Box::pin(async move { out.await.map(Tapped::Trip) })
            }
        }
    }
}
