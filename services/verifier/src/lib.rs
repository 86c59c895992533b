//! citypass-verifier: VerifierService, the gate decision for scanned codes.
//!
//! [`build`] is the one composition root: `main.rs` and the tests turn a [`Config`]
//! into a running server through it.
//!
//! Modules, one concept each:
//! - [`config`]: settings and their limits;
//! - [`authorization`]: who may call each RPC (gates only);
//! - [`build`]: the composition root;
//! - [`fraud`]: fraud signals (a code or offline counter used by two scans), kept for operators;
//! - [`gates`]: the gate registry, followed from its file;
//! - [`key_set`]: the issuer's published key set, followed from its file;
//! - [`metrics`]: decisions by scene and reason, decision time;
//! - [`redis_connection`]: one Redis or Redis Cluster connection for the shared state;
//! - [`replay`]: single-use marks with their answers (memory and Redis);
//! - [`subjects`]: the code's holder (unsealed subject, identity's profile, pseudonyms);
//! - [`upload`]: offline gates' uploads, recorded after the fact;
//! - [`verify`]: the decision, the offline gate's pipeline (`citypass_gate`) composed
//!   with the follower's revocations and the replay store;
//! - [`model`]: the verifier's types; [`convert`]: messages to and from them;
//!   [`service`]: the tonic face; [`error`]: statuses.

#![forbid(unsafe_code)]

pub mod authorization;
pub mod build;
pub mod config;
pub mod convert;
pub mod error;
pub mod fraud;
pub mod gates;
pub mod key_set;
pub mod metrics;
pub mod model;
pub mod redis_connection;
pub mod replay;
pub mod service;
pub mod subjects;
pub mod upload;
pub mod verify;

pub use authorization::AUTHORIZATION;
pub use build::{Built, MAX_REQUEST_BYTES, build};
pub use citypass_revocation_follow::{Follower, RevocationView};
pub use config::{
    Config, DecisionSettings, Environment, FollowMode, InvalidConfig, RevocationSettings,
    UploadSettings,
};
pub use error::VerifierError;
pub use fraud::{
    FraudError, FraudKind, FraudLog, FraudSignal, MemoryFraudLog, RedisFraudLog, SignalPage,
};
pub use gates::{Gate, GateDirection, Gates, GatesError, Registry};
pub use key_set::Keys;
pub use model::{Answer, Basis, Direction, Refusal, Scan};
pub use replay::{
    Arrival, Mark, MemoryReplayStore, Outcome, RedisReplayStore, ReplayError, ReplayStore,
    StoredAnswer, Use,
};
pub use service::VerifierApi;
pub use subjects::{PseudonymScope, SubjectProfile, Subjects, SubjectsError};
pub use upload::{OfflineScan, Upload, UploadOutcome, UploadSources, Uploads};
pub use verify::{FixedRevocations, Revocations, Rules, Verifier};
