//! PaymentsService: payment links, trips and fares, a double-entry ledger and
//! exactly-once charges (issue 11).
//!
//! Built so far, one module per concept; only `convert` and `service` know the wire
//! (no tonic or prost type in the others):
//!
//! - [`money`]: whole fen, checked arithmetic;
//! - [`network`]: the metro network and the shortest distance between stations;
//! - [`fare`]: the fare table (bands, bus routes, concessions, transfers, daily cap)
//!   and the pricing of one trip;
//! - [`card`]: recognising card numbers, which the service refuses to take anywhere;
//! - [`account`]: the transit account, the only key of the records;
//! - [`arrears`]: repaying declined charges (RepayArrears's rule);
//! - [`link`]: payment links, provider tokens, last 4 digits, consent;
//! - [`trip`]: trips, taps and their deterministic keys;
//! - [`charge`]: charges and their idempotency keys, derived from the trip;
//! - [`ledger`]: balanced double entries and the invariant check;
//! - [`outbox`]: the transactional outbox rows;
//! - [`provider`]: the payment-provider adapter trait and the sandbox provider;
//! - [`settlement`]: the daily settlement per transit operator, and its CSV;
//! - [`worker`]: the outbox worker (send, apply the answer, retry with the same key);
//! - [`tap`]: the rules of a tap (TapIn, TapOut, void, expiry) as pure functions;
//! - [`decision`]: what the rules and a store exchange (the rider's state, the writes);
//! - [`store`]: the store trait, [`MemoryStore`] and [`PostgresStore`];
//! - [`payments`]: the logic callers use ([`Payments`]);
//! - [`citizen`]: who a citizen's device-signed call acts for (the proof, the device
//!   and its transit account at identity);
//! - [`error`]: the one error type and its gRPC codes;
//! - [`config`]: settings, dev defaults, and what production refuses;
//! - [`convert`]: messages to model types and back;
//! - [`service`]: the thin tonic layer ([`PaymentsApi`]);
//! - [`authorization`]: who may call each RPC;
//! - [`expiry`]: the background pass closing trips left open too long;
//! - [`periodic`]: the clock of the background passes (every interval, until draining);
//! - [`build`]: the composition root.
//!
//! - [`notification`]: providers' signed notifications of a charge's outcome
//!   (NotifyCharge).
//!
//! Still to come (see the note on issue 11): real provider adapters (with their own
//! notification layouts), and payouts to operators.
#![forbid(unsafe_code)]

pub mod account;
pub mod arrears;
pub mod authorization;
pub mod build;
pub mod card;
pub mod charge;
pub mod citizen;
pub mod config;
pub mod convert;
pub mod decision;
pub mod error;
pub mod expiry;
pub mod fare;
pub mod ledger;
pub mod link;
pub mod money;
pub mod network;
pub mod notification;
pub mod outbox;
pub mod payments;
pub mod periodic;
pub mod provider;
pub mod service;
pub mod settlement;
pub mod store;
pub mod tap;
pub mod trip;
pub mod worker;

pub use account::TransitAccount;
pub use authorization::AUTHORIZATION;
pub use build::{Built, MAX_REQUEST_BYTES, build};
pub use config::Config;
pub use error::Error;
pub use fare::{Day, Fare, FareClass, FareError, FareTable, Journey, LastLeg, Mode, TableError};
pub use money::Fen;
pub use payments::Payments;
pub use service::PaymentsApi;
pub use store::{MemoryStore, PaymentsStore, PostgresStore};
