//! Trips and the taps that make them.
//!
//! A metro trip opens at an entry tap and closes, priced, at an exit tap; a bus trip
//! is one tap, priced at once. A trip's id is its first tap's key, and a tap's key is
//! deterministic in the gate's `(gate_id, scan_id)`:
//!
//! ```text
//! tap_key = SHA-256("citypass/v1/tap\0" ‖ u32be(len gate_id) ‖ gate_id ‖ scan_id)[..16]
//! ```
//!
//! so a gate's retry of a scan finds the tap, and the trip, it made the first time.
//! Every tap the service takes is recorded under its key ([`TapRecord`]) with the trip
//! it belongs to; a key is taken once, for one rider and one direction.

use std::fmt;

use crate::account::TransitAccount;
use crate::error::Error;
use crate::fare::{Fare, FareClass, Mode};

const TAP_DOMAIN: &[u8] = b"citypass/v1/tap\0";
/// Longest gate, scan or station id accepted.
pub const MAX_ID_LEN: usize = citypass_proto::tap_id::MAX_LEN;

/// A tap's key (and the id of the trip a tap opens).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TapKey(pub [u8; 16]);

impl TapKey {
    /// The key of the tap `scan_id` at `gate_id`.
    pub fn of(gate_id: &str, scan_id: &str) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(TAP_DOMAIN);
        // Gate ids are at most MAX_ID_LEN bytes, checked before a key is made.
        ctx.update(
            &u32::try_from(gate_id.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        ctx.update(gate_id.as_bytes());
        ctx.update(scan_id.as_bytes());
        let digest = ctx.finish();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_ref()[..16]);
        TapKey(key)
    }

    /// From 16 stored bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(TapKey)
    }
}

impl fmt::Display for TapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TapKey({self})")
    }
}

/// A trip's id: the key of the tap that opened it.
pub type TripId = TapKey;

/// Checks a gate, scan or station id: 1 to 64 characters of `[A-Za-z0-9._:-]`.
pub fn check_id(field: &'static str, text: &str) -> Result<(), Error> {
    if citypass_proto::tap_id::is_valid(text) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be 1 to 64 characters of letters, digits, '.', '_', ':' or '-'",
        ))
    }
}

/// One tap as a trip keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tap {
    /// The gate or bus reader.
    pub gate_id: String,
    /// The metro station, or the bus route.
    pub place: String,
    /// The gate's scan id.
    pub scan_id: String,
    /// When the verifier allowed it, Unix seconds.
    pub at: u64,
}

impl Tap {
    /// Its key.
    pub fn key(&self) -> TapKey {
        TapKey::of(&self.gate_id, &self.scan_id)
    }
}

/// Which way a tap went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A metro entry or a bus boarding.
    Entry,
    /// A metro exit.
    Exit,
}

impl Side {
    /// The number stored.
    pub fn code(self) -> i16 {
        match self {
            Side::Entry => 1,
            Side::Exit => 2,
        }
    }

    /// From its stored number.
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Side::Entry),
            2 => Some(Side::Exit),
            _ => None,
        }
    }
}

/// A tap taken: its key, the trip it belongs to, whether its gate voided it, and
/// whether it arrived late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapRecord {
    /// The tap's key.
    pub key: TapKey,
    /// The trip it opened, closed or repeated (a double tap).
    pub trip: TripId,
    /// Its direction.
    pub side: Side,
    /// When it was taken, Unix seconds.
    pub at: u64,
    /// Whether its gate voided it.
    pub voided: bool,
    /// Whether an offline gate took it and it was uploaded late (RecordOfflineTap):
    /// such a tap, and the trip it belongs to, is never voided.
    pub late: bool,
}

/// A trip's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripStatus {
    /// Metro entry recorded, no exit yet.
    Open,
    /// Priced: exit recorded, or a bus tap.
    Closed,
    /// Closed without its matching tap (an exit without an entry, or an entry not
    /// exited within the maximum trip duration), priced at the maximum fare.
    Unmatched,
    /// Cancelled: its opening tap was voided by the gate (the turnstile did not turn).
    Voided,
}

impl TripStatus {
    /// The number stored (the proto enum's number; VOIDED is 4).
    pub fn code(self) -> i16 {
        match self {
            TripStatus::Open => 1,
            TripStatus::Closed => 2,
            TripStatus::Unmatched => 3,
            TripStatus::Voided => 4,
        }
    }

    /// From its stored number.
    pub fn from_code(code: i16) -> Option<Self> {
        [
            TripStatus::Open,
            TripStatus::Closed,
            TripStatus::Unmatched,
            TripStatus::Voided,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// Whether the trip is priced (and counts toward the rider's day).
    pub fn is_priced(self) -> bool {
        matches!(self, TripStatus::Closed | TripStatus::Unmatched)
    }
}

/// A trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    /// Its id: the key of its first tap.
    pub id: TripId,
    /// Whose trip.
    pub account: TransitAccount,
    /// Metro or bus.
    pub mode: Mode,
    /// Its state.
    pub status: TripStatus,
    /// The rider's fare class, fixed at the first tap.
    pub fare_class: FareClass,
    /// The entry or boarding tap; `None` for an exit without an entry.
    pub entry: Option<Tap>,
    /// The metro exit tap; `None` while open, for buses and for expired trips.
    pub exit: Option<Tap>,
    /// The price, once priced.
    pub fare: Option<Fare>,
}

impl Trip {
    /// When the trip started (its entry, or its exit when it has no entry): the day
    /// it counts toward and the order trips are listed in.
    pub fn started_at(&self) -> u64 {
        self.entry
            .as_ref()
            .or(self.exit.as_ref())
            .map_or(0, |tap| tap.at)
    }

    /// When it ended: its exit, or its boarding for a bus; `None` without either.
    pub fn ended_at(&self) -> Option<u64> {
        match (&self.exit, self.mode) {
            (Some(exit), _) => Some(exit.at),
            (None, Mode::Bus) => self.entry.as_ref().map(|tap| tap.at),
            (None, Mode::Metro) => None,
        }
    }

    /// What the rider pays for it: zero unless priced.
    pub fn due(&self) -> crate::money::Fen {
        match (&self.fare, self.status.is_priced()) {
            (Some(fare), true) => fare.due,
            _ => crate::money::Fen::ZERO,
        }
    }
}

/// The stored number of a fare class (the proto enum's number).
pub fn fare_class_code(class: FareClass) -> i16 {
    match class {
        FareClass::Adult => 1,
        FareClass::Student => 2,
        FareClass::Senior => 3,
        FareClass::Disabled => 4,
    }
}

/// A fare class from its stored number.
pub fn fare_class_from_code(code: i16) -> Option<FareClass> {
    [
        FareClass::Adult,
        FareClass::Student,
        FareClass::Senior,
        FareClass::Disabled,
    ]
    .into_iter()
    .find(|c| fare_class_code(*c) == code)
}

/// The stored number of a mode.
pub fn mode_code(mode: Mode) -> i16 {
    match mode {
        Mode::Metro => 1,
        Mode::Bus => 2,
    }
}

/// A mode from its stored number.
pub fn mode_from_code(code: i16) -> Option<Mode> {
    match code {
        1 => Some(Mode::Metro),
        2 => Some(Mode::Bus),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_keys_are_deterministic_and_unambiguous() {
        assert_eq!(TapKey::of("g1", "s1"), TapKey::of("g1", "s1"));
        assert_ne!(TapKey::of("g1", "s1"), TapKey::of("g1", "s2"));
        // The gate id's length keeps ("g1", "2s") and ("g12", "s") apart.
        assert_ne!(TapKey::of("g1", "2s"), TapKey::of("g12", "s"));
    }

    #[test]
    fn ids_are_short_and_plain() {
        assert!(check_id("gate_id", "metro-entry-1").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(check_id("gate_id", bad).is_err(), "{bad}");
        }
    }
}
