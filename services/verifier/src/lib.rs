//! citypass-verifier: VerifierService, the gate decision for scanned codes.
//!
//! [`build`] is the one composition root: `main.rs` and the tests turn a [`Config`]
//! into a running server through it.
//!
//! Modules, one concept each:
//! - [`config`]: settings and their limits;
//! - [`authorization`]: who may call each RPC (gates only);
//! - [`batch`]: VerifyStream's batches of issuer signatures, and their fallback;
//! - [`build`]: the composition root;
//! - [`face`]: the counter's 1:1 face check (policy per counter scene, the holder's
//!   template from the in-memory galleries, a score band, never a refusal);
//! - [`fraud`]: fraud signals (a code or offline counter used by two scans), kept for operators;
//! - [`gates`]: the gate registry, followed from its file;
//! - [`key_set`]: the issuer's published key set, followed from its file;
//! - [`metrics`]: decisions by scene and reason, decision time;
//! - [`replay`]: single-use marks with their answers (memory and Redis): reserve,
//!   then settle;
//! - [`scene`]: the scene policies (hospital, scenic, government, transit), their fail
//!   modes and deadlines;
//! - [`venues`]: scenic venues' daily counts (memory and Redis);
//! - [`stand_in_subjects`]: the placeholder `Subjects` and a fixed one for tests;
//! - [`stand_in_transit`]: the `TransitTaps` without payments (unavailable) and a fixed
//!   one for tests;
//! - [`subjects`]: the code's holder (unsealed subject, identity's profile, pseudonyms);
//! - [`transit`]: payments' taps as the transit scene needs them, and their gRPC
//!   client;
//! - [`upload`]: offline gates' uploads, recorded after the fact;
//! - [`void`]: a gate's void of its own transit tap (VoidScan);
//! - [`verify`]: the decision, the offline gate's pipeline (`citypass_gate`) composed
//!   with the follower's revocations and the replay store;
//! - [`model`]: the verifier's types; [`convert`]: messages to and from them;
//!   [`service`]: the tonic face; [`error`]: statuses.

#![forbid(unsafe_code)]

pub mod authorization;
pub mod batch;
pub mod build;
pub mod config;
pub mod convert;
pub mod error;
pub mod face;
pub mod fraud;
pub mod gates;
pub mod key_set;
pub mod metrics;
pub mod model;
pub mod replay;
pub mod scene;
pub mod service;
pub mod stand_in_subjects;
pub mod stand_in_transit;
pub mod subjects;
pub mod transit;
pub mod upload;
pub mod venues;
pub mod verify;
pub mod void;

pub use authorization::AUTHORIZATION;
pub use build::{Built, MAX_REQUEST_BYTES, Replacements, build, build_replacing, build_with};
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
pub use model::{
    Answer, Basis, Direction, PolicyRefusal, Refusal, Scan, SceneFacts, SceneResult, TransitTrip,
};
pub use replay::{
    Arrival, Mark, MemoryReplayStore, Outcome, RedisConnection, RedisReplayStore, ReplayError,
    ReplayStore, Settled, StoredAnswer, Use,
};
pub use scene::{
    FailMode, Policies, SceneSettings, ScenesConfig, ScenicSettings, UtcOffset, VenueSettings,
};
pub use service::VerifierApi;
pub use stand_in_subjects::{FixedHolder, FixedSubjects, UnavailableSubjects};
pub use stand_in_transit::{FixedTaps, UnavailableTaps};
pub use subjects::{PseudonymScope, SubjectProfile, Subjects, SubjectsError};
pub use transit::{Tap, TapKind, TapRefused, Tapped, TransitError, TransitTaps, Trip, TripState};
pub use upload::{
    OfflineScan, ScanResult, TapPassed, Upload, UploadOutcome, UploadSources, Uploads,
};
pub use venues::{Admission, Entry, MemoryVenueStore, RedisVenueStore, VenueError, VenueStore};
pub use verify::{FixedRevocations, ReadScan, Revocations, Rules, Verifier};
