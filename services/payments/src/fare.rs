//! Fares: what a trip costs a rider, from the city's fare table.
//!
//! The table (a YAML file the operator checks in, `config/fares.yaml` for `citypass dev`)
//! has metro distance bands over the network's shortest path between the entry and the
//! exit station, a flat fare per bus route, the share of the fare each fare class pays,
//! a discount for changing between metro and bus within a time window, and a cap on
//! what one rider pays in one day. A trip is priced in that order:
//!
//! 1. **base**: the metro band for the distance (beyond the last band, `beyond.add` per
//!    started `beyond.every_m`, never above `max_fare`), the bus route's fare, or
//!    `max_fare` for a metro trip without its matching tap (an exit without an entry,
//!    an entry never exited within `max_trip`);
//! 2. **concession**: the fare class pays its percentage, rounded down;
//! 3. **transfer**: a metro leg that starts within `transfer.window` of a bus leg's end,
//!    or the other way round, is `transfer.discount` cheaper (not below zero), once per
//!    chain: the leg after a discounted leg gets none;
//! 4. **daily cap**: the rider never pays more than `daily_cap` in a day; the trip costs
//!    at most what is left of it.
//!
//! Money is whole fen ([`Fen`]). A table is checked when loaded: every fare at most
//! [`Fen::MAX_FARE`], bands strictly increasing, percentages at most 100, and the
//! network well-formed, so pricing itself cannot fail except for an unknown station or
//! route, and cannot overflow.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::money::Fen;
use crate::network::{LineConfig, Network, NetworkError};

/// The fare table as its file writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FareConfig {
    /// The metro: network, bands, maximum fare.
    pub metro: MetroConfig,
    /// Bus routes and their flat fares.
    pub bus_routes: Vec<BusRouteConfig>,
    /// Percentage of the fare each fare class pays.
    pub concessions: Concessions,
    /// Metro–bus transfer discount.
    pub transfer: TransferConfig,
    /// Most one rider pays in one day.
    pub daily_cap: Fen,
}

/// The metro part of the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetroConfig {
    /// The transit operator paid for metro trips (settlement).
    pub operator: String,
    /// The lines.
    pub lines: Vec<LineConfig>,
    /// Distance bands, shortest first.
    pub bands: Vec<Band>,
    /// Beyond the last band: `add` per started `every_m`.
    pub beyond: Beyond,
    /// The fare of a trip without its matching tap, and the most any trip costs.
    pub max_fare: Fen,
    /// An entry not exited within this long is closed at `max_fare`.
    #[serde(deserialize_with = "citypass_runtime::config::duration::deserialize")]
    pub max_trip: Duration,
}

/// Trips up to `up_to_m` metres cost `fare`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Upper bound of the band, metres, inclusive.
    pub up_to_m: u32,
    /// The band's fare.
    pub fare: Fen,
}

/// Pricing past the last band.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beyond {
    /// Length of each further band, metres.
    pub every_m: u32,
    /// What each further band adds.
    pub add: Fen,
}

/// One bus route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusRouteConfig {
    /// The route as the bus shows it, e.g. `"52"`.
    pub id: String,
    /// The bus company paid for it.
    pub operator: String,
    /// The flat fare.
    pub fare: Fen,
}

/// Percentage of the fare paid by each fare class (100: full fare, 0: free).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concessions {
    /// Adults (and riders whose class is not known).
    pub adult: u8,
    /// Students.
    pub student: u8,
    /// Seniors.
    pub senior: u8,
    /// Riders with a disability.
    pub disabled: u8,
}

/// The metro–bus transfer discount.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferConfig {
    /// How long after one leg ends the next must start.
    #[serde(deserialize_with = "citypass_runtime::config::duration::deserialize")]
    pub window: Duration,
    /// Taken off the second leg.
    pub discount: Fen,
}

/// A rider's fare class (identity's `FareClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FareClass {
    /// Full fare.
    Adult,
    /// Student concession.
    Student,
    /// Senior concession.
    Senior,
    /// Disability concession.
    Disabled,
}

/// Metro or bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The metro.
    Metro,
    /// A bus.
    Bus,
}

/// What is being priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journey<'a> {
    /// A metro trip from `entry` to `exit` (station ids).
    Metro {
        /// Entry station.
        entry: &'a str,
        /// Exit station.
        exit: &'a str,
    },
    /// A metro trip without its matching tap: priced at the maximum fare.
    MetroUnmatched,
    /// A bus ride on `route`.
    Bus {
        /// The route id.
        route: &'a str,
    },
}

impl Journey<'_> {
    /// Metro or bus.
    pub fn mode(&self) -> Mode {
        match self {
            Journey::Bus { .. } => Mode::Bus,
            _ => Mode::Metro,
        }
    }
}

/// The rider's last priced leg today, for the transfer discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastLeg {
    /// Its mode.
    pub mode: Mode,
    /// When it ended (Unix seconds).
    pub ended_at: u64,
    /// Whether it was itself discounted as a transfer.
    pub discounted: bool,
}

/// What the rider has been charged today before this trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Day {
    /// Sum of today's fares so far.
    pub charged: Fen,
    /// The last leg, if any.
    pub last: Option<LastLeg>,
}

/// A priced trip, step by step (what a receipt shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fare {
    /// The operator paid (settlement).
    pub operator: String,
    /// Distance travelled, metres (metro trips with both taps).
    pub distance_m: Option<u32>,
    /// The fare before anything is taken off.
    pub base: Fen,
    /// Taken off for the fare class.
    pub concession: Fen,
    /// Taken off as a transfer.
    pub transfer: Fen,
    /// Taken off by the daily cap.
    pub capped: Fen,
    /// What the rider pays.
    pub due: Fen,
}

impl Fare {
    /// Whether the transfer discount applied.
    pub fn discounted(&self) -> bool {
        self.transfer > Fen::ZERO
    }
}

/// Why a table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The file could not be read as a fare table.
    #[error("fare table: {0}")]
    Parse(String),
    /// The metro network is malformed.
    #[error("fare table: metro: {0}")]
    Network(#[from] NetworkError),
    /// A rule of the table is broken.
    #[error("fare table: {0}")]
    Invalid(&'static str),
}

/// Why a trip could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FareError {
    /// A station the table does not know.
    #[error("unknown station")]
    UnknownStation,
    /// A bus route the table does not know.
    #[error("unknown bus route")]
    UnknownRoute,
    /// The two stations are not joined by the network.
    #[error("no metro path between the stations")]
    NoPath,
}

/// A checked fare table, ready to price trips.
#[derive(Debug, Clone)]
pub struct FareTable {
    config: FareConfig,
    network: Network,
    routes: HashMap<String, usize>,
}

impl FareTable {
    /// Reads and checks a table from its YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, TableError> {
        let config: FareConfig =
            serde_saphyr::from_str(text).map_err(|e| TableError::Parse(e.to_string()))?;
        Self::new(config)
    }

    /// Checks `config` (see the module documentation).
    pub fn new(config: FareConfig) -> Result<Self, TableError> {
        let invalid = |rule| Err(TableError::Invalid(rule));
        let metro = &config.metro;
        if metro.operator.is_empty() {
            return invalid("metro.operator is required");
        }
        if metro.max_fare > Fen::MAX_FARE || metro.max_fare == Fen::ZERO {
            return invalid("metro.max_fare must be 0.01 to 10 000 yuan");
        }
        if metro.bands.is_empty() {
            return invalid("metro.bands needs at least one band");
        }
        if metro
            .bands
            .windows(2)
            .any(|w| w[0].up_to_m >= w[1].up_to_m || w[0].fare > w[1].fare)
        {
            return invalid("metro.bands must grow in distance and not fall in fare");
        }
        if metro.bands.iter().any(|b| b.fare > metro.max_fare) {
            return invalid("no band may cost more than metro.max_fare");
        }
        if metro.beyond.every_m == 0 || metro.beyond.add > metro.max_fare {
            return invalid("metro.beyond needs every_m > 0 and add at most max_fare");
        }
        if metro.max_trip.is_zero() || metro.max_trip > Duration::from_secs(24 * 3600) {
            return invalid("metro.max_trip must be more than 0 and at most 24 h");
        }
        let c = config.concessions;
        if [c.adult, c.student, c.senior, c.disabled]
            .iter()
            .any(|&p| p > 100)
        {
            return invalid("concessions are percentages, at most 100");
        }
        if config.transfer.discount > Fen::MAX_FARE
            || config.transfer.window > Duration::from_secs(24 * 3600)
        {
            return invalid("transfer.discount at most 10 000 yuan, transfer.window at most 24 h");
        }
        if config.daily_cap == Fen::ZERO {
            return invalid("daily_cap must be more than 0");
        }
        let mut routes = HashMap::new();
        for (i, route) in config.bus_routes.iter().enumerate() {
            if route.id.is_empty() || route.operator.is_empty() {
                return invalid("every bus route needs an id and an operator");
            }
            if route.fare > Fen::MAX_FARE {
                return invalid("a bus fare is at most 10 000 yuan");
            }
            if routes.insert(route.id.clone(), i).is_some() {
                return invalid("a bus route is defined twice");
            }
        }
        let network = Network::new(&metro.lines)?;
        Ok(FareTable {
            config,
            network,
            routes,
        })
    }

    /// The table as loaded.
    pub fn config(&self) -> &FareConfig {
        &self.config
    }

    /// Whether `station` is a metro station of the table.
    pub fn has_station(&self, station: &str) -> bool {
        self.network.has_station(station)
    }

    /// Whether `route` is a bus route of the table.
    pub fn has_route(&self, route: &str) -> bool {
        self.routes.contains_key(route)
    }

    /// Prices `journey` for a rider of `class` starting at `started_at` (Unix seconds),
    /// given what the rider has paid today (`day`).
    pub fn price(
        &self,
        journey: Journey<'_>,
        class: FareClass,
        started_at: u64,
        day: &Day,
    ) -> Result<Fare, FareError> {
        let (operator, distance_m, base) = match journey {
            Journey::Metro { entry, exit } => {
                if !self.network.has_station(entry) || !self.network.has_station(exit) {
                    return Err(FareError::UnknownStation);
                }
                let distance = self
                    .network
                    .distance_m(entry, exit)
                    .ok_or(FareError::NoPath)?;
                (
                    &self.config.metro.operator,
                    Some(distance),
                    self.metro_fare(distance),
                )
            }
            Journey::MetroUnmatched => (
                &self.config.metro.operator,
                None,
                self.config.metro.max_fare,
            ),
            Journey::Bus { route } => {
                let route = self
                    .routes
                    .get(route)
                    .map(|&i| &self.config.bus_routes[i])
                    .ok_or(FareError::UnknownRoute)?;
                (&route.operator, None, route.fare)
            }
        };
        let paid = base.percent(self.percent_paid(class));
        let concession = base.saturating_sub(paid);
        let transfer = if self.is_transfer(journey.mode(), started_at, day) {
            paid.min(self.config.transfer.discount)
        } else {
            Fen::ZERO
        };
        let after_transfer = paid.saturating_sub(transfer);
        let left_today = self.config.daily_cap.saturating_sub(day.charged);
        let due = after_transfer.min(left_today);
        Ok(Fare {
            operator: operator.clone(),
            distance_m,
            base,
            concession,
            transfer,
            capped: after_transfer.saturating_sub(due),
            due,
        })
    }

    /// The metro fare for `distance` metres, at most `max_fare`.
    fn metro_fare(&self, distance: u32) -> Fen {
        let metro = &self.config.metro;
        if let Some(band) = metro.bands.iter().find(|b| distance <= b.up_to_m) {
            return band.fare;
        }
        let last = metro.bands[metro.bands.len() - 1];
        let past = u64::from(distance - last.up_to_m);
        let further = past.div_ceil(u64::from(metro.beyond.every_m));
        // further ≤ 2·10⁸ and add ≤ 10⁶: the product fits in u64.
        let extra = Fen::new(further.saturating_mul(metro.beyond.add.get()));
        last.fare
            .checked_add(extra)
            .unwrap_or(metro.max_fare)
            .min(metro.max_fare)
    }

    fn percent_paid(&self, class: FareClass) -> u8 {
        let c = self.config.concessions;
        match class {
            FareClass::Adult => c.adult,
            FareClass::Student => c.student,
            FareClass::Senior => c.senior,
            FareClass::Disabled => c.disabled,
        }
    }

    fn is_transfer(&self, mode: Mode, started_at: u64, day: &Day) -> bool {
        day.last.is_some_and(|last| {
            last.mode != mode
                && !last.discounted
                && started_at >= last.ended_at
                && started_at - last.ended_at <= self.config.transfer.window.as_secs()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line with stations at the band edges; 3 yuan to 6 km, then 1 yuan per
    /// started 10 km, never above 5 yuan.
    const EDGES: &str = r#"
metro:
  operator: metro
  max_fare: 500
  max_trip: 4h
  bands: [{ up_to_m: 6000, fare: 300 }]
  beyond: { every_m: 10000, add: 100 }
  lines:
    - id: "1"
      stations:
        - { id: s0, at_m: 0 }
        - { id: s6000, at_m: 6000 }
        - { id: s6001, at_m: 6001 }
        - { id: s16000, at_m: 16000 }
        - { id: s16001, at_m: 16001 }
        - { id: s96000, at_m: 96000 }
bus_routes: []
concessions: { adult: 100, student: 50, senior: 0, disabled: 0 }
transfer: { window: 90m, discount: 100 }
daily_cap: 2000
"#;

    #[test]
    fn band_edges_and_the_maximum_fare() {
        let table = FareTable::from_yaml(EDGES).unwrap();
        for (exit, fen) in [
            ("s0", 300),
            ("s6000", 300),
            ("s6001", 400),
            ("s16000", 400),
            ("s16001", 500),
            ("s96000", 500),
        ] {
            let fare = table
                .price(
                    Journey::Metro { entry: "s0", exit },
                    FareClass::Adult,
                    0,
                    &Day::default(),
                )
                .unwrap();
            assert_eq!(fare.base, Fen::new(fen), "{exit}");
        }
    }

    #[test]
    fn the_beyond_rule_cannot_overflow() {
        let mut config: FareConfig = serde_saphyr::from_str(EDGES).unwrap();
        config.metro.beyond = Beyond {
            every_m: 1,
            add: Fen::MAX_FARE,
        };
        config.metro.max_fare = Fen::MAX_FARE;
        let table = FareTable::new(config).unwrap();
        assert_eq!(table.metro_fare(u32::MAX), Fen::MAX_FARE);
    }
}
