//! PaymentsService: payment links, trips and fares, charges (issue 11).
//!
//! Built so far, the model the service will price with, free of I/O and transport:
//!
//! - [`money`]: whole fen, checked arithmetic;
//! - [`network`]: the metro network and the shortest distance between stations;
//! - [`fare`]: the fare table (bands, bus routes, concessions, transfers, daily cap)
//!   and the pricing of one trip;
//! - [`card`]: recognising card numbers, which the service refuses to take anywhere.
//!
//! Still to come (see the note on issue 11): links, trips and the ledger behind store
//! traits (PostgreSQL and memory), the outbox and the provider adapter, arrears,
//! settlement, and the gRPC service built like the others.
#![forbid(unsafe_code)]

pub mod card;
pub mod fare;
pub mod money;
pub mod network;

pub use fare::{Day, Fare, FareClass, FareError, FareTable, Journey, LastLeg, Mode, TableError};
pub use money::Fen;
